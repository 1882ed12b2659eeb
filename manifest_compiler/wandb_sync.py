"""`mcompile sync RUN`: upload a run's offline W&B runs from a host with internet, each once.

With `wandb: {mode: offline}`, task N of a run writes its W&B run under its persistent folder,
<outputs.dir>/<jobid>_<N>/wandb/offline-run-<time>-<hash12>-<N> (a requeued or rerun task
writes another folder of the same run id: W&B merges them). This finds them, runs the real
`wandb sync` over the ones not uploaded yet (or grown since), and records each in the run's
wandb-synced.jsonl. The API key is the environment's (wandb login), or the manifest's
secrets.WANDB_API_KEY file when it is readable here; it is passed in the environment only.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import subprocess
import typing as t
from pathlib import Path

from .errors import OperationError, UsageError
from .jobdir import WANDB_SYNCED
from .model import Resolved
from .stage import expand


class OfflineRun(t.NamedTuple):
    task: int
    path: str  # the offline-run-... folder on this host
    size: int  # bytes of its .wandb file(s): a folder that grew (a task still running) is uploaded again


class Synced(t.NamedTuple):
    uploaded: list[OfflineRun]
    already: list[OfflineRun]


Runner = t.Callable[..., "subprocess.CompletedProcess[str]"]


def offline_runs(run_dir: Path, resolved: Resolved, task: int | None = None) -> list[OfflineRun]:
    """The run's offline W&B runs on this host (of `task` only, if given), by task then folder."""
    if "wandb" not in resolved:
        raise UsageError(f"{run_dir} has no wandb: section; there is nothing of W&B to sync")
    outputs = Path(expand(resolved["outputs"]["dir"], cwd=run_dir))
    prefix = f"{run_dir.resolve().name}-"  # WANDB_RUN_ID is <hash12>-<task>
    found = []
    for folder in sorted(outputs.glob("*/wandb/offline-run-*")):
        run_id = folder.name.split("-", 3)[-1] if folder.name.count("-") >= 3 else ""
        number = run_id[len(prefix):] if run_id.startswith(prefix) else ""
        if not number.isdigit() or (task is not None and int(number) != task):
            continue
        size = sum(f.stat().st_size for f in folder.glob("*.wandb"))
        found.append(OfflineRun(int(number), str(folder), size))
    return sorted(found, key=lambda r: (r.task, r.path))


def recorded(run_dir: Path) -> dict[str, int]:
    """path -> size of what was uploaded, from the run's record."""
    try:
        lines = (run_dir / WANDB_SYNCED).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    done = {}
    for line in lines:
        entry = json.loads(line)
        done[entry["path"]] = entry["bytes"]
    return done


def sync(run_dir: Path, resolved: Resolved, task: int | None = None, *, runner: Runner = subprocess.run,
         wandb: str | None = None) -> Synced:
    """Upload what is new with `wandb sync`, record it; the runs uploaded and those skipped.

    Raises:
        UsageError: the run has no wandb: section.
        OperationError: no wandb command here, or wandb sync failing (nothing is recorded then).
    """
    runs = offline_runs(run_dir, resolved, task)
    done = recorded(run_dir)
    todo = [r for r in runs if done.get(r.path) != r.size]
    already = [r for r in runs if done.get(r.path) == r.size]
    if not todo:
        return Synced([], already)
    command = wandb or shutil.which("wandb")
    if not command:
        raise OperationError("wandb is not installed on this host (pip install wandb), which `mcompile sync` runs")
    env = dict(os.environ)
    key_file = resolved["secrets"].get("WANDB_API_KEY", {}).get("file")
    if key_file and "WANDB_API_KEY" not in env:
        with contextlib.suppress(OSError, OperationError):  # else wandb login's own key, if any
            env["WANDB_API_KEY"] = Path(expand(key_file, cwd=run_dir)).read_text(encoding="utf-8").rstrip("\n")
    proc = runner([command, "sync", *(r.path for r in todo)], env=env, stdin=subprocess.DEVNULL,
                  capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise OperationError(f"wandb sync failed (exit {proc.returncode}): {reason[-1] if reason else 'no message'}")
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(run_dir / WANDB_SYNCED, "a", encoding="utf-8") as fh:
        for r in todo:
            fh.write(json.dumps({"task": r.task, "path": r.path, "bytes": r.size, "synced_at": stamp}) + "\n")
    return Synced(todo, already)
