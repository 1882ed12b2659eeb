"""`mcompile runs` with a fake scheduler: a run's recorded and by-hand submissions, the state of
every task, and the output formats, whose registry is also where --format takes its choices."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.fake_slurm import FakeSlurm

from manifest_compiler.cli import build_parser
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.runs import describe_runs
from manifest_compiler.runs_formats import FORMATTER_BY_NAME
from manifest_compiler.slurm import Scheduler
from manifest_compiler.submit import submit_run


def _submitted_run(tmp_path: Path) -> Path:
    """A run of 3 tasks whose job 100 was queued by --submit."""
    image = tmp_path / "app.sif"
    image.write_text("image")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"version: 1\nname: lst\nproject: p\ncontainer: {{image: {image}}}\nresources: {{time: 5m, mem: 256M}}\n"
                        f"outputs: {{logs: {tmp_path}/logs, dir: {tmp_path}/out}}\nrun: {{commands: ['true', 'false', 'true']}}\n")
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    submit_run(run, manifest_path=str(manifest), scheduler=Scheduler(FakeSlurm()))
    return run


def test_runs_merges_recorded_and_by_hand_submissions_with_the_states_slurm_gives(tmp_path: Path) -> None:
    run = _submitted_run(tmp_path)
    slurm = FakeSlurm(
        sacct_states="100_0|COMPLETED|0:0|2024-01-01T10:00:00\n100_1|FAILED|1:0|2024-01-01T10:00:00\n"
                     "100_2|COMPLETED|0:0|2024-01-01T10:00:00\n101_1|RUNNING|0:0|2024-01-01T10:10:00\n",
        # job 101: `sbatch --array=1 job.sbatch` by hand in the run directory; 102: the same name, elsewhere
        sacct_jobs=f"101_1|{os.path.realpath(run)}|2024-01-01T10:09:00\n102|/elsewhere|2024-01-01T10:09:30\n")
    listing = describe_runs(str(tmp_path / "runs"), "lst", scheduler=Scheduler(slurm))
    [entry] = listing.runs
    assert [(s["kind"], s["job_id"], s["planned"], s["states"]) for s in entry["submissions"]] == [
        ("submit", "100", "0-2", {"COMPLETED": 2, "FAILED": 1}), ("by hand", "101", "1", {"RUNNING": 1})]
    assert entry["submissions"][0]["log"] == f"{tmp_path}/logs/lst_100_%a.out"
    [by_name] = [c.argv for c in slurm.calls if "--name" in c.argv]
    assert by_name[by_name.index("--name") + 1] == "p-lst"

    tasks = json.loads(FORMATTER_BY_NAME["json"](listing))
    assert [(t["state"], t["exit_code"], t["submissions"], t["job_id"]) for t in tasks] == [
        ("COMPLETED", 0, 1, "100"), ("RUNNING", None, 2, "101"), ("COMPLETED", 0, 1, "100")]
    text = FORMATTER_BY_NAME["text"](listing)
    assert f"    logs: {tmp_path}/logs/lst_100_<task>.out\n" in text
    assert "  job 101 (by hand from the run directory, tasks 1)" in text


def test_the_runs_formats_are_the_registry_and_an_empty_folder_is_said(tmp_path: Path) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    runs_format = next(a for a in sub.choices["runs"]._actions if a.dest == "format")  # type: ignore[index]
    assert tuple(runs_format.choices) == tuple(FORMATTER_BY_NAME) == ("text", "json")
    listing = describe_runs(str(tmp_path / "none"), None, scheduler=Scheduler(FakeSlurm()))
    assert FORMATTER_BY_NAME["text"](listing) == (f"no compiled runs in {tmp_path / 'none'}, which does not exist "
                                                  "(--runs DIR or $MCOMPILE_RUNS names another folder)\n")
    assert FORMATTER_BY_NAME["json"](listing) == "[]\n"
