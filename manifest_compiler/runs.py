"""Runs: compiled runs, their submissions and the SLURM state of every task.

States come from one accounting query for all submissions shown: `sacct` when
accounting answers; otherwise `squeue -t all` (queued, running and recently
finished jobs) completed by the jobcomp file (`JobCompType=jobcomp/filetxt`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import typing as t
from pathlib import Path

from .write import read_resolved, select_runs


@dataclasses.dataclass
class TaskState:
    job_id: str  # the array's job id
    task: int | None  # None: a single job, or a pending range not yet split
    state: str
    exit_code: str = ""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"})

_TASK_ID = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]*\]))?$")


def _parse_id(raw: str) -> tuple[str, int | None, str | None]:
    m = _TASK_ID.match(raw)
    if not m:
        return raw, None, None
    job, task = m.group(1), m.group(2)
    if task is None:
        return job, None, None
    if task.startswith("["):
        return job, None, task
    return job, int(task), None


def _from_sacct(job_ids: list[str]) -> list[TaskState] | None:
    proc = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode"])
    if proc is None or proc.returncode != 0:
        return None
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 3:
            continue
        job, task, pending = _parse_id(parts[0])
        state = parts[1].split()[0] if parts[1] else "UNKNOWN"
        out.append(TaskState(job, task, state if not pending else f"{state} {pending}", parts[2]))
    return out


def _from_squeue(job_ids: list[str]) -> list[TaskState]:
    proc = _run(["squeue", "-h", "-t", "all", "-r", "-j", ",".join(job_ids), "-o", "%i|%A|%T"])
    out = []
    if proc is not None and proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 3:
                job, task, _ = _parse_id(parts[0])
                out.append(TaskState(job, task, parts[2]))
    return out


def _jobcomp_file() -> Path | None:
    proc = _run(["scontrol", "show", "config"])
    if proc is None or proc.returncode != 0:
        return None
    conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", proc.stdout, re.M))
    if conf.get("JobCompType") == "jobcomp/filetxt" and conf.get("JobCompLoc"):
        return Path(conf["JobCompLoc"])
    return None


def _from_jobcomp(job_ids: list[str]) -> list[TaskState]:
    path = _jobcomp_file()
    if path is None or not path.is_file():
        return []
    wanted = set(job_ids)
    out = []
    for line in path.read_text(errors="replace").splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        array_job = fields.get("ArrayJobId") or ""
        job = array_job if array_job not in ("", "0", "4294967294") else fields.get("JobId", "")
        if job not in wanted:
            continue
        task = fields.get("ArrayTaskId", "")
        out.append(TaskState(job, int(task) if task.isdigit() and task != "4294967294" else None,
                             fields.get("JobState", "UNKNOWN"), fields.get("ExitCode", "")))
    return out


def query_states(job_ids: list[str]) -> tuple[list[TaskState], str]:
    """States of every task of these jobs, and where they came from."""
    if not job_ids:
        return [], "none"
    # The record with exit codes (sacct, else the jobcomp file) comes first. squeue fills in
    # the tasks it lacks: slurmdbd learns of jobs and array tasks a moment late, and finished
    # tasks stay in squeue -t all for MinJobAge. Without accounting, squeue also wins where a
    # task is queued or running again (a requeue), as jobcomp only has finished attempts.
    accounted = _from_sacct(job_ids)
    source = "sacct" if accounted is not None else "squeue+jobcomp"
    merged: dict[tuple[str, int | None], TaskState] = {
        (s.job_id, s.task): s for s in (accounted if accounted is not None else _from_jobcomp(job_ids))
    }
    for s in _from_squeue(job_ids):
        key = (s.job_id, s.task)
        if key not in merged or (accounted is None and s.state in ACTIVE_STATES):
            merged[key] = s
    return list(merged.values()), source


def read_submissions(run: Path) -> list[dict[str, t.Any]]:
    path = run / "submissions.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn line from a crashed writer is not a submission
    return out


def describe_runs(runs_dir: str, spec: str | None = None) -> list[dict[str, t.Any]]:
    """Runs newest first (all, or those RUN names), with their submissions and task states."""
    runs = select_runs(runs_dir, spec)
    subs = {run: read_submissions(run) for run in runs}
    job_ids = [s["job_id"] for ss in subs.values() for s in ss]
    states, source = query_states(job_ids)
    by_job: dict[str, list[TaskState]] = {}
    for s in states:
        by_job.setdefault(s.job_id, []).append(s)
    out = []
    for run in runs:
        resolved = read_resolved(run)
        entry = {
            "run": str(run),
            "name": resolved["name"],
            "hash": run.name,
            "tasks": len(resolved["run"]["tasks"]),
            "logs": resolved["outputs"]["logs"],
            "submissions": [],
        }
        for sub in subs[run]:
            tasks = sorted(by_job.get(sub["job_id"], []), key=lambda s: (s.task is None, s.task or 0))
            counts: dict[str, int] = {}
            for s in tasks:
                counts[s.state] = counts.get(s.state, 0) + 1
            failed = [dataclasses.asdict(s) for s in tasks if s.state.split()[0] != "COMPLETED" and s.state.split()[0] not in ACTIVE_STATES]
            entry["submissions"].append({
                "job_id": sub["job_id"],
                "time": sub.get("time"),
                "states": counts,
                "state_source": source,
                "failed": failed,
                "log": _log_name(sub),
            })
        out.append(entry)
    return out


def _log_name(sub: dict[str, t.Any]) -> str | None:
    for arg in sub.get("sbatch", []):
        if arg.startswith("--output="):
            pattern = arg[len("--output="):]
            parts = [p.replace("%A", sub["job_id"]).replace("%j", sub["job_id"]) for p in pattern.split("%%")]
            return "%".join(parts)
    return None


def format_runs(runs: list[dict[str, t.Any]]) -> str:
    if not runs:
        return "no compiled runs\n"
    lines = []
    for r in runs:
        lines.append(f"{r['name']}/{r['hash']}  {r['tasks']} task{'s' if r['tasks'] != 1 else ''}  {r['run']}")
        if not r["submissions"]:
            lines.append("  not submitted")
        for s in r["submissions"]:
            states = ", ".join(f"{n} {state}" for state, n in sorted(s["states"].items())) or "no state known yet"
            lines.append(f"  job {s['job_id']}  submitted {s['time']}  {states}")
            for f in s["failed"]:
                task = "" if f["task"] is None else f" task {f['task']}"
                lines.append(f"    {f['state']}{task} exit code {f['exit_code'] or '?'}")
            if s["log"]:
                lines.append(f"    logs: {s['log'].replace('%a', '<task>')}")
    return "\n".join(lines) + "\n"
