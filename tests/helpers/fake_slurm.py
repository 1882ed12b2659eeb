"""A SLURM controller in a few lines, as a `slurm.Runner`: the unit tests' scheduler.

It answers the commands `manifest_compiler.slurm.Scheduler` runs the way SLURM 22.05 does
(the real thing is driven by tests/e2e): `scontrol show config` names MaxArraySize (and a
jobcomp file), `sbatch --test-only` accepts, `sbatch --parsable` prints the next job id,
and sacct and squeue print what the test gives them. `refuse` makes sbatch refuse a call,
with SLURM's `sbatch: error:` line. Every call is kept, with its working directory and
environment.
"""

from __future__ import annotations

import dataclasses
import typing as t
from pathlib import Path

from manifest_compiler.slurm import Reply


@dataclasses.dataclass
class Call:
    argv: list[str]
    cwd: Path | None
    env: dict[str, str] | None


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name=value` in an argv (None without it)."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")]
    return values[-1] if values else None


def exported(argv: list[str]) -> dict[str, str]:
    """The NAME=value items of an sbatch --export option."""
    items = (option(argv, "--export") or "").split(",")
    return dict(item.split("=", 1) for item in items if "=" in item)


@dataclasses.dataclass
class FakeSlurm:
    max_array_size: int | None = 1001  # None: scontrol fails
    jobcomp: Path | None = None  # JobCompLoc, with JobCompType=jobcomp/filetxt
    refuse: t.Callable[[list[str]], str | None] = lambda argv: None  # sbatch's error for this call, or None
    sacct_states: str | None = ""  # `sacct -o JobID,State,ExitCode,Start`; None: no accounting database
    sacct_jobs: str = ""  # `sacct --name ... -o JobID,WorkDir,Submit`
    squeue_states: str = ""  # `squeue -t all -r -j ... -O JobArrayID:|,State:|,...`
    squeue_jobs: str = ""  # `squeue -t all -r -n ... -O JobArrayID:|,WorkDir:|,SubmitTime:|`
    squeue_state: str = ""  # `squeue -h -j JOB -o %T`
    next_job: int = 100
    calls: list[Call] = dataclasses.field(default_factory=list)

    def __call__(self, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float) -> Reply:
        self.calls.append(Call(list(argv), cwd, env))
        command = argv[0]
        if command == "scontrol":
            if self.max_array_size is None:
                return Reply(1, "", "scontrol: error: Unable to contact slurm controller (connect failure)\n")
            lines = [f"MaxArraySize            = {self.max_array_size}"]
            if self.jobcomp is not None:
                lines += ["JobCompType             = jobcomp/filetxt", f"JobCompLoc              = {self.jobcomp}"]
            return Reply(0, "\n".join(lines) + "\n", "")
        if command == "sbatch":
            refusal = self.refuse(argv)
            if refusal is not None:
                return Reply(1, "", f"sbatch: error: {refusal}\n")
            if "--test-only" in argv:
                return Reply(0, "", "sbatch: Job 4242 to start at 2024-01-01T10:00:00 using 1 processors on nodes n1 in partition debug\n")
            job = self.next_job
            self.next_job += 1
            return Reply(0, f"{job}\n", "")
        if command == "sacct":
            if self.sacct_states is None:
                return Reply(1, "", "sacct: error: Problem talking to the database: Connection refused\n")
            return Reply(0, self.sacct_jobs if "--name" in argv else self.sacct_states, "")
        if command == "squeue":
            if "-n" in argv:
                return Reply(0, self.squeue_jobs, "")
            return Reply(0, self.squeue_state if "%T" in argv else self.squeue_states, "")
        raise AssertionError(f"not a SLURM command: {argv}")

    def sbatch(self, kind: str) -> list[list[str]]:
        """The argv of every `sbatch --test-only` or `sbatch --parsable` call, in order."""
        return [c.argv for c in self.calls if c.argv[:2] == ["sbatch", kind]]
