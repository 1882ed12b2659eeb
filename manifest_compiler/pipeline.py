"""The pipeline: load -> validate -> resolve -> plan -> render -> write, as library calls.

Nothing here prints; the CLI reports what these return or raise.
"""

from __future__ import annotations

import typing as t

from .errors import ManifestError, Problem
from .load import FILES, LoadedManifest, Reader, load_manifest, refuse_base
from .validate import validate_manifest

if t.TYPE_CHECKING:
    from .model import Resolved
    from .plan import JobPlan
    from .render import RenderedFiles
    from .write import WriteResult


def check_file(path: str, *, reader: Reader = FILES) -> tuple[LoadedManifest | None, list[Problem]]:
    """Load and validate one manifest; problems instead of exceptions.

    `reader` says where files come from: the file system, or a git revision (`revisions.GitReader`).
    """
    try:
        loaded = load_manifest(path, reader=reader)
    except ManifestError as e:
        return None, e.problems
    return loaded, validate_manifest(loaded)


def check_files(paths: t.Iterable[str]) -> list[Problem]:
    problems: list[Problem] = []
    for path in paths:
        problems += check_file(path)[1]
    return problems


def load_valid(path: str, *, reader: Reader = FILES) -> tuple[LoadedManifest, list[Problem]]:
    """A manifest that passed validation, and its warnings.

    Raises:
        ManifestError: it does not load or has errors (all of them, warnings too).
    """
    loaded, problems = check_file(path, reader=reader)
    if loaded is None or any(p.level == "error" for p in problems):
        raise ManifestError(problems)
    return loaded, problems


def resolve_file(path: str, *, reader: Reader = FILES) -> tuple[Resolved, LoadedManifest, list[Problem]]:
    """A valid, complete manifest resolved, with the file it came from and its warnings.

    Raises:
        ManifestError: it does not load, has errors, or is a base (`base: true`),
            which validates as a partial file but never compiles.
    """
    from .resolve import resolve_manifest

    loaded, warnings = load_valid(path, reader=reader)
    refuse_base(loaded)
    file_commands = loaded.commands_file.commands if loaded.commands_file else ()
    return resolve_manifest(loaded.data, file_commands=file_commands), loaded, warnings


class CompileResult(t.NamedTuple):
    run: WriteResult
    plan: JobPlan
    warnings: list[Problem]


def build_job(path: str) -> tuple[JobPlan, RenderedFiles, LoadedManifest, list[Problem]]:
    """Load, validate, resolve, plan and render a manifest; writes nothing.

    The files are rendered when first read: `plan` reads plan.txt alone.
    """
    from .plan import plan_job
    from .render import render_job

    resolved, loaded, warnings = resolve_file(path)
    plan = plan_job(resolved)
    return plan, render_job(plan), loaded, warnings


def record_files(loaded: LoadedManifest) -> dict[str, bytes]:
    """The manifest as written, each file it extends, its commands file and code.repo's folder, for the run's record."""
    import os

    from .jobdir import CODE_REPO, MANIFEST, commands_file_record, extends_record

    record = {MANIFEST: loaded.sources[0].raw}
    for i, source in enumerate(loaded.sources[1:], start=1):
        record[extends_record(i, source.path)] = source.raw
    if loaded.commands_file is not None:
        record[commands_file_record(loaded.commands_file.path)] = loaded.commands_file.raw
    code = loaded.data.get("code")
    if isinstance(code, dict) and isinstance(code.get("repo"), str):
        from .model import repo_folder

        record[CODE_REPO] = os.fsencode(repo_folder(code["repo"], os.path.dirname(os.path.abspath(loaded.path)))) + b"\n"
    return record


def compile_manifest(path: str, *, runs_dir: str) -> CompileResult:
    """Compile a manifest into runs_dir/<name>/<hash12>/ (or find it there already).

    Raises:
        ManifestError: the manifest is invalid.
        OperationError: the run cannot be written.
    """
    from .write import write_run

    plan, files, loaded, warnings = build_job(path)
    run = write_run(runs_dir, plan.resolved["name"], files, record_files(loaded))
    return CompileResult(run=run, plan=plan, warnings=warnings)
