"""Hostile input — each a test.

YAML tags that would construct or execute something, alias bombs in every field,
huge files and grids, strings that try to break out of job.sbatch (#SBATCH lines,
quotes, newlines), data paths that try to leave the data root, and secret files
that others can read. Everything here runs without SLURM and without bubblewrap:
where a job script is executed, a stand-in runtime that only records its argv is
first on PATH.

Genuine package bugs found this way are strict xfails (see the reasons).
"""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from helpers.jobs import run_task
from helpers.sbatch import header_arguments, sbatch_block

from manifest_compiler.errors import ManifestError, OperationError, Problem
from manifest_compiler.load import MAX_ALIAS_VALUES, MAX_DEPTH, MAX_FILE_BYTES, load_manifest
from manifest_compiler.pipeline import build_job, check_file, compile_manifest, resolve_file
from manifest_compiler.render import shell_path
from manifest_compiler.stage import check_subset, expand, stage_archives
from manifest_compiler.submit import ChunkPlan, preflight
from manifest_compiler.validate import MAX_TASKS

MiB = 1024 * 1024

BASE: dict[str, object] = {
    "version": 1,
    "name": "hostile",
    "project": "proj",
    "container": {"image": "$SCRATCH/containers/app.sif"},
    "resources": {"time": "10m", "mem": "1G"},
    "run": {"commands": ["echo hi"]},
}

# The directives every manifest built from BASE gets, in order (no array: one task).
BASE_DIRECTIVES = [
    "--job-name=proj-hostile", "--time=0-00:10:00", "--nodes=1", "--ntasks-per-node=1",
    "--cpus-per-task=1", "--mem=1G", "--open-mode=append",
]


def write_manifest(folder: Path, filename: str = "manifest.yaml", **over: object) -> Path:
    doc = {**BASE, **over}
    doc = {k: v for k, v in doc.items() if v is not None}
    path = folder / filename
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=1 << 30))
    return path


def errors_of(path: Path) -> list[Problem]:
    return [p for p in check_file(str(path))[1] if p.level == "error"]


def mcompile(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manifest_compiler", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# Runs argv and reports the peak RSS of that process alone. It runs in a small wrapper
# process, not as pytest's own child: Python starts children with vfork, and Linux
# carries the RSS high-water mark of the memory the child had before exec (pytest's,
# shared through vfork) into the child's ru_maxrss. A child of the small wrapper starts
# from the wrapper's few MiB. os.wait4 gives the usage of exactly that child, unlike
# getrusage(RUSAGE_CHILDREN), the maximum over every child ever waited for.
_MEASURE = """
import os, subprocess, sys, time
report, timeout, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
child = subprocess.Popen(argv)
deadline = time.monotonic() + timeout
while True:
    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    if pid:
        break
    if time.monotonic() > deadline:
        child.kill()
        pid, status, usage = os.wait4(child.pid, 0)
        break
    time.sleep(0.005)
child.returncode = code = os.waitstatus_to_exitcode(status)
with open(report, "w") as fh:
    fh.write(f"{code} {usage.ru_maxrss * 1024}")
"""


def run_measured(argv: list[str], *, cwd: Path | None = None, timeout: float = 60) -> tuple[int, str, str, int]:
    """Run argv; return (exit code, stdout, stderr, peak RSS in bytes of that process)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(report), str(timeout), *argv], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout + 30, stdin=subprocess.DEVNULL)
        code, rss = (int(x) for x in report.read_text().split())
    return code, proc.stdout, proc.stderr, rss


def header_directives(script: str) -> list[str]:
    """The #SBATCH lines sbatch reads: those before the first line that is not a comment or blank."""
    return [line.decode() for line in sbatch_block(script.encode()) if line.startswith(b"#SBATCH")]


# --- YAML tags: errors, never executed ----------------------------------------------

TAG_PAYLOADS = [
    "description: !!python/object/apply:os.system ['touch {marker}']",
    "description: !!python/object/new:os.system ['touch {marker}']",
    "description: !!python/object/apply:os.system\n  args: ['touch {marker}']",
    "description: !!python/object/apply:subprocess.check_call [[touch, '{marker}']]",
    "description: !!python/name:os.system",
    "description: !!python/module:os",
    "description: !!python/object:os.system {{}}",
    "description: !<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
    "description: !!binary dG91Y2g=",
    "description: !!set {{a, b}}",
    "description: !!omap [{{a: 1}}]",
    "description: !!pairs [{{a: 1}}]",
    "description: !!timestamp 2001-12-14",
    "description: !foo bar",
    "description: !foo {{a: 1}}",
    "description: !foo [touch, '{marker}']",
    # %TAG directives: make a harmless-looking handle mean python/..., or !! mean something else
    "%TAG !! tag:yaml.org,2002:python/object/apply:\n---\ndescription: !!os.system ['touch {marker}']",
    "%TAG ! tag:yaml.org,2002:python/object/apply:\n---\ndescription: !os.system ['touch {marker}']",
    "%TAG !e! tag:yaml.org,2002:python/\n---\ndescription: !e!object/apply:os.system ['touch {marker}']",
    "%TAG !! tag:evil.example,2024:\n---\ndescription: !!str harmless",
    # in other places: a list item, an env value, a key, the root mapping, through an alias
    "run: {{commands: [!!python/object/apply:os.system ['touch {marker}']]}}",
    "env: {{X: !!python/object/apply:os.system ['touch {marker}']}}",
    "? !!python/object/apply:os.system ['touch {marker}']\n: value",
    "!!python/name:os.system : value",
    "--- !!python/object/apply:os.system\nversion: 1",
    "description: &x !!python/object/apply:os.system ['touch {marker}']\nname: *x",
]


@pytest.mark.parametrize("payload", TAG_PAYLOADS)
def test_tags_are_errors_and_never_executed(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "m.yaml"
    path.write_text(payload.format(marker=marker) + "\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(str(path))
    assert not marker.exists()
    messages = [p.message for p in info.value.problems]
    assert any("is not allowed" in m or "a key must be a plain value" in m for m in messages), messages
    assert all(p.line > 0 and "\n" not in str(p) for p in info.value.problems)


@pytest.mark.parametrize("command", ["validate", "compile", "plan", "stage"])
def test_tags_through_the_cli_are_one_line_and_never_executed(tmp_path: Path, command: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**BASE, "description": "x"}, sort_keys=False)
                    .replace("description: x", f"description: !!python/object/apply:os.system ['touch {marker}']"))
    proc = mcompile(command, str(path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert not marker.exists()
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "!!python/object/apply:os.system is not allowed" in proc.stderr
    assert not (tmp_path / "runs").exists()


# --- alias bombs in every field -----------------------------------------------------


def bomb(levels: int = 9, width: int = 9, *, mapping: bool, indent: str) -> str:
    """A billion-laughs structure (width**levels values) as list items or mapping entries."""
    lines, prev = [], None
    for i in range(levels):
        items = ", ".join(["lol"] * width if prev is None else [f"*{prev}"] * width)
        lead = f"L{i}: " if mapping else "- "
        lines.append(f"{indent}{lead}&l{i} [{items}]")
        prev = f"l{i}"
    return "\n".join(lines) + "\n"


BOMB_FIELDS = {
    "run.commands": ("run:\n  commands:\n", False, "    "),
    "env": ("env:\n", True, "  "),
    "cluster.sbatch_options": ("cluster:\n  sbatch_options:\n", True, "    "),
    "data.subsets": ("data:\n  subsets:\n", False, "    "),
    "run.grid.parameters": ("run:\n  grid:\n    template: echo {{ L0 }}\n    parameters:\n", True, "      "),
    "description": ("description:\n", False, "  "),
    "container.binds": ("container:\n  image: /x.sif\n  binds:\n", False, "    "),
}


def _bomb_manifest(tmp_path: Path, field: str) -> Path:
    head, mapping, indent = BOMB_FIELDS[field]
    doc = {k: v for k, v in BASE.items() if k not in {"run"} | ({"container"} if field == "container.binds" else set())}
    if not field.startswith("run."):
        doc["run"] = BASE["run"]
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + head + bomb(mapping=mapping, indent=indent))
    return path


@pytest.mark.parametrize("field", list(BOMB_FIELDS))
def test_alias_bomb_in_every_field_is_refused_quickly_in_one_line(tmp_path: Path, field: str) -> None:
    path = _bomb_manifest(tmp_path, field)
    assert path.stat().st_size < 4096
    start = time.perf_counter()
    _, found = check_file(str(path))
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"took {elapsed:.2f} s"  # a safety bound, not a benchmark
    assert len(found) == 1, found
    line = str(found[0])
    assert "\n" not in line and line.startswith(f"{path}:") and found[0].line > 0
    assert f"beyond {MAX_ALIAS_VALUES:,} values" in line and "alias" in line


def test_alias_bomb_through_the_cli_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = _bomb_manifest(tmp_path, "run.commands")
    proc = mcompile("compile", str(path), "--runs", str(tmp_path / "runs"), timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "alias bomb" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_aliased_grid_parameters_with_a_huge_product_are_refused_quickly(tmp_path: Path) -> None:
    values = ", ".join(str(i) for i in range(1000))
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "run"}, sort_keys=False) + (
        "run:\n  grid:\n    template: echo {{ a }} {{ b }} {{ c }}\n"
        f"    parameters:\n      a: &v [{values}]\n      b: *v\n      c: *v\n"
    )
    path = tmp_path / "m.yaml"
    path.write_text(text)
    start = time.perf_counter()
    found = errors_of(path)
    assert time.perf_counter() - start < 1.0
    assert [p.path for p in found] == ["run.grid.parameters"]
    assert "1,000,000,000 combinations" in found[0].message and f"{MAX_TASKS:,} tasks" in found[0].message


def test_alias_bomb_of_long_strings_is_refused_quickly(tmp_path: Path) -> None:
    long = "x" * 131072  # the largest command the schema allows
    lines = [yaml.safe_dump({k: v for k, v in BASE.items() if k != "run"}, sort_keys=False).rstrip("\n"),
             "run:", "  commands:", f"    - &s {long}", *(["    - *s"] * 1999)]
    path = tmp_path / "strings.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 300_000
    start = time.perf_counter()
    found = errors_of(path)
    assert time.perf_counter() - start < 1.0
    assert any("alias" in p.message for p in found), "a 262 MB expansion of a 150 KB file was accepted"


def test_a_million_commands_without_aliases_is_not_called_an_alias_bomb(tmp_path: Path) -> None:
    from manifest_compiler.load import parse_source

    head = yaml.safe_dump({k: v for k, v in BASE.items() if k != "run"}, sort_keys=False)
    raw = (head + "run:\n  commands: [" + ",".join(["e"] * MAX_TASKS) + "]\n").encode()
    try:
        parse_source("m.yaml", raw)
    except ManifestError as e:
        assert not any("alias" in p.message for p in e.problems), e.problems[0].message


# --- huge files and grids -------------------------------------------------------------


def _big_manifest(path: Path, size: int) -> None:
    head = yaml.safe_dump(BASE, sort_keys=False).encode()
    comment = b"# " + b"x" * 1021 + b"\n"
    with open(path, "wb") as fh:
        fh.write(head)
        fh.write(comment * ((size - len(head)) // len(comment) + 1))


@pytest.mark.parametrize("kind", ["50 MB manifest", "50 MB base through extends", "/dev/zero"])
def test_huge_manifest_is_one_clear_line_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "big.yaml"
    if kind == "50 MB manifest":
        _big_manifest(target, 50 * MiB)
        shown = str(target)
    elif kind == "50 MB base through extends":
        _big_manifest(tmp_path / "base.yaml", 50 * MiB)
        target.write_text(yaml.safe_dump({**BASE, "extends": "base.yaml"}, sort_keys=False))
        shown = str(tmp_path / "base.yaml")
    else:
        target = Path("/dev/zero")  # endless: must never be read whole
        shown = "/dev/zero"
    code, _, err, rss = run_measured([sys.executable, "-m", "manifest_compiler", "validate", str(target)], timeout=60)
    assert code == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(shown) and f"larger than {MAX_FILE_BYTES // MiB} MiB" in err
    assert rss < 200 * MiB, f"peak RSS {rss / MiB:.0f} MiB"


def _grid_manifest(tmp_path: Path, rows: int, cols: int, name: str = "big-grid") -> Path:
    doc = {**BASE, "name": name, "run": {"grid": {
        "template": "python train.py --a {{ a }} --b {{ b }}",
        "parameters": {"a": list(range(rows)), "b": list(range(cols))},
    }}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=1 << 30))
    return path


def test_hundred_thousand_task_grid_compiles_in_bounded_memory_and_constant_files(tmp_path: Path) -> None:
    small = compile_manifest(str(_grid_manifest(tmp_path, 2, 3, name="small-grid")), runs_dir=str(tmp_path / "runs"))
    small_files = sorted(str(p.relative_to(small.run.path)) for p in small.run.path.rglob("*") if p.is_file())

    path = _grid_manifest(tmp_path, 1000, 100)
    assert path.stat().st_size < 10_000
    code, out, err, rss = run_measured(
        [sys.executable, "-m", "manifest_compiler", "compile", str(path), "--runs", str(tmp_path / "runs")], timeout=120)
    assert code == 0, err
    assert "(100000 tasks)" in err
    assert rss < 300 * MiB, f"peak RSS {rss / MiB:.0f} MiB"
    run = Path(out.strip())
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == small_files  # O(1) files, whatever the number of tasks
    index = (run / "tasks" / "index").read_bytes().splitlines()
    commands = (run / "tasks" / "commands").read_bytes()
    assert len(index) == 100_001 and commands.count(b"\n") == 100_000
    last = int(index[-2])
    assert commands[last:] == b"python train.py --a 999 --b 99\n"
    assert "#SBATCH --array=0-99999" in (run / "job.sbatch").read_text()


def test_grid_above_the_task_limit_is_one_clear_line_and_writes_nothing(tmp_path: Path) -> None:
    path = _grid_manifest(tmp_path, 1001, 1000)
    found = errors_of(path)
    assert [p.path for p in found] == ["run.grid.parameters"]
    assert found[0].message == f"the grid has 1,001,000 combinations; at most {MAX_TASKS:,} tasks are supported"
    proc = mcompile("compile", str(path), "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "1,001,000 combinations" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_deep_nesting_is_refused_before_any_recursion(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False) + "description: " + "[" * 100_000 + "]" * 100_000 + "\n")
    start = time.perf_counter()
    found = errors_of(path)
    assert time.perf_counter() - start < 1.0
    assert len(found) == 1 and f"nesting deeper than {MAX_DEPTH} levels" in found[0].message


# --- names, paths, values and commands that try to break out of job.sbatch -------------

BAD_NAMES = [
    "x\n#SBATCH --time=7-00:00:00",
    "x --time=7-00:00:00",
    'x"; rm -rf ~; echo "',
    "x'; touch pwned; echo '",
    "x$(touch pwned)",
    "x`touch pwned`",
    "x;touch pwned",
    "../escape",
    "a/b",
    "-dash",
    ".hidden",
    "with space",
    "x#comment",
    "tab\there",
    "x" * 65,
    "",
]


@pytest.mark.parametrize("field", ["name", "project"])
@pytest.mark.parametrize("value", BAD_NAMES, ids=lambda v: repr(v)[:24])
def test_names_that_try_to_inject_are_refused(tmp_path: Path, field: str, value: str) -> None:
    found = errors_of(write_manifest(tmp_path, **{field: value}))
    assert [p.path for p in found] == [field], found
    assert "expected a name of letters, digits" in found[0].message


IMAGE = {"image": "$SCRATCH/containers/app.sif"}


@pytest.mark.parametrize(("over", "where"), [
    ({"cluster": {"sbatch_options": {"comment": "x\n#SBATCH --time=7-00:00:00"}}}, "cluster.sbatch_options.comment"),
    ({"cluster": {"sbatch_options": {"comment": "x\r--time=7-00:00:00"}}}, "cluster.sbatch_options.comment"),
    ({"cluster": {"sbatch_options": {"time\n#SBATCH --x": "1"}}}, "cluster.sbatch_options"),
    ({"cluster": {"sbatch_options": {"mail-type=END --time": "7-00:00:00"}}}, "cluster.sbatch_options"),
    ({"cluster": {"sbatch_options": {"tim": "7-00:00:00"}}}, "cluster.sbatch_options.tim"),  # sbatch reads --time
    ({"cluster": {"sbatch_options": {"export": "ALL,API_KEY"}}}, "cluster.sbatch_options.export"),
    ({"cluster": {"account": "x\n#SBATCH --time=1"}}, "cluster.account"),
    ({"cluster": {"account": "x --qos=high"}}, "cluster.account"),
    ({"cluster": {"partition": "gpu --qos=high"}}, "cluster.partition"),
    ({"cluster": {"constraint": 'a"b'}}, "cluster.constraint"),
    ({"cluster": {"modules": ["x; touch pwned"]}}, "cluster.modules[0]"),
    ({"resources": {"time": "10m", "mem": "1G", "gpus": 1, "gpu_type": "v100 --qos=high"}}, "resources.gpu_type"),
    ({"resources": {"time": "10m --qos=high", "mem": "1G"}}, "resources.time"),
    ({"resources": {"time": "10m", "mem": "1G --qos=high"}}, "resources.mem"),
    ({"container": {"image": "$SCRATCH/x.sif\n#SBATCH --time=1"}}, "container.image"),
    ({"container": {**IMAGE, "workdir": "/w\n#SBATCH --time=1"}}, "container.workdir"),
    ({"outputs": {"dir": "/x\n#SBATCH --time=1"}}, "outputs.dir"),
    ({"outputs": {"logs": "/x\r#SBATCH --time=1"}}, "outputs.logs"),
    ({"secrets": {"KEY": {"file": "/x\n; touch pwned"}}}, "secrets.KEY.file"),
    ({"env": {"X\n#SBATCH --time=1": "v"}}, "env"),
    ({"env": {"X=1 Y": "v"}}, "env"),
    ({"env": {"X": "nul\0byte"}}, "env.X"),
    ({"run": {"commands": ["echo nul\0byte"]}}, "run.commands[0]"),
    ({"run": {"grid": {"template": "echo {{ a }} {% for x in y %}", "parameters": {"a": [1]}}}}, "run.grid.template"),
    ({"run": {"sweep": {"id": "e/p/x; touch pwned", "agents": 1}}}, "run.sweep.id"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_single_line_fields_refuse_newlines_and_option_lookalikes(tmp_path: Path, over: dict[str, object], where: str) -> None:
    found = errors_of(write_manifest(tmp_path, **over))
    assert found, f"{over!r} was accepted"
    assert all(p.path.startswith(where) for p in found), found


ENV_VALUES = {
    "SBATCH_LINE": "a'\n#SBATCH --time=7-00:00:00\n'; touch pwned; echo '",
    "DOUBLE_QUOTES": '"; touch pwned; echo "',
    "SUBST": "$(touch pwned)`touch pwned`${HOME} $((6*7))",
    "NEWLINES": "line1\nline2\n\n",
    "BACKSLASHES": "\\ back\\slash \\",
    "PERCENT": "%s %q %n %%",
    "CONTROL": "tab\there\rcr \x1b[31mred\x1b[0m",
    "SPACES": "  leading and trailing  ",
    "UNICODE": "héllo wörld ✓ 日本語 🎉",
    "EMPTY": "",
}

COMMANDS = [
    "#SBATCH --account=evil\necho not an sbatch line",
    "\n#SBATCH --time=7-00:00:00\necho leading newline",
    "echo '; touch pwned; echo '",
    'echo "; touch pwned; echo "',
    "echo $(touch pwned) `touch pwned` trailing backslash \\",
    "echo a,b,c --opt=x,y,z 'ends with newlines'\n\n\n",
    "printf '%s\\n' \"${SLURM_JOB_ID:-x}\" %q %n",
]

# Paths whose every byte must reach bash literally; only $VAR/${VAR} and a leading ~ expand.
P1 = 'x"; touch pwned; echo "'
P2 = "d$(touch pwned)`touch pwned`'q' ${SCRATCH-$(touch pwned)} $((6*7)) !!"
P3 = "o \\\" \\"  # a backslash before a quote, and a trailing backslash

FAKE_RUNTIME = """#!/bin/bash
# stand-in apptainer: records its argv (NUL-separated) and the --env-file it was given
printf '%s\\0' "$@" >"$FAKE_RUNTIME_LOG/argv"
while [ $# -gt 0 ]; do
  if [ "$1" = --env-file ]; then cp -- "$2" "$FAKE_RUNTIME_LOG/env"; fi
  shift
done
"""


def _read_env_file(path: Path) -> dict[str, str]:
    """The NAME=VALUE lines the job wrote with printf %q, read back by bash."""
    names = [line.split("=", 1)[0] for line in path.read_text().splitlines() if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", line)]
    script = f"set -e; source {shlex.quote(str(path))}; for n in {' '.join(names)}; do printf '%s\\0%s\\0' \"$n\" \"${{!n}}\"; done"
    out = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    parts = out.decode().split("\0")[:-1]
    return dict(zip(parts[0::2], parts[1::2], strict=True))


def test_env_values_commands_and_paths_are_carried_byte_exact_and_inject_nothing(tmp_path: Path) -> None:
    scratch, local, home, sandbox, bin_dir, log = (tmp_path / d for d in ("scratch", "local", "home", "cwd", "bin", "log"))
    for d in (scratch, local, home, sandbox, bin_dir, log):
        d.mkdir()
    (home / "canary").write_text("still here")
    doc = {
        "container": {
            "image": f"$SCRATCH/{P1}.sif",
            "workdir": '/work/x"; touch pwned; echo "',
            "binds": [{"source": f"$SCRATCH/{P1}", "target": f"/opt/{P1}", "mode": "ro"}],
        },
        "cluster": {"local_tmp": f"$SLURM_TMPDIR/{P1}", "sbatch_options": {"mail-type": "END"}},
        "data": {"root": f"$SCRATCH/{P2}", "subsets": ["set"], "stage": "bind"},
        "outputs": {"dir": f"$SCRATCH/out/{P3}", "logs": f"$SCRATCH/logs/{P1}"},
        "env": ENV_VALUES,
        "secrets": {"API_KEY": {"file": f"~/{P1}.key"}},
        "run": {"commands": COMMANDS},
    }
    run = compile_manifest(str(write_manifest(tmp_path, **doc)), runs_dir=str(tmp_path / "runs")).run.path
    script = (run / "job.sbatch").read_text()

    # exactly the intended directives, and sbatch reads each as one argument
    expected = [*BASE_DIRECTIVES[:-1], f"--array=0-{len(COMMANDS) - 1}", "--open-mode=append", "--mail-type=END"]
    header = header_directives(script)
    assert header == [f"#SBATCH {d}" for d in expected]
    assert header_arguments(script) == expected
    subprocess.run(["bash", "-n", str(run / "job.sbatch")], check=True)

    # every command byte for byte in tasks/, none of them in job.sbatch
    commands = (run / "tasks" / "commands").read_bytes()
    offsets = [int(x) for x in (run / "tasks" / "index").read_bytes().split()]
    assert [commands[a:b - 1].decode() for a, b in zip(offsets, offsets[1:], strict=False)] == COMMANDS
    assert "#SBATCH --account=evil" not in script and "echo leading newline" not in script

    # run every task with bash: the stand-in runtime records what it was given
    (scratch / f"{P1}.sif").write_text("image")
    (scratch / P1).mkdir()
    (scratch / P2 / "set").mkdir(parents=True)
    (home / f"{P1}.key").write_text("s3cret\n")
    runtime = bin_dir / "apptainer"
    runtime.write_text(FAKE_RUNTIME)
    runtime.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "SCRATCH": str(scratch), "SLURM_TMPDIR": str(local),
           "FAKE_RUNTIME_LOG": str(log)}
    for task, command in enumerate(COMMANDS):
        proc = run_task(run, task, job=77, env=env, cwd=sandbox)
        assert proc.returncode == 0, proc.stderr.decode()
        argv = (log / "argv").read_bytes().split(b"\0")[:-1]
        assert argv[-1] == command.encode()
        local_dir = f"{local}/{P1}/mcompile-77_{task}"
        assert argv[-2] == f"{local_dir}/image.sif".encode()
        binds = [argv[i + 1].decode() for i, a in enumerate(argv) if a == b"--bind"]
        assert f"{scratch}/out/{P3}/77_{task}:/scratch_storage" in binds
        assert f"{scratch}/{P1}:/opt/{P1}:ro" in binds
        assert f"{scratch}/{P2}/set:/data/set:ro" in binds
        assert f"{local_dir}/home:{home}" in binds
        assert argv[argv.index(b"--pwd") + 1] == b'/work/x"; touch pwned; echo "'
        values = _read_env_file(log / "env")
        assert {k: values[k] for k in ENV_VALUES} == ENV_VALUES
        assert values["API_KEY"] == "s3cret"
        assert (scratch / "out" / P3 / f"77_{task}").is_dir()
    assert not list(tmp_path.rglob("pwned")), "an injected command ran"
    assert (home / "canary").read_text() == "still here"
    assert list(local.joinpath(P1).iterdir()) == []  # node-local folders removed


def test_no_line_of_job_sbatch_outside_the_header_starts_with_sbatch(tmp_path: Path) -> None:
    run = compile_manifest(str(write_manifest(tmp_path, env=ENV_VALUES, run={"commands": COMMANDS})),
                           runs_dir=str(tmp_path / "runs")).run.path
    script = (run / "job.sbatch").read_text()
    everywhere = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert everywhere == header_directives(script)


@pytest.mark.parametrize(("option", "value"), [
    ("comment", "x --time=7-00:00:00 --account=someone-else"),
    ("comment", "x # --time=7-00:00:00"),
    ("comment", 'unbalanced " quote'),
    ("mail-user", "me@example.org\t--qos=high"),
])
def test_sbatch_option_values_stay_one_sbatch_argument(tmp_path: Path, option: str, value: str) -> None:
    path = write_manifest(tmp_path, cluster={"sbatch_options": {option: value}})
    if errors_of(path):
        return  # refused at validate: also a fix
    _, files, _, _ = build_job(str(path))
    assert header_arguments(files["job.sbatch"].decode()) == [*BASE_DIRECTIVES, f"--{option}={value}"]


@pytest.mark.parametrize("logs", ["/shared/my logs", "/logs --qos=high --comment=", "/logs#1"])
def test_log_path_in_the_script_stays_one_sbatch_argument(tmp_path: Path, logs: str) -> None:
    path = write_manifest(tmp_path, outputs={"logs": logs})
    if errors_of(path):
        return  # refused at validate: also a fix
    _, files, _, _ = build_job(str(path))
    args = header_arguments(files["job.sbatch"].decode())
    assert f"--output={logs}/hostile_%j_0.out" in args
    assert len(args) == len(BASE_DIRECTIVES) + 1


@pytest.mark.parametrize(("field", "variable"), [
    ("container.image", "image_source"),
    ("cluster.local_tmp", "MCOMPILE_LOCAL"),
    ("secrets", "secret_file"),
])
@pytest.mark.parametrize("payload", [
    '$SCRATCH/x"; rm -rf ~; echo "',
    "$SCRATCH/x'; rm -rf ~; echo '",
    "$SCRATCH/$(rm -rf ~)/`rm -rf ~`/${SCRATCH:-$(rm -rf ~)}/$((1/0))",
    "~/a\\\"b\\",
    "${SCRATCH}x$SCRATCH-$SCRATCH_not_set_but_named",
])
def test_a_path_stays_one_double_quoted_word(tmp_path: Path, field: str, variable: str, payload: str) -> None:
    path_value = payload + (".sif" if field == "container.image" else "")
    if field == "container.image":
        over: dict[str, object] = {"container": {"image": path_value}}
    elif field == "cluster.local_tmp":
        over = {"cluster": {"local_tmp": path_value}}
    else:
        over = {"secrets": {"KEY": {"file": path_value}}}
    if field == "cluster.local_tmp" and ("," in path_value or ":" in path_value):
        # the job binds folders under local_tmp: apptainer would split the bind spec there
        assert any("cannot contain ',' or ':'" in p.message for p in errors_of(write_manifest(tmp_path, **over)))
        return
    _, files, _, _ = build_job(str(write_manifest(tmp_path, **over)))
    script = files["job.sbatch"].decode()
    line = next(line for line in (ln.strip().removeprefix("local ") for ln in script.splitlines()) if line.startswith(f"{variable}="))
    line = line.removesuffix(" secret_value")  # `local secret_file=PATH secret_value`
    word = line[len(variable) + 1:]
    assert word.startswith('"') and word.endswith('"') and len(shlex.split(word)) == 1
    home = tmp_path / "home"
    home.mkdir()
    (home / "canary").write_text("still here")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SCRATCH": "/s", "SLURM_TMPDIR": "/l", "SCRATCH_not_set_but_named": "N",
           "MCOMPILE_JOB": "7", "MCOMPILE_TASK": "0"}
    proc = subprocess.run(["bash", "--norc", "-uc", f"{line}\nprintf '%s' \"${variable}\""], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=True)
    expected = path_value.replace("${SCRATCH}", "/s").replace("$SCRATCH_not_set_but_named", "N").replace("$SCRATCH", "/s")
    if expected.startswith("~/"):
        expected = str(home) + expected[1:]
    if field == "cluster.local_tmp":
        expected += "/mcompile-7_0"
    assert proc.stdout == expected
    assert (home / "canary").read_text() == "still here"


# --- data subsets and binds that try to escape ---------------------------------------


@pytest.mark.parametrize("subset", ["..", "../other-project", "a/../../etc", "./a", "a/.", "/etc", "/", "a//b", "a/",
                                    "~/x", "$HOME/x", "a b", "a\nb", ""])
def test_subsets_that_escape_the_data_root_are_refused(tmp_path: Path, subset: str) -> None:
    found = errors_of(write_manifest(tmp_path, data={"subsets": [subset]}))
    assert [p.path for p in found] == ["data.subsets[0]"], found


@pytest.mark.parametrize("target", ["/data/../etc", "/opt/../etc", "/opt/./x", "/opt//x", "/opt/x/", "relative/x",
                                    "../x", "/etc", "/", "/proc/self", "/usr", "/data", "/data/set", "/scratch_storage",
                                    "/x,y", "/x:y", "/$HOME"])
def test_bind_targets_that_escape_or_collide_are_refused(tmp_path: Path, target: str) -> None:
    found = errors_of(write_manifest(tmp_path, container={"image": "/x.sif", "binds": [{"source": "/host", "target": target}]}))
    assert [p.path for p in found] == ["container.binds[0].target"], found


@pytest.mark.parametrize("source", ["/host,/etc", "/host:/etc", "/host:/etc:rw"])
def test_bind_sources_that_would_split_the_bind_spec_are_refused(tmp_path: Path, source: str) -> None:
    found = errors_of(write_manifest(tmp_path, container={"image": "/x.sif", "binds": [{"source": source, "target": "/opt/x"}]}))
    assert [p.path for p in found] == ["container.binds[0].source"], found


@pytest.mark.parametrize(("over", "where"), [
    ({"outputs": {"dir": "$SCRATCH/run:1"}}, "outputs.dir"),
    ({"cluster": {"local_tmp": "/local/a,b"}}, "cluster.local_tmp"),
    ({"data": {"root": "/data:x", "subsets": ["s"], "stage": "bind"}}, "data.root"),
])
def test_other_bind_sources_with_comma_or_colon_are_refused_at_validate(tmp_path: Path, over: dict[str, object],
                                                                        where: str) -> None:
    found = errors_of(write_manifest(tmp_path, **over))
    assert [p.path for p in found] == [where], found


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SCRATCH with an image and a data root holding one real subset; SCRATCH set in os.environ."""
    scratch = tmp_path / "scratch"
    (scratch / "containers").mkdir(parents=True)
    (scratch / "containers" / "app.sif").write_text("image")
    real = scratch / "proj" / "data" / "real"
    (real / "sub").mkdir(parents=True)
    (real / "a.txt").write_text("a\n")
    (real / "sub" / "b.txt").write_text("b\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "private.txt").write_text("not data\n")
    monkeypatch.setenv("SCRATCH", str(scratch))
    return scratch


@pytest.mark.parametrize(("link", "subset"), [
    ("/etc", "evil"),
    ("OUTSIDE", "evil"),
    ("../../../outside", "evil"),
    ("../..", "evil"),
    ("OUTSIDE", "evil/sub-of-link"),
])
def test_symlinked_subset_leading_outside_the_data_root_is_refused_at_preflight(
        tmp_path: Path, cluster: Path, link: str, subset: str) -> None:
    root = cluster / "proj" / "data"
    outside = tmp_path / "outside"
    (outside / "sub-of-link").mkdir()
    (root / "evil").symlink_to(str(outside) if link == "OUTSIDE" else link)
    with pytest.raises(OperationError, match="leads outside the data root") as info:
        check_subset(root, subset)
    assert f"data subset {subset}:" in str(info.value)
    for stage in ("archive", "copy", "bind"):
        manifest = write_manifest(tmp_path, data={"subsets": ["real", subset], "stage": stage})
        resolved, _, _ = resolve_file(str(manifest))
        with pytest.raises(OperationError, match="leads outside the data root"):
            preflight(tmp_path, resolved)
    assert not (cluster / "proj" / ".mcompile").exists(), "nothing is archived before the check"


def test_symlinked_subset_inside_the_data_root_is_fine(tmp_path: Path, cluster: Path) -> None:
    root = cluster / "proj" / "data"
    (root / "inner").symlink_to("real")
    (root / "absolute").symlink_to(root / "real" / "sub")
    assert check_subset(root, "inner") == root / "inner"
    assert check_subset(root, "absolute") == root / "absolute"
    resolved, _, _ = resolve_file(str(write_manifest(tmp_path, data={"subsets": ["inner", "absolute"], "stage": "bind"})))
    ready = preflight(tmp_path, resolved)
    options, warnings = [*(a.export for a in ready.archives), *ready.log_options(ChunkPlan(0, (0,)))], ready.warnings
    assert warnings == [] and options == [f"--output={cluster}/proj/hpc_outputs/hostile_%j_0.out"]


def test_archive_of_a_symlinked_subset_inside_the_root_holds_its_files(tmp_path: Path, cluster: Path) -> None:
    root = cluster / "proj" / "data"
    (root / "inner").symlink_to("real")
    resolved, _, _ = resolve_file(str(write_manifest(tmp_path, data={"subsets": ["inner"], "stage": "archive"})))
    [archive] = stage_archives(resolved, progress=None)
    names = subprocess.run(["tar", "-tf", str(archive.path)], capture_output=True, text=True, check=True).stdout.split()
    assert "inner/a.txt" in names and "inner/sub/b.txt" in names, names


# --- pre-flight reads a path as the job does ------------------------------------------


@pytest.mark.parametrize("path", [
    "~", "~/a b/c.sif", "~root/x", "~~/x", "$SCRATCH/x", "${SCRATCH}x/$SCRATCH", "${SCRATCH:-/t}/x", "$1/x",
    "$(pwd)/x", "`pwd`/x", "/a/$NOPE_UNSET_PART_IS_REFUSED", "/it's \\ \"quoted\" *?[x]", "rel/a", "./rel",
])
def test_preflight_expands_a_path_exactly_as_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """What `expand` gives is what bash makes of the job's word for the path (render.shell_path),
    run where the job runs: a path still relative is the run directory's, not this process's."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    monkeypatch.chdir(tmp_path)
    if "NOPE" in path:
        with pytest.raises(OperationError, match="NOPE_UNSET_PART_IS_REFUSED is not set on this host"):
            expand(path, cwd=run_dir)
        return
    job = subprocess.run(["bash", "-c", f'cd "$1" && printf %s {shell_path(path)}', "bash", str(run_dir)],
                         capture_output=True, text=True, check=True).stdout
    assert expand(path, cwd=run_dir) == (job if job.startswith("/") else f"{run_dir}/{job}")


def test_preflight_checks_a_relative_image_in_the_run_directory(tmp_path: Path, cluster: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A run compiled before relative paths were refused: the job looks for its image in the run
    directory, so pre-flight does too (the submitting shell's folder holding one proves nothing)."""
    resolved, _, _ = resolve_file(str(write_manifest(tmp_path)))
    resolved["container"]["image"] = "containers/app.sif"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(cluster)  # holds containers/app.sif
    with pytest.raises(OperationError, match=f"container image not found: {run_dir}/containers/app.sif"):
        preflight(run_dir, resolved)
    (run_dir / "containers").mkdir()
    (run_dir / "containers" / "app.sif").write_text("image")
    assert preflight(run_dir, resolved).warnings == []


# --- secret files readable by others -------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secret_file_readable_by_others_warns_and_strict_refuses(tmp_path: Path, cluster: Path, mode: int) -> None:
    secret = cluster / "key.txt"
    secret.write_text("s3cret\n")
    secret.chmod(mode)
    resolved, _, _ = resolve_file(str(write_manifest(tmp_path, secrets={"API_KEY": {"file": "$SCRATCH/key.txt"}})))
    warnings = preflight(tmp_path, resolved).warnings
    assert warnings == [f"secret API_KEY: {secret} is readable by others (mode {mode:04o}); chmod 600 it"]
    with pytest.raises(OperationError, match="readable by others.*refused with --strict; nothing was queued"):
        preflight(tmp_path, resolved, strict=True)
    assert "s3cret" not in " ".join(warnings)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_secret_file_gives_no_warning(tmp_path: Path, cluster: Path, mode: int) -> None:
    secret = cluster / "key.txt"
    secret.write_text("s3cret\n")
    secret.chmod(mode)
    resolved, _, _ = resolve_file(str(write_manifest(tmp_path, secrets={"API_KEY": {"file": "$SCRATCH/key.txt"}})))
    assert preflight(tmp_path, resolved).warnings == []
    assert preflight(tmp_path, resolved, strict=True).warnings == []
    assert stat.S_IMODE(secret.stat().st_mode) == mode  # preflight never changes it
