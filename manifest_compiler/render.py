"""Render: JobPlan -> the files of a job directory ({relative path: bytes}). Pure.

Templates are jinja2 files in the package; they see only the plan. Two filters do
all shell quoting: `sh` for literal words and `shpath` for manifest paths, whose
`$VAR`/`${VAR}` (and a leading `~`) expand on the compute node while every other
byte stays literal.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shlex
import typing as t

from .plan import VARIABLE, JobPlan

INDEX_WIDTH = 16  # digits of one offset in tasks/index; 10**16 bytes is enough
PLAN_TASKS_SHOWN = 20

_DQ_SPECIAL = re.compile(r'([\\"$`])')


def shell_path(path: str) -> str:
    """One double-quoted bash word: variables expand, nothing else does.

    No word splitting, globbing, command substitution or arithmetic can happen,
    whatever the path holds.
    """
    if path == "~" or path.startswith("~/"):
        path = "${HOME}" + path[1:]
    out, pos = [], 0
    for m in VARIABLE.finditer(path):
        out.append(_DQ_SPECIAL.sub(r"\\\1", path[pos : m.start()]))
        out.append("${" + (m.group(1) or m.group(2)) + "}")
        pos = m.end()
    out.append(_DQ_SPECIAL.sub(r"\\\1", path[pos:]))
    return '"' + "".join(out) + '"'


_SBATCH_SAFE = re.compile(r"[A-Za-z0-9._,:/=@%+-]+")


def sbatch_value(value: str) -> str:
    """A value for an `#SBATCH --opt=VALUE` line, as ONE word.

    sbatch splits #SBATCH lines at blanks and stops at `#` unless a value is
    double-quoted (with backslash and `"` escaped inside): unquoted, a value
    `x --time=7-00:00:00` would set a second option.
    """
    if _SBATCH_SAFE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_word(value: str) -> str:
    """One bash word holding exactly `value`, on one line even when the value has newlines.

    Printable text gets shlex's single quotes; text with control characters gets
    bash's $'...' quoting, so no value can put a line of its own into the script.
    """
    if value.isprintable():
        return shlex.quote(value)
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:  # the UTF-8 bytes: bash's \u escapes would depend on the job's locale
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "$'" + "".join(out) + "'"


def _bytecode_cache() -> t.Any:
    """jinja2's own bytecode cache in the user's cache folder; None where it cannot live.

    Compiling the templates costs more than rendering 10,000 tasks; the cache is
    keyed by each template's checksum, so it never serves a stale template.
    """
    import os

    import jinja2

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "mcompile", "jinja")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    return jinja2.FileSystemBytecodeCache(folder)


@functools.cache
def _environment() -> t.Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("manifest_compiler", "templates"),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters["sh"] = shell_word
    env.filters["sbatch"] = sbatch_value
    env.filters["shpath"] = shell_path
    return env


def _json(value: t.Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def encode_tasks(tasks: t.Sequence[str]) -> tuple[bytes, bytes]:
    """tasks/commands (each command then a newline) and tasks/index (N+1 fixed-width offsets)."""
    encoded = [c.encode() for c in tasks]
    commands = b"\n".join(encoded) + b"\n"
    offsets, pos = [], 0
    for c in encoded:
        offsets.append(pos)
        pos += len(c) + 1
    offsets.append(pos)
    index = "".join(f"{o:0{INDEX_WIDTH}d}\n" for o in offsets).encode()
    return commands, index


def render_job(plan: JobPlan) -> dict[str, bytes]:
    """Every generated file of the job directory, by relative path."""
    env = _environment()
    commands, index = encode_tasks(plan.tasks)
    n = len(plan.tasks)
    context = {
        "plan": plan,
        "ntasks": n,
        "index_width": INDEX_WIDTH,
        "tasks_sha256": hashlib.sha256(commands).hexdigest(),
        "shown_tasks": _shown_tasks(plan.tasks),
    }
    return {
        "job.sbatch": env.get_template("job.sbatch.j2").render(context).encode(),
        "mounts.json": _json([m.as_dict() for m in plan.mounts]),
        "plan.txt": env.get_template("plan.txt.j2").render(context).encode(),
        "resolved.json": _json(plan.resolved),
        "tasks/commands": commands,
        "tasks/index": index,
    }


def _shown_tasks(tasks: t.Sequence[str]) -> list[tuple[int | None, str]]:
    if len(tasks) <= PLAN_TASKS_SHOWN:
        return list(enumerate(tasks))
    head = PLAN_TASKS_SHOWN - 2
    return [*enumerate(tasks[:head]), (None, ""), (len(tasks) - 1, tasks[-1])]
