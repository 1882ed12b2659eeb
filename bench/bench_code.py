"""Benchmark: the code snapshot (`code:`) of a 20,000-file repository, and a second submit with nothing changed.

A generated git repository of 20,000 tracked files (0.5-4 KiB of random text each, in 200
folders, one commit) on real disk (a folder under /var/tmp). Interleaved, `--rounds` rounds
(at least 11), each timing:

  baseline  `git archive HEAD | wc -c`: git's own tar of HEAD, counted, not kept
  first     `snapshot.snapshot_code` into an empty code folder: `git status`, `git ls-tree`,
            `git cat-file --batch` and the deterministic tar written, fsynced and renamed into
            place (built=True)
  again     `snapshot_code` once more, nothing changed: found by the commit's tree id
            (built=False); the test below checks that the file was not rewritten

The figures are medians over the rounds; the ratios are against the baseline of the same
rounds. The page cache is warm (the repository is read once before the rounds).

    python bench/bench_code.py [--files 20000] [--folders 200] [--rounds 11] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from manifest_compiler.pipeline import resolve_file  # noqa: E402
from manifest_compiler.snapshot import snapshot_code  # noqa: E402

MANIFEST = """\
version: 1
name: benchcode
project: bench
cluster: {{scratch: {scratch}}}
container: {{image: /nonexistent/bench.sif, workdir: /work}}
code: {{repo: repo}}
resources: {{time: 5m, mem: 256M}}
run:
  commands: ["python3 train.py"]
"""


def make_repo(repo: Path, files: int, folders: int) -> None:
    rng = random.Random(17)
    letters = string.ascii_letters + string.digits + " \n"
    for i in range(files):
        folder = repo / f"pkg{i % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"module{i:05d}.py").write_text("".join(rng.choices(letters, k=rng.randint(512, 4096))))
    for args in (["init", "-q"], ["config", "user.email", "b@example.org"], ["config", "user.name", "bench"],
                 ["add", "."], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--dir", default="/var/tmp")
    args = parser.parse_args()
    rounds = max(args.rounds, 11)
    work = Path(tempfile.mkdtemp(prefix="bench-code-", dir=args.dir))
    try:
        repo = work / "repo"
        started = time.perf_counter()
        make_repo(repo, args.files, args.folders)
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True).stdout.strip()
        print(f"repository: {args.files:,} tracked files in {args.folders} folders under {work} ({fs}); made in "
              f"{time.perf_counter() - started:.1f} s")
        scratch = work / "scratch"
        manifest = work / "m.yaml"
        manifest.write_text(MANIFEST.format(scratch=scratch))
        resolved = resolve_file(str(manifest))[0]
        code_dir = scratch / "bench" / ".mcompile" / "code"

        def baseline() -> int:
            archive = subprocess.Popen(["git", "-C", str(repo), "archive", "HEAD"], stdout=subprocess.PIPE)
            count = subprocess.run(["wc", "-c"], stdin=archive.stdout, capture_output=True, text=True, check=True)
            assert archive.stdout is not None
            archive.stdout.close()
            assert archive.wait() == 0
            return int(count.stdout)

        archived = baseline()  # and the page cache is warm
        times: dict[str, list[float]] = {"baseline": [], "first": [], "again": []}
        size = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            baseline()
            times["baseline"].append(time.perf_counter() - t0)

            shutil.rmtree(code_dir, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            t0 = time.perf_counter()
            first = snapshot_code(resolved, str(repo))
            times["first"].append(time.perf_counter() - t0)
            assert first is not None and first.built
            before = os.stat(first.path)
            size = before.st_size

            t0 = time.perf_counter()
            again = snapshot_code(resolved, str(repo))
            times["again"].append(time.perf_counter() - t0)
            assert again is not None and not again.built and again.sha256 == first.sha256
            after = os.stat(again.path)
            assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the snapshot was rewritten"

        base = statistics.median(times["baseline"])
        print(f"git archive HEAD | wc -c: {archived:,} bytes; the snapshot: {size:,} bytes ({rounds} rounds, medians)")
        for name, label in (("baseline", "git archive HEAD | wc -c"), ("first", "first snapshot (built)"),
                            ("again", "second submit, unchanged (reused)")):
            median = statistics.median(times[name])
            print(f"  {label:<34} {median * 1000:9.1f} ms   {median / base:6.2f}x the baseline")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
