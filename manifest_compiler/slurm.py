"""SLURM: every call mcompile makes to the scheduler, and the reading of what SLURM prints.

`Scheduler` runs sbatch (`--test-only` and `--parsable`), `scontrol show config`, sacct and
squeue, and reads the jobcomp file; it returns typed results (`TaskState`, `ClusterJob`,
`Sbatched`). No other module runs a SLURM command. The commands go through a `Runner`
(argv -> `Reply`): `run_command` runs them for real; a test gives the scheduler a runner of
its own that answers as SLURM would.

States come from one accounting query for all the jobs asked about: `sacct --duplicates`
when accounting answers (so a requeued task shows each start); otherwise the jobcomp file
(`JobCompType=jobcomp/filetxt`). `squeue -t all` is the live view and wins where it knows a
task (queued and running tasks, finished ones the record lacks yet, restart counts).
"""

from __future__ import annotations

import dataclasses
import getpass
import re
import subprocess
import time
import typing as t
from pathlib import Path

from .errors import OperationError
from .tasklist import expand_spec

DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default
QUERY_TIMEOUT = 60  # seconds: a query that does not answer by then counts as no answer
SBATCH_TIMEOUT = 120

ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"})
UNKNOWN = "UNKNOWN"  # queued, but neither accounting nor squeue knows it (any more)
# squeue shows a pending time as "start"; a requeued task's earlier start is in the record already
_NOT_STARTED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
_NO_ID = "4294967294"  # SLURM's NO_VAL for a job that is not an array task


# --- running commands ---------------------------------------------------------------------

class Reply(t.NamedTuple):
    """What a command gave back."""

    returncode: int
    stdout: str
    stderr: str


class Runner(t.Protocol):
    """Runs one command. Raises OSError when it cannot start, TimeoutError when it does not
    answer within `timeout` seconds."""

    def __call__(self, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
                 timeout: float) -> Reply: ...


def run_command(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float) -> Reply:
    """The real runner: the command with no input, its output captured."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"{argv[0]} did not answer within {timeout} s") from e
    return Reply(proc.returncode, proc.stdout, proc.stderr)


class InteractiveRunner(t.Protocol):
    """Runs one command on this terminal (stdin, stdout, stderr inherited); its exit status."""

    def __call__(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> int: ...


def run_on_terminal(argv: list[str], *, cwd: Path, env: dict[str, str]) -> int:
    """The real interactive runner."""
    return subprocess.call(argv, cwd=cwd, env=env)


# --- what SLURM gives back ------------------------------------------------------------------

@dataclasses.dataclass
class TaskState:
    """What accounting knows of one array index of one job (all its attempts)."""

    job_id: str  # the array's job id
    task: int | None  # the raw array index; None: a single job
    state: str  # of the latest attempt
    exit_code: str = ""  # of the latest attempt, once it ended ("" while queued or running)
    attempts: int = 1  # times this job started the task: 1 + its requeues
    reason: str = ""  # why squeue says a queued task has not started (Priority, Resources, Dependency, ...)


class ClusterJob(t.NamedTuple):
    """A job SLURM knows by its name (one line of squeue, sacct or the jobcomp file)."""

    job_id: str  # the array's job id
    tasks: list[int | None]  # the array indices this line is about; [None]: a single job
    workdir: str  # where sbatch ran
    submitted: str  # SLURM's submit time


@dataclasses.dataclass(frozen=True)
class TestOnly:
    """One `sbatch --test-only` call: SLURM's refusal (None: it would accept the job) and, when
    it accepts, the start time it expects (as it prints it, e.g. 2026-12-04T10:30:00)."""

    refusal: str | None
    start: str | None = None
    where: str = ""  # "using 1 processors on nodes n1 in partition debug"


@dataclasses.dataclass(frozen=True)
class Usage:
    """What accounting recorded of one finished attempt of a task (the latest), for efficiency."""

    job_id: str  # the array's job id
    task: int | None  # the raw array index; None: a single job
    state: str
    elapsed: int  # seconds
    time_limit: int | None  # seconds; None: no limit (UNLIMITED) or unknown
    total_cpu: float  # seconds of CPU time (user + system) of all its steps
    alloc_cpus: int
    max_rss: int | None  # bytes, the largest of its steps; None: not recorded
    req_mem: int | None  # bytes for the whole job; None: unknown


@dataclasses.dataclass(frozen=True)
class Sbatched:
    """One `sbatch --parsable` call: its argv, and the job id, or why there is none."""

    argv: list[str]
    job_id: str | None
    refusal: str = ""


_TASK_ID = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]*\]))?$")


def parse_job_id(raw: str) -> tuple[str, list[int | None]]:
    """`123_4` -> (123, [4]); `123_[5-7%1]` (a pending range) -> (123, [5, 6, 7]); `123` -> (123, [None])."""
    m = _TASK_ID.match(raw)
    if not m:
        return raw, [None]
    job, task = m.group(1), m.group(2)
    if task is None:
        return job, [None]
    if task.startswith("["):
        return job, list(expand_spec(task))
    return job, [int(task)]


def _started(start: str) -> bool:
    return start not in ("", "Unknown", "None", "N/A", "0")


def _ended_code(state: str, code: str) -> str:
    """An exit code only for an attempt that ended: SLURM prints 0:0 for a running or pending one."""
    return "" if state.split()[0] in ACTIVE_STATES else code


def _wait_status(raw: str) -> str:
    """squeue's raw wait status (768, 9) as SLURM's `status:signal` (3:0, 0:9)."""
    if not raw.isdigit():
        return ""
    value = int(raw)
    return f"{value >> 8}:{value & 0x7F}"


def _sbatch_message(reply: Reply) -> str:
    text = (reply.stderr or reply.stdout).strip()
    lines = [ln.removeprefix("sbatch: error: ").strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) or f"exit status {reply.returncode}"


# squeue -O: the live state of every task still known to the controller (MinJobAge after it
# ended), with the job's restart count (its requeues) and the raw wait status of its end.
_SQUEUE_FIELDS = "JobArrayID:|,State:|,StartTime:|,Restartcnt:|,exit_code:|,Reason:|"
# sbatch --test-only accepting a job: "sbatch: Job 12 to start at 2026-12-04T10:30:00 using 1 processors on nodes n1 in partition debug"
_TEST_ONLY_START = re.compile(r"Job \d+ to start at (\S+)(?: (.*))?$", re.M)


class Scheduler:
    """The SLURM of this host, asked through `runner` (the real commands by default).

    Queries that cannot start, time out or fail count as no answer (SLURM may not be
    reachable from here); sbatch failing to start or to answer is an OperationError.
    `scontrol show config` is read once per scheduler.
    """

    def __init__(self, runner: Runner = run_command, interactive_runner: InteractiveRunner | None = None) -> None:
        self._runner = runner
        self._interactive = interactive_runner or run_on_terminal
        self._config: dict[str, str] | None = None
        self._config_read = False

    def _query(self, argv: list[str]) -> str | None:
        """The output of a query; None when it cannot start, does not answer in time, or fails."""
        try:
            reply = self._runner(argv, timeout=QUERY_TIMEOUT)
        except (OSError, TimeoutError):
            return None
        return reply.stdout if reply.returncode == 0 else None

    def _sbatch(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> Reply:
        try:
            return self._runner(argv, cwd=cwd, env=env, timeout=SBATCH_TIMEOUT)
        except FileNotFoundError as e:
            raise OperationError("sbatch not found: is this a SLURM login node? (start a local one with scripts/slurm-dev.sh up)") from e
        except TimeoutError as e:
            raise OperationError(f"sbatch did not answer within {SBATCH_TIMEOUT} s; the controller may be down") from e

    # --- configuration --------------------------------------------------------------------

    def config(self) -> dict[str, str] | None:
        """`scontrol show config` as a dict; None when SLURM cannot be asked."""
        if not self._config_read:
            out = self._query(["scontrol", "show", "config"])
            self._config = None if out is None else dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", out, re.M))
            self._config_read = True
        return self._config

    def max_array_size(self) -> tuple[int, str | None]:
        """The cluster's MaxArraySize and, when it cannot be read, a note saying the default is assumed."""
        raw = (self.config() or {}).get("MaxArraySize", "")
        if raw.isdigit() and int(raw) > 0:
            return int(raw), None
        return DEFAULT_MAX_ARRAY_SIZE, (f"cannot read MaxArraySize from `scontrol show config`; "
                                        f"assuming SLURM's default {DEFAULT_MAX_ARRAY_SIZE}")

    def _jobcomp_lines(self) -> list[dict[str, str]]:
        """The jobcomp file (`JobCompType=jobcomp/filetxt`), a dict of fields per line; [] without one."""
        conf = self.config()
        if not conf or conf.get("JobCompType") != "jobcomp/filetxt" or not conf.get("JobCompLoc"):
            return []
        path = Path(conf["JobCompLoc"])
        if not path.is_file():
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in path.read_text(errors="replace").splitlines()]

    # --- sbatch -----------------------------------------------------------------------------

    def test_only(self, options: list[str], script: str, *, cwd: Path, env: dict[str, str]) -> str | None:
        """`sbatch --test-only`: None when SLURM would accept the job, else its refusal.

        Raises:
            OperationError: sbatch is missing or does not answer.
        """
        return self.try_job(options, script, cwd=cwd, env=env).refusal

    def try_job(self, options: list[str], script: str, *, cwd: Path, env: dict[str, str]) -> TestOnly:
        """`sbatch --test-only`: SLURM's refusal, or when it would accept the job, when it expects it to start.

        Raises:
            OperationError: sbatch is missing or does not answer.
        """
        reply = self._sbatch(["sbatch", "--test-only", *options, script], cwd=cwd, env=env)
        if reply.returncode != 0:
            return TestOnly(_sbatch_message(reply))
        m = _TEST_ONLY_START.search(reply.stderr + "\n" + reply.stdout)
        return TestOnly(None, m.group(1) if m else None, (m.group(2) or "").strip() if m else "")

    def submit(self, options: list[str], script: str, *, cwd: Path, env: dict[str, str]) -> Sbatched:
        """`sbatch --parsable`: the job id, or SLURM's refusal.

        Raises:
            OperationError: sbatch is missing or does not answer.
        """
        return self._submitted(["sbatch", "--parsable", *options, script], cwd=cwd, env=env)

    def submit_command(self, options: list[str], command: str, *, cwd: Path, env: dict[str, str]) -> Sbatched:
        """`sbatch --parsable --wrap=COMMAND`: a job of one shell command (a staging job); its id, or SLURM's refusal.

        Raises:
            OperationError: sbatch is missing or does not answer.
        """
        return self._submitted(["sbatch", "--parsable", *options, f"--wrap={command}"], cwd=cwd, env=env)

    def _submitted(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> Sbatched:
        reply = self._sbatch(argv, cwd=cwd, env=env)
        job_id = reply.stdout.strip().split(";")[0] if reply.returncode == 0 else ""
        if job_id.isdigit():
            return Sbatched(argv, job_id)
        why = _sbatch_message(reply) if reply.returncode != 0 else f"it printed no job id: {reply.stdout.strip()!r}"
        return Sbatched(argv, None, why)

    # --- jobs and their states ----------------------------------------------------------------

    def still_queued(self, job_id: str) -> bool:
        """Whether the job (or a task of it) is still queued or running."""
        out = self._query(["squeue", "-h", "-j", job_id, "-o", "%T"])
        return out is not None and any(s in ACTIVE_STATES for s in out.split())

    def task_states(self, job_ids: list[str]) -> tuple[list[TaskState], str]:
        """States of every task of these jobs (one accounting query for all), and where they came from.

        A task's attempts are the times its job started it: 1 + its requeues.
        """
        if not job_ids:
            return [], "none"
        # The record (sacct, else the jobcomp file) keeps every attempt, also after the controller
        # forgot the job. squeue is the live view and wins wherever it knows the task: the record
        # learns of tasks and ends a moment late (slurmdbd) or only at the end of an attempt
        # (jobcomp); squeue's restart count gives the attempts of a task still queued or running.
        accounted = self._from_sacct(job_ids)
        source = "sacct" if accounted is not None else "squeue+jobcomp"
        merged: dict[tuple[str, int | None], TaskState] = {
            (s.job_id, s.task): s for s in (accounted if accounted is not None else self._from_jobcomp(job_ids))
        }
        for live in self._from_squeue(job_ids):
            key = (live.job_id, live.task)
            old = merged.get(key)
            merged[key] = TaskState(live.job_id, live.task, live.state, live.exit_code, max(live.attempts, old.attempts if old else 0),
                                    live.reason)
        return list(merged.values()), source

    def _from_sacct(self, job_ids: list[str]) -> list[TaskState] | None:
        # --duplicates: every attempt of a requeued task (one row each), oldest first
        out = self._query(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode,Start"])
        if out is None:
            return None
        merged: dict[tuple[str, int | None], TaskState] = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) < 4:
                continue
            job, tasks = parse_job_id(parts[0])
            state = parts[1].split()[0] if parts[1] else UNKNOWN
            started = 1 if _started(parts[3]) and state != "PENDING" else 0
            for task in tasks:
                old = merged.get((job, task))
                merged[(job, task)] = TaskState(job, task, state, _ended_code(state, parts[2]), started + (old.attempts if old else 0))
        return list(merged.values())

    def _from_squeue(self, job_ids: list[str]) -> list[TaskState]:
        out = self._query(["squeue", "-h", "-t", "all", "-r", "-j", ",".join(job_ids), "-O", _SQUEUE_FIELDS])
        states: list[TaskState] = []
        for line in (out or "").splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 5:
                continue
            job, tasks = parse_job_id(parts[0])
            state = parts[1] or UNKNOWN
            started = 1 if _started(parts[2]) and state not in _NOT_STARTED else 0
            restarts = int(parts[3]) if parts[3].isdigit() else 0
            code = _ended_code(state, _wait_status(parts[4]))
            reason = parts[5] if len(parts) > 5 and state == "PENDING" and parts[5] not in ("None", "(null)") else ""
            states.extend(TaskState(job, task, state, code, restarts + started, reason) for task in tasks)
        return states

    def _from_jobcomp(self, job_ids: list[str]) -> list[TaskState]:
        """The jobcomp file: a line when an attempt ends, oldest first.

        An attempt that is requeued as it ends (at its time limit, say) writes two lines with the
        same StartTime: its end (`JobState=TIMEOUT`) and then `JobState=PENDING`, the state the
        requeue left it in. Attempts are told apart by their StartTime, and PENDING there means
        REQUEUED (as sacct calls such an attempt).
        """
        wanted = set(job_ids)
        starts: dict[tuple[str, int | None], set[str]] = {}
        latest: dict[tuple[str, int | None], tuple[str, str]] = {}
        for fields in self._jobcomp_lines():
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

    def jobs_named(self, names: list[str], since: float) -> list[ClusterJob]:
        """Jobs of these names known to SLURM since `since` (a time.time()), with where sbatch ran.

        squeue for the jobs the controller still knows, sacct (with slurmdbd) else the jobcomp
        file for the others; a job may be listed more than once.
        """
        found: list[ClusterJob] = []

        def add(raw: str, workdir: str, submitted: str) -> None:
            found.append(ClusterJob(*parse_job_id(raw), workdir, submitted))

        out = self._query(["squeue", "-h", "-t", "all", "-r", "-n", ",".join(names), "-O", "JobArrayID:|,WorkDir:|,SubmitTime:|"])
        for line in (out or "").splitlines():
            parts = line.rstrip("|").split("|")
            if len(parts) >= 3:
                add(parts[0].strip(), "|".join(parts[1:-1]).strip(), parts[-1].strip())
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))
        out = self._query(["sacct", "-n", "-P", "-X", "-S", start, "--name", ",".join(names), "-o", "JobID,WorkDir,Submit"])
        if out is not None:
            for line in out.splitlines():
                parts = line.split("|")
                if len(parts) >= 3:
                    add(parts[0], "|".join(parts[1:-1]), parts[-1])
            return found
        wanted = set(names)
        for fields in self._jobcomp_lines():
            if fields.get("Name") not in wanted:
                continue
            array_job, task = fields.get("ArrayJobId") or "", fields.get("ArrayTaskId") or ""
            raw = f"{array_job}_{task}" if array_job not in ("", "0", _NO_ID) and task.isdigit() and task != _NO_ID \
                else fields.get("JobId", "")
            add(raw, fields.get("WorkDir", ""), fields.get("SubmitTime", ""))
        return found

    # --- interactive -------------------------------------------------------------------------

    def interactive(self, options: list[str], command: list[str], *, cwd: Path, env: dict[str, str]) -> int:
        """`srun --pty OPTIONS COMMAND` on this terminal (srun makes the allocation); its exit status.

        Raises:
            OperationError: srun is missing.
        """
        try:
            return self._interactive(["srun", "--pty", *options, *command], cwd=cwd, env=env)
        except FileNotFoundError as e:
            raise OperationError("srun not found: is this a SLURM login node?") from e

    def active_workdirs(self) -> list[str] | None:
        """Where sbatch ran (the work directory) for every job of this user still queued or running;
        None when squeue cannot be asked."""
        out = self._query(["squeue", "-h", "-u", getpass.getuser(), "-O", "JobID:|,WorkDir:|"])
        if out is None:
            return None
        found = []
        for line in out.splitlines():
            parts = line.rstrip().rstrip("|").split("|", 1)
            if len(parts) == 2 and parts[1].strip():
                found.append(parts[1].strip())
        return sorted(set(found))

    # --- cancelling ---------------------------------------------------------------------------

    def cancel(self, targets: list[str]) -> str | None:
        """`scancel` these jobs or array tasks (`123`, `123_4`, `123_[5-7]`): None when it did, else why not.

        scancel does not fail for a job that already ended.
        """
        if not targets:
            return None
        try:
            reply = self._runner(["scancel", *targets], timeout=QUERY_TIMEOUT)
        except FileNotFoundError:
            return "scancel not found: is this a SLURM login node?"
        except (OSError, TimeoutError) as e:
            return f"scancel did not answer: {e}"
        if reply.returncode == 0:
            return None
        return "; ".join(ln.removeprefix("scancel: error: ").strip() for ln in (reply.stderr or reply.stdout).splitlines() if ln.strip()) \
            or f"exit status {reply.returncode}"

    # --- efficiency -------------------------------------------------------------------------------

    def usage(self, job_ids: list[str]) -> list[Usage] | None:
        """What accounting (slurmdbd) recorded of the latest attempt of every task of these jobs
        that ended; None when accounting cannot be asked (sacct fails: no slurmdbd)."""
        if not job_ids:
            return []
        out = self._query(["sacct", "-n", "-P", "-j", ",".join(job_ids),
                           "-o", "JobID,State,Elapsed,Timelimit,TotalCPU,AllocCPUS,MaxRSS,ReqMem"])
        if out is None:
            return None
        allocations: dict[str, list[str]] = {}
        peaks: dict[str, int] = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) < 8:
                continue
            head, _, step = parts[0].partition(".")
            if not step:
                allocations[head] = parts
            rss = parse_size(parts[6])
            if rss is not None:
                peaks[head] = max(peaks.get(head, 0), rss)
        found: list[Usage] = []
        for raw, parts in allocations.items():
            state = parts[1].split()[0] if parts[1] else UNKNOWN
            if state in ACTIVE_STATES or state == UNKNOWN:
                continue
            job, tasks = parse_job_id(raw)
            elapsed = parse_duration(parts[2])
            cpus = int(parts[5]) if parts[5].isdigit() else 0
            if elapsed is None or len(tasks) != 1:
                continue
            found.append(Usage(job, tasks[0], state, elapsed, parse_duration(parts[3]), parse_seconds(parts[4]) or 0.0,
                               cpus, peaks.get(raw), _req_mem(parts[7], cpus)))
        return found


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)$")
_SIZE_FACTOR = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(raw: str) -> int | None:
    """sacct's sizes (MaxRSS 204800K, ReqMem 256M) in bytes; None for an empty field."""
    m = _SIZE.match(raw.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _SIZE_FACTOR[m.group(2)])


def _req_mem(raw: str, cpus: int) -> int | None:
    """ReqMem for the whole job: older SLURM suffixes n (per node) or c (per CPU)."""
    raw = raw.strip()
    per_cpu = raw.endswith("c")
    size = parse_size(raw.rstrip("nc"))
    if size is None:
        return None
    return size * max(cpus, 1) if per_cpu else size


_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def parse_seconds(raw: str) -> float | None:
    """SLURM's [D-][HH:]MM:SS[.mmm] in seconds; None for UNLIMITED, Partition_Limit or an empty field."""
    m = _DURATION.match(raw.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (m.group(1) or 0), (m.group(2) or 0), m.group(3), m.group(4)
    return int(days) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_duration(raw: str) -> int | None:
    """As parse_seconds, in whole seconds."""
    seconds = parse_seconds(raw)
    return None if seconds is None else round(seconds)
