"""Plan: resolved manifest -> JobPlan. Pure: no I/O, no jinja.

The plan decides everything the job does: sbatch directives, the per-task folders,
the staging steps and the bind-mount plan. `render` only spells it out, so the
binds in job.sbatch and mounts.json come from the same list.
"""

from __future__ import annotations

import re
import typing as t

from . import __version__, model
from .model import Resolved

# Shell variables the job script defines before it uses any path below.
JOB = "${MCOMPILE_JOB}"  # the array's job id (the job id without an array)
TASK = "${MCOMPILE_TASK}"  # the task's number in the run
LOG_NAME = "${log_name}"  # the experiment's name, where the job logs a task itself
PACK_INDEX = "${pack_index}"  # a packed run: the array index, which the job's parent shell sets

# A variable in a manifest path: $NAME or ${NAME}; anything else with a $ is literal text.
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_INTERNAL_VARS = {"MCOMPILE_JOB", "MCOMPILE_TASK", "HOME"}


class Mount(t.NamedTuple):
    """One bind of the container: `source` on the host (symbolic) at `target` inside."""

    source: str
    target: str
    mode: t.Literal["ro", "rw"]
    lifetime: t.Literal["persistent", "job", "external"]
    purpose: str
    create: bool = False  # the job creates the source folder

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "mode": self.mode, "lifetime": self.lifetime, "purpose": self.purpose}


class RuntimePath(t.NamedTuple):
    """A runtime option whose value is a host file the job checks first: `--overlay IMAGE:ro`."""

    option: str
    path: str  # on the host (symbolic)
    suffix: str  # appended to the path in the option's value (`:ro`)
    what: str  # for messages: "overlay image"
    field: str  # the manifest field it comes from


class StageStep(t.NamedTuple):
    """How one data subset reaches the node."""

    subset: str
    method: t.Literal["archive", "copy", "bind"]
    source: str  # the subset on the host (symbolic)
    dest: str  # where the job puts it (symbolic); the source itself for bind
    position: int  # in data.subsets; archive steps read archive_variable(position)

    @property
    def variable(self) -> str:
        """The variable naming this subset's archive in a submission (archive steps)."""
        return archive_variable(self.position)


class CodePlan(t.NamedTuple):
    """How the code snapshot reaches the task: named by the submission, extracted on every node."""

    target: str  # in the container
    dest: str  # the task's node-local folder it is extracted into (symbolic)
    snapshots: str  # <scratch>/<project>/.mcompile/code (symbolic)


class JobPlan(t.NamedTuple):
    resolved: Resolved
    compiler_version: str
    job_name: str
    directives: list[tuple[str, str | None]]  # (long option, value or None for a flag)
    log_path: str  # symbolic, with SLURM's %A/%a/%j patterns
    log_in_script: bool  # no variables in log_path: #SBATCH --output can carry it
    log_dir: str  # outputs.logs as written (symbolic); a later chunk's tasks log there themselves
    log_vars: list[str]  # the variables log_dir uses (checked by the job only where it needs them)
    task_log: str  # the file in log_dir where the job logs a task itself, in the job's shell variables
    tasks: t.Sequence[str]  # a GridTasks for a grid: computed on demand, never a million strings
    array: str | None  # --array value, None for a single task
    local_root: str  # local_tmp (symbolic)
    local_dir: str  # the task's own folder under local_tmp (symbolic)
    outputs_dir: str  # the task's persistent folder (symbolic)
    image: str
    staged_image: str | None
    pack_local: str | None  # a packed run's node-local folder shared by the tasks of an array task (the staged image)
    runtime: str
    entry: str
    runtime_flags: list[str]
    runtime_paths: list[RuntimePath]  # runtime options naming a host file (--overlay IMAGE:ro), each checked on the node
    workdir: str | None
    mounts: list[Mount]
    staging: list[StageStep]
    archive_dir: str | None
    code: CodePlan | None  # code: in the manifest
    env: dict[str, str]
    secrets: dict[str, str]  # name -> file (symbolic)
    modules: list[str]
    required_vars: list[tuple[str, str]]  # (variable, manifest field that uses it)
    core_hours: float
    gpu_hours: float
    launcher: model.Launcher
    processes_per_node: int  # processes each node runs (SLURM tasks, or torchrun's --nproc-per-node)
    world_size: int  # processes of one task, all nodes together
    requeue: model.Requeue | None  # before_end in seconds, max_restarts
    wandb: model.Wandb | None = None  # W&B for every task (the job sets its variables)
    pack: int = 1  # tasks each array task runs one after the other (run.pack); 1: one

    @property
    def distributed(self) -> bool:
        """The job starts its containers with srun on every node of the allocation."""
        return self.launcher != "single"


def archive_dir(resolved: Resolved) -> str:
    """Where `stage: archive` keeps its tars: <scratch>/<project>/.mcompile/archives."""
    scratch = resolved["cluster"]["scratch"].rstrip("/")
    return f"{scratch}/{resolved['project']}/.mcompile/archives"


def code_dir(resolved: Resolved) -> str:
    """Where code snapshots are kept: <scratch>/<project>/.mcompile/code."""
    scratch = resolved["cluster"]["scratch"].rstrip("/")
    return f"{scratch}/{resolved['project']}/.mcompile/code"


# Which tasks an array runs, named by its submission: the first task of an array (its index 0),
# or for a packed run the list of the array's tasks (`0-7,9`), N of them per array task.
TASK_OFFSET_VARIABLE = "MCOMPILE_TASK_OFFSET"
PACK_TASKS_VARIABLE = "MCOMPILE_TASKS"
ARCHIVE_VARIABLE_PREFIX = "MCOMPILE_ARCHIVE_"
# What a submission names to the job in --export, besides the archives (never secret, never
# taken from the submitting shell): the code snapshot's SHA-256, its commit, and the image's
# size and mtime at submission.
CODE_VARIABLE = "MCOMPILE_CODE"
CODE_COMMIT_VARIABLE = "MCOMPILE_CODE_COMMIT"
IMAGE_STAT_VARIABLE = "MCOMPILE_IMAGE_STAT"
SUBMISSION_VARIABLES = (CODE_VARIABLE, CODE_COMMIT_VARIABLE, IMAGE_STAT_VARIABLE)


def archive_variable(index: int) -> str:
    """The variable in which a submission names the archive of data subset `index` (its
    fingerprint): MCOMPILE_ARCHIVE_<index>. Never taken from the submitting shell."""
    return f"{ARCHIVE_VARIABLE_PREFIX}{index}"


def job_name(project: str, name: str) -> str:
    """The name of a run's jobs (#SBATCH --job-name): <project>-<name>."""
    return f"{project}-{name}"


def log_file(name: str, job: str, task: str) -> str:
    """A task's log file: <name>_<job>_<task>.out, `job` and `task` as SLURM's patterns (%A, %a),
    the job's shell variables (JOB, TASK) or values."""
    return f"{name}_{job}_{task}.out"


def tasks_log_themselves(offset: int, pack: int) -> bool:
    """Whether the tasks of an array log themselves, each under its run-wide number
    (<name>_<job>_<task>.out), SLURM's own messages going to slurm_log_file: a later array of a
    run past MaxArraySize (its index is not the task's number), and every array of a packed run."""
    return offset != 0 or pack > 1


def slurm_log_file(name: str, job: str) -> str:
    """Where SLURM writes its own messages for a later array of a run past MaxArraySize, whose
    tasks log themselves (their array index is not their task number): <name>_<job>_slurm.out."""
    return f"{name}_{job}_slurm.out"


def own_logs_pattern(slurm_log: str) -> str:
    """For the file of SLURM's own messages of an array whose tasks log themselves
    (slurm_log_file: <name>_<job>_slurm.out), the pattern of those logs, %a standing for the
    run's task number: <name>_<job>_%a.out. Another pattern is returned as it is."""
    suffix = "_slurm.out"
    return slurm_log[: -len(suffix)] + "_%a.out" if slurm_log.endswith(suffix) else slurm_log


def log_file_pattern(resolved: Resolved) -> str:
    """The file part of the --output pattern: <name>_%A_%a.out, or <name>_%j_0.out without an
    array; <name>_%A_slurm.out for a packed run, whose tasks each log themselves."""
    name = resolved["name"]
    if model.pack_size(resolved["run"]) > 1:
        return slurm_log_file(name, "%A")
    return log_file(name, "%A", "%a") if len(resolved["run"]["tasks"]) > 1 else log_file(name, "%j", "0")


def log_pattern(resolved: Resolved) -> str:
    """The --output pattern (symbolic): <logs>/<name>_%A_%a.out, or _%j_0.out without an array.

    A `%` of the folder itself is doubled: sbatch would read `%x` in it as a pattern.
    """
    logs = resolved["outputs"]["logs"].rstrip("/").replace("%", "%%")
    return f"{logs}/{log_file_pattern(resolved)}"


def fill_log_pattern(pattern: str, job_id: str) -> str:
    """An --output pattern with the job's id in place of %A and %j, and %% read as %; %a stays."""
    return "%".join(part.replace("%A", job_id).replace("%j", job_id) for part in pattern.split("%%"))


def _depth(target: str) -> int:
    return 0 if target.startswith("$") else target.count("/")


def plan_job(resolved: Resolved) -> JobPlan:
    """Decide what the job does for a resolved manifest."""
    name, project = resolved["name"], resolved["project"]
    cluster, res, c = resolved["cluster"], resolved["resources"], resolved["container"]
    tasks = resolved["run"]["tasks"]
    n = len(tasks)
    pack = model.pack_size(resolved["run"])

    array = None
    if n > 1:
        array = f"0-{-(-n // pack) - 1}"  # an array task per task, or per `pack` tasks
        if res["max_parallel"]:
            array += f"%{res['max_parallel']}"

    log_path = log_pattern(resolved)
    log_in_script = "$" not in log_path and not log_path.startswith("~")

    directives: list[tuple[str, str | None]] = [("job-name", job_name(project, name))]
    if log_in_script:
        directives.append(("output", log_path))
    for key in ("account", "partition", "qos", "constraint"):
        if cluster[key]:
            directives.append((key, cluster[key]))
    directives += [
        ("time", res["time"]),
        ("nodes", str(res["nodes"])),
        ("ntasks-per-node", str(res["tasks_per_node"])),
        ("cpus-per-task", str(res["cpus_per_task"])),
        ("mem", res["mem"]),
    ]
    if res["gpus"]:
        gres = f"gpu:{res['gpu_type']}:{res['gpus']}" if res["gpu_type"] else f"gpu:{res['gpus']}"
        directives.append(("gres", gres))
    if array:
        directives.append(("array", array))
    requeue = res["requeue"]
    if requeue:
        directives += [("signal", f"B:USR1@{requeue['before_end']}"), ("requeue", None)]
    # a requeued job (by mcompile or by SLURM after a node failure) keeps its earlier attempts' log
    directives.append(("open-mode", "append"))
    for key, value in cluster["sbatch_options"].items():
        directives.append((key, None if value is True else str(value)))

    local_root = cluster["local_tmp"]
    local_dir = f"{local_root.rstrip('/')}/mcompile-{JOB}_{TASK}"
    # the image is read-only: the tasks of a packed array task share one copy of it
    pack_local = f"{local_root.rstrip('/')}/mcompile-{JOB}_pack{PACK_INDEX}" if pack > 1 and c["stage_image"] else None
    outputs_dir = f"{resolved['outputs']['dir'].rstrip('/')}/{JOB}_{TASK}"

    mounts = [
        Mount(outputs_dir, model.SCRATCH_TARGET, "rw", "persistent", "results of this task; survives the job", create=True),
        Mount(f"{local_dir}/home", model.HOME_TARGET, "rw", "job", "empty home folder (nothing from the host's home)", create=True),
        Mount(f"{local_dir}/db", model.DB_TARGET, "rw", "job", "scratch space for databases", create=True),
        Mount(f"{local_dir}/tmp", model.TMP_TARGET, "rw", "job", "a real /tmp on node-local disk", create=True),
    ]
    code = None
    if "code" in resolved:
        code = CodePlan(resolved["code"]["target"], f"{local_dir}/code", code_dir(resolved))
        mounts.append(Mount(code.dest, code.target, "rw", "job", "code snapshot of code.repo, taken at submit (writable)"))
    if c["workdir"] and not (code and code.target == c["workdir"]):
        mounts.append(Mount(f"{local_dir}/workdir", c["workdir"], "rw", "job", "empty working directory", create=True))

    staging: list[StageStep] = []
    data = resolved["data"]
    if data:
        root = data["root"].rstrip("/")
        for i, subset in enumerate(data["subsets"]):
            source = f"{root}/{subset}"
            if data["stage"] == "bind":
                staging.append(StageStep(subset, "bind", source, source, i))
                mounts.append(Mount(source, f"{model.DATA_TARGET}/{subset}", "ro", "external", f"data subset {subset}, bound in place"))
            else:
                dest = f"{local_dir}/data/{subset}"
                staging.append(StageStep(subset, data["stage"], source, dest, i))
                mounts.append(Mount(dest, f"{model.DATA_TARGET}/{subset}", "rw", "job", f"data subset {subset}, staged to node-local disk ({data['stage']})"))
    for bind in c["binds"]:
        mounts.append(Mount(bind["source"], bind["target"], bind["mode"], "external", "declared in container.binds"))
    # parents first: a target inside another target comes after it (stable otherwise)
    mounts.sort(key=lambda m: _depth(m.target))

    flags = []
    if c["gpu"] == "nvidia":
        flags.append("--nv")
    elif c["gpu"] == "rocm":
        flags.append("--rocm")
    if c["cleanenv"]:
        flags.append("--cleanenv")
    if c["contain"]:
        flags += ["--contain", "--no-home"]
    # a writable overlay takes the container's writes itself: apptainer does not mount both
    if c["writable_tmpfs"] and not any(o["mode"] == "rw" for o in c.get("overlay", [])):
        flags.append("--writable-tmpfs")

    hours = _hours(res["time"])
    array_tasks = -(-n // pack)  # the time limit is each one's
    core_hours = array_tasks * res["nodes"] * res["tasks_per_node"] * res["cpus_per_task"] * hours
    gpu_hours = array_tasks * res["nodes"] * res["gpus"] * hours

    launcher = resolved["run"]["launcher"]
    per_node = resolved["run"]["processes_per_node"] or res["tasks_per_node"]

    secrets = {k: v["file"] for k, v in resolved["secrets"].items()}
    return JobPlan(
        resolved=resolved,
        compiler_version=__version__,
        job_name=f"{project}-{name}",
        directives=directives,
        log_path=log_path,
        log_in_script=log_in_script,
        log_dir=resolved["outputs"]["logs"].rstrip("/") or "/",
        log_vars=[v for v in dict.fromkeys(path_vars(resolved["outputs"]["logs"])) if v not in _INTERNAL_VARS or v == "HOME"],
        task_log=log_file(LOG_NAME, JOB, TASK),
        tasks=tasks,
        array=array,
        local_root=local_root,
        local_dir=local_dir,
        outputs_dir=outputs_dir,
        image=c["image"],
        staged_image=f"{local_dir}/image.sif" if c["stage_image"] else None,
        pack_local=pack_local,
        runtime=c["runtime"],
        entry=c["entry"],
        runtime_flags=flags,
        runtime_paths=runtime_paths(resolved),
        workdir=c["workdir"],
        mounts=mounts,
        staging=staging,
        archive_dir=archive_dir(resolved) if data and data["stage"] == "archive" else None,
        code=code,
        env=resolved["env"],
        secrets=secrets,
        modules=cluster["modules"],
        required_vars=_required_vars(resolved),
        core_hours=core_hours,
        gpu_hours=gpu_hours,
        launcher=launcher,
        processes_per_node=per_node,
        world_size=model.world_size(launcher, res["nodes"], res["tasks_per_node"], resolved["run"]["processes_per_node"]),
        requeue=requeue,
        wandb=resolved.get("wandb"),
        pack=pack,
    )


def runtime_paths(resolved: Resolved) -> list[RuntimePath]:
    """The runtime's options that name a host file: the job checks each on the node, and the
    submit pre-flight each one it can read from the submitting host."""
    overlays = resolved["container"].get("overlay", [])
    return [RuntimePath("--overlay", o["path"], f":{o['mode']}", "overlay image", f"container.overlay[{i}].path")
            for i, o in enumerate(overlays)]


def _hours(slurm_time: str) -> float:
    days, rest = slurm_time.split("-")
    h, m, s = (int(x) for x in rest.split(":"))
    return int(days) * 24 + h + m / 60 + s / 3600


def home_spelled(path: str) -> str:
    """The path with a leading `~` or `~/` written as `${HOME}`: the one tilde the job expands
    (`~user` stays literal text)."""
    if path == "~" or path.startswith("~/"):
        return "${HOME}" + path[1:]
    return path


def path_vars(path: str) -> list[str]:
    """Variables a symbolic path uses (`~` counts as HOME)."""
    return [a or b for a, b in VARIABLE.findall(home_spelled(path))]


def _required_vars(resolved: Resolved) -> list[tuple[str, str]]:
    """Every environment variable the paths of the manifest need, with the first field using it."""
    fields: list[tuple[str, str]] = [
        ("cluster.local_tmp", resolved["cluster"]["local_tmp"]),
        ("container.image", resolved["container"]["image"]),
        ("outputs.dir", resolved["outputs"]["dir"]),
    ]
    if resolved["data"]:
        fields.append(("data.root", resolved["data"]["root"]))
        if resolved["data"]["stage"] == "archive":
            fields.append(("cluster.scratch", archive_dir(resolved)))
    if "code" in resolved:
        fields.append(("cluster.scratch", code_dir(resolved)))
    for i, bind in enumerate(resolved["container"]["binds"]):
        fields.append((f"container.binds[{i}].source", bind["source"]))
    for i, overlay in enumerate(resolved["container"].get("overlay", [])):
        fields.append((f"container.overlay[{i}].path", overlay["path"]))
    for name, secret in resolved["secrets"].items():
        fields.append((f"secrets.{name}.file", secret["file"]))
    seen: dict[str, str] = {}
    for field, path in fields:
        for var in path_vars(path):
            if var not in _INTERNAL_VARS:
                seen.setdefault(var, field)
    return list(seen.items())
