"""run.launcher srun and torchrun on the real 2-node dev cluster, through the runtime double.

Every rank runs tests/programs/rendezvous.py inside the container: it meets the others
at MASTER_ADDR:MASTER_PORT, checks RANK/LOCAL_RANK/NODE_RANK/WORLD_SIZE, reads a file
from its own node's staged /data and writes /scratch_storage/rank-<RANK>. local_tmp is
a per-node folder outside SLURM_TMPDIR, so the test sees each node's folder appear and
be removed by the job itself (the dev cluster's Epilog removes SLURM_TMPDIR on its own).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cluster import Cluster
from test_requeue import COUNTER, _count, _wait_for, signal_when_counting
from test_submit import Project

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
from helpers.make_test_image import make_image  # noqa: E402

CENSUS = """\
import json, os, pathlib, signal, time
out = pathlib.Path("/scratch_storage")
rank = os.environ.get("RANK", "0")
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
(out / f"ready-{rank}").write_text(str(os.getpid()))
got, deadline = [], time.monotonic() + 60
while time.monotonic() < deadline:
    info = signal.sigtimedwait([signal.SIGUSR1], 0.2)
    if info is not None:
        got.append(info.si_pid)
        deadline = min(deadline, time.monotonic() + 3)  # any duplicate arrives well within 3 s
(out / f"census-{rank}.json").write_text(json.dumps({"senders": got, "pid": os.getpid()}))
print(f"rank {rank}: {len(got)} SIGUSR1", flush=True)
"""


RENDEZVOUS = "python3 /opt/app/rendezvous.py --read /data/set/part0/rows.txt --out /scratch_storage --timeout 60"


class DistributedProject(Project):
    def __init__(self, root: Path, cluster: Cluster) -> None:
        super().__init__(root, cluster)
        make_image(self.scratch / "containers" / "app.sif", {
            "opt/app/rendezvous.py": (ROOT / "tests" / "programs" / "rendezvous.py").read_bytes(),
            "usr/local/bin/torchrun": (ROOT / "tests" / "doubles" / "torchrun").read_bytes(),
            "opt/app/counter.py": COUNTER,
            "opt/app/census.py": CENSUS.encode(),
        })
        self.local = root / "nodelocal"

    def distributed(self, name: str, run: dict, **resources: object) -> Path:
        return self.manifest(
            name, run,
            resources={"time": "5m", "mem": "256M", **resources},
            cluster={"local_tmp": f"{self.local}/$SLURMD_NODENAME"},
        )

    def ranks(self, name: str, job: str, task: int = 0) -> dict[int, dict]:
        out = self.outputs(name, job, task)
        return {int(p.name.split("-")[1]): json.loads(p.read_text()) for p in out.glob("rank-*")}


@pytest.fixture
def project(tmp_path: Path, filetxt_cluster: Cluster) -> DistributedProject:
    return DistributedProject(tmp_path, filetxt_cluster)


def _log(project: Project, name: str, job: str, task: int | None = None) -> str:
    suffix = f"{job}_{task}" if task is not None else f"{job}_0"
    return (project.scratch / "proj" / "hpc_outputs" / f"{name}_{suffix}.out").read_text()


def _hello(rank: dict) -> dict:
    return rank["hello"]


def test_srun_launcher_two_nodes_two_ranks_each(project: DistributedProject) -> None:
    manifest = project.distributed("ddp", {"launcher": "srun", "commands": [RENDEZVOUS]}, nodes=2, tasks_per_node=2)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=120)
    log = _log(project, "ddp", job)
    assert "mcompile: task 0 exited with status 0" in log, log
    ranks = project.ranks("ddp", job)
    assert sorted(ranks) == [0, 1, 2, 3], log
    assert {r: v["status"] for r, v in ranks.items()} == dict.fromkeys(range(4), "ok")
    seen = {(h["rank"], h["local_rank"], h["node_rank"], h["world_size"]) for h in map(_hello, ranks.values())}
    assert seen == {(0, 0, 0, 4), (1, 1, 0, 4), (2, 0, 1, 4), (3, 1, 1, 4)}, ranks
    assert {r: _hello(v)["node"] for r, v in ranks.items()} == {0: "n1", 1: "n1", 2: "n2", 3: "n2"}
    for rank in ranks.values():
        assert rank["read"]["content"] == "rows of part 0\n", rank  # read from its node's staged /data
        assert _hello(rank)["env"]["MCOMPILE_TASK"] == "0"
    # each node's own folder was made by the prepare step, and removed by the job at its end
    assert project.local.is_dir() and sorted(p.name for p in project.local.iterdir()) == ["n1", "n2"]
    assert [list(p.iterdir()) for p in project.local.iterdir()] == [[], []]
    assert log.count("mcompile: task 0 of 1") == 4  # one start line per rank


def test_each_rank_gets_the_cpus_per_task_of_the_manifest(project: DistributedProject) -> None:
    manifest = project.distributed("cpus", {"launcher": "srun", "commands": [RENDEZVOUS]}, nodes=2, cpus_per_task=2)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=120)
    ranks = project.ranks("cpus", job)
    assert sorted(ranks) == [0, 1], _log(project, "cpus", job)
    for rank in ranks.values():
        assert _hello(rank)["env"]["SLURM_CPUS_PER_TASK"] == "2", rank


def test_torchrun_launcher_one_container_per_node(project: DistributedProject) -> None:
    manifest = project.distributed("tr", {"launcher": "torchrun", "processes_per_node": 2,
                                          "commands": ["/opt/app/rendezvous.py --read /data/set/part0/rows.txt --out /scratch_storage"]},
                                   nodes=2)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=120)
    log = _log(project, "tr", job)
    assert "mcompile: task 0 exited with status 0" in log, log
    out = project.outputs("tr", job, 0)
    records = {p.name: json.loads(p.read_text()) for p in out.glob("torchrun-node-*.json")}
    assert sorted(records) == ["torchrun-node-0.json", "torchrun-node-1.json"], log
    for node, record in enumerate(records[f"torchrun-node-{i}.json"] for i in range(2)):
        argv = record["argv"]
        assert argv[:6] == ["--nnodes", "2", "--nproc-per-node", "2", "--node-rank", str(node)], argv
        assert argv[6:10] == ["--master-addr", "127.0.0.1", "--master-port", argv[9]], argv
        assert 20000 <= int(argv[9]) < 30000
        assert argv[-5:] == ["/opt/app/rendezvous.py", "--read", "/data/set/part0/rows.txt", "--out", "/scratch_storage"]
    ranks = project.ranks("tr", job)
    seen = {(h["rank"], h["local_rank"], h["node_rank"], h["world_size"]) for h in map(_hello, ranks.values())}
    assert seen == {(0, 0, 0, 4), (1, 1, 0, 4), (2, 0, 1, 4), (3, 1, 1, 4)}, ranks
    assert [list(p.iterdir()) for p in project.local.iterdir()] == [[], []]


def test_an_array_of_two_node_tasks(project: DistributedProject) -> None:
    manifest = project.distributed("arr2", {"launcher": "srun", "commands": [RENDEZVOUS, RENDEZVOUS + " "]}, nodes=2)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=180)
    for task in (0, 1):
        ranks = project.ranks("arr2", job, task)
        assert sorted(ranks) == [0, 1], _log(project, "arr2", job, task)
        assert {_hello(r)["env"].get("MCOMPILE_TASK") for r in ranks.values()} == {str(task)}


def test_a_node_that_cannot_prepare_fails_the_job_and_names_the_node(project: DistributedProject) -> None:
    project.local.mkdir()
    (project.local / "n2").write_text("a file where n2's local folder should be\n")
    manifest = project.distributed("bad", {"launcher": "srun", "commands": [RENDEZVOUS]}, nodes=2)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=120)
    log = _log(project, "bad", job)
    assert "mcompile: node n2: cannot create the task's folders" in log, log
    assert "preparing the nodes failed" in log
    assert not list(project.outputs("bad", job, 0).glob("rank-*"))
    n1 = project.local / "n1"  # n1's prepare step may be stopped before it made anything
    assert not n1.exists() or list(n1.iterdir()) == [], list(n1.iterdir())  # else it was cleaned up


def test_the_rank_step_is_allocated_cpus_per_task(tmp_path: Path, dbd_cluster: Cluster) -> None:
    """Since Slurm 22.05 srun does not inherit --cpus-per-task: the job exports SRUN_CPUS_PER_TASK."""
    project = DistributedProject(tmp_path, dbd_cluster)
    manifest = project.distributed("alloc", {"launcher": "srun", "commands": [RENDEZVOUS]}, cpus_per_task=2)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=120)
    ranks = project.ranks("alloc", job)
    assert _hello(ranks[0])["env"].get("SLURM_CPUS_PER_TASK") == "2", ranks
    rows = project.cluster.sacct_until(job, "JobID,JobName,AllocCPUS,State", lambda r: any(x[0] == f"{job}.2" for x in r))
    steps = {row[0]: row for row in rows}
    # step 0 prepares the node, step 1 runs the ranks, step 2 cleans up
    assert steps[f"{job}.1"][1] == "bash" and steps[f"{job}.1"][2] == "2", rows
    assert steps[f"{job}.1"][3] == "COMPLETED", rows


def test_every_rank_gets_the_time_limit_signal_and_the_task_is_requeued(project: DistributedProject) -> None:
    manifest = project.distributed("rq", {"launcher": "srun", "commands": ["python3 /opt/app/counter.py 40"]},
                                   nodes=2, requeue={"before_end": "1m", "max_restarts": 1})
    _, job, _ = project.submit(manifest)
    out = project.outputs("rq", job, 0)
    # both ranks counting (their SIGUSR1 handler set), not only the first: a program signalled
    # before it installs its handler dies of the signal, which is not what this test is about
    _wait_for(lambda: _count(out / "checkpoint-1") > 5, f"job {job}'s rank 1 to count past 5")
    signal_when_counting(project, job, out / "checkpoint-0", 5)
    project.cluster.wait_gone(job, timeout=120)
    log = _log(project, "rq", job)
    for rank in (0, 1):
        attempts = (out / f"attempts-{rank}").read_text().splitlines()
        assert len(attempts) == 2 and attempts[0] == "restart=0 from=0" and attempts[1].startswith("restart=1 "), (attempts, log)
        assert (out / f"done-{rank}").read_text() == "40"
        assert f"counter-{rank}: stopped by SIGUSR1" in log
    assert "requeueing it (restart 1 of 1)" in log and log.rstrip().endswith("exited with status 0"), log


@pytest.mark.parametrize("entry", ["run", "exec"])
def test_srun_ranks_get_the_time_limit_signal_once_each(project: DistributedProject, entry: str) -> None:
    """SLURM signals every process of the step and the runtime passes the signal on to the container's
    first process: the program must get it once (a second one interrupts a checkpoint)."""
    manifest = project.distributed("once", {"launcher": "srun", "commands": ["python3 /opt/app/census.py"]},
                                   nodes=2, tasks_per_node=2, requeue={"before_end": "1m", "max_restarts": 0})
    doc = yaml.safe_load(manifest.read_text())
    doc["container"]["entry"] = entry
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    _, job, _ = project.submit(manifest)
    out = project.outputs("once", job, 0)
    _wait_for(lambda: all((out / f"ready-{r}").exists() for r in range(4)), "every rank to start")
    project.cluster.run("scancel", "--batch", "--signal=USR1", job)
    project.cluster.wait_gone(job, timeout=120)
    log = _log(project, "once", job)
    census = {r: json.loads((out / f"census-{r}.json").read_text()) for r in range(4)}
    assert {r: len(c["senders"]) for r, c in census.items()} == {0: 1, 1: 1, 2: 1, 3: 1}, (census, log)
