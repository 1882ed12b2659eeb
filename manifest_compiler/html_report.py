"""`mcompile report RUN`: a run as one self-contained HTML page (templates/report.html.j2).

The page is built from what the run directory records and what `runs` knows (`runs.describe_runs`:
the submissions and the latest attempt of every task, one accounting query); nothing here derives
a state of its own. Every task is one entry of compact arrays embedded as JSON, drawn by the page's
own script on a <canvas> (100,000 tasks are 100,000 cells, not 100,000 DOM nodes). The page loads
nothing: no CDN, no font, no request at view time. The same run state gives the same bytes, apart
from the generation time that the page states.

Where accounting has them, the finished tasks' elapsed time and peak memory (`runs`' efficiency
figures) are drawn as histograms against the time limit and the memory request, with its advice.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
from pathlib import Path

from .jobdir import MANIFEST, PLAN, REPORT, read_resolved
from .plan import own_logs_pattern, tasks_log_themselves
from .runs import describe_runs, exit_status, is_failed
from .submissions import read_run_submissions

if t.TYPE_CHECKING:
    from .slurm import Scheduler

REPORT_FILE = REPORT  # the default output, in the run directory
# Colours of the states in the grid and the counts; any other state is grey.
STATE_COLOURS = {
    "COMPLETED": "#2e9e44", "RUNNING": "#2f6fd6", "PENDING": "#9ab8e8", "REQUEUED": "#7fa0d0",
    "FAILED": "#d0312d", "TIMEOUT": "#e07b00", "OUT_OF_MEMORY": "#a8326e", "CANCELLED": "#6b4f9e",
    "NODE_FAIL": "#8b1a1a", "NOT_SUBMITTED": "#e3e3e3", "NOT_QUEUED": "#c9b27c", "UNKNOWN": "#bdbdbd",
}
OTHER_COLOUR = "#9e9e9e"
NO_ACCOUNTING = "not available: SLURM's accounting (sacct) does not answer here, as `mcompile runs RUN` says"
NONE_FINISHED = "no task has finished yet"
BINS = 10  # bars of a histogram: 0-10%, ..., 90-100% (and more, for a task past its request)


@dataclasses.dataclass
class ReportData:
    """Everything the page shows, in plain values (the template only lays it out)."""

    identity: dict[str, t.Any]
    submissions: list[dict[str, t.Any]]
    counts: list[dict[str, t.Any]]  # state, n, colour: in the order of the state's first task
    grid: dict[str, t.Any]  # the per-task arrays the page's script draws
    plan: str
    diff: str
    accounting_note: str  # why there are no histograms ("" when there are)
    histograms: list[dict[str, t.Any]]  # title, bars [{label, n, share}], advice: what `runs RUN` shows, drawn
    advice: list[str]
    generated: str


def report_data(runs_dir: str, spec: str, *, scheduler: Scheduler, generated: str) -> ReportData:
    """The page of one run (`spec`: as `mcompile runs RUN`).

    Raises:
        UsageError: spec names no compiled run.
        OperationError: the run cannot be read.
    """
    listing = describe_runs(runs_dir, spec, scheduler=scheduler)
    [entry] = listing.runs
    run = Path(entry["run"])
    resolved = read_resolved(run)
    commands = list(resolved["run"]["tasks"])
    rows = entry["task_rows"]
    if not rows:  # never submitted: describe_runs counts only submitted runs
        from .runs import task_rows

        rows = task_rows(entry["tasks"], [], [])

    states: list[str] = []
    state_index: dict[str, int] = {}
    jobs: list[dict[str, t.Any]] = []
    job_index: dict[str, int] = {}
    for sub in entry["submissions"]:
        for j in sub["jobs"]:
            if j["job_id"] not in job_index:
                job_index[j["job_id"]] = len(jobs)
                log, offset = _job_log(sub, j["job_id"]), j["offset"]
                if log is not None and tasks_log_themselves(offset, j.get("pack", 1)):
                    log, offset = own_logs_pattern(log), 0
                jobs.append({"id": j["job_id"], "offset": offset, "log": log})
    s_col, e_col, a_col, j_col = [], [], [], []
    counts: dict[str, int] = {}
    for row in rows:
        if row.state not in state_index:
            state_index[row.state] = len(states)
            states.append(row.state)
        counts[row.state] = counts.get(row.state, 0) + 1
        s_col.append(state_index[row.state])
        e_col.append(exit_status(row.exit_code))
        a_col.append(row.attempts)
        j_col.append(job_index.get(row.job_id, -1) if row.job_id else -1)
    grid = {"states": states, "colours": [STATE_COLOURS.get(s.split()[0], OTHER_COLOUR) for s in states],
            "state": s_col, "exit": e_col, "attempts": a_col, "job": j_col, "jobs": jobs, "commands": commands,
            "array": entry["tasks"] > 1}
    # the code and image of the latest submission that recorded them (each submission's in its row)
    codes = [s["code"] for s in entry["submissions"] if isinstance(s.get("code"), dict)]
    images = [s["image"] for s in entry["submissions"] if isinstance(s.get("image"), dict)]
    identity = {
        "name": entry["name"], "hash": entry["hash"], "run": entry["run"], "tasks": entry["tasks"],
        "project": resolved.get("project"), "manifest": str(run / MANIFEST) if (run / MANIFEST).is_file() else None,
        "manifest_sha256": next((c.record["manifest_sha256"] for s in read_run_submissions(run, entry["tasks"])
                                 for c in s.chunks if c.record.get("manifest_sha256")), None),
        "code": codes[-1] if codes else None, "image": images[-1] if images else None,
        "time": resolved["resources"]["time"], "mem": resolved["resources"]["mem"], "logs": entry["logs"],
        "failed": sum(1 for r in rows if is_failed(r.state)),
    }
    figures = list(entry.get("task_efficiency", {}).values())
    efficiency = entry.get("efficiency")
    histograms = [
        _histogram("elapsed time against the time limit", [(f.elapsed, f.time_limit) for f in figures]),  # ended tasks only
        _histogram("peak memory (MaxRSS) against the request", [(f.max_rss, f.mem) for f in figures]),
    ] if figures else []
    note = "" if histograms else NO_ACCOUNTING if not entry.get("efficiency_available", True) else NONE_FINISHED
    return ReportData(
        identity=identity,
        submissions=entry["submissions"],
        counts=[{"state": s, "n": counts[s], "colour": c} for s, c in zip(states, grid["colours"], strict=True)],
        grid=grid,
        plan=_read_text(run / PLAN),
        diff=_diff_against_previous(run, runs_dir),
        accounting_note=note,
        histograms=histograms,
        advice=list(efficiency.advice) if efficiency else [],
        generated=generated,
    )


def _histogram(title: str, pairs: list[tuple[int | None, int | None]]) -> dict[str, t.Any]:
    """How many finished tasks used each tenth of their request (a last bar for more than all of it)."""
    bars = [0] * (BINS + 1)
    unknown = 0
    for used, asked in pairs:
        if used is None or not asked:
            unknown += 1
            continue
        bars[min(int(used / asked * BINS), BINS)] += 1
    most = max(bars) or 1
    labels = [f"{100 * i // BINS}-{100 * (i + 1) // BINS}%" for i in range(BINS)] + ["over"]
    return {"title": title, "bars": [{"label": label, "n": n, "share": round(100 * n / most)} for label, n in zip(labels, bars, strict=True)],
            "unknown": unknown}


def _job_log(sub: dict[str, t.Any], job_id: str) -> str | None:
    """The --output pattern of one job of a submission (its first job's, with the job id)."""
    log = sub.get("log")
    if not isinstance(log, str):
        return None
    return log.replace(sub["job_id"], job_id) if sub["job_id"] != job_id else log


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _diff_against_previous(run: Path, runs_dir: str) -> str:
    """What changed since the newest other run of the same experiment, as `mcompile diff` prints it."""
    from .diff import SUMMARY_TASKS_AT_MOST, diff_specs
    from .diff.formats import format_text
    from .diff.sides import previous_runs
    from .errors import DiffError
    from .jobdir import read_run_head, task_count

    others = previous_runs(runs_dir, read_run_head(run).name, run)
    if not others:
        return f"no other compiled run of this experiment under {runs_dir}"
    most = max(task_count(run), task_count(others[0]))
    if most > SUMMARY_TASKS_AT_MOST:  # as compile's summary: the comparison holds both task lists
        return f"since {others[0]}: not compared ({most:,} tasks; `mcompile diff {others[0]} {run}` compares them)"
    try:
        return f"since {others[0]}:\n" + format_text(diff_specs(str(others[0]), str(run), runs_dir=runs_dir))
    except DiffError as e:
        return f"not compared with {others[0]}: {e}"


def page_json(value: t.Any) -> str:
    """JSON to embed in a <script> element: compact, sorted, and with no `<` that could end it."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).replace("<", "\\u003c")


def render_report(data: ReportData) -> str:
    """The page: one HTML file with its style, script and data inside."""
    import jinja2
    import markupsafe

    env = jinja2.Environment(loader=jinja2.PackageLoader("manifest_compiler", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["page_json"] = lambda v: markupsafe.Markup(page_json(v))
    return env.get_template("report.html.j2").render(d=data)


def write_report(data: ReportData, output: Path) -> None:
    """Write the page (whole, through a temporary file beside it).

    Raises:
        OperationError: it cannot be written.
    """
    import os

    from .errors import OperationError

    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_text(render_report(data), encoding="utf-8")
        os.replace(tmp, output)
    except OSError as e:
        raise OperationError(f"cannot write {output}: {e.strerror or e}") from None
