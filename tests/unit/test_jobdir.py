"""The job directory's reading side: a listing of runs reads the head of resolved.json, not its tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from manifest_compiler.errors import OperationError
from manifest_compiler.jobdir import RunHead, read_resolved, read_run_head, task_count
from manifest_compiler.model import pack_size

GOLDEN = sorted(Path(__file__).resolve().parents[1].joinpath("golden").glob("*/*"))


@pytest.mark.parametrize("run", GOLDEN, ids=lambda p: p.parent.name)
def test_the_head_says_what_the_whole_file_says(run: Path) -> None:
    whole = read_resolved(run)
    assert read_run_head(run) == RunHead(whole["name"], whole["project"], whole["outputs"]["logs"], pack_size(whole["run"]))
    assert task_count(run) == len(whole["run"]["tasks"])


def test_the_tasks_are_not_read(tmp_path: Path) -> None:
    """Past the head, the file may hold anything: a run of a million tasks is not parsed to be listed."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN[0], run)
    text = (run / "resolved.json").read_text(encoding="utf-8")
    at = text.index('\n  "run": ')
    (run / "resolved.json").chmod(0o644)
    (run / "resolved.json").write_text(text[:at] + '\n  "run": {"tasks": [ this is not JSON', encoding="utf-8")
    whole = json.loads(text)
    assert read_run_head(run) == RunHead(whole["name"], whole["project"], whole["outputs"]["logs"], pack_size(whole["run"]))


def test_a_file_of_another_shape_is_read_whole_or_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "resolved.json").write_text(json.dumps({"name": "n", "project": "p", "outputs": {"logs": "/l"}, "run": {"tasks": []}}))
    assert read_run_head(run) == RunHead("n", "p", "/l")  # no indent: read whole
    (run / "resolved.json").write_text("{not json")
    with pytest.raises(OperationError, match="not valid JSON"):
        read_run_head(run)
    with pytest.raises(OperationError, match="not a job directory"):
        read_run_head(tmp_path / "missing")
