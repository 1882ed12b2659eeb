"""Shell: an interactive shell on a compute node, in a task's own container, prepared as the batch task is.

`srun --pty` with the run's resources (its #SBATCH directives, less those of a batch array:
log, array, signal, requeue), overridden by --time, --gpus, --mem and --cpus, runs the run's
own job.sbatch with MCOMPILE_SHELL=1 and MCOMPILE_TASK_OFFSET=<task> (a packed run:
MCOMPILE_TASKS=<task>), so MCOMPILE_TASK is the task: it prepares the node as for the task (its folder, the image, the staged data), writes
the same env file (env, secrets) and binds, and runs `bash` in the container instead of the
task's command, on the terminal; leaving the shell removes the node-local folders as the task
does. Archives are built or reused first, as --submit does.

Nothing here prints.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .errors import OperationError, UsageError
from .jobdir import JOB_SCRIPT, read_resolved
from .model import pack_size
from .plan import PACK_TASKS_VARIABLE, TASK_OFFSET_VARIABLE, plan_job
from .progress import Progress
from .slurm import Scheduler
from .snapshot import recorded_repo
from .submit import job_env, preflight
from .units import format_time, parse_time

SHELL_VARIABLE = "MCOMPILE_SHELL"  # job.sbatch: run an interactive shell in the container, not the task's command
# directives of a batch array that an interactive step does not take
_BATCH_ONLY = frozenset({"output", "error", "array", "signal", "requeue", "open-mode", "nodes", "ntasks-per-node", "begin", "dependency"})


@dataclasses.dataclass(frozen=True)
class Overrides:
    """What the shell asks for instead of the run's resources (None: the run's)."""

    time: str | None = None
    gpus: int | None = None
    mem: str | None = None
    cpus: int | None = None


def shell_options(run: Path, overrides: Overrides) -> list[str]:
    """The srun options of the shell: the run's resources, one task on one node, with the overrides.

    Raises:
        UsageError: an override SLURM would not read.
    """
    resolved = read_resolved(run)
    res = resolved["resources"]
    options: dict[str, str | None] = {}
    for key, value in plan_job(resolved).directives:
        if key not in _BATCH_ONLY:
            options[key] = value
    options["job-name"] = f"{options.get('job-name') or 'mcompile'}-shell"
    options["nodes"] = "1"
    options["ntasks"] = "1"
    if overrides.time is not None:
        try:
            options["time"] = format_time(parse_time(overrides.time))
        except ValueError as e:
            raise UsageError(f"mcompile shell: --time {overrides.time}: {e}") from None
    if overrides.gpus is not None:
        if overrides.gpus < 0:
            raise UsageError("mcompile shell: --gpus must be 0 or more")
        options.pop("gres", None)
        if overrides.gpus:
            options["gres"] = f"gpu:{res['gpu_type']}:{overrides.gpus}" if res.get("gpu_type") else f"gpu:{overrides.gpus}"
    if overrides.mem is not None:
        options["mem"] = overrides.mem
    if overrides.cpus is not None:
        if overrides.cpus < 1:
            raise UsageError("mcompile shell: --cpus must be 1 or more")
        options["cpus-per-task"] = str(overrides.cpus)
    return [f"--{key}" if value is None else f"--{key}={value}" for key, value in options.items()]


def open_shell(run: Path, task: int, overrides: Overrides, *, scheduler: Scheduler, progress: Progress | None = None) -> int:
    """Run the interactive shell of task `task`; its exit status (srun's).

    Raises:
        UsageError: no such task, or a bad override.
        OperationError: pre-flight failed (image, data, secrets), or srun cannot start.
    """
    resolved = read_resolved(run)
    ntasks = len(resolved["run"]["tasks"])
    if not 0 <= task < ntasks:
        raise UsageError(f"mcompile shell: task {task} does not exist: {run} has {ntasks} tasks (0-{ntasks - 1})")
    options = shell_options(run, overrides)
    ready = preflight(run, resolved, progress=progress, repo=recorded_repo(run) if "code" in resolved else None)
    if ready.to_build:
        raise OperationError(f"the archives of {', '.join(a.subset for a in ready.to_build)} are not built yet (data.build: job): "
                             f"submit the run first, or build them here with: mcompile stage {run}")
    for warning in ready.warnings:
        if progress:
            progress(f"warning: {warning}")
    for note in ready.notes():
        if progress:
            progress(note)
    # the code snapshot and the image's identity too, as a submission names them
    # a packed run's job takes the task from its list of tasks (one here), another's from the offset
    which = PACK_TASKS_VARIABLE if pack_size(resolved["run"]) > 1 else TASK_OFFSET_VARIABLE
    exports = ["ALL", *ready.exports, f"{which}={task}", f"{SHELL_VARIABLE}=1"]
    options.append("--export=" + ",".join(exports))
    if progress:
        progress(f"a shell in task {task}'s container (exit it to end the allocation): srun --pty {' '.join(options)} bash {JOB_SCRIPT}")
    return scheduler.interactive(options, ["bash", JOB_SCRIPT], cwd=run, env=job_env(resolved))
