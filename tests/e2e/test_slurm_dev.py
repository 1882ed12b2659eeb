"""End-to-end checks of scripts/slurm-dev.sh: a real local SLURM cluster.

Brings up a throw-away cluster (slurmctld + slurmd + munged, and slurmdbd +
MariaDB for ``--accounting dbd``) in a pytest temp dir, runs real jobs on it,
and tears it down by pid.  Needs root (it starts slurmd and may apt-get the
Debian packages on first use); skipped otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cluster import Cluster, _script

pytestmark = pytest.mark.slurm

# ----------------------------------------------------------------- dbd cluster


def test_status_and_idempotent_up(dbd_cluster: Cluster) -> None:
    status = _script("status", "--dir", str(dbd_cluster.dir), timeout=30)
    assert status.returncode == 0, status.stdout + status.stderr
    for daemon in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"):
        assert daemon in status.stdout
    assert "idle" in status.stdout
    # A second `up` with the same settings leaves the running cluster alone.
    again = _script("up", "--dir", str(dbd_cluster.dir), timeout=60)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr


def test_batch_job_output_tmpdir_and_sacct(dbd_cluster: Cluster) -> None:
    out = dbd_cluster.dir / "hello.out"
    job = dbd_cluster.sbatch("-o", str(out), "--wrap", 'echo hi; echo $SLURM_TMPDIR; test -d "$SLURM_TMPDIR" && echo tmpdir-exists')
    dbd_cluster.wait_gone(job)
    lines = out.read_text().splitlines()
    assert lines[0] == "hi"
    tmpdir = Path(lines[1])
    assert tmpdir == dbd_cluster.dir / "tmp" / "n1" / f"job_{job}"
    assert lines[2] == "tmpdir-exists"
    assert not tmpdir.exists(), "Epilog should remove the per-job SLURM_TMPDIR"
    rows = dbd_cluster.sacct_until(job, "State,ExitCode", lambda r: len(r) >= 2 and all(x == ["COMPLETED", "0:0"] for x in r))
    assert rows[0] == ["COMPLETED", "0:0"]


def test_array_tasks_in_sacct(dbd_cluster: Cluster) -> None:
    out = dbd_cluster.dir / "array-%A_%a.out"
    job = dbd_cluster.sbatch("-a", "0-2", "-o", str(out), "--wrap", "echo task $SLURM_ARRAY_TASK_ID")
    dbd_cluster.wait_gone(job)
    want = {f"{job}_{i}" for i in range(3)}
    rows = dbd_cluster.sacct_until(
        job, "JobID,State", lambda r: want <= {x[0] for x in r} and all(x[1] == "COMPLETED" for x in r), extra=("-X",)
    )
    assert {x[0] for x in rows} == want
    for i in range(3):
        assert (dbd_cluster.dir / f"array-{job}_{i}.out").read_text().strip() == f"task {i}"


@pytest.mark.parametrize("gres", ["gpu:1", "gpu:testgpu:1"])
def test_gres_gpu_jobs_run(dbd_cluster: Cluster, gres: str) -> None:
    out = dbd_cluster.dir / f"gres-{gres.replace(':', '_')}.out"
    job = dbd_cluster.sbatch(f"--gres={gres}", "-o", str(out), "--wrap", "echo gpus=$SLURM_GPUS_ON_NODE")
    dbd_cluster.wait_gone(job)
    assert out.read_text().strip() == "gpus=1"
    dbd_cluster.sacct_until(job, "State,ExitCode", lambda r: bool(r) and r[0] == ["COMPLETED", "0:0"], extra=("-X",))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-c", "999"), "More processors requested than permitted"),
        (("--mem=999999999",), "Requested node configuration is not available"),
        (("--gres=gpu:99",), "Requested node configuration is not available"),
        (("-p", "nosuchpartition"), "invalid partition specified"),
    ],
)
def test_test_only_rejections(dbd_cluster: Cluster, args: tuple[str, ...], message: str) -> None:
    proc = dbd_cluster.run("sbatch", "--test-only", *args, "--wrap", "true", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_requeue_sets_restart_count(dbd_cluster: Cluster) -> None:
    out = dbd_cluster.dir / "requeue.out"
    job = dbd_cluster.sbatch(
        "-o", str(out), "--open-mode=append", "--wrap", "echo restart=${SLURM_RESTART_COUNT:-0}; sleep 4; echo end"
    )
    deadline = time.monotonic() + 30
    while "restart=0" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, "job did not start"
        time.sleep(0.3)
    dbd_cluster.run("scontrol", "requeue", job)
    dbd_cluster.wait_gone(job, timeout=90)
    text = out.read_text()
    assert "restart=1" in text, text
    assert text.rstrip().endswith("end"), text


# ------------------------------------------------------------- filetxt cluster


def test_filetxt_two_nodes_and_jobcomp(filetxt_cluster: Cluster) -> None:
    c = filetxt_cluster
    out = c.dir / "mpi.out"
    job = c.sbatch("-N2", "-n2", "-o", str(out), "--wrap", "srun bash -c 'echo rank=$SLURM_PROCID node=$SLURMD_NODENAME'")
    c.wait_gone(job)
    assert sorted(out.read_text().split("\n")[:2]) == ["rank=0 node=n1", "rank=1 node=n2"]
    # No database: plain sacct refuses, the jobcomp file (sacct -c) has the job.
    assert "accounting storage is disabled" in c.run("sacct", check=False).stderr.lower()
    deadline = time.monotonic() + 20
    while True:
        proc = c.run("sacct", "-c", "-j", job, "-n", "-o", "JobID,State", check=False)
        if f"{job} " in proc.stdout and "COMPLETED" in proc.stdout:
            break
        assert time.monotonic() < deadline, proc.stdout + proc.stderr
        time.sleep(0.5)
    jobcomp = (c.dir / "jobcomp.log").read_text()
    assert f"JobId={job} " in jobcomp and "JobState=COMPLETED" in jobcomp
