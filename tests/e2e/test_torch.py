"""Real PyTorch and Lightning on the real 2-node dev cluster, in the apptainer double.

The doubles elsewhere (tests/doubles/torchrun, tests/programs/rendezvous.py) pin arguments
and environment; these tests run what users run: torch's own torchrun and its elastic agent,
DDP over gloo on CPU, and Lightning's SLURMEnvironment, installed by scripts/setup.sh into
their own venv on /usr/bin/python3 (tests/requirements-torch.txt). The container gets that
venv bound read-only at the same path, with its bin/ first on PATH.

The requeue tests use a real time limit (`time: 2m`, `before_end: 1m`): SLURM itself sends
the job script SIGUSR1 (`--signal=B:USR1@60`), not a `scancel --signal` shortcut.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cluster import Cluster
from test_submit import Project

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
TORCH_VENV = Path("/opt/mcompile/torch")
from helpers.make_test_image import make_image  # noqa: E402

if not (TORCH_VENV / ".mcompile-requirements").exists():
    pytest.skip(f"torch and lightning are not installed in {TORCH_VENV}: run scripts/setup.sh", allow_module_level=True)

PATH = f"{TORCH_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROGRAMS = ROOT / "tests" / "programs"


class TorchProject(Project):
    def __init__(self, root: Path, cluster: Cluster) -> None:
        super().__init__(root, cluster)
        make_image(self.scratch / "containers" / "app.sif", {
            "opt/app/ddp_train.py": (PROGRAMS / "ddp_train.py").read_bytes(),
            "opt/app/lightning_ranks.py": (PROGRAMS / "lightning_ranks.py").read_bytes(),
        })
        self.local = root / "nodelocal"

    def torch_manifest(self, name: str, run: dict, **resources: object) -> Path:
        return self.manifest(
            name, run, data=None, secrets=None,
            container={"image": "$SCRATCH/containers/app.sif",
                       "binds": [{"source": str(TORCH_VENV), "target": str(TORCH_VENV), "mode": "ro"}]},
            env={"PATH": PATH},
            resources={"time": "10m", "mem": "3G", **resources},
            cluster={"local_tmp": f"{self.local}/$SLURMD_NODENAME"},
        )

    def run_to_end(self, name: str, manifest: Path, timeout: float = 240) -> tuple[Path, str, str]:
        """Submit, wait until the job has left the queue: (run directory, job id, the task's log)."""
        run_dir, job, _ = self.submit(manifest)
        self.cluster.wait_gone(job, timeout=timeout)
        return run_dir, job, (self.scratch / "proj" / "hpc_outputs" / f"{name}_{job}_0.out").read_text()

    def results(self, name: str, job: str, prefix: str) -> dict[int, dict]:
        """Each rank's <prefix>-<rank>.json from the task's /scratch_storage."""
        out = self.outputs(name, job, 0)
        return {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in out.glob(f"{prefix}-*.json")}


@pytest.fixture
def project(tmp_path: Path, filetxt_cluster: Cluster) -> TorchProject:
    return TorchProject(tmp_path, filetxt_cluster)


def test_torchrun_ddp_two_nodes_two_processes(project: TorchProject) -> None:
    manifest = project.torch_manifest("ddp", {"launcher": "torchrun", "processes_per_node": 2,
                                              "commands": ["/opt/app/ddp_train.py --steps 6 --step-seconds 0.1"]}, nodes=2)
    _, job, log = project.run_to_end("ddp", manifest)
    assert "mcompile: task 0 exited with status 0" in log, log
    results = project.results("ddp", job, "result")
    assert sorted(results) == [0, 1, 2, 3], log
    assert {r["world_size"] for r in results.values()} == {4}
    assert len({r["checksum"] for r in results.values()}) == 1, results  # DDP kept the replicas equal
    for rank, r in results.items():
        env = r["env"]
        assert env["RANK"] == str(rank) and env["LOCAL_WORLD_SIZE"] == "2"
        # NODE_RANK is torchrun's node order: the node of SLURM_NODEID hosts ranks 2*id and 2*id+1
        assert int(env["NODE_RANK"]) == rank // 2 == int(env["GROUP_RANK"]), env
        assert r["node"] == f"n{rank // 2 + 1}", r
        assert r["ran"] == list(range(6))
    assert "cannot remove" not in log, log
    assert [list(p.iterdir()) for p in project.local.iterdir()] == [[], []]


def test_lightning_srun_two_nodes_two_tasks(project: TorchProject) -> None:
    manifest = project.torch_manifest("pl", {"launcher": "srun", "commands": [
        "python /opt/app/lightning_ranks.py --nodes 2 --devices 2 --steps 4"]}, nodes=2, tasks_per_node=2)
    _, job, log = project.run_to_end("pl", manifest)
    assert "mcompile: task 0 exited with status 0" in log, log
    results = project.results("pl", job, "lightning")
    assert sorted(results) == [0, 1, 2, 3], log
    seen = {(r["global_rank"], r["local_rank"], r["node_rank"], r["world_size"], r["node"]) for r in results.values()}
    assert seen == {(0, 0, 0, 4, "n1"), (1, 1, 0, 4, "n1"), (2, 0, 1, 4, "n2"), (3, 1, 1, 4, "n2")}, results
    for r in results.values():
        assert r["environment"] == "SLURMEnvironment" and str(r["main_port"]) == r["master_port_env"], r
        assert r["steps"] == 4
    assert len({r["checksum"] for r in results.values()}) == 1, results


def _requeue_at_the_time_limit(project: TorchProject, name: str, run: dict, **resources: object) -> tuple[str, str]:
    manifest = project.torch_manifest(name, run, **{"time": "2m", "requeue": {"before_end": "1m", "max_restarts": 1},
                                                   "nodes": 2, **resources})
    run_dir, job, log = project.run_to_end(name, manifest, timeout=420)
    assert "#SBATCH --signal=B:USR1@60" in (run_dir / "job.sbatch").read_text()
    # every worker got the time-limit signal once, checkpointed, and resumed on attempt 2
    for rank in range(4):
        signals = log.count(f"rank {rank}: got SIGUSR1")
        assert signals == 1, log
        assert f"rank {rank}: checkpointed at step" in log, log
        assert re.search(rf"rank {rank}: resumed at step [1-9][0-9]* \(MCOMPILE_RESTART=1\)", log), log
    stopped = log.index("requeueing it (restart 1 of 1)")
    second = log.index("mcompile: task 0 of 1", stopped)
    assert not re.search(r"rank \d: step \d+", log[stopped:second]), log[stopped:second]
    assert "step creation temporarily disabled" not in log and "cannot remove" not in log, log
    assert log.rstrip().endswith("mcompile: task 0 exited with status 0"), log
    results = project.results(name, job, "result")
    assert sorted(results) == [0, 1, 2, 3], log
    first = {r["first_step"] for r in results.values()}
    assert len(first) == 1 and first.pop() > 0 and all(r["ran"][-1] == 299 for r in results.values()), results
    assert all(r["env"]["MCOMPILE_RESTART"] == "1" for r in results.values())
    rows = json.loads(project.mcompile("runs", name, "--runs", str(project.runs), "--format", "json").stdout)
    assert [(row["state"], row["attempts"]) for row in rows] == [("COMPLETED", 2)], rows
    return job, log


def test_torchrun_requeue_at_the_real_time_limit(project: TorchProject) -> None:
    _requeue_at_the_time_limit(project, "trq", {
        "launcher": "torchrun", "processes_per_node": 2,
        "commands": ["/opt/app/ddp_train.py --steps 300 --step-seconds 0.5 --resumed-step-seconds 0.01"]})


def test_srun_requeue_at_the_real_time_limit(project: TorchProject) -> None:
    run = {"launcher": "srun",
           "commands": ["python /opt/app/ddp_train.py --steps 300 --step-seconds 0.5 --resumed-step-seconds 0.01"]}
    _requeue_at_the_time_limit(project, "srq", run, tasks_per_node=2)
