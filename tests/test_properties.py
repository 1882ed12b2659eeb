"""Property-based tests of loading and validation: any input gives problems or passes, never a crash.

(a) Documents generated from the JSON Schema with `hypothesis_jsonschema.from_schema`
    (it supports this draft 2020-12 schema; the generation copy only lowers the size
    bounds and merges the image's two patterns into one, so examples come fast), written
    as YAML (`yaml.safe_dump`) and as JSON (a YAML 1.2 subset, which must load back
    exactly).
(b) Random mutations of every example in manifests/: a key deleted, a value of another
    type, a key renamed with a typo, garbage bytes inserted, the file truncated, a line
    duplicated.

Every problem must be well formed: a known file, line >= 0 and within the file,
a column when there is a line, a non-empty one-line message. Deterministic: derandomize.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import typing as t
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest_compiler.cli import main
from manifest_compiler.errors import Problem
from manifest_compiler.load import parse_source
from manifest_compiler.pipeline import check_file

hypothesis_jsonschema = pytest.importorskip("hypothesis_jsonschema")

# When hypothesis reports a failure it formats the example with black, which touches a
# deprecated mypy_extensions name; with filterwarnings=error that would hide the report.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")]

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "experiment.v1.schema.json").read_text(encoding="utf-8"))
EXAMPLES = sorted((ROOT / "manifests").glob("*.yaml"))

SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def generation_schema(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """The schema with small size bounds, for fast generation. Same keys, types and patterns."""

    def shrink(node: t.Any) -> t.Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key in ("maxItems", "maxProperties") and isinstance(value, int):
                    value = min(value, 4)
                elif key == "maxLength":
                    value = min(value, 40)
                elif key in ("description", "title", "patternErrorMessage", "errorMessage") or key.startswith("x-"):
                    continue
                out[key] = shrink(value)
            return out
        if isinstance(node, list):
            return [shrink(v) for v in node]
        return node

    small: dict[str, t.Any] = shrink(copy.deepcopy(schema))
    image = small["properties"]["container"]["properties"]["image"]
    # allOf [path, ends in .sif]: hypothesis-jsonschema cannot intersect two patterns and
    # filters instead, which is slow; one pattern for the same strings is fast.
    assert image == {"allOf": [{"$ref": "#/$defs/path"}, {"pattern": "\\.sif$"}]}, "image schema changed"
    assert small["$defs"]["path"]["pattern"] == "^(?:(?:/|~/|\\$[A-Za-z_]|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\})[^\\n\\r\\u0000]*|~)$"
    small["properties"]["container"]["properties"]["image"] = {
        "type": "string", "minLength": 5, "maxLength": 40,
        "pattern": "^(?:/|~/|\\$[A-Za-z_]|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\})[^\\n\\r\\u0000]*\\.sif$",
    }
    return small


DOCUMENTS = hypothesis_jsonschema.from_schema(generation_schema(SCHEMA))


def line_count(raw: bytes) -> int:
    return raw.count(b"\n") + 1


def assert_well_formed(problems: list[Problem], files: dict[str, bytes]) -> None:
    """`files`: path as reported -> bytes, for every file the check may have read."""
    for p in problems:
        assert isinstance(p, Problem)
        assert p.level in ("error", "warning")
        assert p.message.strip(), p
        assert "\n" not in p.message and "\r" not in p.message, p
        assert "Traceback" not in p.message
        assert p.line >= 0 and p.col >= 0, p
        if p.line == 0:
            assert p.col == 0, p
            continue
        assert p.col >= 1, p
        if p.file in files:
            raw = files[p.file]
            last = line_count(raw)
            assert p.line <= last, (p, last)
        else:  # an extends target that does not exist cannot be located inside
            pytest.fail(f"problem located in a file that was not read: {p}")


def run_cli(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", str(path)])
    return code, err.getvalue()


def check(path: Path, files: dict[str, bytes]) -> list[Problem]:
    loaded, problems = check_file(str(path))  # must never raise
    assert_well_formed(problems, files)
    errors = [p for p in problems if p.level == "error"]
    assert (loaded is None) <= bool(errors), "a file that did not load must have an error"
    code, err = run_cli(path)
    assert "Traceback" not in err
    assert "internal error" not in err
    assert code == (1 if errors else 0)
    assert len(err.splitlines()) == len(problems), "one line per problem"
    return problems


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("properties")
    for example in [*EXAMPLES, *(ROOT / "manifests").glob("*.txt")]:  # and the commands files they name
        shutil.copy(example, folder / example.name)
    return folder


# --- (a) documents generated from the schema ---------------------------------------------


def _drop_extends(doc: dict[str, t.Any]) -> dict[str, t.Any]:
    doc = dict(doc)
    doc.pop("extends", None)  # a generated file name would only give "cannot read"
    return doc


@settings(SETTINGS, max_examples=100)
@given(doc=DOCUMENTS)
def test_schema_documents_as_yaml(workdir: Path, doc: dict[str, t.Any]) -> None:
    doc = _drop_extends(doc)
    path = workdir / "generated.yaml"
    raw = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")
    path.write_bytes(raw)
    check(path, {str(path): raw})


# Characters JSON may hold raw in a string but libyaml (a YAML 1.1 reader) refuses or reads
# as a line break: C1 controls, NEL, LS, PS, BOM and the non-characters. Escaped, they are fine.
_YAML_UNSAFE = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF]}


def json_text(doc: object) -> str:
    """JSON (a YAML 1.2 document) that libyaml reads: non-ASCII kept, unsafe characters escaped."""
    return json.dumps(doc, ensure_ascii=False, indent=1).translate(_YAML_UNSAFE)


@settings(SETTINGS, max_examples=60)
@given(doc=DOCUMENTS)
def test_schema_documents_as_json_load_exactly(workdir: Path, doc: dict[str, t.Any]) -> None:
    """JSON is YAML 1.2: the loader must give back exactly the document, types included."""
    doc = _drop_extends(doc)
    path = workdir / "generated.json.yaml"
    raw = json_text(doc).encode("utf-8")
    path.write_bytes(raw)
    data = parse_source(str(path), raw).data
    assert data == doc
    assert json.dumps(data, sort_keys=True) == json.dumps(doc, sort_keys=True)  # bool stays bool, int stays int
    check(path, {str(path): raw})


# --- (b) mutations of the examples --------------------------------------------------------


def plain(value: t.Any) -> t.Any:
    """Loader data -> plain Python types that yaml.safe_dump can write."""
    return json.loads(json.dumps(value))


def all_paths(node: t.Any, prefix: tuple[t.Any, ...] = ()) -> list[tuple[t.Any, ...]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += all_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((*prefix, i))
            out += all_paths(value, (*prefix, i))
    return out


def parent_of(doc: t.Any, path: tuple[t.Any, ...]) -> t.Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["yes", "on", "1:30:00", "1e-3", "0x10", "2024-01-01", "~", "/", "/proc", "a/../b", "{{ x }}",
                     "{% for %}", "$SCRATCH", "32GB", "0G", "-1", "*alias", "&anchor", "!!python/none", ".inf"]),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=0, max_value=3), max_size=2),
)


def typo(draw: st.DrawFn, name: str) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz_-."
    op = draw(st.sampled_from(["insert", "delete", "swap", "replace"]))
    i = draw(st.integers(min_value=0, max_value=max(len(name) - 1, 0)))
    if op == "insert" or not name:
        return name[:i] + draw(st.sampled_from(letters)) + name[i:]
    if op == "delete":
        return name[:i] + name[i + 1:]
    if op == "swap" and i + 1 < len(name):
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    return name[:i] + draw(st.sampled_from(letters)) + name[i + 1:]


@st.composite
def data_mutation(draw: st.DrawFn) -> tuple[Path, bytes]:
    example = draw(st.sampled_from(EXAMPLES))
    doc = plain(parse_source(str(example), example.read_bytes()).data)
    paths = all_paths(doc)
    kind = draw(st.sampled_from(["delete", "retype", "rename", "retype-top"]))
    if kind == "retype-top":
        key = draw(st.sampled_from(sorted(doc)))
        doc[key] = draw(ANY_VALUE)
    else:
        path = draw(st.sampled_from(paths))
        parent = parent_of(doc, path)
        last = path[-1]
        if kind == "delete":
            del parent[last]
        elif kind == "retype":
            parent[last] = draw(ANY_VALUE)
        elif isinstance(last, str):  # rename a key, keeping its place
            new = typo(draw, last)
            items = [(new if k == last else k, v) for k, v in parent.items()]
            parent.clear()
            parent.update(items)
        else:
            parent[last] = draw(ANY_VALUE)
    return example, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")


TOKENS = [b"*", b"&a ", b"!!", b"!!python/object/apply:os.system ", b": ", b"- ", b"\t", b"---\n", b"{", b"[", b"]",
          b"\"", b"'", b"\xff", b"\x00", b"<<: ", b"\xef\xbb\xbf", b"\r", b"#", b"|\n", b">-\n", b"? ", b"%YAML 1.1\n",
          b"\\", b"\xe2\x80\xa8", b"\xc3", b"..."]


@st.composite
def byte_mutation(draw: st.DrawFn) -> tuple[Path, bytes]:
    example = draw(st.sampled_from(EXAMPLES))
    raw = example.read_bytes()
    kind = draw(st.sampled_from(["insert", "truncate", "delete-range", "duplicate-line", "token"]))
    at = draw(st.integers(min_value=0, max_value=len(raw)))
    if kind == "insert":
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=16)) + raw[at:]
    elif kind == "token":
        raw = raw[:at] + draw(st.sampled_from(TOKENS)) + raw[at:]
    elif kind == "truncate":
        raw = raw[:at]
    elif kind == "delete-range":
        raw = raw[:at] + raw[at + draw(st.integers(min_value=1, max_value=40)):]
    else:
        lines = raw.splitlines(keepends=True)
        i = min(at, len(lines) - 1)
        raw = b"".join([*lines[: i + 1], lines[i], *lines[i + 1:]])
    return example, raw


def check_mutant(workdir: Path, example: Path, raw: bytes) -> None:
    path = workdir / f"mutant-{example.name}"
    path.write_bytes(raw)
    files = {str(path): raw}
    for other in workdir.glob("*.yaml"):  # what the mutant may extend
        if other != path:
            files.setdefault(str(other), other.read_bytes())
    check(path, files)


@settings(SETTINGS, max_examples=250)
@given(mutant=data_mutation())
def test_mutated_examples(workdir: Path, mutant: tuple[Path, bytes]) -> None:
    check_mutant(workdir, *mutant)


@settings(SETTINGS, max_examples=400)
@given(mutant=byte_mutation())
def test_corrupted_examples(workdir: Path, mutant: tuple[Path, bytes]) -> None:
    check_mutant(workdir, *mutant)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_prefix_of_an_example(workdir: Path, example: Path) -> None:
    """Truncation at every line boundary: a file being saved, or a copy cut short."""
    raw = example.read_bytes()
    cuts = [i + 1 for i, byte in enumerate(raw) if byte == ord("\n")]
    for cut in [0, *cuts]:
        check_mutant(workdir, example, raw[:cut])


def test_mutation_strategies_produce_changes() -> None:
    """Guard against a strategy that silently produces the unchanged example."""
    changed = []

    @settings(SETTINGS, max_examples=30)
    @given(mutant=st.one_of(data_mutation(), byte_mutation()))
    def collect(mutant: tuple[Path, bytes]) -> None:
        example, raw = mutant
        changed.append(raw != example.read_bytes())

    collect()
    assert sum(changed) >= len(changed) // 2
