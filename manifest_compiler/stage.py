"""Stage: ready the submitting host for a run: the data archives (`data.stage: archive`) and the log folder.

One tar per subset under <scratch>/<project>/.mcompile/archives/<fingerprint>.tar.
The fingerprint is a SHA-256 over the subset's path and the relative path, type,
size and mtime of every entry in it, so changed data gets a new archive and an
archive of other data is never used. An archive is written to a temporary name
and renamed into place only after the data was seen unchanged while it was being
written: a killed or racing build never leaves a file a later run would trust.

Nothing here prints: what a long build is doing goes to the `progress` callback of the caller.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import subprocess
import time
import typing as t
from pathlib import Path

from .errors import OperationError
from .model import Resolved
from .plan import VARIABLE, archive_dir, archive_variable, home_spelled, path_vars
from .write import temporary_tag, writer_died

FINGERPRINT_LENGTH = 32  # hex digits in an archive's name

Progress = t.Callable[[str], None]  # told what a long step is doing, a line at a time


def expand(path: str, *, cwd: str | os.PathLike[str] | None = None) -> str:
    """A manifest path as the job will read it, with this host's variables: a leading `~` or
    `~/` and `$NAME`/`${NAME}` expand, nothing else does (render.shell_path). A path that is
    still relative is the job's working directory's: `cwd`, the run directory (the job runs
    where sbatch was called); without it, this process's.

    Raises:
        OperationError: a variable the path uses is not set here.
    """
    missing = [v for v in path_vars(path) if v not in os.environ]
    if missing:
        raise OperationError(f"{path}: {', '.join(missing)} is not set on this host")
    expanded = VARIABLE.sub(lambda m: os.environ[m[1] or m[2]], home_spelled(path))
    return os.path.join(cwd, expanded) if cwd is not None else expanded


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    digest: str
    files: int
    bytes: int


def check_subset(root: Path, subset: str) -> Path:
    """root/subset, if it is a folder that does not lead outside root through a link.

    Raises:
        OperationError: the subset is missing, not a folder, or escapes the data root.
    """
    top = root / subset
    if not os.path.isdir(top):
        raise OperationError(f"data subset {subset} not found: {top} is not a folder")
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(top)]) != real_root:
        raise OperationError(f"data subset {subset}: {top} is a link that leads outside the data root {root}")
    return top


def fingerprint(root: Path, subset: str) -> Fingerprint:
    """Fingerprint of root/subset: paths, types, sizes and mtimes of everything in it.

    Raises:
        OperationError: see `check_subset`.
    """
    top = check_subset(root, subset)
    digest = hashlib.sha256(f"mcompile-archive-v1\0{subset}\0".encode())
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in [*sorted(filenames), *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
            st = os.lstat(os.path.join(dirpath, name))
            kind = "l" if stat.S_ISLNK(st.st_mode) else "f"
            extra = os.readlink(os.path.join(dirpath, name)) if kind == "l" else ""
            digest.update(f"{kind}\0{rel_dir}/{name}\0{st.st_size}\0{st.st_mtime_ns}\0{extra}\0".encode())
            files += 1
            size += st.st_size
        for name in dirnames:
            digest.update(f"d\0{rel_dir}/{name}\0".encode())
    return Fingerprint(digest.hexdigest()[:FINGERPRINT_LENGTH], files, size)


@dataclasses.dataclass(frozen=True)
class Archive:
    subset: str
    index: int  # position in data.subsets: the job reads the archive's name from `variable`
    fingerprint: str
    path: Path
    built: bool  # False: reused an existing archive of the same data

    @property
    def variable(self) -> str:
        """The variable in which a submission names this archive to the job."""
        return archive_variable(self.index)

    @property
    def export(self) -> str:
        """`variable=fingerprint`, as sbatch --export takes it."""
        return f"{self.variable}={self.fingerprint}"


def stage_archives(resolved: Resolved, *, progress: Progress | None = None,
                   cwd: str | os.PathLike[str] | None = None) -> list[Archive]:
    """Build or reuse one archive per subset. Nothing to do unless stage is archive.

    `cwd`: the run directory, where the job resolves a path that is still relative (`expand`).
    `progress` hears when a build starts and ends (it may take long).

    Raises:
        OperationError: data missing, a variable unset, tar failing, the data
            changing while it was archived.
    """
    data = resolved.get("data")
    if not data or data["stage"] != "archive":
        return []
    root = Path(expand(data["root"], cwd=cwd))
    target_dir = Path(expand(archive_dir(resolved), cwd=cwd))
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OperationError(f"cannot create {target_dir}: {e.strerror or e}") from e
    _remove_dead_temporaries(target_dir)
    return [_stage_one(root, subset, i, target_dir, progress) for i, subset in enumerate(data["subsets"])]


def _stage_one(root: Path, subset: str, index: int, target_dir: Path, progress: Progress | None) -> Archive:
    before = fingerprint(root, subset)
    final = target_dir / f"{before.digest}.tar"
    if final.is_file():
        return Archive(subset, index, before.digest, final, built=False)
    if progress:
        progress(f"archiving {subset}: {before.files:,} files, {_human(before.bytes)} -> {final}")
    started = time.monotonic()
    tmp = target_dir / f".{before.digest}.tar.tmp-{temporary_tag()}"
    try:
        # tar from inside the subset's real folder, naming members <subset>/...: a subset
        # that is a link (inside the root: check_subset) is archived as its files, not a link.
        # S: symlink targets inside the data keep their text.
        proc = subprocess.run(
            ["tar", "-cf", str(tmp), "--sort=name", "--format=gnu", f"--transform=s,^\\.,{subset},S",
             "-C", os.path.realpath(root / subset), "."],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if proc.returncode != 0:
            raise OperationError(f"archiving {subset} failed: {proc.stderr.strip() or f'tar exited {proc.returncode}'}")
        after = fingerprint(root, subset)
        if after.digest != before.digest:
            raise OperationError(f"data subset {subset} changed while it was archived; try again when it is stable")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.rename(tmp, final)
    except FileNotFoundError as e:
        raise OperationError(f"cannot archive {subset}: {e.strerror}: {e.filename}") from e
    finally:
        tmp.unlink(missing_ok=True)
    if progress:
        progress(f"archived {subset} in {time.monotonic() - started:.1f} s")
    return Archive(subset, index, before.digest, final, built=True)


def make_log_folder(resolved: Resolved, *, cwd: str | os.PathLike[str] | None = None, unset_ok: bool = False) -> str | None:
    """Create outputs.logs as the job will find it: SLURM does not create the folder of --output.

    `cwd` as for `expand`. Returns the folder; None when a variable it uses is not set here and
    `unset_ok` (the job, which creates the folder itself, may have it).

    Raises:
        OperationError: the folder cannot be created, or (without `unset_ok`) a variable is not set.
    """
    try:
        logs = expand(resolved["outputs"]["logs"], cwd=cwd)
    except OperationError:
        if unset_ok:
            return None
        raise
    try:
        os.makedirs(logs, exist_ok=True)
    except OSError as e:
        raise OperationError(f"cannot create the log folder {logs}: {e.strerror or e}") from e
    return logs


def _remove_dead_temporaries(target_dir: Path) -> None:
    """Remove half-written archives of builds on this host that died (kill -9) before renaming.

    They are never trusted (only <fingerprint>.tar is), but they take disk space.
    """
    for entry in target_dir.glob(".*.tar.tmp-*"):
        if writer_died(entry.name.split(".tar.tmp-", 1)[1]):
            entry.unlink(missing_ok=True)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
