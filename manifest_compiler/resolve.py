"""Resolve: valid manifest data -> the resolved manifest (a JSON-ready dict).

Defaults are filled, time and memory normalised, and the run expanded into its
tasks (one command per array task). The result is what `resolved.json` holds and
what `diff` compares: two manifests that mean the same resolve the same.
Pure: no I/O, no environment lookups (`$VARS` stay symbolic).

The tasks of a grid are a `GridTasks`, a read-only sequence that computes each
command when asked, so a million-task grid is never a million strings in memory;
every other value is plain JSON data (`render` writes resolved.json from it as a
stream; `json.dumps(resolved, default=list)` gives the same document).
"""

from __future__ import annotations

import itertools
import math
import operator
import re
import shlex
import typing as t
from collections import abc

from . import model
from .load import scalar_text
from .model import Resolved
from .units import format_mem, format_time, parse_mem, parse_time

# A grid template, read left to right. A template delimiter written twice is one literal
# delimiter ({{{{ -> {{, {%{% -> {%, {#{# -> {#); `}}` is always literal. `${#` and `${%` are
# bash's (`${#VAR}`), never template syntax. Whatever else opens template syntax is refused.
# None of these escapes can occur in a template that was valid before they existed (it would
# hold a `{{`, `{%` or `{#` outside a placeholder), so no command of such a template changes.
_TEMPLATE_PART = re.compile(
    r"(?P<escape>\{\{\{\{|\{%\{%|\{#\{#)"
    r"|\$\{[#%]"
    r"|\{\{\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\}\}"
    r"|(?P<syntax>\{\{(?!\{)|\{[%#])"  # `{{{ x }}`: a literal { and a placeholder
)


def template_pieces(template: str) -> tuple[list[str], list[str]]:
    """A grid template as (literals, names): the text around each `{{ name }}` placeholder,
    escapes written as what they stand for, and the placeholders' names in order
    (`len(literals) == len(names) + 1`).

    Raises:
        ValueError: template syntax other than placeholders (`{% for %}`, `{{ x | f }}`).
    """
    literals: list[str] = []
    names: list[str] = []
    text: list[str] = []
    pos = 0
    for part in _TEMPLATE_PART.finditer(template):
        text.append(template[pos : part.start()])
        pos = part.end()
        if part["syntax"]:
            opening = part["syntax"]
            snippet = template[part.start() : part.start() + 20]
            raise ValueError(f"unsupported template syntax near {snippet!r}; only {{{{ name }}}} placeholders are allowed "
                             f"({opening}{opening} writes a literal {opening})")
        if part["name"]:
            literals.append("".join(text))
            names.append(part["name"])
            text = []
        else:
            text.append(part[0][:2] if part["escape"] else part[0])
    text.append(template[pos:])
    literals.append("".join(text))
    return literals, names


def grid_placeholders(template: str) -> list[str]:
    """Names used as `{{ name }}` in a grid template, in order of first use.

    Only plain placeholders are supported; anything else that looks like template
    syntax is refused rather than passed through silently. Raises ValueError.
    """
    return list(dict.fromkeys(template_pieces(template)[1]))


def grid_axes(parameters: t.Iterable[str], zip_groups: t.Sequence[t.Sequence[str]] = ()) -> list[list[str]]:
    """The axes of a grid's product, in order: each a zip group (its parameters paired element by
    element, at the place of its first declared parameter, in the group's own order) or one
    parameter. The last axis varies fastest."""
    group_of = {name: tuple(group) for group in zip_groups for name in group}
    axes: list[list[str]] = []
    placed: set[tuple[str, ...]] = set()
    for name in parameters:
        group = group_of.get(name)
        if group is None:
            axes.append([name])
        elif group not in placed:
            placed.add(group)
            axes.append(list(group))
    return axes


class GridTasks(abc.Sequence[str]):
    """The commands of a grid, computed on demand instead of held as a list.

    Task i is the i-th combination of the cartesian product of the grid's axes (`grid_axes`:
    parameters in declared order, a zip group as one axis; the last varies fastest), each
    value shell-quoted (`shlex.quote`) into the template. Only the quoted parameter values
    are kept, so a 1,000,000-task grid costs the memory of its parameter lists, not of its
    commands. It behaves as a read-only list of str: `len`, iteration, `tasks[i]` (negative
    too), slices (a list), and equality with a list or another GridTasks holding the same
    commands.
    """

    __slots__ = ("_format", "_len", "_quoted", "_radices", "_split", "json_plain")

    def __init__(self, template: str, parameters: t.Mapping[str, t.Sequence[t.Any]],
                 zip_groups: t.Sequence[t.Sequence[str]] = ()) -> None:
        """Compile the template into one `str.format` pattern over the quoted values: `{a}` for
        the parameter of axis a, `{a[m]}` for member m of a zip group's axis.

        Raises:
            ValueError: the template names a parameter that does not exist; zipped lists of
                different lengths (validate says so first).
        """
        literals, names = template_pieces(template)
        axes = grid_axes(parameters, zip_groups)
        field = {name: (f"{{{a}}}" if len(axis) == 1 else f"{{{a}[{m}]}}", a) for a, axis in enumerate(axes) for m, name in enumerate(axis)}
        missing = [name for name in names if name not in field]
        if missing:
            raise ValueError(f"placeholder {{{{ {missing[0]} }}}} has no parameter")
        pattern = [_format_literal(literals[0])]
        for name, literal in zip(names, literals[1:], strict=True):
            pattern.append(field[name][0])
            pattern.append(_format_literal(literal))
        self._format = "".join(pattern)
        quoted = {name: tuple(shlex.quote(scalar_text(v)) for v in parameters[name]) for name in parameters}
        for axis in axes:
            if len({len(quoted[name]) for name in axis}) > 1:
                raise ValueError(f"zipped parameters of different lengths: {', '.join(f'{n} ({len(quoted[n])})' for n in axis)}")
        self._quoted: tuple[tuple[t.Any, ...], ...] = tuple(
            quoted[axis[0]] if len(axis) == 1 else tuple(zip(*(quoted[name] for name in axis), strict=True)) for axis in axes)
        self._radices = tuple(len(q) for q in self._quoted)
        self._len = math.prod(self._radices)
        self._split = _inner_split(pattern, [field[name][1] for name in names], self._radices)
        # No task holds a newline or a character JSON escapes (a quote, a backslash, a control
        # character): each line of tasks/commands is then a JSON string once quoted.
        texts = [*literals, *(value for values in quoted.values() for value in values)]
        self.json_plain = not any(_JSON_ESCAPED.search(text) for text in texts)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> t.Iterator[str]:
        return itertools.starmap(self._format.format, itertools.product(*self._quoted))

    def text_batches(self, size: int) -> t.Iterator[tuple[str, list[int]]]:
        """The tasks about `size` at a time: their text, each task followed by a newline, and each
        task's length in characters. Where the template names its last parameters in one stretch
        (`_inner_split`), that stretch is formatted once for each of their combinations, and a
        run of them is one str.join: no Python string a task."""
        if self._split is None:
            yield from self._generic_batches(size)
            return
        head, middle, tail, k = self._split
        pad = (None,) * k
        outer_count = len(self._radices) - k
        inner = [middle.format(*(None,) * outer_count, *combo) for combo in itertools.product(*self._quoted[outer_count:])]
        widths = [len(value) for value in inner]
        text: list[str] = []
        lengths: list[int] = []
        for outer in itertools.product(*self._quoted[:outer_count]):
            prefix, suffix = head.format(*outer, *pad), tail.format(*outer, *pad)
            glue, base = suffix + "\n" + prefix, len(prefix) + len(suffix)
            for start in range(0, len(inner), size):
                text.append(prefix + glue.join(inner[start : start + size]) + suffix + "\n")
                lengths += map(base.__add__, widths[start : start + size])
                if len(lengths) >= size:
                    yield "".join(text), lengths
                    text, lengths = [], []
        if lengths:
            yield "".join(text), lengths

    def _generic_batches(self, size: int) -> t.Iterator[tuple[str, list[int]]]:
        it = iter(self)
        while batch := list(itertools.islice(it, size)):
            yield "\n".join(batch) + "\n", [len(task) for task in batch]

    @t.overload
    def __getitem__(self, index: int) -> str: ...

    @t.overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        i = operator.index(index)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("grid task index out of range")
        combo = []
        for values, radix in zip(reversed(self._quoted), reversed(self._radices), strict=True):
            i, digit = divmod(i, radix)
            combo.append(values[digit])
        return self._format.format(*reversed(combo))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GridTasks) and (self._format, self._quoted) == (other._format, other._quoted):
            return True
        if not isinstance(other, (GridTasks, list)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # like a list: equal to lists, so not hashable

    def __repr__(self) -> str:
        return f"<GridTasks: {self._len} tasks of {self._format!r}>"


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # what json.dumps escapes in a string, and a newline


_INNER_MAX = 1 << 16  # combinations of the last parameters formatted ahead (strings held at once)


def _inner_split(pattern: list[str], fields: list[int], radices: tuple[int, ...]) -> tuple[str, str, str, int] | None:
    """(head, middle, tail, k): the grid's format pattern cut around the one stretch of it that
    names the last k parameters and no other (k as large as their combinations allow, at most
    _INNER_MAX), or None when not even the last parameter's fields are one stretch.

    `pattern` alternates literals and fields (literal, field, literal, ...), `fields[j]` the
    parameter of placeholder j. A parameter named nowhere makes an empty stretch.
    """
    best = None
    for k in range(1, len(radices) + 1):
        if math.prod(radices[-k:]) > _INNER_MAX:
            break
        inner = set(range(len(radices) - k, len(radices)))
        at = [j for j, field in enumerate(fields) if field in inner]
        if not at:  # named nowhere: an empty stretch, at the end
            best = ("".join(pattern), "", "", k)
            continue
        if any(fields[j] not in inner for j in range(at[0], at[-1] + 1)):
            break
        first, last = 2 * at[0] + 1, 2 * at[-1] + 1
        best = ("".join(pattern[:first]), "".join(pattern[first : last + 1]), "".join(pattern[last + 1 :]), k)
    return best


def _format_literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def resolve_manifest(data: dict[str, t.Any], *, file_commands: t.Sequence[str] = ()) -> Resolved:
    """Fill defaults (model.py) and normalise a manifest that passed validation.

    `file_commands`: the commands of run.commands_file, as `load` read them (resolve reads no file).
    """
    name, project = data["name"], data["project"]
    cluster = dict(data.get("cluster") or {})
    scratch = cluster.get("scratch", model.DEFAULT_SCRATCH)
    cluster_out: model.Cluster = {
        "account": cluster.get("account"),
        "partition": cluster.get("partition"),
        "qos": cluster.get("qos"),
        "constraint": cluster.get("constraint"),
        "modules": list(cluster.get("modules") or []),
        "scratch": scratch,
        "local_tmp": cluster.get("local_tmp", model.DEFAULT_LOCAL_TMP),
        "sbatch_options": {k: scalar_text(v) if v is not True else True for k, v in (cluster.get("sbatch_options") or {}).items()},
    }
    for fact in ("name", "internet", "account_required", "gpu_types", "gpu_counts", "submit_from"):  # a site profile's
        if fact in cluster:
            cluster_out[fact] = cluster[fact]
    if "max_time" in cluster:
        cluster_out["max_time"] = format_time(parse_time(cluster["max_time"]))

    res = {**model.DEFAULT_RESOURCES, **data["resources"]}
    gpus = res["gpus"]
    resources: model.Resources = {
        "time": format_time(parse_time(res["time"])),
        "nodes": res["nodes"],
        "tasks_per_node": res["tasks_per_node"],
        "cpus_per_task": res["cpus_per_task"],
        "mem": format_mem(parse_mem(res["mem"])),
        "gpus": gpus,
        "gpu_type": res.get("gpu_type"),
        "max_parallel": res.get("max_parallel"),
        "requeue": _resolve_requeue(res.get("requeue")),
    }

    c = {**model.DEFAULT_CONTAINER_SWITCHES, **data["container"]}
    container: model.Container = {
        "image": c["image"],
        "runtime": c.get("runtime", model.DEFAULT_RUNTIME),
        "entry": c.get("entry", model.DEFAULT_ENTRY),
        "gpu": model.gpu_flag(c.get("gpu", model.DEFAULT_GPU), gpus),
        "stage_image": c["stage_image"],
        "workdir": c.get("workdir"),
        "cleanenv": c["cleanenv"],
        "contain": c["contain"],
        "writable_tmpfs": c["writable_tmpfs"],
        "binds": [{"source": b["source"], "target": b["target"], "mode": b.get("mode", model.DEFAULT_BIND_MODE)}
                  for b in c.get("binds") or []],
    }
    if c.get("overlay"):
        container["overlay"] = [{"path": o["path"], "mode": o.get("mode", model.DEFAULT_OVERLAY_MODE)} for o in c["overlay"]]

    d = data.get("data")
    data_out: model.Data | None = None
    if d:
        data_out = {
            "root": d.get("root", model.default_data_root(scratch, project)),
            "subsets": list(d["subsets"]),
            "stage": d.get("stage", model.DEFAULT_STAGE),
        }
        if d.get("build", model.DEFAULT_BUILD) == "job":
            data_out["build"] = "job"

    run = _resolve_run(data["run"], gpus, file_commands)

    outputs = data.get("outputs") or {}
    resolved: Resolved = {
        "version": data["version"],
        "name": name,
        "project": project,
        "description": data.get("description"),
        "cluster": cluster_out,
        "container": container,
        "data": data_out,
        "resources": resources,
        "run": run,
        "env": {k: scalar_text(v) for k, v in (data.get("env") or {}).items()},
        "secrets": {k: {"file": v["file"]} for k, v in (data.get("secrets") or {}).items()},
        "outputs": {
            "dir": outputs.get("dir", model.default_outputs_dir(scratch, project, name)),
            "logs": outputs.get("logs", model.default_logs(scratch, project)),
        },
    }
    if "wandb" in data:  # only when declared: a manifest without it resolves as it always did
        w = data["wandb"] or {}
        resolved["wandb"] = {"project": w.get("project", project), "entity": w.get("entity"),
                             "mode": w.get("mode", "online"), "group": w.get("group")}
    code = data.get("code")
    if code:
        resolved["code"] = {"repo": code["repo"], "target": code.get("target", model.code_target(container["workdir"])),
                            "dirty": code.get("dirty", model.DEFAULT_DIRTY)}
    return resolved


def _resolve_requeue(requeue: dict[str, t.Any] | None) -> model.Requeue | None:
    """before_end in seconds (SLURM's --signal unit); None: no requeue."""
    if requeue is None:
        return None
    return {
        "before_end": parse_time(requeue.get("before_end", model.DEFAULT_BEFORE_END)),
        "max_restarts": requeue.get("max_restarts", model.DEFAULT_MAX_RESTARTS),
    }


def _resolve_run(run: dict[str, t.Any], gpus: int, file_commands: t.Sequence[str]) -> model.Run:
    """The run's tasks (one command each), then how each task starts its processes."""
    out: model.Run
    if "commands" in run:
        out = {"kind": "commands", "tasks": list(run["commands"])}  # type: ignore[typeddict-item]  # launcher below
    elif "commands_file" in run:
        out = {"kind": "commands_file", "tasks": list(file_commands)}  # type: ignore[typeddict-item]
    elif "grid" in run:
        grid = run["grid"]
        parameters = {k: list(v) for k, v in grid["parameters"].items()}
        zip_groups = [list(group) for group in grid.get("zip", [])]
        out = {"kind": "grid", "template": grid["template"], "parameters": parameters}  # type: ignore[typeddict-item]
        if zip_groups:  # only when declared: a grid without it resolves as it always did
            out["zip"] = zip_groups
        out["tasks"] = GridTasks(grid["template"], parameters, zip_groups)
    else:
        sweep = run["sweep"]
        per_agent = sweep.get("runs_per_agent", model.DEFAULT_RUNS_PER_AGENT)
        command = f"wandb agent --count {per_agent} {sweep['id']}"
        out = {"kind": "sweep", "id": sweep["id"], "agents": sweep["agents"],  # type: ignore[typeddict-item]
               "runs_per_agent": per_agent, "tasks": [command] * sweep["agents"]}
    # last in resolved.json's run, after the tasks
    out["launcher"] = launcher = run.get("launcher", model.DEFAULT_LAUNCHER)
    out["processes_per_node"] = model.processes_per_node(launcher, run.get("processes_per_node"), gpus)
    if run.get("pack", 1) > 1 and len(out["tasks"]) > 1:  # only when it packs: other runs resolve (and hash) as they always did
        out["pack"] = run["pack"]
    return out
