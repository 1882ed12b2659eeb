"""Concurrent and interrupted use: racing compiles, kill -9, read-only and full runs folders.

Every compile and stage here is a real `python -m manifest_compiler` process, started
and ended by its pid. The kill -9 rounds use a seeded RNG, so a failing round can be
replayed; each round is also checked on its own, so the report names the round.

The invariants:
- a run directory (a name under runs/<name>/ not starting with '.') is complete: every
  generated file is there and the content hash over them is its name;
- a data archive `<fingerprint>.tar` is complete: tar lists it without error and it
  holds exactly the data that had that fingerprint;
- the next compile or stage removes what killed ones left behind (`.tmp-*`,
  `.<fingerprint>.tar.tmp-*`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from manifest_compiler.jobdir import RECORD_FILES
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.stage import fingerprint
from manifest_compiler.write import content_hash

SEED = 20240611
GENERATED = ("job.sbatch", "mounts.json", "plan.txt", "resolved.json", "tasks/blocks", "tasks/commands", "tasks/index")


def grid_manifest(folder: Path, rows: int, cols: int, *, name: str = "race", tag: str = "", filename: str = "") -> Path:
    doc = {
        "version": 1,
        "name": name,
        "project": "proj",
        "container": {"image": "$SCRATCH/containers/app.sif"},
        "resources": {"time": "10m", "mem": "1G"},
        "run": {"grid": {
            "template": f"python train.py{tag} --a {{{{ a }}}} --b {{{{ b }}}}",
            "parameters": {"a": list(range(rows)), "b": list(range(cols))},
        }},
    }
    path = folder / (filename or f"{name}{tag.replace(' ', '_')}.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=1 << 30))
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_complete_run(run: Path) -> None:
    """The run holds every generated file and the record, and its name is their content hash."""
    files = tree(run)
    assert set(GENERATED) | {"manifest.yaml"} <= set(files), f"{run} is incomplete: {sorted(files)}"
    hashed = {k: v for k, v in files.items()
              if not any(k == r or (r.endswith("/") and k.startswith(r)) for r in RECORD_FILES)}
    assert set(hashed) == set(GENERATED), sorted(hashed)
    assert content_hash(hashed)[:12] == run.name, f"{run}: content does not match its name"


def runs_under(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if not p.name.startswith(".")) if parent.is_dir() else []


def temporaries(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(".tmp-")) if parent.is_dir() else []


def start(*args: str, env: dict[str, str] | None = None, session: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "manifest_compiler", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=session)


def kill9(proc: subprocess.Popen[str], *, group: bool = False) -> None:
    """SIGKILL the process by its pid (and, with `group`, what it started in its own session).

    Only while the process is not reaped yet (returncode None): until then its pid, and
    the id of the group it leads, cannot belong to anyone else.
    """
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)  # alive or a zombie: either way ours
        if group:  # e.g. the tar that `mcompile stage` runs, orphaned by the kill
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def wait_for(predicate: Callable[[], object], proc: subprocess.Popen[str], timeout: float = 30) -> bool:
    """Poll `predicate` every millisecond until it holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    raise AssertionError("timed out")


def meet_mid_write(procs: list[subprocess.Popen[str]], parent: Path) -> bool:
    """Stop (SIGSTOP) each process as soon as its temporary exists in `parent`; then let all go on at once.

    True if every process was caught mid-write; False if one ended first.
    """
    stopped: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(stopped) < len(procs) and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            names = [t.name for t in temporaries(parent)]
            for p in procs:
                if p.pid not in stopped and any(n.endswith(f"-{p.pid}") for n in names):
                    os.kill(p.pid, signal.SIGSTOP)  # not reaped: the pid is ours
                    stopped.add(p.pid)
            time.sleep(0.0005)
    finally:
        for p in procs:
            if p.pid in stopped:
                os.kill(p.pid, signal.SIGCONT)
    return len(stopped) == len(procs)


# --- two compiles at once --------------------------------------------------------------


def _check_same_manifest_round(runs: Path, procs: list[subprocess.Popen[str]], reference: Path,
                               expected: dict[str, bytes], where: str) -> None:
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, f"{where}: {err}"
        assert "Traceback" not in err
    [run] = runs_under(runs / "race")
    assert {out.strip() for out, _ in results} == {str(run)}, where
    assert sum(err.startswith("compiled ") for _, err in results) == 1, results  # one wrote it, one found it
    assert temporaries(runs / "race") == [], where
    assert run.name == reference.name and tree(run) == expected, where
    assert_complete_run(run)


def test_two_compiles_of_the_same_manifest_at_once_give_one_complete_run(tmp_path: Path) -> None:
    # 300,000 tasks: the writing lasts long enough that two compiles started together
    # usually write their temporaries at the same time (polled and counted below)
    manifest = grid_manifest(tmp_path, 1000, 300)
    reference = compile_manifest(str(manifest), runs_dir=str(tmp_path / "reference")).run.path
    expected = tree(reference)
    overlapped = 0
    for round_ in range(4):
        runs = tmp_path / f"runs-{round_}"
        procs = [start("compile", str(manifest), "--runs", str(runs)) for _ in range(2)]
        most = 0
        while any(p.poll() is None for p in procs):
            most = max(most, len(temporaries(runs / "race")))
            time.sleep(0.001)
        overlapped += most == 2
        _check_same_manifest_round(runs, procs, reference, expected, f"round {round_}")
    print(f"same manifest at once: both writing at the same time in {overlapped} of 4 rounds")


def test_two_compiles_of_the_same_manifest_both_mid_write_give_one_complete_run(tmp_path: Path) -> None:
    # Both compiles are held where each has its temporary and then go on together:
    # both write, both rename, and one rename must lose to the other's run.
    manifest = grid_manifest(tmp_path, 1000, 100)
    reference = compile_manifest(str(manifest), runs_dir=str(tmp_path / "reference")).run.path
    expected = tree(reference)
    forced = attempts = 0
    while forced < 3:
        attempts += 1
        assert attempts <= 8, f"only {forced} of {attempts - 1} rounds caught both compiles mid-write"
        runs = tmp_path / f"runs-{attempts}"
        procs = [start("compile", str(manifest), "--runs", str(runs)) for _ in range(2)]
        forced += meet_mid_write(procs, runs / "race")
        _check_same_manifest_round(runs, procs, reference, expected, f"attempt {attempts}")
    print(f"same manifest, both held mid-write: {forced} of {attempts} rounds")


def test_two_compiles_of_different_manifests_at_once_keep_their_files_apart(tmp_path: Path) -> None:
    manifests = [grid_manifest(tmp_path, 500, 100, tag=" --variant a"), grid_manifest(tmp_path, 100, 500, tag=" --variant b")]
    expected = {}
    for m in manifests:
        ref = compile_manifest(str(m), runs_dir=str(tmp_path / f"reference-{m.stem}")).run.path
        expected[ref.name] = tree(ref)
    assert len(expected) == 2
    forced = 0
    for round_ in range(3):  # held mid-write together where the timing allows, else as they come
        runs = tmp_path / f"runs-{round_}"
        procs = [start("compile", str(m), "--runs", str(runs)) for m in manifests]
        forced += meet_mid_write(procs, runs / "race")
        results = [p.communicate(timeout=120) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, f"round {round_}: {err}"
            assert "Traceback" not in err
        found = runs_under(runs / "race")
        assert sorted(r.name for r in found) == sorted(expected)
        for (out, _), m in zip(results, manifests, strict=True):
            run = Path(out.strip().splitlines()[-1])
            assert tree(run) == expected[run.name]
            assert yaml.safe_load((run / "manifest.yaml").read_text()) == yaml.safe_load(m.read_text())
            template = yaml.safe_load(m.read_text())["run"]["grid"]["template"]
            assert json.loads((run / "resolved.json").read_text())["run"]["template"] == template
        assert temporaries(runs / "race") == []
    print(f"different manifests, both held mid-write: {forced} of 3 rounds")
    assert forced >= 1


# --- kill -9 during compile ---------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_compile_never_leaves_a_partial_run(tmp_path: Path) -> None:
    manifest = grid_manifest(tmp_path, 1000, 300)  # 300,000 tasks: about a second
    parent = tmp_path / "runs" / "race"

    # one compile to the end, to learn how long the whole takes and when the temporary appears
    begun = time.monotonic()
    proc = start("compile", str(manifest), "--runs", str(tmp_path / "timing"))
    appeared = time.monotonic() if wait_for(lambda: temporaries(tmp_path / "timing" / "race"), proc) else None
    out, err = proc.communicate(timeout=120)
    duration = time.monotonic() - begun
    assert proc.returncode == 0 and appeared is not None, err
    write_window = max(duration - (appeared - begun), 0.01)
    expected_name = Path(out.strip()).name

    rng = random.Random(SEED)
    outcomes = {"complete run": 0, "temporary left": 0, "nothing yet": 0}
    left_by_killed: set[str] = set()
    rounds = 16
    for round_ in range(rounds):
        proc = start("compile", str(manifest), "--runs", str(tmp_path / "runs"))
        if round_ % 2 == 0:  # anywhere in the compile
            time.sleep(rng.uniform(0, duration))
        else:  # aimed at the writing: once this process's temporary exists
            wait_for(lambda p=proc: any(t.name.endswith(f"-{p.pid}") for t in temporaries(parent)), proc)
            time.sleep(rng.uniform(0, write_window))
        kill9(proc)
        where = f"round {round_} (pid {proc.pid}, exit {proc.returncode})"
        for run in runs_under(parent):
            assert run.name == expected_name, where
            assert_complete_run(run)
        mine = [t for t in temporaries(parent) if t.name.endswith(f"-{proc.pid}")]
        left_by_killed.update(t.name for t in mine)
        if runs_under(parent):
            outcomes["complete run"] += 1
            shutil.rmtree(parent / expected_name)  # so that the next round writes the run again
        elif mine:
            outcomes["temporary left"] += 1
        else:
            outcomes["nothing yet"] += 1
    assert sum(outcomes.values()) == rounds
    print(f"kill -9 during compile: {rounds} rounds, {duration:.2f} s per compile: {outcomes}")
    assert outcomes["temporary left"] >= 1, outcomes  # the aimed rounds do stop it mid-write

    # a later compile succeeds, writes the whole run and removes every dead temporary
    proc = start("compile", str(manifest), "--runs", str(tmp_path / "runs"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err.startswith("compiled "), err
    [run] = runs_under(parent)
    assert str(run) == out.strip()
    assert_complete_run(run)
    assert tree(run) == tree(tmp_path / "timing" / "race" / expected_name)
    assert temporaries(parent) == [], f"left behind: {temporaries(parent)}"
    assert not any((parent / name).exists() for name in left_by_killed)


def test_dead_temporary_is_removed_even_when_the_run_already_exists(tmp_path: Path) -> None:
    manifest = grid_manifest(tmp_path, 1000, 100)
    parent = tmp_path / "runs" / "race"
    # A starts writing and is frozen there; B compiles the same manifest to the end; A is killed.
    a = start("compile", str(manifest), "--runs", str(tmp_path / "runs"))
    try:
        assert wait_for(lambda: temporaries(parent), a)
        os.kill(a.pid, signal.SIGSTOP)
        b = start("compile", str(manifest), "--runs", str(tmp_path / "runs"))
        _, err = b.communicate(timeout=120)
        assert b.returncode == 0 and err.startswith("compiled "), err
    finally:
        kill9(a)
    [dead] = temporaries(parent)
    assert dead.name.endswith(f"-{a.pid}")
    # a later compile of the same manifest: the run exists, nothing to write, but the dead temporary must go
    c = start("compile", str(manifest), "--runs", str(tmp_path / "runs"))
    _, err = c.communicate(timeout=120)
    assert c.returncode == 0 and err.startswith("unchanged: "), err
    assert temporaries(parent) == [], f"left behind: {temporaries(parent)}"


# --- kill -9 during archive building -----------------------------------------------------


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$SCRATCH with an image and a data subset `set` of 30,000 small files (300 folders of 100)."""
    scratch = tmp_path_factory.mktemp("stage") / "scratch"
    (scratch / "containers").mkdir(parents=True)
    (scratch / "containers" / "app.sif").write_text("image")
    top = scratch / "proj" / "data" / "set"
    for d in range(300):
        folder = top / f"d{d:03d}"
        folder.mkdir(parents=True)
        for f in range(100):
            fd = os.open(folder / f"f{f:03d}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, f"{d}-{f}\n".encode())
            os.close(fd)
    (top / "marker").write_text("initial\n")
    return scratch


def _expected_members(root: Path, subset: str) -> set[str]:
    names = {subset}
    for dirpath, dirnames, filenames in os.walk(root / subset):
        rel = os.path.relpath(dirpath, root)
        names.update(f"{rel}/{n}" for n in [*dirnames, *filenames])
    return names


@pytest.mark.slow
def test_kill_9_during_archive_building_never_leaves_a_trusted_partial_archive(tmp_path: Path, big_data: Path) -> None:
    root = big_data / "proj" / "data"
    archives = big_data / "proj" / ".mcompile" / "archives"
    manifest = tmp_path / "stage.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1, "name": "staging", "project": "proj",
        "container": {"image": "$SCRATCH/containers/app.sif"},
        "data": {"subsets": ["set"], "stage": "archive"},
        "resources": {"time": "10m", "mem": "1G"},
        "run": {"commands": ["ls /data/set"]},
    }, sort_keys=False))
    env = {**os.environ, "SCRATCH": str(big_data)}
    members = _expected_members(root, "set")
    marker_by_fingerprint: dict[str, str] = {}
    verified: set[str] = set()

    def set_marker(text: str) -> str:
        (root / "set" / "marker").write_text(text)
        digest = fingerprint(root, "set").digest
        marker_by_fingerprint[digest] = text
        return digest

    def partials() -> list[Path]:
        return sorted(archives.glob(".*.tar.tmp-*")) if archives.is_dir() else []

    def check_archives(where: str) -> None:
        for archive in sorted(archives.glob("*.tar")):
            digest = archive.name[: -len(".tar")]
            if digest in verified:
                continue
            assert digest in marker_by_fingerprint, f"{where}: {archive.name} is not the fingerprint of any data we had"
            listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True)
            assert listing.returncode == 0, f"{where}: {archive.name} is not a complete tar: {listing.stderr}"
            assert {n.rstrip("/") for n in listing.stdout.splitlines()} == members, f"{where}: {archive.name} lists other files"
            marker = subprocess.run(["tar", "-xOf", str(archive), "set/marker"], capture_output=True, text=True, check=True)
            assert marker.stdout == marker_by_fingerprint[digest], f"{where}: {archive.name} holds other data"
            verified.add(digest)

    # one stage to the end: how long it takes, when the partial archive appears
    set_marker("initial\n")
    begun = time.monotonic()
    proc = start("stage", str(manifest), env=env, session=True)
    appeared = time.monotonic() if wait_for(lambda: partials(), proc) else None
    _, err = proc.communicate(timeout=120)
    duration = time.monotonic() - begun
    assert proc.returncode == 0 and appeared is not None, err
    window = max(duration - (appeared - begun), 0.01)
    check_archives("first stage")

    rng = random.Random(SEED + 1)
    left_by_killed: set[str] = set()
    outcomes = {"archive complete": 0, "partial left": 0, "nothing yet": 0}
    rounds = 10
    for round_ in range(rounds):
        digest = set_marker(f"round {round_}\n" + "x" * round_)  # new data, so a new archive is due
        proc = start("stage", str(manifest), env=env, session=True)
        if round_ % 2 == 0:
            time.sleep(rng.uniform(0, duration))
        else:
            wait_for(lambda p=proc: any(t.name.endswith(f"-{p.pid}") for t in partials()), proc)
            time.sleep(rng.uniform(0, window))
        kill9(proc, group=True)
        where = f"round {round_} (pid {proc.pid}, exit {proc.returncode})"
        check_archives(where)
        mine = [t.name for t in partials() if t.name.endswith(f"-{proc.pid}")]
        left_by_killed.update(mine)
        if (archives / f"{digest}.tar").exists():
            outcomes["archive complete"] += 1
        elif mine:
            outcomes["partial left"] += 1
        else:
            outcomes["nothing yet"] += 1
    print(f"kill -9 during stage: {rounds} rounds, {duration:.2f} s per stage: {outcomes}")
    assert outcomes["partial left"] >= 1, outcomes

    # the next stage builds (or reuses) the archive of the current data and removes dead partials
    proc = start("stage", str(manifest), env=env, session=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    action, subset, digest, path = out.split()
    assert subset == "set" and digest == fingerprint(root, "set").digest and Path(path) == archives / f"{digest}.tar"
    assert action == ("reused" if digest in verified else "built")
    check_archives("after the last stage")
    assert digest in verified
    assert partials() == [], f"left behind: {partials()}"
    assert not any((archives / name).exists() for name in left_by_killed)


# --- a read-only and a full runs folder --------------------------------------------------


def _mount_namespace() -> tuple[list[str], str | None]:
    """The unshare command that gives a private mount namespace where mount works, or why there is none.

    As root, `unshare --mount`; otherwise `unshare --map-root-user --mount` (a user namespace),
    where the kernel and the distribution allow it.
    """
    if not shutil.which("unshare"):
        return [], "unshare is not installed"
    why = ""
    for prefix in (["unshare", "--mount", "--propagation", "private"],
                   ["unshare", "--map-root-user", "--mount", "--propagation", "private"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return prefix, None
        why = why or probe.stderr.strip()
    return [], f"cannot mount in a private mount namespace: {why}"


UNSHARE, MOUNT_SKIP = _mount_namespace()


def in_mount_namespace(setup: str, commands: list[list[str]], after: str = ":") -> subprocess.CompletedProcess[str]:
    """Run `setup` (mounts) and then each command in a private mount namespace.

    The mounts exist only inside it and vanish when it ends: nothing to unmount, even
    when a test fails halfway. The exit status is the last command's.
    """
    body = "; ".join(shlex.join(c) for c in commands)
    script = f"set -e; {setup}; set +e; {body}; rc=$?; {after}; exit $rc"
    return subprocess.run([*UNSHARE, "sh", "-c", script], capture_output=True, text=True, timeout=120)


def _compile_argv(manifest: Path, runs: Path) -> list[str]:
    return [sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(runs)]


def _assert_one_clear_line(proc: subprocess.CompletedProcess[str], reason: str) -> None:
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("mcompile: cannot write the run "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().endswith(reason), proc.stderr
    assert proc.stdout == ""


@pytest.mark.skipif(MOUNT_SKIP is not None, reason=MOUNT_SKIP or "")
@pytest.mark.parametrize("previous_run", [False, True], ids=["empty", "with-a-previous-run"])
def test_read_only_runs_folder_is_one_clear_line_and_leaves_no_partial_run(tmp_path: Path, previous_run: bool) -> None:
    # A read-only bind mount in a private mount namespace: a real EROFS, which root cannot
    # write through either (permission bits do not stop root; chattr +i would need undoing).
    runs = tmp_path / "runs"
    runs.mkdir()
    if previous_run:
        compile_manifest(str(grid_manifest(tmp_path, 2, 3, tag=" --old")), runs_dir=str(runs))
    before = tree(runs)
    listing_before = sorted(str(p.relative_to(runs)) for p in runs.rglob("*"))
    proc = in_mount_namespace(f"mount --bind {shlex.quote(str(runs))} {shlex.quote(str(runs))}; "
                              f"mount -o remount,bind,ro {shlex.quote(str(runs))}",
                              [_compile_argv(grid_manifest(tmp_path, 20, 30), runs)])
    _assert_one_clear_line(proc, "Read-only file system")
    assert tree(runs) == before
    assert sorted(str(p.relative_to(runs)) for p in runs.rglob("*")) == listing_before


@pytest.mark.skipif(MOUNT_SKIP is not None, reason=MOUNT_SKIP or "")
@pytest.mark.parametrize("previous_run", [False, True], ids=["empty", "with-a-previous-run"])
def test_full_runs_folder_is_one_clear_line_and_leaves_no_partial_run(tmp_path: Path, previous_run: bool) -> None:
    # A 64 KiB tmpfs mounted over the runs folder in a private mount namespace; a 2,000-task
    # grid needs more than that. What the tmpfs holds is copied out before it vanishes.
    runs, copy = tmp_path / "runs", tmp_path / "copy"
    runs.mkdir()
    copy.mkdir()
    setup = f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(runs))}"
    if previous_run:  # a small run first, on the same tmpfs: it must survive the failed compile
        setup += f"; {shlex.join(_compile_argv(grid_manifest(tmp_path, 2, 3, tag=' --old'), runs))} >/dev/null 2>&1"
    proc = in_mount_namespace(setup, [_compile_argv(grid_manifest(tmp_path, 50, 40), runs)],
                              after=f"cp -a {shlex.quote(str(runs))}/. {shlex.quote(str(copy))}/")
    _assert_one_clear_line(proc, "No space left on device")
    assert list(runs.iterdir()) == []  # the tmpfs is gone with the namespace; the folder below is untouched
    parent = copy / "race"
    assert temporaries(parent) == []
    found = runs_under(parent)
    assert len(found) == (1 if previous_run else 0)
    for run in found:
        assert_complete_run(run)
        assert "--old" in (run / "tasks" / "commands").read_text()
