"""The scheduler adapter through its injectable runner: what SLURM prints read into typed results,
the merging of the record (sacct, else the jobcomp file) with squeue's live view, and SLURM out of
reach. Recorded output of a real cluster: tests/test_runs_states.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.fake_slurm import FakeSlurm

from manifest_compiler.errors import OperationError
from manifest_compiler.slurm import DEFAULT_MAX_ARRAY_SIZE, ClusterJob, Reply, Scheduler, TaskState


def _by_task(states: list[TaskState]) -> dict[tuple[str, int | None], tuple[str, str, int]]:
    return {(s.job_id, s.task): (s.state, s.exit_code, s.attempts) for s in states}


def test_squeue_wins_over_sacct_where_it_knows_a_task_and_the_attempts_are_the_larger_count() -> None:
    sacct = ("7_0|REQUEUED|0:0|2024-01-01T10:00:00\n7_0|RUNNING|0:0|2024-01-01T10:05:00\n"  # requeued once, runs again
             "7_1|COMPLETED|0:0|2024-01-01T10:00:00\n7_2|FAILED|2:0|2024-01-01T10:00:00\n")
    squeue = "7_0|COMPLETED|2024-01-01T10:05:00|1|0|\n7_2|FAILED|2024-01-01T10:00:00|0|512|\n7_3|PENDING|2024-01-01T11:00:00|0|0|\n"
    states, source = Scheduler(FakeSlurm(sacct_states=sacct, squeue_states=squeue)).task_states(["7"])
    assert source == "sacct"
    assert _by_task(states) == {("7", 0): ("COMPLETED", "0:0", 2), ("7", 1): ("COMPLETED", "0:0", 1),
                                ("7", 2): ("FAILED", "2:0", 1), ("7", 3): ("PENDING", "", 0)}


def test_without_accounting_the_jobcomp_file_named_by_scontrol_is_the_record(tmp_path: Path) -> None:
    jobcomp = tmp_path / "jobcomp.log"
    line = "JobId={id} UserId=u(1) GroupId=g(1) Name=p-x JobState={state} Partition=debug TimeLimit=5 " \
           "StartTime={start} EndTime=2024-01-01T10:09:00 NodeList=n1 NodeCnt=1 ProcCnt=1 WorkDir=/r " \
           "ExitCode={code} ArrayJobId=9 ArrayTaskId={task}\n"
    jobcomp.write_text(
        line.format(id=10, state="TIMEOUT", start="2024-01-01T10:00:00", code="0:15", task=1)
        + line.format(id=10, state="PENDING", start="2024-01-01T10:00:00", code="0:15", task=1)  # the requeue's line
        + line.format(id=11, state="COMPLETED", start="2024-01-01T10:00:00", code="0:0", task=0))
    slurm = FakeSlurm(jobcomp=jobcomp, sacct_states=None, squeue_states="9_1|RUNNING|2024-01-01T10:10:00|1|0|\n")
    states, source = Scheduler(slurm).task_states(["9"])
    assert source == "squeue+jobcomp"
    assert _by_task(states) == {("9", 0): ("COMPLETED", "0:0", 1), ("9", 1): ("RUNNING", "", 2)}
    # squeue forgot task 1 (MinJobAge): the record says it was requeued, with no exit code yet
    states, _ = Scheduler(FakeSlurm(jobcomp=jobcomp, sacct_states=None)).task_states(["9"])
    assert _by_task(states)[("9", 1)] == ("REQUEUED", "", 1)


def test_scontrol_is_asked_once_per_scheduler(tmp_path: Path) -> None:
    slurm = FakeSlurm(max_array_size=10, jobcomp=tmp_path / "none.log", sacct_states=None)
    scheduler = Scheduler(slurm)
    assert scheduler.max_array_size() == (10, None)
    scheduler.task_states(["1"])
    scheduler.task_states(["2"])
    assert [c.argv[0] for c in slurm.calls].count("scontrol") == 1


def test_slurm_out_of_reach_answers_nothing_but_sbatch_is_an_error() -> None:
    def missing(argv: list[str], **_: object) -> Reply:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    scheduler = Scheduler(missing)
    assert scheduler.task_states(["5"]) == ([], "squeue+jobcomp")
    assert scheduler.jobs_named(["p-x"], 0) == []
    assert not scheduler.still_queued("5")
    size, note = scheduler.max_array_size()
    assert size == DEFAULT_MAX_ARRAY_SIZE and note is not None and "assuming SLURM's default 1001" in note
    with pytest.raises(OperationError, match="^sbatch not found: is this a SLURM login node"):
        scheduler.test_only([], "job.sbatch", cwd=Path("."), env={})

    def slow(argv: list[str], **_: object) -> Reply:
        raise TimeoutError(f"{argv[0]} did not answer")

    assert Scheduler(slow).task_states(["5"]) == ([], "squeue+jobcomp")
    with pytest.raises(OperationError, match="^sbatch did not answer within 120 s"):
        Scheduler(slow).submit([], "job.sbatch", cwd=Path("."), env={})


def test_sbatch_parsable_gives_the_job_id_or_the_reason_there_is_none() -> None:
    def answer(stdout: str, code: int = 0, stderr: str = "") -> Scheduler:
        return Scheduler(lambda argv, **_: Reply(code, stdout, stderr))

    ok = answer("4711;cluster-a\n").submit(["--array=0-3"], "job.sbatch", cwd=Path("."), env={})
    assert (ok.job_id, ok.argv) == ("4711", ["sbatch", "--parsable", "--array=0-3", "job.sbatch"])
    odd = answer("Submitted batch job 4711\n").submit([], "job.sbatch", cwd=Path("."), env={})
    assert (odd.job_id, odd.refusal) == (None, "it printed no job id: 'Submitted batch job 4711'")
    refused = answer("", 1, "sbatch: error: Batch job submission failed: Invalid qos specification\n").submit(
        [], "job.sbatch", cwd=Path("."), env={})
    assert (refused.job_id, refused.refusal) == (None, "Batch job submission failed: Invalid qos specification")
    assert answer("", 1, "").test_only([], "job.sbatch", cwd=Path("."), env={}) == "exit status 1"


def test_jobs_by_name_come_from_squeue_and_sacct_with_their_work_directory() -> None:
    slurm = FakeSlurm(squeue_jobs="12_[2-3%1]|/runs/x/abc|2024-01-01T10:00:00|\n",
                      sacct_jobs="12_0|/runs/x/abc|2024-01-01T10:00:00\n13|/elsewhere|2024-01-01T10:01:00\n")
    assert Scheduler(slurm).jobs_named(["p-x"], 0) == [
        ClusterJob("12", [2, 3], "/runs/x/abc", "2024-01-01T10:00:00"),
        ClusterJob("12", [0], "/runs/x/abc", "2024-01-01T10:00:00"),
        ClusterJob("13", [None], "/elsewhere", "2024-01-01T10:01:00")]
    [by_name] = [c.argv for c in slurm.calls if c.argv[0] == "sacct"]
    assert by_name[by_name.index("--name") + 1] == "p-x"
