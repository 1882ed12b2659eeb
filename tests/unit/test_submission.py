"""Submission with a fake scheduler (tests/helpers/fake_slurm.py): chunks past MaxArraySize,
refusals by `sbatch --test-only` and by a later `sbatch --parsable`, completing a submission,
and rerun. The same on a real SLURM: tests/e2e/test_submit.py and test_rerun.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fake_slurm import FakeSlurm, exported, option

from manifest_compiler.errors import UsageError
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.slurm import Scheduler
from manifest_compiler.submissions import read_submissions
from manifest_compiler.submit import SubmitError, rerun, submit_run


def _compile(tmp_path: Path, ntasks: int, *, max_parallel: int | None = None) -> tuple[Path, Path]:
    """A compiled run of `ntasks` tasks whose image exists here: (run directory, manifest)."""
    image = tmp_path / "app.sif"
    image.write_text("image")
    secret = tmp_path / "key.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    manifest = tmp_path / "units.yaml"
    resources = "{time: 5m, mem: 256M" + (f", max_parallel: {max_parallel}" if max_parallel else "") + "}"
    manifest.write_text(
        f"version: 1\nname: units\nproject: p\ncontainer: {{image: {image}}}\nresources: {resources}\n"
        f"outputs: {{logs: {tmp_path}/logs, dir: {tmp_path}/out}}\n"
        f"secrets: {{API_KEY: {{file: {secret}}}}}\n"
        "run:\n  commands:\n" + "".join(f"    - 'echo {i}'\n" for i in range(ntasks)))
    return compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path, manifest


def test_a_run_past_max_array_size_is_tested_whole_then_queued_as_chained_arrays(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run, manifest = _compile(tmp_path, 25, max_parallel=2)
    monkeypatch.setenv("API_KEY", "in the submitting shell")
    monkeypatch.setenv("MCOMPILE_ARCHIVE_0", "left over")
    slurm = FakeSlurm(max_array_size=10)
    done = submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))

    assert done.jobs == ["100", "101", "102"]
    sbatch = [c.argv[1] for c in slurm.calls if c.argv[0] == "sbatch"]
    assert sbatch == ["--test-only"] * 3 + ["--parsable"] * 3  # every array tested before any is queued
    queued = slurm.sbatch("--parsable")
    assert [option(a, "--array") for a in queued] == ["0-8%2", "0-8%2", "0-6%2"]
    st = os.stat(tmp_path / "app.sif")
    image = f"{st.st_size}_{st.st_mtime_ns // 10**9}"  # the image's size and mtime, which the job compares
    assert [exported(a) for a in queued] == [{"MCOMPILE_IMAGE_STAT": image, "MCOMPILE_TASK_OFFSET": str(offset)}
                                             for offset in (0, 9, 18)]
    assert [option(a, "--dependency") for a in queued] == [None, "afterany:100", "afterany:101"]
    assert [option(a, "--output") for a in queued] == [f"{tmp_path}/logs/units_%A_%a.out"] + [f"{tmp_path}/logs/units_%A_slurm.out"] * 2
    assert [a[-1] for a in queued] == ["job.sbatch"] * 3
    for call in slurm.calls:
        if call.argv[0] == "sbatch":
            assert call.cwd == run and call.env is not None
            assert "API_KEY" not in call.env and "MCOMPILE_ARCHIVE_0" not in call.env

    records = read_submissions(run)
    assert [(r["job_id"], r["tasks"], r["offset"], r["array"], r["planned"], r["kind"]) for r in records] == [
        ("100", "0-8", 0, "0-8%2", "0-24", "submit"), ("101", "9-17", 9, "0-8%2", "0-24", "submit"),
        ("102", "18-24", 18, "0-6%2", "0-24", "submit")]
    assert [r["sbatch"] for r in records] == queued
    assert len({r["submission"] for r in records}) == 1
    assert done.notes == [
        "submitted job 100 (9 tasks: 0-8, array 0-8%2)", "submitted job 101 (9 tasks: 9-17, array 0-8%2)",
        "submitted job 102 (7 tasks: 18-24, array 0-6%2)",
        "25 tasks as 3 arrays (MaxArraySize 10); each array waits for the one before (max_parallel holds across them)",
        "expected to start around 2024-01-01 10:00:00 (sbatch --test-only, using 1 processors on nodes n1 in partition debug)"]


def test_a_single_task_is_one_job_without_an_array(tmp_path: Path) -> None:
    run, manifest = _compile(tmp_path, 1)
    slurm = FakeSlurm(max_array_size=None)  # not asked: one task needs no array
    done = submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert done.jobs == ["100"] and done.notes == ["submitted job 100 (task 0)", "expected to start around 2024-01-01 10:00:00 (sbatch --test-only, using 1 processors on nodes n1 in partition debug)"]
    [argv] = slurm.sbatch("--parsable")
    assert option(argv, "--array") is None and option(argv, "--output") == f"{tmp_path}/logs/units_%j_0.out"
    assert [c.argv[0] for c in slurm.calls] == ["sbatch", "sbatch"]


def test_a_refusal_by_test_only_stops_before_anything_is_queued(tmp_path: Path) -> None:
    run, manifest = _compile(tmp_path, 25)
    slurm = FakeSlurm(max_array_size=10, refuse=lambda argv: "More processors requested than permitted"
                      if exported(argv)["MCOMPILE_TASK_OFFSET"] == "9" else None)
    with pytest.raises(SubmitError) as info:
        submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert str(info.value) == ("SLURM refuses this job (tasks 9-17, array 2 of 3) (sbatch --test-only): "
                               "More processors requested than permitted; nothing was queued")
    assert info.value.submitted.jobs == []
    assert slurm.sbatch("--parsable") == [] and len(slurm.sbatch("--test-only")) == 2
    assert read_submissions(run) == []


def test_a_refused_later_array_records_what_was_queued_and_a_second_submit_queues_the_rest(tmp_path: Path) -> None:
    run, manifest = _compile(tmp_path, 25, max_parallel=3)
    slurm = FakeSlurm(max_array_size=10, refuse=lambda argv: "Job violates accounting/QOS policy"
                      if "--parsable" in argv and exported(argv)["MCOMPILE_TASK_OFFSET"] == "9" else None)
    with pytest.raises(SubmitError) as info:
        submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert str(info.value).split("\nmcompile: ") == [
        "sbatch failed for tasks 9-17 (array 2 of 3): Job violates accounting/QOS policy",
        "queued: job 100 (tasks 0-8)",
        "not queued: tasks 9-24",
        f"to queue them: mcompile rerun {run} --tasks 9-24 (or the same --submit again, which queues only these)"]
    assert info.value.submitted.jobs == ["100"]
    assert info.value.submitted.notes == ["submitted job 100 (9 tasks: 0-8, array 0-8%3)"]
    [first] = read_submissions(run)
    assert (first["job_id"], first["tasks"], first["planned"]) == ("100", "0-8", "0-24")
    assert len(slurm.sbatch("--parsable")) == 2  # nothing after the refused one

    again = FakeSlurm(max_array_size=10, squeue_state="RUNNING\n", next_job=200)  # job 100 still runs
    done = submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(again))
    assert done.jobs == ["200", "201"]
    assert done.notes[0] == (f"the latest submission ({first['submission']}) queued tasks 0-8 but not 9-24: queuing only those "
                             "(submit again afterwards for a whole new submission)")
    queued = again.sbatch("--parsable")
    assert [option(a, "--dependency") for a in queued] == ["afterany:100", "afterany:200"]  # max_parallel holds across them
    records = read_submissions(run)
    assert [(r["job_id"], r["tasks"], r["offset"], r["planned"]) for r in records] == [
        ("100", "0-8", 0, "0-24"), ("200", "9-17", 9, "0-24"), ("201", "18-24", 18, "0-24")]
    assert {r["submission"] for r in records} == {first["submission"]}

    whole = submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(FakeSlurm(max_array_size=10, next_job=300)))
    assert whole.jobs == ["300", "301", "302"] and not any("queuing only" in note for note in whole.notes)
    assert read_submissions(run)[-1]["submission"] != first["submission"]


def test_sbatch_refusing_the_only_array_records_nothing(tmp_path: Path) -> None:
    run, manifest = _compile(tmp_path, 3)
    slurm = FakeSlurm(refuse=lambda argv: "Invalid account or account/partition combination specified" if "--parsable" in argv else None)
    with pytest.raises(SubmitError, match="^sbatch failed: Invalid account or account/partition combination specified; "
                                          "nothing was queued or recorded, the run can be submitted again$"):
        submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert read_submissions(run) == []


def test_a_missing_image_is_refused_before_sbatch_runs(tmp_path: Path) -> None:
    run, manifest = _compile(tmp_path, 2)
    (tmp_path / "app.sif").unlink()
    slurm = FakeSlurm()
    with pytest.raises(SubmitError, match="^container image not found: ") as info:
        submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert slurm.calls == [] and info.value.submitted.jobs == []


def test_a_missing_read_only_overlay_is_refused_before_sbatch_runs(tmp_path: Path) -> None:
    """container.overlay: a read-only image must be there; a per-task one is left to the job."""
    image = tmp_path / "app.sif"
    image.write_text("image")
    manifest = tmp_path / "overlay.yaml"
    manifest.write_text(
        f"version: 1\nname: ov\nproject: p\nresources: {{time: 5m, mem: 256M}}\nrun: {{commands: [echo]}}\n"
        f"outputs: {{logs: {tmp_path}/logs, dir: {tmp_path}/out}}\n"
        f"container:\n  image: {image}\n  overlay:\n    - path: {tmp_path}/data.sqsh\n"
        f"    - {{path: '{tmp_path}/task-${{MCOMPILE_TASK}}.img', mode: rw}}\n")
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    slurm = FakeSlurm()
    with pytest.raises(SubmitError, match=f"^overlay image not found: {tmp_path}/data.sqsh \\(container.overlay\\[0\\].path\\)$"):
        submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert slurm.calls == []
    (tmp_path / "data.sqsh").write_text("squashfs")
    assert submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm)).jobs


def test_the_warnings_before_a_refusal_are_kept_for_the_user(tmp_path: Path) -> None:
    run, manifest = _compile(tmp_path, 2)
    (tmp_path / "key.txt").chmod(0o644)
    slurm = FakeSlurm(refuse=lambda argv: "Requested time limit is invalid (missing or exceeds some limit)")
    with pytest.raises(SubmitError, match="sbatch --test-only") as info:
        submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(slurm))
    assert info.value.submitted.notes == [
        f"warning: secret API_KEY: {tmp_path}/key.txt is readable by others (mode 0644); chmod 600 it"]


# --- rerun --------------------------------------------------------------------------------

SACCT = "100_0|COMPLETED|0:0|2024-01-01T10:00:00\n100_1|FAILED|1:0|2024-01-01T10:00:00\n" \
        "100_2|TIMEOUT|0:15|2024-01-01T10:00:00\n100_3|RUNNING|0:0|2024-01-01T10:00:00\n"


def _submitted(tmp_path: Path) -> Path:
    """A run of 5 tasks submitted as job 100."""
    run, manifest = _compile(tmp_path, 5)
    assert submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(FakeSlurm())).jobs == ["100"]
    return run


def test_rerun_failed_queues_the_failed_tasks_and_those_no_one_knows_of_are_said(tmp_path: Path) -> None:
    run = _submitted(tmp_path)
    slurm = FakeSlurm(sacct_states=SACCT, next_job=200)  # task 4: sacct and squeue know nothing of it
    done = rerun(run, tasks=None, failed=True, scheduler=Scheduler(slurm))
    assert done.jobs == ["200"]
    assert done.notes == [
        "warning: no state known for tasks 4 (accounting: sacct); they are not rerun; name them with --tasks if they should be",
        "rerunning tasks 1-2", "submitted job 200 (2 tasks: 1-2)",
        "expected to start around 2024-01-01 10:00:00 (sbatch --test-only, using 1 processors on nodes n1 in partition debug)"]
    [argv] = slurm.sbatch("--parsable")
    assert option(argv, "--array") == "1-2" and exported(argv)["MCOMPILE_TASK_OFFSET"] == "0"
    record = read_submissions(run)[-1]
    assert (record["kind"], record["tasks"], record["planned"], record["job_id"]) == ("rerun", "1-2", "1-2", "200")


def test_rerun_tasks_queues_those_and_with_failed_only_the_failed_among_them(tmp_path: Path) -> None:
    run = _submitted(tmp_path)
    slurm = FakeSlurm(sacct_states=SACCT, next_job=200)
    assert rerun(run, tasks="2-3", failed=True, scheduler=Scheduler(slurm)).notes[0] == "rerunning tasks 2"
    assert rerun(run, tasks="0,3", failed=False, scheduler=Scheduler(slurm)).jobs == ["201"]
    assert [option(a, "--array") for a in slurm.sbatch("--parsable")] == ["2", "0,3"]
    assert [r["tasks"] for r in read_submissions(run)] == ["0-4", "2", "0,3"]


def test_rerun_failed_with_nothing_failed_queues_nothing(tmp_path: Path) -> None:
    run = _submitted(tmp_path)
    slurm = FakeSlurm(sacct_states="".join(f"100_{i}|COMPLETED|0:0|2024-01-01T10:00:00\n" for i in range(5)))
    done = rerun(run, tasks=None, failed=True, scheduler=Scheduler(slurm))
    assert done.jobs == [] and done.notes == ["no failed tasks: every task completed, or is queued or running; nothing submitted"]
    assert slurm.sbatch("--test-only") == [] and len(read_submissions(run)) == 1


def test_rerun_without_tasks_or_with_a_task_outside_the_run_is_a_usage_error(tmp_path: Path) -> None:
    run = _submitted(tmp_path)
    slurm = FakeSlurm()
    with pytest.raises(UsageError, match="say which tasks"):
        rerun(run, tasks=None, failed=False, scheduler=Scheduler(slurm))
    with pytest.raises(UsageError, match="there is no task 5; this run has tasks 0-4"):
        rerun(run, tasks="3-5", failed=False, scheduler=Scheduler(slurm))
    assert slurm.calls == []
