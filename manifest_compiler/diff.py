"""Diff: two manifests, job directories or git revisions -> what really changes.

Each side is resolved first (extends merged, defaults filled, time and memory
normalised, the run expanded into tasks), so `time: 90m` and `time: "1:30:00"`
are the same and only changes in meaning show. The resolved documents are compared
with deepdiff, except the task lists, which are compared here (a 10,000-task grid
that differs in one task must stay fast). Every change is classified:

- **results**: it can change what the job computes (image, binds, commands,
  data, env, secrets, where outputs go, ...);
- **scheduling**: it only changes how SLURM runs the job (time, memory, GPUs,
  partition, modules, logs, ...). See `SCHEDULING_PATHS`.

Sides (`load_side`): a manifest file, a job directory (its `resolved.json`),
`REV:path` read with `git show` from the repository of the current directory
(`path` is relative to the repository root, as in git; `./x` and `../x` are
relative to the current directory; `extends` inside a revision is read from the
same revision), or `NAME/HASH12` / `NAME` (its newest run) under the runs folder.
An existing path always wins over the other readings.

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
      ]
    }

Indices in paths: an added item has its index in B, a removed one its index in A,
a changed one its index in B. `run.tasks` with kind `reordered` (the same tasks in
another order) has `old` and `new` null. Changes are ordered by section (as
above), then by path; task changes come last in `run`, in task order.

Exit codes of `diff_command` follow diff(1): 0 no differences, 1 differences,
2 error (every error is a `DiffError`).
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import inspect
import json
import os
import subprocess
import typing as t
from pathlib import Path

from .errors import ManifestError, McompileError, OperationError
from .load import LoadedManifest, Reader, format_path, load_manifest

Kind = t.Literal["changed", "added", "removed", "reordered"]
Impact = t.Literal["results", "scheduling"]

EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2

# Paths (and everything below them) whose changes are scheduling only; every other
# path affects results. A change of `cluster.scratch` alone is scheduling only: the
# defaults it feeds (data.root, outputs.dir) are resolved and show as changes of
# their own. `container.stage_image` copies the same image to local disk first.
SCHEDULING_PATHS: frozenset[tuple[str, ...]] = frozenset({
    ("description",),
    ("cluster",),
    ("container", "stage_image"),
    ("resources",),
    ("outputs", "logs"),
})

SECTIONS = ("experiment", "cluster", "container", "data", "resources", "run", "env", "secrets", "outputs")
_EXPERIMENT_KEYS = frozenset({"version", "name", "project", "description"})

# Text and markdown list at most this many task changes (json lists them all).
MAX_SHOWN_TASK_CHANGES = 20

# Above this many differing tasks, difflib's autojunk heuristic keeps the task
# comparison near-linear even when many tasks are the same command.
_AUTOJUNK_ABOVE = 2000
_ALIGN_AT_MOST = 20_000  # differing tasks on both sides beyond which tasks are compared by position

# `compile` sums up the changes since the previous run only up to this many tasks
# (a side): the comparison holds both task lists in memory. Whole compiles with the
# summary: 90 MB peak and 1.3 s at 200,000 tasks; 370 MB and 6.6 s at 1,000,000,
# where the compile alone takes 40 MB and 2.4 s.
SUMMARY_TASKS_AT_MOST = 200_000


class DiffError(McompileError):
    """`mcompile diff` cannot compare: a side is missing, unreadable or invalid (exit 2)."""

    exit_code = EXIT_ERROR


class DiffManifestError(DiffError, ManifestError):
    """A side is not a valid manifest: one located line per problem (exit 2)."""


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of a diff: what the user named and its resolved manifest."""

    label: str  # as the user wrote it (or the run directory found for them)
    resolved: dict[str, t.Any]  # plain JSON data, as in resolved.json
    kind: t.Literal["manifest", "run", "revision"]
    run_dir: Path | None = None  # the job directory, for kind "run"


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference between the resolved sides."""

    section: str
    path: str
    kind: Kind
    old: t.Any
    new: t.Any
    impact: Impact

    def as_dict(self) -> dict[str, t.Any]:
        """The change as one entry of the JSON output's `changes`."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ManifestDiff:
    """Every change from side A (old) to side B (new)."""

    a: str
    b: str
    changes: tuple[Change, ...]

    @property
    def results(self) -> int:
        """How many changes affect results."""
        return sum(c.impact == "results" for c in self.changes)

    @property
    def scheduling(self) -> int:
        """How many changes are scheduling only."""
        return sum(c.impact == "scheduling" for c in self.changes)

    def summary(self) -> str:
        """`4 changes: 1 affects results, 3 scheduling only`, or `no changes`."""
        n = len(self.changes)
        if n == 0:
            return "no changes"
        verb = "affects" if self.results == 1 else "affect"
        return f"{n} change{'s' if n != 1 else ''}: {self.results} {verb} results, {self.scheduling} scheduling only"


# --------------------------------------------------------------------------- sides


def load_side(spec: str, *, runs_dir: str) -> Side:
    """Resolve one side of a diff.

    Args:
        spec: what to compare, tried in this order: an existing path (a manifest
            file, or a job directory holding resolved.json); `REV:path` when the
            spec holds a ':' (a file in a git revision of the repository around
            the current directory); `NAME/HASH12` or `NAME` (its newest run)
            under runs_dir; else a manifest file (which then cannot be read).
        runs_dir: where compiled runs live.

    Raises:
        DiffManifestError: a manifest (from a file or a revision) does not load or
            is invalid; its problems are located.
        DiffError: a job directory has no readable resolved.json, or git fails.
    """
    path = Path(spec)
    if path.is_dir():
        return _load_run(path, spec)
    if path.exists():
        return _load_file(spec)
    if ":" in spec:
        rev, _, rel = spec.partition(":")
        if rev.startswith("-"):
            raise DiffError(f"{spec}: not a file, and {rev!r} is not a git revision")
        return _load_revision(rev, rel, spec)
    run = _find_run(runs_dir, spec)
    if run is not None:
        return _load_run(run, str(run))
    return _load_file(spec)


def _find_run(runs_dir: str, spec: str) -> Path | None:
    """runs_dir/NAME/HASH12, or the newest run of runs_dir/NAME; None when neither exists."""
    if not spec or os.path.isabs(spec):
        return None
    from .write import select_runs

    runs = select_runs(runs_dir, spec)
    return runs[0] if runs else None


def _plain(resolved: dict[str, t.Any]) -> dict[str, t.Any]:
    """The resolved manifest as resolved.json holds it (plain JSON types)."""
    return t.cast("dict[str, t.Any]", json.loads(json.dumps(resolved, default=list)))  # a GridTasks becomes its list


def _load_file(path: str) -> Side:
    from .pipeline import resolve_file

    try:
        resolved, _, _ = resolve_file(path)
    except ManifestError as e:
        raise DiffManifestError(e.problems) from None
    return Side(path, _plain(resolved), "manifest")


def _load_run(run_dir: Path, label: str) -> Side:
    from .write import read_resolved

    try:
        return Side(label, read_resolved(run_dir), "run", run_dir)
    except OperationError as e:
        raise DiffError(str(e)) from None


def _git(args: list[str]) -> bytes:
    """Run git in the current directory; its stdout.

    Raises:
        DiffError: git is missing or fails; the message quotes git's stderr.
    """
    try:
        proc = subprocess.run(["git", *args], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise DiffError(f"cannot run git ({e.strerror or e}); REV:path needs git") from None
    if proc.returncode != 0:
        stderr = "; ".join(line.strip() for line in proc.stderr.decode(errors="replace").splitlines() if line.strip())
        raise DiffError(f"git {' '.join(args)} failed: {stderr or f'exit status {proc.returncode}'}")
    return proc.stdout


def _repo_path(path: str, prefix: str) -> str | None:
    """`path` relative to the repository root (git's reading of REV:path); None outside it."""
    if path.startswith(("./", "../")) or path in (".", ".."):
        path = prefix + path
    norm = os.path.normpath(path)
    if norm.startswith("../") or norm == ".." or os.path.isabs(norm):
        return None
    return norm


def _show(rev: str, repo_path: str) -> bytes:
    raw = _git(["show", f"{rev}:{repo_path}"])
    if raw.startswith(f"tree {rev}:{repo_path}\n".encode()):
        raise DiffError(f"{rev}:{repo_path} is a directory in git, not a manifest")
    return raw


def _load_revision(rev: str, rel: str, label: str) -> Side:
    from .resolve import resolve_manifest
    from .validate import validate_manifest

    loaded = load_revision(rev, rel, label)
    problems = validate_manifest(loaded)
    if any(p.level == "error" for p in problems):
        raise DiffManifestError(problems)
    return Side(label, _plain(resolve_manifest(loaded.data)), "revision")


class _GitReader(Reader):
    """Files of one git revision, for `load_manifest`: extends resolve inside the same revision."""

    def __init__(self, rev: str) -> None:
        self.rev = rev

    def read(self, path: str) -> bytes:
        try:
            return _show(self.rev, path)
        except DiffError as e:
            raise OSError(str(e)) from None

    def resolve(self, including: str, ref: str) -> str:
        nxt = None if ref.startswith(("/", "~")) else _repo_path(os.path.join(os.path.dirname(including), ref), "")
        if nxt is None:
            raise OSError(f"{ref!r} lies outside the git repository; it cannot be read from revision {self.rev!r}")
        return nxt

    def identity(self, path: str) -> str:
        return path

    def label(self, path: str) -> str:
        return f"{self.rev}:{path}"


def load_revision(rev: str, rel: str, label: str) -> LoadedManifest:
    """A manifest and its extends chain read from a git revision, merged as `load_manifest` does.

    Args:
        rev: a git revision (`HEAD~1`, `origin/main`, or empty for the index).
        rel: the manifest's path, relative to the repository root (or `./`-relative
            to the current directory).
        label: how the manifest is named when the path lies outside the repository.

    Raises:
        DiffManifestError: a file cannot be read from the revision or parsed, or
            the extends chain is broken.
        DiffError: git fails before any file is read (not a repository).
    """
    prefix = _git(["rev-parse", "--show-prefix"]).decode().strip()
    current = _repo_path(rel, prefix)
    if current is None:
        raise DiffError(f"{label}: the path lies outside the git repository")
    try:
        return load_manifest(current, reader=_GitReader(rev))
    except ManifestError as e:
        raise DiffManifestError(e.problems) from None


# ---------------------------------------------------------------------- comparison


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
    changes.sort(key=lambda c: (_section_rank(c.section), c.section, _is_task(c)))
    return ManifestDiff(a.label, b.label, tuple(changes))


def _section_rank(section: str) -> int:
    return SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)


def _is_task(change: Change) -> bool:
    return change.path == "run.tasks" or change.path.startswith("run.tasks[")


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


# ------------------------------------------------------------------------- formats


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
        if _is_task(change):
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
        if _is_task(change):
            last_task = len(lines)
    if hidden:
        lines.insert(last_task, f"  {_more(hidden)}")
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
    if not result.changes:
        return "\n".join(lines) + "\n"
    lines += ["", "| section | change | old | new | kind |", "| --- | --- | --- | --- | --- |"]
    shown, hidden = _shown(result)
    for change in shown:
        what = _code(change.path) + ("" if change.kind == "changed" else f" {change.kind}")
        no_values = change.kind == "reordered" and _is_task(change)  # run.tasks reordered: no values
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
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


FORMATTER_BY_NAME: dict[str, t.Callable[[ManifestDiff, bool], str]] = {
    "text": format_text,
    "markdown": lambda result, colour: format_markdown(result),
    "json": lambda result, colour: format_json(result),
}


# ------------------------------------------------------------------------- command


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def previous_runs(runs_dir: str, name: str, exclude: Path | None = None) -> list[Path]:
    """Compiled runs of experiment `name` under runs_dir, newest first, without `exclude`."""
    from .write import list_runs

    return [r for r in list_runs(runs_dir, name) if exclude is None or not _same_dir(r, exclude)]


def diff_command(a: str, b: str | None, *, runs_dir: str, fmt: str = "text", colour: bool = False) -> tuple[int, str]:
    """`mcompile diff A [B]`: the exit code and what to print on stdout.

    With only A, B is A and A is the newest compiled run of the same experiment
    under runs_dir (old -> new).

    Args:
        a: the old side (see `load_side`).
        b: the new side, or None.
        runs_dir: where compiled runs live (for the one-side form).
        fmt: text, markdown or json.
        colour: ANSI colour in text output.

    Returns:
        (0 no differences | 1 differences, the formatted diff).

    Raises:
        DiffError: a side cannot be read or is invalid, git fails, there is no
            previous run to compare with, or the format is unknown (exit 2).
    """
    if fmt not in FORMATTER_BY_NAME:
        raise DiffError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATTER_BY_NAME)}")
    if b is None:
        new = load_side(a, runs_dir=runs_dir)
        name = new.resolved["name"]
        runs = previous_runs(runs_dir, name, new.run_dir)
        if not runs:
            raise DiffError(f"no compiled run of {name!r} under {runs_dir} to compare {a} with; "
                            f"compile it first or name both sides (mcompile diff A B)")
        old = _load_run(runs[0], str(runs[0]))
    else:
        old, new = load_side(a, runs_dir=runs_dir), load_side(b, runs_dir=runs_dir)
    result = diff_manifests(old, new)
    return (EXIT_DIFFERENT if result.changes else EXIT_SAME), FORMATTER_BY_NAME[fmt](result, colour)


def summary_against_previous(resolved: dict[str, t.Any], runs_dir: str, exclude: Path | None = None) -> str | None:
    """One line for `mcompile compile`: what changed since the newest previous run.

    Args:
        resolved: the resolved manifest just compiled.
        runs_dir: where compiled runs live.
        exclude: the run just written (or found), left out of the search.

    Returns:
        `since runs/<name>/<hash12>: 4 changes: 1 affects results, 3 scheduling only`,
        or None when there is no previous run (or it cannot be read: this is a
        courtesy, it never fails a compile). Beyond SUMMARY_TASKS_AT_MOST tasks on
        either side it says the runs were not compared: the comparison holds both
        task lists in memory, which a compile of a million tasks does not.
    """
    from .write import task_count

    runs = previous_runs(runs_dir, resolved["name"], exclude)
    if not runs:
        return None
    most = max(len(resolved["run"]["tasks"]), task_count(runs[0]))
    if most > SUMMARY_TASKS_AT_MOST:
        new = exclude if exclude is not None else "<manifest>"
        return f"since {runs[0]}: not compared ({most:,} tasks; `mcompile diff {runs[0]} {new}` compares them)"
    try:
        old = _load_run(runs[0], str(runs[0]))
    except DiffError:
        return None
    result = diff_manifests(old, Side("compiled", _plain(resolved), "manifest"))
    return f"since {runs[0]}: {result.summary()}"
