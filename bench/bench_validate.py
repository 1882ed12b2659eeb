"""Benchmark: `mcompile validate`, as whole processes.

What it measures
----------------
(a) Start-up: the wall time of one whole process of

        python -m manifest_compiler validate manifests/commands.yaml
        mcompile validate manifests/commands.yaml          (the console script)

    against, in the same run and interleaved round by round (order rotated each round):

        python -c "import yaml, jsonschema"    the import floor (goal: validate <= 0.70 x floor: jsonschema is
                                               imported only to describe an invalid manifest)
        python -c pass                         the bare interpreter, for reference

(b) Throughput: one `python -m manifest_compiler validate` process given 1,000
    manifests (copies of the examples in manifests/, each with its own file name and
    experiment name; base.yaml beside them for `extends`) as 1,000 arguments.
    Goal: the whole process under 1 s.

(c) Laziness: after `main(["validate", ...])` of valid manifests in a fresh interpreter,
    jinja2, deepdiff, jsonschema and dataclasses must not be in sys.modules (validate must
    not pay for them; jsonschema-rs proves a valid manifest valid, jsonschema describes an
    invalid one; dataclasses imports inspect: 4 ms).

(d) `python -X importtime` of a validate run: the import cost of our own modules
    (top 10 by cumulative time), and the top 10 imports overall for context.

Timings are medians over --rounds rounds (default 15), warm OS cache, warm bytecode:
every child gets PYTHONPYCACHEPREFIX pointing at a private folder filled by warm-up
runs (so PYTHONDONTWRITEBYTECODE in the caller's environment cannot make every run
recompile, and nothing is written outside the work folder). CPU time (user + sys of
the child, from wait4) is reported beside wall time: on a busy machine it shows
whether a miss is noise.

    python bench/bench_validate.py [--rounds 15] [--many 1000] [--many-rounds 5] [--keep]

It is a benchmark, not a test: it exits 0 and prints "GOAL MISSED" for each missed goal
(exit 1 only when a run gives a wrong result, e.g. validate fails on a valid manifest).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import figure

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests"
FLOOR_GOAL = 0.70  # validate / floor <= this (issue 16)
MANY_GOAL = 1.0  # seconds for 1,000 manifests in one process


def run_timed(argv: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, float, int, str, str]:
    """Wall seconds, CPU seconds of the child (user + sys, from wait4), exit code, stdout, stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (wall, usage.ru_utime + usage.ru_stime, proc.returncode,
                out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def console_script() -> str | None:
    candidate = Path(sys.executable).with_name("mcompile")
    if candidate.is_file():
        return str(candidate)
    return shutil.which("mcompile")


def make_many(folder: Path, n: int) -> list[str]:
    """n manifests: the examples in turn, each with its own file and experiment name."""
    shutil.copy(EXAMPLES / "base.yaml", folder / "base.yaml")  # what the others extend
    for other in EXAMPLES.iterdir():  # the files they name (a run.commands_file)
        if other.is_file() and other.suffix != ".yaml":
            shutil.copy(other, folder / other.name)
    examples = sorted(EXAMPLES.glob("*.yaml"))
    names = []
    for i in range(n):
        example = examples[i % len(examples)]
        text = example.read_text(encoding="utf-8")
        text, count = re.subn(r"(?m)^name: (\S+)", rf"name: \g<1>-{i:04d}", text, count=1)
        assert count == 1, example
        name = f"m{i:04d}-{example.name}"
        (folder / name).write_text(text, encoding="utf-8")
        names.append(name)
    return names


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def check(label: str, code: int, out: str, err: str, *, expect_code: int = 0) -> None:
    if code != expect_code or err.strip():
        print(f"ERROR: {label}: exit {code}, stderr: {err.strip()[:500]}", file=sys.stderr)
        raise SystemExit(1)


def importtime(env: dict[str, str], cwd: Path) -> tuple[list[tuple[int, int, str]], int]:
    code = "from manifest_compiler.cli import main; raise SystemExit(main(['validate', 'commands.yaml']))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True)
    check("importtime run", proc.returncode, proc.stdout, "")
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S.*)$", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), m.group(3)[1:] + m.group(4)))
    top_level = sum(cum for _, cum, name in rows if not name.startswith(" "))
    return rows, top_level


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--many-rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["NO_COLOR"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        shutil.copy(EXAMPLES / "commands.yaml", work / "commands.yaml")
        many_dir = work / "many"
        many_dir.mkdir()
        many = make_many(many_dir, args.many)

        py = sys.executable
        configs: dict[str, list[str]] = {
            "python -m manifest_compiler validate": [py, "-m", "manifest_compiler", "validate", "commands.yaml"],
        }
        script = console_script()
        if script:
            configs["mcompile validate (console script)"] = [script, "validate", "commands.yaml"]
        configs['python -c "import yaml, jsonschema"'] = [py, "-c", "import yaml, jsonschema"]
        configs["python -c pass"] = [py, "-c", "pass"]
        floor = 'python -c "import yaml, jsonschema"'

        # warm-up: fill the private bytecode cache and the OS cache
        for argv in configs.values():
            for _ in range(2):
                wall, cpu, code, out, err = run_timed(argv, env=env, cwd=work)
                check(" ".join(argv), code, out, err)
        wall, cpu, code, out, err = run_timed([py, "-m", "manifest_compiler", "validate", *many], env=env, cwd=many_dir)
        check("validate many (warm-up)", code, out, err)

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        walls: dict[str, list[float]] = {k: [] for k in configs}
        cpus: dict[str, list[float]] = {k: [] for k in configs}
        ratios: list[float] = []
        labels = list(configs)
        for r in range(args.rounds):
            order = labels[r % len(labels):] + labels[: r % len(labels)]  # rotate who goes first
            this_round = {}
            for label in order:
                wall, cpu, code, out, err = run_timed(configs[label], env=env, cwd=work)
                check(label, code, out, err)
                walls[label].append(wall)
                cpus[label].append(cpu)
                this_round[label] = wall
            ratios.append(this_round["python -m manifest_compiler validate"] / this_round[floor])

        many_walls, many_cpus = [], []
        for _ in range(args.many_rounds):
            wall, cpu, code, out, err = run_timed([py, "-m", "manifest_compiler", "validate", *many], env=env, cwd=many_dir)
            check(f"validate {len(many)} manifests", code, out, err)
            many_walls.append(wall)
            many_cpus.append(cpu)

        probe = (
            "import sys, json\n"
            "from manifest_compiler.cli import main\n"
            "code = main(['validate', 'commands.yaml'])\n"
            "print(json.dumps({'exit': code, **{m: m in sys.modules for m in ('jinja2', 'deepdiff', 'yaml', 'jsonschema', 'dataclasses')}}))\n"
        )
        proc = subprocess.run([py, "-c", probe], cwd=work, env=env, capture_output=True, text=True)
        check("sys.modules probe", proc.returncode, proc.stdout, proc.stderr)
        loaded = json.loads(proc.stdout)

        rows, _ = importtime(env, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"mcompile validate benchmark: Python {sys.version.split()[0]}, {args.rounds} rounds, "
          f"load average {load:.2f} on {os.cpu_count()} CPUs")
    if load > (os.cpu_count() or 1) * 0.5:
        print("note: the machine is busy; compare CPU times as well as wall times")
    print()
    print("(a) one whole process, median of", args.rounds)
    print(f"    {'command':<38} {'wall':>11} {'cpu':>11} {'min wall':>11} {'vs floor':>9}")
    floor_median = median(walls[floor])
    for label in labels:
        w = median(walls[label])
        print(f"    {label:<38} {fmt_ms(w)} {fmt_ms(median(cpus[label]))} {fmt_ms(min(walls[label]))} "
              f"{w / floor_median:8.2f}x")
    ratio = median(walls["python -m manifest_compiler validate"]) / floor_median
    print(f"    validate / floor: {ratio:.2f} (median of per-round ratios {median(ratios):.2f}; "
          f"CPU {median(cpus['python -m manifest_compiler validate']) / median(cpus[floor]):.2f}; goal <= {FLOOR_GOAL})")
    if script:
        a = median(walls["python -m manifest_compiler validate"])
        b = median(walls["mcompile validate (console script)"])
        print(f"    console script vs python -m: {1000 * (b - a):+.1f} ms")
    print()
    many_median = median(many_walls)
    per_extra = (many_median - median(walls["python -m manifest_compiler validate"])) / len(many)
    print(f"(b) {len(many)} manifests in one process, median of {args.many_rounds}: "
          f"{many_median:.3f} s wall, {median(many_cpus):.3f} s CPU "
          f"({1000 * per_extra:.2f} ms per extra manifest; goal < {MANY_GOAL:.0f} s)")
    print()
    lazy_ok = not any(loaded[m] for m in ("jinja2", "deepdiff", "jsonschema", "dataclasses"))
    print(f"(c) after main(['validate', ...]) of valid manifests: jinja2 imported: {loaded['jinja2']}, deepdiff imported: "
          f"{loaded['deepdiff']}, jsonschema imported: {loaded['jsonschema']}, dataclasses imported: {loaded['dataclasses']} "
          f"(yaml: {loaded['yaml']}) -> {'ok' if lazy_ok else 'NOT LAZY'}")
    print()
    ours = [row for row in rows if "manifest_compiler" in row[2]]
    print("(d) python -X importtime of a validate run: our modules, top 10 by cumulative time")
    print(f"    {'self':>9} {'cumulative':>11}  module")
    for self_us, cum_us, name in sorted(ours, key=lambda r: -r[1])[:10]:
        print(f"    {self_us / 1000:7.1f}ms {cum_us / 1000:9.1f}ms  {name.strip()}")
    print(f"    our modules' own (self) time in total: {sum(r[0] for r in ours) / 1000:.1f} ms")
    print("    all imports, top 10 by cumulative time (for context)")
    for self_us, cum_us, name in sorted(rows, key=lambda r: -r[1])[:10]:
        print(f"    {self_us / 1000:7.1f}ms {cum_us / 1000:9.1f}ms  {name.strip()}")
    print()

    figure("cold validate of a valid manifest", ratio, FLOOR_GOAL, 'python -c "import yaml, jsonschema"',
           ms=round(1000 * median(walls["python -m manifest_compiler validate"]), 1))
    missed = []
    if ratio > FLOOR_GOAL:
        missed.append(f"validate / floor = {ratio:.2f} > {FLOOR_GOAL}")
    if many_median >= MANY_GOAL:
        missed.append(f"{len(many)} manifests took {many_median:.3f} s >= {MANY_GOAL} s")
    if not lazy_ok:
        missed.append("jinja2, deepdiff, jsonschema or dataclasses imported by validate")
    for m in missed:
        print(f"GOAL MISSED: {m}")
    if not missed:
        print("all goals met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
