"""Task lists: the grammar of `--tasks 3,7-9`, of sbatch's `--array` and of the task lists
submissions.jsonl records.

Task numbers are the run's own (0 .. ntasks-1). `format_task_spec` writes the form sbatch
--array takes; `expand_spec` also reads SLURM's own index lists (`0-24:2`, `[1-4%2]`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import UsageError

_SPEC_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")
_SLURM_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def parse_task_spec(spec: str, ntasks: int, *, what: str = "--tasks") -> list[int]:
    """`3,7-9` -> [3, 7, 8, 9] (sorted, without duplicates), every number a task of the run.

    Raises:
        UsageError: not a list of numbers and ranges, or a number outside 0..ntasks-1.
    """
    tasks: set[int] = set()
    for item in spec.split(","):
        m = _SPEC_ITEM.match(item.strip())
        if not m:
            raise UsageError(f"mcompile: {what} {spec!r}: {item.strip()!r} is not a task number or range (e.g. 3,7-9)")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        if last < first:
            raise UsageError(f"mcompile: {what} {spec!r}: the range {item.strip()} runs backwards")
        if last >= ntasks:
            have = "task 0" if ntasks == 1 else f"tasks 0-{ntasks - 1}"
            raise UsageError(f"mcompile: {what} {spec!r}: there is no task {max(first, ntasks)}; this run has {have}")
        tasks.update(range(first, last + 1))
    return sorted(tasks)


def format_task_spec(tasks: Iterable[int]) -> str:
    """[3, 7, 8, 9] -> `3,7-9` (the form sbatch --array takes); "" for none."""
    parts: list[str] = []
    ordered = sorted(set(tasks))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def expand_spec(spec: str) -> list[int]:
    """A recorded task list or a SLURM index list (`0-8`, `3,7-9`, `0-24:2`, `[1-4%2]`)."""
    out: list[int] = []
    for item in spec.strip("[]").split("%")[0].split(","):
        m = _SLURM_ITEM.match(item.strip())
        if m:
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else first
            out.extend(range(first, last + 1, int(m.group(3) or 1)))
    return out
