"""run.commands_file: one task per line of a file beside the manifest.

The file's rules (comments, blank lines, backslash continuation, CRLF), its problems at
FILE:line, the run it compiles to (its commands are the tasks; the file is recorded beside
the run), and `diff` between two versions of the file. No SLURM: the job scripts are run
with bash and the apptainer test double in tests/test_import_equivalence.py and on a real
SLURM in tests/e2e/test_imported_run.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from manifest_compiler.commands_file import parse_commands_file
from manifest_compiler.diff import diff_specs
from manifest_compiler.errors import ManifestError
from manifest_compiler.pipeline import check_file, compile_manifest, resolve_file

MANIFEST = """\
version: 1
name: cf
project: proj
container: {image: $SCRATCH/app.sif}
resources: {time: 10m, mem: 1G}
run:
  commands_file: cmds.txt
"""


def _write(folder: Path, commands: bytes, manifest: str = MANIFEST, name: str = "cmds.txt") -> Path:
    (folder / name).write_bytes(commands)
    path = folder / "manifest.yaml"
    path.write_text(manifest)
    return path


def _problems(path: Path) -> list[str]:
    return [str(p) for p in check_file(str(path))[1]]


def test_one_task_per_line_comments_and_blank_lines_skipped() -> None:
    cf = parse_commands_file("c.txt", b"# a comment\n\n   \n  # indented comment\necho one\n\techo two  \necho three # not a comment\n")
    assert cf.commands == ["echo one", "\techo two  ", "echo three # not a comment"]
    assert cf.lines == [5, 6, 7]
    assert cf.problems == []


def test_kept_byte_for_byte_commas_quotes_backslashes_and_variables() -> None:
    lines = ["echo a,b,c --opt=x,y,z", "echo \"it's\" 'a \"q\" w'", "printf '%s\\n' back\\\\slash",
             "echo $HOME ${USER:-x} $(date) `id`", "echo héllo ✓", "echo \\\\"]
    cf = parse_commands_file("c.txt", "\n".join(lines).encode())  # no final newline: the last line still counts
    assert cf.commands == lines


def test_a_trailing_backslash_continues_the_command_as_bash_does() -> None:
    cf = parse_commands_file("c.txt", b"python train.py \\\n  --lr 0.1 \\\n  --seed 1\necho next\n")
    assert cf.commands == ["python train.py   --lr 0.1   --seed 1", "echo next"]
    assert cf.lines == [1, 4]
    # an even number of backslashes is an escaped backslash: the command ends there
    cf = parse_commands_file("c.txt", b"echo a \\\\\necho b\n")
    assert cf.commands == ["echo a \\\\", "echo b"]
    # a continued line belongs to the command whatever it starts with
    cf = parse_commands_file("c.txt", b"echo a \\\n# b\n")
    assert cf.commands == ["echo a # b"]
    # the same bytes as bash reads them
    out = subprocess.run(["bash", "-c", cf.commands[0]], capture_output=True, text=True, check=True).stdout
    assert out == "a\n"


def test_a_continuation_at_the_end_of_the_file_is_an_error() -> None:
    cf = parse_commands_file("c.txt", b"echo a\necho b \\\n")
    assert [str(p) for p in cf.problems] == [
        "c.txt:2:1: run.commands_file: the last line ends with a backslash, which continues the command on a next line, "
        "but the file ends there; remove the backslash or add the line"]


def test_crlf_is_stripped_and_said_a_lone_cr_is_kept() -> None:
    cf = parse_commands_file("c.txt", b"# windows\r\necho a,b\r\npython x.py \\\r\n  --lr 1\r\necho 'in\rside'\n")
    assert cf.commands == ["echo a,b", "python x.py   --lr 1", "echo 'in\rside'"]
    assert [str(p) for p in cf.problems] == [
        "c.txt:1:1: run.commands_file: warning: CRLF line endings: the CR before each line break is removed (4 lines); "
        "save the file with LF endings to silence this"]


def test_utf8_bom_is_dropped_and_invalid_utf8_is_located() -> None:
    assert parse_commands_file("c.txt", "\ufeffecho a\n".encode()).commands == ["echo a"]
    cf = parse_commands_file("c.txt", b"echo a\necho \xff\n")
    assert [str(p) for p in cf.problems] == ["c.txt:2:6: run.commands_file: not valid UTF-8 (byte 0xff); save the file as UTF-8"]


def test_validate_points_at_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, b"echo ok\n\n# c\npython x.py --name 'first run\necho \x00nul\n")
    cmds = tmp_path / "cmds.txt"
    assert _problems(path) == [
        f"{cmds}:4:1: run.commands_file[1]: warning: unclosed ' quote: bash fails on it with a syntax error on the node "
        "(unexpected EOF while looking for matching '); close it, or write an apostrophe as \\' (or within double quotes: \"it's\")",
        f"{cmds}:5:1: run.commands_file[2]: expected a command without NUL bytes; got the string 'echo \\x00nul'",
    ]


def test_a_missing_or_empty_file_is_an_error_at_the_manifest(tmp_path: Path) -> None:
    path = _write(tmp_path, b"", MANIFEST.replace("cmds.txt", "missing.txt"))
    assert _problems(path) == [f"{path}:7:18: run.commands_file: cannot read 'missing.txt': No such file or directory"]
    path = _write(tmp_path, b"# only a comment\n\n")
    assert _problems(path) == [f"{path}:7:18: run.commands_file: 'cmds.txt' holds no command: every line is blank or a comment (#)"]


def test_exactly_one_kind_of_run(tmp_path: Path) -> None:
    path = _write(tmp_path, b"echo a\n", MANIFEST + "  commands: [echo b]\n")
    assert _problems(path) == [f"{path}:7:3: run: expected exactly one of commands, commands_file, grid, sweep; commands and commands_file given"]


def test_relative_to_the_manifest_that_names_it_through_extends(tmp_path: Path) -> None:
    base = tmp_path / "site"
    base.mkdir()
    (base / "base.yaml").write_text(MANIFEST.replace("version: 1\n", "version: 1\nbase: true\n"))
    (base / "cmds.txt").write_bytes(b"echo from-the-base-folder\n")
    (tmp_path / "cmds.txt").write_bytes(b"echo wrong\n")
    child = tmp_path / "child.yaml"
    child.write_text("version: 1\nextends: site/base.yaml\nname: child\n")
    resolved, _, _ = resolve_file(str(child))
    assert list(resolved["run"]["tasks"]) == ["echo from-the-base-folder"]
    # an extending file that names another kind of run replaces the base's commands_file
    child.write_text("version: 1\nextends: site/base.yaml\nname: child\nrun: {commands: [echo own]}\n")
    resolved, loaded, _ = resolve_file(str(child))
    assert resolved["run"]["kind"] == "commands" and loaded.commands_file is None


def test_compiled_run_records_the_file_and_a_changed_file_is_a_new_run(tmp_path: Path) -> None:
    path = _write(tmp_path, b"echo one\necho two\n")
    runs = str(tmp_path / "runs")
    first = compile_manifest(str(path), runs_dir=runs).run
    assert (first.path / "commands_file" / "cmds.txt").read_bytes() == b"echo one\necho two\n"
    assert (first.path / "tasks" / "commands").read_bytes() == b"echo one\necho two\n"
    resolved = json.loads((first.path / "resolved.json").read_text())
    assert resolved["run"]["kind"] == "commands_file" and resolved["run"]["tasks"] == ["echo one", "echo two"]
    # a comment-only change is the same run; a changed command a new one
    (tmp_path / "cmds.txt").write_bytes(b"# note\necho one\necho two\n")
    assert compile_manifest(str(path), runs_dir=runs).run.path == first.path
    (tmp_path / "cmds.txt").write_bytes(b"echo one\necho 'two, changed'\n")
    second = compile_manifest(str(path), runs_dir=runs).run
    assert second.created and second.path != first.path
    result = diff_specs(str(first.path), str(second.path), runs_dir=runs)
    assert [(c.path, c.kind, c.old, c.new) for c in result.changes] == [("run.tasks[1]", "changed", "echo two", "echo 'two, changed'")]


def test_diff_of_a_manifest_against_its_previous_run_reads_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, b"echo one\n")
    runs = str(tmp_path / "runs")
    compile_manifest(str(path), runs_dir=runs)
    (tmp_path / "cmds.txt").write_bytes(b"echo one\necho added\n")
    result = diff_specs(str(path), None, runs_dir=runs)
    assert [(c.path, c.kind, c.new) for c in result.changes] == [("run.tasks[1]", "added", "echo added")]


def test_diff_of_git_revisions_reads_the_file_of_the_same_revision(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    _write(tmp_path, b"echo old\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (tmp_path / "cmds.txt").write_bytes(b"echo new\n")
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "diff", "HEAD:manifest.yaml", "manifest.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert 'run.tasks[0]: "echo old" → "echo new"' in proc.stdout


def test_the_manifest_limit_does_not_bind_a_commands_file(tmp_path: Path) -> None:
    from manifest_compiler.load import MAX_FILE_BYTES

    line = b"echo " + b"x" * 1000 + b"\n"
    count = MAX_FILE_BYTES // len(line) + 10  # above 16 MiB
    path = _write(tmp_path, line * count)
    resolved, _, _ = resolve_file(str(path))
    assert len(resolved["run"]["tasks"]) == count


@pytest.mark.parametrize("content", [b"echo a \\\n", b"\xff\n"])
def test_compile_refuses_a_broken_file(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(ManifestError):
        compile_manifest(str(path), runs_dir=str(tmp_path / "runs"))
