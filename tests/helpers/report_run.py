"""A compiled run in a known state for `mcompile report`: tasks COMPLETED, FAILED, RUNNING and
NOT_SUBMITTED, with the fake scheduler (tests/helpers/fake_slurm.py) as the cluster's answers."""

from __future__ import annotations

from pathlib import Path

from helpers.fake_slurm import FakeSlurm
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.slurm import Scheduler
from manifest_compiler.submit import rerun

EXPECTED_COUNTS = {"COMPLETED": 2, "FAILED": 1, "RUNNING": 1, "NOT_SUBMITTED": 2}


def report_run(tmp_path: Path) -> tuple[Path, Scheduler]:
    """A run of 6 tasks of which `rerun --tasks 0-3` queued job 100: 0 and 3 completed, 1 failed
    (exit 3), 2 is running; 4 and 5 were never submitted. Also a previous run of the experiment."""
    image = tmp_path / "app.sif"
    image.write_text("image")
    manifest = tmp_path / "m.yaml"

    def write(time: str) -> Path:
        manifest.write_text(f"version: 1\nname: rep\nproject: p\ncontainer: {{image: {image}}}\nresources: {{time: {time}, mem: 256M}}\n"
                            f"outputs: {{logs: {tmp_path}/logs, dir: {tmp_path}/out}}\n"
                            "run: {commands: ['echo a', 'exit 3', 'sleep 100', 'echo </script>', 'echo e', 'echo f']}\n")
        return compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path

    write("5m")
    run = write("10m")
    rerun(run, tasks="0-3", failed=False, scheduler=Scheduler(FakeSlurm()))
    slurm = FakeSlurm(sacct_states="100_0|COMPLETED|0:0|2024-01-01T10:00:00\n100_1|FAILED|3:0|2024-01-01T10:00:00\n"
                                   "100_2|RUNNING|0:0|2024-01-01T10:00:00\n100_3|COMPLETED|0:0|2024-01-01T10:00:00\n")
    return run, Scheduler(slurm)
