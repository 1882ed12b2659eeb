"""Local: run one task of a compiled run on this machine, with the run's own job.sbatch.

The job script sees what SLURM would give it (SLURM_JOB_ID, the array ids, the
submit directory, a fresh SLURM_TMPDIR) and the archives a submission would name,
and the code snapshot (code:, taken again from the recorded repository), and runs the real
container runtime from PATH. So a user can check the image, the
binds, the data and the command before queuing hundreds of tasks. Results land in
`<outputs.dir>/local_<task>`; the log goes to the terminal, or for a packed run (run.pack), as
there, to the task's own log file, `<outputs.logs>/<name>_local_<task>.out`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import OperationError, UsageError
from .jobdir import PACKS, read_resolved
from .model import pack_size
from .plan import PACK_TASKS_VARIABLE, SUBMISSION_VARIABLES, TASK_OFFSET_VARIABLE, log_file
from .progress import Progress
from .snapshot import recorded_repo, snapshot_code
from .stage import stage_archives

JOB_ID = "local"  # in place of SLURM's job id: outputs go to <outputs.dir>/local_<task>


def run_task_locally(run_dir: Path, task: int, *, progress: Progress | None = None) -> int:
    """Run `task` of the run in `run_dir` with bash; its exit status. `progress` hears of archives being built.

    Raises:
        UsageError: the run has no such task.
        OperationError: archives cannot be staged, or bash cannot start.
    """
    resolved = read_resolved(run_dir)
    ntasks = len(resolved["run"]["tasks"])
    if not 0 <= task < ntasks:
        raise UsageError(f"{run_dir} has tasks 0 to {ntasks - 1}; there is no task {task}")
    launcher = resolved["run"].get("launcher", "single")
    if launcher != "single":
        raise UsageError(f"{run_dir} uses launcher {launcher}, which needs a SLURM allocation (srun); exec runs launcher single only")
    env = dict(os.environ)
    for archive in stage_archives(resolved, cwd=run_dir, progress=progress):
        env[archive.variable] = archive.fingerprint
    for name in (*SUBMISSION_VARIABLES, TASK_OFFSET_VARIABLE, PACK_TASKS_VARIABLE):  # named here, never taken from this shell
        env.pop(name, None)
    code = snapshot_code(resolved, recorded_repo(run_dir), cwd=run_dir) if "code" in resolved else None
    if code:
        if progress:
            for warning in code.warnings:
                progress(f"warning: {warning}")
        env.update(code.variables)
    local_tmp = tempfile.mkdtemp(prefix="mcompile-exec-")
    env.update({
        "SLURM_JOB_ID": JOB_ID,
        "SLURM_ARRAY_JOB_ID": JOB_ID,
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_SUBMIT_DIR": str(run_dir.resolve()),
        "SLURM_TMPDIR": local_tmp,
    })
    record = None
    if pack_size(resolved["run"]) > 1:  # array index 0 of a list of this one task; its record is exec's own, made anew
        env.update({"SLURM_ARRAY_TASK_ID": "0", PACK_TASKS_VARIABLE: str(task)})
        record = run_dir / PACKS / f"{JOB_ID}_0"
        record.unlink(missing_ok=True)
        if progress:
            progress(f"a packed task logs to its own file: {resolved['outputs']['logs'].rstrip('/')}/{log_file(resolved['name'], JOB_ID, str(task))}")
    try:
        return subprocess.run(["bash", str(run_dir / "job.sbatch")], cwd=run_dir, env=env, stdin=subprocess.DEVNULL).returncode
    except OSError as e:
        raise OperationError(f"cannot run bash: {e.strerror or e}") from e
    finally:
        shutil.rmtree(local_tmp, ignore_errors=True)
        if record is not None:
            record.unlink(missing_ok=True)
