"""The pipeline: load -> validate -> resolve -> plan -> render -> write, as library calls.

Nothing here prints; the CLI reports what these return or raise.
"""

from __future__ import annotations

import typing as t

from .errors import ManifestError, Problem
from .load import LoadedManifest, load_manifest
from .validate import validate_manifest


def check_file(path: str) -> tuple[LoadedManifest | None, list[Problem]]:
    """Load and validate one manifest; problems instead of exceptions."""
    try:
        loaded = load_manifest(path)
    except ManifestError as e:
        return None, e.problems
    return loaded, validate_manifest(loaded)


def check_files(paths: t.Iterable[str]) -> list[Problem]:
    problems: list[Problem] = []
    for path in paths:
        problems += check_file(path)[1]
    return problems


def load_valid(path: str) -> tuple[LoadedManifest, list[Problem]]:
    """A manifest that passed validation, and its warnings.

    Raises:
        ManifestError: it does not load or has errors (all of them, warnings too).
    """
    loaded, problems = check_file(path)
    if loaded is None or any(p.level == "error" for p in problems):
        raise ManifestError(problems)
    return loaded, problems


def resolve_file(path: str) -> tuple[dict[str, t.Any], LoadedManifest, list[Problem]]:
    from .resolve import resolve_manifest

    loaded, warnings = load_valid(path)
    return resolve_manifest(loaded.data), loaded, warnings
