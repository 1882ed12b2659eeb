"""run.pack: several tasks per array task, each with its own folders, log and status.

The job script runs with bash outside SLURM (SLURM's variables set by hand, tests/helpers/jobs.py)
through the apptainer test double (tests/doubles/apptainer, bubblewrap), as tests/test_job_script.py
does; the pieces that read what it records (the chunks of a submission, the states of packed
tasks) are tested on what it wrote. The real SLURM runs it in tests/e2e/test_pack.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.jobs import run_task
from helpers.make_test_image import make_image

from manifest_compiler.jobdir import PackedTask, read_pack_record, read_run_head
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.runs import packed_state
from manifest_compiler.slurm import TaskState
from manifest_compiler.submissions import Chunk
from manifest_compiler.submit import ChunkPlan, plan_packed_chunks

needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap") and not os.environ.get("CI"), reason="bubblewrap is not installed")

# task 4 fails; every task leaves its number and its folder's name in its /scratch_storage
COMMANDS = [f"echo task {i} > /scratch_storage/ran; exit {3 if i == 4 else 0}" for i in range(7)]


def _compile(tmp: Path, commands: list[str] = COMMANDS, pack: int = 3, **resources: object) -> Path:
    doc = {
        "version": 1, "name": "packed", "project": "proj",
        "container": {"image": "$SCRATCH/containers/app.sif"},
        "resources": {"time": "10m", "mem": "1G", **resources},
        "run": {"pack": pack, "commands": commands},
        "outputs": {"logs": "$SCRATCH/logs"},
    }
    (tmp / "m.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return compile_manifest(str(tmp / "m.yaml"), runs_dir=str(tmp / "runs")).run.path


@pytest.fixture
def dirs(tmp_path: Path, stand_in_env: dict[str, str]) -> dict[str, str]:
    scratch, local = tmp_path / "scratch", tmp_path / "local"
    (scratch / "containers").mkdir(parents=True)
    local.mkdir()
    make_image(scratch / "containers" / "app.sif", {"opt/app/marker": "x\n"})
    return {**stand_in_env, "SCRATCH": str(scratch), "SLURM_TMPDIR": str(local), "HOME": str(tmp_path)}


def _slot(run: Path, index: int, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return run_task(run, index, job=500, env={**env, **extra}, text=True)


@needs_bwrap
def test_an_array_task_runs_its_tasks_in_order_each_with_its_folder_log_and_status(tmp_path: Path, dirs: dict[str, str]) -> None:
    run = _compile(tmp_path)
    assert read_run_head(run).pack == 3
    proc = _slot(run, 1, dirs)  # tasks 3, 4, 5 of 0-6
    assert proc.returncode == 3, proc.stderr  # the first failing status
    assert "array task 1 (tasks 3 4 5) exited with status 3" in proc.stderr
    scratch = Path(dirs["SCRATCH"])
    for task in (3, 4, 5):
        assert (scratch / "proj" / "packed" / f"500_{task}" / "ran").read_text() == f"task {task}\n"
        log = (scratch / "logs" / f"packed_500_{task}.out").read_text()
        assert f"mcompile: attempt 1 of task {task} (job 500_{task}, SLURM job 501) started" in log
        assert f"mcompile: task {task} exited with status {3 if task == 4 else 0}" in log
    assert not (scratch / "proj" / "packed" / "500_2").exists() and not (scratch / "proj" / "packed" / "500_6").exists()
    assert (run / "packs" / "500_1").read_text() == "3 started 0\n3 exited 0\n4 started 0\n4 exited 3\n5 started 0\n5 exited 0\n"
    assert read_pack_record(run, "500", 1) == {3: PackedTask([0], 0), 4: PackedTask([0], 3), 5: PackedTask([0], 0)}
    assert list(Path(dirs["SLURM_TMPDIR"]).iterdir()) == []  # every task's node-local folder removed, and the shared one
    # the image was copied to node-local disk once, for the three tasks
    calls = [json.loads(line) for line in Path(dirs["APPTAINER_DOUBLE_LOG"]).read_text().splitlines()]
    assert [c["image"] for c in calls] == [f"{dirs['SLURM_TMPDIR']}/mcompile-500_pack1/image.sif"] * 3


@needs_bwrap
def test_the_last_array_task_runs_what_is_left(tmp_path: Path, dirs: dict[str, str]) -> None:
    run = _compile(tmp_path)
    proc = _slot(run, 2, dirs)
    assert proc.returncode == 0, proc.stderr
    assert (run / "packs" / "500_2").read_text() == "6 started 0\n6 exited 0\n"
    assert "array task 3 has no tasks" in _slot(run, 3, dirs).stderr + (run / "packs").name  # past the end: one line
    assert _slot(run, 3, dirs).returncode == 1


@needs_bwrap
def test_a_submission_names_the_tasks_of_its_array(tmp_path: Path, dirs: dict[str, str]) -> None:
    run = _compile(tmp_path, pack=2)
    assert _slot(run, 0, dirs, MCOMPILE_TASKS="1,4-5,06").returncode == 3  # tasks 1 and 4
    assert _slot(run, 1, dirs, MCOMPILE_TASKS="1,4-5,06").returncode == 0  # tasks 5 and 6 (a leading zero is decimal)
    assert (run / "packs" / "500_0").read_text() == "1 started 0\n1 exited 0\n4 started 0\n4 exited 3\n"
    assert (run / "packs" / "500_1").read_text() == "5 started 0\n5 exited 0\n6 started 0\n6 exited 0\n"
    bad = _slot(run, 0, dirs, MCOMPILE_TASKS="1;rm -rf /")
    assert bad.returncode == 1 and "MCOMPILE_TASKS must list task numbers (e.g. 0-7,9), not '1;rm -rf /'" in bad.stderr


@needs_bwrap
def test_a_requeued_array_task_goes_on_at_its_first_unended_task(tmp_path: Path, dirs: dict[str, str]) -> None:
    run = _compile(tmp_path)
    (run / "packs").mkdir()
    # the first attempt ended task 0 and was stopped in task 1
    (run / "packs" / "500_0").write_text("0 started 0\n0 exited 0\n1 started 0\n")
    proc = _slot(run, 0, dirs, SLURM_RESTART_COUNT="1")
    assert proc.returncode == 0, proc.stderr
    assert (run / "packs" / "500_0").read_text() == "0 started 0\n0 exited 0\n1 started 0\n1 started 1\n1 exited 0\n2 started 1\n2 exited 0\n"
    scratch = Path(dirs["SCRATCH"])
    assert not (scratch / "proj" / "packed" / "500_0").exists()  # not run again
    assert "mcompile: attempt 2 of task 1" in (scratch / "logs" / "packed_500_1.out").read_text()
    assert read_pack_record(run, "500", 0)[1] == PackedTask([0, 1], 0)


@needs_bwrap
def test_the_time_limit_signal_stops_the_array_task_between_tasks(tmp_path: Path, dirs: dict[str, str]) -> None:
    """SIGUSR1 (resources.requeue) reaches the running task's program; no later task starts. The
    requeue itself (scontrol) is SLURM's: here a stand-in scontrol records it; tests/e2e/test_pack.py
    requeues for real."""
    commands = ["trap 'echo got USR1 > /scratch_storage/signal; exit 0' USR1; touch /scratch_storage/up; while :; do sleep 0.1; done",
                "echo never > /scratch_storage/ran"]
    run = _compile(tmp_path, commands, pack=2, requeue={"before_end": "1m"})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.calls\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**dirs, "PATH": f"{bin_dir}:{dirs['PATH']}"}
    from helpers.jobs import slurm_env
    job = subprocess.Popen(["bash", str(run / "job.sbatch")], env=slurm_env(run, 0, job=500, base=env), cwd="/",
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    up = Path(dirs["SCRATCH"]) / "proj" / "packed" / "500_0" / "up"
    for _ in range(300):
        if up.exists():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert up.exists()
    os.kill(job.pid, 10)  # SIGUSR1 to the batch shell, as --signal=B:USR1 sends it
    _, err = job.communicate(timeout=60)
    assert job.returncode == 0, err
    log = (Path(dirs["SCRATCH"]) / "logs" / "packed_500_0.out").read_text()
    assert (up.parent / "signal").exists(), err + log
    assert (up.parent / "signal").read_text() == "got USR1\n"
    assert not (Path(dirs["SCRATCH"]) / "proj" / "packed" / "500_1").exists()  # no task starts after the signal
    assert (run / "packs" / "500_0").read_text() == "0 started 0\n"  # task 0 not ended: it starts again when requeued
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 500_0\n"
    assert "array task 0 (tasks 0 1) stopped at the time-limit signal; requeueing it (restart 1 of 3)" in err
    assert list(Path(dirs["SLURM_TMPDIR"]).iterdir()) == []  # cleaned up before the requeue


def test_packed_chunks_take_pack_tasks_per_index_and_bound_the_list() -> None:
    assert plan_packed_chunks(range(10), 1001, 4) == [ChunkPlan(0, tuple(range(10)), 4)]
    assert [c.indices for c in plan_packed_chunks(range(10), 1001, 4)] == [[0, 1, 2]]
    # MaxArraySize 3: two indices per array, 4 tasks each
    assert [c.tasks for c in plan_packed_chunks(range(10), 3, 4)] == [tuple(range(8)), (8, 9)]
    assert ChunkPlan(0, (1, 4, 5, 9), 2).env() == {"MCOMPILE_TASKS": "1,4-5,9"}
    scattered = plan_packed_chunks(range(0, 20000, 2), 100001, 4)  # 10,000 single-task ranges
    assert [len(c.tasks) for c in scattered] == [4096, 4096, 1808]
    assert ChunkPlan(5, (5, 6)).env() == {}


def test_a_packed_chunk_maps_tasks_to_array_indices() -> None:
    chunk = Chunk("7", 1, [1, 4, 5, 9, 12], {"job_id": "7", "pack": 2})
    assert [chunk.index(t) for t in chunk.tasks] == [0, 0, 1, 1, 2]
    assert chunk.packed_with(1) == [5, 9]
    by_hand = Chunk("8", 0, [3, 4, 5], {"job_id": "8", "pack": 3, "listed": "0-6"})
    assert [by_hand.index(t) for t in by_hand.tasks] == [1, 1, 1]
    assert Chunk("9", 10, [10, 12], {"job_id": "9"}).index(12) == 2


def test_a_packed_task_takes_its_own_status_else_its_array_tasks_state() -> None:
    running = TaskState("7", 0, "RUNNING", "", 1)
    assert packed_state(running, PackedTask([0], 3)) == TaskState("7", 0, "FAILED", "3:0", 1)
    assert packed_state(running, PackedTask([0], 0)).state == "COMPLETED"
    assert packed_state(running, PackedTask([0], None)).state == "RUNNING"
    waiting = packed_state(running, None)
    assert waiting.state == "PENDING" and "earlier task" in waiting.reason
    timeout = TaskState("7", 0, "TIMEOUT", "0:15", 1)
    assert packed_state(timeout, PackedTask([0], None)) == timeout
    assert packed_state(timeout, None) == timeout
    requeued = TaskState("7", 0, "PENDING", "", 2, "BeginTime")
    assert packed_state(requeued, PackedTask([0, 1], None)).state == "PENDING"
    assert packed_state(TaskState("7", 0, "COMPLETED", "0:0", 2), PackedTask([0, 1], 0)).attempts == 2
    assert packed_state(None, PackedTask([0], 0)) is None


def test_the_logs_of_tasks_that_log_themselves_are_named_from_slurms_file() -> None:
    from manifest_compiler.plan import own_logs_pattern

    assert own_logs_pattern("/s/logs/packed_123_slurm.out") == "/s/logs/packed_123_%a.out"
    assert own_logs_pattern("/s/logs/grid_123_%a.out") == "/s/logs/grid_123_%a.out"


def test_a_run_of_one_task_records_no_pack(tmp_path: Path) -> None:
    """Nothing to pack: it resolves, hashes and runs as without run.pack (and its head says so)."""
    run = _compile(tmp_path, ["echo one"], pack=4)
    assert read_run_head(run).pack == 1
    assert "pack" not in json.loads((run / "resolved.json").read_text())["run"] and "Packed" not in (run / "plan.txt").read_text()
