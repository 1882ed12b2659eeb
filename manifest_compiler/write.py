"""Write: rendered files -> runs/<name>/<hash12>/, content-addressed and atomic.

The directory name is the first 12 hex digits of a SHA-256 over every generated
file (path and bytes). The manifest as written (and each extends file) is kept
beside them for the record, outside the hash, so a comment-only edit compiles to
the same run. A run appears whole or not at all: files go to a hidden temporary
sibling that is renamed into place; an existing run is never touched.

A large file (the tasks, resolved.json) comes as a `StreamedFile`: its bytes are
produced chunk by chunk and never held whole in memory; they are hashed while they
are written, or first, when a run of the same name exists (so compiling a run that
exists writes nothing).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import typing as t
from pathlib import Path

from .errors import OperationError
from .jobdir import JOB_SCRIPT, FileContent, StreamedFile

_TMP_PREFIX = ".tmp-"


def content_hash(files: t.Mapping[str, FileContent]) -> str:
    """SHA-256 over every file, in path order: `path NUL length NUL bytes` each."""
    digest = hashlib.sha256()
    for path in sorted(files):
        data = files[path]
        if isinstance(data, bytes):
            digest.update(f"{path}\0{len(data)}\0".encode())
            digest.update(data)
            continue
        size, seen = data.size, 0
        digest.update(f"{path}\0{size}\0".encode())
        for chunk in data:
            digest.update(chunk)
            seen += len(chunk)
        if seen != size:  # the length went into the hash first: the stream must keep it
            raise AssertionError(f"{path}: the stream gave {seen} bytes, not the {size} announced")
    return digest.hexdigest()


class WriteResult(t.NamedTuple):
    path: Path
    hash: str
    created: bool  # False: the run already existed and was left as it was


def write_run(runs_dir: str | os.PathLike[str], name: str, files: t.Mapping[str, FileContent],
              record: t.Mapping[str, bytes]) -> WriteResult:
    """Create runs_dir/name/hash12 holding `files` (hashed) and `record` (not hashed).

    When runs_dir/name holds a run already, the hash is computed first (no I/O), so
    that compiling an existing run writes nothing. Otherwise the run cannot exist
    yet and the files are hashed while they are written, which saves a pass over
    every streamed file.

    Raises:
        OperationError: the runs folder cannot be created or written.
    """
    parent = Path(runs_dir) / name
    full: str | None = None
    if parent.is_dir():
        _remove_stale_temporaries(parent)  # also when the run exists: a racing compile may have died
        if _holds_a_run(parent):
            full = content_hash(files)
            if (parent / full[:12]).exists():
                return WriteResult(parent / full[:12], full, created=False)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f"{_TMP_PREFIX}{full[:12] if full else os.urandom(6).hex()}-{temporary_tag()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise OperationError(f"cannot write the run under {parent}: {e.strerror or e}") from e
    final = parent / full[:12] if full else parent
    try:
        digest = hashlib.sha256()
        for rel in sorted(files):  # the order of the hash
            data = files[rel]
            if full is None:
                data = _hashed(rel, data, digest)
            _write_file(tmp / rel, data, executable=rel == JOB_SCRIPT)
        for rel in record:
            if rel not in files:
                _write_file(tmp / rel, record[rel], executable=False)
        full = full or digest.hexdigest()
        final = parent / full[:12]
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if final.is_dir():  # another compile of the same manifest won the race
                return WriteResult(final, full, created=False)
            raise
        _fsync_dir(parent)
    except OSError as e:
        raise OperationError(f"cannot write the run {final}: {e.strerror or e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return WriteResult(final, full, created=True)


def _holds_a_run(parent: Path) -> bool:
    try:
        return any(not entry.name.startswith(".") for entry in parent.iterdir())
    except OSError:
        return True  # then hash first, as always


def _hashed(path: str, data: FileContent, digest: t.Any) -> FileContent:
    """`data`, fed to `digest` as `content_hash` does while it is written."""
    size = len(data) if isinstance(data, bytes) else data.size
    digest.update(f"{path}\0{size}\0".encode())
    if isinstance(data, bytes):
        digest.update(data)
        return data

    def chunks() -> t.Iterator[bytes]:
        for chunk in data:
            digest.update(chunk)
            yield chunk

    return StreamedFile(chunks, size=size)


def _write_file(path: Path, data: FileContent, *, executable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as fh:
        if isinstance(data, bytes):
            fh.write(data)
        else:
            written = sum(fh.write(chunk) for chunk in data)
            if written != data.size:  # what was hashed is not what is written
                raise AssertionError(f"{path}: the stream gave {written} bytes, not the {data.size} hashed")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o755 if executable else 0o644)  # whatever the umask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temporaries(parent: Path) -> None:
    """Remove temporaries of compiles on this host that died (kill -9) before renaming."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(_TMP_PREFIX) and writer_died(entry.name[len(_TMP_PREFIX) + 13 :]):
            shutil.rmtree(entry, ignore_errors=True)


def temporary_tag() -> str:
    """`<host>-<pid>`, ending a temporary's name so that a later process can tell whether its writer died."""
    return f"{os.uname().nodename}-{os.getpid()}"


def writer_died(tag: str) -> bool:
    """Whether the writer named by a `temporary_tag` ran on this host and is gone (killed before renaming)."""
    host, _, pid = tag.rpartition("-")
    return host == os.uname().nodename and pid.isdigit() and not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
