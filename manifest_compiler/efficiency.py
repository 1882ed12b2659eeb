"""Efficiency: what the finished tasks of a run used against what they asked for (as seff does, per run).

From accounting (`Scheduler.usage`, sacct with slurmdbd): per task, elapsed time against the
time limit, CPU efficiency TotalCPU / (Elapsed x AllocCPUS) and peak memory (MaxRSS, the
largest of its steps) against the job's memory; per run, the longest, the average and the
largest of these, and a line of advice where the request is far off what was used.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

from .slurm import Usage

if t.TYPE_CHECKING:
    from .submissions import Submission

# advice only where the request is this many times what was used at most
MEM_SLACK = 2.0
TIME_SLACK = 4.0
CPU_SLACK = 2.0
HEADROOM = 1.25  # what the advice suggests: the most used, and a quarter more, rounded up
MIN_TIME_ADVICE = 600  # seconds: no advice to trim a time limit of 10 minutes or less


@dataclasses.dataclass(frozen=True)
class TaskEfficiency:
    """One finished task's latest attempt (JSON: `efficiency` of `runs RUN --format json`)."""

    elapsed: int  # seconds
    time_limit: int | None  # seconds
    cpu_efficiency: float | None  # 0..1 (None: no CPU allocated or no time elapsed)
    cpus: int
    max_rss: int | None  # bytes
    mem: int | None  # bytes requested for the job

    def as_json(self) -> dict[str, t.Any]:
        return {"elapsed_s": self.elapsed, "time_limit_s": self.time_limit, "cpus": self.cpus,
                "cpu_efficiency": None if self.cpu_efficiency is None else round(self.cpu_efficiency, 3),
                "max_rss_bytes": self.max_rss, "mem_bytes": self.mem}


def of_usage(u: Usage) -> TaskEfficiency:
    cpu = u.total_cpu / (u.elapsed * u.alloc_cpus) if u.elapsed > 0 and u.alloc_cpus > 0 else None
    return TaskEfficiency(u.elapsed, u.time_limit, cpu, u.alloc_cpus, u.max_rss, u.req_mem)


def task_efficiency(latest: list[tuple[int, str | None]], subs: list[Submission], usage: list[Usage]) -> dict[int, TaskEfficiency]:
    """Each finished task of a run (task, the job of its latest submission) -> the figures of its latest attempt."""
    by_key = {(u.job_id, u.task): u for u in usage}
    array = len(latest) > 1
    chunks = {c.job_id: c for s in subs for c in s.chunks}
    out: dict[int, TaskEfficiency] = {}
    for task, job in latest:
        if job is None:
            continue
        chunk = chunks.get(job)
        if chunk is None or chunk.pack > 1:  # a packed array task's figures are its tasks' together
            continue
        u = by_key.get((job, chunk.index(task) if array else None))
        if u is not None:
            out[task] = of_usage(u)
    return out


def human_size(n: float) -> str:
    """Bytes as SLURM writes memory: 212M, 9.1G."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor:
            value = n / factor
            return f"{value:.1f}{unit}".replace(".0" + unit, unit) if value < 10 else f"{math.ceil(value)}{unit}"
    return f"{int(n)}B"


def human_time(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _round_up_mem(n: float) -> str:
    """A memory request of at least n bytes, in whole units: 64M steps below 1G, whole G above."""
    if n < 1 << 30:
        return f"{max(64, math.ceil(n / (64 << 20)) * 64)}M"
    return f"{math.ceil(n / (1 << 30))}G"


def _round_up_time(seconds: float) -> str:
    """A time limit of at least `seconds`: whole minutes below 2 hours, whole hours above."""
    if seconds < 7200:
        return f"{max(1, math.ceil(seconds / 60))}m"
    return f"{math.ceil(seconds / 3600)}h"


@dataclasses.dataclass(frozen=True)
class RunEfficiency:
    """A run's finished tasks summed up: the most, or the average, of each figure, and advice."""

    tasks: int
    longest: int
    time_limit: int | None
    cpu_average: float | None
    cpus: int
    peak_rss: int | None
    mem: int | None
    advice: list[str]

    def lines(self) -> list[str]:
        parts = [f"elapsed {human_time(self.longest)} at most"
                 + (f" of {human_time(self.time_limit)} ({self.longest / self.time_limit:.0%})" if self.time_limit else "")]
        if self.cpu_average is not None:
            parts.append(f"CPU {self.cpu_average:.0%} busy on average ({self.cpus} CPU{'s' if self.cpus != 1 else ''})")
        if self.peak_rss is not None:
            parts.append(f"memory {human_size(self.peak_rss)} at most"
                         + (f" of {human_size(self.mem)} ({self.peak_rss / self.mem:.0%})" if self.mem else ""))
        else:
            parts.append("memory not recorded")
        return [f"efficiency ({self.tasks} finished task{'s' if self.tasks != 1 else ''}, sacct): " + "; ".join(parts),
                *(f"advice: {a}" for a in self.advice)]


def summarise(figures: t.Iterable[TaskEfficiency], *, mem_text: str | None, time_text: str | None, cpus_text: str | None) -> RunEfficiency | None:
    """The run's figures and advice (the `*_text` are the request as resolved, quoted in the advice);
    None when no task has finished."""
    done = [f for f in figures if f.elapsed > 0]
    if not done:
        return None
    longest = max(f.elapsed for f in done)
    limit = max((f.time_limit for f in done if f.time_limit), default=None)
    cpu = [f.cpu_efficiency for f in done if f.cpu_efficiency is not None]
    cpu_average = sum(cpu) / len(cpu) if cpu else None
    cpus = max(f.cpus for f in done)
    rss = [f.max_rss for f in done if f.max_rss is not None]
    peak = max(rss) if rss else None
    mem = max((f.mem for f in done if f.mem), default=None)
    advice: list[str] = []
    if peak and mem and mem >= MEM_SLACK * peak:
        advice.append(f"`mem: {mem_text or human_size(mem)}` used {human_size(peak)} at most: {_round_up_mem(peak * HEADROOM)} would do")
    if limit and limit > MIN_TIME_ADVICE and limit >= TIME_SLACK * longest:
        advice.append(f"`time: {time_text or human_time(limit)}` took {human_time(longest)} at most: "
                      f"{_round_up_time(max(longest * HEADROOM * 2, 60))} would do")
    if cpu_average is not None and cpus > 1 and cpus >= CPU_SLACK * max(cpu_average * cpus, 1):
        busy = cpu_average * cpus
        advice.append(f"`cpus_per_task: {cpus_text or cpus}` kept {busy:.1f} busy on average: {max(1, math.ceil(busy * HEADROOM))} would do")
    return RunEfficiency(len(done), longest, limit, cpu_average, cpus, peak, mem, advice)
