"""Diff: two manifests, job directories or git revisions -> what really changes.

Each side is resolved first through the pipeline (extends merged, defaults filled, time and
memory normalised, the run expanded into tasks), so `time: 90m` and `time: "1:30:00"` are the
same and only changes in meaning show.

- `sides`: what a side is and how it is read (`load_side`);
- `compare`: the changes between two sides, each classified results or scheduling;
- `formats`: text, markdown and JSON (the documented, stable form), one registry;
- `model`: the plain data the three share.

This module joins them for the CLI: `diff_specs` (`mcompile diff A [B]`) and
`summary_against_previous` (the one line `mcompile compile` prints). Nothing here prints or
chooses an exit code; every error is a `DiffError` (exit 2, as diff(1)). The submodules are
imported when first needed, so reading the format names costs no import of deepdiff or yaml.
"""

from __future__ import annotations

import typing as t

from ..errors import DiffError

if t.TYPE_CHECKING:
    from pathlib import Path

    from ..model import Resolved
    from .model import CodeDiff, ManifestDiff

# `compile` sums up the changes since the previous run only up to this many tasks
# (a side): the comparison holds both task lists in memory. Whole compiles with the
# summary: 90 MB peak and 1.3 s at 200,000 tasks; 370 MB and 6.6 s at 1,000,000,
# where the compile alone takes 40 MB and 2.4 s.
SUMMARY_TASKS_AT_MOST = 200_000


def diff_specs(a: str, b: str | None, *, runs_dir: str) -> ManifestDiff:
    """`mcompile diff A [B]`: every change from A (old) to B (new).

    With only A, B is A and A is the newest compiled run of the same experiment
    under runs_dir (old -> new).

    Args:
        a: the old side (see `sides.load_side`).
        b: the new side, or None.
        runs_dir: where compiled runs live (for the one-side form).

    Raises:
        DiffError: a side cannot be read or is invalid, git fails, or there is no
            previous run to compare with.
    """
    from .compare import diff_manifests
    from .sides import load_run, load_side, previous_runs

    if b is None:
        new = load_side(a, runs_dir=runs_dir)
        name = new.resolved["name"]
        runs = previous_runs(runs_dir, name, new.run_dir)
        if not runs:
            raise DiffError(f"no compiled run of {name!r} under {runs_dir} to compare {a} with; "
                            f"compile it first or name both sides (mcompile diff A B)")
        old = load_run(runs[0], str(runs[0]))
    else:
        old, new = load_side(a, runs_dir=runs_dir), load_side(b, runs_dir=runs_dir)
    result = diff_manifests(old, new)
    if old.code and new.code:
        import dataclasses

        result = dataclasses.replace(result, code=code_diff(old.code, new.code))
    return result


def code_diff(a: dict[str, t.Any], b: dict[str, t.Any]) -> CodeDiff:
    """The code two submissions ran (their submissions.jsonl `code`); the files that differ
    between the two commits when B's repository is at hand and holds both."""
    from ..revisions import RevisionError, changed_files
    from .model import CodeDiff

    def name(code: dict[str, t.Any]) -> str:
        return str(code.get("commit")) + ("-dirty" if code.get("dirty") else "")

    files: tuple[str, ...] | None = None
    note = ""
    if a.get("snapshot") != b.get("snapshot"):
        repo = b.get("repo") if isinstance(b.get("repo"), str) else a.get("repo")
        try:
            files = tuple(changed_files(str(repo), str(a.get("commit")), str(b.get("commit"))))
        except RevisionError as e:
            note = f"files not compared: {e}"
        else:
            if a.get("dirty") or b.get("dirty"):
                note = "uncommitted changes in a -dirty snapshot are not in this list"
    return CodeDiff(name(a), name(b), str(a.get("snapshot")), str(b.get("snapshot")), files, note)


def summary_against_previous(resolved: Resolved, runs_dir: str, exclude: Path | None = None) -> str | None:
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
    from ..jobdir import task_count
    from .compare import diff_manifests
    from .sides import Side, load_run, plain, previous_runs

    runs = previous_runs(runs_dir, resolved["name"], exclude)
    if not runs:
        return None
    most = max(len(resolved["run"]["tasks"]), task_count(runs[0]))
    if most > SUMMARY_TASKS_AT_MOST:
        new = exclude if exclude is not None else "<manifest>"
        return f"since {runs[0]}: not compared ({most:,} tasks; `mcompile diff {runs[0]} {new}` compares them)"
    try:
        old = load_run(runs[0], str(runs[0]))
    except DiffError:
        return None
    result = diff_manifests(old, Side("compiled", plain(resolved), "manifest"))
    return f"since {runs[0]}: {result.summary()}"
