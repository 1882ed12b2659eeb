"""The forms of a diff: text for a terminal, markdown for a pull request, JSON for tools.

JSON output (`format_json`), stable; keys sorted, two-space indent::

    {
      "a": "<label of A, the old side>",
      "b": "<label of B, the new side>",
      "summary": {"changes": 4, "results": 1, "scheduling": 3,
                  "text": "4 changes: 1 affects results, 3 scheduling only"},
      "changes": [
        {"section": "resources",        # experiment (version, name, project,
                                        # description), cluster, container, data,
                                        # resources, run, env, secrets, outputs
         "path": "resources.time",      # e.g. container.binds[0].mode, run.tasks[3]
         "kind": "changed",             # changed | added | removed | reordered
         "old": "0-12:00:00",           # JSON value in A; null when added
         "new": "1-00:00:00",           # JSON value in B; null when removed
         "impact": "scheduling"}        # results | scheduling
      ],
      "code": {"a": "<commit>[-dirty]", "b": .., "a_snapshot": <sha256>, "b_snapshot": ..,
               "files": [..] | null, "note": "..", "differs": true}   # only when both sides are
    }                                                    # submitted runs with code: (RUN, RUN@N)

Indices in paths: an added item has its index in B, a removed one its index in A,
a changed one its index in B. `run.tasks` with kind `reordered` (the same tasks in
another order) has `old` and `new` null. Changes are ordered by section (as
above), then by path; task changes come last in `run`, in task order.
"""

from __future__ import annotations

import json
import typing as t

from .model import Change, ManifestDiff, is_task

# Text and markdown list at most this many task changes (json lists them all).
MAX_SHOWN_TASK_CHANGES = 20


def _value(value: t.Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _describe(change: Change) -> str:
    if change.kind == "added":
        return f"added {_value(change.new)}"
    if change.kind == "removed":
        return f"removed {_value(change.old)}"
    if change.kind == "reordered" and change.path == "run.tasks":
        return "reordered (the same tasks in another order)"
    word = "reordered " if change.kind == "reordered" else ""
    return f"{word}{_value(change.old)} → {_value(change.new)}"


def _shown(diff: ManifestDiff) -> tuple[list[Change], int]:
    """The changes text and markdown list, and how many task changes they leave out."""
    shown, tasks, hidden = [], 0, 0
    for change in diff.changes:
        if is_task(change):
            tasks += 1
            if tasks > MAX_SHOWN_TASK_CHANGES:
                hidden += 1
                continue
        shown.append(change)
    return shown, hidden


def _more(hidden: int) -> str:
    return f"… {hidden} more task change{'s' if hidden != 1 else ''} (--format json lists them all)"


_IMPACT_WIDTH = len("scheduling")


def format_text(result: ManifestDiff, colour: bool = False) -> str:
    """The summary line, both sides, then each change under its section.

    Args:
        result: the diff.
        colour: ANSI colour (the CLI passes `report.use_colour(sys.stdout)`).
    """
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if colour else text

    lines = [paint(result.summary(), "1"), f"a: {result.a}", f"b: {result.b}"]
    shown, hidden = _shown(result)
    section = None
    last_task = 0
    for change in shown:
        if change.section != section:
            section = change.section
            lines += ["", paint(section, "1")]
        impact = paint(change.impact.ljust(_IMPACT_WIDTH), "33" if change.impact == "results" else "36")
        lines.append(f"  {impact}  {change.path}: {_describe(change)}")
        if is_task(change):
            last_task = len(lines)
    if hidden:
        lines.insert(last_task, f"  {_more(hidden)}")
    if result.code:
        lines += ["", paint("code", "1"), *(f"  {line}" for line in result.code.lines())]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """`text` as a markdown code span, whatever backticks it holds."""
    text = text.replace("\r", "").replace("\n", "\\n")
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(result: ManifestDiff) -> str:
    """A summary line, both sides, then a table ready for a pull-request comment."""
    head = f"**{result.summary()}**" if result.changes else "**no changes**"
    lines = [head, "", f"{_code(result.a)} → {_code(result.b)}"]
    if result.code:
        lines += ["", *(f"code: {_cell(line)}" for line in result.code.lines())]
    if not result.changes:
        return "\n".join(lines) + "\n"
    lines += ["", "| section | change | old | new | kind |", "| --- | --- | --- | --- | --- |"]
    shown, hidden = _shown(result)
    for change in shown:
        what = _code(change.path) + ("" if change.kind == "changed" else f" {change.kind}")
        no_values = change.kind == "reordered" and is_task(change)  # run.tasks reordered: no values
        old = "" if change.kind == "added" or no_values else _code(_value(change.old))
        new = "" if change.kind == "removed" or no_values else _code(_value(change.new))
        kind = "**affects results**" if change.impact == "results" else "scheduling only"
        lines.append("| " + " | ".join(_cell(c) for c in (change.section, what, old, new, kind)) + " |")
    if hidden:
        lines += ["", _more(hidden)]
    return "\n".join(lines) + "\n"


def format_json(result: ManifestDiff) -> str:
    """The documented JSON form (see the module docstring); sorted keys."""
    doc = {
        "a": result.a,
        "b": result.b,
        "summary": {"changes": len(result.changes), "results": result.results,
                    "scheduling": result.scheduling, "text": result.summary()},
        "changes": [c.as_dict() for c in result.changes],
    }
    if result.code:
        doc["code"] = result.code.as_dict()
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


FORMATTER_BY_NAME: dict[str, t.Callable[[ManifestDiff, bool], str]] = {
    "text": format_text,
    "markdown": lambda result, colour: format_markdown(result),
    "json": lambda result, colour: format_json(result),
}
