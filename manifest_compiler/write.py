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

import dataclasses
import hashlib
import json
import os
import shutil
import typing as t
from pathlib import Path

from .errors import OperationError

RECORD_FILES = ("manifest.yaml", "extends/", "submissions.jsonl")
_TMP_PREFIX = ".tmp-"


class StreamedFile:
    """The bytes of a generated file as chunks, produced anew each time it is iterated.

    `produce` must give the same bytes on every call: the file may be read for its
    size, for the run's hash and to write it (writing checks the size). `size` and
    `sha256` may be given when they are known without producing the bytes; otherwise
    their first use reads the file.
    """

    __slots__ = ("_digest", "_produce", "_size")

    def __init__(self, produce: t.Callable[[], t.Iterable[bytes]], *, size: int | None = None,
                 sha256: str | None = None) -> None:
        self._produce = produce
        self._size = size
        self._digest = sha256

    def __iter__(self) -> t.Iterator[bytes]:
        return iter(self._produce())

    @property
    def size(self) -> int:
        """The length in bytes."""
        if self._size is None:
            self.sha256()
        assert self._size is not None
        return self._size

    def sha256(self) -> str:
        """The hex SHA-256 of the bytes (and, on the way, their length)."""
        if self._digest is None:
            digest, size = hashlib.sha256(), 0
            for chunk in self:
                digest.update(chunk)
                size += len(chunk)
            if self._size is not None and size != self._size:
                raise AssertionError(f"a streamed file gave {size} bytes, not the {self._size} announced")
            self._digest, self._size = digest.hexdigest(), size
        return self._digest

    def read(self) -> bytes:
        """All the bytes at once (for small files and tests)."""
        return b"".join(self)


FileContent: t.TypeAlias = "bytes | StreamedFile"


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


@dataclasses.dataclass(frozen=True)
class WriteResult:
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
            _write_file(tmp / rel, data, executable=rel == "job.sbatch")
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


def list_runs(runs_dir: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Compiled runs, newest first (by the time the run directory appeared)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    names = [root / name] if name else sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    runs = [r for n in names if n.is_dir() for r in n.iterdir()
            if r.is_dir() and not r.name.startswith(".") and (r / "job.sbatch").is_file()]
    return sorted(runs, key=lambda r: (r.stat().st_mtime_ns, r.name), reverse=True)


def select_runs(runs_dir: str | os.PathLike[str], spec: str | None) -> list[Path]:
    """The runs a RUN argument names, newest first.

    RUN is a run directory, `NAME/HASH12` under runs_dir, or `NAME` (all its runs);
    no RUN: every run under runs_dir.
    """
    if not spec:
        return list_runs(runs_dir)
    path = Path(spec)
    if (path / "resolved.json").is_file() and (path / "job.sbatch").is_file():
        return [path]
    if os.path.isabs(spec) or ".." in path.parts:
        return []
    candidate = Path(runs_dir) / spec
    if len(path.parts) == 2 and (candidate / "resolved.json").is_file():
        return [candidate]
    if len(path.parts) == 1:
        return list_runs(runs_dir, spec)
    return []


def read_resolved(run_dir: Path) -> dict[str, t.Any]:
    """The resolved.json of a job directory.

    Raises:
        OperationError: it is missing, unreadable or not a resolved manifest.
    """
    file = run_dir / "resolved.json"
    try:
        data = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise OperationError(f"{run_dir}: not a job directory (no resolved.json)") from None
    except OSError as e:
        raise OperationError(f"{file}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise OperationError(f"{file}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("run"), dict):
        raise OperationError(f"{file}: not a resolved manifest (expected an object with name and run)")
    return data


def task_count(run_dir: Path) -> int:
    """The tasks of a compiled run, from the size of its fixed-width tasks/index (0 if unreadable).

    Constant time: a run of a million tasks need not load its resolved.json to say so.
    """
    from .render import INDEX_WIDTH

    try:
        return max((run_dir / "tasks" / "index").stat().st_size // (INDEX_WIDTH + 1) - 1, 0)
    except OSError:
        return 0
