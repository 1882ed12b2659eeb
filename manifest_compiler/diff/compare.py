"""Compare two resolved manifests: every change, classified as results or scheduling.

The resolved documents are compared with deepdiff, except the long lists (the task list and
the grid parameter values), which are compared here as sequences: a 10,000-task grid that
differs in one task must stay fast. Every change is classified:

- **results**: it can change what the job computes (image, binds, commands, data, env,
  secrets, where outputs go, ...);
- **scheduling**: it only changes how SLURM runs the job (time, memory, GPUs, partition,
  modules, logs, ...). See `SCHEDULING_PATHS`.
"""

from __future__ import annotations

import collections
import difflib
import inspect
import json
import typing as t

from ..errors import format_path
from .model import Change, Impact, Kind, ManifestDiff, is_task

if t.TYPE_CHECKING:
    from .sides import Side

# Paths (and everything below them) whose changes are scheduling only; every other
# path affects results. A change of `cluster.scratch` alone is scheduling only: the
# defaults it feeds (data.root, outputs.dir) are resolved and show as changes of
# their own. `container.stage_image` copies the same image to local disk first.
# `run.pack` groups the same tasks into fewer array tasks; each keeps its command and folders.
SCHEDULING_PATHS: frozenset[tuple[str, ...]] = frozenset({
    ("description",),
    ("cluster",),
    ("container", "stage_image"),
    ("resources",),
    ("outputs", "logs"),
    ("run", "pack"),
})

SECTIONS = ("experiment", "cluster", "container", "data", "resources", "run", "env", "secrets", "outputs")
_EXPERIMENT_KEYS = frozenset({"version", "name", "project", "description"})

# Above this many differing tasks, difflib's autojunk heuristic keeps the task
# comparison near-linear even when many tasks are the same command.
_AUTOJUNK_ABOVE = 2000
_ALIGN_AT_MOST = 20_000  # differing tasks on both sides beyond which tasks are compared by position


def diff_manifests(a: Side, b: Side) -> ManifestDiff:
    """Every change from A (old) to B (new), grouped by section and classified.

    The long lists (run.tasks and grid parameter values) are compared here as
    sequences; deepdiff compares the rest, and is not even imported when the rest
    is the same.
    """
    old, new = a.resolved, b.resolved
    reorders = _reordered_lists(old, new, ())
    changes = [Change(_section(p), format_path(p), "reordered", _get(old, p), _get(new, p), _impact(p, "reordered"))
               for p in reorders]
    reordered_parameters = {p[2] for p in reorders if p[:2] == ("run", "parameters")}
    changes += _parameter_changes(_parameters(old), _parameters(new), reordered_parameters)
    rest_old, rest_new = _rest(old), _rest(new)
    for path in reorders:  # reported already: deepdiff sees A's order on both sides
        rest_new = _replace(rest_new, path, _get(old, path))
    if _canonical(rest_old) != _canonical(rest_new):
        changes += _deep_changes(rest_old, rest_new)
    changes.sort(key=_order)
    changes += _task_changes(_tasks(old), _tasks(new), explained=bool(reordered_parameters))
    # Stable: task changes keep their task order and come last in `run`.
    changes.sort(key=lambda c: (_section_rank(c.section), c.section, is_task(c)))
    return ManifestDiff(a.label, b.label, tuple(changes))


def _section_rank(section: str) -> int:
    return SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)


def _section(path: t.Sequence[str | int]) -> str:
    head = str(path[0]) if path else ""
    return "experiment" if head in _EXPERIMENT_KEYS or not head else head


def _impact(path: t.Sequence[str | int], kind: Kind) -> Impact:
    if kind == "reordered" and tuple(path[:2]) in (("run", "tasks"), ("run", "parameters")):
        return "scheduling"  # the same set of tasks, only their array indices move
    parts = tuple(path)
    if any(parts[:n] in SCHEDULING_PATHS for n in range(1, len(parts) + 1)):
        return "scheduling"
    return "results"


def _order(change: Change) -> tuple[t.Any, ...]:
    kind = ("removed", "changed", "reordered", "added").index(change.kind)
    return (_section_rank(change.section), change.section, _path_key(change.path), kind)


def _path_key(path: str) -> tuple[tuple[int, t.Any], ...]:
    out: list[tuple[int, t.Any]] = []
    for part in path.replace("[", ".[").split("."):
        out.append((1, int(part[1:-1])) if part.startswith("[") else (0, part))
    return tuple(out)


def _get(doc: t.Any, path: t.Sequence[str | int]) -> t.Any:
    for part in path:
        doc = doc[part]
    return doc


def _canonical(value: t.Any) -> t.Hashable:
    """A key equal for equal JSON values only (1, 1.0 and true differ)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return (type(value).__name__, value)


def _reordered_lists(a: t.Any, b: t.Any, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Paths of lists (outside run.tasks) holding the same items in another order."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in a.keys() & b.keys():
            if path + (key,) != ("run", "tasks"):
                out += _reordered_lists(a[key], b[key], (*path, key))
        return sorted(out, key=lambda p: _path_key(format_path(p)))
    if (isinstance(a, list) and isinstance(b, list) and a != b and len(a) == len(b)
            and collections.Counter(map(_canonical, a)) == collections.Counter(map(_canonical, b))):
        return [path]
    return []


def _parameters(doc: dict[str, t.Any]) -> dict[str, t.Any] | None:
    run = doc.get("run")
    params = run.get("parameters") if isinstance(run, dict) else None
    return params if isinstance(params, dict) else None


def _rest(doc: dict[str, t.Any]) -> dict[str, t.Any]:
    """`doc` without what is compared as sequences (run.tasks, the grid parameter values)."""
    out = _replace(doc, ("run", "tasks"), None)
    if _parameters(doc) is not None:
        out = _replace(out, ("run", "parameters"), None)
    return t.cast("dict[str, t.Any]", out)


def _replace(doc: t.Any, path: t.Sequence[str | int], value: t.Any) -> t.Any:
    """A copy of `doc` with the value at `path` replaced (None: removed); copies only along the path."""
    if not path or not isinstance(doc, dict) or path[0] not in doc:
        return doc
    out = dict(doc)
    if len(path) == 1:
        if value is None:
            del out[path[0]]
        else:
            out[path[0]] = value
    else:
        out[path[0]] = _replace(doc[path[0]], path[1:], value)
    return out


def _ignore_order(level: t.Any) -> bool:
    # Binds are matched by content (the plan orders them parents first anyway), so
    # removing the first bind shows as one removal, not as every bind changing.
    return bool(level.path(output_format="list") == ["container", "binds"])


def _deep_changes(old: dict[str, t.Any], new: dict[str, t.Any]) -> list[Change]:
    from deepdiff import DeepDiff

    options: dict[str, t.Any] = {"view": "tree", "ignore_order_func": _ignore_order}
    if "threshold_to_diff_deeper" in inspect.signature(DeepDiff.__init__).parameters:
        # deepdiff >= 8 reports a whole mapping as changed when most of it differs;
        # we want every changed leaf (deepdiff 7 always gives them).
        options["threshold_to_diff_deeper"] = 0
    tree = DeepDiff(old, new, **options)
    changes = []
    for report, levels in tree.items():
        for level in levels:
            changes.append(_change(report, level))
    return changes


def _change(report: str, level: t.Any) -> Change:
    from deepdiff.helper import notpresent

    old = None if level.t1 is notpresent else level.t1
    new = None if level.t2 is notpresent else level.t2
    if report.endswith("_added"):
        kind: Kind = "added"
        path = level.path(output_format="list", use_t2=True)
    elif report.endswith("_removed"):
        kind = "removed"
        path = level.path(output_format="list")
    else:
        kind = "changed"
        if old is None and isinstance(new, (dict, list)):
            kind = "added"
        elif new is None and isinstance(old, (dict, list)):
            kind = "removed"
        path = level.path(output_format="list", use_t2=True)
    return Change(_section(path), format_path(path), kind, old, new, _impact(path, kind))


def _tasks(doc: dict[str, t.Any]) -> list[str]:
    run = doc.get("run")
    tasks = run.get("tasks") if isinstance(run, dict) else None
    return list(tasks) if isinstance(tasks, list) else []


def _parameter_changes(old: dict[str, t.Any] | None, new: dict[str, t.Any] | None,
                       reordered: set[str | int]) -> list[Change]:
    """Grid parameters added or removed, and their values added, removed or changed by index."""
    if old is None or new is None:
        if old == new:
            return []
        kind: Kind = "added" if old is None else "removed"
        return [Change("run", "run.parameters", kind, old, new, "results")]
    changes = []
    for name in sorted(old.keys() | new.keys()):
        path = f"run.parameters.{name}"
        if name not in new:
            changes.append(Change("run", path, "removed", old[name], None, "results"))
        elif name not in old:
            changes.append(Change("run", path, "added", None, new[name], "results"))
        elif name not in reordered:
            changes += _sequence_changes(path, old[name], new[name], key=_canonical)
    return changes


def _task_changes(old: list[str], new: list[str], *, explained: bool) -> list[Change]:
    """Tasks added, removed or changed, by index; one `reordered` when only the order differs.

    Args:
        old: the tasks of A.
        new: the tasks of B.
        explained: a reordered grid parameter already accounts for a new task order.
    """
    if old == new:
        return []
    if len(old) == len(new) and collections.Counter(old) == collections.Counter(new):
        if explained:
            return []
        return [Change("run", "run.tasks", "reordered", None, None, _impact(("run", "tasks"), "reordered"))]
    return _sequence_changes("run.tasks", old, new)


def _sequence_changes(path: str, old: list[t.Any], new: list[t.Any],
                      key: t.Callable[[t.Any], t.Hashable] | None = None) -> list[Change]:
    """Items of a long list added, removed or changed, as `path[i]` (all in section run).

    Near-linear when the lists share most items: the common head and tail are
    skipped before difflib looks at what is left.
    """
    ka = old if key is None else [key(v) for v in old]
    kb = new if key is None else [key(v) for v in new]
    if ka == kb:
        return []
    lo, n = 0, min(len(ka), len(kb))
    while lo < n and ka[lo] == kb[lo]:
        lo += 1
    hi = 0
    while hi < n - lo and ka[-1 - hi] == kb[-1 - hi]:
        hi += 1
    a, b = ka[lo : len(ka) - hi], kb[lo : len(kb) - hi]
    changes = []

    def change(index: int, kind: Kind, before: t.Any, after: t.Any) -> None:
        changes.append(Change("run", f"{path}[{index}]", kind, before, after, "results"))

    if min(len(a), len(b)) > _ALIGN_AT_MOST:
        # difflib's alignment is quadratic at worst (minutes for 200,000 tasks that all
        # differ); past this size, tasks are compared by position
        opcodes: list[tuple[str, int, int, int, int]] = [("replace", 0, len(a), 0, len(b))]
    else:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=max(len(a), len(b)) > _AUTOJUNK_ABOVE)
        opcodes = list(matcher.get_opcodes())
    for op, i1, i2, j1, j2 in opcodes:
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for k in range(paired):
            if a[i1 + k] != b[j1 + k]:  # compared by position, most pairs may be equal
                change(lo + j1 + k, "changed", old[lo + i1 + k], new[lo + j1 + k])
        for i in range(i1 + paired, i2):
            change(lo + i, "removed", old[lo + i], None)
        for j in range(j1 + paired, j2):
            change(lo + j, "added", None, new[lo + j])
    return changes
