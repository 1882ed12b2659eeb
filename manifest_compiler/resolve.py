"""Resolve: valid manifest data -> the resolved manifest (a plain, JSON-ready dict).

Defaults are filled, time and memory normalised, and the run expanded into its
tasks (one command per array task). The result is what `resolved.json` holds and
what `diff` compares: two manifests that mean the same resolve the same.
Pure: no I/O, no environment lookups (`$VARS` stay symbolic).
"""

from __future__ import annotations

import itertools
import re
import shlex
import typing as t

from .load import scalar_text
from .units import format_mem, format_time, parse_mem, parse_time

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")


def grid_placeholders(template: str) -> list[str]:
    """Names used as `{{ name }}` in a grid template, in order of first use.

    Only plain placeholders are supported; anything else that looks like template
    syntax is refused rather than passed through silently. Raises ValueError.
    """
    rest = _PLACEHOLDER.sub("", template)
    bad = _TEMPLATE_SYNTAX.search(rest)
    if bad:
        snippet = rest[bad.start() : bad.start() + 20]
        raise ValueError(f"unsupported template syntax near {snippet!r}; only {{{{ name }}}} placeholders are allowed")
    return list(dict.fromkeys(_PLACEHOLDER.findall(template)))


def expand_grid(template: str, parameters: dict[str, list[t.Any]]) -> t.Iterator[str]:
    """The commands of a grid: cartesian product in declared order, values shell-quoted.

    A value can never become a second shell word or command: each substitution is
    one quoted word (`shlex.quote`), whatever bytes it holds.
    """
    pieces = _PLACEHOLDER.split(template)  # literal, name, literal, name, ...
    literals, names = pieces[0::2], pieces[1::2]
    order = list(parameters)
    quoted = [[shlex.quote(scalar_text(v)) for v in parameters[name]] for name in order]
    slot = [order.index(name) for name in names]
    for combo in itertools.product(*quoted):
        out = [literals[0]]
        for i, lit in zip(slot, literals[1:], strict=True):
            out.append(combo[i])
            out.append(lit)
        yield "".join(out)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/") or "/", *parts]).replace("//", "/")


def resolve_manifest(data: dict[str, t.Any]) -> dict[str, t.Any]:
    """Fill defaults and normalise a manifest that passed validation."""
    name, project = data["name"], data["project"]
    cluster = dict(data.get("cluster") or {})
    scratch = cluster.get("scratch", "$SCRATCH")
    cluster_out = {
        "account": cluster.get("account"),
        "partition": cluster.get("partition"),
        "qos": cluster.get("qos"),
        "constraint": cluster.get("constraint"),
        "modules": list(cluster.get("modules") or []),
        "scratch": scratch,
        "local_tmp": cluster.get("local_tmp", "$SLURM_TMPDIR"),
        "sbatch_options": {k: scalar_text(v) if v is not True else True for k, v in (cluster.get("sbatch_options") or {}).items()},
    }

    res = data["resources"]
    gpus = res.get("gpus", 0)
    resources = {
        "time": format_time(parse_time(res["time"])),
        "nodes": res.get("nodes", 1),
        "tasks_per_node": res.get("tasks_per_node", 1),
        "cpus_per_task": res.get("cpus_per_task", 1),
        "mem": format_mem(parse_mem(res["mem"])),
        "gpus": gpus,
        "gpu_type": res.get("gpu_type"),
        "max_parallel": res.get("max_parallel"),
        "requeue": _resolve_requeue(res.get("requeue")),
    }

    c = data["container"]
    gpu = c.get("gpu", "auto")
    container = {
        "image": c["image"],
        "runtime": c.get("runtime", "auto"),
        "entry": c.get("entry", "run"),
        "gpu": ("nvidia" if gpus > 0 else "none") if gpu == "auto" else gpu,
        "stage_image": c.get("stage_image", True),
        "workdir": c.get("workdir"),
        "cleanenv": c.get("cleanenv", True),
        "contain": c.get("contain", True),
        "writable_tmpfs": c.get("writable_tmpfs", True),
        "binds": [{"source": b["source"], "target": b["target"], "mode": b.get("mode", "rw")} for b in c.get("binds") or []],
    }

    d = data.get("data")
    data_out = None
    if d:
        data_out = {
            "root": d.get("root", _join(scratch, project, "data")),
            "subsets": list(d["subsets"]),
            "stage": d.get("stage", "archive"),
        }

    run = _resolve_run(data["run"])
    run["launcher"] = data["run"].get("launcher", "single")
    run["processes_per_node"] = (data["run"].get("processes_per_node") or max(gpus, 1)) if run["launcher"] == "torchrun" else None

    outputs = data.get("outputs") or {}
    return {
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
            "dir": outputs.get("dir", _join(scratch, project, name)),
            "logs": outputs.get("logs", _join(scratch, project, "hpc_outputs")),
        },
    }


def _resolve_requeue(requeue: dict[str, t.Any] | None) -> dict[str, int] | None:
    """before_end in seconds (SLURM's --signal unit); None: no requeue."""
    if requeue is None:
        return None
    before = requeue.get("before_end", "5m")
    return {
        "before_end": parse_time(before) if isinstance(before, str) else int(before) * 60,
        "max_restarts": requeue.get("max_restarts", 3),
    }


def _resolve_run(run: dict[str, t.Any]) -> dict[str, t.Any]:
    if "commands" in run:
        return {"kind": "commands", "tasks": list(run["commands"])}
    if "grid" in run:
        grid = run["grid"]
        parameters = {k: list(v) for k, v in grid["parameters"].items()}
        return {
            "kind": "grid",
            "template": grid["template"],
            "parameters": parameters,
            "tasks": list(expand_grid(grid["template"], parameters)),
        }
    sweep = run["sweep"]
    per_agent = sweep.get("runs_per_agent", 1)
    command = f"wandb agent --count {per_agent} {sweep['id']}"
    return {
        "kind": "sweep",
        "id": sweep["id"],
        "agents": sweep["agents"],
        "runs_per_agent": per_agent,
        "tasks": [command] * sweep["agents"],
    }
