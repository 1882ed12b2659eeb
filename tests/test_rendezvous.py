"""tests/programs/rendezvous.py: 4 local processes on a free port, no SLURM."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "programs" / "rendezvous.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), *args],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def world(ranks: list[dict[str, str]], *args: str) -> list[tuple[int, str]]:
    """Start one process per env dict (rank 0 last, so the others retry), wait for all."""
    procs = [start(env, *args) for env in sorted(ranks, key=lambda e: e["RANK"] == "0")]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        results.append((proc.returncode, err))
    return results


def rank_env(rank: int, world_size: int, local: int, node: int, port: int, **extra: str) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(local),
        "NODE_RANK": str(node),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        **extra,
    }


def test_four_ranks_two_nodes_read_and_stamp(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data.txt"
    data.write_text("rows of the subset\n")
    out = tmp_path / "out"
    envs = [
        rank_env(r, 4, r % 2, r // 2, port, SLURMD_NODENAME=f"n{r // 2 + 1}", SLURM_PROCID=str(r), MCOMPILE_TASK="7")
        for r in range(4)
    ]
    results = world(envs, "--out", str(out), "--read", str(data), "--stamp", "--timeout", "30")
    assert all(code == 0 for code, _ in results), results
    assert sorted(p.name for p in out.iterdir()) == [f"rank-{r}" for r in range(4)] + [f"start-{r}" for r in range(4)]
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    for r in range(4):
        rec = json.loads((out / f"rank-{r}").read_text())
        assert rec["status"] == "ok"
        assert rec["rank"] == r
        assert rec["read"]["content"] == "rows of the subset\n"
        assert rec["read"]["sha256"] == sha
        hello = rec["hello"]
        assert (hello["local_rank"], hello["node_rank"], hello["node"]) == (r % 2, r // 2, f"n{r // 2 + 1}")
        assert hello["env"]["SLURM_PROCID"] == str(r)
        assert hello["env"]["MCOMPILE_TASK"] == "7"
        assert [h["rank"] for h in rec["world"]] == [0, 1, 2, 3]
        started = float((out / f"start-{r}").read_text())
        assert started == pytest.approx(hello["started"], abs=1e-5)
        assert started <= rec["all_arrived"] <= rec["finished"]


def test_one_node_default_node_is_the_hostname(tmp_path: Path) -> None:
    port = free_port()
    env = {"SLURMD_NODENAME": ""}
    results = world([{**rank_env(r, 3, r, 0, port), **env} for r in range(3)], "--out", str(tmp_path), "--timeout", "30")
    assert all(code == 0 for code, _ in results), results
    rec = json.loads((tmp_path / "rank-2").read_text())
    assert rec["hello"]["node"] == socket.gethostname()
    assert rec["read"] is None


def test_duplicate_rank_is_reported_by_rank_0(tmp_path: Path) -> None:
    port = free_port()
    envs = [rank_env(r, 4, r, 0, port) for r in (0, 1, 2, 2)]
    envs[3]["LOCAL_RANK"] = "3"
    results = world(envs, "--out", str(tmp_path), "--timeout", "30")
    assert all(code == 1 for code, _ in results), results
    messages = "\n".join(err for _, err in results)
    assert "rendezvous: rank 0: duplicate RANK 2 (" in messages, messages
    assert "missing RANK [3]" in messages
    assert messages.count("rank 0 reported: duplicate RANK 2") == 3, messages
    rec = json.loads((tmp_path / "rank-0").read_text())
    assert rec["status"] == "error"


def test_inconsistent_local_and_node_ranks(tmp_path: Path) -> None:
    port = free_port()
    envs = [
        rank_env(0, 4, 0, 0, port, SLURMD_NODENAME="n1"),
        rank_env(1, 4, 0, 0, port, SLURMD_NODENAME="n1"),  # LOCAL_RANK 0 twice on n1
        rank_env(2, 4, 0, 0, port, SLURMD_NODENAME="n2"),  # NODE_RANK 0 on two nodes
        rank_env(3, 4, 1, 1, port, SLURMD_NODENAME="n2"),  # and n2 has two NODE_RANKs
    ]
    results = world(envs, "--out", str(tmp_path), "--timeout", "30")
    assert all(code == 1 for code, _ in results)
    err = next(err for code, err in results if "rendezvous: rank 0:" in err)
    assert "node n1: LOCAL_RANKs are [0, 0], expected 0..1" in err
    assert "node n2: NODE_RANK differs between its ranks: [0, 1]" in err
    assert "NODE_RANK 0 is used on two nodes: n1 and n2" in err


def test_unreadable_file_fails_the_world(tmp_path: Path) -> None:
    port = free_port()
    envs = [rank_env(r, 2, r, 0, port) for r in range(2)]
    results = world(envs, "--out", str(tmp_path), "--read", str(tmp_path / "nope"), "--timeout", "30")
    assert all(code == 1 for code, _ in results)
    assert "cannot read" in results[0][1] and "No such file" in results[0][1]


def test_missing_env_and_timeout(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(PROGRAM), "--out", str(tmp_path)], env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "RANK, WORLD_SIZE, LOCAL_RANK, NODE_RANK, MASTER_ADDR, MASTER_PORT not set" in proc.stderr
    # rank 0 alone in a world of 2: times out naming who arrived
    results = world([rank_env(0, 2, 0, 0, free_port())], "--out", str(tmp_path), "--timeout", "1")
    assert results[0][0] == 1
    assert "timed out: 1 of WORLD_SIZE=2 ranks arrived (RANKs [0])" in results[0][1]
    # a rank whose rank 0 never comes
    results = world([rank_env(1, 2, 1, 0, free_port())], "--out", str(tmp_path), "--timeout", "1")
    assert results[0][0] == 1
    assert "could not connect to rank 0 at 127.0.0.1:" in results[0][1]
