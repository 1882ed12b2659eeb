"""Shared fixtures: paths, golden-file updating, the runtime stand-in on PATH."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOUBLES = ROOT / "tests" / "doubles"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden from the current output (review the diff!)")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def stand_in_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH starts with the apptainer test double (tests/doubles)."""
    env = dict(os.environ)
    env["PATH"] = f"{DOUBLES}:{env['PATH']}"
    env["APPTAINER_DOUBLE_LOG"] = str(tmp_path / "apptainer-calls.jsonl")
    return env
