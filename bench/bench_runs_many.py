"""Benchmark: `mcompile runs` over many runs is O(what it shows), not O(their tasks).

Two runs folders, each with 20 compiled runs of one experiment (distinct seeds, so distinct
runs): one of 10,000-task runs, one of 10-task runs. `mcompile runs --runs DIR` lists them
all (name, hash, task count, log folder; no submissions), with a fake SLURM on PATH that
knows no job (squeue and sacct print nothing), so the figure is mcompile's own. Rounds
alternate the two folders; the figure is the median of the per-round ratios
(20 x 10k against 20 x 10). Goal (issue 16): <= 1.5x.

    python bench/bench_runs_many.py [--rounds 11] [--runs-per-folder 20]

It is a benchmark, not a test: it prints "GOAL MISSED" when the goal is missed and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import figure

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.5
MANIFEST = """\
version: 1
name: many
project: bench
container: {{image: /images/bench.sif}}
resources: {{time: 1h, mem: 4G}}
run:
  grid:
    template: python train.py --lr {{{{ lr }}}} --seed {{{{ seed }}}}
    parameters:
      lr: [{lr}]
      seed: [{seeds}]
"""
FAKE = "#!/bin/sh\ncase \"${0##*/}\" in scontrol) printf 'MaxArraySize = 1001\\nJobCompType = jobcomp/none\\n' ;; esac\n"


def _folder(base: Path, tasks: int, runs: int, env: dict[str, str]) -> Path:
    folder = base / f"runs-{tasks}"
    manifest = base / f"m-{tasks}.yaml"
    for i in range(runs):
        manifest.write_text(MANIFEST.format(lr=f"0.{i + 1}", seeds=", ".join(map(str, range(tasks)))), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(folder)],
                       env=env, check=True, capture_output=True)
    return folder


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--runs-per-folder", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bin_dir = base / "bin"
        bin_dir.mkdir()
        for name in ("sacct", "squeue", "scontrol"):
            (bin_dir / name).write_text(FAKE)
            (bin_dir / name).chmod(0o755)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        big, small = _folder(base, 10_000, args.runs_per_folder, env), _folder(base, 10, args.runs_per_folder, env)
        argv = [sys.executable, "-m", "manifest_compiler", "runs", "--runs"]
        ratios, t_big, t_small = [], [], []
        for i in range(args.rounds):
            order = [(big, t_big), (small, t_small)] if i % 2 == 0 else [(small, t_small), (big, t_big)]
            for folder, times in order:
                times.append(_time([*argv, str(folder)], env))
            ratios.append(t_big[-1] / t_small[-1])
    ratio = statistics.median(ratios)
    print(f"mcompile runs over {args.runs_per_folder} runs of 10,000 tasks: median {statistics.median(t_big) * 1000:.0f} ms; "
          f"of 10 tasks: {statistics.median(t_small) * 1000:.0f} ms; ratio {ratio:.2f}x (goal <= {GOAL}x)"
          + ("" if ratio <= GOAL else "  GOAL MISSED"))
    figure(f"mcompile runs over {args.runs_per_folder} runs of 10,000 tasks", ratio, GOAL, f"the same over {args.runs_per_folder} runs of 10 tasks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
