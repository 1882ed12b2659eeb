"""Submit: a compiled run -> a SLURM job. The only code that runs sbatch.

Pre-flight on the submitting host first (image, data, archives, log folder,
`sbatch --test-only`); any failure stops before anything is queued. Then
`sbatch --parsable` from the run directory, and one JSON line appended to
submissions.jsonl. Secrets are never passed: the names of the manifest's secrets
are removed from the environment sbatch exports.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import typing as t
from pathlib import Path

from .errors import OperationError
from .plan import log_pattern
from .stage import check_subset, expand, stage_archives
from .write import read_resolved


def _note(message: str) -> None:
    print(f"mcompile: {message}", file=sys.stderr)


def preflight(run_dir: Path, resolved: dict[str, t.Any], *, strict: bool = False) -> tuple[list[str], list[str]]:
    """Check what the job will need and stage archives; return (sbatch options, warnings).

    With `strict`, a secret file readable by others is refused, not only warned about.

    Raises:
        OperationError: something the job needs is missing; nothing was queued.
    """
    warnings: list[str] = []
    image = expand(resolved["container"]["image"])
    if not os.path.isfile(image):
        raise OperationError(f"container image not found: {image} (container.image)")
    data = resolved.get("data")
    if data:
        root = Path(expand(data["root"]))
        for subset in data["subsets"]:  # all of them before any archive is built: refuse without side effects
            check_subset(root, subset)
    for name, secret in resolved["secrets"].items():
        try:
            path = expand(secret["file"])
        except OperationError:
            continue  # may be set on the compute node only
        try:
            mode = os.stat(path).st_mode
        except OSError:
            warnings.append(f"secret {name}: {path} is not readable here; the job reads it on the compute node")
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            message = f"secret {name}: {path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            if strict:
                raise OperationError(f"{message} (refused with --strict; nothing was queued)")
            warnings.append(message)

    options: list[str] = []
    archives = stage_archives(resolved)
    if archives:
        exports = [f"MCOMPILE_ARCHIVE_{a.index}={a.fingerprint}" for a in archives]
        for a in archives:
            _note(f"data {a.subset}: {'built' if a.built else 'reusing'} archive {a.path}")
        options.append("--export=" + ",".join(["ALL", *exports]))

    logs = expand(resolved["outputs"]["logs"])
    try:
        os.makedirs(logs, exist_ok=True)
    except OSError as e:
        raise OperationError(f"cannot create the log folder {logs}: {e.strerror or e}") from e
    # % in the folder (also from a variable's value) is doubled: sbatch expands %x patterns
    options.append(f"--output={logs.replace('%', '%%')}/{log_pattern(resolved).rsplit('/', 1)[1]}")
    return options, warnings


def _sbatch_env(resolved: dict[str, t.Any]) -> dict[str, str]:
    env = dict(os.environ)
    for name in resolved["secrets"]:
        env.pop(name, None)
    return env


def _run_sbatch(argv: list[str], run_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        raise OperationError("sbatch not found: is this a SLURM login node? (start a local one with scripts/slurm-dev.sh up)") from e
    except subprocess.TimeoutExpired as e:
        raise OperationError("sbatch did not answer within 120 s; the controller may be down") from e


def _git_state(manifest_path: str) -> dict[str, t.Any] | None:
    folder = os.path.dirname(os.path.abspath(manifest_path))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def submit_run(run_dir: Path, *, manifest_path: str, strict: bool = False) -> int:
    """Pre-flight, test, submit and record one submission of a compiled run.

    Raises:
        OperationError: pre-flight or sbatch failed; nothing was recorded.
    """
    resolved = read_resolved(run_dir)
    options, warnings = preflight(run_dir, resolved, strict=strict)
    for w in warnings:
        _note(f"warning: {w}")
    env = _sbatch_env(resolved)
    argv = ["sbatch", "--parsable", *options, "job.sbatch"]
    test = _run_sbatch(["sbatch", "--test-only", *options, "job.sbatch"], run_dir, env)
    if test.returncode != 0:
        raise OperationError(f"SLURM refuses this job (sbatch --test-only): {_slurm_message(test)}; nothing was queued")
    proc = _run_sbatch(argv, run_dir, env)
    if proc.returncode != 0:
        raise OperationError(f"sbatch failed: {_slurm_message(proc)}; nothing was recorded, the run can be submitted again")
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise OperationError(f"sbatch printed no job id: {proc.stdout.strip()!r}")
    try:
        manifest_sha = hashlib.sha256(Path(manifest_path).read_bytes()).hexdigest()
    except OSError:
        manifest_sha = hashlib.sha256((run_dir / "manifest.yaml").read_bytes()).hexdigest()
    record = {
        "job_id": job_id,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "sbatch": argv,
        "cwd": str(run_dir.resolve()),
        "manifest_sha256": manifest_sha,
        "git": _git_state(manifest_path),
        "tasks": len(resolved["run"]["tasks"]),
    }
    with open(run_dir / "submissions.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    _note(f"submitted job {job_id} ({record['tasks']} task{'s' if record['tasks'] != 1 else ''})")
    print(job_id)
    return 0


def _slurm_message(proc: subprocess.CompletedProcess[str]) -> str:
    text = (proc.stderr or proc.stdout).strip()
    lines = [ln.removeprefix("sbatch: error: ").strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) or f"exit status {proc.returncode}"

