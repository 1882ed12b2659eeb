"""The pre-commit hook, driven by the real pre-commit (PyPI) as a user's repository would use it.

A scratch repository holds the examples and a `.pre-commit-config.yaml` naming this checkout
at its HEAD commit (pre-commit needs a tag or a full commit SHA: mcompile has no release tag).
pre-commit clones it, installs mcompile into its own environment (dependencies from PyPI)
and runs the `mcompile-validate` hook from `.pre-commit-hooks.yaml`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"

if not PRE_COMMIT.exists():
    pytest.skip("pre-commit is not installed in this environment: run scripts/setup.sh", allow_module_level=True)


def git(where: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(where), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_hook_passes_the_examples_and_locates_a_mistake(tmp_path: Path) -> None:
    head = git(ROOT, "rev-parse", "HEAD")
    repo = tmp_path / "experiments"
    shutil.copytree(ROOT / "manifests", repo / "manifests")
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {ROOT}\n    rev: {head}\n    hooks: [{{id: mcompile-validate}}]\n")
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "add", "-A")
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "cache"), NO_COLOR="1")
    run = [str(PRE_COMMIT), "run", "--all-files", "--color", "never"]

    ok = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "mcompile validate" in ok.stdout and "Passed" in ok.stdout

    broken = repo / "manifests" / "broken.yaml"
    broken.write_text((ROOT / "tests" / "data" / "readme" / "broken.yaml").read_text())
    git(repo, "add", "-A")
    bad = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    assert "manifests/broken.yaml:4:1: resorces: unknown key 'resorces'; did you mean 'resources'?" in bad.stdout
