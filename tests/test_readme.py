"""The README's manifest reference and commands cannot drift from the schema and the CLI."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
assert _spec is not None and _spec.loader is not None
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def test_reference_table_matches_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    assert reference.section() in readme, "README reference is stale: run python3 scripts/reference.py --write"


def test_every_schema_field_is_documented_with_a_description() -> None:
    import json

    schema = json.loads((ROOT / "schemas" / "experiment.v1.schema.json").read_text())
    for path, _, _, description in reference.rows(schema):
        assert description, f"{path} has no description in the schema"


def test_the_readme_names_every_command_of_the_cli() -> None:
    from manifest_compiler.cli import COMMANDS

    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        assert re.search(rf"mcompile {command}\b", readme), command


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", quick_start, re.S)
    assert blocks[0] == "bash scripts/demo.sh"
    setup, test = blocks[1].split(" && ")
    assert setup == "bash scripts/setup.sh" and test == ".venv/bin/python -m pytest -q"
    # .ci/run runs the same two steps, and nothing else decides which python runs the tests
    assert f"\n{setup}\n" in ci and f"\n{test} || status=$?\n" in ci
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    assert "\nbash scripts/setup.sh\nexport PATH=$repo/.venv/bin:$PATH" in demo


def test_the_suite_runs_on_debians_python_under_ci() -> None:
    """CI's tests run in .venv, built on /usr/bin/python3 (not another python first on PATH)."""
    if not os.environ.get("CI"):
        pytest.skip("only CI is bound to .venv on Debian's python3")
    assert Path(sys.prefix) == ROOT / ".venv"
    assert Path(sys.base_prefix) == Path("/usr"), sys.base_prefix
