#!/usr/bin/env python3
"""Rendezvous check for distributed jobs: stdlib only (sockets), no torch.

Every rank reads RANK, WORLD_SIZE, LOCAL_RANK, NODE_RANK, MASTER_ADDR and MASTER_PORT
from its environment, as a torch program started by srun (with the env:// variables
derived from SLURM_*) or by torchrun would. Rank 0 listens on MASTER_PORT (all
interfaces) and accepts WORLD_SIZE-1 connections; every other rank connects to
MASTER_ADDR:MASTER_PORT, retrying until the timeout, and sends one JSON line, its hello.
Rank 0 checks the hellos of the whole world (its own included):

- WORLD_SIZE is the same everywhere and the RANKs are exactly 0..WORLD_SIZE-1;
- on each node (SLURMD_NODENAME, else the host name) all ranks have one NODE_RANK,
  two nodes never share a NODE_RANK, and the LOCAL_RANKs are exactly 0..k-1;
- every rank could read the --read file, if one was given;

then replies to every rank with one JSON line: {"status": "ok", ...} or
{"status": "error", "message": ...}. Each rank writes OUT/rank-<RANK>, a JSON of what it
saw (its hello, the file it read, rank 0's verdict and the whole world's hellos), and
exits 0 only if the verdict is "ok". Any failure is a non-zero exit with a message on
stderr that starts with `rendezvous: rank R:`.

    python3 rendezvous.py [--read FILE] [--out DIR] [--timeout S] [--stamp]

--read FILE   read FILE (e.g. /data/<subset>/x.txt on the node's staged copy); its
              content (up to 64 KiB, as text), size and sha256 go into the rank file
--out DIR     where rank-<RANK> is written (default /scratch_storage, created if missing)
--timeout S   give up after S seconds (default 60): connecting, waiting for hellos, replies
--stamp       write DIR/start-<RANK> (time.time() at program start, `%.6f`) right away,
              before the rendezvous, so a harness can see when every rank was running
"""

from __future__ import annotations

import time

STARTED = time.time()  # first thing: the benchmark's "rank start"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
# Copied into the hello when set.
REPORTED = (
    "SLURMD_NODENAME",
    "SLURM_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_NTASKS",
    "SLURM_JOB_NUM_NODES",
    "SLURM_CPUS_PER_TASK",
    "SLURM_TMPDIR",
    "MCOMPILE_TASK",
    "MCOMPILE_JOB",
    "MASTER_ADDR",
    "MASTER_PORT",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "TORCHELASTIC_RUN_ID",
)
READ_LIMIT = 64 * 1024
LINE_LIMIT = 1 << 20


class Failure(Exception):
    """The rendezvous failed; the message says why."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--read", metavar="FILE", help="a file every rank reads and reports (content, sha256)")
    ap.add_argument("--out", metavar="DIR", default="/scratch_storage", help="where rank-<RANK> is written")
    ap.add_argument("--timeout", metavar="S", type=float, default=60.0, help="seconds before giving up (default 60)")
    ap.add_argument("--stamp", action="store_true", help="write DIR/start-<RANK> at once (program start time)")
    return ap.parse_args(argv)


def int_env(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value)
    except ValueError:
        raise Failure(f"{name}={value!r} is not an integer") from None
    if number < 0:
        raise Failure(f"{name}={number} is negative")
    return number


def read_file(path: str) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return {"path": path, "error": f"cannot read {path}: {err.strerror or err}"}
    return {
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content": data[:READ_LIMIT].decode("utf-8", "replace"),
        "truncated": len(data) > READ_LIMIT,
    }


def make_hello(rank: int, world: int, local: int, node: int, read: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "rank": rank,
        "local_rank": local,
        "node_rank": node,
        "world_size": world,
        "hostname": socket.gethostname(),
        "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
        "pid": os.getpid(),
        "started": STARTED,
        "env": {name: os.environ[name] for name in REPORTED if name in os.environ},
        "read": read,
    }


# ------------------------------------------------------------------ checks


def check_world(hellos: list[dict[str, Any]], world: int) -> list[str]:
    """Every problem with the world's hellos (empty: all is well)."""
    problems: list[str] = []
    sizes = sorted({h["world_size"] for h in hellos})
    if sizes != [world]:
        problems.append(f"WORLD_SIZE differs between ranks: {sizes}")
    by_rank: dict[int, list[dict[str, Any]]] = {}
    for h in hellos:
        by_rank.setdefault(h["rank"], []).append(h)
    for rank, same in sorted(by_rank.items()):
        if len(same) > 1:
            who = ", ".join(f"pid {h['pid']} on {h['node']}" for h in same)
            problems.append(f"duplicate RANK {rank} ({who})")
    missing = sorted(set(range(world)) - set(by_rank))
    if missing:
        problems.append(f"missing RANK {missing}")
    extra = sorted(r for r in by_rank if r >= world)
    if extra:
        problems.append(f"RANK out of range 0..{world - 1}: {extra}")

    nodes: dict[str, list[dict[str, Any]]] = {}
    for h in hellos:
        nodes.setdefault(h["node"], []).append(h)
    owner: dict[int, str] = {}
    for node, members in sorted(nodes.items()):
        node_ranks = sorted({h["node_rank"] for h in members})
        if len(node_ranks) > 1:
            problems.append(f"node {node}: NODE_RANK differs between its ranks: {node_ranks}")
        for nr in node_ranks:
            if nr in owner and owner[nr] != node:
                problems.append(f"NODE_RANK {nr} is used on two nodes: {owner[nr]} and {node}")
            owner.setdefault(nr, node)
        locals_ = sorted(h["local_rank"] for h in members)
        if locals_ != list(range(len(members))):
            problems.append(f"node {node}: LOCAL_RANKs are {locals_}, expected 0..{len(members) - 1}")
    for h in hellos:
        read = h.get("read")
        if read and "error" in read:
            problems.append(f"rank {h['rank']} on {h['node']}: {read['error']}")
    return problems


# ---------------------------------------------------------------- sockets


def send_line(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def recv_line(sock: socket.socket, deadline: float, what: str) -> dict[str, Any]:
    buf = b""
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure(f"timed out waiting for {what}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise Failure(f"timed out waiting for {what}") from None
        if not chunk:
            raise Failure(f"connection closed before {what} arrived")
        buf += chunk
        if len(buf) > LINE_LIMIT:
            raise Failure(f"{what} is larger than {LINE_LIMIT} bytes")
    try:
        obj = json.loads(buf)
    except ValueError:
        raise Failure(f"{what} is not JSON: {buf[:200]!r}") from None
    if not isinstance(obj, dict):
        raise Failure(f"{what} is not a JSON object")
    return obj


def serve(port: int, world: int, hello: dict[str, Any], deadline: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Rank 0: collect WORLD_SIZE-1 hellos, check, reply to all. Returns (verdict, hellos)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as err:
        listener.close()
        raise Failure(f"cannot listen on port {port}: {err.strerror} (another rank 0, or the port is taken)") from None
    listener.listen(max(world, 1))
    peers: list[socket.socket] = []
    hellos = [hello]
    try:
        while len(peers) < world - 1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = sorted(h["rank"] for h in hellos)
                raise Failure(f"timed out: {len(hellos)} of WORLD_SIZE={world} ranks arrived (RANKs {got})")
            listener.settimeout(remaining)
            try:
                conn, addr = listener.accept()
            except TimeoutError:
                continue
            peers.append(conn)
            peer = recv_line(conn, deadline, f"the hello from {addr[0]}:{addr[1]}")
            hellos.append(peer)
        arrived = time.time()
        problems = check_world(hellos, world)
        world_list = sorted(hellos, key=lambda h: (h["rank"], h["pid"]))
        if problems:
            verdict = {"status": "error", "message": "; ".join(problems), "arrived": arrived, "world": world_list}
        else:
            verdict = {"status": "ok", "arrived": arrived, "world": world_list}
        for conn in peers:
            try:
                send_line(conn, verdict)
            except OSError as err:
                print(f"rendezvous: rank 0: could not reply to a rank: {err}", file=sys.stderr)
        return verdict, hellos
    finally:
        for conn in peers:
            conn.close()
        listener.close()


def join(addr: str, port: int, hello: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Any other rank: connect (retrying), send the hello, return rank 0's verdict."""
    last = ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure(f"could not connect to rank 0 at {addr}:{port}: {last or 'timed out'}")
        try:
            sock = socket.create_connection((addr, port), timeout=min(remaining, 5.0))
            break
        except OSError as err:
            last = str(err)
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    with sock:
        send_line(sock, hello)
        return recv_line(sock, deadline, "rank 0's verdict")


# -------------------------------------------------------------------- main


def write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two ranks may claim one RANK
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    label = f"rank {os.environ.get('RANK', '?')}"
    try:
        missing = [name for name in REQUIRED if not os.environ.get(name)]
        if missing:
            raise Failure(f"{', '.join(missing)} not set in the environment")
        rank, world = int_env("RANK"), int_env("WORLD_SIZE")
        local, node = int_env("LOCAL_RANK"), int_env("NODE_RANK")
        port = int_env("MASTER_PORT")
        addr = os.environ["MASTER_ADDR"]
        if world < 1:
            raise Failure(f"WORLD_SIZE={world}")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.stamp:
            (out / f"start-{rank}").write_text(f"{STARTED:.6f}\n")
        read = read_file(args.read) if args.read else None
        hello = make_hello(rank, world, local, node, read)
        deadline = time.monotonic() + args.timeout
        if rank == 0:
            verdict, _ = serve(port, world, hello, deadline)
        else:
            verdict = join(addr, port, hello, deadline)
        record = {
            "rank": rank,
            "hello": hello,
            "read": read,
            "status": verdict.get("status"),
            "message": verdict.get("message"),
            "all_arrived": verdict.get("arrived"),
            "world": verdict.get("world"),
            "finished": time.time(),
        }
        write_json(out / f"rank-{rank}", record)
        if verdict.get("status") != "ok":
            source = "" if rank == 0 else "rank 0 reported: "
            raise Failure(f"{source}{verdict.get('message', verdict)}")
        if read and "error" in read:
            raise Failure(read["error"])
        return 0
    except Failure as err:
        print(f"rendezvous: {label}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"rendezvous: {label}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
