"""Benchmark: loading a 5 MB manifest against PyYAML's own CSafeLoader, in the same process.

The manifest is a grid whose one parameter lists 700,000 integers (5.5 MB of YAML). Each
round loads it once with `yaml.load(text, Loader=yaml.CSafeLoader)` (the floor: libyaml's
parser and composer, PyYAML's constructor) and once with mcompile's `parse_source`, which
also keeps every node's line and column, gives YAML 1.2 core meaning, and bounds nesting
and aliases. The order alternates round by round; the figure is the median of the
per-round ratios. Goal: <= 1.3x.

    python bench/bench_load.py [--rounds 11] [--values 700000]

It is a benchmark, not a test: it prints "GOAL MISSED" when the goal is missed and exits 0
(exit 1 only when the two loaders disagree on the data).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import yaml
from figures import figure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from manifest_compiler.load import parse_source  # noqa: E402

GOAL = 1.3


def manifest(values: int) -> str:
    seeds = ", ".join(str(i) for i in range(values))
    return (
        "version: 1\nname: big\nproject: p\ncontainer: {image: /images/app.sif}\n"
        "resources: {time: 1h, mem: 1G}\nrun:\n  grid:\n    template: python train.py --seed {{ seed }}\n"
        f"    parameters:\n      seed: [{seeds}]\n"
    )


def timed(fn: object) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--values", type=int, default=700_000)
    args = ap.parse_args()
    text = manifest(args.values)
    raw = text.encode()
    if parse_source("m.yaml", raw).data != yaml.load(text, Loader=yaml.CSafeLoader):
        print("the loaders disagree on the data", file=sys.stderr)
        return 1
    floor: list[float] = []
    ours: list[float] = []
    for i in range(args.rounds):
        pair = [("floor", lambda: yaml.load(text, Loader=yaml.CSafeLoader)), ("ours", lambda: parse_source("m.yaml", raw))]
        for name, fn in pair if i % 2 == 0 else reversed(pair):
            (floor if name == "floor" else ours).append(timed(fn))
    ratio = statistics.median(o / f for o, f in zip(ours, floor, strict=True))
    print(f"load of a {len(raw) / 1e6:.1f} MB manifest ({args.values:,} values), median of {args.rounds} rounds:")
    print(f"  yaml.load(CSafeLoader) {statistics.median(floor):.3f} s; mcompile parse_source {statistics.median(ours):.3f} s")
    print(f"  ratio {ratio:.2f}x (goal <= {GOAL}x){'' if ratio <= GOAL else '  GOAL MISSED'}")
    figure("load of a 5 MB manifest", ratio, GOAL, "yaml.load(text, CSafeLoader)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
