"""run.pack on the real SLURM: several tasks per array task, each with its own folder, log and
status that `runs`, `logs` and `rerun --failed` speak of; and a requeued array task that goes
on at the task it was stopped in (the container is the bwrap double, tests/doubles/apptainer).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cluster import Cluster
from helpers.make_test_image import make_image
from test_requeue import COUNTER, signal_when_counting
from test_submit import Project

pytestmark = pytest.mark.slurm

FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL"}


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    p = Project(tmp_path, dbd_cluster)
    make_image(p.scratch / "containers" / "app.sif", {"opt/app/counter.py": COUNTER})
    return p


def _rows(project: Project, run: Path, timeout: float = 120) -> dict[int, dict]:
    """`runs RUN --format json` by task, once every task has a final state and an exit code."""
    deadline = time.monotonic() + timeout
    while True:
        proc = project.mcompile("runs", str(run), "--runs", str(project.runs), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        rows = {row["task"]: row for row in json.loads(proc.stdout)}
        if all(r["state"] in FINAL and r["exit_code"] is not None for r in rows.values()) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "submissions.jsonl").read_text().splitlines()]


def test_three_packed_array_tasks_of_four_points_one_failing_and_rerun_failed_reruns_that_point(project: Project) -> None:
    flags = project.scratch / "flags"
    flags.mkdir()
    # point (6) fails until the test writes flags/fixed; each point leaves its number in its own folder
    template = "echo {{ lr }} > /scratch_storage/lr; echo point $MCOMPILE_TASK; test {{ lr }} != 0.6 || test -e /flags/fixed || exit 3"
    lrs = [round(0.1 * i, 1) for i in range(12)]
    manifest = project.manifest("packed", {"pack": 4, "grid": {"template": template, "parameters": {"lr": lrs}}}, data=None,
                                container={"image": "$SCRATCH/containers/app.sif",
                                           "binds": [{"source": "$SCRATCH/flags", "target": "/flags", "mode": "ro"}]})
    run, job, proc = project.submit(manifest)
    assert "3 array tasks of up to 4, one task after the other" in proc.stderr, proc.stderr
    [record] = _records(run)
    assert (record["array"], record["tasks"], record["pack"]) == ("0-2", "0-11", 4)
    assert not any(a.startswith("--export=") and "MCOMPILE_TASK" in a for a in record["sbatch"])  # named in sbatch's environment
    project.cluster.wait_gone(job, timeout=180)

    rows = _rows(project, run)
    assert {t: (r["state"], r["exit_code"]) for t, r in rows.items()} == {
        t: ("FAILED", 3) if t == 6 else ("COMPLETED", 0) for t in range(12)}
    for t in range(12):
        assert (project.outputs("packed", job, t) / "lr").read_text() == f"{lrs[t]}\n"
    # SLURM's own view: three array tasks, the second one failed with its failing point's status
    sacct = project.cluster.sacct_until(job, "JobID,State,ExitCode", lambda r: len(r) == 3 and all(x[1] in FINAL for x in r),
                                        extra=("-X",))
    assert sorted((row[0], row[1], row[2]) for row in sacct) == [
        (f"{job}_0", "COMPLETED", "0:0"), (f"{job}_1", "FAILED", "3:0"), (f"{job}_2", "COMPLETED", "0:0")]
    assert (run / "packs" / f"{job}_1").read_text() == "4 started 0\n4 exited 0\n5 started 0\n5 exited 0\n6 started 0\n6 exited 3\n7 started 0\n7 exited 0\n"

    logs = project.mcompile("logs", str(run), "--runs", str(project.runs), "--task", "6")
    assert logs.returncode == 0, logs.stderr
    assert "point 6" in logs.stdout and "mcompile: task 6 exited with status 3" in logs.stdout and "point 7" not in logs.stdout
    failed = project.mcompile("logs", str(run), "--runs", str(project.runs))
    assert "task 6" in failed.stdout and "task 5" not in failed.stdout, failed.stdout

    (flags / "fixed").write_text("")
    rerun = project.mcompile("rerun", str(run), "--runs", str(project.runs), "--failed")
    assert rerun.returncode == 0, rerun.stderr
    assert "rerunning tasks 6" in rerun.stderr
    second = _records(run)[1]
    assert (second["kind"], second["array"], second["tasks"], second["pack"]) == ("rerun", "0", "6", 4)
    project.cluster.wait_gone(second["job_id"], timeout=120)
    rows = _rows(project, run)
    assert rows[6]["state"] == "COMPLETED" and rows[6]["job_id"] == second["job_id"]
    assert all(rows[t]["job_id"] == job and rows[t]["state"] == "COMPLETED" for t in range(12) if t != 6)
    assert (project.outputs("packed", second["job_id"], 6) / "lr").read_text() == "0.6\n"
    assert not project.outputs("packed", second["job_id"], 5).exists()  # that point alone
    assert (run / "packs" / f"{second['job_id']}_0").read_text() == "6 started 0\n6 exited 0\n"


def test_a_requeued_packed_array_task_resumes_its_stopped_point_and_runs_the_rest(project: Project) -> None:
    manifest = project.manifest("packcount", {"pack": 2, "commands": ["python3 /opt/app/counter.py 40", "echo second > /scratch_storage/ran"]},
                                data=None, resources={"time": "10m", "mem": "256M", "requeue": {"before_end": "2m", "max_restarts": 2}})
    run, job, _ = project.submit(manifest)
    first = project.outputs("packcount", job, 0)
    signal_when_counting(project, job, first / "checkpoint", 5)
    project.cluster.wait_gone(job, timeout=120)

    attempts = (first / "attempts").read_text().splitlines()
    assert len(attempts) == 2 and attempts[0] == "restart=0 from=0", attempts
    assert attempts[1].startswith("restart=1 ") and int(attempts[1].split("from=")[1]) > 5, attempts
    assert (first / "done").read_text() == "40"
    assert (project.outputs("packcount", job, 1) / "ran").read_text() == "second\n"
    assert (run / "packs" / f"{job}_0").read_text() == "0 started 0\n0 started 1\n0 exited 0\n1 started 1\n1 exited 0\n"
    rows = _rows(project, run)
    assert {t: (r["state"], r["attempts"]) for t, r in rows.items()} == {0: ("COMPLETED", 2), 1: ("COMPLETED", 1)}
    slurm_log = (project.scratch / "proj" / "hpc_outputs" / f"packcount_{job}_slurm.out").read_text()
    assert "array task 0 (tasks 0 1) stopped at the time-limit signal; requeueing it (restart 1 of 2)" in slurm_log
    point_log = (project.scratch / "proj" / "hpc_outputs" / f"packcount_{job}_0.out").read_text()
    assert "counter: stopped by SIGUSR1" in point_log and "mcompile: attempt 2 of task 0" in point_log


def test_cancelling_a_packed_task_cancels_its_array_task_and_says_which_tasks_go_with_it(project: Project) -> None:
    manifest = project.manifest("packsleep", {"pack": 2, "commands": ["sleep 60"] * 4}, data=None)
    run, job, _ = project.submit(manifest)
    started = run / "packs" / f"{job}_0"
    deadline = time.monotonic() + 60
    while not (started.exists() and "0 started" in started.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    done = project.mcompile("cancel", str(run), "--runs", str(project.runs), "--tasks", "1")
    assert done.returncode == 0, done.stderr
    assert "tasks 0 share a packed array task with the named ones (run.pack): cancelled with them" in done.stderr, done.stderr
    assert f"scancel {job}_[0]" in done.stderr, done.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # SLURM ends the cancelled array task, not the other one
        proc = project.mcompile("runs", str(run), "--runs", str(project.runs), "--format", "json")
        states = {row["task"]: row["state"].split()[0] for row in json.loads(proc.stdout)}
        if states[0] == states[1] == "CANCELLED":
            break
        time.sleep(0.5)
    assert states[0] == states[1] == "CANCELLED" and "CANCELLED" not in (states[2], states[3]), states
    rest = project.mcompile("cancel", str(run), "--runs", str(project.runs))
    assert rest.returncode == 0 and f"cancelled tasks 2-3 (scancel {job}_[1])" in rest.stderr, rest.stderr
    project.cluster.wait_gone(job, timeout=60)
    rows = _rows(project, run)
    assert {t: r["state"].split()[0] for t, r in rows.items()} == dict.fromkeys(range(4), "CANCELLED")


def test_a_packed_run_past_max_array_size_is_two_arrays_of_packs(tmp_path: Path, small_array_cluster: Cluster) -> None:
    """MaxArraySize=10: 25 tasks packed by 2 are 13 array tasks, as two arrays of at most 9."""
    project = Project(tmp_path, small_array_cluster)
    manifest = project.manifest("packbig", {"pack": 2, "commands": [f"echo {i} > /scratch_storage/i" for i in range(25)]}, data=None)
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs), "--submit")
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.split()[0])
    records = _records(run)
    assert [(r["array"], r["tasks"], r["pack"]) for r in records] == [("0-8", "0-17", 2), ("0-3", "18-24", 2)], proc.stderr
    for r in records:
        project.cluster.wait_gone(r["job_id"], timeout=180)
    rows = _rows(project, run)
    assert {t: r["state"] for t, r in rows.items()} == dict.fromkeys(range(25), "COMPLETED")
    for r in records:
        for t in range(int(r["tasks"].split("-")[0]), int(r["tasks"].split("-")[1]) + 1):
            assert (project.outputs("packbig", r["job_id"], t) / "i").read_text() == f"{t}\n"
            assert rows[t]["job_id"] == r["job_id"]
