"""The bad-input corpus and the valid edge cases, one folder per case.

tests/cases/invalid/<name>/
    manifest.yaml   the manifest (extra YAML files beside it may be extended;
                    only manifest.yaml is validated)
    expected.txt    exactly what `mcompile validate manifest.yaml` prints to stderr,
                    run in that folder with NO_COLOR=1 (hand-checked, no regeneration)
    case.json       optional:
                      exit_code    expected exit status (default 1; 0 = warnings only)
                      subprocess   run as `python -m manifest_compiler` in a child
                                   process instead of in-process (default false)
                      max_seconds  upper bound on the wall time of the check
                      xfail        "bug: ..." - the case exposes a known bug in
                                   manifest_compiler; expected.txt holds the correct output
                      note         free text
tests/cases/valid/<name>/manifest.yaml   must validate: exit 0, nothing printed.

Adding a case means adding a folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest

from manifest_compiler.cli import main

CASES = Path(__file__).resolve().parent / "cases"
KNOWN_OPTIONS = {"exit_code", "subprocess", "max_seconds", "xfail", "note"}
STACK_BYTES = 8 * 1024 * 1024  # the usual Linux default, so a stack overflow is reproducible


def _case_dirs(kind: str) -> list[Path]:
    folder = CASES / kind
    return sorted(p for p in folder.iterdir() if (p / "manifest.yaml").is_file())


def _options(case: Path) -> dict[str, object]:
    path = case / "case.json"
    options = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    unknown = set(options) - KNOWN_OPTIONS
    assert not unknown, f"{path}: unknown options {sorted(unknown)}"
    return options


def _params(kind: str) -> list[t.Any]:
    params: list[t.Any] = []
    for case in _case_dirs(kind):
        options = _options(case)
        marks = []
        if options.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=str(options["xfail"])))
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# Runs the CLI with the usual 8 MiB stack (so a C stack overflow reproduces whatever the
# caller's limit), through exec so that no preexec_fn (fork with threads) is needed.
_LAUNCHER = f"""\
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
limit = {STACK_BYTES} if hard == resource.RLIM_INFINITY else min({STACK_BYTES}, hard)
resource.setrlimit(resource.RLIMIT_STACK, (limit, hard))
os.execv(sys.executable, [sys.executable, "-m", "manifest_compiler", *sys.argv[1:]])
"""


def run_subprocess(case: Path) -> tuple[int, str, str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("MCOMPILE_RUNS", None)
    if os.name == "posix":
        argv = [sys.executable, "-c", _LAUNCHER, "validate", "manifest.yaml"]
    else:  # pragma: no cover
        argv = [sys.executable, "-m", "manifest_compiler", "validate", "manifest.yaml"]
    proc = subprocess.run(argv, cwd=case, env=env, capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def run_in_process(case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.chdir(case)
    monkeypatch.setenv("NO_COLOR", "1")
    capsys.readouterr()
    code = main(["validate", "manifest.yaml"])
    out, err = capsys.readouterr()
    return code, out, err


def run_case(case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    if _options(case).get("subprocess"):
        code, out, err = run_subprocess(case)
    else:
        code, out, err = run_in_process(case, capsys, monkeypatch)
    return code, out, err, time.perf_counter() - start


@pytest.mark.parametrize("case", _params("invalid"))
def test_invalid_case(case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    options = _options(case)
    expected = (case / "expected.txt").read_text(encoding="utf-8")
    expected_code = int(options.get("exit_code", 1))  # type: ignore[call-overload]
    assert expected, f"{case.name}: expected.txt is empty; an invalid case must print something"
    # the exit code recorded in case.json agrees with the levels in expected.txt
    only_warnings = all(": warning: " in line for line in expected.splitlines())
    assert expected_code == (0 if only_warnings else 1), f"{case.name}: exit_code does not match expected.txt"

    before = _listing(case)
    code, out, err, seconds = run_case(case, capsys, monkeypatch)

    assert "Traceback" not in err
    assert "internal error" not in err
    assert err == expected
    assert code == expected_code
    assert out == ""
    assert _listing(case) == before, "validate must not create or change any file"
    if "max_seconds" in options:
        assert seconds < float(options["max_seconds"]), f"took {seconds:.2f}s"  # type: ignore[arg-type]


@pytest.mark.parametrize("case", _params("valid"))
def test_valid_case(case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err, _ = run_case(case, capsys, monkeypatch)
    assert err == ""
    assert out == ""
    assert code == 0


def test_all_valid_cases_in_one_process() -> None:
    """The console path end to end: every valid case in one `python -m` call, from another folder."""
    files = [str(case.relative_to(CASES) / "manifest.yaml") for case in _case_dirs("valid")]
    proc = subprocess.run(
        [sys.executable, "-m", "manifest_compiler", "validate", *files],
        cwd=CASES,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stderr == ""
    assert proc.returncode == 0


def test_corpus_size() -> None:
    """The corpus covers the rules: keep it from shrinking by accident."""
    assert len(_case_dirs("invalid")) >= 45
    assert len(_case_dirs("valid")) >= 5
    for case in _case_dirs("invalid"):
        assert (case / "expected.txt").is_file(), f"{case.name}: no expected.txt"


def test_python_tag_never_executes(tmp_path: Path) -> None:
    """A `!!python/object/apply` payload is refused and nothing is run, in a fresh process."""
    marker = tmp_path / "pwned"
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        (CASES / "valid" / "time-colon-string" / "manifest.yaml").read_text()
        + f'description: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "manifest_compiler", "validate", "manifest.yaml"],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "tag !!python/object/apply:os.system is not allowed" in proc.stderr
    assert not marker.exists()
