"""Progress of long steps: one line a step in logs and pipes, a live line on a terminal.

The terminal is a real pseudo-terminal (Python's pty): mcompile sees a tty on stderr as it would
in a user's shell. MCOMPILE_PROGRESS_AFTER=0 shows the live line at once (by default a step
must run for a second first), so a small data set is enough."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from manifest_compiler.progress import human_seconds, meter_line
from manifest_compiler.snapshot import _hash_file

MANIFEST = """\
version: 1
name: pg
project: p
container: {image: $SCRATCH/containers/app.sif}
data: {root: $SCRATCH/data, subsets: [set], stage: archive}
resources: {time: 1h, mem: 1G}
run: {commands: ["true"]}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    scratch = tmp_path / "scratch"
    (scratch / "containers").mkdir(parents=True)
    (scratch / "containers" / "app.sif").write_bytes(b"sif")
    for i in range(40):
        folder = scratch / "data" / "set" / f"d{i}"
        folder.mkdir(parents=True)
        for j in range(25):
            (folder / f"f{j}").write_bytes(os.urandom(4096))
    (tmp_path / "m.yaml").write_text(MANIFEST)
    return tmp_path


def stage(site: Path, *, tty: bool, **env: str) -> str:
    """`mcompile stage m.yaml`'s stderr, through a pipe or a pseudo-terminal."""
    environ = {**os.environ, "SCRATCH": str(site / "scratch"), "MCOMPILE_PROGRESS_AFTER": "0", **env}
    if "NO_COLOR" not in env:
        environ.pop("NO_COLOR", None)
    argv = [sys.executable, "-m", "manifest_compiler", "stage", "m.yaml", "--runs", "runs", *(["--quiet"] if env.get("QUIET") else [])]
    if not tty:
        return subprocess.run(argv, cwd=site, env=environ, capture_output=True, text=True, check=True).stderr
    main, sub = pty.openpty()
    proc = subprocess.Popen(argv, cwd=site, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sub)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait() == 0
    return out.decode()


def test_a_pipe_gets_one_line_a_step(site: Path) -> None:
    lines = stage(site, tty=False).splitlines()
    archive = re.escape(str(site / "scratch" / "p" / ".mcompile" / "archives")) + r"/[0-9a-f]{32}\.tar"
    assert re.fullmatch(rf"mcompile: archiving set: 1,040 files and folders -> {archive}", lines[0])
    assert re.fullmatch(r"mcompile: archived set in [0-9]+\.[0-9] s: [0-9.]+ MiB", lines[1])
    assert not any("\r" in line or "\x1b" in line or "of " in line for line in lines)


def test_a_terminal_gets_a_live_line_then_the_step_line(site: Path) -> None:
    out = stage(site, tty=True)
    live = re.findall(r"\r\x1b\[Kmcompile: archiving set: [0-9.]+ [KMG]?i?B of [0-9.]+ [KMG]?i?B \(([0-9]+)%\), [0-9.]+ [KMG]?i?B/s", out)
    assert live and live[-1] == "100", out
    assert re.search(r"\r\x1b\[Kmcompile: archived set in [0-9]+\.[0-9] s: [0-9.]+ MiB\r\n", out), out


@pytest.mark.parametrize("quiet", [{"NO_COLOR": "1"}, {"QUIET": "1"}], ids=["NO_COLOR", "--quiet"])
def test_no_color_and_quiet_keep_a_terminal_to_step_lines(site: Path, quiet: dict[str, str]) -> None:
    out = stage(site, tty=True, **quiet)
    assert "\x1b" not in out and "% " not in out and "archived set in" in out


def test_the_live_line_reads_done_rate_and_time_left() -> None:
    assert meter_line("archiving set", 3 << 20, 12 << 20, 2.0) == \
        "archiving set: 3.0 MiB of 12.0 MiB (25%), 1.5 MiB/s, about 6 s left"
    assert human_seconds(59.6) == "1 min 00 s" and human_seconds(3725) == "1 h 02 min"


def test_hashing_a_file_tells_its_meter_how_far_it_is(tmp_path: Path) -> None:
    image = tmp_path / "app.sif"
    image.write_bytes(os.urandom((3 << 20) + 5))
    seen: list[tuple[str, int, int]] = []
    _hash_file(str(image), lambda what, done, total: seen.append((what, done, total)))
    assert [done for _, done, _ in seen] == [1 << 20, 2 << 20, 3 << 20, (3 << 20) + 5]
    assert {(what, total) for what, _, total in seen} == {("hashing app.sif", (3 << 20) + 5)}
