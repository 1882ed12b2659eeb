"""Benchmark: `mcompile report` on a run of 100,000 tasks (generation and first paint).

The run is compiled for real; `rerun --tasks 0-89999` queues 90,000 of its tasks as one array
and the accounting is the unit tests' fake scheduler (tests/helpers/fake_slurm.py) answering
sacct with 70,000 COMPLETED, 10,000 FAILED and 10,000 RUNNING rows, the rest never submitted.
So the figures are mcompile's own cost, not slurmdbd's.

- generation: building the page's data (describe_runs, resolved.json, the per-task arrays, the
  plan) and rendering it, against `json.dumps` of the same per-task arrays in the same process
  (the least any page embedding them must do), and against `runs.describe_runs` alone (what
  `mcompile runs RUN` derives: the states of every task, which the page reuses); medians of --rounds.
- first paint: headless Chromium (Debian's chromium) taking a screenshot of the page, wall time,
  against the same for an empty page; medians of --rounds, interleaved.

    python bench/bench_report.py [--tasks 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers.browser import CHROMIUM  # noqa: E402
from helpers.fake_slurm import FakeSlurm  # noqa: E402

from manifest_compiler.html_report import render_report, report_data  # noqa: E402
from manifest_compiler.pipeline import compile_manifest  # noqa: E402
from manifest_compiler.runs import describe_runs  # noqa: E402
from manifest_compiler.slurm import Scheduler  # noqa: E402
from manifest_compiler.submit import rerun  # noqa: E402


def _run(folder: Path, ntasks: int) -> tuple[Path, Scheduler]:
    image = folder / "app.sif"
    image.write_text("image")
    manifest = folder / "bench.yaml"
    manifest.write_text(f"version: 1\nname: bench-report\nproject: bench\ncontainer: {{image: {image}}}\n"
                        f"resources: {{time: 1h, mem: 4G}}\noutputs: {{logs: {folder}/logs, dir: {folder}/out}}\n"
                        "run:\n  grid:\n    template: python train.py --lr {{ lr }} --seed {{ seed }}\n"
                        f"    parameters: {{lr: [{', '.join(str(i) for i in range(ntasks // 100))}], seed: [{', '.join(str(i) for i in range(100))}]}}\n")
    run = compile_manifest(str(manifest), runs_dir=str(folder / "runs")).run.path
    queued = ntasks * 9 // 10
    rerun(run, tasks=f"0-{queued - 1}", failed=False, scheduler=Scheduler(FakeSlurm(max_array_size=ntasks + 1)))
    rows = []
    for i in range(queued):
        state, code = ("FAILED", "1:0") if i % 9 == 1 else ("RUNNING", "0:0") if i % 9 == 2 else ("COMPLETED", "0:0")
        rows.append(f"100_{i}|{state}|{code}|2024-01-01T10:00:00\n")
    return run, Scheduler(FakeSlurm(max_array_size=ntasks + 1, sacct_states="".join(rows)))


def _shot(page: Path, folder: Path) -> float:
    assert CHROMIUM is not None
    start = time.perf_counter()
    subprocess.run([CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", f"--user-data-dir={folder}/profile",
                    "--window-size=1000,1400", f"--screenshot={folder}/shot.png", page.as_uri()],
                   capture_output=True, check=True, timeout=300)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run, scheduler = _run(folder, args.tasks)
        gen, base, runs = [], [], []
        html = ""
        for _ in range(args.rounds):
            start = time.perf_counter()
            data = report_data(str(folder / "runs"), str(run), scheduler=scheduler, generated="bench")
            html = render_report(data)
            gen.append(time.perf_counter() - start)
            start = time.perf_counter()
            json.dumps(data.grid, separators=(",", ":"), sort_keys=True)
            base.append(time.perf_counter() - start)
            start = time.perf_counter()
            describe_runs(str(folder / "runs"), str(run), scheduler=scheduler)
            runs.append(time.perf_counter() - start)
        page, empty = folder / "report.html", folder / "empty.html"
        page.write_text(html, encoding="utf-8")
        empty.write_text("<!DOCTYPE html><title>empty</title>", encoding="utf-8")
        paint, blank = [], []
        if CHROMIUM:
            for _ in range(args.rounds):
                blank.append(_shot(empty, folder))
                paint.append(_shot(page, folder))
        g, b = statistics.median(gen), statistics.median(base)
        print(f"report of {args.tasks:,} tasks: page {len(html.encode()) / 2**20:.1f} MiB")
        r = statistics.median(runs)
        print(f"generation {g:.2f} s; json.dumps of the per-task data {b:.3f} s; ratio {g / b:.1f}x")
        print(f"describe_runs alone (the states, as mcompile runs RUN) {r:.2f} s; ratio {g / r:.2f}x")
        if paint:
            p, e = statistics.median(paint), statistics.median(blank)
            print(f"first paint (chromium --screenshot wall time) {p:.2f} s; empty page {e:.2f} s; ratio {p / e:.2f}x; "
                  f"the page's own {p - e:.2f} s")
        else:
            print("first paint not measured: no chromium (scripts/setup.sh installs it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
