"""Benchmark: `mcompile runs RUN` on a run of 2,500 tasks queued as 3 arrays, plus a rerun.

The accounting is faked: PATH starts with a folder whose `sacct`, `squeue` and `scontrol`
record each call and print canned rows (sacct: every task of the three arrays, some
requeued, two failed and rerun; squeue: nothing; scontrol: MaxArraySize = 1001). So the
figure is mcompile's own cost (interpreter start, imports, reading the run and its
submissions, parsing 2,500+ accounting rows, the per-task table, JSON), not slurmdbd's.

Figures are ratios against a baseline measured in the same session: the bare interpreter
start (`python3 -c pass`), median wall time of several runs each. The number of sacct
calls per `runs` is counted: it must be one (one accounting query for all arrays), not
one per array or per task.

    python bench/bench_runs.py [--runs 9] [--tasks 2500] [--max-array-size 1001]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_JOB = 5000

MANIFEST = """\
version: 1
name: bench-runs
project: bench
container: {{image: /nonexistent/bench.sif}}
resources: {{time: 1h, mem: 4G, max_parallel: 50}}
run:
  grid:
    template: python train.py --seed {{{{ seed }}}}
    parameters:
      seed: [{seeds}]
"""

FAKE = """#!/bin/bash
echo "$0 $*" >> {calls}
case "${{0##*/}}" in
  sacct) cat {rows} ;;
  scontrol) printf 'MaxArraySize            = {size}\\nJobCompType             = jobcomp/none\\n' ;;
esac
"""


def _setup(folder: Path, ntasks: int, size: int) -> tuple[Path, dict[str, str], Path, int]:
    """Compile the run, write its submissions and the fake SLURM; (run, env, calls file, failed tasks)."""
    manifest = folder / "bench.yaml"
    manifest.write_text(MANIFEST.format(seeds=", ".join(map(str, range(ntasks)))), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(folder / "runs")],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"compile failed:\n{proc.stderr}")
    run = Path(proc.stdout.strip())

    chunk = size - 1
    lines, rows = [], []
    offsets = list(range(0, ntasks, chunk))
    failed = [1, chunk + 3]  # one in the first array, one in the second: rerun below
    for k, offset in enumerate(offsets):
        job = str(FIRST_JOB + k)
        tasks = range(offset, min(offset + chunk, ntasks))
        lines.append({"job_id": job, "submission": "bench-1", "kind": "submit", "offset": offset, "tasks": f"{tasks[0]}-{tasks[-1]}",
                      "ntasks": len(tasks), "planned": f"0-{ntasks - 1}", "array": f"0-{len(tasks) - 1}%50", "sbatch": [], "time": "t"})
        for task in tasks:
            if task % 100 == 7:  # requeued once (node failure), then completed
                rows.append(f"{job}_{task - offset}|NODE_FAIL|0:0|2024-01-01T10:00:00")
            state, code = ("FAILED", "1:0") if task in failed else ("COMPLETED", "0:0")
            rows.append(f"{job}_{task - offset}|{state}|{code}|2024-01-01T10:05:00")
    rerun_job = str(FIRST_JOB + len(offsets))
    lines.append({"job_id": rerun_job, "submission": "bench-2", "kind": "rerun", "offset": 0, "tasks": "1", "ntasks": 1,
                  "planned": f"1,{failed[1]}", "array": "1%50", "sbatch": [], "time": "t"})
    lines.append({"job_id": str(int(rerun_job) + 1), "submission": "bench-2", "kind": "rerun", "offset": chunk, "tasks": str(failed[1]),
                  "ntasks": 1, "planned": f"1,{failed[1]}", "array": "3%50", "sbatch": [], "time": "t"})
    rows += [f"{rerun_job}_1|COMPLETED|0:0|2024-01-01T11:00:00", f"{int(rerun_job) + 1}_3|COMPLETED|0:0|2024-01-01T11:00:00"]
    (run / "submissions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")

    bin_dir = folder / "bin"
    bin_dir.mkdir()
    calls = folder / "calls"
    (folder / "rows").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for name in ("sacct", "squeue", "scontrol"):
        (bin_dir / name).write_text(FAKE.format(calls=calls, rows=folder / "rows", size=size), encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return run, env, calls, len(offsets)


def _median(argv: list[str], env: dict[str, str], runs: int, check: object = None) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"{argv}: exit {proc.returncode}\n{proc.stderr}")
        if callable(check):
            check(proc.stdout)
    return statistics.median(times), times


def main() -> int:
    """Time `runs` (json and text) against the bare interpreter; exit 1 when sacct is asked more than once per `runs`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--tasks", type=int, default=2500)
    parser.add_argument("--max-array-size", type=int, default=1001)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run, env, calls, arrays = _setup(folder, args.tasks, args.max_array_size)

        def check_json(out: str) -> None:
            tasks = json.loads(out)
            assert len(tasks) == args.tasks and all(t["state"] == "COMPLETED" for t in tasks), "unexpected states"
            assert sum(t["attempts"] for t in tasks) == args.tasks + 2 + len([i for i in range(args.tasks) if i % 100 == 7])

        base, _ = _median([sys.executable, "-c", "pass"], env, args.runs)
        calls.write_text("")
        as_json, _ = _median([sys.executable, "-m", "manifest_compiler", "runs", str(run), "--format", "json"], env, args.runs, check_json)
        sacct_calls = sum(1 for line in calls.read_text().splitlines() if line.split()[0].endswith("/sacct"))
        other = sorted({Path(line.split()[0]).name for line in calls.read_text().splitlines()} - {"sacct"})
        as_text, _ = _median([sys.executable, "-m", "manifest_compiler", "runs", str(run)], env, args.runs)
    per_runs = sacct_calls / args.runs
    print(f"run: {args.tasks:,} tasks as {arrays} arrays (MaxArraySize {args.max_array_size}) + a rerun of 2 tasks as 2 arrays; "
          f"{args.tasks + 2 + args.tasks // 100:,} canned sacct rows")
    print(f"python3 -c pass                  median {base * 1000:7.1f} ms  (baseline, 1.0x)")
    print(f"mcompile runs RUN --format json  median {as_json * 1000:7.1f} ms  ({as_json / base:.1f}x the bare interpreter)")
    print(f"mcompile runs RUN (text)         median {as_text * 1000:7.1f} ms  ({as_text / base:.1f}x)")
    print(f"sacct calls per `runs`: {per_runs:g} (for {arrays + 2} job ids); other commands asked: {', '.join(other) or 'none'}")
    return 0 if per_runs == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
