"""Benchmark: distributed job start, from the job's start to "all ranks running".

On a freshly started dev cluster (scripts/slurm-dev.sh up --nodes 2, filetxt accounting,
its own folder and port range; stopped by the script at the end with `down`, which stops
the daemons by pid), one job at a time:

  baseline N x T   a plain batch script, no container and no staging:
                     #!/bin/bash
                     date +%s.%N > job-start          (the job's start: its first line)
                     MASTER_ADDR=<NodeAddr of the first node>, MASTER_PORT=<free port>
                     srun bash -c 'RANK=$SLURM_PROCID ... exec "$@"' python3 rendezvous.py --stamp
                   for N x T = 2 nodes x 2 tasks and 1 node x 2 tasks
  mcompile         manifests with `run.launcher: srun` (nodes: 2 and 1, tasks_per_node: 2) whose
                   command is the same rendezvous program (in the test image as
                   /opt/bench/rendezvous.py), compiled and submitted with
                   `python3 -m manifest_compiler compile M --runs R --submit`, with the
                   apptainer test double on PATH. Skipped, with "mcompile case skipped:
                   launcher not supported yet", when `manifest_compiler validate` refuses
                   the manifest. --manifest M uses your own instead (SCRATCH is set to the
                   bench's scratch folder, which holds containers/bench.sif).

"All ranks running" = max over ranks of the time rendezvous.py started (`--stamp` writes
start-<RANK>, time.time() taken first thing in the program) minus the job's start. All
processes share the machine's clock (bwrap has no time namespace).

The job's start: the baseline's first line is `date +%s.%N`. The mcompile job cannot get
a line before its own, so its start is the BIRTH time of its SLURM log file (statx btime,
`stat -c %.9W`, ns resolution on ext4): slurmstepd creates the --output file right before
it starts the batch script. For the baseline both are measured, and the table shows the
btime -> first line gap, so the two references can be compared; it is a few ms.
`scontrol show job`'s StartTime and sacct's Start have 1 s resolution, too coarse.

Figures are medians of --reps jobs per case (alternating), and ratios against the
baseline 2 x 2 of the same session.

    python bench/bench_distributed.py [--reps 5] [--manifest M] [--no-mcompile] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOUBLES = ROOT / "tests" / "doubles"
RENDEZVOUS = ROOT / "tests" / "programs" / "rendezvous.py"
SLURM_DEV = ROOT / "scripts" / "slurm-dev.sh"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cluster import free_port_base, parse_exports  # noqa: E402
from helpers.make_test_image import make_image  # noqa: E402

# The same interpreter as inside the container (whose /usr is the host's), and no pyenv shim.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SKIP_MESSAGE = "mcompile case skipped: launcher not supported yet"

BASELINE = """\
#!/bin/bash
date +%s.%N > {work}/job-start-$SLURM_JOB_ID
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_ADDR=$(scontrol show node "$first" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
export MASTER_ADDR MASTER_PORT={port}
srun bash -c 'RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID NODE_RANK=$SLURM_NODEID WORLD_SIZE=$SLURM_NTASKS exec "$@"' \\
  srun-env {python} {rendezvous} --stamp --timeout 60 --out {work}/ranks-$SLURM_JOB_ID
"""

MANIFEST = """\
version: 1
name: benchdist{nodes}
project: bench
container:
  image: $SCRATCH/containers/bench.sif
  stage_image: false
resources: {{time: 5m, mem: 512M, nodes: {nodes}, tasks_per_node: 2}}
run:
  launcher: srun
  commands:
    - python3 /opt/bench/rendezvous.py --stamp --timeout 60 --out /scratch_storage
"""


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def birth_time(path: Path) -> float:
    out = subprocess.run(["stat", "-c", "%.9W", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    value = float(out)
    if value <= 0:
        raise SystemExit(f"{path}: the filesystem does not record birth times (stat %W = {out})")
    return value


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, work: Path, cluster_dir: Path) -> None:
        self.work = work
        self.cluster_dir = cluster_dir
        self.scratch = work / "scratch"
        self.logs = work / "logs"
        self.runs = work / "runs"
        for d in (self.scratch / "containers", self.logs, self.runs):
            d.mkdir(parents=True)
        make_image(self.scratch / "containers" / "bench.sif", {"opt/bench/rendezvous.py": RENDEZVOUS.read_text()})
        out = subprocess.run(
            ["bash", str(SLURM_DEV), "env", "--dir", str(cluster_dir)], capture_output=True, text=True, check=True
        ).stdout
        self.env = {
            **os.environ,
            **parse_exports(out),
            "SCRATCH": str(self.scratch),
            "PATH": f"{DOUBLES}:{os.environ['PATH']}",
            "NO_COLOR": "1",
        }

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(argv), env=self.env, cwd=self.work, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise SystemExit(f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def wait_gone(self, job: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-j", job, check=False).stdout.strip():
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job} still queued after {timeout} s")
            time.sleep(0.1)

    def job_field(self, job: str, name: str) -> str:
        text = self.run("scontrol", "show", "job", "-o", job).stdout
        for item in text.split():
            if item.startswith(name + "="):
                return item.split("=", 1)[1]
        raise SystemExit(f"scontrol show job {job}: no {name}=")

    def baseline(self, nodes: int, per_node: int) -> dict[str, float]:
        script = self.work / f"baseline-{nodes}x{per_node}.sh"
        script.write_text(
            BASELINE.format(work=self.work, port=free_port(), python=PYTHON, rendezvous=RENDEZVOUS)
        )
        log = self.logs / f"baseline-{nodes}x{per_node}-%j.out"
        job = self.run(
            "sbatch", "--parsable", f"-N{nodes}", f"--ntasks-per-node={per_node}", f"--output={log}", str(script)
        ).stdout.strip().split(";")[0]
        self.wait_gone(job)
        log_file = Path(str(log).replace("%j", job))
        start = float((self.work / f"job-start-{job}").read_text())
        ranks = self.work / f"ranks-{job}"
        return self.measure(job, ranks, nodes * per_node, start, birth_time(log_file), log_file)

    def measure(self, job: str, ranks: Path, world: int, start: float, btime: float, log: Path) -> dict[str, float]:
        stamps = sorted(ranks.glob("start-*"))
        records = sorted(ranks.glob("rank-*"))
        if len(stamps) != world or len(records) != world:
            raise SystemExit(f"job {job}: {len(stamps)} stamps and {len(records)} rank files in {ranks}, "
                             f"expected {world}\n{log.read_text()}")
        rank0 = json.loads((ranks / "rank-0").read_text())
        if rank0["status"] != "ok":
            raise SystemExit(f"job {job}: rendezvous failed: {rank0['message']}")
        last = max(float(p.read_text()) for p in stamps)
        first = min(float(p.read_text()) for p in stamps)
        return {
            "start->all running": last - start,
            "start->first rank": first - start,
            "start->rendezvous done": rank0["all_arrived"] - start,
            "log btime->start": start - btime,
            "log btime->all running": last - btime,
        }

    def mcompile_ok(self, manifest: Path) -> bool:
        proc = self.run(sys.executable, "-m", "manifest_compiler", "validate", str(manifest), check=False)
        if proc.returncode != 0:
            print(SKIP_MESSAGE)
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            print("  (validate said: " + " | ".join(detail[:3]) + ")")
            return False
        return True

    def mcompile(self, manifest: Path) -> dict[str, float]:
        proc = self.run(sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(self.runs), "--submit")
        _, job = proc.stdout.split()
        self.wait_gone(job)
        log = Path(self.job_field(job, "StdOut"))
        world = int(self.job_field(job, "NumTasks"))
        state = self.job_field(job, "JobState")
        if state != "COMPLETED":
            raise SystemExit(f"mcompile job {job} ended {state}:\n{log.read_text()}")
        outs = [p for p in self.scratch.glob(f"**/{job}_0") if p.is_dir()]
        if len(outs) != 1:
            raise SystemExit(f"mcompile job {job}: no single output folder *_{job}_0 under {self.scratch}: {outs}")
        btime = birth_time(log)
        r = self.measure(job, outs[0], world, btime, btime, log)
        return {k: v for k, v in r.items() if not k.startswith("log btime")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="jobs per case (default 5)")
    ap.add_argument("--manifest", type=Path, help="manifest for the mcompile case (default: a generated one)")
    ap.add_argument("--no-mcompile", action="store_true", help="baseline only")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mcompile-bench-dist-", dir="/tmp"))
    cluster_dir = work / "slurm"
    port = free_port_base()
    print(f"work folder {work}; {os.cpu_count()} CPUs; python {PYTHON}")
    print(f"starting SLURM (2 nodes) in {cluster_dir} (port base {port}) ...", flush=True)
    up = subprocess.run(
        ["bash", str(SLURM_DEV), "up", "--nodes", "2", "--accounting", "filetxt", "--dir", str(cluster_dir), "--port-base", str(port)],
        capture_output=True,
        text=True,
    )
    try:
        if up.returncode != 0:
            raise SystemExit(f"slurm-dev.sh up failed:\n{up.stdout}\n{up.stderr}")
        bench = Bench(work, cluster_dir)
        cases: dict[str, Callable[[], dict[str, float]]] = {
            "baseline 2 nodes x 2 tasks": lambda: bench.baseline(2, 2),
            "baseline 1 node x 2 tasks": lambda: bench.baseline(1, 2),
        }
        if not args.no_mcompile:
            manifests = {"mcompile srun launcher": args.manifest}
            if args.manifest is None:
                manifests = {"mcompile srun launcher": work / "benchdist2.yaml", "mcompile srun 1 node x 2": work / "benchdist1.yaml"}
                for nodes, path in zip((2, 1), manifests.values(), strict=True):
                    path.write_text(MANIFEST.format(nodes=nodes))
            for case, manifest in manifests.items():
                if bench.mcompile_ok(manifest):
                    cases[case] = lambda m=manifest: bench.mcompile(m)
        names = list(cases)
        bench.baseline(1, 1)  # warm-up: first job on a fresh cluster, page cache; not counted
        results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for i in range(args.reps):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                results[name].append(cases[name]())

        print(f"\n## job start -> ranks, medians of {args.reps} jobs per case, one job at a time (ms)\n")
        keys = list(dict.fromkeys(k for rows in results.values() for r in rows for k in r))
        print(f"{'case':<30} {'what':<26} {'median':>8} {'min':>8} {'max':>8}")
        for name in names:
            for k in keys:
                vals = [r[k] for r in results[name] if k in r]
                if vals:
                    print(f"{name:<30} {k:<26} {ms(statistics.median(vals))} {ms(min(vals))} {ms(max(vals))}")
        base = statistics.median(r["start->all running"] for r in results[names[0]])
        print(f"\nratios of median start->all running against {names[0]} ({ms(base).strip()} ms):")
        for name in names:
            med = statistics.median(r["start->all running"] for r in results[name])
            print(f"  {name:<30} {med / base:6.2f}x")
        # same reference on both sides: the log file's birth time
        for case, baseline in (("mcompile srun launcher", names[0]), ("mcompile srun 1 node x 2", names[1])):
            if case in results:
                b = statistics.median(r["log btime->all running"] for r in results[baseline])
                m = statistics.median(r["start->all running"] for r in results[case])
                print(f"  {case} vs {baseline}, both from the log's birth time: {m / b:6.2f}x ({ms(m).strip()} / {ms(b).strip()} ms)")
        load = os.getloadavg()
        print(f"\nload average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    finally:
        down = subprocess.run(["bash", str(SLURM_DEV), "down", "--dir", str(cluster_dir)], capture_output=True, text=True)
        if down.returncode != 0:
            print(f"warning: slurm-dev.sh down failed:\n{down.stdout}\n{down.stderr}", file=sys.stderr)
        if args.keep:
            print(f"kept {work}")
        elif down.returncode == 0:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
