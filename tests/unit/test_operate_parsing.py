"""The reading behind logs, cancel, efficiency and start estimates: what SLURM prints (through the
scheduler's injectable runner) and what the logs hold. The verbs on the real SLURM: tests/e2e/test_operate.py."""

from __future__ import annotations

from pathlib import Path

from helpers.fake_slurm import FakeSlurm

from manifest_compiler.efficiency import TaskEfficiency, summarise
from manifest_compiler.logs import split_attempts
from manifest_compiler.slurm import Reply, Scheduler, Usage, parse_duration, parse_size

SACCT_USAGE = """\
5_0|COMPLETED|00:00:08|00:30:00|00:04.512|2||1G
5_0.batch|COMPLETED|00:00:08||00:04.512|2|216340K|
5_0.extern|COMPLETED|00:00:08||00:00:00|2|0|
5_1|RUNNING|00:00:03|00:30:00|00:00:00|2||1G
6|FAILED|1-02:00:00|UNLIMITED|10:00:00|4|9.10G|4000Mc
"""


def _answer(stdout: str, returncode: int = 0):  # a runner that answers every command so
    def runner(argv: list[str], **_: object) -> Reply:
        return Reply(returncode, stdout, "" if returncode == 0 else "sacct: error: Slurm accounting storage is disabled\n")
    return runner


def test_usage_reads_the_allocation_and_the_largest_step_of_finished_tasks_only() -> None:
    usage = Scheduler(_answer(SACCT_USAGE)).usage(["5", "6"])
    assert usage == [Usage("5", 0, "COMPLETED", 8, 1800, 4.512, 2, 216340 * 1024, 1 << 30),
                     Usage("6", None, "FAILED", 93600, None, 36000.0, 4, int(9.10 * (1 << 30)), 4000 * (1 << 20) * 4)]
    assert Scheduler(_answer("", 1)).usage(["5"]) is None  # no accounting database: not available


def test_durations_and_sizes_as_sacct_prints_them() -> None:
    assert [parse_duration(x) for x in ("00:08", "01:02:03", "2-00:00:01", "UNLIMITED", "")] == [8, 3723, 172801, None, None]
    assert [parse_size(x) for x in ("216340K", "1G", "0", "")] == [216340 * 1024, 1 << 30, 0, None]


def test_test_only_gives_the_start_estimate_and_squeue_the_pending_reason() -> None:
    scheduler = Scheduler(FakeSlurm())
    tried = scheduler.try_job([], "job.sbatch", cwd=Path("."), env={})
    assert (tried.refusal, tried.start, tried.where) == (None, "2024-01-01T10:00:00", "using 1 processors on nodes n1 in partition debug")
    squeue = "7_[0-2]|PENDING|N/A|0|0|Priority|\n8_0|RUNNING|2024-01-01T10:00:00|0|0|None|\n"
    states, _ = Scheduler(FakeSlurm(squeue_states=squeue)).task_states(["7", "8"])
    assert {(s.job_id, s.task): s.reason for s in states} == {("7", 0): "Priority", ("7", 1): "Priority", ("7", 2): "Priority",
                                                              ("8", 0): ""}


def test_cancel_passes_every_target_to_one_scancel_and_says_why_it_failed() -> None:
    calls: list[list[str]] = []

    def runner(argv: list[str], **_: object) -> Reply:
        calls.append(argv)
        return Reply(1, "", "scancel: error: Invalid job id 9_[1\n") if "9_[1" in argv else Reply(0, "", "")

    assert Scheduler(runner).cancel(["5", "6_[1,3]"]) is None
    assert Scheduler(runner).cancel(["9_[1"]) == "Invalid job id 9_[1"
    assert calls[0] == ["scancel", "5", "6_[1,3]"]


def test_advice_where_a_request_is_far_off_and_none_where_it_is_close() -> None:
    gib = 1 << 30
    far = [TaskEfficiency(600, 12 * 3600, 0.16, 8, int(9.1 * gib), 64 * gib), TaskEfficiency(300, 12 * 3600, 0.16, 8, 5 * gib, 64 * gib)]
    run = summarise(far, mem_text="64G", time_text="0-12:00:00", cpus_text="8")
    assert run is not None and run.advice == [
        "`mem: 64G` used 9.1G at most: 12G would do",
        "`time: 0-12:00:00` took 10m at most: 25m would do",
        "`cpus_per_task: 8` kept 1.3 busy on average: 2 would do"]
    assert run.lines()[0] == ("efficiency (2 finished tasks, sacct): elapsed 10m at most of 12h00m (1%); "
                              "CPU 16% busy on average (8 CPUs); memory 9.1G at most of 64G (14%)")
    close = summarise([TaskEfficiency(3000, 3600, 0.9, 4, 3 * gib, 4 * gib)], mem_text="4G", time_text="1h", cpus_text="4")
    assert close is not None and close.advice == []
    assert summarise([], mem_text=None, time_text=None, cpus_text=None) is None


def test_a_log_splits_at_the_attempt_lines_of_its_task() -> None:
    log = ("slurmstepd: something before\n"
           "mcompile: attempt 1 of task 3 (job 12_3, SLURM job 15) started\nfirst\n"
           "mcompile: attempt 2 of task 3 (job 12_3, SLURM job 15) started\nsecond\n"
           "mcompile: attempt 1 of task 4 (job 12_4, SLURM job 16) started\n")  # another task's line is text
    parts = split_attempts(log, task=3)
    assert [(restart, job) for restart, job, _ in parts] == [(None, ""), (0, "15"), (1, "15")]
    assert parts[2][2].endswith("second\nmcompile: attempt 1 of task 4 (job 12_4, SLURM job 16) started\n")


def test_where_each_chunk_and_a_by_hand_job_logged_a_task(tmp_path: Path) -> None:
    from manifest_compiler.logs import chunk_log
    from manifest_compiler.submissions import Chunk

    first = Chunk("100", 0, list(range(9)), {"job_id": "100", "kind": "submit",
                                            "sbatch": ["sbatch", "--output=/logs/big_%A_%a.out", "job.sbatch"]})
    later = Chunk("101", 9, list(range(9, 18)), {"job_id": "101", "kind": "rerun",
                                                "sbatch": ["sbatch", "--output=/logs/big_%A_slurm.out", "job.sbatch"]})
    by_hand = Chunk("102", 0, [0, 1], {"job_id": "102"})
    assert chunk_log(tmp_path, first, 4, "big", array=True).path == Path("/logs/big_100_4.out")
    log = chunk_log(tmp_path, later, 12, "big", array=True)  # logs itself under its run-wide number
    assert (log.path, log.slurm_path, log.kind) == (Path("/logs/big_101_12.out"), Path("/logs/big_101_slurm.out"), "rerun")
    # by hand (no --output of its own): the task logs itself into the log folder ...
    assert chunk_log(tmp_path, by_hand, 1, "big", array=True, by_hand_logs="/logs").path == Path("/logs/big_102_1.out")
    assert chunk_log(tmp_path, Chunk("103", 0, [0], {"job_id": "103"}), 0, "one", array=False).path == tmp_path / "slurm-103.out"
    # ... unless job.sbatch names its own --output (a log folder without variables)
    (tmp_path / "job.sbatch").write_text("#!/bin/bash\n#SBATCH --job-name=p-big\n#SBATCH --output=/own/big_%A_%a.out\nset -e\n")
    assert chunk_log(tmp_path, by_hand, 1, "big", array=True, by_hand_logs="/logs").path == Path("/own/big_102_1.out")
