"""Snapshot: what a submission freezes on the submitting host: the code (`code:`) and the image's identity.

The code snapshot is a tar of a git work tree's *tracked* files (never untracked ones, so
`.gitignore` holds), stored once at <scratch>/<project>/.mcompile/code/<sha256>.tar, named by
the SHA-256 of its bytes. Its bytes depend on the files only: entries sorted by path, a
folder entry before what it holds, owner 0:0 without names, one fixed mtime (1980-01-01, the
earliest a zip file can hold, so tools that zip the code still work), mode 0644 or 0755 as git
records it, symbolic links as links; GNU tar format, the headers written here (`tar_header`). So the same commit gives the same
SHA-256 on any machine, from any clone, in any folder.

Which content:
- a clean work tree, or `dirty: ignore`: the blobs of HEAD (`git ls-tree`, `git cat-file`),
  as committed (no checkout filter or end-of-line conversion applies);
- `dirty: include` with changes: the tracked files as they are in the work tree (`git
  ls-files`; a tracked file deleted from the work tree is left out);
- `dirty: refuse` (the default) with changes: nothing; the refusal names the changed files.
Submodules are not in the snapshot: their folder is absent at the target, and every submission
warns, naming them. Changes inside a submodule do not make the tree dirty.

A snapshot of HEAD is found again from its tree id (a small file under code/trees/), so a
second submission of the same commit reads no file and writes nothing. A snapshot is written
to a temporary name and renamed into place: a killed build never leaves a partial tar under
its final name.

The image's identity is its size, mtime and SHA-256. The hash of a multi-GB image is cached
(in the user's cache folder) by path, size, mtime and inode: hashed once, not at every submit.

Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import subprocess
import threading
import typing as t
from pathlib import Path

from .errors import OperationError
from .jobdir import CODE_REPO
from .model import Resolved
from .plan import CODE_COMMIT_VARIABLE, CODE_VARIABLE, code_dir
from .progress import Meter, meter
from .stage import expand
from .write import temporary_tag, writer_died

FORMAT = "mcompile-code-v1"  # changes when the bytes of a snapshot of the same files would
MTIME = 315532800  # 1980-01-01T00:00:00Z: every entry's mtime
DIRTY_SHOWN = 10  # changed files named in a refusal; the rest are counted
_GIT_TIMEOUT = 600


@dataclasses.dataclass(frozen=True)
class CodeSnapshot:
    """A snapshot made (or found) for a submission."""

    repo: str  # the work tree's folder, absolute
    commit: str  # HEAD's commit id
    dirty: bool  # the snapshot holds uncommitted changes (dirty: include)
    sha256: str
    path: Path
    built: bool  # False: an existing snapshot of the same bytes was used
    files: int  # files and links in it (0 when it was found by its tree and not read)
    warnings: list[str]

    @property
    def commit_name(self) -> str:
        """MCOMPILE_CODE_COMMIT: the commit, with -dirty when uncommitted changes are in the snapshot."""
        return f"{self.commit}-dirty" if self.dirty else self.commit

    @property
    def variables(self) -> dict[str, str]:
        """The job's variables naming it: the snapshot's SHA-256 and the commit."""
        return {CODE_VARIABLE: self.sha256, CODE_COMMIT_VARIABLE: self.commit_name}

    @property
    def exports(self) -> list[str]:
        """How a submission names it to the job (--export)."""
        return [f"{name}={value}" for name, value in self.variables.items()]

    def record(self) -> dict[str, t.Any]:
        """What submissions.jsonl keeps of it."""
        return {"commit": self.commit, "dirty": self.dirty, "snapshot": self.sha256, "repo": self.repo}


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: bytes  # relative to the snapshot's root
    kind: t.Literal["file", "link", "dir"]
    mode: int  # 0o644, 0o755 (files, dirs); links 0o777
    blob: str | None = None  # HEAD's object id (file or link)
    source: bytes | None = None  # a work tree path to read (file or link)


class _Git:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def run(self, *args: str, what: str) -> bytes:
        try:
            proc = subprocess.run(["git", "-C", self.folder, *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=_GIT_TIMEOUT)
        except FileNotFoundError:
            raise OperationError("code: git is not installed on this host (it reads code.repo's tracked files)") from None
        except subprocess.TimeoutExpired:
            raise OperationError(f"code: git {what} in {self.folder} took longer than {_GIT_TIMEOUT} s") from None
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise OperationError(f"code: git {what} failed in {self.folder}: {detail[0] if detail else f'exit {proc.returncode}'}")
        return proc.stdout


def recorded_repo(run_dir: Path) -> str:
    """code.repo's folder for a run submitted again (rerun, exec): where its latest submission
    took the code, else where the run was first compiled (jobdir.CODE_REPO).

    Raises:
        OperationError: neither is known, or the folder is gone.
    """
    from .submissions import read_submissions

    for record in reversed(read_submissions(run_dir)):
        code = record.get("code")
        if isinstance(code, dict) and isinstance(code.get("repo"), str):
            repo = str(code["repo"])
            break
    else:
        try:
            repo = (run_dir / CODE_REPO).read_bytes().decode(errors="surrogateescape").rstrip("\n")
        except OSError:
            raise OperationError(f"{run_dir}: no record of code.repo's folder; compile the manifest again "
                                 "(mcompile compile FILE --submit)") from None
    if not os.path.isdir(repo):
        raise OperationError(f"code.repo {repo} (recorded in {run_dir}) is not a folder any more; submit with "
                             "mcompile compile FILE --submit from where the repository is")
    return repo


def snapshot_code(resolved: Resolved, repo: str, *, cwd: str | os.PathLike[str] | None = None) -> CodeSnapshot | None:
    """Make or find the snapshot of `repo` (a folder, model.repo_folder) that code: asks for;
    None without code:. `cwd`: the run directory (where a relative scratch is the job's).

    Raises:
        OperationError: not a git work tree, no commit yet, a dirty tree refused, git or the disk failing.
    """
    code = resolved.get("code")
    if not code:
        return None
    if not os.path.isdir(repo):
        raise OperationError(f"code.repo: {repo} is not a folder")
    probe = _Git(repo)
    try:
        inside = probe.run("rev-parse", "--is-inside-work-tree", "--show-toplevel", "--show-prefix", what="rev-parse").split(b"\n")
    except OperationError:
        inside = []
    if len(inside) < 3 or inside[0] != b"true":
        raise OperationError(f"code.repo: {repo} is not in a git work tree (git init and commit the code, or point code.repo at one)")
    top, prefix = os.fsdecode(inside[1]), inside[2]
    git = _Git(top)
    try:
        commit = git.run("rev-parse", "--verify", "HEAD^{commit}", what="rev-parse HEAD").decode().strip()
    except OperationError:
        raise OperationError(f"code.repo: {repo} has no commit yet; commit the code first") from None
    changed = _changed_files(git, prefix)
    warnings: list[str] = []
    mode = code["dirty"]
    if changed and mode == "refuse":
        raise OperationError(f"code.repo {top} has uncommitted changes to tracked files: {_listed(changed)}; commit them, or set "
                             "code.dirty: include (take them, the commit reads -dirty) or ignore (take HEAD); nothing was queued")
    if changed and mode == "ignore":
        warnings.append(f"code: the snapshot is commit {commit[:12]}; uncommitted changes left out: {_listed(changed)}")
    from_tree = not (changed and mode == "include")
    entries, submodules = _head_entries(git, prefix) if from_tree else _work_tree_entries(git, prefix)
    if submodules:
        warnings.append("code: submodules are not in the snapshot (their folders are absent at code.target): "
                        + ", ".join(os.fsdecode(s) for s in submodules))
    target_dir = Path(expand(code_dir(resolved), cwd=cwd))
    try:
        (target_dir / "trees").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OperationError(f"cannot create {target_dir}: {e.strerror or e}") from e
    _remove_dead_temporaries(target_dir)
    tree_note = target_dir / "trees" / f"{_tree_id(git, prefix)}.{FORMAT}" if from_tree else None
    folder = os.path.join(top, os.fsdecode(prefix)).rstrip("/") if prefix else top
    if tree_note is not None:
        known = _read_note(tree_note)
        if known and (target_dir / f"{known}.tar").is_file():
            return CodeSnapshot(folder, commit, False, known, target_dir / f"{known}.tar", False, 0, warnings)
    digest, built, files = _write_snapshot(git, entries, target_dir)
    if tree_note is not None:
        _write_note(tree_note, digest)
    return CodeSnapshot(folder, commit, not from_tree, digest, target_dir / f"{digest}.tar", built, files, warnings)


def _listed(paths: list[str]) -> str:
    """The first DIRTY_SHOWN paths, then how many more."""
    more = len(paths) - DIRTY_SHOWN
    return ", ".join(paths[:DIRTY_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _split_z(out: bytes) -> list[bytes]:
    return [item for item in out.split(b"\0") if item]


def _changed_files(git: _Git, prefix: bytes) -> list[str]:
    """Tracked files whose work tree or index differs from HEAD, under the prefix (their repository paths)."""
    out = git.run("status", "--porcelain=v1", "-z", "--untracked-files=no", "--ignore-submodules=all", what="status")
    items = _split_z(out)
    changed: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        status, path = item[:2], item[3:]
        i += 1
        if status[:1] in (b"R", b"C"):  # a rename or copy: the next item is its source
            source = items[i] if i < len(items) else b""
            i += 1
            for p in (source, path):
                if p.startswith(prefix):
                    changed.append(os.fsdecode(p))
            continue
        if path.startswith(prefix):
            changed.append(os.fsdecode(path))
    return sorted(set(changed))


def _tree_id(git: _Git, prefix: bytes) -> str:
    return git.run("rev-parse", "--verify", f"HEAD:{os.fsdecode(prefix)}", what="rev-parse HEAD's tree").decode().strip()


def _with_folders(entries: list[_Entry]) -> list[_Entry]:
    """The entries, each folder they are in as an entry of its own, sorted by path."""
    folders = {parent for e in entries for parent in _parents(e.path)}
    out = entries + [_Entry(f, "dir", 0o755) for f in folders]
    return sorted(out, key=lambda e: e.path)


def _parents(path: bytes) -> t.Iterator[bytes]:
    parts = path.split(b"/")
    for i in range(1, len(parts)):
        yield b"/".join(parts[:i])


def _head_entries(git: _Git, prefix: bytes) -> tuple[list[_Entry], list[bytes]]:
    tree = f"HEAD:{os.fsdecode(prefix)}"
    entries: list[_Entry] = []
    submodules: list[bytes] = []
    for line in _split_z(git.run("ls-tree", "-r", "-z", tree, what="ls-tree HEAD")):
        meta, path = line.split(b"\t", 1)
        mode, kind, oid = meta.split(b" ")
        if kind == b"commit":
            submodules.append(prefix + path)
        elif mode == b"120000":
            entries.append(_Entry(path, "link", 0o777, blob=oid.decode()))
        else:
            entries.append(_Entry(path, "file", 0o755 if mode == b"100755" else 0o644, blob=oid.decode()))
    return _with_folders(entries), submodules


def _work_tree_entries(git: _Git, prefix: bytes) -> tuple[list[_Entry], list[bytes]]:
    entries: list[_Entry] = []
    submodules: list[bytes] = []
    seen: set[bytes] = set()
    for line in _split_z(git.run("ls-files", "-z", "-s", "--full-name", what="ls-files")):
        meta, path = line.split(b"\t", 1)
        if not path.startswith(prefix) or path in seen:  # a conflicted file has several stages
            continue
        seen.add(path)
        rel = path[len(prefix):]
        if meta.startswith(b"160000"):
            submodules.append(path)
            continue
        source = os.path.join(os.fsencode(git.folder), path)
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            continue  # deleted in the work tree: not in the snapshot
        if stat.S_ISLNK(st.st_mode):
            entries.append(_Entry(rel, "link", 0o777, source=source))
        elif stat.S_ISREG(st.st_mode):
            entries.append(_Entry(rel, "file", 0o755 if st.st_mode & stat.S_IXUSR else 0o644, source=source))
    return _with_folders(entries), submodules


BLOCK = 512
RECORD = 20 * BLOCK
_GNU_MAGIC = b"ustar  \0"


def _octal(n: int, digits: int) -> bytes:
    """A number field: octal digits and a NUL, or base-256 when it does not fit (GNU)."""
    if n < 8 ** (digits - 1):
        return b"%0*o\0" % (digits - 1, n)
    out = bytearray(digits)
    out[0] = 0o200
    for i in range(digits - 1, 0, -1):
        out[i] = n & 0xFF
        n >>= 8
    return bytes(out)


def _field(text: bytes, length: int) -> bytes:
    return text[:length] + b"\0" * (length - len(text[:length]))


def _header(name: bytes, kind: bytes, mode: int, size: int, mtime: int, linkname: bytes = b"") -> bytes:
    """One 512-byte GNU tar header; owner 0:0 without names."""
    block = b"".join((
        _field(name, 100), _octal(mode, 8), _octal(0, 8), _octal(0, 8), _octal(size, 12), _octal(mtime, 12),
        b" " * 8, kind, _field(linkname, 100), _GNU_MAGIC, b"\0" * 32, b"\0" * 32, b"\0" * 16, b"\0" * 155,
    ))
    block += b"\0" * (BLOCK - len(block))
    checksum = sum(block)
    return block[:148] + b"%06o\0 " % checksum + block[156:]


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def tar_header(name: bytes, kind: t.Literal["file", "link", "dir"], mode: int, size: int = 0, linkname: bytes = b"") -> bytes:
    """The header block(s) of one member of a snapshot: GNU format, as Python's tarfile writes it
    (GNU_FORMAT, owner 0:0 without names, mtime MTIME), a ././@LongLink member first for a link
    target or a name longer than 100 bytes. Written here, so a snapshot's bytes do not depend on
    the Python version."""
    out = b""
    name += b"/" if kind == "dir" and not name.endswith(b"/") else b""
    for long, text in ((b"K", linkname), (b"L", name)):
        if len(text) > 100:
            payload = text + b"\0"
            out += _header(b"././@LongLink", long, 0, len(payload), 0) + payload + _padding(len(payload))
    kinds = {"file": b"0", "link": b"2", "dir": b"5"}
    return out + _header(name, kinds[kind], mode, size, MTIME, linkname)


class _TarWriter:
    """A snapshot's tar, written straight to a file while it is hashed."""

    def __init__(self, fh: t.BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.fh.write(data)
        self.offset += len(data)

    def member(self, entry: _Entry, size: int = 0, content: t.BinaryIO | None = None, linkname: bytes = b"") -> None:
        """The header, then exactly `size` bytes of `content`, padded to a block."""
        self.write(tar_header(entry.path, entry.kind, entry.mode, size, linkname))
        left = size
        while left:
            assert content is not None
            chunk = content.read(min(left, 1 << 20))
            if not chunk:
                raise OperationError(f"code: {os.fsdecode(entry.path)} ended early while it was read")
            self.write(chunk)
            left -= len(chunk)
        self.write(_padding(size))

    def close(self) -> None:
        """The end: two zero blocks, then zeros to a whole record of 20 blocks (as tar writes)."""
        self.write(b"\0" * (2 * BLOCK))
        self.write(b"\0" * (-self.offset % RECORD))


def _write_snapshot(git: _Git, entries: list[_Entry], target_dir: Path) -> tuple[str, bool, int]:
    """Write the tar to a temporary file while hashing it; keep it as <sha256>.tar unless that exists."""
    tmp = target_dir / f".code.tar.tmp-{temporary_tag()}-{os.urandom(4).hex()}"
    blobs = [e.blob for e in entries if e.blob]
    files = sum(1 for e in entries if e.kind != "dir")
    try:
        with open(tmp, "xb") as fh:
            out = _TarWriter(fh)
            with _BlobReader(git, blobs) as reader:
                for entry in entries:
                    _add(out, entry, reader)
            out.close()
            fh.flush()
            os.fsync(fh.fileno())
        digest = out.digest.hexdigest()
        final = target_dir / f"{digest}.tar"
        if final.is_file():
            return digest, False, files
        os.rename(tmp, final)
        return digest, True, files
    except OSError as e:
        raise OperationError(f"cannot write the code snapshot in {target_dir}: {e.strerror or e}") from e
    finally:
        tmp.unlink(missing_ok=True)


def _add(out: _TarWriter, entry: _Entry, reader: _BlobReader) -> None:
    if entry.kind == "dir":
        out.member(entry)
    elif entry.blob is not None:
        size = reader.next_size(entry.blob)
        if entry.kind == "link":
            out.member(entry, linkname=reader.read(size))
        else:
            out.member(entry, size, reader.stream)
        reader.end()
    else:
        assert entry.source is not None
        if entry.kind == "link":
            out.member(entry, linkname=os.readlink(entry.source))
            return
        with open(entry.source, "rb") as src:
            out.member(entry, os.fstat(src.fileno()).st_size, src)


class _BlobReader:
    """`git cat-file --batch` over the blobs, in order: a thread feeds their ids, the tar reads the contents."""

    def __init__(self, git: _Git, blobs: list[str]) -> None:
        self.blobs = blobs
        self.git = git
        self.proc: subprocess.Popen[bytes] | None = None
        self.feeder: threading.Thread | None = None

    def __enter__(self) -> _BlobReader:
        if self.blobs:
            self.proc = subprocess.Popen(["git", "-C", self.git.folder, "cat-file", "--batch"], stdin=subprocess.PIPE, bufsize=1 << 20,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            self.feeder = threading.Thread(target=self._feed, daemon=True)
            self.feeder.start()
        return self

    def _feed(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            for i in range(0, len(self.blobs), 1024):
                self.proc.stdin.write("".join(f"{b}\n" for b in self.blobs[i:i + 1024]).encode())
            self.proc.stdin.close()
        except OSError:
            pass  # git ended early: the reader reports it

    @property
    def stream(self) -> t.BinaryIO:
        assert self.proc is not None and self.proc.stdout is not None
        return t.cast(t.BinaryIO, self.proc.stdout)

    def next_size(self, blob: str) -> int:
        header = self.stream.readline().split()
        if len(header) != 3 or header[0].decode() != blob or header[1] not in (b"blob",):
            raise OperationError(f"code: git cat-file gave {b' '.join(header).decode(errors='replace')!r} for object {blob}")
        return int(header[2])

    def read(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise OperationError("code: git cat-file ended early")
        return data

    def end(self) -> None:
        self.read(1)  # the newline after each object

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self.feeder is not None:
            self.feeder.join()


def _read_note(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _write_note(path: Path, digest: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{temporary_tag()}")
    try:
        tmp.write_text(digest + "\n")
        os.rename(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # only a cache: the next submit reads the tree again


def _remove_dead_temporaries(target_dir: Path) -> None:
    """Remove half-written snapshots of builds on this host that died (kill -9) before renaming."""
    for entry in target_dir.glob(".code.tar.tmp-*"):
        tag = entry.name[len(".code.tar.tmp-"):].rsplit("-", 1)[0]
        if writer_died(tag):
            entry.unlink(missing_ok=True)


# --- the image ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageIdentity:
    path: str
    size: int
    mtime: int  # seconds (what the job's `stat -c %Y` reads)
    sha256: str

    @property
    def stat(self) -> str:
        """MCOMPILE_IMAGE_STAT: `<size>_<mtime>`, which the job compares before it uses the image."""
        return f"{self.size}_{self.mtime}"

    def record(self) -> dict[str, t.Any]:
        return {"path": self.path, "size": self.size, "mtime": self.mtime, "sha256": self.sha256}


HASH_NOTE_BYTES = 256 << 20  # an image at least this large is announced before it is hashed


def image_identity(path: str, *, cache: str | os.PathLike[str] | None = None,
                   progress: t.Callable[[str], None] | None = None) -> ImageIdentity:
    """The image's size, mtime and SHA-256; the hash is cached by path, size, mtime and inode.

    `cache`: the cache folder (default: <XDG_CACHE_HOME or ~/.cache>/mcompile/images).
    `progress` hears when a large image is hashed (once; then the cache answers).

    Raises:
        OperationError: the image cannot be read.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise OperationError(f"container image {path}: {e.strerror or e} (container.image)") from e
    folder = Path(cache) if cache is not None else _cache_folder()
    key = hashlib.sha256(f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}".encode()).hexdigest()
    note = folder / key if folder else None
    digest = _read_note(note) if note else None
    if digest is None:
        if progress and st.st_size >= HASH_NOTE_BYTES:
            progress(f"hashing the image {path} ({st.st_size / (1 << 30):.1f} GiB) once; "
                     "later submissions take its SHA-256 from the cache while its size, mtime and inode stay")
        digest = _hash_file(path, meter(progress) if st.st_size >= HASH_NOTE_BYTES else None)
        if note is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                _write_note(note, digest)
            except OSError:
                pass  # no cache here: hashed again next time
    return ImageIdentity(path, st.st_size, st.st_mtime_ns // 1_000_000_000, digest)


def _cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mcompile" / "images"


def _hash_file(path: str, tick: Meter | None = None) -> str:
    digest = hashlib.sha256()
    done, total = 0, os.path.getsize(path)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                done += len(chunk)
                if tick is not None:  # the printer keeps the pace it shows at
                    tick(f"hashing {os.path.basename(path)}", done, total)
    except OSError as e:
        raise OperationError(f"container image {path}: cannot read: {e.strerror or e}") from e
    return digest.hexdigest()

