"""Validate's two routes through the schema give one verdict.

A valid manifest is proven valid by jsonschema-rs (`schema.quick_validator`); only what it
refuses goes through jsonschema (`schema.validator`), which gives the located messages.
This holds only if jsonschema-rs never accepts a document that jsonschema refuses. These
tests compare the routes on every example and corpus case, and on documents generated from
the schema and then broken at a random place with values chosen where the two libraries
could read differently: integral floats (4.0 is an integer to JSON Schema, not to us),
integers past 2**53, strings ending in a newline (Python's `$` matches before it),
non-ASCII text, empty containers, and values of every other type.
"""

from __future__ import annotations

import copy
import json
import typing as t
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import manifest_compiler.schema as schema_module
from manifest_compiler import validate
from manifest_compiler.load import load_manifest, parse_source
from manifest_compiler.pipeline import check_file

hypothesis_jsonschema = pytest.importorskip("hypothesis_jsonschema")
from test_properties import DOCUMENTS, all_paths  # noqa: E402 - after the importorskip

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))
CASES = sorted((ROOT / "tests" / "cases").glob("*/*/manifest.yaml"))

SETTINGS = settings(deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def slow_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every document through jsonschema, as before jsonschema-rs."""
    monkeypatch.setattr(schema_module, "quick_validator", lambda version: lambda document: False)


def jsonschema_valid(doc: object) -> bool:
    return not any(True for _ in schema_module.validator(1).iter_errors(doc))


def quick_valid(doc: object) -> bool:
    """What the quick route accepts: plain JSON data that jsonschema-rs finds valid."""
    plain = validate._json_plain(doc)
    return plain is not validate._NOT_PLAIN and schema_module.quick_validator(1)(plain)


@pytest.mark.parametrize("path", MANIFESTS + CASES, ids=lambda p: str(p.relative_to(ROOT)))
def test_routes_report_the_same_problems(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    real = schema_module.quick_validator

    def recording(version: int) -> t.Callable[[object], bool]:
        def check(document: object) -> bool:
            taken.append(real(version)(document))
            return taken[-1]
        return check

    monkeypatch.setattr(schema_module, "quick_validator", recording)
    _, quick = check_file(str(path))
    slow_route(monkeypatch)
    _, slow = check_file(str(path))
    assert quick == slow
    if "valid" in path.parts and "invalid" not in path.parts or path in MANIFESTS:
        loaded = load_manifest(str(path))
        if validate._json_plain(loaded.data) is not validate._NOT_PLAIN:
            assert taken == [True], "a valid manifest of plain data must not need jsonschema"


def test_an_integral_float_is_not_an_integer() -> None:
    """jsonschema-rs alone would accept `cpus_per_task: 4.0` (JSON Schema's integer); we do not."""
    raw = b"version: 1\nname: n\nproject: p\ncontainer: {image: /x.sif}\nresources: {time: 1h, mem: 1G, cpus_per_task: 4.0}\nrun: {commands: [x]}\n"
    source = parse_source("m.yaml", raw)
    assert schema_module.quick_validator(1)(json.loads(json.dumps(source.data)))
    assert validate._json_plain(source.data) is validate._NOT_PLAIN
    problems = validate.validate_manifest(validate.LoadedManifest("m.yaml", source.data, [source]))
    assert [p.path for p in problems] == ["resources.cpus_per_task"], problems


HOSTILE = st.one_of(
    st.sampled_from([4.0, 0.0, -1.0, 1e300, 2**53, 2**53 + 1, -(2**60), 2**64, 0, -1, True, False, None, "", "\n",
                     "x.sif\n", "/a.sif\n", "/a/b\n", "1h\n", "abc\n", "é", "/ü.sif", "1:30", "1:30:00", "64G", "[]",
                     [], {}, [1.0], {"a": 1.0}, [None], {"": ""}]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.text(max_size=8).map(lambda s: s + "\n"),
    st.lists(st.text(max_size=6), max_size=3),
)


@pytest.mark.slow
@settings(SETTINGS, max_examples=200)
@given(doc=DOCUMENTS, data=st.data())
def test_quick_route_accepts_only_what_jsonschema_accepts(doc: dict[str, t.Any], data: st.DataObject) -> None:
    if validate._json_plain(doc) is not validate._NOT_PLAIN:  # else (say `[0.0]`) jsonschema decides
        assert quick_valid(doc) == jsonschema_valid(doc), "generated from the schema: both must accept it"
    broken = copy.deepcopy(doc)
    paths = all_paths(broken)
    if paths:
        where = data.draw(st.sampled_from(paths))
        node: t.Any = broken
        for part in where[:-1]:
            node = node[part]
        node[where[-1]] = data.draw(HOSTILE)
    if quick_valid(broken):
        assert jsonschema_valid(broken), yaml.safe_dump(broken)
