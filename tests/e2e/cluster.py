"""A real local SLURM cluster for tests: start, use and stop scripts/slurm-dev.sh.

`dbd_cluster`: one node, slurmdbd + MariaDB accounting (full sacct).
`filetxt_cluster`: two nodes, no accounting database (jobcomp file only).
Each is started once per test session in a temporary folder on free ports and
stopped by pid at the end; tests that need neither never start them.
"""

from __future__ import annotations

import os
import random
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm-dev.sh"

UP_TIMEOUT = 300  # includes a first-time apt-get install (~15 s when it is needed)
JOB_TIMEOUT = 60


@dataclass
class Cluster:
    dir: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.dir, stdin=subprocess.DEVNULL
        )
        if check and proc.returncode != 0:
            pytest.fail(f"{shlex.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def sbatch(self, *args: str) -> str:
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        job_id = out.split(";")[0]
        assert job_id.isdigit(), out
        return job_id

    def wait_gone(self, job_id: str, timeout: float = JOB_TIMEOUT) -> None:
        """Wait until the job (all array tasks) has left the queue (incl. COMPLETING)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", job_id, "-o", "%i %T", check=False).stdout.strip():
                return
            time.sleep(0.5)
        queue = self.run("squeue", check=False).stdout
        pytest.fail(f"job {job_id} still queued after {timeout}s:\n{queue}")

    def sacct_until(self, job_id: str, fields: str, pred, timeout: float = 30, extra: tuple[str, ...] = ()) -> list[list[str]]:
        """Poll ``sacct -j ID -n -P -o FIELDS`` until pred(rows) holds.

        slurmctld hands records to slurmdbd asynchronously, so right after a
        job ends sacct may still show an older picture for a second or two.
        """
        deadline = time.monotonic() + timeout
        rows: list[list[str]] = []
        while time.monotonic() < deadline:
            proc = self.run("sacct", "-j", job_id, "-n", "-P", "-o", fields, *extra, check=False)
            rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
            if proc.returncode == 0 and pred(rows):
                return rows
            time.sleep(0.5)
        pytest.fail(f"sacct -j {job_id} -o {fields}: condition not met after {timeout}s; last rows: {rows}")


def _script(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def free_port_base() -> int:
    """A port base whose 8 ports (base..base+7) are free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(10000, 19990, 10)  # below 20000-29999, where jobs take their MASTER_PORT
        try:
            socks = []
            for port in range(base, base + 8):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free port range found")


def parse_exports(text: str) -> dict[str, str]:
    """The variables of `slurm-dev.sh env` output (`export NAME=VALUE` lines)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            key, value = parts[1].split("=", 1)
            env[key] = value
    return env


def _parse_env(text: str) -> dict[str, str]:
    return {**os.environ, **parse_exports(text)}


def bring_up(directory: Path, *opts: str) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the end-to-end tests need root to start SLURM", pytrace=False)
        pytest.skip("slurm-dev.sh needs root")
    up = _script("up", "--dir", str(directory), "--port-base", str(free_port_base()), *opts)
    try:
        if up.returncode != 0:
            pytest.fail(f"slurm-dev.sh up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
        env_out = _script("env", "--dir", str(directory), timeout=30)
        assert env_out.returncode == 0, env_out.stderr
        env = _parse_env(env_out.stdout)
        assert env["SLURM_CONF"] == str(directory / "etc" / "slurm.conf")
        yield Cluster(directory, env)
    finally:
        down = _script("down", "--dir", str(directory), timeout=120)
        assert down.returncode == 0, f"down failed:\n{down.stdout}\n{down.stderr}"
        # Every daemon is gone: status reports them stopped and exits 1.
        status = _script("status", "--dir", str(directory), timeout=30)
        assert status.returncode == 1, status.stdout
        assert "running" not in status.stdout, status.stdout
