"""Tests of the torchrun TEST DOUBLE (tests/doubles/torchrun), locally, without SLURM.

The workers are tests/programs/rendezvous.py, which checks RANK/LOCAL_RANK/NODE_RANK/
WORLD_SIZE across the whole world over sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DOUBLE = HERE / "torchrun"
PROGRAMS = HERE.parent / "programs"
RENDEZVOUS = PROGRAMS / "rendezvous.py"


# the interpreter the double runs on (`#!/usr/bin/env python3`), which it hands its workers
DOUBLE_PYTHON = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True,
                               check=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def options(nnodes: int, nproc: int, node_rank: int, port: int) -> list[str]:
    return [
        "--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--node-rank", str(node_rank),
        "--master-addr", "127.0.0.1", "--master-port", str(port),
    ]  # fmt: skip


def start(args: list[str], record_dir: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DOUBLE), *args],
        env={**os.environ, "TORCHRUN_RECORD_DIR": str(record_dir), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args: list[str], record_dir: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    proc = start(args, record_dir, **env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def ranks(out: Path) -> dict[int, dict]:
    return {int(p.name.split("-")[1]): json.loads(p.read_text()) for p in out.glob("rank-*")}


def test_one_node_three_processes(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "x.txt"
    data.write_text("payload\n")
    args = [*options(1, 3, 0, port), str(RENDEZVOUS), "--out", str(tmp_path), "--read", str(data)]
    proc = run(args, tmp_path, SLURM_JOB_ID="77", SLURM_PROCID="0", MCOMPILE_TASK="3")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "torchrun-node-0.json").read_text())
    assert rec["argv"] == args
    assert rec["mode"] == "script"
    assert rec["command"] == [DOUBLE_PYTHON, "-u", str(RENDEZVOUS), "--out", str(tmp_path), "--read", str(data)]
    assert rec["options"] == {
        "nnodes": "1", "nproc_per_node": "3", "node_rank": "0", "master_addr": "127.0.0.1",
        "master_port": str(port),
    }  # fmt: skip
    assert rec["env"]["SLURM_JOB_ID"] == "77" and rec["env"]["MCOMPILE_TASK"] == "3"
    got = ranks(tmp_path)
    assert sorted(got) == [0, 1, 2]
    for r, doc in got.items():
        assert doc["status"] == "ok"
        assert (doc["hello"]["local_rank"], doc["hello"]["node_rank"], doc["hello"]["world_size"]) == (r, 0, 3)
        env = doc["hello"]["env"]
        assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"] == str(port)
        assert env["LOCAL_WORLD_SIZE"] == "3" and env["GROUP_RANK"] == "0" and env["TORCHELASTIC_RUN_ID"] == "none"
        assert env["MCOMPILE_TASK"] == "3"  # the launcher's environment passes through
        assert doc["read"]["content"] == "payload\n"


def test_two_nodes_two_processes_each(tmp_path: Path) -> None:
    """Two stand-in "nodes" on localhost, as one torchrun per node under srun."""
    port = free_port()
    procs = [
        start(
            [*options(2, 2, node, port), str(RENDEZVOUS), "--out", str(tmp_path / "out")],
            tmp_path / "records",
            SLURMD_NODENAME=f"n{node + 1}",
            SLURM_NODEID=str(node),
        )
        for node in (1, 0)  # node 1 first: its rank 2 and 3 must retry until rank 0 listens
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    for node in (0, 1):
        rec = json.loads((tmp_path / "records" / f"torchrun-node-{node}.json").read_text())
        assert rec["options"]["node_rank"] == str(node)
        assert rec["env"]["SLURM_NODEID"] == str(node)
    got = ranks(tmp_path / "out")
    assert sorted(got) == [0, 1, 2, 3]
    for r, doc in got.items():
        hello = doc["hello"]
        assert (hello["rank"], hello["local_rank"], hello["node_rank"], hello["world_size"]) == (r, r % 2, r // 2, 4)
        assert hello["node"] == f"n{r // 2 + 1}"
        assert doc["status"] == "ok"


def test_module_and_no_python(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "m"
    proc = run([*options(1, 2, 0, port), "-m", "rendezvous", "--out", str(out)], tmp_path, PYTHONPATH=str(PROGRAMS))
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "torchrun-node-0.json").read_text())
    assert rec["mode"] == "module" and rec["command"] == [DOUBLE_PYTHON, "-u", "-m", "rendezvous", "--out", str(out)]
    assert sorted(ranks(out)) == [0, 1]

    out = tmp_path / "np"
    cmd = ["bash", "-c", 'printf "%s %s %s\\n" "$RANK" "$LOCAL_RANK" "$OMP_NUM_THREADS" > "$1/w-$RANK"', "bash", str(tmp_path)]
    proc = run(["--nnodes=1", "--nproc_per_node=2", *options(1, 2, 0, port)[4:], "--no-python", *cmd], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "torchrun-node-0.json").read_text())
    assert rec["mode"] == "no-python" and rec["command"] == cmd
    assert (tmp_path / "w-0").read_text() == "0 0 1\n"
    assert (tmp_path / "w-1").read_text() == "1 1 1\n"


BASE = options(2, 2, 0, 29500)


def with_value(option: str, value: str) -> list[str]:
    i = BASE.index(option)
    return [*BASE[:i], option, value, *BASE[i + 2 :], "train.py"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*BASE, "--standalone", "train.py"], "unsupported option: --standalone"),
        ([*BASE, "--max-restarts", "3", "train.py"], "unsupported option: --max-restarts"),
        (["--nproc-per-node", "2", "train.py"], "missing required option(s): --nnodes, --node-rank, --master-addr"),
        ([*BASE, "--rdzv-backend", "c10d", "train.py"], "unsupported option: --rdzv-backend"),
        (with_value("--nnodes", "1:2"), "--nnodes must be an integer >= 1, not '1:2'"),
        (with_value("--node-rank", "2"), "--node-rank 2 is not below --nnodes 2"),
        (with_value("--master-port", "http"), "--master-addr HOST --master-port PORT expected"),
        ([*BASE, "--nnodes", "2", "train.py"], "option --nnodes given twice"),
        ([*BASE, "--no-python", "-m", "train.py"], "--no-python and -m cannot be used together"),
        (BASE[:-1], "option --master-port needs a value"),
        (BASE, "missing the training script"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = run(argv, tmp_path, timeout=30)
    assert proc.returncode == 2, proc
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "torchrun-node-0.json").exists()


WORKER = """
import os, signal, sys, time
out = sys.argv[1]
rank = os.environ["RANK"]
def term(signum, frame):
    open(os.path.join(out, f"sig-{rank}"), "w").write(str(signum))
    sys.exit(0 if rank != "1" else 5)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGUSR1, lambda s, f: open(os.path.join(out, f"usr1-{rank}"), "w").write("1"))
open(os.path.join(out, f"up-{rank}"), "w").write("1")
if rank == os.environ.get("FAIL_RANK"):
    # fail once the others are up (their SIGTERM handler set): what is tested is that they are stopped
    others = [os.path.join(out, f"up-{r}") for r in range(int(os.environ["WORLD_SIZE"])) if str(r) != rank]
    while not all(os.path.exists(p) for p in others):
        time.sleep(0.01)
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


def test_a_failing_worker_stops_the_others(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = run([*options(1, 3, 0, 29500), str(script), str(tmp_path)], tmp_path, FAIL_RANK="2")
    assert proc.returncode == 3, proc.stderr
    assert "worker pid" in proc.stderr and "exited with status 3; stopping the other 2" in proc.stderr
    assert sorted(p.name for p in tmp_path.glob("sig-*")) == ["sig-0", "sig-1"]


def wait_for(paths: list[Path], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"timed out waiting for {paths}"
        time.sleep(0.05)


def test_signals_are_forwarded(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = start([*options(1, 2, 0, 29500), str(script), str(tmp_path)], tmp_path,
                 PET_SIGNALS_TO_HANDLE="SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    wait_for([tmp_path / "up-0", tmp_path / "up-1"])
    proc.send_signal(signal.SIGUSR1)
    wait_for([tmp_path / "usr1-0", tmp_path / "usr1-1"])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    # rank 0 exits 0 on SIGTERM and rank 1 exits 5: the first non-zero status wins
    assert proc.returncode == 5, err
    assert (tmp_path / "sig-0").read_text() == str(int(signal.SIGTERM))
    assert (tmp_path / "sig-1").read_text() == str(int(signal.SIGTERM))


def test_a_worker_killed_by_a_signal(tmp_path: Path) -> None:
    proc = run([*options(1, 1, 0, 29500), "--no-python", "bash", "-c", "kill -KILL $$"], tmp_path)
    assert proc.returncode == 128 + 9


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="the apptainer test double needs bwrap")
def test_inside_the_apptainer_double(tmp_path: Path) -> None:
    """As the job runs it: the image carries the double as /usr/local/bin/torchrun."""
    from helpers.make_test_image import make_image

    image = make_image(
        tmp_path / "app.sif",
        {"usr/local/bin/torchrun": DOUBLE.read_text(), "opt/app/rendezvous.py": RENDEZVOUS.read_text()},
    )
    out = tmp_path / "out"
    out.mkdir()
    argv = [
        str(HERE / "apptainer"), "exec", "--cleanenv", "--bind", f"{out}:/scratch_storage", str(image),
        "torchrun", *options(1, 2, 0, free_port()), "/opt/app/rendezvous.py",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((out / "torchrun-node-0.json").read_text())
    assert rec["command"] == ["/usr/bin/python3", "-u", "/opt/app/rendezvous.py"]
    assert sorted(ranks(out)) == [0, 1]


def test_without_sigusr1_in_pet_signals_to_handle_it_dies_of_sigusr1(tmp_path: Path) -> None:
    # like real torchrun: SIGUSR1 is not among the default --signals-to-handle
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k != "PET_SIGNALS_TO_HANDLE"}
    proc = subprocess.Popen([str(DOUBLE), *options(1, 2, 0, 29500), str(script), str(tmp_path)],
                            env={**env, "TORCHRUN_RECORD_DIR": str(tmp_path)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for([tmp_path / "up-0", tmp_path / "up-1"])
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=30) == -signal.SIGUSR1
        time.sleep(0.3)
        assert not list(tmp_path.glob("usr1-*"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the orphaned workers
