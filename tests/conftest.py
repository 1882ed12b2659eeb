"""Shared fixtures: paths, golden-file updating, the runtime stand-in on PATH."""

from __future__ import annotations

import os
import typing as t
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



def _skipped_for_a_missing_tool(reporter: t.Any) -> list[t.Any]:
    """Under CI, the skips whose reason points at scripts/setup.sh (which installs every tool)."""
    if not os.environ.get("CI") or reporter is None:
        return []
    return [report for report in reporter.stats.get("skipped", []) if "setup.sh" in str(getattr(report, "longrepr", ""))]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a test skipped for a missing tool fails the run."""
    if exitstatus == 0 and _skipped_for_a_missing_tool(session.config.pluginmanager.get_plugin("terminalreporter")):
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: t.Any, exitstatus: int, config: pytest.Config) -> None:
    for report in _skipped_for_a_missing_tool(terminalreporter):
        terminalreporter.write_line(f"CI: skipped for a missing tool, which fails the run: {report.nodeid}: {report.longrepr}", red=True)
