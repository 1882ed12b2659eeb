"""Report: problems -> text, json or GitHub annotations. The only place that formats problems."""

from __future__ import annotations

import json
import os
import sys
import typing as t

from .errors import Problem


def use_colour(stream: t.TextIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org)."""
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def _text(problems: list[Problem], checked: list[str]) -> None:
    colour = use_colour(sys.stderr)
    for p in problems:
        line = str(p)
        if colour:
            code = "33" if p.level == "warning" else "31"
            head, _, tail = line.partition(": ")
            line = f"\033[1m{head}:\033[0m \033[{code}m{tail}\033[0m"
        print(line, file=sys.stderr)


def _json(problems: list[Problem], checked: list[str]) -> None:
    files: dict[str, dict[str, t.Any]] = {f: {"file": f, "valid": True, "problems": []} for f in checked}
    for p in problems:
        entry = files.setdefault(p.file, {"file": p.file, "valid": True, "problems": []})
        entry["problems"].append(p.as_dict())
        if p.level == "error":
            entry["valid"] = False
    errors = sum(p.level == "error" for p in problems)
    doc = {"valid": errors == 0, "errors": errors, "warnings": len(problems) - errors, "files": list(files.values())}
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _escape_property(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github(problems: list[Problem], checked: list[str]) -> None:
    for p in problems:
        props = [f"file={_escape_property(p.file)}"]
        if p.line:
            props += [f"line={p.line}", f"col={p.col}"]
        title = f"{p.path}: " if p.path else ""
        print(f"::{p.level} {','.join(props)}::{_escape_data(title + p.message)}")


REPORTER_BY_NAME: dict[str, t.Callable[[list[Problem], list[str]], None]] = {
    "text": _text,
    "json": _json,
    "github": _github,
}


def report_problems(problems: list[Problem], *, checked: list[str], fmt: str = "text") -> None:
    REPORTER_BY_NAME[fmt](problems, checked)
