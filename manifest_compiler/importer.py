"""Import: a `job_submitter.sh` command line -> an equivalent, commented manifest.

The seed scripts (job_submitter.sh, standard_job.sh; ../shared/seed/seed-system.md) took their
settings from flags, the name of the current directory (the project), a commands file
(experiment_configurations.txt, or --configs) and ~/wandb_credentials.txt. `import_invocation`
reads the same and writes the manifest that asks SLURM for the same resources and runs the same
commands, with `run.commands_file` pointing at the file as it is. What the scripts decided by
hostname (partition, account, node-local folder, module loads on one cluster or another) has
no flag to read: it is named in the notes, with the way to say it (a site profile that the
manifest extends). Where the scripts asked interactively (a sweep's id and number of agents),
the options of `mcompile import` answer, or the field holds a marked value that validate
rejects until it is filled in.

Nothing here prints: the CLI shows the notes (stderr) and the manifest (stdout or --output).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import typing as t

from .errors import Problem, UsageError
from .load import FILES, MAX_FILE_BYTES, Reader
from .model import DEFAULT_SCRATCH, default_logs, default_outputs_dir

# job_submitter.sh's flags: name -> (what it takes, the manifest field it becomes)
FLAGS: dict[str, tuple[str, str]] = {
    "--account": ("NAME", "cluster.account"),
    "--gpus": ("N", "resources.gpus"),
    "--gpu-type": ("TYPE", "resources.gpu_type"),
    "--cpus": ("N", "resources.cpus_per_task (x gpus under torchrun)"),
    "--mem": ("NG|NM", "resources.mem"),
    "--time": ("D-HH:MM:SS", "resources.time (default 1 hour)"),
    "--num-nodes": ("N", "resources.nodes"),
    "--exp-name": ("NAME", "name"),
    "--job-type": ("standard|distributed|sweep", "run"),
    "--which-distributed": ("torchrun|lightning", "run.launcher"),
    "--data": ("PATH...", "data.subsets (stage: archive)"),
    "--singularity-container": ("PATH.sif", "container.image"),
    "--workdir": ("PATH", "container.workdir"),
    "--configs": ("FILE", "run.commands_file"),
}
DEFAULT_CONFIGS = "experiment_configurations.txt"
DEFAULT_TIME = "1h"  # the scripts' default
WANDB_KEY_FILE = "~/wandb_credentials.txt"
OLD_GPU_TYPES = ("p100", "p100l", "v100l")  # the scripts' hard-coded list

# A value the scripts asked for interactively: every one fails validation until it is replaced.
FILL_IN = "<FILL IN: {}>"
_AGENT = re.compile(r"wandb\s+agent\b(?P<options>(?:\s+--?[A-Za-z-]+(?:[ =]\S+)?)*)\s+(?P<id>\S+)")
_COUNT = re.compile(r"--count[ =](?P<n>[0-9]+)")
_SWEEP_ID = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9]+")
_PLAIN = re.compile(r"[A-Za-z0-9_./$~+@-][A-Za-z0-9_./$~+@:=-]*")
_NOT_PLAIN = re.compile(r"(?:true|false|null|~|[-+]?[0-9][0-9_.:eExXoO+-]*)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Imported:
    """The manifest written for an invocation, and what the user should know about it."""

    text: str  # the manifest (YAML, commented, with the schema modeline)
    notes: list[str]  # one line each: what was decided, and what could not be translated
    problems: list[Problem]  # validate's findings on `text` (fill-in fields, or a value the scripts took as is)
    fill_in: list[str]  # fields left for the user (run.sweep.id, run.sweep.agents)


@dataclasses.dataclass
class _Invocation:
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    data: list[str] = dataclasses.field(default_factory=list)


def known_flags() -> str:
    return ", ".join(f"{name} {arg}" for name, (arg, _) in FLAGS.items())


def parse_invocation(args: t.Sequence[str]) -> _Invocation:
    """job_submitter.sh's arguments: `--flag VALUE` or `--flag=VALUE`; --data takes every value
    up to the next flag.

    Raises:
        UsageError: an unknown flag (the known ones are listed), or a flag without its value.
    """
    inv = _Invocation()
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if name not in FLAGS:
            what = "flag" if arg.startswith("-") else "argument"
            raise UsageError(f"mcompile import: unknown job_submitter.sh {what} {arg!r}; known flags: {known_flags()}")
        i += 1
        if name == "--data":
            values = [inline] if eq else []
            while i < len(args) and not args[i].startswith("--"):
                values.append(args[i])
                i += 1
            if not values:
                raise UsageError(f"mcompile import: --data needs at least one PATH ({FLAGS[name][0]})")
            inv.data += values
            continue
        if eq:
            value = inline
        elif i < len(args) and not args[i].startswith("--"):
            value = args[i]
            i += 1
        else:
            raise UsageError(f"mcompile import: {name} needs a value ({FLAGS[name][0]})")
        inv.values[name] = value
    return inv


def _yaml(value: object) -> str:
    """A scalar as YAML that reads back as the same value: plain where that is safe, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and not _NOT_PLAIN.fullmatch(text) and not text.startswith("-"):
        return text
    return json.dumps(text, ensure_ascii=False)


def _count(inv: _Invocation, flag: str) -> int | None:
    value = inv.values.get(flag)
    if value is None:
        return None
    if not value.isdigit():
        raise UsageError(f"mcompile import: {flag} {value!r}: expected a whole number")
    return int(value)


@dataclasses.dataclass
class _Draft:
    """The manifest being written: sections of (comment, key, value) lines."""

    lines: list[str] = dataclasses.field(default_factory=list)

    def comment(self, text: str, indent: int = 0) -> None:
        self.lines.append(" " * indent + "# " + text)

    def field(self, key: str, value: object, indent: int = 0, note: str = "") -> None:
        self.lines.append(" " * indent + f"{key}: {_yaml(value)}" + (f"  # {note}" if note else ""))

    def section(self, key: str, indent: int = 0) -> None:
        self.lines.append(" " * indent + f"{key}:")

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def import_invocation(args: t.Sequence[str], *, cwd: str, home: str, output: str | None,
                      scratch: str | None = None, sweep_id: str | None = None, agents: int | None = None,
                      schema_path: str | None = None) -> Imported:
    """The manifest equivalent to `bash job_submitter.sh ARGS` run in `cwd`.

    Args:
        args: job_submitter.sh's arguments.
        cwd: the directory it ran in: its name is the project, and --configs is relative to it.
        home: the user's home (where ~/wandb_credentials.txt is looked for).
        output: where the manifest will be written (None: stdout; it is then read as if it
            were in cwd): run.commands_file is written relative to it.
        scratch: $SCRATCH on this machine, where `--data data` (all of the data folder) is
            listed; None: not set.
        sweep_id: the sweep id the scripts asked for (ENTITY/PROJECT/ID, or ID alone, with
            ENTITY/PROJECT from the wandb agent line).
        agents: the number of agents the scripts asked for.
        schema_path: the schema file for the editor modeline, relative to the manifest.

    Raises:
        UsageError: an unknown flag, a value the scripts refused too (a container that is
            not a .sif, a --job-type or --which-distributed they do not know), or a commands
            file that cannot be read.
    """
    inv = parse_invocation(args)
    notes: list[str] = []
    project = os.path.basename(os.path.normpath(cwd))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", project):
        raise UsageError(f"mcompile import: the project is the current directory's name, and {project!r} is not a valid "
                         "project name (letters, digits, '.', '_' or '-'); run import in a directory named like one")
    job_type = inv.values.get("--job-type", "standard")
    if job_type not in ("standard", "distributed", "sweep"):
        raise UsageError(f"mcompile import: --job-type {job_type!r}: expected standard, distributed or sweep")
    which = inv.values.get("--which-distributed")
    if which is not None and which not in ("torchrun", "lightning"):
        raise UsageError(f"mcompile import: --which-distributed {which!r}: expected torchrun or lightning")
    if job_type == "distributed" and which is None:
        which = "torchrun"
        notes.append("--job-type distributed without --which-distributed: imported as torchrun (run.launcher: torchrun)")
    if job_type != "distributed" and which is not None:
        notes.append(f"--which-distributed {which} applies to --job-type distributed only; ignored, as the scripts did")
        which = None
    image = inv.values.get("--singularity-container")
    if image is None:
        raise UsageError("mcompile import: --singularity-container PATH.sif is required (the job runs that image)")
    if not image.endswith(".sif"):
        raise UsageError(f"mcompile import: --singularity-container {image!r}: must end in .sif, as job_submitter.sh requires")
    if not image.startswith(("/", "~", "$")):
        notes.append(f"--singularity-container {image}: relative to {cwd}; written as the absolute path {os.path.join(cwd, image)}")
        image = os.path.normpath(os.path.join(cwd, image))

    gpus = _count(inv, "--gpus") or 0
    cpus = _count(inv, "--cpus")
    nodes = _count(inv, "--num-nodes")
    gpu_type = inv.values.get("--gpu-type")
    if gpu_type is not None and not gpus:
        raise UsageError(f"mcompile import: --gpu-type {gpu_type} needs --gpus N (the scripts asked for --gres=gpu:{gpu_type}:N)")
    if gpu_type is not None and gpu_type not in OLD_GPU_TYPES:
        notes.append(f"--gpu-type {gpu_type}: not in the scripts' list ({', '.join(OLD_GPU_TYPES)}); written as given")

    configs = inv.values.get("--configs", DEFAULT_CONFIGS)
    configs_path = os.path.normpath(os.path.join(cwd, os.path.expanduser(configs)))
    manifest_dir = os.path.dirname(os.path.abspath(os.path.join(cwd, output))) if output else cwd
    commands_ref = os.path.relpath(configs_path, manifest_dir)
    name = inv.values.get("--exp-name")
    name_note = "--exp-name"
    if name is None:
        name, name_note = project, "no --exp-name: the project's name"
        notes.append(f"no --exp-name: the experiment is named after the project, {project!r} (name)")

    d = _Draft()
    d.lines.append(f"# yaml-language-server: $schema={schema_path or 'experiment.v1.schema.json'}")
    d.comment("Imported by `mcompile import` from:")
    d.comment("  bash job_submitter.sh " + shlex.join(args))
    d.comment("Check it with `mcompile validate`, see the job with `mcompile plan`.")
    d.field("version", 1)
    d.field("name", name, note=name_note)
    d.field("project", project, note="the current directory's name, as job_submitter.sh took it")
    d.blank()

    if "--account" in inv.values:
        d.section("cluster")
        d.field("account", inv.values["--account"], 2, note="--account")
        d.blank()

    d.section("container")
    d.field("image", image, 2, note="--singularity-container")
    d.comment("run (the default): the image's runscript gets each command as its argument, as before", 2)
    if "--workdir" in inv.values:
        d.field("workdir", inv.values["--workdir"], 2, note="--workdir: an empty node-local folder, where the command starts")
    else:
        notes.append("no --workdir: the scripts bound an empty folder at /workdir_<job>_<task>; mcompile binds none "
                     "(the runscript starts in $HOME, an empty node-local folder, as before)")
    d.blank()

    subsets = _subsets(inv.data, project, scratch, notes)
    if subsets:
        d.section("data")
        d.comment("--data: each appears at /data/<subset>; archive: one fingerprinted tar each, built once on scratch", 2)
        d.lines.append("  subsets: [" + ", ".join(_yaml(s) for s in subsets) + "]")
        d.field("stage", "archive", 2)
        d.blank()

    d.section("resources")
    time = inv.values.get("--time")
    d.field("time", time or DEFAULT_TIME, 2, note="--time" if time else "the scripts' default, 1 hour")
    if nodes is not None:
        if job_type != "distributed" and nodes > 1:
            notes.append(f"--num-nodes {nodes} with --job-type {job_type}: the scripts ran the command once, on the first node, "
                         "and left the others idle; written as nodes: 1 (use --job-type distributed to use them all)")
            nodes = 1
        d.field("nodes", nodes, 2, note="--num-nodes")
    if which == "lightning" and gpus > 1:
        d.field("tasks_per_node", gpus, 2, note="lightning: one SLURM task per GPU, as the scripts asked")
    if cpus is not None:
        if which == "torchrun" and gpus > 1:
            d.field("cpus_per_task", cpus * gpus, 2, note=f"--cpus {cpus} x --gpus {gpus}: torchrun's one task per node")
            notes.append(f"torchrun: the scripts multiplied --cpus by --gpus; written as cpus_per_task: {cpus * gpus} ({cpus} x {gpus})")
        else:
            d.field("cpus_per_task", cpus, 2, note="--cpus")
    mem = inv.values.get("--mem")
    if mem is None:
        raise UsageError("mcompile import: --mem is required (a manifest says how much memory a task needs, e.g. --mem 16G)")
    d.field("mem", mem, 2, note="--mem (per node)")
    if gpus:
        d.field("gpus", gpus, 2, note="--gpus (per node)")
    if gpu_type is not None:
        d.field("gpu_type", gpu_type, 2, note="--gpu-type: --gres=gpu:TYPE:N")
    d.blank()

    fill_in: list[str] = []
    d.section("run")
    if job_type == "sweep":
        _sweep(d, configs_path, configs, sweep_id, agents, notes, fill_in)
    else:
        if not os.path.isfile(configs_path):
            raise UsageError(f"mcompile import: cannot read the commands file {configs_path} (--configs; "
                             f"default {DEFAULT_CONFIGS} in the current directory)")
        d.comment("--configs: one array task per line (blank lines and # comments skipped), byte for byte", 2)
        d.field("commands_file", commands_ref, 2)
        if which == "torchrun":
            d.field("launcher", "torchrun", 2, note="--which-distributed torchrun: one container per node, one process per GPU")
        elif which == "lightning":
            d.field("launcher", "srun", 2, note="--which-distributed lightning: one container per SLURM task")
    d.blank()

    key_file = os.path.join(home, "wandb_credentials.txt")
    if os.path.isfile(key_file):
        d.comment("The scripts put the key in sbatch's --export (seen in the job record and the process list);", 0)
        d.comment("a secret is read on the node at job start and never reaches the job directory.", 0)
        d.section("secrets")
        d.section("WANDB_API_KEY", 2)
        d.field("file", WANDB_KEY_FILE, 4)
    else:
        notes.append(f"no {WANDB_KEY_FILE} here: no secrets entry for WANDB_API_KEY (add `secrets: {{WANDB_API_KEY: "
                     f"{{file: {WANDB_KEY_FILE}}}}}` if the jobs use W&B)")

    notes += [
        "not imported: what the scripts chose by hostname (partition, account, node-local folder, module loads); "
        "put it in a site profile (a manifest with base: true) and add `extends: PROFILE.yaml` here",
        f"results: {default_outputs_dir(DEFAULT_SCRATCH, project, name)}/<jobid>_<taskid> (the scripts: "
        f".../singularity_<jobid>_<taskid>), logs: {default_logs(DEFAULT_SCRATCH, project)}/{name}_<jobid>_<taskid>.out, "
        f"job name {project}-{name}",
    ]
    if job_type == "sweep":
        notes.append("the scripts throttled a sweep's array to 10 tasks at once on one cluster (by hostname); "
                     "add resources.max_parallel: 10 where you want that")
    schema_file = os.path.join(manifest_dir, schema_path or "experiment.v1.schema.json")
    if not os.path.exists(schema_file):
        notes.append(f"for editors, the first line names the schema: `mcompile schema > {os.path.relpath(schema_file, cwd)}` writes it")
    text = d.text()
    problems = check_text(text, os.path.join(manifest_dir, os.path.basename(output) if output else "imported.yaml"))
    return Imported(text, notes, problems, fill_in)


def _subsets(paths: list[str], project: str, scratch: str | None, notes: list[str]) -> list[str]:
    """--data paths (relative to $SCRATCH/<project>, as `data/<subset>`) as data.subsets.

    Raises:
        UsageError: a path outside the data folder, or `data` (all of it) where $SCRATCH
            cannot be listed.
    """
    out: list[str] = []
    for path in paths:
        norm = os.path.normpath(path.strip("/"))
        if norm == "data":
            folder = os.path.join(scratch, project, "data") if scratch else ""
            if not folder or not os.path.isdir(folder):
                why = f"{folder} is not a folder" if folder else "$SCRATCH is not set"
                raise UsageError(f"mcompile import: --data {path}: all of $SCRATCH/{project}/data; it cannot be listed here "
                                 f"({why}): name its subsets instead (--data data/SUBSET ...)")
            found = sorted(e for e in os.listdir(folder) if not e.startswith("."))
            notes.append(f"--data {path}: all of {folder}, written as its {len(found)} entries (data.subsets)")
            out += found
        elif norm.startswith("data/"):
            out.append(norm[len("data/"):])
        else:
            raise UsageError(f"mcompile import: --data {path}: the scripts took data from $SCRATCH/{project}/data; "
                             f"expected data or data/SUBSET")
    return out


def _sweep(d: _Draft, configs_path: str, configs: str, sweep_id: str | None, agents: int | None,
           notes: list[str], fill_in: list[str]) -> None:
    """run.sweep from the `wandb agent` line of the commands file, and the answers to what the
    scripts asked (the sweep id, the number of agents)."""
    try:
        with open(configs_path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"mcompile import: --job-type sweep reads the wandb agent line of {configs_path}: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    match = None
    for line in text.splitlines():
        if not line.lstrip().startswith("#") and (match := _AGENT.search(line)):
            break
    if match is None:
        raise UsageError(f"mcompile import: --job-type sweep: no `wandb agent ... ENTITY/PROJECT/SWEEP_ID` line in {configs}")
    count = _COUNT.search(match.string)  # --count before or after the id
    per_agent = int(count["n"]) if count else 1
    written = match["id"]
    entity_project = written.rsplit("/", 1)[0] if written.count("/") == 2 else None
    if sweep_id is not None and "/" not in sweep_id and entity_project:
        sweep_id = f"{entity_project}/{sweep_id}"
    d.comment(f"--job-type sweep: from `{match.string.strip()}` in {configs}", 2)
    d.section("sweep", 2)
    if sweep_id is not None:
        d.field("id", sweep_id, 4, note="--sweep-id")
    else:
        prefix = f"{entity_project}/" if entity_project else ""
        d.field("id", prefix + FILL_IN.format("the sweep id, which job_submitter.sh asked for"), 4,
                note="FILL IN: ENTITY/PROJECT/SWEEP_ID (or import with --sweep-id)")
        fill_in.append("run.sweep.id")
    if agents is not None:
        d.field("agents", agents, 4, note="--agents: array tasks 1-N")
    else:
        d.field("agents", FILL_IN.format("the number of agents, which job_submitter.sh asked for"), 4,
                note="FILL IN: a number (or import with --agents)")
        fill_in.append("run.sweep.agents")
    d.field("runs_per_agent", per_agent, 4, note="wandb agent --count")


class _DraftReader(Reader):
    """Files as on disk, but for the manifest being imported, which is read from memory."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.raw = path, text.encode()

    def read(self, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        return self.raw if path == self.path else FILES.read(path, limit)


def check_text(text: str, path: str) -> list[Problem]:
    """validate's findings on a manifest not yet written, as if it were at `path`."""
    from .pipeline import check_file

    return check_file(path, reader=_DraftReader(path, text))[1]
