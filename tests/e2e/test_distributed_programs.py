"""Distributed programs on the real 2-node dev cluster (n1, n2 at 127.0.0.1), no container.

The first tests run tests/programs/rendezvous.py under `srun` (the env:// variables taken
from SLURM_*) and the torchrun test double under `srun`, one per node. The others pin down
the Slurm 22.05 behaviour that job.sbatch's launchers rely on: what reaches a step's tasks
(SLURM_CPUS_PER_TASK, exported bash functions, SLURM_TMPDIR), a one-task-per-node step
inside a bigger allocation, and when a second step may start while one is running.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from cluster import Cluster

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
RENDEZVOUS = ROOT / "tests" / "programs" / "rendezvous.py"
TORCHRUN = ROOT / "tests" / "doubles" / "torchrun"
PYTHON = sys.executable

# MASTER_ADDR: the NodeAddr of the allocation's first node (n1/n2 do not resolve as host names).
MASTER_ADDR = """\
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_ADDR=$(scontrol show node "$first" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
export MASTER_ADDR
"""
# What the job script must do for run.launcher: srun (env:// variables from the step's task).
SRUN_ENV = 'RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID NODE_RANK=$SLURM_NODEID WORLD_SIZE=$SLURM_NTASKS exec "$@"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def batch(cluster: Cluster, tmp_path: Path, body: str, *sbatch_args: str, timeout: float = 90) -> tuple[str, str]:
    """Submit `#!/bin/bash` + body, wait until it has left the queue; (job id, its output)."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n" + body)
    out = tmp_path / "job.out"
    job = cluster.sbatch("-o", str(out), *sbatch_args, str(script))
    cluster.wait_gone(job, timeout=timeout)
    return job, out.read_text()


def lines_with(text: str, prefix: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.startswith(prefix))


def test_srun_rendezvous_two_nodes_two_tasks(filetxt_cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    body = (
        MASTER_ADDR
        + f"export MASTER_PORT={free_port()}\n"
        + f"srun bash -c '{SRUN_ENV}' srun-env {PYTHON} {RENDEZVOUS} --out {out} --timeout 30\n"
        + "echo srun-status=$?\n"
    )
    job, log = batch(filetxt_cluster, tmp_path, body, "-N2", "--ntasks-per-node=2")
    assert "srun-status=0" in log, log
    ranks = {r: json.loads((out / f"rank-{r}").read_text()) for r in range(4)}
    assert sorted(p.name for p in out.iterdir()) == [f"rank-{r}" for r in range(4)]
    for r, rec in ranks.items():
        hello = rec["hello"]
        assert rec["status"] == "ok"
        assert (hello["local_rank"], hello["node_rank"], hello["world_size"]) == (r % 2, r // 2, 4)
        assert hello["node"] == hello["env"]["SLURMD_NODENAME"] == f"n{r // 2 + 1}"
        assert hello["env"]["SLURM_PROCID"] == str(r)
        assert hello["env"]["SLURM_JOB_ID"] == job
        assert hello["env"]["MASTER_ADDR"] == "127.0.0.1"


def test_torchrun_double_one_per_node(filetxt_cluster: Cluster, tmp_path: Path) -> None:
    """One torchrun per node (a one-task-per-node step inside a 2 x 2 allocation)."""
    out = tmp_path / "ranks"
    body = (
        MASTER_ADDR
        + f"export MASTER_PORT={free_port()} TORCHRUN_RECORD_DIR={out}\n"
        + "srun --nodes=$SLURM_JOB_NUM_NODES --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 "
        + f"bash -c 'exec {TORCHRUN} --nnodes $SLURM_JOB_NUM_NODES --nproc-per-node 2 --node-rank $SLURM_NODEID "
        + "--master-addr $MASTER_ADDR --master-port $MASTER_PORT \"$@\"' torchrun "
        + f"{RENDEZVOUS} --out {out} --timeout 30\n"
        + "echo srun-status=$?\n"
    )
    job, log = batch(filetxt_cluster, tmp_path, body, "-N2", "--ntasks-per-node=2")
    assert "srun-status=0" in log, log
    for node in (0, 1):
        rec = json.loads((out / f"torchrun-node-{node}.json").read_text())
        assert rec["env"]["SLURMD_NODENAME"] == f"n{node + 1}"
        assert rec["options"]["node_rank"] == str(node)
    for r in range(4):
        rec = json.loads((out / f"rank-{r}").read_text())
        assert rec["status"] == "ok"
        assert (rec["hello"]["node"], rec["hello"]["local_rank"]) == (f"n{r // 2 + 1}", r % 2)


SHOW = 'echo "$1 $SLURM_PROCID $SLURMD_NODENAME cpus=${SLURM_CPUS_PER_TASK-unset}"'


def test_cpus_per_task_reaches_step_tasks(filetxt_cluster: Cluster, tmp_path: Path) -> None:
    """Batch job with --cpus-per-task=2: what srun's tasks see, and what srun allocates.

    Plain srun does not take -c from the job in 22.05 (SLURM_CPUS_PER_TASK is not read by
    srun), but the variable reaches the tasks anyway because srun passes the batch
    environment on. SRUN_CPUS_PER_TASK is what srun reads as -c.
    """
    body = (
        f"srun bash -c '{SHOW}' - plain\n"
        f"SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK srun bash -c '{SHOW}' - srun_cpus\n"
        f"(unset SLURM_CPUS_PER_TASK; srun bash -c '{SHOW}' - unset)\n"
        f"(unset SLURM_CPUS_PER_TASK; SRUN_CPUS_PER_TASK=2 srun bash -c '{SHOW}' - unset_srun_cpus)\n"
    )
    _, log = batch(filetxt_cluster, tmp_path, body, "-N2", "--ntasks-per-node=1", "--cpus-per-task=2")
    for kind, cpus in (("plain", "2"), ("srun_cpus", "2"), ("unset", "unset"), ("unset_srun_cpus", "2")):
        assert lines_with(log, kind + " ") == [f"{kind} 0 n1 cpus={cpus}", f"{kind} 1 n2 cpus={cpus}"], log

    # Does srun use -c 2 for its tasks? One node, -n1 -c2 (2 CPUs): two tasks fit only with -c 1.
    body = (
        f"srun -n2 bash -c '{SHOW}' - plain; echo plain-status=$?\n"
        f"SRUN_CPUS_PER_TASK=2 srun -n2 bash -c '{SHOW}' - srun_cpus 2>&1; echo srun_cpus-status=$?\n"
    )
    _, log = batch(filetxt_cluster, tmp_path, body, "-N1", "-n1", "--cpus-per-task=2")
    assert lines_with(log, "plain ") == ["plain 0 n1 cpus=2", "plain 1 n1 cpus=2"], log
    assert "plain-status=0" in log
    assert "Unable to create step for job" in log and "More processors requested than permitted" in log, log
    assert "srun_cpus-status=1" in log


def test_exported_functions_tmpdir_and_one_task_per_node(filetxt_cluster: Cluster, tmp_path: Path) -> None:
    body = (
        'fn() { echo "fn $SLURM_PROCID $SLURMD_NODENAME"; }\n'
        "export -f fn\n"
        "srun bash -c fn\n"
        "srun bash -c 'echo \"tmp $SLURM_PROCID $SLURMD_NODENAME $SLURM_TMPDIR $(test -d \"$SLURM_TMPDIR\" && echo exists)\"'\n"
        "srun --nodes=$SLURM_JOB_NUM_NODES --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 bash -c "
        "'echo \"per-node $SLURM_PROCID $SLURM_LOCALID $SLURM_NODEID $SLURMD_NODENAME $SLURM_NTASKS $SLURM_STEP_NUM_TASKS\"'\n"
        "srun --nodes=$SLURM_JOB_NUM_NODES --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 hostname | sed 's/^/hostname /'\n"
        'echo "batch $SLURM_NTASKS $SLURM_JOB_NUM_NODES"\n'
    )
    job, log = batch(filetxt_cluster, tmp_path, body, "-N2", "--ntasks-per-node=2")
    assert lines_with(log, "fn ") == ["fn 0 n1", "fn 1 n1", "fn 2 n2", "fn 3 n2"], log
    tmp = filetxt_cluster.dir / "tmp"
    assert lines_with(log, "tmp ") == [f"tmp {r} n{r // 2 + 1} {tmp}/n{r // 2 + 1}/job_{job} exists" for r in range(4)]
    # 2 tasks, one per node, numbered 0 and 1 within the step (not the allocation's 4)
    assert lines_with(log, "per-node ") == ["per-node 0 0 0 n1 2 2", "per-node 1 0 1 n2 2 2"], log
    assert lines_with(log, "hostname ") == [f"hostname {socket.gethostname()}"] * 2
    assert "batch 4 2" in log


# A second step while `srun sleep` (all the job's CPUs and memory) runs in the same allocation.
SECOND_STEP = """\
try() {{  # $1 label, $2 options of the first step, $3 options of the second
  srun $2 sleep {hold} &
  sleep 1.5
  t0=$EPOCHREALTIME
  timeout 30 srun $3 -N1 -n1 bash -c 'echo "$0 ran"' "$1" 2>&1
  status=$?
  echo "$1 status=$status after=$(( (${{EPOCHREALTIME/./}} - ${{t0/./}}) / 1000 ))ms"
  wait
}}
try plain "" ""
try overlap "" "--overlap"
try overlap_mem0 "" "--overlap --mem=0"
try both_overlap "--overlap" "--overlap"
"""


def test_second_step_while_one_runs(filetxt_cluster: Cluster, tmp_path: Path) -> None:
    hold = 4
    _, log = batch(filetxt_cluster, tmp_path, SECOND_STEP.format(hold=hold), "-N2", "--ntasks-per-node=2")

    def after(label: str) -> int:
        line = next(x for x in log.splitlines() if x.startswith(f"{label} status="))
        return int(line.rsplit("after=", 1)[1].removesuffix("ms"))

    # Without --overlap: srun waits ("step creation temporarily disabled") until the first ends.
    assert "plain ran" in log and "plain status=0" in log, log
    assert "step creation temporarily disabled, retrying (Requested nodes are busy)" in log
    assert after("plain") > (hold - 1.5 - 1) * 1000
    # --overlap on the second alone: the CPUs may be shared, the memory may not.
    assert "overlap status=1" in log and "Memory required by task is not available" in log, log
    # --overlap --mem=0, or --overlap on both steps: starts at once.
    for label in ("overlap_mem0", "both_overlap"):
        assert f"{label} ran" in log and f"{label} status=0" in log, log
        assert after(label) < 1000, log
