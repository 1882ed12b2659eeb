"""The sides of a diff: what the user named, read through the pipeline into a resolved manifest.

A side is a manifest file, a job directory (its `resolved.json`), `REV:path` (a manifest in a
git revision, see `revisions`), or `NAME/HASH12` / `NAME` (its newest run) under the runs
folder. An existing path always wins over the other readings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing as t
from pathlib import Path

from ..errors import DiffError, DiffManifestError, ManifestError, OperationError

if t.TYPE_CHECKING:
    from ..load import Reader


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of a diff: what the user named and its resolved manifest."""

    label: str  # as the user wrote it (or the run directory found for them)
    resolved: dict[str, t.Any]  # plain JSON data, as in resolved.json
    kind: t.Literal["manifest", "run", "revision"]
    run_dir: Path | None = None  # the job directory, for kind "run"
    code: dict[str, t.Any] | None = None  # a run's code record (submissions.jsonl): of RUN@N, else its latest with one


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
        return load_run(path, spec)
    if path.exists():
        return _load_manifest(spec, spec)
    if ":" in spec:
        rev, _, rel = spec.partition(":")
        if rev.startswith("-"):
            raise DiffError(f"{spec}: not a file, and {rev!r} is not a git revision")
        return _load_revision(rev, rel, spec)
    run = _find_run(runs_dir, spec)
    if run is not None:
        return load_run(run, str(run))
    base, at, number = spec.rpartition("@")
    if at and number.isdigit():  # RUN@N: the N-th submission of a run, as `mcompile runs RUN` lists them
        run = Path(base) if Path(base).is_dir() else _find_run(runs_dir, base)
        if run is not None:
            return load_run(run, spec, submission=int(number))
    return _load_manifest(spec, spec)


def _find_run(runs_dir: str, spec: str) -> Path | None:
    """runs_dir/NAME/HASH12, or the newest run of runs_dir/NAME; None when neither exists."""
    if not spec or os.path.isabs(spec):
        return None
    from ..jobdir import select_runs

    runs = select_runs(runs_dir, spec)
    return runs[0] if runs else None


def plain(resolved: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The resolved manifest as resolved.json holds it (plain JSON types)."""
    return t.cast("dict[str, t.Any]", json.loads(json.dumps(resolved, default=list)))  # a GridTasks becomes its list


def _load_manifest(path: str, label: str, *, reader: Reader | None = None,
                   kind: t.Literal["manifest", "revision"] = "manifest") -> Side:
    """A manifest through the pipeline's own front (load, validate, resolve). Imported when
    first needed: a diff of two job directories reads no YAML and imports no YAML parser."""
    from ..load import FILES
    from ..pipeline import resolve_file

    try:
        resolved, _, _ = resolve_file(path, reader=reader or FILES)
    except ManifestError as e:
        raise DiffManifestError(e.problems) from None
    return Side(label, plain(resolved), kind)


def _load_revision(rev: str, rel: str, label: str) -> Side:
    from ..revisions import GitReader, revision_path

    try:
        path = revision_path(rel, label)
    except OperationError as e:
        raise DiffError(str(e)) from None
    return _load_manifest(path, label, reader=GitReader(rev), kind="revision")


def load_run(run_dir: Path, label: str, *, submission: int | None = None) -> Side:
    """A job directory's resolved.json as a side, with the code its latest submission (or
    submission number `submission`, from 1) ran.

    Raises:
        DiffError: no resolved.json, or no such submission.
    """
    from ..jobdir import read_resolved

    try:
        resolved = dict(read_resolved(run_dir))
    except OperationError as e:
        raise DiffError(str(e)) from None
    return Side(label, resolved, "run", run_dir, _submitted_code(run_dir, submission))


def _submitted_code(run_dir: Path, number: int | None) -> dict[str, t.Any] | None:
    from ..jobdir import task_count
    from ..submissions import read_run_submissions

    subs = read_run_submissions(run_dir, task_count(run_dir))
    if number is not None:
        if not 1 <= number <= len(subs):
            raise DiffError(f"{run_dir}@{number}: the run has {len(subs)} recorded submission{'s' if len(subs) != 1 else ''}")
        subs = subs[number - 1 : number]
    for sub in reversed(subs):
        code = sub.chunks[0].record.get("code")
        if isinstance(code, dict) and isinstance(code.get("snapshot"), str):
            return code
    return None


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def previous_runs(runs_dir: str, name: str, exclude: Path | None = None) -> list[Path]:
    """Compiled runs of experiment `name` under runs_dir, newest first, without `exclude`."""
    from ..jobdir import list_runs

    return [r for r in list_runs(runs_dir, name) if exclude is None or not _same_dir(r, exclude)]
