"""Submissions: the run's submissions.jsonl, read and appended, and the submissions it records.

Each sbatch call that queued a job (a "chunk": a run past the cluster's MaxArraySize is split
into arrays of at most MaxArraySize - 1 tasks) is one JSON line, appended once the job is
queued. The chunks of one `--submit` or `rerun` share a `submission` key. A line:

    {"job_id": "123", "time": "<ISO-8601 UTC>", "user": .., "host": .., "sbatch": [argv],
     "cwd": <run directory>, "manifest_sha256": .., "git": {"commit": .., "dirty": ..} | null,
     "submission": <key>, "kind": "submit" | "rerun", "offset": <first task of the array>,
     "array": <--array value> | null, "tasks": "0-8", "ntasks": 9, "planned": "0-24",
     "code": {"commit": .., "dirty": .., "snapshot": <sha256>, "repo": <folder>} | null (no code:),
     "image": {"path": .., "size": .., "mtime": <s>, "sha256": ..}, "pack": N (a packed run only)}

Task numbers are the run's own (a chunk's array index plus its `offset`). Lines written
before chunking have only the first keys: each is a whole-run submission of its own. In a
packed chunk, array index i runs `pack` of the chunk's tasks from position i * pack, and its
`offset` is only its first task.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import getpass
import json
import secrets
import socket
import typing as t
from pathlib import Path

from .errors import OperationError
from .jobdir import SUBMISSIONS
from .plan import fill_log_pattern
from .tasklist import expand_spec, format_task_spec


@dataclasses.dataclass
class Chunk:
    """One sbatch call (one line of submissions.jsonl)."""

    job_id: str
    offset: int
    tasks: list[int]  # the run's task numbers
    record: dict[str, t.Any]

    @property
    def pack(self) -> int:
        """Tasks each array task of the chunk runs, one after the other (1: one)."""
        pack = self.record.get("pack")
        return pack if isinstance(pack, int) and pack > 1 else 1

    @functools.cached_property
    def listed(self) -> list[int]:
        """A packed chunk's list of tasks, that its array indices take `pack` at a time: its
        tasks, or for a job submitted by hand the whole run (record "listed")."""
        listed = self.record.get("listed")
        return expand_spec(listed) if isinstance(listed, str) else self.tasks

    @functools.cached_property
    def _positions(self) -> dict[int, int]:
        return {task: i for i, task in enumerate(self.listed)}

    def index(self, task: int) -> int:
        """The array index that runs `task` (one of the chunk's)."""
        return self._positions[task] // self.pack if self.pack > 1 else task - self.offset

    def packed_with(self, index: int) -> list[int]:
        """The tasks array index `index` runs (a packed chunk), in order."""
        return self.listed[index * self.pack:(index + 1) * self.pack]

    @property
    def log(self) -> str | None:
        """The log file of the job as its --output names it (%a for the array index); None without one."""
        for arg in self.record.get("sbatch", []):
            if arg.startswith("--output="):
                return fill_log_pattern(arg[len("--output="):], self.record["job_id"])
        return None


@dataclasses.dataclass
class Submission:
    """The chunks of one `--submit` or `rerun`, in the order they were queued."""

    key: str
    kind: str
    time: str | None
    planned: list[int]
    chunks: list[Chunk]

    @property
    def queued(self) -> list[int]:
        return sorted({task for c in self.chunks for task in c.tasks})

    @property
    def missing(self) -> list[int]:
        queued = set(self.queued)
        return [task for task in self.planned if task not in queued]


def new_key() -> str:
    """A key for a new submission, shared by its chunks: the time and a random part."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def chunk_record(*, job_id: str, sbatch: list[str], run_dir: Path, manifest_sha256: str, git: dict[str, t.Any] | None,
                 key: str, kind: str, offset: int, array: str | None, tasks: t.Sequence[int], planned: t.Sequence[int],
                 code: dict[str, t.Any] | None = None, image: dict[str, t.Any] | None = None, pack: int = 1) -> dict[str, t.Any]:
    """The line of a chunk just queued, stamped with the time, the user and the host."""
    return {
        **({"pack": pack} if pack > 1 else {}),
        "code": code,
        "image": image,
        "job_id": job_id,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "sbatch": sbatch,
        "cwd": str(run_dir.resolve()),
        "manifest_sha256": manifest_sha256,
        "git": git,
        "submission": key,
        "kind": kind,
        "offset": offset,
        "array": array,
        "tasks": format_task_spec(tasks),
        "ntasks": len(tasks),
        "planned": format_task_spec(planned),
    }


def append_record(run_dir: Path, record: dict[str, t.Any]) -> None:
    """Append one line to the run's submissions.jsonl.

    Raises:
        OperationError: it cannot be written (the job is queued all the same: the message says so).
    """
    path = run_dir / SUBMISSIONS
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as e:
        raise OperationError(f"job {record['job_id']} (tasks {record['tasks']}) was queued but cannot be recorded in "
                             f"{path}: {e.strerror or e}") from e


def read_submissions(run: Path) -> list[dict[str, t.Any]]:
    """The lines of the run's submissions.jsonl (none when it has none); a torn line is skipped."""
    path = run / SUBMISSIONS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn line from a crashed writer is not a submission
        if isinstance(record, dict) and isinstance(record.get("job_id"), str):
            out.append(record)
    return out


def group_submissions(records: list[dict[str, t.Any]], ntasks: int) -> list[Submission]:
    """The lines of submissions.jsonl as submissions, in the order each was first queued.

    A line written before chunking (no `submission` key) is a whole-run submission of its own.
    """
    subs: dict[str, Submission] = {}
    whole = list(range(ntasks))
    for r in records:
        recorded = r.get("tasks")
        tasks = expand_spec(recorded) if isinstance(recorded, str) else whole
        key = str(r.get("submission") or f"job-{r['job_id']}")
        planned = r.get("planned")
        if key not in subs:
            subs[key] = Submission(key, str(r.get("kind") or "submit"), r.get("time"),
                                   expand_spec(planned) if isinstance(planned, str) else tasks, [])
        offset = r.get("offset")
        subs[key].chunks.append(Chunk(r["job_id"], offset if isinstance(offset, int) else 0, tasks, r))
    return list(subs.values())


def read_run_submissions(run: Path, ntasks: int) -> list[Submission]:
    """The submissions recorded in the run's submissions.jsonl."""
    return group_submissions(read_submissions(run), ntasks)
