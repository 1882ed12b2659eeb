"""The command line's own behaviour: unknown commands, the FILE shorthand, --debug, --help, runs' folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manifest_compiler.cli import COMMANDS, main
from manifest_compiler.errors import OperationError

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "manifests" / "grid.yaml"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCOMPILE_RUNS", raising=False)


@pytest.mark.parametrize(("argv", "message"), [
    (["validat", "x.yaml"], "mcompile: unknown command 'validat'; did you mean 'validate'?"),
    (["comple", "x.yaml"], "mcompile: unknown command 'comple'; did you mean 'compile'?"),
    (["--debug", "rnus"], "mcompile: unknown command 'rnus'; did you mean 'runs'?"),
    (["Plan", "x.yaml"], "mcompile: unknown command 'Plan'; did you mean 'plan'?"),
    (["frobnicate"], "mcompile: unknown command 'frobnicate' (commands: " + ", ".join(COMMANDS)
     + "); to compile a manifest, name its file (no file 'frobnicate' here)"),
])
def test_an_unknown_command_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err == message + "\n" and out == ""


def test_an_existing_file_named_like_a_command_typo_is_compiled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(GRID, tmp_path / "validat")
    assert main(["validat"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("runs/lr-grid/") and err.startswith("compiled runs/lr-grid/")


@pytest.mark.parametrize("word", ["missing.yaml", "sub/exp", "exp.yml"])
def test_a_word_that_looks_like_a_file_is_the_compile_shorthand(word: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([word]) == 1  # compiled: the manifest cannot be read
    assert capsys.readouterr().err == f"{word}: cannot read: No such file or directory\n"


@pytest.mark.parametrize("argv", [
    ["runs", "--debug", "--runs", "nowhere"],
    ["runs", "--runs", "nowhere", "--debug"],
    ["--debug", "runs", "--runs", "nowhere"],
])
def test_debug_is_accepted_anywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert "no compiled runs in nowhere" in capsys.readouterr().out


def test_debug_after_the_command_shows_the_traceback_of_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("")
    assert main(["compile", str(GRID), "--runs", "afile"]) == 3
    assert capsys.readouterr().err.startswith("mcompile: cannot write the run under afile/lr-grid")
    with pytest.raises(OperationError, match="cannot write the run under afile/lr-grid"):
        main(["compile", str(GRID), "--runs", "afile", "--debug"])


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_a_usage_error_is_one_line_with_or_without_debug(debug: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "nope", "--runs", "nowhere", *debug]) == 2
    assert capsys.readouterr().err == ("mcompile: no compiled run 'nope' in nowhere "
                                       "(a run directory, or NAME/HASH12 or NAME under --runs)\n")


def test_runs_says_which_folder_it_looked_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert capsys.readouterr().out == "no compiled runs in runs, which does not exist (--runs DIR or $MCOMPILE_RUNS names another folder)\n"
    (tmp_path / "elsewhere").mkdir()
    os.environ["MCOMPILE_RUNS"] = str(tmp_path / "elsewhere")
    try:
        assert main(["runs"]) == 0
    finally:
        del os.environ["MCOMPILE_RUNS"]
    assert capsys.readouterr().out == f"no compiled runs in {tmp_path / 'elsewhere'} (--runs DIR or $MCOMPILE_RUNS names another folder)\n"
    assert main(["runs", "--format", "json"]) == 0
    assert capsys.readouterr().out == "[]\n"


def _help(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", *argv, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


def test_the_top_level_help_shows_the_file_shorthand() -> None:
    text = _help()
    assert text.startswith("usage: mcompile [--debug] COMMAND [ARGS]\n       mcompile [--debug] FILE ")
    assert "shorthand for: mcompile compile FILE" in text and "exit status: 0 success" in text
    for command in COMMANDS:
        assert f"    {command}  " in text or f"    {command} " in text, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_names_its_arguments_exit_status_and_an_example(command: str) -> None:
    text = _help(command)
    assert text.startswith(f"usage: mcompile {command} ")
    assert "\nexit status" in text
    assert "\nexample:\n  mcompile " in text or "\nexamples:\n  mcompile " in text
    if command == "validate":
        assert "github  ::error file=" in text and "json    one document" in text
    if command == "exec":
        assert "exit status: the task's own" in text


def test_the_help_of_every_argument_is_written() -> None:
    from manifest_compiler.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():  # type: ignore[union-attr]
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"mcompile {name}: {action.dest} has no help"


def test_stage_prints_the_by_hand_line_and_creates_a_fixed_log_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nname: byhand\nproject: p\ncontainer: {image: /nonexistent.sif}\n"
                        "resources: {time: 5m, mem: 256M}\nrun: {commands: ['true']}\n"
                        f"outputs: {{logs: {tmp_path}/logs, dir: {tmp_path}/out}}\n"
                        "secrets: {API_KEY: {file: /nonexistent}}\n")
    monkeypatch.setenv("API_KEY", "in this shell")
    assert main(["stage", str(manifest)]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "logs").is_dir() and out == ""
    lines = err.splitlines()
    assert lines[0] == "mcompile: nothing to stage (data.stage is not archive, no code:)"
    assert lines[1].startswith("mcompile: by hand, submit with: cd runs/byhand/") and lines[1].endswith(" && env -u API_KEY sbatch job.sbatch")
    run = lines[1].split("cd ", 1)[1].split(" &&")[0]
    assert lines[2] == f"mcompile: {run} is not compiled yet: mcompile compile {manifest}"
    assert main(["compile", str(manifest)]) == 0
    assert capsys.readouterr().out == run + "\n"  # the line names the run compile writes
    assert main(["stage", str(manifest)]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_version_is_answered_before_anything_is_imported() -> None:
    """`mcompile --version` builds no parser: no argparse, no YAML, no schema validator."""
    code = ("import sys; from manifest_compiler.cli import main; main(['--version']); "
            "print(sorted(m for m in ('argparse', 'yaml', 'jsonschema', 'jinja2', 'manifest_compiler.errors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    from manifest_compiler import __version__

    assert out == [f"mcompile {__version__}", "[]"]
