"""Cancel: the queued and running tasks of a run (every array of every submission, reruns too).

The tasks to cancel are found from the run's records (submissions.jsonl) and their states
(one query); each job is cancelled whole when every one of its tasks is named, else by its
array indices (`123_[4,7-9]`), in one scancel call. Each cancellation is a JSON line of the
run's cancels.jsonl:

    {"time": <ISO-8601 UTC>, "user": .., "host": .., "tasks": "0-8" (the run's task numbers),
     "scancel": ["123", "124_[2-3]"], "jobs": [{"job_id": "124", "tasks": "11-12"}, ..],
     "refused": <scancel's complaint> | null}

SLURM forgets a pending array task cancelled before it was ever split off its array (neither
squeue nor sacct lists it again): `runs` reads such a task, which SLURM no longer knows, as
CANCELLED when this record names it.

Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import json
import socket
from pathlib import Path

from .errors import OperationError
from .jobdir import CANCELS, read_run_head, task_count
from .plan import job_name
from .runs import add_by_hand, cancelled_tasks, chunk_states
from .slurm import ACTIVE_STATES, Scheduler
from .submissions import read_run_submissions
from .tasklist import format_task_spec, parse_task_spec


@dataclasses.dataclass
class Cancelled:
    """What a cancel did: the run's tasks it cancelled, and what to tell the user."""

    tasks: list[int] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def cancel_run(run: Path, *, tasks: str | None, scheduler: Scheduler) -> Cancelled:
    """Cancel the run's tasks still queued or running (all, or those `tasks` names), and record it.

    Raises:
        UsageError: a task list that does not fit the run.
        OperationError: scancel refused (recorded all the same), or the record cannot be written.
    """
    ntasks = task_count(run)
    chosen = set(parse_task_spec(tasks, ntasks) if tasks else range(ntasks))
    head = read_run_head(run)
    subs = {run: read_run_submissions(run, ntasks)}
    add_by_hand(subs, {run: job_name(head.project, head.name)}, scheduler=scheduler)
    chunks = [chunk for sub in subs[run] for chunk in sub.chunks]
    states, _ = scheduler.task_states([c.job_id for c in chunks])
    known = {(s.job_id, s.task): s for s in states}
    array = ntasks > 1
    before = cancelled_tasks(run)  # SLURM may no longer know these: cancelled while pending in their array
    targets: list[str] = []
    cancelled: set[int] = set()
    by_job: list[dict[str, str]] = []
    along: set[int] = set()  # tasks not named, cancelled with a named one: they share its packed array task
    for chunk in chunks:
        active = {task for task, s in chunk_states(chunk, known, array=array, run=run).items()
                  if (s.state.split()[0] in ACTIVE_STATES if s else (chunk.job_id, task) not in before)}
        live = sorted(active & chosen)
        if not live:
            continue
        indices = sorted({chunk.index(task) for task in live}) if array else []
        if chunk.pack > 1:
            live = sorted(task for index in indices for task in chunk.packed_with(index) if task in active)
            along.update(set(live) - chosen)
        cancelled.update(live)
        by_job.append({"job_id": chunk.job_id, "tasks": format_task_spec(live)})
        if not array or set(live) == set(chunk.tasks):
            targets.append(chunk.job_id)
        else:
            targets.append(f"{chunk.job_id}_[{format_task_spec(indices)}]")
    done = Cancelled(sorted(cancelled))
    if along:
        done.notes.append(f"tasks {format_task_spec(along)} share a packed array task with the named ones (run.pack): cancelled with them")
    if not targets:
        done.notes.append("nothing to cancel: no task" + (" named" if tasks else "") + " of this run is queued or running")
        return done
    refused = scheduler.cancel(targets)
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "tasks": format_task_spec(done.tasks),
        "scancel": targets,
        "jobs": by_job,
        "refused": refused,
    }
    path = run / CANCELS
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as e:
        raise OperationError(f"cancelled {' '.join(targets)} but cannot record it in {path}: {e.strerror or e}") from e
    if refused:
        raise OperationError(f"scancel {' '.join(targets)} failed: {refused}")
    done.notes.append(f"cancelled tasks {record['tasks']} (scancel {' '.join(targets)}); recorded in {path}")
    return done
