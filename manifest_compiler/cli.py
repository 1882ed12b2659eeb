"""Command line: parse options, call the pipeline, map outcomes to exit codes.

Exit codes: 0 success (diff: no differences); 1 invalid input or failure the user
must fix (diff: differences); 2 usage error; 3 an operation outside the manifest
failed (I/O, sbatch, the cluster). No traceback reaches the user unless --debug.
"""

from __future__ import annotations

import os
import sys
import typing as t

if t.TYPE_CHECKING:
    import argparse
    from pathlib import Path

from . import SCHEMA_VERSIONS, __version__

if t.TYPE_CHECKING:
    from .slurm import Scheduler
    from .submit import Submitted

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_OPERATION = 0, 1, 2, 3
EXIT_DIFFERENT = 1  # diff: the sides differ

COMMANDS = ("validate", "compile", "plan", "schema", "stage", "runs", "logs", "cancel", "shell", "gc", "report", "rerun", "diff",
            "exec", "import", "sync")


def _parser_class() -> type[argparse.ArgumentParser]:
    """argparse's parser, whose errors are UsageErrors (one line, exit 2). Made when a command
    line is parsed: `mcompile --version` imports no argparse."""
    import argparse

    from .errors import UsageError

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> t.NoReturn:
            raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    return _Parser


def _runs_default() -> str:
    return os.environ.get("MCOMPILE_RUNS") or "runs"


_EXIT_CODES = "exit status: 0 success; 1 invalid manifest; 2 usage error; 3 an operation failed (I/O, sbatch, the cluster)"
_RUN_ARG = "a run directory, NAME/HASH12 or NAME (its newest run) under --runs"
_RUNS_OPT = "the runs folder (default $MCOMPILE_RUNS, else ./runs)"

_TOP_USAGE = """\
mcompile [--debug] COMMAND [ARGS]
       mcompile [--debug] FILE [--runs DIR] [--submit [--strict]]   (shorthand for: mcompile compile FILE ...)"""

_TOP_EPILOG = f"""\
FILE is an experiment manifest (experiment.yaml, format version 1). `mcompile FILE` compiles it,
as `mcompile compile FILE` does; a word that is not a command and not a file is refused.
--debug (anywhere on the line) shows a Python traceback instead of the one-line message.
`mcompile COMMAND --help` describes each command.

{_EXIT_CODES}

examples:
  mcompile validate manifests/*.yaml
  mcompile manifests/grid.yaml --submit
  mcompile runs lr-grid"""

# Each command: (one-line help, the epilog of its --help: arguments and formats, exit status, example)
_COMMAND_HELP: dict[str, tuple[str, str]] = {
    "validate": ("check manifests against the schema and the rules", """\
FILE...: manifest files (YAML); every file is checked, also after an invalid one.
formats (--format):
  text    one line per problem on stderr: file:line:col: path: message
  json    one document on stdout: every file checked and its problems
  github  ::error file=..,line=..,col=..:: annotations on stdout, for pull-request checks

exit status: 0 every file is valid; 1 a file is invalid or unreadable; 2 usage error

example:
  mcompile validate manifests/*.yaml --format github"""),
    "compile": ("compile a manifest into runs/<name>/<hash12>/ (also: mcompile FILE)", f"""\
FILE: the manifest. Writes runs/<name>/<hash12>/ (job.sbatch, tasks/, mounts.json, plan.txt,
resolved.json) and prints its path on stdout; an unchanged manifest writes nothing. With
--submit, the job ids follow on stdout, one a line. `mcompile FILE` is the same command.
By hand instead of --submit: `mcompile stage FILE` prints the sbatch line for the run.

{_EXIT_CODES}

examples:
  mcompile compile manifests/grid.yaml
  mcompile manifests/grid.yaml --runs /scratch/$USER/runs --submit"""),
    "plan": ("print what compile would produce; writes nothing", f"""\
FILE: the manifest. Prints the readable plan (plan.txt of the run: resources, tasks, binds,
staging) on stdout.

{_EXIT_CODES}

example:
  mcompile plan manifests/grid.yaml"""),
    "schema": ("print the JSON Schema", """\
Prints the JSON Schema of manifest format --version N (default: the newest) on stdout.

exit status: 0 success; 2 usage error (no such version)

example:
  mcompile schema > experiment.schema.json"""),
    "stage": ("build or reuse the data archives and code snapshot of a manifest, and print the sbatch line for submitting by hand", f"""\
FILE: the manifest. With data.stage archive, builds (or reuses) one archive per data subset,
keyed by a fingerprint of the data, and prints `built|reused SUBSET FINGERPRINT PATH` on stdout;
with code:, the code snapshot, as `built|reused code SHA256 PATH`.
Creates the log folder (outputs.logs) as --submit does. On stderr: the sbatch line that
submits the compiled run by hand with these archives (compile FILE first). With copy or bind
there is nothing to stage and the line is plain `sbatch job.sbatch`.
FILE may be a compiled run's directory instead: its archives are built where its job reads
them (the staging job of data.build: job runs this, with --expect FP,.. to refuse data that
changed since --submit).

{_EXIT_CODES}

example:
  mcompile stage manifests/demo.yaml"""),
    "runs": ("list compiled runs, their submissions and the state of every task", f"""\
RUN: {_RUN_ARG}; without RUN, every run under --runs.
Submissions: those of --submit and rerun (submissions.jsonl), and jobs submitted by hand
from the run directory (found on the cluster). States come from sacct (slurmdbd), else
SLURM's jobcomp file, and squeue.
text: with RUN, a table of every task's latest attempt (up to 100 tasks): its state, exit
  code ('-' until it ended), attempts (times its latest job started it: 1 + its requeues),
  submissions (how many submissions queued it, reruns included) and job id.
  With RUN also: why queued tasks have not started (squeue's reason), and the efficiency of
  the finished tasks from sacct (elapsed against the time limit, CPU efficiency, peak memory
  against mem) with advice where a request is far off; "not available" without slurmdbd.
json (--format json): with RUN, one object per task: task, state, exit_code (null until it
  ended), attempts, submissions, job_id, reason (a pending task's, else null), efficiency
  (elapsed_s, time_limit_s, cpus, cpu_efficiency, max_rss_bytes, mem_bytes; null until it
  ended or without accounting); without RUN, every run with its submissions.

exit status: 0 success; 2 usage error (no such run); 3 a run cannot be read

examples:
  mcompile runs
  mcompile runs lr-grid --format json"""),
    "logs": ("print a task's log (every attempt, marked), or the failed tasks' last lines", f"""\
RUN: {_RUN_ARG}. The logs are found from the run's records (submissions.jsonl): every
submission of the task (reruns, each array of a run past MaxArraySize) and every attempt in
them (a requeued task appends to its log; each attempt starts with a line job.sbatch writes),
oldest first, each under a `==> attempt K of N (job J, restart R): PATH <==` header.
Without --task: the last lines of each failed task's latest attempt, and a line for each
queued task that has not started, with squeue's reason (Priority, Resources, Dependency, ...).
--follow: what the task adds to its log, until it ends (also from before it starts).

exit status: 0 success; 2 usage error (no such run, task or attempt); 3 a run cannot be read

examples:
  mcompile logs lr-grid
  mcompile logs lr-grid --task 3 --follow
  mcompile logs lr-grid --task 3 --attempt 1"""),
    "cancel": ("cancel a run's queued and running tasks (every array and rerun), and record it", f"""\
RUN: {_RUN_ARG}. Cancels (scancel) the tasks of every submission of the run still queued or
running, or with --tasks only these; the cancellation is recorded in the run's cancels.jsonl
and `runs` shows it. A task that already ended is left as it is.

{_EXIT_CODES}

examples:
  mcompile cancel lr-grid
  mcompile cancel lr-grid --tasks 3,7-9"""),
    "shell": ("an interactive shell on a compute node, in a task's container, prepared as the batch task is", f"""\
RUN: {_RUN_ARG}. `srun --pty` with the run's resources (one task on one node; --time, --gpus,
--mem and --cpus override them) runs the run's own job.sbatch for task N in shell mode: the
node is prepared as for the task (its folder, the image, the staged data: archives are built
or reused first, as --submit does), the container gets the same binds, env and secrets file,
and `bash` runs in it on your terminal instead of the task's command. Leaving the shell
removes the task's node-local folders, as the batch task does.

exit status: the shell's own (srun's); 2 usage error; 3 an operation failed (pre-flight, srun)

examples:
  mcompile shell lr-grid
  mcompile shell lr-grid --task 3 --time 1h --gpus 0"""),
    "gc": ("remove data archives and code snapshots that no run refers to", f"""\
Looks in the archive folder of every run under --runs (<scratch>/<project>/.mcompile/archives)
and the code folder beside it (.mcompile/code, where it exists). Keeps an archive that a
submission of a run under --runs names, or of a run SLURM still has a job queued or running
for (squeue, by the job's work directory), and one built or reused within the last hour (a
--submit may be about to queue it) or, with --older-than N, within the last N days. A code
snapshot is kept when a run's job.sbatch, mounts.json, plan.txt or submissions.jsonl names it.
Prints each removed file and what was freed; --dry-run removes nothing. When squeue cannot be
asked, nothing is removed (exit 3).

{_EXIT_CODES}

examples:
  mcompile gc --dry-run
  mcompile gc --runs /scratch/$USER/runs --older-than 14"""),
    "report": ("write a run as one self-contained HTML page (states, every task, plan, diff)", f"""\
RUN: {_RUN_ARG}. Writes <run>/report.html (or -o FILE): the run's name, hash, manifest,
code commit and image SHA-256, its submissions, the tasks per state, a grid of every task
coloured by its latest attempt (point or click: command, exit status, attempts, log), the plan
and the changes since the newest other run of the experiment. States as `mcompile runs RUN`.
One file that loads nothing (no network at view time); the same run state gives the same page,
apart from the time it was generated. Prints the file written on stdout.

exit status: 0 written; 2 usage error (no such run); 3 the run cannot be read or the page written

example:
  mcompile report lr-grid -o lr-grid.html"""),
    "rerun": ("submit some tasks of a compiled run again (same job directory, no recompile)", f"""\
RUN: {_RUN_ARG}. Queues the tasks named by --failed and/or --tasks as one new submission
(recorded in the run's submissions.jsonl); prints the job ids on stdout.

{_EXIT_CODES}

examples:
  mcompile rerun lr-grid --failed
  mcompile rerun runs/lr-grid/7b56f4a5396f --tasks 3,7-9"""),
    "exec": ("run one task of a compiled run on this machine, with its job.sbatch", f"""\
RUN: {_RUN_ARG}. Runs task N with bash and the run's own job.sbatch, as SLURM would
(archives are staged first); results go to <outputs.dir>/local_N, the log to the terminal.
Launcher single only.

exit status: the task's own; 2 usage error; 3 an operation failed (staging, bash)

example:
  mcompile exec lr-grid --task 0"""),
    "diff": ("what really changes between manifests, runs or git revisions", """\
A, B: a manifest file, a job directory, REV:path (a git revision, e.g. main:manifests/exp.yaml),
or RUN@N (the N-th submission of a run, as `mcompile runs RUN` lists them).
With only A: against the newest compiled run of the same experiment (under --runs).
Two submitted runs with code: also name the two commits they ran and, when the repository is
at hand, the files that differ between them (the code differing is a difference: exit 1).
formats (--format): text; markdown (a table for a pull-request comment); json.

exit status (as diff(1)): 0 the same; 1 different; 2 error

examples:
  mcompile diff manifests/exp.yaml
  mcompile diff main:manifests/exp.yaml manifests/exp.yaml --format markdown"""),
    "sync": ("upload a run's offline W&B runs (wandb: {mode: offline}) with wandb sync, each once", """\
From a host with internet (a login node): finds the run's offline W&B runs under its outputs.dir
(<jobid>_<task>/wandb/offline-run-*-<hash12>-<task>), runs `wandb sync` over those not uploaded
yet (or grown since), and records them in the run's wandb-synced.jsonl. The API key is yours
(wandb login, WANDB_API_KEY), or the manifest's secrets.WANDB_API_KEY file where it is readable.

exit status: 0 uploaded (or nothing new); 2 usage error (no such run, no wandb: section);
3 wandb missing here, or wandb sync failed (nothing is recorded then)

example:
  mcompile sync lr-grid --task 3"""),
    "import": ("write a manifest equivalent to a job_submitter.sh command line", """\
After --: the arguments you gave `bash job_submitter.sh` (the seed scripts), in the directory you
ran it in: its name is the project, --configs (default experiment_configurations.txt) becomes
run.commands_file, ~/wandb_credentials.txt a secret. Writes the commented manifest to --output
(never over an existing file without --force), else stdout; on stderr, what was decided and what
could not be translated. A sweep's id and number of agents, which the scripts asked for, come
from --sweep-id and --agents, or are left as <FILL IN: ...> fields that validate rejects.

exit status: 0 written (also with fields left to fill in); 1 written, but it does not validate;
2 usage error (an unknown job_submitter.sh flag: the known ones are listed); 3 cannot write

example:
  mcompile import --output experiment.yaml -- --account def-me --gpus 2 --mem 16G \\
      --exp-name lr-sweep --singularity-container ~/app.sif --configs configs.txt"""),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` that one (what a run of that command needs:
    the other commands' options import their formatters)."""
    import argparse

    _Parser = _parser_class()
    parser = _Parser(prog="mcompile", usage=_TOP_USAGE, epilog=_TOP_EPILOG,
                     description="Compile experiment manifests into SLURM + Apptainer job directories.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mcompile {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (accepted anywhere on the line)")
    parser.add_argument("--quiet", action="store_true", help="no live progress line on a terminal, only a line a step (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        summary, epilog = _COMMAND_HELP[name]
        _ARGUMENTS[name](sub.add_parser(name, prog=f"mcompile {name}", help=summary, description=summary[0].upper() + summary[1:] + ".",
                                        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="manifest files")
    p.add_argument("--format", choices=tuple(_validate_formats()), default="text", help="how problems are reported (default text)")


def _compile_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the manifest")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)
    p.add_argument("--submit", action="store_true", help="submit the run to SLURM after compiling")
    p.add_argument("--strict", action="store_true", help="with --submit: refuse (not only warn) when a secret file is readable by others")


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the manifest")


def _schema_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", dest="schema_version", type=int, default=max(SCHEMA_VERSIONS), metavar="N",
                   help=f"manifest format version (default {max(SCHEMA_VERSIONS)})")


def _stage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the manifest, or a compiled run's directory")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT + ", where the sbatch line looks for the run")
    p.add_argument("--expect", default=None, metavar="FP,..",
                   help="with a run directory (the staging job of data.build: job): fail unless the archives have these fingerprints")


def _runs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="RUN", help="one run: " + _RUN_ARG + "; default: every run")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)
    p.add_argument("--format", choices=tuple(_runs_formats()), default="text",
                   help="json: with RUN, one object per task; without, every run and its submissions")


def _logs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("--task", type=int, default=None, metavar="N", help="the task's log (default: the failed tasks' last lines)")
    p.add_argument("--attempt", type=int, default=None, metavar="K", help="with --task: only attempt K (1 is the first)")
    p.add_argument("--follow", action="store_true", help="with --task: print what the task adds to its log until it ends")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)


def _cancel_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("--tasks", default=None, metavar="LIST", help="only these tasks (e.g. 3,7-9); default: every task")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)


def _shell_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("--task", type=int, default=0, metavar="N", help="the task whose container and data to use (default 0)")
    p.add_argument("--time", default=None, metavar="TIME", help="instead of the run's time limit (e.g. 1h, 30m)")
    p.add_argument("--gpus", type=int, default=None, metavar="N", help="instead of the run's GPUs (0: none)")
    p.add_argument("--mem", default=None, metavar="MEM", help="instead of the run's memory (e.g. 8G)")
    p.add_argument("--cpus", type=int, default=None, metavar="N", help="instead of the run's CPUs per task")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)


def _gc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT + "; their references are kept")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="only what was last built or used more than DAYS ago")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write the page here (default: <run>/report.html)")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)


def _rerun_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("--failed", action="store_true",
                   help="the tasks whose latest attempt failed, timed out, ran out of memory, was cancelled, or that never ran")
    p.add_argument("--tasks", default=None, metavar="LIST", help="these tasks (e.g. 3,7-9); with --failed: the failed ones among them")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)
    p.add_argument("--strict", action="store_true", help="refuse (not only warn) when a secret file is readable by others")


def _exec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("--task", type=int, required=True, metavar="N", help="the task's number in the run (0, 1, ...)")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)


def _diff_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="a manifest, a job directory or REV:path")
    p.add_argument("b", nargs="?", metavar="B", help="the same kinds; default: the newest compiled run of A's experiment")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)
    p.add_argument("--format", choices=tuple(_diff_formats()), default="text", help="default text")


def _import_arguments(p: argparse.ArgumentParser) -> None:
    import argparse

    p.add_argument("--output", default=None, metavar="FILE", help="write the manifest here (default: stdout)")
    p.add_argument("--force", action="store_true", help="with --output: replace an existing file")
    p.add_argument("--sweep-id", default=None, metavar="ID", help="sweep: ENTITY/PROJECT/SWEEP_ID, or SWEEP_ID (the scripts asked for it)")
    p.add_argument("--agents", type=int, default=None, metavar="N", help="sweep: the number of agents (the scripts asked for it)")
    p.add_argument("submitter_args", nargs=argparse.REMAINDER, metavar="-- ARGS", help="job_submitter.sh's arguments")


def _sync_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help=_RUN_ARG)
    p.add_argument("--task", type=int, default=None, metavar="N", help="only this task's W&B runs")
    p.add_argument("--runs", default=None, metavar="DIR", help=_RUNS_OPT)


_ARGUMENTS: dict[str, t.Callable[[argparse.ArgumentParser], None]] = {
    "validate": _validate_arguments, "compile": _compile_arguments, "plan": _plan_arguments,
    "schema": _schema_arguments, "stage": _stage_arguments, "runs": _runs_arguments,
    "logs": _logs_arguments, "cancel": _cancel_arguments, "shell": _shell_arguments, "gc": _gc_arguments, "report": _report_arguments,
    "rerun": _rerun_arguments, "exec": _exec_arguments, "diff": _diff_arguments, "import": _import_arguments,
    "sync": _sync_arguments,
}


def _validate_formats() -> t.Iterable[str]:
    from .report import REPORTER_BY_NAME

    return REPORTER_BY_NAME


def _diff_formats() -> t.Iterable[str]:
    from .diff.formats import FORMATTER_BY_NAME

    return FORMATTER_BY_NAME


def _runs_formats() -> t.Iterable[str]:
    from .runs_formats import FORMATTER_BY_NAME

    return FORMATTER_BY_NAME


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """`--debug` and `--quiet` may stand anywhere on the line (not after `--`, where they would be file names)."""
    end = argv.index("--") if "--" in argv else len(argv)
    _Console.quiet = "--quiet" in argv[:end]
    kept = [a for a in argv[:end] if a not in ("--debug", "--quiet")]
    return [*kept, *argv[end:]], "--debug" in argv[:end]


def _normalise_argv(argv: list[str]) -> list[str]:
    """`mcompile FILE [opts]` is shorthand for `mcompile compile FILE [opts]`.

    The first word that is not an option is a command, or else a manifest file: an existing
    path, or one that looks like a file (a folder in it, or a .yaml/.yml/.json suffix). Any
    other word is an unknown command, named as such (with the command it is close to).

    Raises:
        UsageError: an unknown command.
    """
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            if arg == "--":
                break
            continue
        if arg in COMMANDS:
            return argv
        if os.path.exists(arg) or "/" in arg or arg.lower().endswith((".yaml", ".yml", ".json")):
            return [*argv[:i], "compile", *argv[i:]]
        from .errors import UsageError

        raise UsageError(_unknown_command(arg))
    return argv


def _command_of(argv: list[str]) -> str | None:
    """The command a normalised command line runs, when nothing else in it needs the whole parser."""
    first = next((arg for arg in argv if not arg.startswith("-") or arg == "--"), None)
    if first in COMMANDS and argv.index(first) == 0:
        return first
    return None


def _unknown_command(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word.lower(), COMMANDS, n=1, cutoff=0.6)
    if close:
        return f"mcompile: unknown command {word!r}; did you mean {close[0]!r}?"
    return (f"mcompile: unknown command {word!r} (commands: {', '.join(COMMANDS)}); "
            f"to compile a manifest, name its file (no file {word!r} here)")


def main(argv: list[str] | None = None) -> int:
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    if argv == ["--version"]:  # answered before the parser of every command is built
        print(f"mcompile {__version__}")
        return EXIT_OK
    from .errors import ManifestError, McompileError, UsageError

    try:
        argv = _normalise_argv(argv)
        args = build_parser(_command_of(argv)).parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        return execute(args)
    except McompileError as e:
        if debug and not isinstance(e, UsageError):  # a usage error is about the command line: no traceback helps
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


class _Console:
    """stderr: a line a note; and, on a terminal (unless NO_COLOR or --quiet), a live line for a
    step that runs past MCOMPILE_PROGRESS_AFTER seconds (default 1): done, rate, time left."""

    quiet = False  # --quiet

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._drawn = 0.0
        self._shown = False

    def __call__(self, message: str) -> None:
        self._clear()
        print(f"mcompile: {message}", file=sys.stderr, flush=True)

    def meter(self, what: str, done: int, total: int) -> None:
        if self.quiet or os.environ.get("NO_COLOR") or not sys.stderr.isatty():
            return
        import time

        from .progress import meter_line

        now = time.monotonic()
        started = self._started.setdefault(what, now)
        if now - started < float(os.environ.get("MCOMPILE_PROGRESS_AFTER") or 1) or (now - self._drawn < 0.1 and done < total):
            return
        import shutil

        self._drawn, self._shown = now, True
        width = shutil.get_terminal_size().columns - 1
        sys.stderr.write("\r\x1b[K" + f"mcompile: {meter_line(what, done, total, now - started)}"[:width])
        sys.stderr.flush()

    def _clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            self._shown = False


_note = _Console()


def build_scheduler() -> Scheduler:
    """The SLURM of this host, asked with its real commands."""
    from .slurm import Scheduler

    return Scheduler()


def _submission(submit: t.Callable[[], Submitted]) -> int:
    """Run a submission; show its notes (stderr) and the job ids it queued (stdout), also when it failed."""
    from .submit import SubmitError

    try:
        done = submit()
    except SubmitError as e:
        _show_submitted(e.submitted)
        raise
    _show_submitted(done)
    return EXIT_OK


def _show_submitted(done: Submitted) -> None:
    for note in done.notes:
        _note(note)
    for job in done.jobs:
        print(job, flush=True)


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

        return _submission(lambda: submit_run(run.path, manifest_path=args.file, strict=args.strict,
                                              scheduler=build_scheduler(), progress=_note))
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
    differs = result.changes or (result.code and result.code.differs)
    return EXIT_DIFFERENT if differs else EXIT_OK  # as diff(1); errors are DiffError, exit 2


def _cmd_plan(args: argparse.Namespace) -> int:
    from .pipeline import build_job

    _, files, _, warnings = build_job(args.file)
    _warn(warnings)
    sys.stdout.write(files["plan.txt"].decode())
    return EXIT_OK


def _cmd_stage(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from .pipeline import build_job
    from .stage import make_log_folder, stage_archives
    from .submit import by_hand_code, by_hand_command, by_hand_image
    from .write import content_hash

    if os.path.isdir(args.file):
        return _stage_run(Path(args.file), args.expect)
    if args.expect is not None:
        from .errors import UsageError

        raise UsageError("mcompile stage: --expect goes with a run directory, not a manifest")
    plan, files, _, warnings = build_job(args.file)
    _warn(warnings)
    resolved = plan.resolved
    archives = stage_archives(resolved, progress=_note)
    exports = [a.export for a in archives]
    code = by_hand_code(resolved, args.file)
    if not archives and not code:
        _note("nothing to stage (data.stage is not archive, no code:)")
    for a in archives:
        print(f"{'built' if a.built else 'reused'} {a.subset} {a.fingerprint} {a.path}")
    if code:
        for warning in code.warnings:
            _note(f"warning: {warning}")
        print(f"{'built' if code.built else 'reused'} code {code.sha256} {code.path}")
        exports += code.exports
    exports += by_hand_image(resolved)
    make_log_folder(resolved, unset_ok=True)  # one whose variables are not set here is left to the job
    run = Path(args.runs or _runs_default()) / resolved["name"] / content_hash(files)[:12]
    _note(f"by hand, submit with: {by_hand_command(run, resolved, exports)}")
    if not (run / "job.sbatch").is_file():
        _note(f"{run} is not compiled yet: mcompile compile {shlex.quote(args.file)}"
              + (f" --runs {shlex.quote(args.runs)}" if args.runs else ""))
    return EXIT_OK


def _stage_run(run: Path, expect: str | None) -> int:
    """`mcompile stage RUN_DIR [--expect FP,..]`: build the archives of a compiled run, where its
    job reads them (the staging job of `data.build: job` runs this on a compute node)."""
    from .jobdir import read_resolved
    from .stage import check_expected, stage_archives

    resolved = read_resolved(run)
    archives = stage_archives(resolved, cwd=run, progress=_note)
    if expect is not None:
        check_expected(archives, [fp for fp in expect.split(",") if fp])
    if not archives:
        _note("nothing to stage (data.stage is not archive)")
    for a in archives:
        print(f"{'built' if a.built else 'reused'} {a.subset} {a.fingerprint} {a.path}")
    return EXIT_OK


def _cmd_runs(args: argparse.Namespace) -> int:
    from .runs import describe_runs
    from .runs_formats import FORMATTER_BY_NAME

    listing = describe_runs(args.runs or _runs_default(), args.name, scheduler=build_scheduler())
    sys.stdout.write(FORMATTER_BY_NAME[args.format](listing))
    return EXIT_OK


def _cmd_logs(args: argparse.Namespace) -> int:
    from .logs import show_logs

    logs = show_logs(args.runs or _runs_default(), args.run, task=args.task, attempt=args.attempt, follow=args.follow,
                     scheduler=build_scheduler(), waiting=_note)
    sys.stdout.write(logs.text)
    sys.stdout.flush()
    for text in logs.follow or ():
        sys.stdout.write(text)
        sys.stdout.flush()
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace) -> int:
    from .cancel import cancel_run
    from .jobdir import find_run

    done = cancel_run(find_run(args.runs or _runs_default(), args.run), tasks=args.tasks, scheduler=build_scheduler())
    for note in done.notes:
        _note(note)
    return EXIT_OK


def _cmd_shell(args: argparse.Namespace) -> int:
    from .jobdir import find_run
    from .shell import Overrides, open_shell

    run = find_run(args.runs or _runs_default(), args.run)
    overrides = Overrides(time=args.time, gpus=args.gpus, mem=args.mem, cpus=args.cpus)
    return open_shell(run, args.task, overrides, scheduler=build_scheduler(), progress=_note)


def _cmd_gc(args: argparse.Namespace) -> int:
    from .efficiency import human_size
    from .gc import collect

    done = collect(args.runs or _runs_default(), dry_run=args.dry_run, older_than_days=args.older_than, scheduler=build_scheduler())
    verb = "would remove" if args.dry_run else "removed"
    for r in done.removed:
        print(f"{verb} {r.path} ({human_size(r.size)})")
    for note in done.notes:
        _note(note)
    where = ", ".join(str(f) for f in done.folders) or "no archive folder (no run under --runs stages archives here)"
    _note(f"{'would free' if args.dry_run else 'freed'} {human_size(done.freed)} in {len(done.removed)} "
          f"file{'s' if len(done.removed) != 1 else ''}; kept {done.kept} ({where})")
    return EXIT_OPERATION if done.notes else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import datetime
    from pathlib import Path

    from .html_report import REPORT_FILE, report_data, write_report

    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = report_data(args.runs or _runs_default(), args.run, scheduler=build_scheduler(), generated=generated)
    output = Path(args.output) if args.output else Path(data.identity["run"]) / REPORT_FILE
    write_report(data, output)
    print(output)
    return EXIT_OK


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .jobdir import find_run
    from .submit import rerun

    run = find_run(args.runs or _runs_default(), args.run)
    return _submission(lambda: rerun(run, tasks=args.tasks, failed=args.failed, strict=args.strict,
                                     scheduler=build_scheduler(), progress=_note))


def _cmd_exec(args: argparse.Namespace) -> int:
    from .jobdir import find_run
    from .local import run_task_locally

    return run_task_locally(find_run(args.runs or _runs_default(), args.run), args.task, progress=_note)


def _cmd_sync(args: argparse.Namespace) -> int:
    from .jobdir import find_run, read_resolved
    from .wandb_sync import sync

    run_dir = find_run(args.runs or _runs_default(), args.run)
    done = sync(run_dir, read_resolved(run_dir), args.task)
    for r in done.uploaded:
        print(f"synced task {r.task}: {r.path}")
    _note(f"{len(done.uploaded)} W&B run folder(s) uploaded, {len(done.already)} already uploaded"
          + ("" if done.uploaded or done.already else " (none found under the run's outputs.dir yet)"))
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from .errors import OperationError, UsageError
    from .importer import import_invocation

    rest = list(args.submitter_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest:
        raise UsageError("mcompile import: give job_submitter.sh's arguments after --, e.g. "
                         "mcompile import -- --mem 16G --singularity-container ~/app.sif")
    if args.output and os.path.exists(args.output) and not args.force:
        raise UsageError(f"mcompile import: {args.output} exists; give --force to replace it, or another --output")
    imported = import_invocation(rest, cwd=os.getcwd(), home=os.path.expanduser("~"), output=args.output,
                                 scratch=os.environ.get("SCRATCH") or None, sweep_id=args.sweep_id, agents=args.agents)
    for note in imported.notes:
        _note(note)
    if args.output:
        try:
            with open(args.output, "w" if args.force else "x", encoding="utf-8") as fh:
                fh.write(imported.text)
        except OSError as e:
            raise OperationError(f"cannot write {args.output}: {e.strerror or e}") from None
        _note(f"wrote {args.output}")
    else:
        sys.stdout.write(imported.text)
    errors = [p for p in imported.problems if p.level == "error"]
    if imported.fill_in:
        _note(f"fill in {', '.join(imported.fill_in)} (marked <FILL IN: ...>): validate rejects the manifest until then")
    unexpected = [p for p in errors if not any(p.path.startswith(f) for f in imported.fill_in)]
    _warn([p for p in imported.problems if p not in errors or p in unexpected])
    return EXIT_INVALID if unexpected else EXIT_OK


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
    "logs": _cmd_logs,
    "cancel": _cmd_cancel,
    "shell": _cmd_shell,
    "gc": _cmd_gc,
    "report": _cmd_report,
    "rerun": _cmd_rerun,
    "diff": _cmd_diff,
    "exec": _cmd_exec,
    "import": _cmd_import,
    "sync": _cmd_sync,
}
