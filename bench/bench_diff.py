"""Benchmark: `mcompile diff` of two 10,000-task manifests that differ in one task.

Times the whole process (interpreter start, imports, loading, validation,
resolution, comparison, formatting), median wall time of several runs; the goal is
< 1 s. The process's CPU time is printed too: on a busy machine it is the steadier figure.
Two pairs: a grid (one parameter of 10,000 seeds, one seed changed, so exactly
one task differs) and a commands list of 10,000 with one command changed.

    python bench/bench_diff.py [--runs 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 10_000
GOAL_S = 1.0

HEAD = """\
version: 1
name: bench-{kind}
project: bench
cluster: {{account: def-someone}}
container: {{image: $SCRATCH/containers/bench.sif}}
resources: {{time: 1h, mem: 4G}}
"""


def grid(changed: bool) -> str:
    """A grid of 10,000 seeds; with `changed`, one seed value differs."""
    seeds = list(range(N))
    if changed:
        seeds[N // 2] = N  # one seed value differs -> exactly one task differs
    return HEAD.format(kind="grid") + (
        "run:\n  grid:\n    template: python train.py --lr {{ lr }} --seed {{ seed }}\n"
        f"    parameters:\n      lr: [0.1]\n      seed: [{', '.join(map(str, seeds))}]\n"
    )


def commands(changed: bool) -> str:
    """A list of 10,000 commands; with `changed`, one command differs."""
    lines = [f"    - python train.py --seed {i}\n" for i in range(N)]
    if changed:
        lines[N // 2] = f"    - python train.py --seed {N // 2} --lr 0.01\n"
    return HEAD.format(kind="commands") + "run:\n  commands:\n" + "".join(lines)


def _cli_argv(a: Path, b: Path) -> list[str]:
    return [sys.executable, "-m", "manifest_compiler", "diff", str(a), str(b)]


def bench(name: str, a_text: str, b_text: str, expected: str, folder: Path, runs: int) -> float:
    """Median wall time of the whole diff process; checks its summary line every run."""
    a, b = folder / f"{name}-a.yaml", folder / f"{name}-b.yaml"
    a.write_text(a_text, encoding="utf-8")
    b.write_text(b_text, encoding="utf-8")
    argv, how = _cli_argv(a, b), "python -m manifest_compiler diff"
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 1 or not proc.stdout.startswith(expected + "\n"):
            sys.exit(f"{name}: unexpected result (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    median = statistics.median(times)
    print(f"{name:9} {N:,} tasks, 1 differs: median {median:.3f} s of {runs} "
          f"(min {min(times):.3f}, max {max(times):.3f}; CPU {statistics.median(cpu):.3f} s) via {how}")
    return median


def main() -> int:
    """Run both pairs; exit 1 when the goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        worst = max(
            # the changed seed value, and the one task it makes
            bench("grid", grid(False), grid(True), "2 changes: 2 affect results, 0 scheduling only",
                  folder, args.runs),
            bench("commands", commands(False), commands(True), "1 change: 1 affects results, 0 scheduling only",
                  folder, args.runs),
        )
    print(f"goal < {GOAL_S:.1f} s: {'met' if worst < GOAL_S else 'NOT met'}")
    return 0 if worst < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
