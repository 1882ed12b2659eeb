"""The output of `mcompile runs`: text or json, from `FORMATTER_BY_NAME` (its --format choices).

Cheap to import (the CLI reads the format names while it builds its parser): what the formats
need of `runs` is imported when they run."""

from __future__ import annotations

import json
import typing as t

from .tasklist import format_task_spec

if t.TYPE_CHECKING:
    from .runs import RunsListing, TaskRow

# `runs RUN` lists every task up to this many; a larger run is summed up by state.
TASK_TABLE_MAX = 100


def tasks_json(run: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """`runs RUN --format json`: one object per task of the run."""
    from .runs import exit_status

    figures = run.get("task_efficiency", {})
    return [{"task": r.task, "state": r.state, "exit_code": exit_status(r.exit_code), "attempts": r.attempts,
             "submissions": r.submissions, "job_id": r.job_id, "reason": r.reason or None,
             "efficiency": figures[r.task].as_json() if r.task in figures else None}
            for r in run["task_rows"]]


def runs_json(runs: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """`runs --format json` (every run): the runs without their per-task rows."""
    return [{k: v for k, v in r.items() if k not in ("task_rows", "task_efficiency", "efficiency", "efficiency_available")} for r in runs]


def format_runs(runs: list[dict[str, t.Any]], *, detail: bool = False) -> str:
    """The text of `runs` for some runs; with `detail` (one RUN) the tasks not completed, by state,
    and every task's latest attempt when the run is small."""
    from .runs import BY_HAND, exit_status, is_failed
    from .slurm import ACTIVE_STATES

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
            ran = _ran(s)
            if ran:
                lines.append(f"    ran {ran}")
            staging = s.get("staging")
            if staging:
                state = staging["state"].split()[0]
                if state == "COMPLETED":
                    lines.append(f"    staging job {staging['job_id']} (data.build: job): COMPLETED, archives built")
                elif state in ACTIVE_STATES or state == "UNKNOWN":
                    lines.append(f"    staging job {staging['job_id']} (data.build: job): {state}; the tasks start once it succeeds")
                else:
                    lines.append(f"    staging job {staging['job_id']} (data.build: job) {state}, exit code {staging['exit_code'] or '?'}: "
                                 "its tasks never start (SLURM cancels them: --kill-on-invalid-dep); "
                                 f"see {(s['log'] or '').rsplit('/', 1)[0] or 'the log folder'}/{r['name']}_{staging['job_id']}_stage.out, "
                                 "then submit again")
            for f in s["failed"]:
                task = "" if f["task"] is None else f" task {f['task']}"
                lines.append(f"    {f['state']}{task} exit code {f['exit_code'] or '?'}")
            if s["not_queued"]:
                hint = f" (the same --submit again queues only these, as does rerun --tasks {s['not_queued']})" if n_sub == len(r["submissions"]) else ""
                lines.append(f"    NOT QUEUED: tasks {s['not_queued']}{hint}")
            if s["log"]:
                lines.append(f"    logs: {s['log'].replace('%a', '<task>')}")
        for c in r.get("cancels", []):
            lines.append(f"  cancelled tasks {c['tasks']} (mcompile cancel, {c['time']})")
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
            if detail:
                pending = [row for row in rows if row.reason]
                for reason in sorted({row.reason for row in pending}):
                    lines.append(f"    pending ({reason}): tasks {format_task_spec(row.task for row in pending if row.reason == reason)}")
                if not r.get("efficiency_available", True):
                    lines.append("  efficiency: not available (accounting is off here: sacct does not answer; it needs slurmdbd)")
                elif r.get("efficiency") is not None:
                    lines.extend(f"  {line}" for line in r["efficiency"].lines())
            if any(is_failed(row.state) for row in rows):
                lines.append(f"  rerun the failed ones: mcompile rerun {r['run']} --failed")
    return "\n".join(lines) + "\n"


def _ran(submission: dict[str, t.Any]) -> str:
    """What a submission ran: its code's commit (and snapshot) and its image's SHA-256, as recorded."""
    parts = []
    code, image = submission.get("code"), submission.get("image")
    if isinstance(code, dict):
        commit = str(code.get("commit", "?"))[:12] + ("-dirty" if code.get("dirty") else "")
        parts.append(f"code {commit} (snapshot {str(code.get('snapshot', '?'))[:12]})")
    if isinstance(image, dict):
        parts.append(f"image {str(image.get('sha256', '?'))[:12]}")
    return ", ".join(parts)


def _text(listing: RunsListing) -> str:
    if not listing.runs:
        missing = "" if listing.runs_dir_exists else ", which does not exist"
        return f"no compiled runs in {listing.runs_dir}{missing} (--runs DIR or $MCOMPILE_RUNS names another folder)\n"
    return format_runs(listing.runs, detail=listing.one)


def _json(listing: RunsListing) -> str:
    # one write: json.dump would write each of the (many) small pieces of an indented document
    doc = tasks_json(listing.runs[0]) if listing.one else runs_json(listing.runs)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


FORMATTER_BY_NAME: dict[str, t.Callable[[RunsListing], str]] = {
    "text": _text,
    "json": _json,
}
