"""Benchmark: building a data archive, and staging again with nothing changed, against tar and find.

A subset of 30,000 files of 1 KiB (random bytes, 300 folders) on real disk (under /var/tmp).
Interleaved, --rounds rounds (default 11), the order rotated each round:

  build     `stage_archives` (in this process) with no archive yet: the find | sort walk, tar
            with its listing checked against the walk, fsync, rename. The archive is removed
            (untimed) before each build.
  tar       `tar -cf OUT --sort=name --format=gnu -C subset .` (a subprocess): the same tar,
            without a listing, check, fsync or walk. Goal: build / tar <= 1.5x.
  again     `stage_archives` with the archive present and the data unchanged (built=False):
            the walk alone.
  find      `find subset -printf '%P %s %T@\\n' > /dev/null` (a subprocess). Goal: again / find <= 1.5x.

The figures are the medians of the per-round ratios (and the medians of each). `stage_archives`
runs in this process: the interpreter's start and the compile of the manifest are measured by
bench_validate and bench_compile, not here.

    python bench/bench_stage_build.py [--files 30000] [--folders 300] [--rounds 11] [--dir /var/tmp]

It is a benchmark, not a test: it prints "GOAL MISSED" for a missed goal and exits 0 (exit 1
when a run gives a wrong result: a rebuild where none was due, or no build where one was).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from manifest_compiler.pipeline import resolve_file  # noqa: E402
from manifest_compiler.stage import stage_archives  # noqa: E402

GOAL = 1.5
MANIFEST = """\
version: 1
name: bench-stage-build
project: bench
container: {image: $SCRATCH/containers/bench.sif}
data: {root: $SCRATCH/data, subsets: [many], stage: archive}
resources: {time: 5m, mem: 256M}
run: {commands: ["true"]}
"""


def generate(top: Path, files: int, folders: int) -> None:
    per = -(-files // folders)
    for i in range(files):
        folder = top / f"d{i // per:04d}"
        if i % per == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(1024))


def timed(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--folders", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--dir", default="/var/tmp", help="real disk, not tmpfs (default /var/tmp)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mcompile-bench-stage-build-", dir=args.dir))
    try:
        return bench(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench(args: argparse.Namespace, base: Path) -> int:
    os.environ["SCRATCH"] = str(base / "scratch")
    top = base / "scratch" / "data" / "many"
    generate(top, args.files, args.folders)
    manifest = base / "m.yaml"
    manifest.write_text(MANIFEST)
    resolved, _, _ = resolve_file(str(manifest))
    subprocess.run(["tar", "-cf", "/dev/stdout", "-C", str(top), "."], check=True, stdout=subprocess.DEVNULL)  # warm the cache
    fs = subprocess.run(["df", "--output=fstype", str(base)], capture_output=True, text=True).stdout.split()[-1]
    print(f"bench_stage_build: {args.files:,} files of 1 KiB in {args.folders} folders on {fs} ({base}), "
          f"{os.cpu_count()} CPUs, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}")

    times: dict[str, list[float]] = {"build": [], "tar": [], "again": [], "find": []}
    out = base / "plain.tar"

    def build() -> float:
        for old in (base / "scratch" / "bench" / ".mcompile" / "archives").glob("*.tar"):
            old.unlink()
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        (archive,) = stage_archives(resolved)
        took = time.perf_counter() - start
        if not archive.built:
            raise SystemExit("wrong result: no archive was built")
        return took

    def again() -> float:
        start = time.perf_counter()
        (archive,) = stage_archives(resolved)
        took = time.perf_counter() - start
        if archive.built:
            raise SystemExit("wrong result: unchanged data was archived again")
        return took

    def tar() -> float:
        out.unlink(missing_ok=True)
        subprocess.run(["sync"], check=True)
        return timed(["tar", "-cf", str(out), "--sort=name", "--format=gnu", "-C", str(top), "."])

    def find() -> float:
        return timed(["find", str(top), "-printf", "%P %s %T@\n"], stdout=subprocess.DEVNULL)

    steps = {"build": build, "tar": tar, "again": again, "find": find}
    order = list(steps)
    build()  # warm-up: bytecode, the archive folder
    for r in range(args.rounds):
        for name in order[r % 4:] + order[: r % 4]:
            times[name].append(steps[name]())

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    for name, label in (("build", "stage_archives, new archive"), ("tar", "tar -cf --sort=name"),
                        ("again", "stage_archives, unchanged data"), ("find", "find -printf '%P %s %T@'")):
        print(f"  {label:<34} median {statistics.median(times[name]) * 1000:7.1f} ms   min {min(times[name]) * 1000:7.1f} ms")
    build_ratio, again_ratio = ratio("build", "tar"), ratio("again", "find")
    print(f"  build / tar -cf             = {build_ratio:.2f}x (median of per-round ratios; goal <= {GOAL}x)")
    print(f"  unchanged again / find      = {again_ratio:.2f}x (goal <= {GOAL}x)")
    figure(f"stage: a new archive of {args.files:,} files of 1 KiB", build_ratio, GOAL, "tar -cf of the same tree")
    figure("stage again, nothing changed", again_ratio, GOAL, "find -printf '%P %s %T@' over the tree")
    for name, value in (("build / tar -cf", build_ratio), ("unchanged again / find", again_ratio)):
        if value > GOAL:
            print(f"GOAL MISSED: {name} = {value:.2f}x > {GOAL}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
