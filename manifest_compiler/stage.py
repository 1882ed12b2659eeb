"""Stage: ready the submitting host for a run: the data archives (`data.stage: archive`) and the log folder.

One tar per subset under <scratch>/<project>/.mcompile/archives/<fingerprint>.tar.
The fingerprint is a SHA-256 over the subset's path and the relative path, type,
size and mtime of every entry in it (one walk, by find(1)), so changed data gets a
new archive and an archive of other data is never used. An archive is written to a
temporary name and renamed into place only after tar's own listing of what it
archived (sizes and mtimes) matched the walk, or a second walk found the data
unchanged, and after it is on disk (fsync): a killed or racing build never leaves a
file a later run would trust. Many small files get two tars at once, the subset
divided at a folder, the second's archive appended to the first's as it is written:
the archive is the one a single tar makes, member for member.

Nothing here prints: what a long build is doing goes to the `progress` callback of the caller.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import functools
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
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
    walk: Spool  # the walk's records, sorted: what a build counts and checks tar's listing with


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
_WALK_FIELDS = re.compile(rb"\x00([a-z])\t(\d+)\t(-?\d+)\.(\d+)\t")  # after b"\0" + a piece of whole records
_LISTED_FIELDS = re.compile(rb"^(.)\S* \S+ +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ", re.MULTILINE)
_FILE_SIZES = re.compile(rb"\x00f\t(\d+)\t")
_Summary = tuple[int, int]  # (entries, sum of hash((type, size, mtime))): order-free, O(1) memory


def _walk_summary(walk: Spool) -> _Summary:
    """(type, size, mtime) of each entry of a walk, as `tar -cvv --full-time` lists them in UTC."""
    total = count = 0
    stamps: dict[bytes, bytes] = {}  # files made together share their second
    for kind, size, seconds, fraction in itertools.chain.from_iterable(_WALK_FIELDS.findall(b"\0" + piece) for piece in _records(walk)):
        letter, sized = _TAR_TYPE.get(kind, (b"?", False))
        stamp = stamps.get(seconds)
        if stamp is None:
            stamp = stamps[seconds] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(seconds))).encode()
        nanoseconds = fraction[:9].rstrip(b"0")  # tar writes no trailing zeros, nor a "." for none
        total += hash((letter, size if sized else b"0", stamp + b"." + nanoseconds if nanoseconds else stamp))
        count += 1
    return count, total


def _archive_size(walk: Spool, entries: int) -> int:
    """About the size of the walk's archive: a 512-byte header a member, the files' bytes, the end."""
    return 512 * entries + sum(sum(map(int, _FILE_SIZES.findall(b"\0" + piece))) for piece in _records(walk)) + 1024


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


# Two tars at once, for many small files: there tar's time goes to system calls a file (stat, open,
# read, close), not to bytes, and a second core halves it. The first tar writes the archive, the
# second a part that is appended to it as it is written: a copy in the kernel, cheap next to the
# calls saved while the part is small and stays in memory. Fewer entries, bigger files (where
# bytes are tar's time, and a second tar only adds the copy) or a bigger archive get one tar.
_SPLIT_ENTRIES = 5_000
_SPLIT_MEAN = 64 << 10  # archived bytes an entry
_SPLIT_SIZE = 2 << 30  # archived bytes
_FIRST_SHARE = 0.5  # of the entries, for the first tar
_CUT_DEPTH = 32  # folders deep that a cut is looked for


class _Cut(t.NamedTuple):
    """Where two tars divide a subset, in tar's own order (--sort=name, each folder before what it
    holds). The first tar archives each folder of `path` alone, each followed by its entries
    (whole) that come before the next folder of the path, and at last the folder `at` alone: its
    header is the last block of the first archive. The second archives what `at` holds, then
    `rest`, whole. Paths are relative to the subset's folder."""

    path: list[tuple[bytes, list[bytes]]]
    at: bytes
    rest: list[bytes]


def _inside(walk: Spool, folder: bytes) -> collections.Counter[bytes]:
    """How many entries each folder in `folder` (b"" for the subset's own) holds, by the walk;
    folders that hold none are not counted."""
    within = re.escape(folder + b"/") if folder else b""
    pattern = re.compile(rb"\x00[a-z]\t\d+\t[^\t]*\t" + within + rb"([^\x00/]*)/")
    counts: collections.Counter[bytes] = collections.Counter()
    for piece in _records(walk):
        counts.update(pattern.findall(b"\0" + piece))
    return counts


def _cut(top: bytes, before: Fingerprint) -> _Cut | None:
    """Where to divide the subset at `top` between two tars, at a folder: the first gets about
    _FIRST_SHARE of its entries, and its archive ends with that folder's header (`_join`).
    None when no folder is within an eighth of the entries of the aim (as in a folder of files
    alone: after a file, the first archive's end is not known while the second tar writes).

    From the subset's folder down, the folder holding the entry aimed at is entered while no
    cut is within a sixteenth. Entries are counted from the walk, folders read as they are now:
    data changed since the walk is found by the check of the build.
    """
    entries = before.entries
    aim = int(entries * _FIRST_SHARE)
    levels: list[tuple[bytes, list[bytes], int, int]] = []  # folders entered: names in each, the closest, the entered
    best: tuple[int, int] | None = None  # (off the aim, level)
    folder, position = b"", 0  # entries in tar's order before `folder`
    for _ in range(_CUT_DEPTH):
        counts = _inside(before.walk, folder)
        try:
            names = sorted(os.listdir(os.path.join(top, folder))) if counts else []
        except OSError:
            names = []
        position += 1  # the folder's own header
        closest = holding = None
        inside = 0  # entries in the folders before
        for name in sorted(counts):  # in tar's order, as names are
            at = bisect.bisect_left(names, name)
            if at == len(names) or names[at] != name:
                continue  # gone since the walk
            ahead = position + at + inside  # entries before this folder's own
            if closest is None or abs(ahead + 1 - aim) < closest[0]:
                closest = abs(ahead + 1 - aim), at
            if ahead < aim < ahead + 1 + counts[name]:
                holding = at, ahead
            inside += counts[name]
        if closest is None:
            break
        if best is None or closest[0] < best[0]:
            best = closest[0], len(levels)
        levels.append((folder, names, closest[1], -1 if holding is None else holding[0]))
        if holding is None or best[0] <= entries // 16:
            break
        folder, position = os.path.join(folder, names[holding[0]]), holding[1]
    if best is None or best[0] > entries // 8:
        return None
    chosen = levels[:best[1] + 1]
    ends = [entered for _, _, _, entered in chosen[:-1]] + [chosen[-1][2]]  # in each folder: the next folder, or the cut's

    def paths(level: int, names: list[bytes]) -> list[bytes]:
        return [os.path.join(chosen[level][0], name) for name in names]

    return _Cut([(f, paths(d, names[:ends[d]])) for d, (f, names, _, _) in enumerate(chosen)],
                paths(len(chosen) - 1, [chosen[-1][1][ends[-1]]])[0],
                [p for d in reversed(range(len(chosen))) for p in paths(d, chosen[d][1][ends[d] + 1:])])


def _two_tars(cut: _Cut, top: bytes, scratch: str) -> tuple[list[str | bytes], list[str | bytes]]:
    """The names each tar of a cut archives: arguments after tar's options, the lists of names in
    files under `scratch` (-T, NUL-ended: with --null, tar reads them as they are)."""
    lists = itertools.count()

    def listed(paths: t.Iterable[bytes]) -> list[str | bytes]:
        name = os.path.join(scratch, f"names-{next(lists)}")
        with open(name, "wb") as fh:
            fh.write(b"".join(b"./" + p + b"\0" for p in paths))
        return ["-T", name]

    first: list[str | bytes] = ["--null"]
    for folder, before in cut.path:
        first += ["--no-recursion", b"./" + folder, "--recursion", *listed(before)]
    first += ["--no-recursion", b"./" + cut.at]
    held = sorted(os.path.join(cut.at, name) for name in os.listdir(os.path.join(top, cut.at)))
    return first, ["--null", *listed(held + cut.rest)]


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
    except OSError as e:  # a folder gone, the disk full or failing
        raise OperationError(f"cannot archive {subset}: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")) from e
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
    archived each member with (and fails when a file changes while it reads it). When those
    listings agree with the walk, the archive is the data of the fingerprint; otherwise (hard
    links, a listing of another shape, a change) a second walk decides, as it always did.

    Many small files get two tars at once (`_cut`), the second's archive appended to the first's
    while it is written (`_join`): the archive one tar makes, but that a file hard-linked from
    one part into the other is archived whole in both (tar links a name to an earlier member of
    its own archive only). The walk is summed while the tars run. A thread syncs the archive
    while it is written (`_flush`), so the caller's fsync is short.

    Raises:
        OperationError: tar failing, or the data changing while it was archived.
    """
    import tempfile

    if shutil.which("tar", path=os.environ.get("PATH")) is None:
        raise OperationError(_NO_TOOL.format(tool="tar"))
    tick = meter(progress)
    top = os.path.realpath(root / subset)
    two = before.entries >= _SPLIT_ENTRIES and len(os.sched_getaffinity(0)) >= 2
    size = _archive_size(before.walk, before.entries) if two or tick is not None else 0
    two = two and size <= min(_SPLIT_SIZE, _SPLIT_MEAN * before.entries)
    cut = _cut(os.fsencode(top), before) if two else None
    part = tmp.with_name(tmp.name.replace(".tar.tmp-", "-2.tar.tmp-", 1))  # a temporary, as _remove_dead_temporaries knows them
    command = ["tar", "-cvv", "--full-time", "--sort=name", "--format=gnu", "-b", str(_RECORD // 512), "--no-unquote",
               f"--transform=s,^\\.,{subset},S", "-C", top]
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="mcompile-stage-"))
        stack.callback(part.unlink, missing_ok=True)
        jobs = [(tmp, ["."])] if cut is None else list(zip((tmp, part), _two_tars(cut, os.fsencode(top), scratch), strict=True))
        archive, *_ = (stack.enter_context(open(out, "wb")) for out, _ in jobs)  # made here (tar -f truncates them): the joiner opens both
        tars: list[subprocess.Popen[bytes]] = []
        # the threads start before the tars: once those run, a thread waits for a core to start
        flusher = stack.enter_context(_Background("flush", functools.partial(_flush, archive.fileno())))
        first_done = threading.Event()
        if cut is not None:
            # they take the interpreter for a moment between system calls, while this thread sums
            stack.callback(sys.setswitchinterval, sys.getswitchinterval())
            sys.setswitchinterval(_SWITCH)
            joiner = stack.enter_context(_Background("join", functools.partial(
                _join, tars, tmp, part, os.fsencode(f"{subset}/") + cut.at + b"/", first_done)))
        stack.callback(first_done.set)
        stack.callback(_stop, tars)
        outputs = []
        for out, names in jobs:
            listing, errors = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(2))  # files, not pipes: tar never waits
            tars.append(subprocess.Popen([*command, "-f", str(out), *names], stdin=subprocess.DEVNULL, stdout=listing,
                                         stderr=errors, env={**os.environ, **_UTC_C}))
            outputs.append((listing, errors))
        walked = _walk_summary(before.walk)  # while the tars run
        count = total = 0
        first_size = 0  # of the first archive once its tar is done (the joiner then copies the second's into it)

        def written() -> int:
            return (first_size or tmp.stat().st_size) + (part.stat().st_size if cut is not None else 0)

        for process, (listing, errors) in zip(tars, outputs, strict=True):
            _wait(process, None if tick is None else lambda: tick(f"archiving {subset}", min(written(), size), size))
            if process.returncode != 0:
                errors.seek(0)
                reason = errors.read().decode(errors="replace").strip()
                raise OperationError(f"archiving {subset} failed: {reason or f'tar exited {process.returncode}'}")
            first_size = first_size or tmp.stat().st_size
            first_done.set()
            listing.seek(0)  # summed while the second tar runs and the joiner copies
            lines, summed = _listing_summary(listing)
            count, total = count + lines, total + summed
        if cut is not None:
            joiner.result()
        flusher.stop()
    if (count, total) != walked and fingerprint(root, subset).digest != before.digest:
        raise OperationError(f"data subset {subset} changed while it was archived; try again when it is stable")


_RECORD = 64 << 10  # tar's record (-b, in 512-byte blocks): fewer, larger writes than its default 10 KiB
_SWITCH = 0.0002  # seconds: sys.setswitchinterval while the joiner and the summing share the interpreter
_FLUSH = 0.02  # seconds between syncs of what tar has written
_FLUSH_BYTES = 4 << 20  # and bytes
_FOLLOW = 0.005  # seconds between the joiner's copies of what the second tar has written
_TICK = 0.2  # seconds between progress ticks


def _wait(process: subprocess.Popen[bytes], tick: t.Callable[[], None] | None) -> None:
    """Wait for a tar, calling `tick` (how far the tars have got) every _TICK seconds and at its end."""
    while tick is not None and process.poll() is None:
        with contextlib.suppress(OSError):
            tick()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(_TICK)
    process.wait()
    if tick is not None:
        with contextlib.suppress(OSError):
            tick()


def _stop(tars: list[subprocess.Popen[bytes]]) -> None:
    """End tars still running (the build failed or was interrupted)."""
    for process in tars:
        if process.poll() is None:
            process.kill()
            process.wait()


class _Background:
    """function(stopped) in a thread, from entering the `with`; leaving it sets `stopped` and
    waits for the thread. `result()` waits for it too, and raises what it raised (an error in a
    sync, seen by the thread, is seen by no later sync)."""

    def __init__(self, name: str, function: t.Callable[[threading.Event], None]) -> None:
        self._stopped = threading.Event()
        self._raised: list[BaseException] = []
        self._function = function
        self._thread = threading.Thread(target=self._main, name=f"mcompile-stage-{name}", daemon=True)

    def _main(self) -> None:
        try:
            self._function(self._stopped)
        except BaseException as e:  # noqa: BLE001 -- raised again by result(), in the caller's thread
            self._raised.append(e)

    def __enter__(self) -> t.Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._thread.join()

    def result(self) -> None:
        self._thread.join()
        if self._raised:
            raise self._raised[0]

    def stop(self) -> None:
        """Set `stopped`, then `result()`."""
        self._stopped.set()
        self.result()


def _flush(fd: int, stopped: threading.Event) -> None:
    """Sync the archive (`fd`) while tar writes it, every _FLUSH seconds that it has grown by
    _FLUSH_BYTES: the sync that makes it durable, after, has little left to write."""
    synced = 0
    while not stopped.wait(_FLUSH):
        size = os.fstat(fd).st_size
        if size - synced >= _FLUSH_BYTES:
            os.fdatasync(fd)
            synced = size


def _exited(process: subprocess.Popen[bytes], stopped: threading.Event) -> bool:
    """Wait for a process to exit, unless stopped first (then False)."""
    while process.poll() is None:
        if stopped.wait(_FOLLOW):
            return False
    return True


def _join(tars: list[subprocess.Popen[bytes]], tmp: Path, part: Path, last: bytes, first_done: threading.Event,
          stopped: threading.Event) -> None:
    """Append the second tar's archive (`part`) to the first's (`tmp`), where the first's members
    end (over its end of zeros), copying what the second has written as it writes it.

    The first tar archived the folder `last` (its member name) last, alone: its header is the
    last block of `tmp` that is not zeros, and the members end with it. Should that block not be
    the header (the folder was replaced since the walk), `tar -A`, which reads the headers of
    `tmp` from its start, appends once the second is done.
    """
    first_done.wait()  # set when the caller has waited for the first tar, or gives up
    if stopped.is_set() or len(tars) != 2 or tars[0].returncode != 0:
        return
    second = tars[1]
    with open(tmp, "r+b") as joined, open(part, "rb") as written:
        end = _members_end(joined.fileno(), last)
        if end is None:
            joined.close()
            if _exited(second, stopped) and second.returncode == 0:
                _concatenate(tmp, part)
            return
        copied, finished = 0, False
        while not finished:
            finished = second.poll() is not None  # before the size: then the size is the last
            size = os.fstat(written.fileno()).st_size
            _copy(written.fileno(), joined.fileno(), copied, size - copied, end + copied)
            copied = size
            if not finished and stopped.wait(_FOLLOW):
                return
        if second.returncode == 0:
            os.ftruncate(joined.fileno(), end + copied)


_END = _RECORD + (2 << 10)  # an archive's end: 2 zero blocks, then zeros to the end of tar's record


def _members_end(fd: int, last: bytes) -> int | None:
    """Where the members of an archive whose last member is the folder `last` (a header, no
    data) end: after its last block that is not zeros, if that block is the folder's header."""
    size = os.fstat(fd).st_size
    if size % 512:
        return None
    tail_at = max(0, size - _END)
    tail = os.pread(fd, size - tail_at, tail_at)
    end = -(-len(tail.rstrip(b"\0")) // 512) * 512
    header = tail[end - 512:end] if end >= 512 else b""
    if header[:100] == last[:100].ljust(100, b"\0") and header[156:157] == b"5":  # its name (cut at 100 bytes), a folder
        return tail_at + end
    return None


def _concatenate(tmp: Path, part: Path) -> None:
    """`tar -A`: part's members after those of tmp.

    Raises:
        OperationError: tar failing.
    """
    appended = subprocess.run(["tar", "-A", "-f", str(tmp), str(part)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if appended.returncode != 0:
        reason = appended.stderr.decode(errors="replace").strip()
        raise OperationError(f"joining the two tars' archives failed: {reason or f'tar -A exited {appended.returncode}'}")


_COPY = 1 << 20


def _copy(source: int, target: int, start: int, length: int, at: int) -> None:
    """Bytes start..start+length of `source` to `target` at `at`: in the kernel where it can, else read and written."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(source, target, length - done, start + done, at + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            n = os.pwrite(target, os.pread(source, min(length - done, _COPY), start + done), at + done)
        if n == 0:
            raise OSError(errno.EIO, f"the second tar's archive ended at byte {start + done} of {start + length}")
        done += n


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
