"""Runs: compiled runs, their submissions and the SLURM state of every task.

A submission (`--submit` or `rerun`) is one or more sbatch calls ("chunks": a run past
the cluster's MaxArraySize is split into arrays of at most MaxArraySize - 1 tasks), one
line each in submissions.jsonl, sharing a `submission` key. A job submitted by hand from
the run directory (`sbatch job.sbatch`) is found on the cluster by its name and work
directory. Task numbers here are the run's own (a chunk's array index plus its `offset`).

States come from one accounting query for all submissions shown: `sacct --duplicates`
when accounting answers (so a requeued task shows each start); otherwise the jobcomp file
(`JobCompType=jobcomp/filetxt`). `squeue -t all` is the live view and wins where it knows a
task (queued and running tasks, finished ones the record lacks yet, restart counts).

A task's state is that of its latest attempt, over every submission of the run in order;
`NOT_QUEUED` when its latest submission planned it but never queued it (sbatch refused a
later chunk), `NOT_SUBMITTED` when no submission ever named it. Its attempts are the times the job of its
latest submission started it (1 + its requeues); how many submissions queued it is counted
apart, so a task submitted twice is not a task restarted once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
import time
import typing as t
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError
from .jobdir import read_resolved, select_runs, task_count
from .plan import fill_log_pattern, job_name


@dataclasses.dataclass
class TaskState:
    """What accounting knows of one array index of one job (all its attempts)."""

    job_id: str  # the array's job id
    task: int | None  # the raw array index; None: a single job
    state: str  # of the latest attempt
    exit_code: str = ""  # of the latest attempt, once it ended ("" while queued or running)
    attempts: int = 1  # times this job started the task: 1 + its requeues


ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"})
# A task whose latest attempt ended so is rerun by `rerun --failed` (as are tasks that never ran).
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
NOT_QUEUED = "NOT_QUEUED"  # planned by its latest submission, never queued (sbatch refused its chunk)
NOT_SUBMITTED = "NOT_SUBMITTED"  # no submission ever named it
UNKNOWN = "UNKNOWN"  # queued, but neither accounting nor squeue knows it (any more)
# squeue shows a pending time as "start"; a requeued task's earlier start is in the record already
_NOT_STARTED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
_NO_ID = "4294967294"  # SLURM's NO_VAL for a job that is not an array task


# --- task lists ---------------------------------------------------------------------------

_SPEC_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


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


def _expand_spec(spec: str) -> list[int]:
    """A recorded task list or a SLURM index list (`0-8`, `3,7-9`, `0-24:2`, `[1-4%2]`)."""
    out: list[int] = []
    for item in spec.strip("[]").split("%")[0].split(","):
        m = re.match(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", item.strip())
        if m:
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else first
            out.extend(range(first, last + 1, int(m.group(3) or 1)))
    return out


# --- the cluster ----------------------------------------------------------------------------

def run_quietly(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    """Run a SLURM command; None when it cannot start or does not answer within 60 s."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=1)
def slurm_config() -> dict[str, str] | None:
    """`scontrol show config` as a dict; None when SLURM cannot be asked."""
    proc = run_quietly(["scontrol", "show", "config"])
    if proc is None or proc.returncode != 0:
        return None
    return dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", proc.stdout, re.M))


_TASK_ID = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]*\]))?$")


def _parse_id(raw: str) -> tuple[str, list[int | None]]:
    """`123_4` -> (123, [4]); `123_[5-7%1]` (a pending range) -> (123, [5, 6, 7]); `123` -> (123, [None])."""
    m = _TASK_ID.match(raw)
    if not m:
        return raw, [None]
    job, task = m.group(1), m.group(2)
    if task is None:
        return job, [None]
    if task.startswith("["):
        return job, list(_expand_spec(task))
    return job, [int(task)]


def _started(start: str) -> bool:
    return start not in ("", "Unknown", "None", "N/A", "0")


def _ended_code(state: str, code: str) -> str:
    """An exit code only for an attempt that ended: SLURM prints 0:0 for a running or pending one."""
    return "" if state.split()[0] in ACTIVE_STATES else code


def _from_sacct(job_ids: list[str]) -> list[TaskState] | None:
    # --duplicates: every attempt of a requeued task (one row each), oldest first
    proc = run_quietly(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode,Start"])
    if proc is None or proc.returncode != 0:
        return None
    merged: dict[tuple[str, int | None], TaskState] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 4:
            continue
        job, tasks = _parse_id(parts[0])
        state = parts[1].split()[0] if parts[1] else UNKNOWN
        started = 1 if _started(parts[3]) and state != "PENDING" else 0
        for task in tasks:
            old = merged.get((job, task))
            merged[(job, task)] = TaskState(job, task, state, _ended_code(state, parts[2]), started + (old.attempts if old else 0))
    return list(merged.values())


# squeue -O: the live state of every task still known to the controller (MinJobAge after it
# ended), with the job's restart count (its requeues) and the raw wait status of its end.
_SQUEUE_FIELDS = "JobArrayID:|,State:|,StartTime:|,Restartcnt:|,exit_code:|"


def _wait_status(raw: str) -> str:
    """squeue's raw wait status (768, 9) as SLURM's `status:signal` (3:0, 0:9)."""
    if not raw.isdigit():
        return ""
    value = int(raw)
    return f"{value >> 8}:{value & 0x7F}"


def _from_squeue(job_ids: list[str]) -> list[TaskState]:
    proc = run_quietly(["squeue", "-h", "-t", "all", "-r", "-j", ",".join(job_ids), "-O", _SQUEUE_FIELDS])
    out: list[TaskState] = []
    if proc is not None and proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 5:
                continue
            job, tasks = _parse_id(parts[0])
            state = parts[1] or UNKNOWN
            started = 1 if _started(parts[2]) and state not in _NOT_STARTED else 0
            restarts = int(parts[3]) if parts[3].isdigit() else 0
            code = _ended_code(state, _wait_status(parts[4]))
            out.extend(TaskState(job, task, state, code, restarts + started) for task in tasks)
    return out


def _jobcomp_file() -> Path | None:
    conf = slurm_config()
    if conf and conf.get("JobCompType") == "jobcomp/filetxt" and conf.get("JobCompLoc"):
        return Path(conf["JobCompLoc"])
    return None


def _from_jobcomp(job_ids: list[str]) -> list[TaskState]:
    """The jobcomp file: a line when an attempt ends, oldest first.

    An attempt that is requeued as it ends (at its time limit, say) writes two lines with the
    same StartTime: its end (`JobState=TIMEOUT`) and then `JobState=PENDING`, the state the
    requeue left it in. Attempts are told apart by their StartTime, and PENDING there means
    REQUEUED (as sacct calls such an attempt).
    """
    path = _jobcomp_file()
    if path is None or not path.is_file():
        return []
    wanted = set(job_ids)
    starts: dict[tuple[str, int | None], set[str]] = {}
    latest: dict[tuple[str, int | None], tuple[str, str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        array_job = fields.get("ArrayJobId") or ""
        job = array_job if array_job not in ("", "0", _NO_ID) else fields.get("JobId", "")
        if job not in wanted:
            continue
        raw = fields.get("ArrayTaskId", "")
        key = (job, int(raw) if raw.isdigit() and raw != _NO_ID else None)
        started = starts.setdefault(key, set())
        if _started(fields.get("StartTime", "")):
            started.add(fields["StartTime"])
        state = fields.get("JobState", UNKNOWN)
        state = "REQUEUED" if state == "PENDING" else state
        latest[key] = (state, _ended_code(state, fields.get("ExitCode", "")))
    return [TaskState(job, task, *latest[(job, task)], len(starts[(job, task)])) for job, task in latest]


def query_states(job_ids: list[str]) -> tuple[list[TaskState], str]:
    """States of every task of these jobs (one accounting query for all), and where they came from.

    A task's attempts are the times its job started it: 1 + its requeues.
    """
    if not job_ids:
        return [], "none"
    # The record (sacct, else the jobcomp file) keeps every attempt, also after the controller
    # forgot the job. squeue is the live view and wins wherever it knows the task: the record
    # learns of tasks and ends a moment late (slurmdbd) or only at the end of an attempt
    # (jobcomp); squeue's restart count gives the attempts of a task still queued or running.
    accounted = _from_sacct(job_ids)
    source = "sacct" if accounted is not None else "squeue+jobcomp"
    merged: dict[tuple[str, int | None], TaskState] = {
        (s.job_id, s.task): s for s in (accounted if accounted is not None else _from_jobcomp(job_ids))
    }
    for live in _from_squeue(job_ids):
        key = (live.job_id, live.task)
        old = merged.get(key)
        merged[key] = TaskState(live.job_id, live.task, live.state, live.exit_code, max(live.attempts, old.attempts if old else 0))
    return list(merged.values()), source


# --- submissions --------------------------------------------------------------------------

@dataclasses.dataclass
class Chunk:
    """One sbatch call (one line of submissions.jsonl)."""

    job_id: str
    offset: int
    tasks: list[int]  # the run's task numbers
    record: dict[str, t.Any]


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


def read_submissions(run: Path) -> list[dict[str, t.Any]]:
    path = run / "submissions.jsonl"
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
        tasks = _expand_spec(recorded) if isinstance(recorded, str) else whole
        key = str(r.get("submission") or f"job-{r['job_id']}")
        planned = r.get("planned")
        if key not in subs:
            subs[key] = Submission(key, str(r.get("kind") or "submit"), r.get("time"),
                                   _expand_spec(planned) if isinstance(planned, str) else tasks, [])
        offset = r.get("offset")
        subs[key].chunks.append(Chunk(r["job_id"], offset if isinstance(offset, int) else 0, tasks, r))
    return list(subs.values())


# --- submissions by hand -------------------------------------------------------------------

BY_HAND = "by hand"  # a job found on the cluster, submitted from the run directory, not in submissions.jsonl


def _cluster_jobs(names: list[str], since: float) -> list[tuple[str, str, str]]:
    """Jobs of these names known to SLURM since `since`: (raw id, work dir, submit time) each.

    squeue for the jobs the controller still knows, sacct (with slurmdbd) else the jobcomp
    file for the others; a job may be listed more than once.
    """
    found: list[tuple[str, str, str]] = []
    proc = run_quietly(["squeue", "-h", "-t", "all", "-r", "-n", ",".join(names), "-O", "JobArrayID:|,WorkDir:|,SubmitTime:|"])
    if proc is not None and proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.rstrip("|").split("|")
            if len(parts) >= 3:
                found.append((parts[0].strip(), "|".join(parts[1:-1]).strip(), parts[-1].strip()))
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))
    proc = run_quietly(["sacct", "-n", "-P", "-X", "-S", start, "--name", ",".join(names), "-o", "JobID,WorkDir,Submit"])
    if proc is not None and proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3:
                found.append((parts[0], "|".join(parts[1:-1]), parts[-1]))
        return found
    path = _jobcomp_file()
    if path is not None and path.is_file():
        wanted = set(names)
        for line in path.read_text(errors="replace").splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("Name") not in wanted:
                continue
            array_job, task = fields.get("ArrayJobId") or "", fields.get("ArrayTaskId") or ""
            raw = f"{array_job}_{task}" if array_job not in ("", "0", _NO_ID) and task.isdigit() and task != _NO_ID \
                else fields.get("JobId", "")
            found.append((raw, fields.get("WorkDir", ""), fields.get("SubmitTime", "")))
    return found


def add_by_hand(subs: dict[Path, list[Submission]], names: dict[Path, str]) -> None:
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
    for raw, workdir, submitted in _cluster_jobs(sorted(set(names.values())), since):
        run = dirs.get(os.path.realpath(workdir)) if workdir else None
        job, indices = _parse_id(raw)
        if run is None or job in recorded or not job.isdigit():
            continue
        found.setdefault(job, (run, set(), submitted))[1].update(0 if index is None else index for index in indices)
    for job, (run, seen, submitted) in sorted(found.items(), key=lambda item: int(item[0])):
        numbers = sorted(seen)
        sub = Submission(f"by-hand-{job}", BY_HAND, submitted, numbers, [Chunk(job, 0, numbers, {"job_id": job})])
        runs_subs = subs[run]
        after = [i for i, other in enumerate(runs_subs) if other.chunks[0].job_id.isdigit() and int(other.chunks[0].job_id) < int(job)]
        runs_subs.insert(after[-1] + 1 if after else 0, sub)


@dataclasses.dataclass
class TaskRow:
    """The latest attempt of one task of a run."""

    task: int
    state: str
    exit_code: str  # as SLURM prints it, e.g. "3:0"; "" unknown, or not ended yet
    attempts: int  # times the job of its latest submission started it: 1 + its requeues
    job_id: str | None  # that job
    submissions: int = 0  # sbatch calls that queued it (a rerun is one more)


def exit_status(code: str) -> int | None:
    """SLURM's `status:signal` as one number: the status, or 128 + signal when a signal ended it."""
    m = re.match(r"^(\d+):(\d+)$", code)
    if not m:
        return None
    status, signal = int(m.group(1)), int(m.group(2))
    return 128 + signal if signal and not status else status


def _by_attempt(states: list[TaskState]) -> dict[tuple[str, int | None], TaskState]:
    return {(s.job_id, s.task): s for s in states}


def chunk_states(chunk: Chunk, known: dict[tuple[str, int | None], TaskState], *, array: bool) -> dict[int, TaskState | None]:
    """Each task of a chunk -> what accounting knows of it (None: nothing)."""
    out: dict[int, TaskState | None] = {}
    for task in chunk.tasks:
        out[task] = known.get((chunk.job_id, task - chunk.offset if array else None))
    return out


def task_rows(ntasks: int, subs: list[Submission], states: list[TaskState]) -> list[TaskRow]:
    """Every task of the run: the state of its latest attempt, how often its latest job started
    it, and how many submissions queued it."""
    known = _by_attempt(states)
    array = ntasks > 1
    rows = [TaskRow(task, NOT_SUBMITTED, "", 0, None) for task in range(ntasks)]
    for sub in subs:
        for chunk in sub.chunks:
            for task, s in chunk_states(chunk, known, array=array).items():
                if not 0 <= task < ntasks:
                    continue
                row = rows[task]
                row.job_id = chunk.job_id
                row.state, row.exit_code, row.attempts = (s.state, s.exit_code, s.attempts) if s else (UNKNOWN, "", 0)
                row.submissions += 1
        for task in sub.missing:
            if 0 <= task < ntasks:
                row = rows[task]
                row.state, row.exit_code, row.attempts, row.job_id = NOT_QUEUED, "", 0, None
    return rows


def is_failed(state: str) -> bool:
    """Whether `rerun --failed` takes a task whose latest attempt is in this state."""
    return state.split()[0] in FAILED_STATES or state in (NOT_QUEUED, NOT_SUBMITTED)


# --- the runs command ---------------------------------------------------------------------

def find_run(runs_dir: str, spec: str) -> Path:
    """The run a RUN argument names (`NAME`: its newest run).

    Raises:
        UsageError: there is no such run.
    """
    runs = select_runs(runs_dir, spec)
    if not runs:
        raise UsageError(f"mcompile: no compiled run {spec!r} in {runs_dir} (a run directory, or NAME/HASH12 or NAME under --runs)")
    return runs[0]


def run_task_rows(run: Path, name: str) -> tuple[list[TaskRow], list[Submission], str]:
    """The task rows of one run (whose jobs are named `name`), its submissions (by hand too),
    and where the states came from (one query)."""
    ntasks = task_count(run)
    subs = group_submissions(read_submissions(run), ntasks)
    found = {run: subs}
    add_by_hand(found, {run: name})
    subs = found[run]
    states, source = query_states([c.job_id for s in subs for c in s.chunks])
    return task_rows(ntasks, subs, states), subs, source


def describe_runs(runs_dir: str, spec: str | None = None) -> list[dict[str, t.Any]]:
    """Runs newest first (all, or the one RUN names), with their submissions and task states."""
    runs = [find_run(runs_dir, spec)] if spec else select_runs(runs_dir, None)
    resolved = {run: read_resolved(run) for run in runs}
    subs = {run: group_submissions(read_submissions(run), len(resolved[run]["run"]["tasks"])) for run in runs}
    add_by_hand(subs, {run: job_name(resolved[run]) for run in runs})
    states, source = query_states([c.job_id for ss in subs.values() for s in ss for c in s.chunks])
    known = _by_attempt(states)
    out = []
    for run in runs:
        ntasks = len(resolved[run]["run"]["tasks"])
        rows = task_rows(ntasks, subs[run], states)
        entry: dict[str, t.Any] = {
            "run": str(run),
            "name": resolved[run]["name"],
            "hash": run.name,
            "tasks": ntasks,
            "logs": resolved[run]["outputs"]["logs"],
            "task_states": _count(r.state for r in rows) if subs[run] else {},
            "submissions": [],
            "task_rows": rows,
        }
        for sub in subs[run]:
            attempts: list[tuple[int, str, TaskState | None]] = []
            for chunk in sub.chunks:
                attempts.extend((task, chunk.job_id, s) for task, s in chunk_states(chunk, known, array=ntasks > 1).items())
            states_here = [s.state if s else UNKNOWN for _, _, s in attempts]
            entry["submissions"].append({
                "submission": sub.key,
                "kind": sub.kind,
                "job_id": sub.chunks[0].job_id,
                "jobs": [{"job_id": c.job_id, "offset": c.offset, "tasks": format_task_spec(c.tasks)} for c in sub.chunks],
                "time": sub.time,
                "tasks": format_task_spec(sub.queued),
                "planned": format_task_spec(sub.planned),
                "not_queued": format_task_spec(sub.missing),
                "states": _count(st for st in states_here if st != UNKNOWN),
                "state_source": source,
                "failed": [{"job_id": job, "task": task, "state": s.state, "exit_code": s.exit_code}
                           for task, job, s in attempts
                           if s and s.state.split()[0] != "COMPLETED" and s.state.split()[0] not in ACTIVE_STATES],
                "log": _log_name(sub.chunks[0].record),
            })
        out.append(entry)
    return out


def _count(states: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return counts


def tasks_json(run: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """`runs RUN --format json`: one object per task of the run."""
    return [{"task": r.task, "state": r.state, "exit_code": exit_status(r.exit_code), "attempts": r.attempts,
             "submissions": r.submissions, "job_id": r.job_id}
            for r in run["task_rows"]]


def runs_json(runs: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """`runs --format json` (every run): the runs without their per-task rows."""
    return [{k: v for k, v in r.items() if k != "task_rows"} for r in runs]


def _log_name(sub: dict[str, t.Any]) -> str | None:
    for arg in sub.get("sbatch", []):
        if arg.startswith("--output="):
            return fill_log_pattern(arg[len("--output="):], sub["job_id"])
    return None


# `runs RUN` lists every task up to this many; a larger run is summed up by state.
TASK_TABLE_MAX = 100


def format_runs(runs: list[dict[str, t.Any]], *, detail: bool = False) -> str:
    """The text of `runs`; with `detail` (one RUN) the tasks not completed, by state, and every
    task's latest attempt when the run is small."""
    if not runs:
        return "no compiled runs\n"
    lines = []
    for r in runs:
        lines.append(f"{r['name']}/{r['hash']}  {r['tasks']} task{'s' if r['tasks'] != 1 else ''}  {r['run']}")
        if not r["submissions"]:
            lines.append("  not submitted")
        for n_sub, s in enumerate(r["submissions"], 1):
            states = ", ".join(f"{n} {state}" for state, n in sorted(s["states"].items())) or "no state known yet"
            if s["kind"] == BY_HAND:
                what = f" (by hand from the run directory, tasks {s['planned']})"
            else:
                what = "" if s["kind"] == "submit" else f" ({s['kind']} of tasks {s['planned']})"
            if len(s["jobs"]) == 1:
                jobs = f"job {s['job_id']}"
            else:
                jobs = "jobs " + ", ".join(f"{j['job_id']} (tasks {j['tasks']})" for j in s["jobs"])
            lines.append(f"  {jobs}{what}  submitted {s['time']}  {states}")
            for f in s["failed"]:
                task = "" if f["task"] is None else f" task {f['task']}"
                lines.append(f"    {f['state']}{task} exit code {f['exit_code'] or '?'}")
            if s["not_queued"]:
                hint = f" (the same --submit again queues only these, as does rerun --tasks {s['not_queued']})" if n_sub == len(r["submissions"]) else ""
                lines.append(f"    NOT QUEUED: tasks {s['not_queued']}{hint}")
            if s["log"]:
                lines.append(f"    logs: {s['log'].replace('%a', '<task>')}")
        if r["submissions"]:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(r["task_states"].items()))
            lines.append(f"  tasks (latest attempt): {counts}")
            rows: list[TaskRow] = r["task_rows"]
            if detail and len(rows) <= TASK_TABLE_MAX:
                # exit: '-' until an attempt ended; attempts: starts by the task's latest job
                # (1 + requeues); submissions: how many submissions queued the task
                lines.append(f"    {'task':>6}  {'state':<14} {'exit':>4}  {'attempts':>8}  {'submissions':>11}  job")
                for row in rows:
                    code = exit_status(row.exit_code)
                    lines.append(f"    {row.task:>6}  {row.state:<14} {'-' if code is None else code:>4}  {row.attempts:>8}  "
                                 f"{row.submissions:>11}  {row.job_id or '-'}")
            if detail:
                by_state: dict[str, list[int]] = {}
                for row in rows:
                    if row.state != "COMPLETED":
                        by_state.setdefault(row.state, []).append(row.task)
                for state, tasks in sorted(by_state.items()):
                    lines.append(f"    {state}: tasks {format_task_spec(tasks)}")
                requeued = [row.task for row in rows if row.attempts > 1]
                if requeued:
                    lines.append(f"    requeued (started more than once by one job): tasks {format_task_spec(requeued)}")
                again = [row.task for row in rows if row.submissions > 1]
                if again:
                    lines.append(f"    queued by more than one submission: tasks {format_task_spec(again)}")
            if any(is_failed(row.state) for row in rows):
                lines.append(f"  rerun the failed ones: mcompile rerun {r['run']} --failed")
    return "\n".join(lines) + "\n"
