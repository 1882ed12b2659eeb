"""Submit: a compiled run (or some of its tasks) -> SLURM jobs, through `slurm.Scheduler`.

Pre-flight on the submitting host first (image, data, archives, log folder: `preflight`),
then `sbatch --test-only` for every chunk; any failure stops before anything is queued.
Then `sbatch --parsable` from the run directory once per chunk, and one JSON line per
queued chunk appended to submissions.jsonl. Secrets are never passed: the names of the
manifest's secrets are removed from the environment sbatch exports.

Chunks: MaxArraySize caps the array *index*, so a run (or a task list) is split into
arrays of at most C = MaxArraySize - 1 tasks: task g goes to the chunk with offset
(g // C) * C, as array index g - offset; the job adds MCOMPILE_TASK_OFFSET back. With
`resources.max_parallel` each chunk waits for the one before (`afterany`), so the limit
holds for the run as a whole; without it the chunks run side by side.

Packed (run.pack: N): array index i of a chunk runs the chunk's tasks from position i * N,
N of them; the chunk names its tasks to the job in MCOMPILE_TASKS (`0-7,9`, in sbatch's
environment: --export would split it at the commas). A rerun packs the tasks it names the same way.

Nothing here prints: `submit_run` and `rerun` return what they queued and the notes to show
(`Submitted`), or raise `SubmitError`, which carries what was queued before the failure.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shlex
import stat
import subprocess
import sys
import typing as t
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OperationError, UsageError
from .jobdir import JOB_SCRIPT, MANIFEST, read_resolved
from .model import Resolved, pack_size, repo_folder
from .plan import (
    ARCHIVE_VARIABLE_PREFIX,
    IMAGE_STAT_VARIABLE,
    PACK_TASKS_VARIABLE,
    SUBMISSION_VARIABLES,
    TASK_OFFSET_VARIABLE,
    fill_log_pattern,
    job_name,
    log_file_pattern,
    runtime_paths,
    slurm_log_file,
    tasks_log_themselves,
)
from .progress import Progress
from .runs import NOT_QUEUED, NOT_SUBMITTED, is_failed, run_task_rows
from .slurm import DEFAULT_MAX_ARRAY_SIZE, UNKNOWN, Scheduler
from .snapshot import CodeSnapshot, ImageIdentity, image_identity, recorded_repo, snapshot_code
from .stage import Archive, check_subset, expand, make_log_folder, planned_archives, stage_archives
from .submissions import Submission, append_record, chunk_record, new_key, read_run_submissions
from .tasklist import format_task_spec, parse_task_spec


@dataclasses.dataclass
class Submitted:
    """What a submission did: the jobs it queued, in order, and what to tell the user, in order."""

    jobs: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


class SubmitError(OperationError):
    """A submission failed; `submitted` holds the jobs it queued before (perhaps none) and its notes."""

    def __init__(self, message: str, submitted: Submitted) -> None:
        super().__init__(message)
        self.submitted = submitted


# --- pre-flight on the submitting host -----------------------------------------------------

def _check(run_dir: Path, resolved: Resolved, *, strict: bool) -> list[str]:
    """The image, the data subsets and the secret files, at the paths the job will use; the warnings to show."""
    warnings: list[str] = []
    submit_from = resolved["cluster"].get("submit_from")
    if submit_from:  # Trillium: $HOME is read-only on the compute nodes
        folder = os.path.realpath(expand(submit_from, cwd=run_dir))
        if os.path.commonpath([folder, os.path.realpath(run_dir)]) != folder:
            raise OperationError(f"jobs are submitted from {submit_from} ({folder}) on this cluster (cluster.submit_from), "
                                 f"and the run folder {run_dir} is outside it: compile with --runs under it, e.g. --runs {submit_from}/runs")
    image = expand(resolved["container"]["image"], cwd=run_dir)
    if not os.path.isfile(image):
        raise OperationError(f"container image not found: {image} (container.image)")
    for rp in runtime_paths(resolved):
        try:
            path = expand(rp.path, cwd=run_dir)
        except OperationError:
            continue  # a variable of the node's (${MCOMPILE_TASK}): the job checks it there
        if not os.path.isfile(path):
            raise OperationError(f"{rp.what} not found: {path} ({rp.field})")
    data = resolved.get("data")
    if data:
        root = Path(expand(data["root"], cwd=run_dir))
        for subset in data["subsets"]:  # all of them before any archive is built: refuse without side effects
            check_subset(root, subset)
    for name, secret in resolved["secrets"].items():
        try:
            path = expand(secret["file"], cwd=run_dir)
        except OperationError:
            continue  # may be set on the compute node only
        try:
            mode = os.stat(path).st_mode
        except OSError:
            warnings.append(f"secret {name}: {path} is not readable here; the job reads it on the compute node")
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            message = f"secret {name}: {path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            if strict:
                raise OperationError(f"{message} (refused with --strict; nothing was queued)")
            warnings.append(message)
    return warnings


@dataclasses.dataclass(frozen=True)
class Preflight:
    """What pre-flight found and made ready on the submitting host."""

    warnings: list[str]
    archives: list[Archive]  # built or reused
    code: CodeSnapshot | None  # code: made or found
    image: ImageIdentity  # the image as submitted: the job refuses another
    logs: str  # the log folder, created; a % in it doubled (sbatch expands %x patterns)
    log_file: str  # the --output file of the first array
    slurm_log: str  # SLURM's own messages of a later array (its tasks log themselves)
    to_build: list[Archive] = dataclasses.field(default_factory=list)  # data.build: job: archives the staging job builds

    def log_options(self, chunk: ChunkPlan) -> list[str]:
        """Where SLURM writes the output of a chunk's tasks."""
        if tasks_log_themselves(chunk.offset, chunk.pack):  # SLURM's own messages go here
            return [f"--output={self.logs}/{self.slurm_log}", "--open-mode=append"]
        return [f"--output={self.logs}/{self.log_file}"]

    @property
    def exports(self) -> list[str]:
        """What the submission names to the job (--export): archives, code snapshot, image; nothing secret."""
        code = self.code.exports if self.code else []
        return [*(a.export for a in self.archives), *code, f"{IMAGE_STAT_VARIABLE}={self.image.stat}"]

    def notes(self) -> list[str]:
        """What pre-flight made ready, for the user."""
        notes = [f"data {a.subset}: {'built' if a.built else 'to be built in a staging job' if a in self.to_build else 'reusing'} "
                 f"archive {a.path}" for a in self.archives]
        if self.code:
            c = self.code
            notes.append(f"code: {'built' if c.built else 'reusing'} snapshot {c.path} of {c.repo} at {c.commit_name}"
                         + (f" ({c.files:,} file{'s' if c.files != 1 else ''})" if c.built else ""))
        return notes

    def options(self, chunk: ChunkPlan, array: str | None) -> list[str]:
        """The sbatch options of one chunk (`array`: its --array, None for a single job)."""
        exports = ["ALL", *self.exports, *([] if chunk.pack > 1 else [f"{TASK_OFFSET_VARIABLE}={chunk.offset}"])]
        options = ["--export=" + ",".join(exports), *self.log_options(chunk)]
        if array is not None:
            options.append(f"--array={array}")
        return options


def preflight(run_dir: Path, resolved: Resolved, *, strict: bool = False, progress: Progress | None = None,
              repo: str | None = None) -> Preflight:
    """Check what the job will need, then snapshot the code, identify the image, build or reuse
    the archives and create the log folder.

    With `strict`, a secret file readable by others is refused, not only warned about.
    `progress` hears of archives being built. `repo`: code.repo's folder (with code:).

    Raises:
        OperationError: something the job needs is missing, or the code is refused; nothing was queued.
    """
    warnings = _check(run_dir, resolved, strict=strict)
    code = None
    if "code" in resolved:
        if repo is None:
            raise OperationError("code: no repository folder to snapshot")
        code = snapshot_code(resolved, repo, cwd=run_dir)
        assert code is not None
        warnings += code.warnings
    image = image_identity(expand(resolved["container"]["image"], cwd=run_dir), progress=progress)
    data = resolved.get("data")
    if data and data.get("build") == "job":  # fingerprinted here, built in the staging job
        archives, missing = planned_archives(resolved, cwd=run_dir)
    else:
        archives, missing = stage_archives(resolved, cwd=run_dir, progress=progress), []
    logs = make_log_folder(resolved, cwd=run_dir)
    assert logs is not None  # without unset_ok, an unset variable raises
    # % in the folder (also from a variable's value) and the name is doubled: sbatch expands %x patterns
    return Preflight(warnings, archives, code, image, logs.replace("%", "%%"), log_file_pattern(resolved),
                     slurm_log_file(resolved["name"].replace("%", "%%"), "%A"), missing)


def by_hand_command(run_dir: Path, resolved: Resolved, exports: list[str]) -> str:
    """The shell line that submits the run by hand as --submit would (the job finds its log itself),
    naming `exports` (archives, code snapshot, image: `Preflight.exports`) to the job.

    sbatch exports the submitting shell's environment: the secrets' variables are left out.
    """
    line = ["sbatch"]
    if exports:
        line.append("--export=ALL," + ",".join(exports))
    unset = [arg for name in sorted(resolved["secrets"]) if name in os.environ for arg in ("-u", name)]
    if unset:
        line = ["env", *unset, *line]
    return f"cd {shlex.quote(str(run_dir))} && {shlex.join([*line, JOB_SCRIPT])}"


def by_hand_code(resolved: Resolved, manifest_path: str) -> CodeSnapshot | None:
    """`mcompile stage`: the code snapshot a by-hand submission names (None without code:).

    Raises:
        OperationError: as `snapshot.snapshot_code`.
    """
    if "code" not in resolved:
        return None
    return snapshot_code(resolved, repo_folder(resolved["code"]["repo"], os.path.dirname(os.path.abspath(manifest_path))))


def by_hand_image(resolved: Resolved) -> list[str]:
    """`mcompile stage`: the image's identity for the by-hand line; none when the image is not here."""
    try:
        image = expand(resolved["container"]["image"])
    except OperationError:
        return []
    if not os.path.isfile(image):
        return []
    return [f"{IMAGE_STAT_VARIABLE}={image_identity(image).stat}"]


# --- chunks -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """One array of a submission: the run's task numbers it holds and their common offset."""

    offset: int
    tasks: tuple[int, ...]
    pack: int = 1  # tasks per array index, one after the other

    @property
    def indices(self) -> list[int]:
        if self.pack > 1:
            return list(range(-(-len(self.tasks) // self.pack)))
        return [task - self.offset for task in self.tasks]

    def env(self) -> dict[str, str]:
        """What the chunk names to the job in sbatch's environment: a packed chunk's tasks."""
        return {PACK_TASKS_VARIABLE: format_task_spec(self.tasks)} if self.pack > 1 else {}

    def array(self, max_parallel: int | None) -> str:
        spec = format_task_spec(self.indices)
        return f"{spec}%{max_parallel}" if max_parallel else spec


def chunk_size(max_array_size: int) -> int:
    """Tasks per array: indices must stay below MaxArraySize; C = MaxArraySize - 1 (at least 1)."""
    return max(1, max_array_size - 1)


def plan_chunks(tasks: t.Iterable[int], max_array_size: int) -> list[ChunkPlan]:
    """Group the run's task numbers by chunk: task g -> offset (g // C) * C, index g - offset."""
    size = chunk_size(max_array_size)
    groups: dict[int, list[int]] = {}
    for task in sorted(set(tasks)):
        groups.setdefault(task // size * size, []).append(task)
    return [ChunkPlan(offset, tuple(group)) for offset, group in sorted(groups.items())]


PACK_SPEC_PARTS = 4096  # ranges in one chunk's MCOMPILE_TASKS: well under the 128 KiB a variable may hold


def plan_packed_chunks(tasks: t.Iterable[int], max_array_size: int, pack: int) -> list[ChunkPlan]:
    """A packed run's tasks as arrays: `pack` tasks per index, at most C indices per array, and
    at most PACK_SPEC_PARTS ranges in an array's task list (a rerun of scattered tasks)."""
    size = chunk_size(max_array_size) * pack
    out: list[ChunkPlan] = []
    group: list[int] = []
    parts = 0
    for task in sorted(set(tasks)):
        starts_part = not group or task != group[-1] + 1
        if group and (len(group) == size or (starts_part and parts == PACK_SPEC_PARTS)):
            out.append(ChunkPlan(group[0], tuple(group), pack))
            group, parts, starts_part = [], 0, True
        group.append(task)
        parts += starts_part
    if group:
        out.append(ChunkPlan(group[0], tuple(group), pack))
    return out


# --- queuing --------------------------------------------------------------------------------

def job_env(resolved: Resolved) -> dict[str, str]:
    """The environment sbatch (or srun) exports to the job: this one, less the secrets and what the submission names itself."""
    env = dict(os.environ)
    for name in resolved["secrets"]:
        env.pop(name, None)
    # the submission names these itself; a value left in the submitting shell must not leak in
    for name in [n for n in env if n in (TASK_OFFSET_VARIABLE, PACK_TASKS_VARIABLE, *SUBMISSION_VARIABLES) or n.startswith(ARCHIVE_VARIABLE_PREFIX)]:
        env.pop(name)
    return env


def _git_state(manifest_path: str) -> dict[str, t.Any] | None:
    folder = os.path.dirname(os.path.abspath(manifest_path))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """One submission of a run at a time (two completing --submit must not both queue the missing tasks)."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise OperationError(f"cannot open {run_dir}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclasses.dataclass
class _Request:
    """What one submission queues and how it is recorded."""

    kind: t.Literal["submit", "rerun"]
    tasks: list[int]  # the run's task numbers to queue now
    planned: list[int]  # every task this submission means to queue (more when completing)
    key: str  # shared by the chunks of one submission
    manifest_path: str
    repo: str | None  # code.repo's folder (with code:)
    after: str | None = None  # with max_parallel: the first chunk waits for this job
    notes: list[str] = dataclasses.field(default_factory=list)  # said before the submission's own


def _submit(run_dir: Path, resolved: Resolved, request: _Request, *, strict: bool, scheduler: Scheduler,
            progress: Progress | None) -> Submitted:
    """Pre-flight, test every chunk, queue them in order and record each.

    Raises:
        SubmitError: with what was queued before (and the notes so far).
    """
    done = Submitted(notes=list(request.notes))
    try:
        _queue(run_dir, resolved, request, done, strict=strict, scheduler=scheduler, progress=progress)
    except SubmitError:
        raise
    except OperationError as e:
        raise SubmitError(str(e), done) from e
    return done


def _queue(run_dir: Path, resolved: Resolved, request: _Request, done: Submitted, *, strict: bool, scheduler: Scheduler,
           progress: Progress | None) -> None:
    ready = preflight(run_dir, resolved, strict=strict, progress=progress, repo=request.repo)
    done.notes.extend(f"warning: {w}" for w in ready.warnings)
    ntasks = len(resolved["run"]["tasks"])
    array = ntasks > 1
    size, note = scheduler.max_array_size() if array else (DEFAULT_MAX_ARRAY_SIZE, None)
    if note and max(request.tasks) >= chunk_size(DEFAULT_MAX_ARRAY_SIZE):
        done.notes.append(note)
    done.notes.extend(ready.notes())
    pack = pack_size(resolved["run"])
    if pack > 1:
        chunks = plan_packed_chunks(request.tasks, size, pack)
    else:
        chunks = plan_chunks(request.tasks, size) if array else [ChunkPlan(0, tuple(request.tasks))]
    max_parallel = resolved["resources"].get("max_parallel") if array else None
    env = job_env(resolved)

    def options(chunk: ChunkPlan) -> list[str]:
        return ready.options(chunk, chunk.array(max_parallel) if array else None)

    estimate = None
    for i, chunk in enumerate(chunks):  # every chunk before queuing any: a refusal usually queues nothing
        tried = scheduler.try_job(options(chunk), JOB_SCRIPT, cwd=run_dir, env={**env, **chunk.env()})
        if tried.refusal is not None:
            which = f" (tasks {format_task_spec(chunk.tasks)}, array {i + 1} of {len(chunks)})" if len(chunks) > 1 else ""
            raise OperationError(f"SLURM refuses this job{which} (sbatch --test-only): {tried.refusal}; nothing was queued")
        estimate = estimate or tried

    try:
        manifest_sha = hashlib.sha256(Path(request.manifest_path).read_bytes()).hexdigest()
    except OSError:
        manifest_sha = hashlib.sha256((run_dir / MANIFEST).read_bytes()).hexdigest()
    git = _git_state(request.manifest_path)
    staging = _staging_job(run_dir, resolved, ready, env, done, scheduler) if ready.to_build else None
    queued: list[tuple[str, ChunkPlan]] = []
    previous = request.after
    for i, chunk in enumerate(chunks):
        after = [f"afterok:{staging}"] if staging else []
        if max_parallel and previous:
            after.append(f"afterany:{previous}")
        # a failed staging job never satisfies afterok: SLURM cancels the tasks rather than leave them waiting
        dependency = [f"--dependency={','.join(after)}", *(["--kill-on-invalid-dep=yes"] if staging else [])] if after else []
        sbatched = scheduler.submit([*options(chunk), *dependency], JOB_SCRIPT, cwd=run_dir, env={**env, **chunk.env()})
        if sbatched.job_id is None:
            _refused(run_dir, request, chunks, queued, i, sbatched.refusal, done)
        job_id = sbatched.job_id
        record = chunk_record(job_id=job_id, sbatch=sbatched.argv, run_dir=run_dir, manifest_sha256=manifest_sha, git=git,
                              key=request.key, kind=request.kind, offset=chunk.offset,
                              code=ready.code.record() if ready.code else None, image=ready.image.record(),
                              array=chunk.array(max_parallel) if array else None, tasks=chunk.tasks, planned=request.planned,
                              pack=chunk.pack)
        if staging:
            record["staging_job"] = staging
        append_record(run_dir, record)
        queued.append((job_id, chunk))
        previous = job_id
        n = len(chunk.tasks)
        what = f"task {chunk.tasks[0]}" if n == 1 else f"{n} tasks: {record['tasks']}"
        if chunk.pack > 1:
            k = len(chunk.indices)
            what += f"; {k} array task{'s' if k != 1 else ''} of up to {chunk.pack}, one task after the other"
        where = f", array {record['array']}" if len(chunks) > 1 else ""
        done.notes.append(f"submitted job {job_id} ({what}{where})")
        done.jobs.append(job_id)
    if len(chunks) > 1:
        chained = "; each array waits for the one before (max_parallel holds across them)" if max_parallel else ""
        done.notes.append(f"{len(request.tasks)} tasks as {len(chunks)} arrays (MaxArraySize {size}){chained}")
    if estimate and estimate.start:
        where = f", {estimate.where}" if estimate.where else ""
        done.notes.append(f"expected to start around {estimate.start.replace('T', ' ')} (sbatch --test-only{where})")


STAGING_MEM = "2G"  # the staging job: one CPU, this much memory, the run's time limit


def staging_log(resolved: Resolved) -> str:
    """The file (in the log folder) of a staging job's output, %j its job id."""
    return slurm_log_file(resolved["name"].replace("%", "%%"), "%j").replace("_slurm.out", "_stage.out")


def _staging_job(run_dir: Path, resolved: Resolved, ready: Preflight, env: dict[str, str], done: Submitted,
                 scheduler: Scheduler) -> str:
    """Queue the job that builds the missing archives (`data.build: job`); its id.

    It runs `mcompile stage RUN_DIR --expect FP,..` with this Python on a compute node: it fails
    when the data changed since it was fingerprinted here, so no task starts on the wrong archive.

    Raises:
        OperationError: sbatch refused it; nothing was queued.
    """
    cluster = resolved["cluster"]
    options = [f"--job-name={job_name(resolved['project'], resolved['name'])}-stage", "--ntasks=1", "--cpus-per-task=1",
               f"--mem={STAGING_MEM}", f"--time={resolved['resources']['time']}", f"--output={ready.logs}/{staging_log(resolved)}",
               *(f"--{key}={cluster[key]}" for key in ("account", "partition", "qos") if cluster.get(key))]
    expect = ",".join(a.fingerprint for a in ready.archives)
    command = shlex.join([sys.executable, "-m", "manifest_compiler", "stage", str(run_dir), "--expect", expect])
    sbatched = scheduler.submit_command(options, f"exec {command}", cwd=run_dir, env=env)
    if sbatched.job_id is None:
        raise OperationError(f"sbatch refused the staging job (data.build: job): {sbatched.refusal}; nothing was queued")
    subsets = ", ".join(a.subset for a in ready.to_build)
    done.notes.append(f"staging job {sbatched.job_id} builds the archives of {subsets} (data.build: job); the tasks start "
                      f"after it succeeds (afterok), and SLURM cancels them if it fails; its log: "
                      f"{fill_log_pattern(ready.logs + '/' + staging_log(resolved), sbatched.job_id)}")
    return sbatched.job_id


def _refused(run_dir: Path, request: _Request, chunks: list[ChunkPlan], queued: list[tuple[str, ChunkPlan]],
             failed: int, why: str, done: Submitted) -> t.NoReturn:
    """sbatch refused a chunk: nothing else is queued; say what was and how to queue the rest."""
    if not queued:
        raise SubmitError(f"sbatch failed: {why}; nothing was queued or recorded, the run can be submitted again", done)
    finished = {task for _, chunk in queued for task in chunk.tasks}
    missing = format_task_spec(task for task in request.planned if task not in finished)
    lines = [
        f"sbatch failed for tasks {format_task_spec(chunks[failed].tasks)} (array {failed + 1} of {len(chunks)}): {why}",
        "queued: " + ", ".join(f"job {job} (tasks {format_task_spec(chunk.tasks)})" for job, chunk in queued),
        f"not queued: tasks {missing}",
        f"to queue them: mcompile rerun {shlex.quote(str(run_dir))} --tasks {missing}"
        + (" (or the same --submit again, which queues only these)" if request.kind == "submit" else ""),
    ]
    raise SubmitError("\nmcompile: ".join(lines), done)


# --- the commands -------------------------------------------------------------------------

def submit_run(run_dir: Path, *, manifest_path: str, strict: bool = False, scheduler: Scheduler,
               progress: Progress | None = None) -> Submitted:
    """`--submit`: the whole run; or, when its latest submission left tasks unqueued, only those.

    Raises:
        SubmitError: pre-flight or sbatch failed (what was queued is recorded and said).
    """
    resolved = read_resolved(run_dir)
    ntasks = len(resolved["run"]["tasks"])
    with _locked(run_dir):
        subs = read_run_submissions(run_dir, ntasks)
        latest = subs[-1] if subs else None
        repo = repo_folder(resolved["code"]["repo"], os.path.dirname(os.path.abspath(manifest_path))) if "code" in resolved else None
        if latest and latest.missing:
            request = _completion(latest, manifest_path, repo, resolved, scheduler)
        else:
            everything = list(range(ntasks))
            request = _Request("submit", everything, everything, new_key(), manifest_path, repo)
        return _submit(run_dir, resolved, request, strict=strict, scheduler=scheduler, progress=progress)


def _completion(latest: Submission, manifest_path: str, repo: str | None, resolved: Resolved, scheduler: Scheduler) -> _Request:
    missing = latest.missing
    note = (f"the latest submission ({latest.key}) queued tasks {format_task_spec(latest.queued)} but not "
            f"{format_task_spec(missing)}: queuing only those (submit again afterwards for a whole new submission)")
    last_job = latest.chunks[-1].job_id
    after = last_job if resolved["resources"].get("max_parallel") and scheduler.still_queued(last_job) else None
    kind: t.Literal["submit", "rerun"] = "rerun" if latest.kind == "rerun" else "submit"
    return _Request(kind, missing, latest.planned, latest.key, manifest_path, repo, after, [note])


def rerun(run_dir: Path, *, tasks: str | None, failed: bool, strict: bool = False, scheduler: Scheduler,
          progress: Progress | None = None) -> Submitted:
    """`rerun`: queue some tasks of a compiled run again (same job directory, no recompile).

    Raises:
        UsageError: no tasks named, or a task list that does not fit the run.
        SubmitError: pre-flight or sbatch failed.
    """
    if not tasks and not failed:
        raise UsageError("mcompile rerun: say which tasks: --failed, --tasks LIST (e.g. 3,7-9), or both")
    resolved = read_resolved(run_dir)
    ntasks = len(resolved["run"]["tasks"])
    chosen = parse_task_spec(tasks, ntasks) if tasks else list(range(ntasks))
    notes: list[str] = []
    with _locked(run_dir):
        if failed:
            rows, _, source = run_task_rows(run_dir, job_name(resolved["project"], resolved["name"]), scheduler=scheduler)
            unknown = [r.task for r in rows if r.state == UNKNOWN and r.task in set(chosen)]
            if unknown:
                notes.append(f"warning: no state known for tasks {format_task_spec(unknown)} (accounting: {source}); "
                             "they are not rerun; name them with --tasks if they should be")
            picked = {r.task for r in rows if is_failed(r.state)}
            chosen = [task for task in chosen if task in picked]
            if not chosen:
                notes.append("no failed tasks: every task" + (" named" if tasks else "") + " completed, or is queued or running; nothing submitted")
                return Submitted(notes=notes)
            never = [r.task for r in rows if r.task in set(chosen) and r.state in (NOT_QUEUED, NOT_SUBMITTED)]
            notes.append(f"rerunning tasks {format_task_spec(chosen)}"
                         + (f" (never queued: {format_task_spec(never)})" if never else ""))
        repo = recorded_repo(run_dir) if "code" in resolved else None
        request = _Request("rerun", chosen, chosen, new_key(), str(run_dir / MANIFEST), repo, notes=notes)
        return _submit(run_dir, resolved, request, strict=strict, scheduler=scheduler, progress=progress)
