"""`mcompile runs`: attempts, exit codes and submissions from recorded SLURM output, without SLURM.

tests/data/slurm/ was recorded on the two-node test cluster (`slurm-dev.sh up --accounting
filetxt --nodes 2`, Slurm 22.05.8, no slurmdbd):
- job 46368352, `--array=0-1 --requeue`: each task requeued itself twice (`scontrol requeue`
  in its SIGUSR1 trap, the signal sent with `scancel --batch`), then completed;
- job 46368353, `--array=0 --requeue --time=1`: the task ran into its time limit twice and
  requeued itself in its SIGTERM trap (during KillWait), then completed;
- 46368355 `exit 3`, 46368356 `kill -9 $$`, 46368357 `sleep 30`: plain jobs.
`jobcomp-requeue.log` is the cluster's jobcomp file afterwards, `squeue-requeue.txt` what
`squeue -h -r -t all -O` (runs' fields) printed before MinJobAge ran out.
"""

from __future__ import annotations

from pathlib import Path

from manifest_compiler import runs
from manifest_compiler.runs import TaskRow, task_rows
from manifest_compiler.runs_formats import format_runs
from manifest_compiler.slurm import Reply, Scheduler, TaskState
from manifest_compiler.submissions import group_submissions

DATA = Path(__file__).resolve().parent / "data" / "slurm"
JOBS = ["46368352", "46368353", "46368355", "46368356", "46368357"]


def _cluster(*, squeue: str = "", jobcomp: Path = DATA / "jobcomp-requeue.log") -> tuple[Scheduler, list[list[str]]]:
    """SLURM as recorded: no sacct (no slurmdbd), the jobcomp file (named by `scontrol show config`),
    and `squeue` printing `squeue`; the scheduler and the sacct and squeue calls made."""
    calls: list[list[str]] = []

    def fake(argv: list[str], **_: object) -> Reply:
        if argv[0] == "scontrol":
            return Reply(0, f"JobCompType             = jobcomp/filetxt\nJobCompLoc              = {jobcomp}\n", "")
        calls.append(argv)
        if argv[0] == "sacct":
            return Reply(1, "", "sacct: error: Problem talking to the database")
        return Reply(0, squeue if argv[0] == "squeue" else "", "")

    return Scheduler(fake), calls


def _by_task(states: list[TaskState]) -> dict[tuple[str, int | None], tuple[str, str, int]]:
    return {(s.job_id, s.task): (s.state, s.exit_code, s.attempts) for s in states}


def test_the_jobcomp_file_writes_two_lines_for_an_attempt_requeued_at_its_time_limit() -> None:
    lines = [line for line in (DATA / "jobcomp-requeue.log").read_text().splitlines() if "ArrayJobId=46368353 " in line]
    states = [(f.split("JobState=")[1].split()[0], f.split("StartTime=")[1].split()[0]) for f in lines]
    assert states == [("TIMEOUT", "2026-12-04T06:56:06"), ("PENDING", "2026-12-04T06:56:06"),
                      ("TIMEOUT", "2026-12-04T06:57:34"), ("PENDING", "2026-12-04T06:57:34"),
                      ("COMPLETED", "2026-12-04T06:59:04")]


def test_attempts_from_the_jobcomp_file_count_starts_not_lines() -> None:
    scheduler, _ = _cluster()  # the controller forgot the jobs: the file is all there is
    states, source = scheduler.task_states(JOBS)
    assert source == "squeue+jobcomp"
    assert _by_task(states) == {
        ("46368352", 0): ("COMPLETED", "0:0", 3),
        ("46368352", 1): ("COMPLETED", "0:0", 3),
        ("46368353", 0): ("COMPLETED", "0:0", 3),  # 5 lines: TIMEOUT and PENDING for each requeued attempt
        ("46368355", None): ("FAILED", "3:0", 1),
        ("46368356", None): ("FAILED", "0:9", 1),
        ("46368357", None): ("COMPLETED", "0:0", 1),
    }


def test_a_requeued_attempt_is_requeued_until_the_next_one_is_known(tmp_path: Path) -> None:
    lines = (DATA / "jobcomp-requeue.log").read_text().splitlines()
    first_two = [line for line in lines if "ArrayJobId=46368353 " in line][:2]
    (tmp_path / "jobcomp.log").write_text("\n".join(first_two) + "\n")
    scheduler, _ = _cluster(jobcomp=tmp_path / "jobcomp.log")
    [state] = scheduler.task_states(["46368353"])[0]
    assert (state.state, state.exit_code, state.attempts) == ("REQUEUED", "", 1)
    # squeue: the second attempt runs (one restart so far); its state wins and it has no exit code yet
    scheduler, _ = _cluster(squeue="46368353_0|RUNNING|2026-12-04T06:57:34|1|0|\n", jobcomp=tmp_path / "jobcomp.log")
    [state] = scheduler.task_states(["46368353"])[0]
    assert (state.state, state.exit_code, state.attempts) == ("RUNNING", "", 2)
    # requeued again and waiting: squeue's start time is a forecast, not a start
    scheduler, _ = _cluster(squeue="46368353_0|PENDING|2026-12-04T06:59:04|2|0|\n", jobcomp=tmp_path / "jobcomp.log")
    [state] = scheduler.task_states(["46368353"])[0]
    assert (state.state, state.exit_code, state.attempts) == ("PENDING", "", 2)


def test_squeue_gives_the_restart_count_and_the_exit_codes_of_ended_tasks() -> None:
    scheduler, calls = _cluster(squeue=(DATA / "squeue-requeue.txt").read_text())
    states, _ = scheduler.task_states(JOBS)
    assert _by_task(states) == {
        ("46368352", 0): ("COMPLETED", "0:0", 3),
        ("46368352", 1): ("COMPLETED", "0:0", 3),
        ("46368353", 0): ("COMPLETED", "0:0", 3),
        ("46368355", None): ("FAILED", "3:0", 1),  # squeue's raw wait status 768
        ("46368356", None): ("FAILED", "0:9", 1),  # killed by signal 9
        ("46368357", None): ("COMPLETED", "0:0", 1),
    }
    assert [c[0] for c in calls] == ["sacct", "squeue"]


def test_a_running_task_has_no_exit_code_and_a_completed_one_known_only_to_squeue_has_0() -> None:
    # slurmdbd lags behind: sacct still says RUNNING (with 0:0) for a task squeue has seen complete
    sacct = "70_0|RUNNING|0:0|2024-01-01T10:00:00\n70_1|RUNNING|0:0|2024-01-01T10:00:00\n"
    squeue = "70_0|COMPLETED|2024-01-01T10:00:00|0|0|\n70_1|RUNNING|2024-01-01T10:00:00|0|0|\n70_2|PENDING|2024-01-01T10:05:00|0|0|\n"

    def fake(argv: list[str], **_: object) -> Reply:
        return Reply(0, sacct if argv[0] == "sacct" else squeue, "")

    states, source = Scheduler(fake).task_states(["70"])
    assert source == "sacct"
    assert _by_task(states) == {("70", 0): ("COMPLETED", "0:0", 1), ("70", 1): ("RUNNING", "", 1), ("70", 2): ("PENDING", "", 0)}


def _table(rows: list[TaskRow], subs: int = 1) -> list[str]:
    run = {"name": "x", "hash": "0" * 12, "tasks": len(rows), "run": "runs/x/000000000000", "task_rows": rows,
           "task_states": {}, "submissions": [{"kind": "submit", "jobs": [{}], "job_id": "1", "time": "t", "states": {},
                                              "failed": [], "not_queued": "", "log": None}] * subs}
    return format_runs([run], detail=True).splitlines()


def test_the_table_shows_no_exit_code_until_a_task_ended_and_tells_requeues_from_submissions() -> None:
    subs = group_submissions([{"job_id": "8", "sbatch": []}, {"job_id": "9", "sbatch": []}], 3)
    states = [TaskState("8", i, "COMPLETED", "0:0") for i in range(3)]
    states += [TaskState("9", 0, "COMPLETED", "0:0", 1), TaskState("9", 1, "RUNNING", "", 2), TaskState("9", 2, "PENDING", "", 0)]
    rows = task_rows(3, subs, states)
    assert [(r.state, r.exit_code, r.attempts, r.submissions, r.job_id) for r in rows] == [
        ("COMPLETED", "0:0", 1, 2, "9"), ("RUNNING", "", 2, 2, "9"), ("PENDING", "", 0, 2, "9")]
    table = _table(rows, subs=2)
    header = next(i for i, line in enumerate(table) if line.split()[:2] == ["task", "state"])
    assert table[header].split() == ["task", "state", "exit", "attempts", "submissions", "job"]
    assert [line.split() for line in table[header + 1:header + 4]] == [
        ["0", "COMPLETED", "0", "1", "2", "9"], ["1", "RUNNING", "-", "2", "2", "9"], ["2", "PENDING", "-", "0", "2", "9"]]
    assert "    requeued (started more than once by one job): tasks 1" in table
    assert "    queued by more than one submission: tasks 0-2" in table
    assert not any("started more than once: tasks 0" in line for line in table)


def test_two_plain_submissions_are_not_a_restart() -> None:
    subs = group_submissions([{"job_id": "8", "sbatch": []}, {"job_id": "9", "sbatch": []}], 1)
    rows = task_rows(1, subs, [TaskState("8", None, "COMPLETED", "0:0"), TaskState("9", None, "COMPLETED", "0:0")])
    assert [(r.attempts, r.submissions, r.job_id) for r in rows] == [(1, 2, "9")]
    table = _table(rows, subs=2)
    assert not any(line.lstrip().startswith("requeued") for line in table)
    assert "    queued by more than one submission: tasks 0" in table


def test_jobs_submitted_by_hand_from_a_run_directory_are_found_in_the_jobcomp_file(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x" / "0123456789ab"
    run.mkdir(parents=True)
    (run / "resolved.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    # the recorded file, as if job 46368352 (a.sh) had been submitted from the run directory and
    # 46368353 (b.sh, another name) too, and the plain jobs (named "wrap") from elsewhere
    text = (DATA / "jobcomp-requeue.log").read_text()
    text = "\n".join(line.replace("WorkDir=/tmp/wtcli-exp", f"WorkDir={run if 'ArrayJobId=4636835' in line else elsewhere}")
                     for line in text.splitlines())
    (tmp_path / "jobcomp.log").write_text(text + "\n")
    scheduler, _ = _cluster(jobcomp=tmp_path / "jobcomp.log")
    recorded = group_submissions([{"job_id": "46368300", "sbatch": []}], 2)
    subs = {run: recorded}
    runs.add_by_hand(subs, {run: "a.sh"}, scheduler=scheduler)
    assert [(s.kind, s.chunks[0].job_id, s.planned) for s in subs[run]] == [("submit", "46368300", [0, 1]),
                                                                          ("by hand", "46368352", [0, 1])]
    states, _ = scheduler.task_states([c.job_id for s in subs[run] for c in s.chunks])
    rows = task_rows(2, subs[run], states)
    assert [(r.state, r.attempts, r.submissions, r.job_id) for r in rows] == [("COMPLETED", 3, 2, "46368352")] * 2
    # a wrong work directory or name finds nothing
    subs = {run: []}
    runs.add_by_hand(subs, {run: "wrap"}, scheduler=scheduler)
    assert subs[run] == []
