"""The job directory: its files, their format, and finding and reading runs.

    runs/<name>/<hash12>/
      job.sbatch          the batch script (executable); checks tasks/blocks against its own copy of the hash
      tasks/commands      every task's command, byte for byte, each followed by a newline
      tasks/index         N+1 fixed-width offsets (INDEX_WIDTH digits and a newline): where each
                          command starts in tasks/commands, then where the last one ends
      tasks/blocks        the SHA-256 of each BLOCK_SIZE bytes of tasks/commands, a line each
      resolved.json       the resolved manifest (what `diff` compares)
      mounts.json         the bind-mount plan, parents first
      plan.txt            the readable plan (`mcompile plan`)
      manifest.yaml       the manifest as written        } the record: kept beside the run,
      extends/<i>-<file>  each file it extends           } outside its hash
      commands_file/<file> run.commands_file, as written }
      submissions.jsonl   one line per sbatch call        }
      code-repo           code.repo's folder, absolute    }
      cancels.jsonl       one line per `mcompile cancel`  }
      wandb-synced.jsonl  one line per folder `mcompile sync` uploaded }

<hash12> is the first 12 hex digits of a SHA-256 over every generated file (`write`). A run is
found by its directory, `NAME/HASH12` under the runs folder, or `NAME` (its newest run). This
module is the one place that knows these names; `render` fills them, `write` writes them, and
`runs`, `submit`, `diff` and `local` read them (`submissions` reads and appends submissions.jsonl).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import typing as t
from pathlib import Path

from .errors import OperationError, UsageError
from .model import pack_size

if t.TYPE_CHECKING:
    from .model import Resolved

JOB_SCRIPT = "job.sbatch"
TASK_COMMANDS = "tasks/commands"
TASK_INDEX = "tasks/index"
TASK_BLOCKS = "tasks/blocks"
RESOLVED = "resolved.json"
MOUNTS = "mounts.json"
PLAN = "plan.txt"
MANIFEST = "manifest.yaml"
EXTENDS = "extends/"
COMMANDS_FILE = "commands_file/"
SUBMISSIONS = "submissions.jsonl"
WANDB_SYNCED = "wandb-synced.jsonl"  # offline W&B runs `mcompile sync` uploaded: one JSON line each
REPORT = "report.html"  # `mcompile report`'s page, by default
CODE_REPO = "code-repo"  # code.repo's folder where the run was first compiled (rerun and exec snapshot it)
CANCELS = "cancels.jsonl"
# A packed run's record of its tasks, written by the job: packs/<job>_<array index>, a line as each
# task starts ("<task> started <restart>") and as it exits ("<task> exited <status>").
PACKS = "packs"
RECORD_FILES = (MANIFEST, EXTENDS, COMMANDS_FILE, SUBMISSIONS, CODE_REPO, WANDB_SYNCED, CANCELS, REPORT, PACKS)  # not part of the run's hash

INDEX_WIDTH = 16  # digits of one offset in tasks/index; 10**16 bytes is enough
# tasks/blocks holds the SHA-256 of each block of this many bytes of tasks/commands: a task
# checks the block(s) holding its command, not a file of a million commands.
BLOCK_SIZE = 1 << 20


def extends_record(position: int, path: str) -> str:
    """The record name of the `position`-th file a manifest extends (1 is its own base)."""
    return f"{EXTENDS}{position}-{os.path.basename(path)}"


def commands_file_record(path: str) -> str:
    """The record name of the manifest's run.commands_file. Its commands are the run's tasks
    (tasks/commands, hashed); the file as written is kept for the record."""
    return f"{COMMANDS_FILE}{os.path.basename(path)}"


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


def find_run(runs_dir: str, spec: str) -> Path:
    """The run a RUN argument names (`NAME`: its newest run).

    Raises:
        UsageError: there is no such run.
    """
    runs = select_runs(runs_dir, spec)
    if not runs:
        raise UsageError(f"mcompile: no compiled run {spec!r} in {runs_dir} (a run directory, or NAME/HASH12 or NAME under --runs)")
    return runs[0]


def read_resolved(run_dir: Path) -> Resolved:
    """The resolved.json of a job directory.

    Raises:
        OperationError: it is missing, unreadable or not a resolved manifest.
    """
    file = run_dir / RESOLVED
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
    return t.cast("Resolved", data)


# resolved.json is written with sorted keys and an indent of 2 (render.py): the top-level keys
# before "run" (name, outputs, project, ...) come first, and "run" holds the tasks.
_RUN_KEY = b'\n  "run": '
_TASKS_KEY = b'\n    "tasks": '
_PACK = re.compile(rb'\n    "pack": (\d+),')
_HEAD_CHUNK = 1 << 16


class PackedTask(t.NamedTuple):
    """What a packed array task recorded of one of its tasks: the restarts of the array task in
    which it started, and its exit status (None: it has not ended)."""

    starts: list[int]
    status: int | None


def read_pack_record(run_dir: Path, job_id: str, index: int) -> dict[int, PackedTask]:
    """The record packs/<job>_<index> of a packed array task: each task it started -> what it
    recorded (none before it started one, or where it cannot be read); a torn line is skipped."""
    try:
        text = (run_dir / PACKS / f"{job_id}_{index}").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[int, PackedTask] = {}
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) != 3 or not all(f.isdigit() for f in (fields[0], fields[2])):
            continue
        task, value = int(fields[0]), int(fields[2])
        entry = out.setdefault(task, PackedTask([], None))
        if fields[1] == "started":
            out[task] = PackedTask([*entry.starts, value], None)  # a new start: an earlier status no longer holds
        elif fields[1] == "exited":
            out[task] = entry._replace(status=value)
    return out


class RunHead(t.NamedTuple):
    """What a listing of runs shows of one: its name, project and log folder, and how many tasks
    each array task runs (run.pack, 1 without packing)."""

    name: str
    project: str
    logs: str
    pack: int = 1


def read_run_head(run_dir: Path) -> RunHead:
    """The name, project and log folder of a run, read from the head of its resolved.json: the
    tasks (tens of MB for a million) are not read. A file of another shape is read whole.

    Raises:
        OperationError: as read_resolved.
    """
    head = b""
    try:
        with open(run_dir / RESOLVED, "rb") as fh:  # to the run's tasks: its pack (sorted keys) comes before them
            while chunk := fh.read(_HEAD_CHUNK):
                head += chunk
                at = head.find(_RUN_KEY)
                if at >= 0 and head.find(_TASKS_KEY, at) >= 0:
                    break
    except OSError:
        head = b""
    at = head.find(_RUN_KEY)
    try:
        data = json.loads(head[:at].rstrip().rstrip(b",") + b"\n}") if at > 0 else None
    except ValueError:
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("name"), str) and isinstance(data.get("project"), str)
            and isinstance(data.get("outputs"), dict) and isinstance(data["outputs"].get("logs"), str)):
        whole = read_resolved(run_dir)  # raises for what is not a job directory
        return RunHead(whole["name"], whole["project"], whole["outputs"]["logs"], pack_size(whole["run"]))
    tasks = head.find(_TASKS_KEY, at)
    pack = _PACK.search(head, at, tasks if tasks > 0 else len(head))
    return RunHead(data["name"], data["project"], data["outputs"]["logs"], int(pack[1]) if pack else 1)


def task_count(run_dir: Path) -> int:
    """The tasks of a compiled run, from the size of its fixed-width tasks/index (0 if unreadable).

    Constant time: a run of a million tasks need not load its resolved.json to say so.
    """
    try:
        return max((run_dir / TASK_INDEX).stat().st_size // (INDEX_WIDTH + 1) - 1, 0)
    except OSError:
        return 0
