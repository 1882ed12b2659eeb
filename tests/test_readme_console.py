"""Every ```console block of the README is a real run: its commands give exactly its output.

The blocks run in a scratch folder that holds a copy of `manifests/`, committed to a git
repository (so `HEAD:path` reads the committed version), then `tests/data/readme/`'s files on
top of it: `broken.yaml` for the validate example and the edited `resnet50-seeds.yaml` for the
diff example. A change to mcompile's output, or a stale hash in the README, fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "readme"


def console_blocks() -> list[tuple[str, str]]:
    """(command, expected output) for each `$ ` line of every ```console block."""
    readme = (ROOT / "README.md").read_text()
    pairs: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", readme, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            pairs.append((command, output))
    return pairs


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "manifests", where / "manifests")
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@example.org", "-C", str(where)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "the examples"], check=True)
    shutil.copy(DATA / "broken.yaml", where / "broken.yaml")
    shutil.copy(DATA / "resnet50-seeds.yaml", where / "manifests" / "resnet50-seeds.yaml")
    return where


def test_the_readme_has_console_examples() -> None:
    commands = [command.split()[:2] for command, _ in console_blocks()]
    assert ["mcompile", "validate"] in commands and ["mcompile", "diff"] in commands
    assert any(len(c) == 2 and c[1].endswith(".yaml") for c in commands)  # the compile shorthand


@pytest.mark.parametrize(("command", "expected"), console_blocks(), ids=[c for c, _ in console_blocks()])
def test_console_example_is_what_mcompile_prints(scratch: Path, command: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCOMPILE_", "NO_COLOR"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as written
    env["NO_COLOR"] = "1"
    proc = subprocess.run(["bash", "-c", command + " 2>&1"], cwd=scratch, env=env, capture_output=True, text=True)
    assert proc.stdout == expected, f"README's `$ {command}` block differs from a real run:\n{proc.stdout}"
