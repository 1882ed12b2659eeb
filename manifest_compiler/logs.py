"""Logs: where a run's tasks logged, read from the run's records, split into attempts.

A task's log is found from submissions.jsonl: the first array of a submission logs to its
--output (`<logs>/<name>_<job>_<index>.out`); a later array of a run past MaxArraySize, and
every array of a packed run, logs each task itself under its run-wide number
(`<logs>/<name>_<job>_<task>.out`), and SLURM's own messages for the array go to
`<logs>/<name>_<job>_slurm.out`. A job submitted by hand
without --output logs to `slurm-<job>_<index>.out` in the run directory. Every submission
(a rerun too) is a new job, so a new file; a requeued task appends to the same file, and
job.sbatch writes a line where each attempt starts (ATTEMPT_LINE) that the log is split at.

Nothing here prints: the verbs return text, or for `--follow` an iterator of text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
import typing as t
from pathlib import Path

from .errors import OperationError, UsageError
from .jobdir import JOB_SCRIPT, find_run, read_run_head, task_count
from .plan import job_name, log_file, tasks_log_themselves
from .progress import Progress
from .runs import FAILED_STATES, TaskRow, run_task_rows
from .slurm import ACTIVE_STATES, Scheduler
from .stage import expand
from .submissions import Chunk, Submission

# job.sbatch.j2 writes it as each attempt starts: "mcompile: attempt 2 of task 0 (job 12_0, SLURM job 12) started"
ATTEMPT_LINE = re.compile(r"^mcompile: attempt (\d+) of task (\d+) \(job (\S+), SLURM job (\d+)\) started$")
TAIL_LINES = 10  # lines of each failed task's latest attempt shown without --task
FOLLOW_POLL = 1.0  # seconds between looks at a followed log and at the task's state


@dataclasses.dataclass(frozen=True)
class LogFile:
    """The log of one task in one job (one submission's chunk)."""

    job_id: str
    kind: str  # of the submission: submit, rerun, by hand
    path: Path
    slurm_path: Path | None  # SLURM's own messages of a later array (shared by its tasks), if apart


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One attempt of a task in a log: its number in the whole history of the task (1, 2, ...),
    the job that ran it and the restart it was (0: its job's first start)."""

    number: int
    job_id: str
    restart: int | None  # None: before any attempt line (a run compiled before they were written)
    path: Path
    text: str
    slurm_path: Path | None = None  # SLURM's own messages of its array (a later chunk), apart


def script_output(run: Path) -> str | None:
    """The job.sbatch's own `#SBATCH --output=` pattern (a log folder without variables), else None."""
    with contextlib.suppress(OSError), open(run / JOB_SCRIPT, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("#SBATCH --output="):
                return line.strip()[len("#SBATCH --output="):].replace("%%", "%")
            if not line.startswith("#"):
                break
    return None  # no job.sbatch, or its --output is set at submission


def chunk_log(run: Path, chunk: Chunk, task: int, name: str, *, array: bool, by_hand_logs: str | None = None) -> LogFile:
    """Where one task of one chunk logged. A job submitted by hand has no --output of its own:
    job.sbatch's #SBATCH --output when it has one, else the task logs itself into the log folder
    (`by_hand_logs`, expanded here), else SLURM's default name in the run directory."""
    kind = str(chunk.record.get("kind") or ("by hand" if "sbatch" not in chunk.record else "submit"))
    index = chunk.index(task) if array else None
    pattern = chunk.log
    if pattern is None:
        own = script_output(run)
        if own is not None:
            pattern = own.replace("%A", chunk.job_id).replace("%j", chunk.job_id)
        elif by_hand_logs is not None:
            return LogFile(chunk.job_id, kind, Path(by_hand_logs) / log_file(name, chunk.job_id, str(task)), None)
        else:
            file = f"slurm-{chunk.job_id}_{index}.out" if index is not None else f"slurm-{chunk.job_id}.out"
            return LogFile(chunk.job_id, kind, run / file, None)
    path = Path(pattern if os.path.isabs(pattern) else run / pattern)
    if tasks_log_themselves(chunk.offset, chunk.pack):
        return LogFile(chunk.job_id, kind, path.parent / log_file(name, chunk.job_id, str(task)), path)
    return LogFile(chunk.job_id, kind, Path(str(path).replace("%a", str(index if index is not None else 0))), None)


def task_logs(run: Path, task: int, subs: list[Submission], name: str) -> list[LogFile]:
    """Every log of a task, oldest submission first."""
    array = task_count(run) > 1
    try:
        logs: str | None = expand(read_run_head(run).logs, cwd=run)
    except OperationError:
        logs = None  # a variable of the compute node's
    return [chunk_log(run, chunk, task, name, array=array, by_hand_logs=logs) for sub in subs for chunk in sub.chunks if task in chunk.tasks]


def split_attempts(text: str, *, task: int) -> list[tuple[int | None, str, str]]:
    """A log as (restart, SLURM job id, text) per attempt of `task`, split at its attempt lines.
    Lines before the first attempt line (SLURM's, or an older run's) are an attempt of their own."""
    parts: list[tuple[int | None, str, list[str]]] = [(None, "", [])]
    for line in text.splitlines(keepends=True):
        m = ATTEMPT_LINE.match(line.rstrip("\n"))
        if m and int(m.group(2)) == task:
            parts.append((int(m.group(1)) - 1, m.group(4), [line]))
        else:
            parts[-1][2].append(line)
    return [(restart, job, "".join(lines)) for restart, job, lines in parts if restart is not None or "".join(lines).strip()]


def attempts(run: Path, task: int, subs: list[Submission], name: str, sizes: dict[Path, int] | None = None) -> list[Attempt]:
    """Every attempt of a task that left a log, numbered across its submissions; `sizes` learns
    how many bytes of each log were read."""
    out: list[Attempt] = []
    for log in task_logs(run, task, subs, name):
        try:
            data = log.path.read_bytes()
        except OSError:
            continue
        if sizes is not None:
            sizes[log.path] = len(data)
        for restart, _, body in split_attempts(data.decode(errors="replace"), task=task):
            out.append(Attempt(len(out) + 1, log.job_id, restart, log.path, body, log.slurm_path))
    return out


def _header(a: Attempt, total: int) -> str:
    restart = "" if a.restart is None else f", restart {a.restart}" if a.restart else ", first start"
    apart = f" (SLURM's own messages: {a.slurm_path})" if a.slurm_path else ""
    return f"==> attempt {a.number} of {total} (job {a.job_id}{restart}): {a.path}{apart} <==\n"


@dataclasses.dataclass
class Logs:
    """What `mcompile logs` shows, and for --follow what to tail."""

    run: Path
    text: str
    follow: t.Iterator[str] | None = None


def _context(runs_dir: str, spec: str, scheduler: Scheduler) -> tuple[Path, str, list[TaskRow], list[Submission]]:
    run = find_run(runs_dir, spec)
    head = read_run_head(run)
    rows, subs, _ = run_task_rows(run, job_name(head.project, head.name), scheduler=scheduler)
    return run, head.name, rows, subs


def _not_started(row: TaskRow) -> str:
    why = f" ({row.reason})" if row.reason else ""
    return f"task {row.task}: {row.state}{why}, job {row.job_id}: not started yet, no log\n"


def show_logs(runs_dir: str, spec: str, *, task: int | None, attempt: int | None, follow: bool,
              scheduler: Scheduler, waiting: Progress | None = None) -> Logs:
    """The log of one task (all its attempts, or attempt K), or without a task the last lines of
    every failed task and a line for each task that has not started.

    Raises:
        UsageError: no such run, task or attempt; --follow or --attempt without --task.
    """
    run, name, rows, subs = _context(runs_dir, spec, scheduler)
    if task is None:
        if follow or attempt is not None:
            raise UsageError("mcompile logs: --follow and --attempt need --task N")
        return Logs(run, _failed_summary(run, name, rows, subs))
    if not 0 <= task < len(rows):
        raise UsageError(f"mcompile logs: task {task} does not exist: {run} has {len(rows)} tasks (0-{len(rows) - 1})")
    row = rows[task]
    sizes: dict[Path, int] = {}
    found = attempts(run, task, subs, name, sizes)
    lines: list[str] = []
    if attempt is not None:
        chosen = [a for a in found if a.number == attempt]
        if not chosen:
            raise UsageError(f"mcompile logs: task {task} has {len(found)} attempt{'s' if len(found) != 1 else ''} with a log, "
                             f"not {attempt}")
        found_shown = chosen
    else:
        found_shown = found
    for a in found_shown:
        lines.append(_header(a, len(found)))
        lines.append(a.text if a.text.endswith("\n") or not a.text else a.text + "\n")
    if row.job_id is not None and row.state.split()[0] in ("PENDING", "REQUEUED") or not found and row.state == "UNKNOWN":
        lines.append(_not_started(row))  # queued again (a rerun, a requeue): its next attempt has not started
    elif not found:
        if row.job_id is None:
            lines.append(f"task {task}: {row.state}: never queued, no log\n")
        else:
            logs = task_logs(run, task, subs, name)
            lines.append(f"task {task}: {row.state}: no log at {logs[-1].path if logs else '?'}\n")
    follower = None
    if follow:
        logs = task_logs(run, task, subs, name)
        if logs and row.state.split()[0] in ACTIVE_STATES:
            follower = _follow(logs[-1].path, sizes.get(logs[-1].path, 0), run, task, scheduler, waiting)
    return Logs(run, "".join(lines), follower)


def _failed_summary(run: Path, name: str, rows: list[TaskRow], subs: list[Submission]) -> str:
    out: list[str] = []
    failed = [r for r in rows if r.state.split()[0] in FAILED_STATES]
    for row in failed:
        found = attempts(run, row.task, subs, name)
        if not found:
            out.append(f"task {row.task}: {row.state}, exit code {row.exit_code or '?'}: no log\n")
            continue
        last = found[-1]
        tail = last.text.splitlines()[-TAIL_LINES:]
        out.append(f"task {row.task}: {row.state}, exit code {row.exit_code or '?'}; last {len(tail)} lines of "
                   f"attempt {last.number} (job {last.job_id}): {last.path}\n")
        out.extend(f"  {line}\n" for line in tail)
    for row in rows:
        if row.state.split()[0] in ("PENDING", "REQUEUED"):
            out.append(_not_started(row))
    if not out:
        out.append("no failed tasks, and every queued task has started (logs --task N shows one)\n")
    return "".join(out)


def _follow(path: Path, offset: int, run: Path, task: int, scheduler: Scheduler,
            waiting: Progress | None = None) -> t.Iterator[str]:
    """What is added to a task's log past `offset` until the task ends (then the rest of it).
    `waiting` hears what the follow waits for while the task has not started (state and reason,
    at each change), and when it starts."""
    head = read_run_head(run)
    said = ""

    def more() -> str:
        nonlocal offset
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return ""
        offset += len(data)
        return data.decode(errors="replace")

    while True:
        text = more()
        if text:
            yield text
        rows, _, _ = run_task_rows(run, job_name(head.project, head.name), scheduler=scheduler)
        state = rows[task].state.split()[0]
        if waiting is not None:
            now = (f"waiting for task {task} to start: {state}" + (f" ({rows[task].reason})" if rows[task].reason else "")
                   if state in ("PENDING", "REQUEUED") else f"task {task} is {state}" if said else "")
            if now != said and now:
                waiting(now)
            said = now
        if state not in ACTIVE_STATES:
            time.sleep(FOLLOW_POLL)  # the last lines may land just after the state changed
            text = more()
            if text:
                yield text
            yield f"==> task {task}: {rows[task].state}, exit code {rows[task].exit_code or '?'} <==\n"
            return
        time.sleep(FOLLOW_POLL)
