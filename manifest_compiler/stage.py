"""Stage: ready the submitting host for a run: the data archives (`data.stage: archive`) and the log folder.

One tar per subset under <scratch>/<project>/.mcompile/archives/<fingerprint>.tar.
The fingerprint is a SHA-256 over the subset's path and the relative path, type,
size and mtime of every entry in it (one walk, by find(1)), so changed data gets a
new archive and an archive of other data is never used. An archive is written to a
temporary name and renamed into place only after tar's own listing of what it
archived (sizes and mtimes) matched the walk, or a second walk found the data
unchanged: a killed or racing build never leaves a file a later run would trust.

Nothing here prints: what a long build is doing goes to the `progress` callback of the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import time
import typing as t
from pathlib import Path

from .errors import OperationError
from .model import Resolved
from .plan import VARIABLE, archive_dir, archive_variable, home_spelled, path_vars
from .progress import Progress, human_bytes, meter
from .spool import Spool
from .write import temporary_tag, writer_died

FINGERPRINT_LENGTH = 32  # hex digits in an archive's name



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


class Fingerprint(t.NamedTuple):
    digest: str
    entries: int  # files, links and folders, the subset's own folder included
    walk: Spool  # the walk's records, sorted: what the check of a build compares tar's listing with


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


# One record an entry, by find(1) in C: type, size, mtime, path and link target, NUL-ended; sorted
# by sort(1) as bytes (LC_ALL=C), so the digest does not depend on the order a file system lists a
# folder. The fixed fields come first: a path or link target may hold any byte but NUL.
_FIND_FORMAT = "%y\\t%s\\t%T@\\t%P\\t%l\\0"
_UTC_C = {"TZ": "UTC0", "LC_ALL": "C"}  # one time zone for tar's listing, byte order for sort
_READ = 1 << 16
_NO_TOOL = "{tool} is not on PATH: staging a data archive needs GNU find, sort and tar (findutils, coreutils, tar)"


def fingerprint(root: Path, subset: str) -> Fingerprint:
    """Fingerprint of root/subset: paths, types, sizes and mtimes of everything in it.

    One walk, by find(1) piped to sort(1); Python only hashes (and spools) the sorted
    records, so an unchanged subset costs about what `find -printf` does.

    Raises:
        OperationError: see `check_subset`; find failing (a folder that cannot be read).
    """
    top = check_subset(root, subset)
    env = {**os.environ, **_UTC_C}
    try:
        find = subprocess.Popen(["find", ".", "-printf", _FIND_FORMAT], cwd=os.path.realpath(top), env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as e:
        raise OperationError(_NO_TOOL.format(tool="find")) from e
    assert find.stdout is not None and find.stderr is not None
    try:
        sort = subprocess.Popen(["sort", "-z"], env=env, stdin=find.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError as e:
        find.kill()
        find.communicate()  # and close its pipes
        raise OperationError(_NO_TOOL.format(tool="sort")) from e
    assert sort.stdout is not None
    find.stdout.close()  # sort holds it now: find gets SIGPIPE if sort dies
    digest = hashlib.sha256(f"mcompile-archive-v2\0{subset}\0".encode())
    walk = Spool()
    entries = 0
    while chunk := sort.stdout.read(_READ):
        digest.update(chunk)
        walk.write(chunk)
        entries += chunk.count(b"\0")
    sort.stdout.close()
    problems = find.stderr.read().decode(errors="replace").strip().splitlines()
    find.stderr.close()
    if find.wait() != 0 or sort.wait() != 0:
        reason = problems[0] if problems else f"find exited {find.returncode}, sort {sort.returncode}"
        raise OperationError(f"cannot read data subset {subset} ({top}): {reason}")
    return Fingerprint(digest.hexdigest()[:FINGERPRINT_LENGTH], entries, walk)


# What tar -cvv lists of a member, by find's %y: its type letter, and whether its size is listed.
_TAR_TYPE = {b"f": (b"-", True), b"d": (b"d", False), b"l": (b"l", False), b"p": (b"p", False),
             b"s": (b"s", False), b"c": (b"c", False), b"b": (b"b", False)}
# A walk record's fixed fields (a NUL ends the record before: paths hold no NUL), and a listing
# line's type letter, size and mtime (`-rw-r--r-- user/group  1024 2026-12-04 09:49:55.57144236 name`).
_WALK_FIELDS = re.compile(rb"(?:\A|\x00)([a-z])\t(\d+)\t(-?\d+)\.(\d+)\t")
_LISTED_FIELDS = re.compile(rb"^(.)\S* \S+ +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ", re.MULTILINE)
_Summary = tuple[int, int]  # (entries, sum of hash((type, size, mtime))): order-free, O(1) memory


def _walk_summary(walk: Spool) -> tuple[_Summary, int]:
    """(type, size, mtime) of each entry of a walk, as `tar -cvv --full-time` lists them in UTC;
    and about the size of their archive (a header a member and its data in 512-byte blocks)."""
    total = count = expected = 0
    stamps: dict[bytes, bytes] = {}  # files made together share their second
    for kind, size, seconds, fraction in itertools.chain.from_iterable(map(_WALK_FIELDS.findall, _records(walk))):
        letter, sized = _TAR_TYPE.get(kind, (b"?", False))
        stamp = stamps.get(seconds)
        if stamp is None:
            stamp = stamps[seconds] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(seconds))).encode()
        nanoseconds = fraction[:9].rstrip(b"0")  # tar writes no trailing zeros, nor a "." for none
        total += hash((letter, size if sized else b"0", stamp + b"." + nanoseconds if nanoseconds else stamp))
        count += 1
        expected += 512 + (-(-int(size) // 512) * 512 if sized else 0)
    return (count, total), expected + 1024


_PIECE = 1 << 20


def _records(walk: Spool) -> t.Iterator[bytes]:
    """The walk in pieces of whole records (each starting a record), a megabyte or so at a time."""
    start = 0
    while start < walk.size:
        piece = walk.read(start, min(start + _PIECE, walk.size))
        end = piece.rfind(b"\0") + 1 if start + len(piece) < walk.size else len(piece)
        if end == 0:  # a record is a few KiB at most (PATH_MAX twice)
            raise OperationError(f"a record of the data walk is longer than {_PIECE} bytes")
        yield piece[:end]
        start += end


def _listing_summary(listing: t.IO[bytes]) -> _Summary:
    """The same of a `tar -cvv --full-time` listing. No names are compared: a folder's mtime
    changes when an entry in it is added, removed or renamed. A line of another shape (a
    device's major,minor) is not counted, so the summaries then differ."""
    count = total = 0
    while lines := listing.read(1 << 20):
        lines += listing.readline()  # to the end of a line
        count += lines.count(b"\n")
        total += sum(map(hash, _LISTED_FIELDS.findall(lines)))
    return count, total


class Archive(t.NamedTuple):
    subset: str
    position: int  # in data.subsets: the job reads the archive's name from `variable`
    fingerprint: str
    path: Path
    built: bool  # False: reused an existing archive of the same data

    @property
    def variable(self) -> str:
        """The variable in which a submission names this archive to the job."""
        return archive_variable(self.position)

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


def planned_archives(resolved: Resolved, *, cwd: str | os.PathLike[str] | None = None) -> tuple[list[Archive], list[Archive]]:
    """The archives the run needs (each subset fingerprinted, one walk each), and those of them
    that do not exist yet; none is built (`data.build: job` builds them in a staging job).

    Raises:
        OperationError: data missing, a variable unset.
    """
    data = resolved.get("data")
    if not data or data["stage"] != "archive":
        return [], []
    root = Path(expand(data["root"], cwd=cwd))
    target_dir = Path(expand(archive_dir(resolved), cwd=cwd))
    archives = []
    for i, subset in enumerate(data["subsets"]):
        digest = fingerprint(root, subset).digest
        archives.append(Archive(subset, i, digest, target_dir / f"{digest}.tar", built=False))
    return archives, [a for a in archives if not a.path.is_file()]


def check_expected(archives: list[Archive], expected: list[str]) -> None:
    """A staging job's archives are those its submission named to the tasks.

    Raises:
        OperationError: a subset changed since (its tasks would not find their archive).
    """
    if len(expected) != len(archives):
        raise OperationError(f"expected {len(expected)} archives, the run has {len(archives)} data subsets")
    for a, want in zip(archives, expected, strict=True):
        if a.fingerprint != want:
            raise OperationError(f"data subset {a.subset} changed since it was submitted (fingerprint {want}, now {a.fingerprint}): "
                                 "its tasks would not find their archive; submit again")


def _stage_one(root: Path, subset: str, position: int, target_dir: Path, progress: Progress | None) -> Archive:
    before = fingerprint(root, subset)
    final = target_dir / f"{before.digest}.tar"
    if final.is_file():
        # last used now: `mcompile gc` keeps an archive used within its grace period (another
        # user's archive, read-only here, is used all the same)
        with contextlib.suppress(OSError):
            os.utime(final)
        return Archive(subset, position, before.digest, final, built=False)
    if progress:
        progress(f"archiving {subset}: {before.entries - 1:,} files and folders -> {final}")
    started = time.monotonic()
    tmp = target_dir / f".{before.digest}.tar.tmp-{temporary_tag()}"
    try:
        _build(root, subset, tmp, before, progress)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.rename(tmp, final)
    except FileNotFoundError as e:
        raise OperationError(f"cannot archive {subset}: {e.strerror}: {e.filename}") from e
    finally:
        tmp.unlink(missing_ok=True)
    if progress:
        progress(f"archived {subset} in {time.monotonic() - started:.1f} s: {human_bytes(final.stat().st_size)}")
    return Archive(subset, position, before.digest, final, built=True)


def _build(root: Path, subset: str, tmp: Path, before: Fingerprint, progress: Progress | None = None) -> None:
    """tar the subset into `tmp`, and make sure it holds the data `before` describes.

    tar from inside the subset's real folder, naming members <subset>/...: a subset that is a
    link (inside the root: check_subset) is archived as its files, not a link. S: symlink
    targets inside the data keep their text. -vv --full-time: tar lists the size and mtime it
    archived each member with (and fails when a file changes while it reads it); that listing
    is summed after tar, the walk while tar runs. When they agree, the archive is the data of the
    fingerprint; otherwise (hard links, a listing of another shape, a change) a second walk
    decides, as it always did.

    Raises:
        OperationError: tar failing, or the data changing while it was archived.
    """
    import tempfile

    tick = meter(progress)
    with tempfile.TemporaryFile() as listing, tempfile.TemporaryFile() as errors:  # files, not pipes: tar never waits
        if shutil.which("tar", path=os.environ.get("PATH")) is None:
            raise OperationError(_NO_TOOL.format(tool="tar"))
        tar = subprocess.Popen(
            ["tar", "-cvv", "--full-time", "-f", str(tmp), "--sort=name", "--format=gnu", f"--transform=s,^\\.,{subset},S",
             "-C", os.path.realpath(root / subset), "."],
            stdin=subprocess.DEVNULL, stdout=listing, stderr=errors, env={**os.environ, **_UTC_C},
        )
        walked, expected = _walk_summary(before.walk)  # while tar runs
        started = time.monotonic()
        while tick is not None and tar.poll() is None:
            with contextlib.suppress(OSError):
                tick(f"archiving {subset}", min(tmp.stat().st_size, expected), expected)
            time.sleep(0.2)
        if tar.wait() != 0:
            errors.seek(0)
            reason = errors.read().decode(errors="replace").strip()
            raise OperationError(f"archiving {subset} failed: {reason or f'tar exited {tar.returncode}'}")
        if tick is not None and time.monotonic() > started:
            tick(f"archiving {subset}", expected, expected)
        listing.seek(0)
        listed = _listing_summary(listing)
    if listed != walked and fingerprint(root, subset).digest != before.digest:
        raise OperationError(f"data subset {subset} changed while it was archived; try again when it is stable")


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
