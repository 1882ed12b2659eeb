"""W&B on a cluster without internet, on the real SLURM: the real `wandb` client (PyPI, in the
torch venv of scripts/setup.sh, bound into the container; the container is the apptainer test
double) writes offline runs whose id is the run's hash and the task's number, a rerun of a task
writes to the same W&B run, and `mcompile sync` uploads each folder once.

No W&B server can be reached here: `mcompile sync` runs a recording stand-in of the wandb CLI
(a script that logs its arguments and whether it was given an API key) instead of uploading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cluster import Cluster
from test_submit import SECRET, Project

pytestmark = pytest.mark.slurm

TORCH_VENV = Path("/opt/mcompile/torch")
if not (TORCH_VENV / "bin" / "wandb").exists():
    pytest.skip(f"wandb is not installed in {TORCH_VENV}: run scripts/setup.sh", allow_module_level=True)

PROGRAM = ("python -c 'import os, wandb; run = wandb.init(); run.log({\"task\": int(os.environ[\"MCOMPILE_TASK\"])}); "
           "print(\"wandb\", run.id, run.group, run.project); run.finish()'")
STAND_IN = """#!/usr/bin/python3
# a recording stand-in of the wandb CLI: no W&B server can be reached here
import json, os, sys
with open(os.environ["WANDB_STAND_IN_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "key": os.environ.get("WANDB_API_KEY")}) + "\\n")
"""


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    return Project(tmp_path, dbd_cluster)


def test_offline_runs_keep_their_id_across_a_rerun_and_sync_uploads_each_once(project: Project, tmp_path: Path) -> None:
    manifest = project.manifest(
        "wb", {"commands": [PROGRAM, PROGRAM]}, data=None,
        container={"image": "$SCRATCH/containers/app.sif",
                   "binds": [{"source": str(TORCH_VENV), "target": str(TORCH_VENV), "mode": "ro"}]},
        env={"PATH": f"{TORCH_VENV}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/scratch_storage"},
        wandb={"mode": "offline", "project": "study"},
        resources={"time": "5m", "mem": "2G"},
    )
    run_dir, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=180)
    hash12 = run_dir.name
    for task in (0, 1):
        log = (project.scratch / "proj" / "hpc_outputs" / f"wb_{job}_{task}.out").read_text()
        assert f"wandb {hash12}-{task} wb-{hash12} study" in log, log
        [folder] = (project.outputs("wb", job, task) / "wandb").glob("offline-run-*")
        assert folder.name.endswith(f"-{hash12}-{task}") and list(folder.glob("*.wandb")), folder

    again = project.mcompile("rerun", "wb", "--tasks", "1", "--runs", str(project.runs))
    assert again.returncode == 0, again.stderr
    [job2] = again.stdout.split()
    project.cluster.wait_gone(job2, timeout=180)
    [rerun_folder] = (project.outputs("wb", job2, 1) / "wandb").glob("offline-run-*")
    assert rerun_folder.name.endswith(f"-{hash12}-1")  # the same W&B run: W&B merges the two on sync

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wandb").write_text(STAND_IN)
    (bin_dir / "wandb").chmod(0o755)
    log = tmp_path / "wandb-calls.jsonl"
    env = project.env(PATH=f"{bin_dir}:{os.environ['PATH']}", WANDB_STAND_IN_LOG=str(log))
    env.pop("WANDB_API_KEY", None)
    first = project.mcompile("sync", "wb", "--runs", str(project.runs), env=env)
    assert first.returncode == 0, first.stderr
    assert "3 W&B run folder(s) uploaded, 0 already uploaded" in first.stderr
    [call] = [json.loads(line) for line in log.read_text().splitlines()]
    assert call["argv"][0] == "sync" and sorted(Path(p).name for p in call["argv"][1:]) == sorted(
        p.name for p in (*project.outputs("wb", job, 0).glob("wandb/offline-run-*"),
                         *project.outputs("wb", job, 1).glob("wandb/offline-run-*"), rerun_folder))
    assert call["key"] == SECRET  # from secrets.WANDB_API_KEY's file, in the environment only
    second = project.mcompile("sync", "wb", "--runs", str(project.runs), env=env)
    assert second.returncode == 0 and "0 W&B run folder(s) uploaded, 3 already uploaded" in second.stderr
    assert len(log.read_text().splitlines()) == 1  # nothing run again
    records = [json.loads(line) for line in (run_dir / "wandb-synced.jsonl").read_text().splitlines()]
    assert sorted(r["task"] for r in records) == [0, 1, 1]


# Logs a step every 0.1 s to an offline W&B run, keeping its step in /scratch_storage; on SIGUSR1
# (the time-limit signal, forwarded by the job) it finishes the run and exits 0, to be requeued.
COUNTER = """\
import os, pathlib, signal, time, wandb
out = pathlib.Path("/scratch_storage")
checkpoint = out / "step"
step = int(checkpoint.read_text()) if checkpoint.exists() else 0
run = wandb.init()
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
print("wandb", run.id, "from", step, flush=True)
while step < 40 and not stop:
    time.sleep(0.1)
    step += 1
    run.log({"value": step})
    checkpoint.write_text(str(step))
run.finish()
print("stopped" if stop else "done", step, flush=True)
"""


def test_a_requeued_task_resumes_the_same_offline_run_in_the_same_folder(project: Project) -> None:
    from helpers.make_test_image import make_image
    from test_requeue import signal_when_counting

    make_image(project.scratch / "containers" / "app.sif", {"opt/app/wb_counter.py": COUNTER})
    manifest = project.manifest(
        "wbq", {"commands": ["python /opt/app/wb_counter.py"]}, data=None,
        container={"image": "$SCRATCH/containers/app.sif",
                   "binds": [{"source": str(TORCH_VENV), "target": str(TORCH_VENV), "mode": "ro"}]},
        env={"PATH": f"{TORCH_VENV}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/scratch_storage"},
        wandb={"mode": "offline", "project": "study"},
        resources={"time": "10m", "mem": "2G", "requeue": {"before_end": "2m", "max_restarts": 1}},
    )
    run_dir, job, _ = project.submit(manifest)
    out = project.outputs("wbq", job, 0)
    signal_when_counting(project, job, out / "step", 5)
    project.cluster.wait_gone(job, timeout=240)
    hash12 = run_dir.name
    log = (project.scratch / "proj" / "hpc_outputs" / f"wbq_{job}_0.out").read_text()
    assert "requeueing it (restart 1 of 1)" in log and "done 40" in log, log
    starts = [line.split() for line in log.splitlines() if line.startswith("wandb ")]
    assert [s[1] for s in starts] == [f"{hash12}-0", f"{hash12}-0"], log  # the same W&B run id after the requeue
    assert int(starts[0][3]) == 0 and int(starts[1][3]) > 5  # resumed from its step
    folders = sorted((out / "wandb").glob("offline-run-*"))  # the same task folder: W&B merges them on sync
    assert len(folders) == 2 and all(f.name.endswith(f"-{hash12}-0") and list(f.glob("*.wandb")) for f in folders), folders
