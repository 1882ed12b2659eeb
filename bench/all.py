"""Every performance figure, in one command: each benchmark run in turn, its figures in one table.

    python bench/all.py [--quick] [--write-readme]

Runs bench_validate, bench_compile (without Maestro), bench_load, bench_runs_many,
bench_stage_build and bench_million, each with at least 11 interleaved rounds (--quick: fewer,
for a look, not for the record), collects the `FIGURE` lines they print (bench/figures.py) and
prints one table: figure, value, goal, baseline. Each benchmark's own output goes to
bench/out/<name>.log. `--write-readme` rewrites the table in README.md's "Limits at scale"
section (between the bench:begin and bench:end markers) from these figures.

It is a benchmark, not a test: it exits 0 unless a benchmark fails (a wrong result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin (python bench/all.py --write-readme) -->", "<!-- bench:end -->"


def runs(quick: bool) -> list[tuple[str, list[str]]]:
    rounds = "5" if quick else "11"
    return [
        ("validate", ["bench_validate.py", "--rounds", rounds, "--many-rounds", "1" if quick else "3"]),
        ("compile", ["bench_compile.py", "--rounds", rounds, "--no-maestro", "--cold-runs", "1"]),
        ("load", ["bench_load.py", "--rounds", rounds]),
        ("runs", ["bench_runs_many.py", "--rounds", rounds]),
        ("stage", ["bench_stage_build.py", "--rounds", rounds]),
        ("million", ["bench_million.py", "--rounds", "3" if quick else "11", "--no-extras",
                     "--sizes", "10000,100000,1000000"]),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds: a look, not figures for the record")
    ap.add_argument("--write-readme", action="store_true", help="rewrite README.md's table from these figures")
    args = ap.parse_args()
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    figures: list[dict[str, object]] = []
    started = time.monotonic()
    for name, argv in runs(args.quick):
        print(f"== {name}: python bench/{' '.join(argv)}", flush=True)
        proc = subprocess.run([sys.executable, str(BENCH / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True)
        (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            print(proc.stdout[-2000:] + proc.stderr[-2000:])
            print(f"bench/{argv[0]} failed (exit {proc.returncode}); its output: bench/out/{name}.log")
            return 1
        found = [json.loads(line[len("FIGURE "):]) for line in proc.stdout.splitlines() if line.startswith("FIGURE ")]
        if not found:
            print(f"bench/{argv[0]} reported no figure; its output: bench/out/{name}.log")
            return 1
        figures += found
    print(f"\n{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{time.monotonic() - started:.0f} s; each benchmark's output in bench/out/\n")
    table = markdown(figures)
    print(table)
    missed = [f for f in figures if float(f["value"]) > float(f["goal"])]  # type: ignore[arg-type]
    print(f"\n{len(figures) - len(missed)} of {len(figures)} goals met" + "".join(f"\nGOAL MISSED: {f['name']}" for f in missed))
    if args.write_readme:
        write_readme(table, figures)
    return 0


def markdown(figures: list[dict[str, object]]) -> str:
    lines = ["| figure | against | ratio | goal |", "| --- | --- | --- | --- |"]
    for f in figures:
        met = "" if float(f["value"]) <= float(f["goal"]) else " (missed)"  # type: ignore[arg-type]
        lines.append(f"| {f['name']} | `{f['baseline']}` | {float(f['value']):.2f}x | <= {float(f['goal']):.2f}x{met} |")  # type: ignore[arg-type]
    return "\n".join(lines)


def write_readme(table: str, figures: list[dict[str, object]]) -> None:
    rows = next((f.get("rows") for f in figures if f.get("rows")), [])
    scale = ["", "| compile of | time | peak RSS |", "| --- | --- | --- |"]
    scale += [f"| {r['tasks']:,} tasks | {r['s']:.2f} s | {r['mib']} MiB |" for r in rows]  # type: ignore[index,union-attr]
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} section to rewrite")
    README.write_text(pattern.sub(lambda _: f"{BEGIN}\n{table}\n" + "\n".join(scale) + f"\n{END}", text), encoding="utf-8")
    print(f"\nwrote the table into {README}")


if __name__ == "__main__":
    raise SystemExit(main())
