"""Arrays past MaxArraySize, task lists and per-task states, without SLURM.

The end-to-end behaviour (real sbatch, sacct, reruns) is in tests/e2e/test_rerun.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from manifest_compiler import runs
from manifest_compiler.errors import UsageError
from manifest_compiler.runs import is_failed, task_rows
from manifest_compiler.slurm import Reply, Scheduler, TaskState
from manifest_compiler.submissions import group_submissions
from manifest_compiler.submit import chunk_size, plan_chunks
from manifest_compiler.tasklist import format_task_spec, parse_task_spec

ROOT = Path(__file__).resolve().parent.parent


def _layout(tasks: list[int], max_array_size: int, max_parallel: int | None = None) -> list[tuple[int, str]]:
    return [(c.offset, c.array(max_parallel)) for c in plan_chunks(tasks, max_array_size)]


def test_a_run_is_split_into_arrays_whose_indices_stay_below_max_array_size() -> None:
    assert _layout(list(range(2500)), 1001) == [(0, "0-999"), (1000, "0-999"), (2000, "0-499")]
    assert _layout(list(range(25)), 10) == [(0, "0-8"), (9, "0-8"), (18, "0-6")]
    assert _layout(list(range(25)), 10, max_parallel=2) == [(0, "0-8%2"), (9, "0-8%2"), (18, "0-6%2")]
    assert _layout(list(range(9)), 10) == [(0, "0-8")]
    assert _layout(list(range(10)), 10) == [(0, "0-8"), (9, "0")]
    for size in (1, 2, 7, 1001):
        for chunk in plan_chunks(range(3 * size + 5), size):
            assert max(chunk.indices) < max(size, 1) or size == 1
    assert chunk_size(1) == 1 and _layout([0, 1, 2], 1) == [(0, "0"), (1, "0"), (2, "0")]


def test_a_task_list_lands_in_the_chunks_of_its_numbers() -> None:
    assert _layout([21, 22, 23], 10) == [(18, "3-5")]
    assert _layout([1, 3], 10) == [(0, "1,3")]
    assert _layout([2, 8, 9, 17, 24], 10, max_parallel=1) == [(0, "2,8%1"), (9, "0,8%1"), (18, "6%1")]
    assert [c.tasks for c in plan_chunks([999, 1000, 2499], 1001)] == [(999,), (1000,), (2499,)]
    assert [c.indices for c in plan_chunks([999, 1000, 2499], 1001)] == [[999], [0], [499]]


@pytest.mark.parametrize(("spec", "tasks"), [
    ("3", [3]), ("3,7-9", [3, 7, 8, 9]), ("7-9,3", [3, 7, 8, 9]), ("1,1,0-2", [0, 1, 2]), (" 4 , 5-5 ", [4, 5]), ("0-24", list(range(25))),
])
def test_task_spec_parses(spec: str, tasks: list[int]) -> None:
    assert parse_task_spec(spec, 25) == tasks


@pytest.mark.parametrize(("spec", "message"), [
    ("", "'' is not a task number or range"),
    ("x", "'x' is not a task number or range (e.g. 3,7-9)"),
    ("3,", "'' is not a task number or range"),
    ("-1", "'-1' is not a task number or range"),
    ("1-2-3", "'1-2-3' is not a task number or range"),
    ("9-7", "the range 9-7 runs backwards"),
    ("25", "there is no task 25; this run has tasks 0-24"),
    ("20-30", "there is no task 25; this run has tasks 0-24"),
    ("1e3", "'1e3' is not a task number"),
])
def test_a_bad_task_spec_is_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_task_spec(spec, 25)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_a_single_task_run_names_its_one_task() -> None:
    with pytest.raises(UsageError, match="there is no task 1; this run has task 0"):
        parse_task_spec("1", 1)


def test_task_specs_print_compactly_and_round_trip() -> None:
    assert format_task_spec([]) == ""
    assert format_task_spec([3, 7, 8, 9]) == "3,7-9"
    assert format_task_spec([9, 1, 3, 3]) == "1,3,9"
    assert format_task_spec(range(1000)) == "0-999"
    for tasks in ([0], [0, 2, 4], list(range(5)) + [9, 10]):
        assert parse_task_spec(format_task_spec(tasks), 11) == tasks


def _line(job: str, key: str, offset: int, tasks: str, planned: str, kind: str = "submit") -> dict[str, object]:
    return {"job_id": job, "submission": key, "kind": kind, "offset": offset, "tasks": tasks, "planned": planned, "sbatch": []}


def test_latest_attempt_attempts_and_never_queued_tasks() -> None:
    records = [
        {"job_id": "100", "tasks": 25, "sbatch": []},  # a line written before chunking: the whole run
        _line("101", "k1", 0, "0-8", "0-24"),  # sbatch refused the rest of k1
        _line("102", "k2", 18, "21-23", "21-23", kind="rerun"),
    ]
    subs = group_submissions(records, 25)
    assert [(s.key, s.queued == list(range(25)), s.missing) for s in subs][0] == ("job-100", True, [])
    assert subs[1].missing == list(range(9, 25))
    states = [TaskState("100", i, "COMPLETED", "0:0") for i in range(25)]
    states += [TaskState("101", i, "FAILED" if i == 4 else "COMPLETED", "2:0" if i == 4 else "0:0", 2 if i == 4 else 1)
               for i in range(9)]
    states += [TaskState("102", 3, "RUNNING", "", 1), TaskState("102", 4, "PENDING", "", 0)]  # tasks 21, 22
    rows = {r.task: r for r in task_rows(25, subs, states)}
    # attempts: starts by the job of the latest submission (requeues); submissions: how many queued it
    assert (rows[4].state, rows[4].exit_code, rows[4].attempts, rows[4].submissions, rows[4].job_id) == ("FAILED", "2:0", 2, 2, "101")
    assert (rows[8].state, rows[8].attempts, rows[8].submissions) == ("COMPLETED", 1, 2)
    assert (rows[9].state, rows[9].attempts, rows[9].submissions, rows[9].job_id) == ("NOT_QUEUED", 0, 1, None)
    assert (rows[21].state, rows[21].attempts, rows[21].submissions) == ("RUNNING", 1, 2)
    assert (rows[22].state, rows[22].attempts, rows[22].submissions) == ("PENDING", 0, 2)
    assert (rows[23].state, rows[23].attempts, rows[23].job_id) == ("UNKNOWN", 0, "102")  # queued, unknown to SLURM
    failed = [t for t, r in rows.items() if is_failed(r.state)]
    assert failed == [4, *range(9, 21), 24]


def test_a_rerun_of_a_single_task_run_maps_the_job_to_task_0() -> None:
    subs = group_submissions([_line("7", "a", 0, "0", "0"), _line("8", "b", 0, "0", "0", kind="rerun")], 1)
    rows = task_rows(1, subs, [TaskState("7", None, "TIMEOUT", "0:15"), TaskState("8", None, "COMPLETED", "0:0")])
    assert [(r.state, r.attempts, r.submissions, r.job_id) for r in rows] == [("COMPLETED", 1, 2, "8")]
    assert runs.exit_status("0:15") == 143 and runs.exit_status("3:0") == 3 and runs.exit_status("") is None


def test_sacct_rows_give_every_attempt_and_expand_pending_ranges() -> None:
    out = "\n".join([
        "55_0|REQUEUED|0:0|2024-01-01T10:00:00",
        "55_0|COMPLETED|0:0|2024-01-01T10:01:00",
        "55_1|CANCELLED by 0|0:15|2024-01-01T10:00:00",
        "55_[2-4%1]|PENDING|0:0|Unknown",
        "56|FAILED|1:0|2024-01-01T10:00:00",
    ])
    calls: list[list[str]] = []

    def fake(argv: list[str], **_: object) -> Reply:
        calls.append(argv)
        return Reply(0, out if argv[0] == "sacct" else "", "")

    states, source = Scheduler(fake).task_states(["55", "56"])
    by = {(s.job_id, s.task): (s.state, s.exit_code, s.attempts) for s in states}
    assert source == "sacct"
    assert by == {("55", 0): ("COMPLETED", "0:0", 2), ("55", 1): ("CANCELLED", "0:15", 1), ("55", 2): ("PENDING", "", 0),
                  ("55", 3): ("PENDING", "", 0), ("55", 4): ("PENDING", "", 0), ("56", None): ("FAILED", "1:0", 1)}
    assert [c[0] for c in calls] == ["sacct", "squeue"] and "-D" in calls[0]


def _compile(tmp_path: Path, commands: list[str]) -> Path:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nname: units\nproject: p\ncontainer: {image: /nonexistent.sif}\n"
                        "resources: {time: 5m, mem: 256M}\nrun:\n  commands:\n"
                        + "".join(f"    - '{c}'\n" for c in commands))
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(tmp_path / "runs")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "5"], "mcompile: --tasks '5': there is no task 5; this run has tasks 0-2"),
    (["--tasks", "a-b"], "mcompile: --tasks 'a-b': 'a-b' is not a task number or range (e.g. 3,7-9)"),
    ([], "mcompile rerun: say which tasks: --failed, --tasks LIST (e.g. 3,7-9), or both"),
])
def test_rerun_usage_errors_exit_2_before_anything_is_queued(tmp_path: Path, args: list[str], message: str) -> None:
    run = _compile(tmp_path, ["true", "true", "true"])
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "rerun", "units", "--runs", str(tmp_path / "runs"), *args],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PATH": "/nonexistent"})
    assert proc.returncode == 2 and proc.stderr == message + "\n" and proc.stdout == ""
    assert not (run / "submissions.jsonl").exists()


def test_rerun_and_runs_of_a_missing_run_are_usage_errors(tmp_path: Path) -> None:
    for argv in (["rerun", "nope", "--tasks", "1"], ["runs", "nope"]):
        proc = subprocess.run([sys.executable, "-m", "manifest_compiler", *argv, "--runs", str(tmp_path)],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("mcompile: no compiled run 'nope'") and "Traceback" not in proc.stderr


def test_runs_json_of_an_unsubmitted_run_lists_every_task(tmp_path: Path) -> None:
    _compile(tmp_path, ["true", "false"])
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "runs", "units", "--runs", str(tmp_path / "runs"), "--format", "json"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PATH": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"NOT_SUBMITTED"') == 2 and '"attempts": 0' in proc.stdout
