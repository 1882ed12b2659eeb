"""Run a compiled job.sbatch with bash outside SLURM, as SLURM would start one of its tasks.

The one harness for the tests that run job scripts without a cluster (the job script's own
tests, the fuzzing of the whole pipeline, the hostile-input tests): SLURM's variables for the
task, the run directory as SLURM_SUBMIT_DIR, and bash. The runtime is whatever the caller's
PATH finds first (tests/doubles/apptainer, or a recording stand-in).
"""

from __future__ import annotations

import subprocess
import typing as t
from pathlib import Path


def slurm_env(run: Path, task: int | None, *, job: int, base: t.Mapping[str, str]) -> dict[str, str]:
    """`base` and what SLURM sets for one task: task None is a job without an array; task i is
    array task i of array job `job`, whose own SLURM_JOB_ID is job + i (as SLURM numbers them)."""
    env = dict(base)
    env["SLURM_JOB_ID"] = str(job + (task or 0))
    env["SLURM_SUBMIT_DIR"] = str(run)
    if task is not None:
        env["SLURM_ARRAY_JOB_ID"] = str(job)
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    return env


@t.overload
def run_task(run: Path, task: int | None, *, job: int, env: t.Mapping[str, str], text: t.Literal[True],
             cwd: Path | str = "/", timeout: float = 60) -> subprocess.CompletedProcess[str]: ...


@t.overload
def run_task(run: Path, task: int | None, *, job: int, env: t.Mapping[str, str], text: t.Literal[False] = False,
             cwd: Path | str = "/", timeout: float = 60) -> subprocess.CompletedProcess[bytes]: ...


def run_task(run: Path, task: int | None, *, job: int, env: t.Mapping[str, str], text: bool = False,
             cwd: Path | str = "/", timeout: float = 60) -> subprocess.CompletedProcess[t.Any]:
    """`bash job.sbatch` of the run, as task `task` (see slurm_env), from `cwd`, no stdin."""
    return subprocess.run(["bash", str(run / "job.sbatch")], cwd=cwd, env=slurm_env(run, task, job=job, base=env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=text, timeout=timeout)
