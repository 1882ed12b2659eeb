"""Command line: parse options, call the pipeline, map outcomes to exit codes.

Exit codes: 0 success (diff: no differences); 1 invalid input or failure the user
must fix (diff: differences); 2 usage error; 3 an operation outside the manifest
failed (I/O, sbatch, the cluster). No traceback reaches the user unless --debug.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing as t

from . import SCHEMA_VERSIONS, __version__
from .errors import ManifestError, McompileError, UsageError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_OPERATION = 0, 1, 2, 3
EXIT_DIFFERENT = 1  # diff: the sides differ

COMMANDS = ("validate", "compile", "plan", "schema", "stage", "runs", "rerun", "diff", "exec")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> t.NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _runs_default() -> str:
    return os.environ.get("MCOMPILE_RUNS") or "runs"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mcompile", description="Compile experiment manifests into SLURM + Apptainer job directories.")
    parser.add_argument("--version", action="version", version=f"mcompile {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check manifests against the schema and the rules")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=tuple(_validate_formats()), default="text")

    p = sub.add_parser("compile", help="compile a manifest into runs/<name>/<hash12>/")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--runs", default=None, metavar="DIR", help="runs folder (default $MCOMPILE_RUNS, else ./runs)")
    p.add_argument("--submit", action="store_true", help="submit the run to SLURM after compiling")
    p.add_argument("--strict", action="store_true", help="with --submit: refuse (not only warn) when a secret file is readable by others")

    p = sub.add_parser("plan", help="print what compile would produce; writes nothing")
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("schema", help="print the JSON Schema")
    p.add_argument("--version", dest="schema_version", type=int, default=max(SCHEMA_VERSIONS))

    p = sub.add_parser("stage", help="build or reuse the data archives of a manifest (stage: archive)")
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser("runs", help="list compiled runs, their submissions and the state of every task")
    p.add_argument("name", nargs="?", metavar="RUN",
                   help="one run: a run directory, NAME/HASH12 or NAME (its newest run); default: every run")
    p.add_argument("--runs", default=None, metavar="DIR")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: with RUN, one object per task; without, every run and its submissions")

    p = sub.add_parser("rerun", help="submit some tasks of a compiled run again (same job directory, no recompile)")
    p.add_argument("run", metavar="RUN", help="a run directory, NAME/HASH12 or NAME (its newest run)")
    p.add_argument("--failed", action="store_true",
                   help="the tasks whose latest attempt failed, timed out, ran out of memory, was cancelled, or that never ran")
    p.add_argument("--tasks", default=None, metavar="LIST", help="these tasks (e.g. 3,7-9); with --failed: the failed ones among them")
    p.add_argument("--runs", default=None, metavar="DIR")
    p.add_argument("--strict", action="store_true", help="refuse (not only warn) when a secret file is readable by others")

    p = sub.add_parser("exec", help="run one task of a compiled run on this machine, with its job.sbatch")
    p.add_argument("run", metavar="RUN", help="a run directory, NAME/HASH12 or NAME (its newest run)")
    p.add_argument("--task", type=int, required=True, metavar="N")
    p.add_argument("--runs", default=None, metavar="DIR")

    p = sub.add_parser("diff", help="what really changes between manifests, runs or git revisions")
    p.add_argument("a", metavar="A")
    p.add_argument("b", nargs="?", metavar="B")
    p.add_argument("--runs", default=None, metavar="DIR")
    p.add_argument("--format", choices=tuple(_diff_formats()), default="text")
    return parser


def _validate_formats() -> t.Iterable[str]:
    from .report import REPORTER_BY_NAME

    return REPORTER_BY_NAME


def _diff_formats() -> t.Iterable[str]:
    from .diff.formats import FORMATTER_BY_NAME

    return FORMATTER_BY_NAME


def _normalise_argv(argv: list[str]) -> list[str]:
    """`mcompile FILE [opts]` is shorthand for `mcompile compile FILE [opts]`."""
    for i, arg in enumerate(argv):
        if arg == "--debug":
            continue
        if not arg.startswith("-") and arg not in COMMANDS:
            return [*argv[:i], "compile", *argv[i:]]
        break
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(_normalise_argv(argv))
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        return execute(args)
    except McompileError as e:
        if debug:
            raise
        if str(e):
            plain = isinstance(e, (ManifestError, UsageError))
            print(str(e) if plain else f"mcompile: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mcompile: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: say so in one line, never a traceback
        if debug:
            raise
        print(f"mcompile: internal error: {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return EXIT_OPERATION


def execute(args: argparse.Namespace) -> int:
    handler = _HANDLER_BY_COMMAND[args.command]
    return handler(args)


def _cmd_validate(args: argparse.Namespace) -> int:
    from .pipeline import check_files
    from .report import report_problems

    problems = check_files(args.files)
    report_problems(problems, checked=args.files, fmt=args.format)
    return EXIT_INVALID if any(p.level == "error" for p in problems) else EXIT_OK


def _warn(problems: list[t.Any]) -> None:
    from .report import report_problems

    if problems:
        report_problems(problems, checked=[])


def _cmd_compile(args: argparse.Namespace) -> int:
    from .pipeline import compile_manifest

    runs_dir = args.runs or _runs_default()
    result = compile_manifest(args.file, runs_dir=runs_dir)
    _warn(result.warnings)
    run = result.run
    n = len(result.plan.tasks)
    if run.created:
        print(f"compiled {run.path} ({n} task{'s' if n != 1 else ''})", file=sys.stderr)
    else:
        print(f"unchanged: {run.path} already holds this run (nothing written)", file=sys.stderr)
    _summary_against_previous(result, runs_dir)
    print(run.path)
    if args.submit:
        from .submit import submit_run

        return submit_run(run.path, manifest_path=args.file, strict=args.strict)
    return EXIT_OK


def _summary_against_previous(result: t.Any, runs_dir: str) -> None:
    """What changed since the previous run of the same experiment, in one line."""
    from .jobdir import list_runs

    if not any(r != result.run.path for r in list_runs(runs_dir, result.plan.resolved["name"])):
        return  # a first compile pays nothing for diff
    from .diff import summary_against_previous
    from .errors import DiffError

    try:
        line = summary_against_previous(result.plan.resolved, runs_dir, exclude=result.run.path)
    except DiffError:  # an unreadable old run must not fail a compile
        return
    if line:
        print(f"mcompile: {line}", file=sys.stderr)


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff_specs
    from .diff.formats import FORMATTER_BY_NAME
    from .report import use_colour

    result = diff_specs(args.a, args.b, runs_dir=args.runs or _runs_default())
    sys.stdout.write(FORMATTER_BY_NAME[args.format](result, use_colour(sys.stdout)))
    return EXIT_DIFFERENT if result.changes else EXIT_OK  # as diff(1); errors are DiffError, exit 2


def _cmd_plan(args: argparse.Namespace) -> int:
    from .pipeline import build_job

    _, files, _, warnings = build_job(args.file)
    _warn(warnings)
    sys.stdout.write(files["plan.txt"].decode())
    return EXIT_OK


def _cmd_stage(args: argparse.Namespace) -> int:
    from .pipeline import resolve_file
    from .stage import stage_archives

    resolved, _, warnings = resolve_file(args.file)
    _warn(warnings)
    archives = stage_archives(resolved)
    if not archives:
        print("mcompile: nothing to stage (data.stage is not archive)", file=sys.stderr)
    for a in archives:
        print(f"{'built' if a.built else 'reused'} {a.subset} {a.fingerprint} {a.path}")
    if archives:
        exports = ",".join(f"MCOMPILE_ARCHIVE_{a.index}={a.fingerprint}" for a in archives)
        print(f"mcompile: by hand, submit with: sbatch --export=ALL,{exports} job.sbatch", file=sys.stderr)
    return EXIT_OK


def _cmd_runs(args: argparse.Namespace) -> int:
    import json

    from .runs import describe_runs, format_runs, runs_json, tasks_json

    runs = describe_runs(args.runs or _runs_default(), args.name)
    if args.format == "json":
        # one write: json.dump would write each of the (many) small pieces of an indented document
        sys.stdout.write(json.dumps(tasks_json(runs[0]) if args.name else runs_json(runs), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(format_runs(runs, detail=bool(args.name)))
    return EXIT_OK


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .runs import find_run
    from .submit import rerun

    return rerun(find_run(args.runs or _runs_default(), args.run), tasks=args.tasks, failed=args.failed, strict=args.strict)


def _cmd_exec(args: argparse.Namespace) -> int:
    from .jobdir import select_runs
    from .local import run_task_locally

    runs = select_runs(args.runs or _runs_default(), args.run)
    if not runs:
        raise UsageError(f"no compiled run {args.run!r} (a run directory, NAME/HASH12 or NAME under --runs)")
    return run_task_locally(runs[0], args.task)


def _cmd_schema(args: argparse.Namespace) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text(args.schema_version))
    return EXIT_OK


_HANDLER_BY_COMMAND: dict[str, t.Callable[[argparse.Namespace], int]] = {
    "validate": _cmd_validate,
    "compile": _cmd_compile,
    "plan": _cmd_plan,
    "schema": _cmd_schema,
    "stage": _cmd_stage,
    "runs": _cmd_runs,
    "rerun": _cmd_rerun,
    "diff": _cmd_diff,
    "exec": _cmd_exec,
}
