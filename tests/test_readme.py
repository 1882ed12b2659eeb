"""The README's manifest reference and commands cannot drift from the schema and the CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import reference  # noqa: E402


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
    assert "python3 -m pytest -q" in readme and "python3 -m pytest -q ||" in ci
    assert "bash scripts/setup.sh" in ci
