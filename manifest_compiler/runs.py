"""Runs: compiled runs, their submissions and the state of every task.

A run's submissions are those recorded in its submissions.jsonl (`submissions`) and the jobs
submitted by hand from the run directory (`sbatch job.sbatch`), found on the cluster by their
name and work directory. States come from the scheduler (`slurm.Scheduler.task_states`), one
query for every submission shown.

A task's state is that of its latest attempt, over every submission of the run in order;
`NOT_QUEUED` when its latest submission planned it but never queued it (sbatch refused a
later chunk), `NOT_SUBMITTED` when no submission ever named it. Its attempts are the times the job of its
latest submission started it (1 + its requeues); how many submissions queued it is counted
apart, so a task submitted twice is not a task restarted once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing as t
from collections.abc import Iterable
from pathlib import Path

from .errors import OperationError
from .jobdir import CANCELS, PackedTask, find_run, read_pack_record, read_run_head, select_runs, task_count
from .plan import job_name
from .slurm import ACTIVE_STATES, UNKNOWN, Scheduler, TaskState
from .submissions import Chunk, Submission, read_run_submissions
from .tasklist import expand_spec, format_task_spec

# A task whose latest attempt ended so is rerun by `rerun --failed` (as are tasks that never ran).
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
NOT_QUEUED = "NOT_QUEUED"  # planned by its latest submission, never queued (sbatch refused its chunk)
NOT_SUBMITTED = "NOT_SUBMITTED"  # no submission ever named it
BY_HAND = "by hand"  # a job found on the cluster, submitted from the run directory, not in submissions.jsonl


# --- submissions by hand -------------------------------------------------------------------

def add_by_hand(subs: dict[Path, list[Submission]], names: dict[Path, str], *, scheduler: Scheduler) -> None:
    """Add to each run's submissions the jobs submitted by hand from its directory.

    A job is the run's when it has the run's job name and SLURM's work directory (where sbatch
    ran) is the run directory; jobs in submissions.jsonl are left out. Its tasks are the array
    indices SLURM knows of it (its own --array, say); it goes among the recorded submissions in
    the order of the job ids.
    """
    if not subs:
        return
    dirs = {os.path.realpath(run): run for run in subs}
    since = min((run / "resolved.json").stat().st_mtime for run in subs) - 60
    recorded = {c.job_id for ss in subs.values() for sub in ss for c in sub.chunks}
    found: dict[str, tuple[Path, set[int], str]] = {}
    for job in scheduler.jobs_named(sorted(set(names.values())), since):
        run = dirs.get(os.path.realpath(job.workdir)) if job.workdir else None
        if run is None or job.job_id in recorded or not job.job_id.isdigit():
            continue
        found.setdefault(job.job_id, (run, set(), job.submitted))[1].update(0 if index is None else index for index in job.tasks)
    packs: dict[Path, int] = {}
    for job_id, (run, seen, submitted) in sorted(found.items(), key=lambda item: int(item[0])):
        numbers = sorted(seen)
        record: dict[str, t.Any] = {"job_id": job_id}
        if run not in packs:
            try:
                packs[run] = read_run_head(run).pack
            except OperationError:
                packs[run] = 1  # not a job directory mcompile wrote: its jobs are taken as they are
        pack = packs[run]
        if pack > 1:  # by hand, array index i runs the run's tasks from i * pack (job.sbatch's default list)
            ntasks = task_count(run)
            numbers = [task for index in numbers for task in range(index * pack, min((index + 1) * pack, ntasks))]
            record.update(pack=pack, listed=f"0-{ntasks - 1}")
        sub = Submission(f"by-hand-{job_id}", BY_HAND, submitted, numbers, [Chunk(job_id, 0, numbers, record)])
        runs_subs = subs[run]
        after = [i for i, other in enumerate(runs_subs) if other.chunks[0].job_id.isdigit() and int(other.chunks[0].job_id) < int(job_id)]
        runs_subs.insert(after[-1] + 1 if after else 0, sub)


def read_cancels(run: Path) -> list[dict[str, t.Any]]:
    """The lines of the run's cancels.jsonl (none without one); a torn line is skipped."""
    try:
        text = (run / CANCELS).read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("tasks"), str):
            out.append(record)
    return out



# --- task states ------------------------------------------------------------------------------

@dataclasses.dataclass
class TaskRow:
    """The latest attempt of one task of a run."""

    task: int
    state: str
    exit_code: str  # as SLURM prints it, e.g. "3:0"; "" unknown, or not ended yet
    attempts: int  # times the job of its latest submission started it: 1 + its requeues
    job_id: str | None  # that job
    submissions: int = 0  # sbatch calls that queued it (a rerun is one more)
    reason: str = ""  # a pending task's: why squeue says it has not started


def exit_status(code: str) -> int | None:
    """SLURM's `status:signal` as one number: the status, or 128 + signal when a signal ended it."""
    m = re.match(r"^(\d+):(\d+)$", code)
    if not m:
        return None
    status, signal = int(m.group(1)), int(m.group(2))
    return 128 + signal if signal and not status else status


def _by_attempt(states: list[TaskState]) -> dict[tuple[str, int | None], TaskState]:
    return {(s.job_id, s.task): s for s in states}


def chunk_states(chunk: Chunk, known: dict[tuple[str, int | None], TaskState], *, array: bool,
                 run: Path | None = None) -> dict[int, TaskState | None]:
    """Each task of a chunk -> what accounting knows of it (None: nothing). In a packed chunk,
    what the array task running it recorded of it in the run (`packed_state`)."""
    if chunk.pack > 1 and array and run is not None:
        out: dict[int, TaskState | None] = {}
        for index in sorted({chunk.index(task) for task in chunk.tasks}):
            record = read_pack_record(run, chunk.job_id, index)
            slot = known.get((chunk.job_id, index))
            for task in chunk.packed_with(index):
                out[task] = packed_state(slot, record.get(task))
        return out
    return {task: known.get((chunk.job_id, chunk.index(task) if array else None)) for task in chunk.tasks}


def packed_state(slot: TaskState | None, recorded: PackedTask | None) -> TaskState | None:
    """One task of a packed array task: its own exit status once it ended (COMPLETED, or FAILED
    with its status); while it runs, RUNNING; before it starts, PENDING (its array task runs the
    tasks before it) or its array task's state; when its array task ended without its status
    (time limit, cancel, node failure, no restarts left), its array task's state."""
    if slot is None:
        return None
    attempts = len(set(recorded.starts)) if recorded else slot.attempts
    if recorded and recorded.status is not None:
        return dataclasses.replace(slot, state="COMPLETED" if recorded.status == 0 else "FAILED",
                                   exit_code=f"{recorded.status}:0", attempts=max(attempts, 1), reason="")
    if slot.state.split()[0] == "RUNNING":
        return dataclasses.replace(slot, state="RUNNING" if recorded else "PENDING", exit_code="", attempts=attempts,
                                   reason="" if recorded else "an earlier task of its array task is running")
    return dataclasses.replace(slot, attempts=attempts)


def cancelled_tasks(run: Path) -> set[tuple[str, int]]:
    """(job id, task) of every task `mcompile cancel` cancelled in the run (cancels.jsonl)."""
    out: set[tuple[str, int]] = set()
    for record in read_cancels(run):
        for job in record.get("jobs") or []:
            if isinstance(job, dict) and isinstance(job.get("job_id"), str) and isinstance(job.get("tasks"), str):
                out.update((job["job_id"], task) for task in expand_spec(job["tasks"]))
    return out


def task_rows(ntasks: int, subs: list[Submission], states: list[TaskState],
              cancelled: t.AbstractSet[tuple[str, int]] = frozenset(), run: Path | None = None) -> list[TaskRow]:
    """Every task of the run: the state of its latest attempt, how often its latest job started
    it, and how many submissions queued it. A task SLURM no longer knows that `cancelled` names
    (mcompile cancel recorded it) is CANCELLED: SLURM forgets a pending array task cancelled
    before it was split off its array."""
    known = _by_attempt(states)
    array = ntasks > 1
    rows = [TaskRow(task, NOT_SUBMITTED, "", 0, None) for task in range(ntasks)]
    for sub in subs:
        for chunk in sub.chunks:
            for task, s in chunk_states(chunk, known, array=array, run=run).items():
                if not 0 <= task < ntasks:
                    continue
                row = rows[task]
                row.job_id = chunk.job_id
                row.state, row.exit_code, row.attempts = (s.state, s.exit_code, s.attempts) if s else (UNKNOWN, "", 0)
                if s is None and (chunk.job_id, task) in cancelled:
                    row.state = "CANCELLED"
                row.reason = s.reason if s else ""
                row.submissions += 1
        for task in sub.missing:
            if 0 <= task < ntasks:
                row = rows[task]
                row.state, row.exit_code, row.attempts, row.job_id, row.reason = NOT_QUEUED, "", 0, None, ""
    return rows


def is_failed(state: str) -> bool:
    """Whether `rerun --failed` takes a task whose latest attempt is in this state."""
    return state.split()[0] in FAILED_STATES or state in (NOT_QUEUED, NOT_SUBMITTED)


def run_task_rows(run: Path, name: str, *, scheduler: Scheduler) -> tuple[list[TaskRow], list[Submission], str]:
    """The task rows of one run (whose jobs are named `name`), its submissions (by hand too),
    and where the states came from (one query)."""
    ntasks = task_count(run)
    found = {run: read_run_submissions(run, ntasks)}
    add_by_hand(found, {run: name}, scheduler=scheduler)
    subs = found[run]
    states, source = scheduler.task_states([c.job_id for s in subs for c in s.chunks])
    return task_rows(ntasks, subs, states, cancelled_tasks(run), run), subs, source


# --- the runs command ---------------------------------------------------------------------

@dataclasses.dataclass
class RunsListing:
    """What `mcompile runs` shows: runs newest first, each with its submissions and task states."""

    runs_dir: str
    runs_dir_exists: bool
    one: bool  # one RUN was named: its tasks are shown too
    runs: list[dict[str, t.Any]]


def describe_runs(runs_dir: str, spec: str | None = None, *, scheduler: Scheduler) -> RunsListing:
    """Runs newest first (all, or the one RUN names), with their submissions and task states.

    Raises:
        UsageError: RUN names no compiled run.
    """
    runs = [find_run(runs_dir, spec)] if spec else select_runs(runs_dir, None)
    heads = {run: read_run_head(run) for run in runs}  # not the tasks: a run's size is its index's
    counts = {run: task_count(run) for run in runs}
    subs = {run: read_run_submissions(run, counts[run]) for run in runs}
    add_by_hand(subs, {run: job_name(heads[run].project, heads[run].name) for run in runs}, scheduler=scheduler)
    staging = sorted({str(c.record["staging_job"]) for ss in subs.values() for s in ss for c in s.chunks if c.record.get("staging_job")})
    states, source = scheduler.task_states([c.job_id for ss in subs.values() for s in ss for c in s.chunks] + staging)
    known = _by_attempt(states)
    out = []
    for run in runs:
        ntasks = counts[run]
        # every task's row only where it is shown or counted: one RUN, or a run that was submitted
        rows = task_rows(ntasks, subs[run], states, cancelled_tasks(run), run) if spec or subs[run] else []
        entry: dict[str, t.Any] = {
            "run": str(run),
            "name": heads[run].name,
            "hash": run.name,
            "tasks": ntasks,
            "logs": heads[run].logs,
            "task_states": _count(r.state for r in rows) if subs[run] else {},
            "submissions": [],
            "task_rows": rows,
            "cancels": [{"time": c.get("time"), "tasks": c["tasks"], "scancel": c.get("scancel")} for c in read_cancels(run)],
        }
        if spec:
            _add_efficiency(entry, run, subs[run], scheduler)
        for sub in subs[run]:
            attempts: list[tuple[int, str, TaskState | None]] = []
            for chunk in sub.chunks:
                attempts.extend((task, chunk.job_id, s) for task, s in chunk_states(chunk, known, array=ntasks > 1, run=run).items())
            states_here = [s.state if s else UNKNOWN for _, _, s in attempts]
            entry["submissions"].append({
                "submission": sub.key,
                "kind": sub.kind,
                "job_id": sub.chunks[0].job_id,
                "jobs": [{"job_id": c.job_id, "offset": c.offset, "tasks": format_task_spec(c.tasks), "pack": c.pack} for c in sub.chunks],
                "time": sub.time,
                "tasks": format_task_spec(sub.queued),
                "planned": format_task_spec(sub.planned),
                "not_queued": format_task_spec(sub.missing),
                "states": _count(st for st in states_here if st != UNKNOWN),
                "state_source": source,
                "failed": [{"job_id": job, "task": task, "state": s.state, "exit_code": s.exit_code}
                           for task, job, s in attempts
                           if s and s.state.split()[0] != "COMPLETED" and s.state.split()[0] not in ACTIVE_STATES],
                "log": sub.chunks[0].log,
                "code": sub.chunks[0].record.get("code"),  # None: no code: (or recorded before it existed)
                "image": sub.chunks[0].record.get("image"),
                "staging": _staging(sub, known),
            })
        out.append(entry)
    return RunsListing(runs_dir, os.path.isdir(runs_dir), bool(spec), out)


def _staging(sub: Submission, known: dict[tuple[str, int | None], TaskState]) -> dict[str, t.Any] | None:
    """The staging job a submission's arrays depend on (data.build: job), and its state; None without one."""
    job = sub.chunks[0].record.get("staging_job")
    if not job:
        return None
    s = known.get((str(job), None))
    return {"job_id": str(job), "state": s.state if s else UNKNOWN, "exit_code": s.exit_code if s else ""}


def _add_efficiency(entry: dict[str, t.Any], run: Path, subs: list[Submission], scheduler: Scheduler) -> None:
    """`runs RUN`: the figures of each finished task from accounting, the run's summary and advice;
    `efficiency_available` False where accounting cannot be asked."""
    from .efficiency import summarise, task_efficiency
    from .jobdir import read_resolved

    usage = scheduler.usage([c.job_id for s in subs for c in s.chunks]) if subs else []
    entry["efficiency_available"] = usage is not None
    figures = task_efficiency([(row.task, row.job_id) for row in entry["task_rows"]], subs, usage or [])
    entry["task_efficiency"] = figures
    resources: dict[str, t.Any] = dict(read_resolved(run)["resources"]) if figures else {}
    entry["efficiency"] = summarise(figures.values(), mem_text=resources.get("mem"), time_text=resources.get("time"),
                                    cpus_text=str(resources.get("cpus_per_task", "")) or None)


def _count(states: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return counts
