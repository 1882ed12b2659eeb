"""Benchmark: overhead of our job script, from job start to the user command starting.

Staging is excluded: the manifest has no data and `container.stage_image: false`.
The user command only records the time it starts:

    printf '%s\\n' "$EPOCHREALTIME" > /scratch_storage/t_cmd

(`$EPOCHREALTIME` is bash's built-in `date +%s.%N`: the same clock, without a fork).
bwrap shares the host's clocks (no time namespace), so this stamp is comparable with
`time.time()` taken on the host right before the job starts. To catch a step of the wall
clock during a sample, the offset time.time() - time.monotonic() is taken before and after
every sample; a sample whose offset moved by more than 1 ms is discarded and counted.

Outside SLURM, four things are started from Python, alternating, ~15 rounds:
  job       `bash job.sbatch` (SLURM_JOB_ID, SLURM_SUBMIT_DIR, SCRATCH, SLURM_TMPDIR, HOME
            set; tests/doubles first on PATH), t = start -> command
  double    the apptainer test double with exactly the argv our job passed to it (same flags,
            same 4 binds, same env-file, same image, same command), from the double's log
  bash      `bash -c COMMAND` with the stamp written to a host file (bare process start)
  stamped   job.sbatch with two stamp lines added (see below): splits each run into our
            script (first line -> runtime line) and the double (runtime line -> command)
Our script's own overhead = median(job) - median(double) (and the median of the paired
per-round differences, and the same in CPU time from wait4). Five traced runs (`set -x`,
PS4 with $EPOCHREALTIME and $LINENO) attribute the job's time to its steps and lines.

Through a real SLURM cluster (scripts/slurm-dev.sh, filetxt accounting, own port range):
  wrap      `sbatch --wrap 'date +%s.%N > FILE'` (its script is #!/bin/sh, dash, which has
            no $EPOCHREALTIME; date costs one fork, ~1 ms): sbatch -> first line
  job       `sbatch job.sbatch` from the run directory: sbatch -> container command
  stamped   a copy of job.sbatch with two lines inserted that record the time: after
            `#!/bin/bash` and right before the `"$runtime" run` line, so inside SLURM the job
            splits into our script (first line -> runtime) and the double (runtime -> command)
Five submissions each, one at a time, alternating.

    python bench/bench_job.py [--runs 15] [--slurm-runs 5] [--no-slurm] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOUBLES = ROOT / "tests" / "doubles"
SLURM_DEV = ROOT / "scripts" / "slurm-dev.sh"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import free_port_base, parse_exports  # noqa: E402
from helpers.make_test_image import make_image  # noqa: E402

STAMP = "printf '%s\\n' \"$EPOCHREALTIME\" > "  # + target file
COMMAND = STAMP + "/scratch_storage/t_cmd"
MAX_CLOCK_STEP_S = 0.001

MANIFEST = """\
version: 1
name: benchjob
project: bench
container:
  image: $SCRATCH/containers/bench.sif
  stage_image: false
resources: {{time: 5m, mem: 256M}}
run:
  commands:
    - {command}
"""


def clock_offset() -> float:
    return time.time() - time.monotonic()


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


class Setup:
    """A scratch folder with an image, a compiled run, and the environment of a job."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.scratch = base / "scratch"
        self.local = base / "local"  # SLURM_TMPDIR
        self.home = base / "home"
        for d in (self.scratch / "containers", self.local, self.home):
            d.mkdir(parents=True)
        make_image(self.scratch / "containers" / "bench.sif", {})
        manifest = base / "benchjob.yaml"
        manifest.write_text(MANIFEST.format(command=json.dumps(COMMAND)))
        proc = subprocess.run(
            [sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(base / "runs")],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        self.run_dir = Path(proc.stdout.split()[-1])
        self.job = self.run_dir / "job.sbatch"
        assert self.job.is_file(), proc.stdout
        assert (self.run_dir / "tasks" / "commands").read_text() == COMMAND + "\n"
        self.next_job_id = 900000
        # job.sbatch with one line recording the time after `#!/bin/bash` and one right before
        # the `"$runtime" run` line: splits a run into our script and the runtime double.
        self.stamps = base / "stamps"
        self.stamps.mkdir()
        lines = self.job.read_text().splitlines(keepends=True)
        assert lines[0] == "#!/bin/bash\n"
        at = next(i for i, line in enumerate(lines) if line.lstrip().startswith('"$runtime" '))
        self.stamped = base / "job-stamped.sbatch"
        self.stamped.write_text(
            lines[0]
            + STAMP
            + f'"{self.stamps}/start_$SLURM_JOB_ID"\n'
            + "".join(lines[1:at])
            + STAMP
            + f'"{self.stamps}/runtime_$SLURM_JOB_ID"\n'
            + "".join(lines[at:])
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SCRATCH": str(self.scratch),
                "HOME": str(self.home),
                "NO_COLOR": "1",
                "PATH": f"{DOUBLES}:{os.environ['PATH']}",
            }
        )
        env.update(extra)
        return env

    def job_env(self, job_id: int, **extra: str) -> dict[str, str]:
        return self.env(SLURM_JOB_ID=str(job_id), SLURM_SUBMIT_DIR=str(self.run_dir), SLURM_TMPDIR=str(self.local), **extra)

    def outputs(self, job_id: int | str) -> Path:
        return self.scratch / "bench" / "benchjob" / f"{job_id}_0"

    def new_job_id(self) -> int:
        self.next_job_id += 1
        return self.next_job_id


def timed(argv: list[str], env: dict[str, str], cwd: Path, stamp_file: Path) -> tuple[float, float] | None:
    """(wall seconds from right before the process starts to the command's stamp, CPU seconds).

    CPU is user+sys of the process and every descendant it waited for (wait4's rusage), for
    the whole run: less sensitive than wall time to other work competing for the CPUs.
    None when the wall clock stepped during the sample.
    """
    stamp_file.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as err:
        off0 = clock_offset()
        t0 = time.time()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        off1 = clock_offset()
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{shlex.join(argv[:3])}... exited {proc.returncode}:\n{err.read().decode()}")
    if abs(off1 - off0) > MAX_CLOCK_STEP_S:
        return None
    return float(stamp_file.read_text()) - t0, usage.ru_utime + usage.ru_stime


def double_argv(setup: Setup) -> tuple[list[str], Path]:
    """Run the job once with APPTAINER_DOUBLE_LOG: the exact argv it gave the double.

    The job removes its node-local folder at exit, so the bind sources and the env-file
    are made again at the same paths (same names, same values) for the baseline.
    """
    log = setup.base / "double.log"
    job_id = setup.new_job_id()
    subprocess.run(
        ["bash", str(setup.job)],
        env=setup.job_env(job_id, APPTAINER_DOUBLE_LOG=str(log)),
        cwd=setup.run_dir,
        check=True,
        capture_output=True,
    )
    entry = json.loads(log.read_text().splitlines()[-1])
    argv = entry["argv"]
    binds = entry["binds"]
    for b in binds:
        os.makedirs(b["source"], exist_ok=True)
    env_file = Path(entry["env_file"])
    values = {"SLURM_JOB_ID": str(job_id), "MCOMPILE_JOB": str(job_id), "MCOMPILE_TASK": "0", "MCOMPILE_RESTART": "0"}
    assert set(entry["env_file_names"]) <= set(values), entry["env_file_names"]
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{n}={values[n]}\n" for n in entry["env_file_names"]))
    env_file.chmod(0o600)
    if Path(argv[0]).name != "apptainer":
        argv = [str(DOUBLES / "apptainer"), *argv[1:]]
    elif not os.path.isabs(argv[0]):
        argv[0] = str(DOUBLES / "apptainer")
    assert argv[-1] == COMMAND, argv
    print(f"double argv (from the job, {len(binds)} binds): {shlex.join(argv)}")
    return argv, setup.outputs(job_id) / "t_cmd"


def local_rounds(setup: Setup, runs: int) -> dict[str, list[float]]:
    argv, double_stamp = double_argv(setup)
    bare_stamp = setup.base / "bare_t_cmd"
    bare = ["bash", "-c", STAMP + shlex.quote(str(bare_stamp))]
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    skipped = 0

    def one(kind: str) -> None:
        nonlocal skipped
        if kind == "job":
            job_id = setup.new_job_id()
            r = timed(["bash", str(setup.job)], setup.job_env(job_id), setup.run_dir, setup.outputs(job_id) / "t_cmd")
        elif kind == "double":
            r = timed(argv, setup.env(), setup.base, double_stamp)
        elif kind == "stamped":
            job_id = setup.new_job_id()
            r = timed(["bash", str(setup.stamped)], setup.job_env(job_id), setup.run_dir, setup.outputs(job_id) / "t_cmd")
            if r is not None:
                t_start = float((setup.stamps / f"start_{job_id}").read_text())
                t_runtime = float((setup.stamps / f"runtime_{job_id}").read_text())
                t_cmd = float((setup.outputs(job_id) / "t_cmd").read_text())
                split["script"].append(t_runtime - t_start)
                split["double"].append(t_cmd - t_runtime)
        else:
            r = timed(bare, setup.env(), setup.base, bare_stamp)
        if r is None:
            skipped += 1
        else:
            results[kind].append(r[0])
            cpu[kind].append(r[1])

    kinds = ["job", "double", "bash", "stamped"]
    split: dict[str, list[float]] = {"script": [], "double": []}
    results = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    for kind in kinds:  # warm-up (page cache, python bytecode), not counted
        one(kind)
    results = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    split = {"script": [], "double": []}
    paired: list[float] = []
    for i in range(runs):
        order = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]
        before = {k: len(v) for k, v in results.items()}
        for kind in order:
            one(kind)
        if len(results["job"]) > before["job"] and len(results["double"]) > before["double"]:
            paired.append(results["job"][-1] - results["double"][-1])
    results["paired"] = paired
    for k in kinds:
        results[f"cpu {k}"] = cpu[k]
    results["stamped: script"] = split["script"]
    results["stamped: double"] = split["double"]
    if skipped:
        print(f"note: {skipped} samples discarded: the wall clock stepped by > {MAX_CLOCK_STEP_S * 1000:.0f} ms")
    return results


PS4_RE = re.compile(r"^(\++) (\d+\.\d+) (\d+) (.*)$")

# Regions of job.sbatch, each from the first line matching its pattern to the next region, in
# the order of the file (the job defines functions first and calls them at its end, so a
# region's lines run when its function is called; a line's cost goes to its region).
STEPS = [
    ("set, mcompile_die", r"^set -euo pipefail"),
    ("signal traps, checks (required vars, ids, task number, readable tasks/)", r"^mcompile_child="),
    ("checksum of tasks/blocks (sha256sum)", r"^blocks_sum="),
    ("read the index record (dd)", r"^index_record="),
    ("check the command's block (dd | sha256sum, sed)", r"^for \(\(block"),
    ("read the task's command (dd)", r"^task_command=\$\("),
    ("prepare: node-local folders (rm -rf, mkdir -p), image check", r"^mcompile_prepare\(\)"),
    ("runtime lookup", r"^(if command -v apptainer|runtime=)"),
    ("env-file ((umask) subshell, printf)", r"^  local env_file="),
    ("bind plan (mcompile_bind per mount)", r"^  local binds=\(\)"),
    ("flags, log line ($(hostname))", r"^  local flags=\("),
    ("runtime double: exec -> command start", r'^  "\$runtime" '),
]


def step_starts(script_lines: list[str]) -> list[tuple[int, str]]:
    starts = []
    for label, pattern in STEPS:
        line = next(i + 1 for i, text in enumerate(script_lines) if re.search(pattern, text))
        starts.append((line, label))
    assert [s for s, _ in starts] == sorted(s for s, _ in starts), starts
    return starts


def traced_breakdown(setup: Setup, runs: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Cost of each step and of the costliest lines of job.sbatch, median over traced runs.

    The job is sourced by `bash -c 'set -x; . job.sbatch'` with PS4 showing $EPOCHREALTIME and
    $LINENO (bash ignores PS4 from the environment as root). The gap between two trace events
    is charged to the earlier event's line, or to the later one's when it is one level deeper
    (a $(...) child: the gap is its fork). xtrace adds a little to every line.
    """
    script_lines = setup.job.read_text().splitlines()
    starts = step_starts(script_lines)
    runtime_line = starts[-1][0]

    def step_of(lineno: int) -> str:
        label = "bash start, source the script"
        for line, name in starts:
            if lineno >= line:
                label = name
        return label

    per_step: list[dict[str, float]] = []
    per_line: list[dict[str, float]] = []
    for _ in range(runs):
        job_id = setup.new_job_id()
        stamp = setup.outputs(job_id) / "t_cmd"
        wrapper = "PS4='+ ${EPOCHREALTIME} ${LINENO} '; set -x; . \"$1\""
        t0 = time.time()
        proc = subprocess.run(
            ["bash", "-c", wrapper, "bash", str(setup.job)],
            env=setup.job_env(job_id),
            cwd=setup.run_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        t_cmd = float(stamp.read_text())
        events: list[tuple[float, int, int]] = []
        for line in proc.stderr.splitlines():
            m = PS4_RE.match(line)
            if m and len(m.group(1)) > 1:  # depth 1 is the wrapper itself
                events.append((float(m.group(2)), int(m.group(3)), len(m.group(1))))
                if int(m.group(3)) == runtime_line:
                    break
        steps = {"bash start, source the script": events[0][0] - t0}
        lines: dict[str, float] = {}
        for (t, lineno, depth), (t_next, next_line, next_depth) in zip(events, events[1:], strict=False):
            charged = next_line if next_depth > depth else lineno
            steps[step_of(charged)] = steps.get(step_of(charged), 0.0) + (t_next - t)
            key = f"line {charged:3d}: {script_lines[charged - 1].strip()[:60]}"
            lines[key] = lines.get(key, 0.0) + (t_next - t)
        assert events[-1][1] == runtime_line
        steps[starts[-1][1]] = t_cmd - events[-1][0]
        steps["TOTAL start -> command (traced)"] = t_cmd - t0
        per_step.append(steps)
        per_line.append(lines)

    def medians(rows: list[dict[str, float]]) -> list[tuple[str, float]]:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return [(k, statistics.median(r.get(k, 0.0) for r in rows)) for k in keys]

    return medians(per_step), sorted(medians(per_line), key=lambda kv: -kv[1])


# --- SLURM -------------------------------------------------------------------


def slurm_env(directory: Path) -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(SLURM_DEV), "env", "--dir", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return parse_exports(out)


def wait_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.02)


def wait_gone(env: dict[str, str], job: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job} still queued after {timeout} s")
        time.sleep(0.1)


def sbatch(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[str, float]:
    t0 = time.time()
    proc = subprocess.run(["sbatch", "--parsable", *argv], env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"sbatch {shlex.join(argv)} failed: {proc.stderr}")
    return proc.stdout.strip().split(";")[0], t0


def slurm_rounds(setup: Setup, runs: int, keep: bool) -> dict[str, list[float]]:
    cluster_dir = Path(tempfile.mkdtemp(prefix="mcompile-bench-job-slurm-", dir="/tmp"))
    port = free_port_base()
    print(f"starting SLURM in {cluster_dir} (port base {port}) ...", flush=True)
    up = subprocess.run(
        ["bash", str(SLURM_DEV), "up", "--dir", str(cluster_dir), "--accounting", "filetxt", "--port-base", str(port)],
        capture_output=True,
        text=True,
    )
    try:
        if up.returncode != 0:
            raise SystemExit(f"slurm-dev.sh up failed:\n{up.stdout}\n{up.stderr}")
        env = setup.env(**slurm_env(cluster_dir))
        logs = setup.base / "slurm-logs"
        logs.mkdir()
        stamps = setup.stamps
        stamped = setup.stamped
        results: dict[str, list[float]] = {
            "wrap": [],
            "job": [],
            "stamped: sbatch->cmd": [],
            "stamped: first line->cmd": [],
            "stamped: sbatch->first line": [],
            "stamped: first line->runtime": [],
            "stamped: runtime->cmd": [],
        }
        # sbatch --wrap runs `#!/bin/sh` (dash: no $EPOCHREALTIME), so its first line is date(1).
        wrap_cmd = f'date +%s.%N > "{stamps}/wrap_$SLURM_JOB_ID"'

        def wrap() -> None:
            job, t0 = sbatch([f"--output={logs}/wrap_%j.out", "--wrap", wrap_cmd], env, setup.base)
            wait_file(stamps / f"wrap_{job}")
            results["wrap"].append(float((stamps / f"wrap_{job}").read_text()) - t0)
            wait_gone(env, job)

        def ours(script: Path, kind: str) -> None:
            job, t0 = sbatch([f"--output={logs}/{kind}_%j.out", str(script)], env, setup.run_dir)
            out = setup.outputs(job) / "t_cmd"
            wait_file(out)
            t_cmd = float(out.read_text())
            wait_gone(env, job)
            log = (logs / f"{kind}_{job}.out").read_text()
            assert "exited with status 0" in log, log
            if kind == "job":
                results["job"].append(t_cmd - t0)
            else:
                t_start = float((stamps / f"start_{job}").read_text())
                results["stamped: sbatch->cmd"].append(t_cmd - t0)
                results["stamped: first line->cmd"].append(t_cmd - t_start)
                results["stamped: sbatch->first line"].append(t_start - t0)
                t_runtime = float((stamps / f"runtime_{job}").read_text())
                results["stamped: first line->runtime"].append(t_runtime - t_start)
                results["stamped: runtime->cmd"].append(t_cmd - t_runtime)

        wrap()  # warm-up: first job on a fresh cluster
        results["wrap"].clear()
        steps = [wrap, lambda: ours(setup.job, "job"), lambda: ours(stamped, "stamped")]
        for i in range(runs):
            for step in steps[i % 3 :] + steps[: i % 3]:
                step()
        return results
    finally:
        down = subprocess.run(["bash", str(SLURM_DEV), "down", "--dir", str(cluster_dir)], capture_output=True, text=True)
        if down.returncode != 0:
            print(f"warning: slurm-dev.sh down failed:\n{down.stdout}\n{down.stderr}", file=sys.stderr)
        elif not keep:
            shutil.rmtree(cluster_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="rounds outside SLURM (default 15)")
    ap.add_argument("--slurm-runs", type=int, default=5, help="submissions of each kind (default 5)")
    ap.add_argument("--no-slurm", action="store_true", help="skip the real-SLURM part")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args()
    if not shutil.which("bwrap"):
        raise SystemExit("bwrap is missing: apt-get install -y --no-install-recommends bubblewrap")

    base = Path(tempfile.mkdtemp(prefix="mcompile-bench-job-", dir="/tmp"))
    fs = " on ".join(
        subprocess.run(["df", "--output=fstype,source", str(base)], capture_output=True, text=True).stdout.split()[2:]
    )
    print(f"work folder {base} ({fs}); {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    try:
        setup = Setup(base)
        print(f"run {setup.run_dir}\ncommand: {COMMAND}\n")
        res = local_rounds(setup, args.runs)
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"\n## outside SLURM: process start -> user command start, medians of {args.runs} alternating rounds (ms)\n")
        print(f"{'what':<52} {'median':>8} {'min':>8} {'max':>8}   n {'CPU ms':>8}")
        labels = {
            "bash": "bare: bash -c COMMAND",
            "double": "apptainer double run (same argv as the job)",
            "job": "our job: bash job.sbatch",
        }
        for k in ("bash", "double", "job"):
            v = res[k]
            print(f"{labels[k]:<52} {ms(med[k])} {ms(min(v))} {ms(max(v))}  {len(v):2d} {ms(med['cpu ' + k])}")
        print(
            f"{'stamped job (2 stamp lines added): start -> command':<52} {ms(med['stamped'])} {ms(min(res['stamped']))} "
            f"{ms(max(res['stamped']))}  {len(res['stamped']):2d} {ms(med['cpu stamped'])}"
        )
        for k, label in (
            ("script", "  of which our script: first line -> runtime line"),
            ("double", "  of which the double: runtime line -> command"),
        ):
            v = res[f"stamped: {k}"]
            print(f"{label:<52} {ms(med['stamped: ' + k])} {ms(min(v))} {ms(max(v))}  {len(v):2d}")
        print("(CPU ms: median user+sys of the whole run, process and children, command and exit included)")
        print()
        print(f"{'double - bare (the runtime double itself)':<52} {ms(med['double'] - med['bash'])}")
        print(f"{'OUR SCRIPT: job - double (difference of medians)':<52} {ms(med['job'] - med['double'])}")
        print(
            f"{'OUR SCRIPT: median of paired (job - double)':<52} {ms(med['paired'])}"
            f"   (min {ms(min(res['paired'])).strip()}, max {ms(max(res['paired'])).strip()})"
        )
        print(
            f"{'OUR SCRIPT, CPU: job - double (medians)':<52} {ms(med['cpu job'] - med['cpu double'])}"
            "   (incl. the EXIT trap's rm -rf and the last printf)"
        )
        load = os.getloadavg()
        print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")

        print("\n## where the job's time goes: traced runs (set -x, PS4 with $EPOCHREALTIME), median of 5 (ms)\n")
        steps, lines = traced_breakdown(setup)
        for k, v in steps:
            print(f"{ms(v)}  {k}")
        print(f"{ms(sum(v for k, v in steps[:-2]))}  = our script before the runtime starts (sum of the steps above the double)")
        print("\ncostliest lines (each fork+exec of a program is one of these):")
        for k, v in lines[:8]:
            print(f"{ms(v)}  {k}")

        if not args.no_slurm:
            sres = slurm_rounds(setup, args.slurm_runs, args.keep)
            smed = {k: statistics.median(v) for k, v in sres.items()}
            print(f"\n## through a real SLURM (slurm-dev.sh, 1 node), {args.slurm_runs} submissions each, one at a time (ms)\n")
            print(f"{'what':<52} {'median':>8} {'min':>8} {'max':>8}")
            slabels = {
                "wrap": "sbatch --wrap: sbatch -> its first line",
                "job": "our job.sbatch: sbatch -> container command",
                "stamped: sbatch->first line": "stamped job: sbatch -> its first line",
                "stamped: sbatch->cmd": "stamped job: sbatch -> container command",
                "stamped: first line->cmd": "stamped job: first line -> container command",
                "stamped: first line->runtime": "  of which our script: first line -> runtime line",
                "stamped: runtime->cmd": "  of which the double: runtime line -> command",
            }
            for k, label in slabels.items():
                v = sres[k]
                print(f"{label:<52} {ms(smed[k])} {ms(min(v))} {ms(max(v))}")
            print()
            print(f"{'job - wrap (script + double under SLURM)':<52} {ms(smed['job'] - smed['wrap'])}")
            print(f"{'OUR SCRIPT under SLURM: first line -> runtime line':<52} {ms(smed['stamped: first line->runtime'])}")
    finally:
        if args.keep:
            print(f"\nkept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
