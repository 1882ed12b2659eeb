"""Benchmark: data staging throughput on many small files, and the rerun with unchanged data.

A generated subset of 20,000 files (1-8 KiB of random bytes each, in 200 folders) on real
disk (a folder under /var/tmp; its filesystem is printed). Three ways to put it on the
node-local disk, alternating, a fresh destination each time, 7 rounds:

  archive  what job.sbatch does for `data.stage: archive`: the lines of a compiled job.sbatch
           (`mkdir -p` + `tar -xf "$archive_dir/$fingerprint.tar" -C ...` + the `[ -d ]`
           check), copied from the script and run with bash, of the archive that
           `manifest_compiler.stage.stage_archives` built
  copy     what job.sbatch does for `data.stage: copy`: its lines (`rsync -a src/ dest/`)
  raw      `tar -xf SAME.tar -C fresh_dir` (the baseline)

Goal: archive throughput >= 0.8x raw tar, i.e. time_raw / time_archive >= 0.8.

Deletions: every destination is kept until the end (about 3 x rounds x 100 MiB of disk): on
ext4 without a journal (as this machine's root filesystem), creating many files right after
deleting many is several times slower: the inode allocator skips inodes deleted in the last
60 s (360 s while their inode-table block is dirty), `recently_deleted()` in
fs/ext4/ialloc.c. An `rm -rf` between runs would charge one method's clean-up to the next.

Page cache: nothing is dropped (dropping caches is machine-wide and would disturb other
work on the machine). Instead every source is read once before the rounds, so all three
read from a warm cache, and `sync` runs (untimed) before each timed run so the write-back
of an earlier run does not overlap a later one. The times are what a job waits for: the
extracted files may still be dirty in the page cache when tar exits.

Then the archive itself: the first build (`stage_archives`, built=True) against a plain
`tar -cf` of the subset, the rerun with unchanged data (must be built=False: only the
fingerprint walk of the 20,000 files), and after touching one file's mtime (a new archive
must be built).

    python bench/bench_stage.py [--files 20000] [--folders 200] [--rounds 7] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from manifest_compiler.pipeline import resolve_file  # noqa: E402
from manifest_compiler.stage import fingerprint, stage_archives  # noqa: E402

SUBSET = "gen/many"
GOAL = 0.8

MANIFEST = """\
version: 1
name: benchstage-{stage}
project: bench
container: {{image: $SCRATCH/containers/bench.sif}}
data:
  subsets: [{subset}]
  stage: {stage}
resources: {{time: 5m, mem: 256M}}
run:
  commands: ["true"]
"""

PREAMBLE = """\
set -euo pipefail
mcompile_die() {
  printf 'mcompile: %s\\n' "$*" >&2
  exit 1
}
MCOMPILE_JOB=${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}
MCOMPILE_TASK=${SLURM_ARRAY_TASK_ID:-0}
"""


def generate(top: Path, files: int, folders: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    total = 0
    per = -(-files // folders)
    for i in range(files):
        d = top / f"dir{i // per:04d}"
        if i % per == 0:
            d.mkdir(parents=True)
        data = rng.randbytes(rng.randint(1024, 8192))
        (d / f"file{i:06d}.bin").write_bytes(data)
        total += len(data)
    return total


def compile_run(base: Path, stage: str, env: dict[str, str]) -> str:
    manifest = base / f"stage-{stage}.yaml"
    manifest.write_text(MANIFEST.format(stage=stage, subset=SUBSET))
    proc = subprocess.run(
        [sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(base / "runs")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return (Path(proc.stdout.split()[-1]) / "job.sbatch").read_text()


def staging_lines(script: str, method: str) -> str:
    """The lines of job.sbatch that stage subset 0 (and set archive_dir), verbatim."""
    lines = script.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("# data subset ") and line.endswith(f"({method})")))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    picked = [line for line in lines if line.startswith("archive_dir=")] + lines[start:end]
    return "\n".join(picked) + "\n"


def timed(argv: list[str], env: dict[str, str]) -> float:
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:2]} exited {proc.returncode}: {proc.stderr}")
    return elapsed


def count_files(top: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _, filenames in os.walk(top):
        for f in filenames:
            n += 1
            size += os.lstat(os.path.join(dirpath, f)).st_size
    return n, size


def warm(path: Path) -> None:
    """Read a file or a tree once, so every method starts from a warm page cache."""
    if path.is_file():
        subprocess.run(f"cat {path} > /dev/null", shell=True, check=True)
    else:  # tar -cf /dev/null would skip reading the files
        subprocess.run(f"tar -cf - -C {path} . | cat > /dev/null", shell=True, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--folders", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default="/var/tmp", help="where to work: real disk, not tmpfs (default /var/tmp)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    for tool in ("tar", "rsync", "sync"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install -y {tool})")

    base = Path(tempfile.mkdtemp(prefix="mcompile-bench-stage-", dir=args.dir))
    fs = subprocess.run(["df", "--output=fstype,source", str(base)], capture_output=True, text=True).stdout.split()[2:]
    print(
        f"work folder {base}: filesystem {' on '.join(fs)}; {os.cpu_count()} CPUs; "
        f"tar {subprocess.run(['tar', '--version'], capture_output=True, text=True).stdout.split()[3]}, "
        f"rsync {subprocess.run(['rsync', '--version'], capture_output=True, text=True).stdout.split()[2]}"
    )
    try:
        scratch = base / "scratch"
        local = base / "local"  # SLURM_TMPDIR
        local.mkdir(parents=True)
        os.environ["SCRATCH"] = str(scratch)
        env = dict(os.environ, NO_COLOR="1")
        data_root = scratch / "bench" / "data"
        top = data_root / SUBSET

        t0 = time.perf_counter()
        size = generate(top, args.files, args.folders)
        print(
            f"generated {args.files:,} files ({size / 2**20:.1f} MiB) in {args.folders} folders under {top} "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        mib = size / 2**20

        # --- the archive: first build, plain tar -c baseline, rerun, touched ------------
        manifest = base / "stage-archive.yaml"
        script_archive = compile_run(base, "archive", env)
        script_copy = compile_run(base, "copy", env)
        resolved, _, _ = resolve_file(str(manifest))
        assert resolved["data"]["stage"] == "archive"

        t0 = time.perf_counter()
        (first,) = stage_archives(resolved, progress=None)
        t_build = time.perf_counter() - t0
        assert first.built, first
        archive = first.path
        raw_c = []
        for _ in range(3):
            out = base / "plain.tar"
            t0 = time.perf_counter()
            subprocess.run(
                ["tar", "-cf", str(out), "--sort=name", "--format=gnu", "-C", str(data_root), "--", SUBSET], check=True
            )
            raw_c.append(time.perf_counter() - t0)
            out.unlink()
        walks = []
        for _ in range(3):
            t0 = time.perf_counter()
            fp = fingerprint(data_root, SUBSET)
            walks.append(time.perf_counter() - t0)
        assert fp.digest == first.fingerprint and fp.entries == args.files + args.folders + 1  # + the subset's folder
        reruns = []
        for _ in range(3):
            t0 = time.perf_counter()
            (again,) = stage_archives(resolved, progress=None)
            reruns.append(time.perf_counter() - t0)
            assert not again.built and again.path == archive, again
        archives_before = sorted(p.name for p in archive.parent.glob("*.tar"))
        assert archives_before == [archive.name]

        # --- staging rounds ------------------------------------------------------------
        extract = PREAMBLE + staging_lines(script_archive, "archive")
        copy = PREAMBLE + staging_lines(script_copy, "copy")
        print("\narchive staging, as in job.sbatch:\n" + "".join(f"    {line}\n" for line in extract.splitlines()[7:]))
        print("copy staging, as in job.sbatch:\n" + "".join(f"    {line}\n" for line in copy.splitlines()[7:]))
        warm(archive)
        warm(top)
        job_id = [1000]

        def job_env() -> tuple[dict[str, str], Path]:
            job_id[0] += 1
            e = dict(env, SLURM_JOB_ID=str(job_id[0]), SLURM_TMPDIR=str(local), MCOMPILE_ARCHIVE_0=first.fingerprint)
            return e, local / f"mcompile-{job_id[0]}_0"

        def run_archive() -> tuple[float, Path]:
            e, dest = job_env()
            return timed(["bash", "-c", extract], e), dest

        def run_copy() -> tuple[float, Path]:
            e, dest = job_env()
            return timed(["bash", "-c", copy], e), dest

        def run_raw() -> tuple[float, Path]:
            job_id[0] += 1
            dest = local / f"raw-{job_id[0]}"
            dest.mkdir()
            return timed(["tar", "-xf", str(archive), "-C", str(dest)], env), dest

        methods = {"archive": run_archive, "copy": run_copy, "raw": run_raw}
        times: dict[str, list[float]] = {k: [] for k in methods}
        log: list[str] = []
        names = list(methods)
        checked = set()
        for i in range(args.rounds + 1):  # round 0 is a warm-up, not counted
            for name in names[i % 3 :] + names[: i % 3]:
                elapsed, dest = methods[name]()
                if name not in checked:
                    n, s = count_files(dest)
                    assert (n, s) == (args.files, size), (name, n, s)
                    checked.add(name)
                if i > 0:
                    times[name].append(elapsed)
                    log.append(f"{name} {elapsed:.2f}")
                # Destinations are kept until the end: on ext4 without a journal, files
                # created soon after many deletions are slow (inode allocation skips
                # recently deleted inodes, see the module docstring), which would charge
                # one method's clean-up to whichever method runs next.
        med = {k: statistics.median(v) for k, v in times.items()}
        print("each run in order (s):")
        for i in range(0, len(log), 3):
            print("    round " + str(i // 3 + 1) + ": " + ", ".join(log[i : i + 3]))
        print()

        # --- touch one file: a new archive ---------------------------------------------
        folders = sorted(top.iterdir())
        victim = sorted(folders[len(folders) // 2].iterdir())[0]
        st = victim.stat()
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        t0 = time.perf_counter()
        (touched,) = stage_archives(resolved, progress=None)
        t_touched = time.perf_counter() - t0
        archives_after = sorted(p.name for p in archive.parent.glob("*.tar"))

        # --- report --------------------------------------------------------------------
        print(
            f"## staging {args.files:,} files, {mib:.1f} MiB: medians of {args.rounds} alternating rounds, "
            f"fresh destination each, warm page cache\n"
        )
        print(f"{'method':<44} {'median s':>9} {'min s':>7} {'max s':>7} {'MiB/s':>7} {'files/s':>8} {'vs raw':>7}")
        labels = {
            "raw": "raw: tar -xf same.tar -C fresh_dir",
            "archive": "archive: job.sbatch's mkdir + tar -xf + [ -d ]",
            "copy": "copy: job.sbatch's rsync -a src/ dest/",
        }
        for k in ("raw", "archive", "copy"):
            v = times[k]
            print(
                f"{labels[k]:<44} {med[k]:9.3f} {min(v):7.3f} {max(v):7.3f} {mib / med[k]:7.1f} "
                f"{args.files / med[k]:8.0f} {med['raw'] / med[k]:6.2f}x"
            )
        ratio = med["raw"] / med["archive"]
        print(
            f"\narchive throughput / raw tar = time_raw / time_archive = {ratio:.2f} "
            f"(goal >= {GOAL}: {'MET' if ratio >= GOAL else 'NOT MET'})"
        )
        print(f"copy throughput / raw tar    = time_raw / time_copy    = {med['raw'] / med['copy']:.2f}")
        paired_a = [r / a for r, a in zip(times["raw"], times["archive"], strict=False)]
        paired_c = [r / c for r, c in zip(times["raw"], times["copy"], strict=False)]
        print(
            f"per-round ratios (same round): archive {statistics.median(paired_a):.2f} "
            f"[{min(paired_a):.2f}..{max(paired_a):.2f}], copy {statistics.median(paired_c):.2f} "
            f"[{min(paired_c):.2f}..{max(paired_c):.2f}] (archive and raw run the same tar -xf: any gap is noise)"
        )

        print("\n## the archive on the submitting host\n")
        print(f"{'what':<68} {'seconds':>8}")
        print(f"{'first build: stage_archives (built=True)':<68} {t_build:8.3f}")
        print(f"{'  baseline: plain tar -cf --sort=name of the subset (median 3)':<68} {statistics.median(raw_c):8.3f}")
        print(f"{'  fingerprint walk alone (median 3; find | sort, once a build)':<68} {statistics.median(walks):8.3f}")
        rest = t_build - statistics.median(walks) - statistics.median(raw_c)
        print(f"{'  rest: build - walk - plain tar (tar -vv listing, its check, fsync, rename)':<68} {rest:8.3f}")
        print(f"{'rerun, unchanged data: stage_archives (median 3)':<68} {statistics.median(reruns):8.3f}   built={again.built}")
        print(f"{'after touching one file mtime: stage_archives':<68} {t_touched:8.3f}   built={touched.built}")
        print(
            f"\nbuild / plain tar -cf = {t_build / statistics.median(raw_c):.2f}x; archive {archive.stat().st_size / 2**20:.1f} MiB"
        )
        print(
            f"rerun with unchanged data: {'no archive rebuilt' if not again.built and archives_before == [archive.name] else 'AN ARCHIVE WAS REBUILT'} "
            f"(archives in {archive.parent}: {len(archives_before)}, reused {archive.name})"
        )
        new = touched.built and touched.fingerprint != first.fingerprint and len(archives_after) == 2
        print(
            f"after touching {victim.relative_to(data_root)}: {'a new archive was built' if new else 'NO NEW ARCHIVE'} "
            f"({touched.path.name}; archives now: {len(archives_after)})"
        )
    finally:
        if args.keep:
            print(f"\nkept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
