"""`mcompile sync` outside SLURM: which folders are a run's, and what a failing wandb leaves.

The W&B server cannot be reached here: `wandb` is a stand-in script (the e2e test runs the real
client in the job, tests/e2e/test_wandb.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifest_compiler.errors import OperationError, UsageError
from manifest_compiler.jobdir import read_resolved
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.wandb_sync import offline_runs, recorded, sync

MANIFEST = """\
version: 1
name: wb
project: p
container: {{image: /x.sif}}
resources: {{time: 1h, mem: 1G}}
outputs: {{dir: {out}}}
{wandb}run: {{commands: [a, b, c]}}
"""


def compiled(tmp_path: Path, wandb: str = "wandb: {mode: offline}\n") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.format(out=tmp_path / "out", wandb=wandb))
    return compile_manifest(str(path), runs_dir=str(tmp_path / "runs")).run.path


def offline_folder(tmp_path: Path, job: str, task: int, run_id: str) -> Path:
    folder = tmp_path / "out" / f"{job}_{task}" / "wandb" / f"offline-run-20261204_101010-{run_id}"
    folder.mkdir(parents=True)
    (folder / f"run-{run_id}.wandb").write_bytes(b"x" * 10)
    return folder


def stand_in(tmp_path: Path, status: int) -> str:
    script = tmp_path / "wandb"
    script.write_text(f"#!/bin/sh\necho 'wandb: ERROR network is unreachable' >&2\nexit {status}\n")
    script.chmod(0o755)
    return str(script)


def test_only_this_runs_folders_by_task(tmp_path: Path) -> None:
    run = compiled(tmp_path)
    mine = [offline_folder(tmp_path, "7", 0, f"{run.name}-0"), offline_folder(tmp_path, "7", 2, f"{run.name}-2"),
            offline_folder(tmp_path, "9", 2, f"{run.name}-2")]
    offline_folder(tmp_path, "7", 1, "0123456789ab-1")  # another run's
    found = offline_runs(run, read_resolved(run))
    assert [(r.task, r.path) for r in found] == [(0, str(mine[0])), (2, str(mine[1])), (2, str(mine[2]))]
    assert [r.path for r in offline_runs(run, read_resolved(run), task=2)] == [str(mine[1]), str(mine[2])]


def test_a_failing_wandb_records_nothing_and_says_why(tmp_path: Path) -> None:
    run = compiled(tmp_path)
    offline_folder(tmp_path, "7", 0, f"{run.name}-0")
    with pytest.raises(OperationError, match=r"wandb sync failed \(exit 1\): wandb: ERROR network is unreachable"):
        sync(run, read_resolved(run), wandb=stand_in(tmp_path, 1))
    assert recorded(run) == {}
    done = sync(run, read_resolved(run), wandb=stand_in(tmp_path, 0))
    assert [r.task for r in done.uploaded] == [0] and recorded(run) == {done.uploaded[0].path: 10}


def test_a_run_without_wandb_has_nothing_to_sync(tmp_path: Path) -> None:
    run = compiled(tmp_path, wandb="")
    with pytest.raises(UsageError, match="has no wandb: section"):
        sync(run, read_resolved(run))
