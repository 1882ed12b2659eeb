"""The manifest's meaning: defaults, run kinds, launchers, reserved names, mcompile's own mount
targets, and the typed shape of a resolved manifest.

This is the one place that says what an absent field means and which names mcompile keeps for
itself. `validate` checks against it, `resolve` fills from it, `plan` lays out the job with it,
and the test generators (tests/fuzzing.py) draw from it; the schema's descriptions and the
README say the same in words. A resolved manifest (`Resolved`) is what `resolve` returns and
resolved.json holds: plain JSON data but for the grid's tasks (a lazy `GridTasks`).
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Sequence

# --- what runs ---------------------------------------------------------------------------

RunKind = t.Literal["commands", "commands_file", "grid", "sweep"]
RUN_KINDS: tuple[RunKind, ...] = ("commands", "commands_file", "grid", "sweep")  # `run` holds exactly one

Launcher = t.Literal["single", "srun", "torchrun"]
LAUNCHERS: tuple[Launcher, ...] = ("single", "srun", "torchrun")
DEFAULT_LAUNCHER: Launcher = "single"
DEFAULT_RUNS_PER_AGENT = 1  # a sweep agent's --count


def processes_per_node(launcher: str, processes: int | None, gpus: int) -> int | None:
    """torchrun's --nproc-per-node: run.processes_per_node, else one per GPU, else 1; None for
    the other launchers (their processes per node are resources.tasks_per_node)."""
    if launcher != "torchrun":
        return None
    return processes or max(gpus, 1)


def world_size(launcher: str, nodes: int, tasks_per_node: int, processes: int | None) -> int:
    """The processes of one task, all nodes together."""
    return nodes * (processes if launcher == "torchrun" and processes else tasks_per_node)


# --- defaults of absent fields -----------------------------------------------------------

DEFAULT_SCRATCH = "$SCRATCH"  # cluster.scratch
DEFAULT_LOCAL_TMP = "$SLURM_TMPDIR"  # cluster.local_tmp
DEFAULT_RESOURCES = {"nodes": 1, "tasks_per_node": 1, "cpus_per_task": 1, "gpus": 0}
DEFAULT_BEFORE_END = "5m"  # resources.requeue.before_end
DEFAULT_MAX_RESTARTS = 3  # resources.requeue.max_restarts
DEFAULT_RUNTIME = "auto"  # apptainer, else singularity
DEFAULT_ENTRY = "run"
DEFAULT_GPU = "auto"  # nvidia with gpus > 0, else none
DEFAULT_CONTAINER_SWITCHES = {"stage_image": True, "cleanenv": True, "contain": True, "writable_tmpfs": True}
DEFAULT_BIND_MODE = "rw"
DEFAULT_OVERLAY_MODE = "ro"
DEFAULT_STAGE = "archive"  # data.stage
DEFAULT_BUILD = "submit"  # data.build: archives are built on the submitting host (job: in a staging job)
DEFAULT_DIRTY = "refuse"  # code.dirty
DIRTY_MODES = ("refuse", "include", "ignore")


def repo_folder(repo: str, base: str) -> str:
    """code.repo as a folder of the submitting host: `~` expands, and a relative path is
    relative to `base`, the folder of the manifest file."""
    import os

    return os.path.normpath(os.path.join(base, os.path.expanduser(repo)))


def code_target(workdir: str | None) -> str:
    """code.target: container.workdir, else /code."""
    return workdir or CODE_TARGET


def gpu_flag(gpu: str, gpus: int) -> str:
    """container.gpu resolved: `auto` is nvidia when the task asks for GPUs."""
    if gpu == DEFAULT_GPU:
        return "nvidia" if gpus > 0 else "none"
    return gpu


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/") or "/", *parts]).replace("//", "/")


def default_data_root(scratch: str, project: str) -> str:
    """data.root: <scratch>/<project>/data."""
    return _join(scratch, project, "data")


def default_outputs_dir(scratch: str, project: str, name: str) -> str:
    """outputs.dir: <scratch>/<project>/<name>."""
    return _join(scratch, project, name)


def default_logs(scratch: str, project: str) -> str:
    """outputs.logs: <scratch>/<project>/hpc_outputs."""
    return _join(scratch, project, "hpc_outputs")


# --- names and places mcompile keeps for itself -------------------------------------------

# In the container: the task's persistent results, an empty home, scratch space, /tmp and the data.
SCRATCH_TARGET = "/scratch_storage"
HOME_TARGET = "$HOME"
DB_TARGET = "/db"
TMP_TARGET = "/tmp"
DATA_TARGET = "/data"
CODE_TARGET = "/code"  # code.target without container.workdir
OWN_TARGETS = (SCRATCH_TARGET, DB_TARGET, TMP_TARGET)  # a bind or workdir may not take these (nor /data)

# Targets that would break the container if a bind replaced them.
SYSTEM_TARGETS = ("/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/var", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_TREES = ("/proc/", "/sys/", "/dev/")

# Environment names set by SLURM, mcompile and the runtime: env and secrets may not use them.
RESERVED_ENV_PREFIXES = ("SLURM_", "MCOMPILE_", "APPTAINER", "SINGULARITY")
# Set by the job for every process when run.launcher is srun or torchrun.
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


# --- the resolved manifest -----------------------------------------------------------------


class _ClusterAlways(t.TypedDict):
    account: str | None
    partition: str | None
    qos: str | None
    constraint: str | None
    modules: list[str]
    scratch: str
    local_tmp: str
    sbatch_options: dict[str, str | bool]


class Cluster(_ClusterAlways, total=False):
    """What a site profile (sites.py) says of the cluster: only where declared, checked by validate
    (and submit_from by --submit); nothing of the job depends on them."""

    name: str
    internet: bool
    account_required: bool
    max_time: str | int
    gpu_types: list[str]
    gpu_counts: list[int]
    submit_from: str


class Bind(t.TypedDict):
    source: str
    target: str
    mode: t.Literal["ro", "rw"]


class Overlay(t.TypedDict):
    path: str
    mode: t.Literal["ro", "rw"]


class _ContainerAlways(t.TypedDict):
    image: str
    runtime: str
    entry: t.Literal["run", "exec"]
    gpu: str
    stage_image: bool
    workdir: str | None
    cleanenv: bool
    contain: bool
    writable_tmpfs: bool
    binds: list[Bind]


class Container(_ContainerAlways, total=False):
    overlay: list[Overlay]  # only when declared: resolved.json of a manifest without stays as it was


class _DataAlways(t.TypedDict):
    root: str
    subsets: list[str]
    stage: t.Literal["archive", "copy", "bind"]


class Code(t.TypedDict):
    repo: str  # as written: relative to the manifest file, read on the submitting host
    target: str
    dirty: t.Literal["refuse", "include", "ignore"]


class Data(_DataAlways, total=False):
    build: t.Literal["job"]  # only when archives are built in a job: resolved.json of other manifests stays as it was


class Requeue(t.TypedDict):
    before_end: int  # seconds (SLURM's --signal unit)
    max_restarts: int


class Resources(t.TypedDict):
    time: str  # D-HH:MM:SS
    nodes: int
    tasks_per_node: int
    cpus_per_task: int
    mem: str
    gpus: int
    gpu_type: str | None
    max_parallel: int | None
    requeue: Requeue | None


class _RunAlways(t.TypedDict):
    kind: RunKind
    tasks: Sequence[str]  # one command per array task (a GridTasks for a grid)
    launcher: Launcher
    processes_per_node: int | None  # torchrun only


class Run(_RunAlways, total=False):
    template: str  # grid
    parameters: dict[str, list[t.Any]]  # grid
    zip: list[list[str]]  # grid, when it pairs parameters (resolve.grid_axes)
    id: str  # sweep
    agents: int  # sweep
    runs_per_agent: int  # sweep
    pack: int  # tasks run one after the other by each array task; only when more than 1 (see pack_size)


def pack_size(run: Run) -> int:
    """Tasks each array task of a resolved run runs, one after the other (run.pack): 1 without
    packing. Resolve records a pack only where it packs: more than one task, more than one a pack."""
    return run.get("pack", 1)


class Outputs(t.TypedDict):
    dir: str
    logs: str


class Wandb(t.TypedDict):
    project: str
    entity: str | None
    mode: t.Literal["online", "offline"]
    group: str | None  # None: <name>-<hash12>, made by the job (the hash is the run folder's name)


# What `wandb:` sets in the container (the job sets them; env may not)
WANDB_NAMES = ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_RUN_GROUP", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR", "WANDB_MODE")


class _ResolvedAlways(t.TypedDict):
    version: int
    name: str
    project: str
    description: str | None
    cluster: Cluster
    container: Container
    data: Data | None
    resources: Resources
    run: Run
    env: dict[str, str]
    secrets: dict[str, dict[str, str]]
    outputs: Outputs


class Resolved(_ResolvedAlways, total=False):
    wandb: Wandb  # only when the manifest says wandb:
    code: Code  # only when declared: resolved.json of a manifest without stays as it was
