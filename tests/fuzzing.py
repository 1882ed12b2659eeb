"""Strategies and checks for the whole-pipeline fuzz tests (tests/test_fuzz_pipeline.py).

Valid manifests with hostile-but-valid content are built from hypothesis strategies
written here, not from the JSON Schema (hypothesis-jsonschema is far too slow for
documents this rich; tests/test_properties.py uses it for small ones). Every generated
manifest comes with what compiling it must give, derived from the manifest format's
documentation independently of the compiler: the tasks' commands and the `#SBATCH`
directives.

Also here: a YAML writer that keeps YAML 1.2 meaning (PyYAML writes YAML 1.1, so a
string such as `0o17` would come back as a number), a port of sbatch's own reading of
a `#SBATCH` line, and the decoding of tasks/commands + tasks/index.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shlex
import typing as t
from pathlib import Path

import yaml
from hypothesis import assume
from hypothesis import strategies as st

from manifest_compiler.load import scalar_text
from manifest_compiler.model import (
    DATA_TARGET,
    DISTRIBUTED_ENV,
    OWN_TARGETS,
    SYSTEM_TARGETS,
    SYSTEM_TREES,
    processes_per_node,
    world_size,
)
from manifest_compiler.units import parse_time

# --- writing manifests -----------------------------------------------------------------------


class Num(str):
    """A number, written in the YAML exactly as this text (a plain scalar such as 1e-3 or 0x1F)."""


# Plain scalars YAML 1.2's core schema does not read as strings (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_CORE_TAGS = [
    ("null", re.compile(r"(?:~|null|Null|NULL|)\Z")),
    ("bool", re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")),
    ("int", re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")),
    ("float", re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")),
]


def core_tag(text: str) -> str | None:
    """The tag YAML 1.2's core schema gives a plain scalar, unless it is a string."""
    for name, pattern in _CORE_TAGS:
        if pattern.match(text):
            return f"tag:yaml.org,2002:{name}"
    return None


class ManifestDumper(yaml.SafeDumper):
    """SafeDumper whose strings read back as strings under YAML 1.2 too, and which writes Num as is."""

    def resolve(self, kind: t.Any, value: t.Any, implicit: t.Any) -> t.Any:
        if kind is yaml.ScalarNode and implicit[0]:
            tag = core_tag(value)
            if tag:  # a str that looks like this is quoted; a number or a bool stays plain
                return tag
        return super().resolve(kind, value, implicit)


def _represent_number(dumper: yaml.SafeDumper, value: Num) -> yaml.ScalarNode:
    tag = core_tag(value)
    assert tag and tag.endswith(("int", "float")), f"not a YAML 1.2 number: {value!r}"
    return dumper.represent_scalar(tag, str(value))


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML writes NEL, LS and PS raw in plain or single-quoted style, where YAML 1.1 readers
    # (libyaml) take them for line breaks; escaped in double quotes (\N, \L, \P) they survive.
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


ManifestDumper.add_representer(Num, _represent_number)
ManifestDumper.add_representer(str, _represent_str)


def dump_manifest(doc: dict[str, t.Any]) -> bytes:
    return yaml.dump(doc, Dumper=ManifestDumper, allow_unicode=True, sort_keys=False).encode("utf-8")


def writable(value: t.Any) -> t.Any:
    """Loader data -> data dump_manifest writes the same way: numbers keep the text they were written as."""
    if isinstance(value, dict):
        return {k: writable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [writable(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Num(scalar_text(value))
    return value


def normalise(value: t.Any) -> t.Any:
    """Generated or loaded data in one comparable form: numbers as ("number", text as written)."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Num):
        return ("number", str(value))
    if isinstance(value, (int, float)):
        return ("number", scalar_text(value))
    return value


# --- text ------------------------------------------------------------------------------------

# Pieces that break naive quoting, SLURM directives, printf formats, YAML or terminals.
FRAGMENTS = [
    '"', "'", "$", "`", "\\", "\n", "\r\n", "\t", " ", "  ", ",", "#", ";", "&&", "|", ">", "<", "*", "?", "~", "!",
    "\n#SBATCH --time=99:00:00\n", "#SBATCH --array=0-9999", "#SLURM --x", "\n#PBS -N injected\n", "\n#BSUB -J x\n", "$(id)", "${HOME}", "$HOME", "`date`",
    "'\"'\"'", "%q", "%s", "%n", "\\n", "\\", "\\\\", "[a]", "{}", "}", "{", "--", "-e", "=", ":", "/", "..",
    "'\\''", '"$@"', "$'\\x41'", "é", "日本語", "🎉", "\u200b", "\u2028", "\x85", "\ufeff", "\x7f", "\x1b[31m",
    "\x01", "\x0b", "\x0c", "\xa0", "EOF", "<<EOF", "$((1+1))", "${x:-y}", "$SLURM_JOB_ID",
]
_ANY_CHAR = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


def hostile_text(*, min_size: int = 0, max_pieces: int = 6, exclude: str = "") -> st.SearchStrategy[str]:
    """Text of FRAGMENTS and arbitrary characters (never NUL, nor any character in `exclude`)."""
    chars = st.characters(exclude_characters="\x00" + exclude, exclude_categories=("Cs",))
    pieces = [f for f in FRAGMENTS if not any(c in f for c in exclude)]
    piece = st.one_of(st.sampled_from(pieces), st.text(alphabet=chars, min_size=1, max_size=6))
    return st.lists(piece, max_size=max_pieces).map("".join).filter(lambda s: len(s) >= min_size)


def one_line(*, min_size: int = 0, exclude: str = "") -> st.SearchStrategy[str]:
    return hostile_text(min_size=min_size, exclude="\n\r" + exclude)


NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
RESERVED_ENV = ("SLURM_", "MCOMPILE_", "APPTAINER", "SINGULARITY")
ENV_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(lambda n: not n.startswith(RESERVED_ENV))
PARAM_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
TOKEN = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,12}", fullmatch=True)
NUMBER_TEXT = st.sampled_from(["0", "7", "-5", "+7", "010", "0x1F", "0o17", "1e-3", "-.5", "5.", "1.50", "+1E+2", "3.14", "123456789012"])

# (written, normalised) for resources.time and resources.mem
TIMES = [("10m", "0-00:10:00"), (Num("90"), "0-01:30:00"), ("1:30:00", "0-01:30:00"), ("1d12h", "1-12:00:00"),
         ("2-03", "2-03:00:00"), ("45:30", "0-00:45:30"), ("1-00:00:01", "1-00:00:01"), ("36h", "1-12:00:00")]
MEMS = [("1024M", "1G"), ("1536M", "1536M"), ("32G", "32G"), ("1048576K", "1G"), ("2T", "2T"), ("100K", "100K")]

# sbatch options mcompile sets itself (validate.OWNED_SBATCH_OPTIONS, as documented in the README).
OWNED_SBATCH = {
    "job-name", "output", "error", "array", "time", "nodes", "ntasks", "ntasks-per-node", "cpus-per-task", "mem",
    "mem-per-cpu", "mem-per-gpu", "gres", "gpus", "gpus-per-node", "gpus-per-task", "account", "partition", "qos",
    "constraint", "open-mode", "signal", "requeue", "no-requeue", "export", "export-file", "chdir", "wrap", "parsable",
    "test-only", "batch", "input", "dependency",
}
SBATCH_OPTION = st.one_of(
    st.sampled_from(["mail-type", "mail-user", "comment", "exclusive", "wckey", "reservation", "licenses", "nice",
                     "begin", "hint", "mincpus", "tmp", "switches", "kill-on-invalid-dep", "oversubscribe"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
).filter(lambda o: o not in OWNED_SBATCH and not any(x.startswith(o) for x in OWNED_SBATCH))



def target_ok(target: str) -> bool:
    """A bind target or workdir the documented rules accept (besides being unique)."""
    return (target not in SYSTEM_TARGETS and target not in OWN_TARGETS and not target.startswith(SYSTEM_TREES)
            and target != DATA_TARGET and not target.startswith(DATA_TARGET + "/"))


# --- what a generated manifest must compile to -----------------------------------------------


@dataclasses.dataclass
class Generated:
    doc: dict[str, t.Any]
    tasks: list[str]  # every task's command, in task order
    directives: list[tuple[str, str | None]]  # the #SBATCH options, in order
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # runtime: variables the paths use
    dirs: list[str] = dataclasses.field(default_factory=list)  # runtime: folders to create (symbolic)
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # runtime: files to create (symbolic)
    image: str = ""  # runtime: the image path (symbolic)


def grid_tasks(literals: list[str], names: list[str], parameters: dict[str, list[t.Any]]) -> list[str]:
    """The documented grid expansion: cartesian product in declared order, each value one shell-quoted word."""
    order = list(parameters)
    texts = {n: [shlex.quote(value_text(v)) for v in vs] for n, vs in parameters.items()}
    out = []
    for combo in itertools.product(*(texts[n] for n in order)):
        chosen = dict(zip(order, combo, strict=True))
        out.append(literals[0] + "".join(chosen[n] + lit for n, lit in zip(names, literals[1:], strict=True)))
    return out


def value_text(value: t.Any) -> str:
    """A scalar as written in the YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")


@st.composite
def runs(draw: st.DrawFn, *, max_tasks: int = 8) -> tuple[dict[str, t.Any], list[str]]:
    """A `run` section and its tasks."""
    kind = draw(st.sampled_from(["commands", "commands", "grid", "grid", "sweep"]))
    if kind == "commands":
        commands = draw(st.lists(hostile_text(min_size=1), min_size=1, max_size=min(max_tasks, 5)))
        return {"commands": commands}, commands
    if kind == "sweep":
        entity = draw(st.from_regex(r"[A-Za-z0-9_.-]{1,8}/[A-Za-z0-9_.-]{1,8}/[A-Za-z0-9]{1,8}", fullmatch=True))
        agents = draw(st.integers(min_value=1, max_value=min(max_tasks, 4)))
        sweep: dict[str, t.Any] = {"id": entity, "agents": agents}
        per = 1
        if draw(st.booleans()):
            per = sweep["runs_per_agent"] = draw(st.integers(min_value=1, max_value=100000))
        return {"sweep": sweep}, [f"wandb agent --count {per} {entity}"] * agents
    names = draw(st.lists(PARAM_NAME, min_size=1, max_size=3, unique=True))
    value = st.one_of(hostile_text(), NUMBER_TEXT.map(Num), st.booleans())
    parameters: dict[str, list[t.Any]] = {}
    budget = max_tasks
    for name in names:
        values = draw(st.lists(value, min_size=1, max_size=max(1, min(3, budget))))
        budget = max(1, budget // len(values))
        parameters[name] = values
    used = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
    literals = draw(st.lists(hostile_text(max_pieces=3), min_size=len(used) + 1, max_size=len(used) + 1))
    # Only {{ name }} placeholders: the literals must not hold (or form) other template syntax.
    assume(not _TEMPLATE_SYNTAX.search("".join(literals)))
    spacing = draw(st.lists(st.sampled_from(["{{ %s }}", "{{%s}}", "{{  %s\t}}"]), min_size=len(used), max_size=len(used)))
    template = literals[0] + "".join(fmt % n + lit for n, fmt, lit in zip(used, spacing, literals[1:], strict=True))
    assume(not re.search(r"\{\{\s*[A-Za-z_]", "".join(literals)))
    tasks = grid_tasks(literals, used, parameters)
    assume(len(tasks) <= max_tasks)
    return {"grid": {"template": template, "parameters": parameters}}, tasks


def any_path(*, suffix: str = "", exclude: str = "") -> st.SearchStrategy[str]:
    """A path as a manifest may write it: absolute, or starting with `~`, `~/` or a variable (which
    the job expands), then spaces, quotes and anything but a line break."""
    start = st.sampled_from(["/", "~/", "$SCRATCH/", "${SCRATCH}/", "$X/", "$X"])
    paths = st.tuples(start, one_line(exclude=exclude)).map(lambda p: p[0] + p[1] + suffix)
    return paths if suffix else st.one_of(paths, st.just("~"))


_SEGMENT_EXCLUDE = "/,:$"


@st.composite
def any_target(draw: st.DrawFn, *, prefix: str = "") -> str:
    segments = draw(st.lists(one_line(min_size=1, exclude=_SEGMENT_EXCLUDE), min_size=1, max_size=3))
    assume(all(s not in (".", "..") for s in segments))
    target = prefix + "".join("/" + s for s in segments)
    assume(target_ok(target))
    return target


def expected_directives(doc: dict[str, t.Any], ntasks: int, time: str, mem: str) -> list[tuple[str, str | None]]:
    """The #SBATCH options the README documents for a manifest, in order."""
    cluster = doc.get("cluster", {})
    res = doc["resources"]
    scratch = cluster.get("scratch", "$SCRATCH")
    logs = doc.get("outputs", {}).get("logs")
    if logs is None:
        logs = "/".join([scratch.rstrip("/") or "/", doc["project"], "hpc_outputs"]).replace("//", "/")
    out: list[tuple[str, str | None]] = [("job-name", f"{doc['project']}-{doc['name']}")]
    if "$" not in logs and not logs.startswith("~"):
        pattern = "%A_%a" if ntasks > 1 else "%j_0"
        # a literal % of the folder is doubled: sbatch reads %x in --output as a pattern
        out.append(("output", f"{logs.rstrip('/').replace('%', '%%')}/{doc['name']}_{pattern}.out"))
    for key in ("account", "partition", "qos", "constraint"):
        if key in cluster:
            out.append((key, cluster[key]))
    out += [("time", time), ("nodes", str(res.get("nodes", 1))), ("ntasks-per-node", str(res.get("tasks_per_node", 1))),
            ("cpus-per-task", str(res.get("cpus_per_task", 1))), ("mem", mem)]
    gpus = res.get("gpus", 0)
    if gpus:
        out.append(("gres", f"gpu:{res['gpu_type']}:{gpus}" if "gpu_type" in res else f"gpu:{gpus}"))
    if ntasks > 1:
        out.append(("array", f"0-{ntasks - 1}" + (f"%{res['max_parallel']}" if "max_parallel" in res else "")))
    if "requeue" in res:
        out += [("signal", f"B:USR1@{parse_time(res['requeue'].get('before_end', '5m'))}"), ("requeue", None)]
    out.append(("open-mode", "append"))
    for key, value in cluster.get("sbatch_options", {}).items():
        out.append((key, None if value is True else value_text(value)))
    return out


def _launcher(draw: st.DrawFn, doc: dict[str, t.Any]) -> None:
    """A launcher that fits the resources (the rules of run.launcher), and maybe requeue."""
    res, run = doc["resources"], doc["run"]
    nodes, per_node, gpus = res.get("nodes", 1), res.get("tasks_per_node", 1), res.get("gpus", 0)
    choices = ["srun"]
    if nodes == 1 and per_node == 1:
        choices.append("single")
    if per_node == 1:
        choices.append("torchrun")
    launcher = draw(st.sampled_from(choices))
    if launcher == "srun" and gpus:
        assume(gpus % per_node == 0)
    if launcher == "torchrun" and draw(st.booleans()):
        run["processes_per_node"] = draw(st.integers(1, 8))
    if "sweep" in run and launcher != "single":
        assume(world_size(launcher, nodes, per_node, processes_per_node(launcher, run.get("processes_per_node"), gpus)) == 1)
    if launcher != "single" or draw(st.booleans()):
        run["launcher"] = launcher
    if draw(st.booleans()):
        requeue: dict[str, t.Any] = {}
        limit = parse_time(res["time"])
        _optional(draw, requeue, "before_end", st.integers(1, max(1, min(1092, limit // 60 - 1))))
        _optional(draw, requeue, "max_restarts", st.integers(0, 1000))
        if requeue.get("before_end", 5) * 60 < limit:
            res["requeue"] = requeue


def _container_options(draw: st.DrawFn, container: dict[str, t.Any]) -> None:
    """The container fields every strategy may set or leave to their defaults."""
    _optional(draw, container, "runtime", st.sampled_from(["auto", "apptainer", "singularity"]))
    _optional(draw, container, "entry", st.sampled_from(["run", "exec"]))
    _optional(draw, container, "gpu", st.sampled_from(["auto", "nvidia", "rocm", "none"]))
    for key in ("stage_image", "cleanenv", "contain", "writable_tmpfs"):
        _optional(draw, container, key, st.booleans())


def _optional(draw: st.DrawFn, section: dict[str, t.Any], key: str, strategy: st.SearchStrategy[t.Any]) -> None:
    if draw(st.booleans()):
        section[key] = draw(strategy)


@st.composite
def manifests(draw: st.DrawFn) -> Generated:
    """A valid manifest with hostile content in every field that allows it, and what it compiles to."""
    doc: dict[str, t.Any] = {"version": 1, "name": draw(NAME), "project": draw(NAME)}
    _optional(draw, doc, "description", hostile_text())

    cluster: dict[str, t.Any] = {}
    _optional(draw, cluster, "account", TOKEN)
    _optional(draw, cluster, "partition", st.from_regex(r"[A-Za-z0-9._-]{1,8}(,[A-Za-z0-9._-]{1,8}){0,2}", fullmatch=True))
    _optional(draw, cluster, "qos", TOKEN)
    _optional(draw, cluster, "constraint", st.from_regex(r"[A-Za-z0-9._&|\[\]*():!,-]{1,16}", fullmatch=True))
    _optional(draw, cluster, "modules", st.lists(st.from_regex(r"[A-Za-z0-9._+/-]{1,16}", fullmatch=True), max_size=3))
    # a folder under scratch, local_tmp, outputs.dir (and data.root with stage: bind) is bound:
    # no ',' or ':' there (apptainer splits bind specs on them)
    _optional(draw, cluster, "scratch", any_path(exclude=",:"))
    _optional(draw, cluster, "local_tmp", any_path(exclude=",:"))
    _optional(draw, cluster, "sbatch_options", st.dictionaries(
        SBATCH_OPTION, st.one_of(one_line(), st.just(True), st.integers(0, 2**32 - 1).map(lambda i: Num(str(i))),
                                 st.sampled_from(["0x10", "010", "+3"]).map(Num)), max_size=3))
    if cluster:
        doc["cluster"] = cluster

    container: dict[str, t.Any] = {"image": draw(any_path(suffix=".sif"))}
    _container_options(draw, container)
    targets: list[str] = []
    if draw(st.booleans()):
        container["workdir"] = draw(any_target())
        targets.append(container["workdir"])
    if draw(st.booleans()):
        binds = []
        for _ in range(draw(st.integers(1, 3))):
            bind: dict[str, t.Any] = {"source": draw(any_path(exclude=",:")), "target": draw(any_target())}
            assume(bind["target"] not in targets)
            targets.append(bind["target"])
            _optional(draw, bind, "mode", st.sampled_from(["ro", "rw"]))
            binds.append(bind)
        container["binds"] = binds
    doc["container"] = container

    if draw(st.booleans()):
        data: dict[str, t.Any] = {"subsets": draw(subsets())}
        _optional(draw, data, "stage", st.sampled_from(["archive", "copy", "bind"]))
        _optional(draw, data, "root", any_path(exclude=",:" if data.get("stage") == "bind" else ""))
        doc["data"] = data

    time, time_norm = draw(st.sampled_from(TIMES))
    mem, mem_norm = draw(st.sampled_from(MEMS))
    resources: dict[str, t.Any] = {"time": time, "mem": mem}
    _optional(draw, resources, "nodes", st.integers(1, 4096))
    _optional(draw, resources, "tasks_per_node", st.integers(1, 1024))
    _optional(draw, resources, "cpus_per_task", st.integers(1, 1024))
    _optional(draw, resources, "gpus", st.integers(0, 64))
    if resources.get("gpus"):
        _optional(draw, resources, "gpu_type", TOKEN)
    _optional(draw, resources, "max_parallel", st.integers(1, 100000))
    doc["resources"] = resources

    run, tasks = draw(runs())
    doc["run"] = run
    _launcher(draw, doc)

    env_names = draw(st.lists(ENV_NAME, max_size=4, unique=True))
    if doc["run"].get("launcher", "single") != "single":
        assume(not set(env_names) & set(DISTRIBUTED_ENV))
    secret_names = draw(st.lists(ENV_NAME.filter(lambda n: n not in env_names), max_size=2, unique=True))
    if env_names:
        scalar = st.one_of(hostile_text(), NUMBER_TEXT.map(Num), st.booleans())
        doc["env"] = {n: draw(scalar) for n in env_names}
    if secret_names:
        doc["secrets"] = {n: {"file": draw(any_path())} for n in secret_names}
    outputs: dict[str, t.Any] = {}
    _optional(draw, outputs, "dir", any_path(exclude=",:"))
    _optional(draw, outputs, "logs", any_path())
    if outputs:
        doc["outputs"] = outputs
    return Generated(doc, tasks, expected_directives(doc, len(tasks), time_norm, mem_norm))


_SUBSET_PART = st.from_regex(r"[A-Za-z0-9._+@=-]{1,10}", fullmatch=True).filter(lambda p: p not in (".", ".."))


@st.composite
def subsets(draw: st.DrawFn) -> list[str]:
    """data.subsets: relative paths, none twice, none inside another."""
    out: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        subset = "/".join(draw(st.lists(_SUBSET_PART, min_size=1, max_size=3)))
        if all(subset != o and not subset.startswith(o + "/") and not o.startswith(subset + "/") for o in out):
            out.append(subset)
    return out


# --- manifests a job can really run with (tests/doubles): every path in a temporary SCRATCH ---

RUNTIME_VARS = ("FZ_A", "FZ_B")
_RUNTIME_SEGMENT = one_line(min_size=1, exclude=_SEGMENT_EXCLUDE).filter(lambda s: s not in (".", ".."))


@st.composite
def runtime_path(draw: st.DrawFn, *, root: str = "$SCRATCH", suffix: str = "") -> str:
    """`$SCRATCH/...` (or another root) with hostile literal segments, `$FZ_A`/`${FZ_B}` parts, no ',' or ':'."""
    starts = [root, "${" + root[1:] + "}"] + (["~"] if root == "$HOME" else [])
    start = draw(st.sampled_from(starts))
    segments = []
    for _ in range(draw(st.integers(1, 3))):
        parts = draw(st.lists(st.one_of(_RUNTIME_SEGMENT, st.sampled_from(["$FZ_A", "${FZ_B}", "$$", "$1", "$ ", "$-"])),
                              min_size=1, max_size=3))
        segments.append("".join(parts))
    path = start + "".join("/" + s for s in segments) + suffix
    assume(set(referenced_vars(path)) <= {"SCRATCH", "HOME", "SLURM_TMPDIR", *RUNTIME_VARS})
    assume(not re.search(r"(^|/)\.{1,2}(/|$)", expand_path(path, dict.fromkeys([*RUNTIME_VARS, "SCRATCH", "HOME", "SLURM_TMPDIR"], "v"))))
    return path


@st.composite
def runnable_manifests(draw: st.DrawFn) -> Generated:
    """A valid hostile manifest whose job can run through the apptainer test double.

    Paths live under $SCRATCH, $HOME or $SLURM_TMPDIR (temporary folders of the test) and
    the test creates what they name; no archive staging (it needs `mcompile stage`).
    """
    doc: dict[str, t.Any] = {"version": 1, "name": draw(NAME), "project": draw(NAME)}
    env = {name: draw(_RUNTIME_SEGMENT) for name in RUNTIME_VARS}
    dirs: list[str] = []
    files: dict[str, bytes] = {}

    cluster: dict[str, t.Any] = {}
    if draw(st.booleans()):
        cluster["modules"] = draw(st.lists(st.from_regex(r"[A-Za-z0-9._+/-]{1,12}", fullmatch=True), min_size=1, max_size=2))
    _optional(draw, cluster, "scratch", runtime_path())
    _optional(draw, cluster, "local_tmp", runtime_path(root="$SLURM_TMPDIR"))
    _optional(draw, cluster, "sbatch_options", st.dictionaries(SBATCH_OPTION, one_line(), max_size=2))
    if cluster:
        doc["cluster"] = cluster
    scratch = cluster.get("scratch", "$SCRATCH")

    image = draw(runtime_path(suffix=".sif"))
    container: dict[str, t.Any] = {"image": image}
    _container_options(draw, container)
    targets: list[str] = []
    if draw(st.booleans()):
        container["workdir"] = draw(any_target(prefix="/fzw"))
        targets.append(container["workdir"])
    if draw(st.booleans()):
        binds = []
        for _ in range(draw(st.integers(1, 2))):
            source = draw(st.one_of(runtime_path(), runtime_path(root="$HOME")))
            bind: dict[str, t.Any] = {"source": source, "target": draw(any_target(prefix="/fzb"))}
            assume(bind["target"] not in targets)
            targets.append(bind["target"])
            _optional(draw, bind, "mode", st.sampled_from(["ro", "rw"]))
            dirs.append(source)
            binds.append(bind)
        container["binds"] = binds
    doc["container"] = container

    if draw(st.booleans()):
        data: dict[str, t.Any] = {"subsets": draw(subsets()), "stage": draw(st.sampled_from(["copy", "bind"]))}
        _optional(draw, data, "root", runtime_path())
        root = data.get("root", f"{scratch.rstrip('/')}/{doc['project']}/data")
        for subset in data["subsets"]:
            files[f"{root}/{subset}/file.txt"] = b"data\n"
        doc["data"] = data

    doc["resources"] = {"time": "10m", "mem": "1G"}
    if draw(st.booleans()):
        doc["resources"]["gpus"] = draw(st.integers(1, 2))
    run, tasks = draw(runs(max_tasks=3))
    doc["run"] = run
    names = draw(st.lists(st.from_regex(r"FZ_[A-Z0-9_]{1,8}", fullmatch=True).filter(lambda n: n not in RUNTIME_VARS),
                          max_size=4, unique=True))
    if names and draw(st.booleans()):  # the first name is a secret
        file = draw(st.one_of(runtime_path(), runtime_path(root="$HOME")))
        doc["secrets"] = {names.pop(0): {"file": file}}
        files[file] = draw(one_line()).encode() + b"\n"
    if names:
        doc["env"] = {n: draw(st.one_of(hostile_text(), NUMBER_TEXT.map(Num), st.booleans())) for n in names}
    outputs: dict[str, t.Any] = {}
    _optional(draw, outputs, "dir", runtime_path())
    if outputs:
        doc["outputs"] = outputs
    return Generated(doc, tasks, expected_directives(doc, len(tasks), "0-00:10:00", "1G"), env=env, dirs=dirs,
                     files=files, image=image)


# --- shell variables in paths ----------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def referenced_vars(path: str) -> list[str]:
    """Variables a manifest path uses (as README: `$VAR`, `${VAR}`, a leading `~` is HOME)."""
    names = [a or b for a, b in _VAR.findall(path)]
    return ["HOME", *names] if path == "~" or path.startswith("~/") else names


def expand_path(path: str, env: t.Mapping[str, str]) -> str:
    """What bash makes of a manifest path on the compute node: variables expand, nothing else does."""
    if path == "~" or path.startswith("~/"):
        path = env["HOME"] + path[1:]
    return _VAR.sub(lambda m: env[m.group(1) or m.group(2)], path)


# --- reading a compiled job ------------------------------------------------------------------


def decode_tasks(run_dir: Path) -> list[str]:
    """The commands tasks/commands + tasks/index hold (the way job.sbatch reads them), checking the layout."""
    commands = (run_dir / "tasks" / "commands").read_bytes()
    index = (run_dir / "tasks" / "index").read_bytes()
    lines = index.split(b"\n")
    assert lines[-1] == b"", "tasks/index ends with a newline"
    offsets = [int(x) for x in lines[:-1]]
    assert all(len(x) == 16 and x.isdigit() for x in lines[:-1]), "fixed-width offsets"
    assert offsets[0] == 0 and offsets[-1] == len(commands)
    out = []
    for start, end in itertools.pairwise(offsets):
        assert commands[end - 1 : end] == b"\n", "each command is followed by a newline"
        out.append(commands[start : end - 1].decode("utf-8"))
    return out


def load_json(path: Path) -> t.Any:
    return json.loads(path.read_text(encoding="utf-8"))
