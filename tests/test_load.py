"""The loader's YAML 1.2 core-schema semantics, safety limits and `extends` merging.

Driven through `parse_source(path, raw_bytes)` (one file) and `load_manifest(path)`
(a file and everything it extends).
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from manifest_compiler.errors import ManifestError, Problem, format_path
from manifest_compiler.load import (
    MAX_DEPTH,
    SourceFloat,
    SourceInt,
    load_manifest,
    merge,
    parse_source,
    scalar_text,
)

MINIMAL = textwrap.dedent(
    """\
    version: 1
    name: demo
    project: study
    container:
      image: /images/app.sif
    resources:
      time: 1h
      mem: 4G
    run:
      commands:
        - echo hi
    """
)


def data(text: str | bytes) -> dict[str, object]:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return parse_source("m.yaml", raw).data


def value(scalar: str) -> object:
    """The value of `scalar` written as a plain mapping value."""
    return data(f"v: {scalar}\n")["v"]


def problems(text: str | bytes) -> list[Problem]:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    with pytest.raises(ManifestError) as info:
        parse_source("m.yaml", raw)
    found = info.value.problems
    assert found, "a ManifestError carries at least one problem"
    for p in found:
        assert p.file == "m.yaml"
        assert p.message
    return found


def only_problem(text: str | bytes) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- scalars: YAML 1.2 core schema ------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("True", True), ("TRUE", True),
    ("false", False), ("False", False), ("FALSE", False),
])
def test_only_true_and_false_are_booleans(text: str, expected: bool) -> None:
    assert value(text) is expected


@pytest.mark.parametrize("text", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF", "Y", "N", "tRUE"])
def test_yaml11_boolean_words_stay_strings(text: str) -> None:
    assert value(text) == text
    assert type(value(text)) is str


@pytest.mark.parametrize("text", ["1:30:00", "1:30", "190:20:30", "-1:30", "1-12:00:00"])
def test_no_base60_numbers(text: str) -> None:
    assert value(text) == text


def test_exponent_without_dot_is_a_float_written_as_is() -> None:
    lr = value("1e-3")
    assert isinstance(lr, float)
    assert isinstance(lr, SourceFloat)
    assert lr == 0.001
    assert scalar_text(lr) == "1e-3"


@pytest.mark.parametrize(("text", "expected"), [
    ("1.0e-2", 0.01), (".5", 0.5), ("-1.5", -1.5), ("+2.5", 2.5), ("2.", 2.0), ("1E3", 1000.0), ("0.1", 0.1),
])
def test_floats(text: str, expected: float) -> None:
    got = value(text)
    assert isinstance(got, float)
    assert got == expected
    assert scalar_text(got) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("0x10", 16), ("0xfF", 255), ("0o17", 15), ("010", 10), ("007", 7), ("-12", -12), ("+12", 12), ("0", 0),
])
def test_integers(text: str, expected: int) -> None:
    got = value(text)
    assert isinstance(got, SourceInt)
    assert not isinstance(got, bool)
    assert got == expected
    assert scalar_text(got) == text  # substituted into a grid as written


@pytest.mark.parametrize("text", ["1_000", "0b101", "0o", "0x", "1.2.3", "1e", "e3", "+", "0o8", "0xg"])
def test_not_core_numbers_stay_strings(text: str) -> None:
    assert value(text) == text


@pytest.mark.parametrize("text", ["2024-01-01", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5"])
def test_dates_stay_strings(text: str) -> None:
    assert value(text) == text


@pytest.mark.parametrize("text", ["~", "null", "Null", "NULL", ""])
def test_null_forms(text: str) -> None:
    assert value(text) is None


@pytest.mark.parametrize("text", ["nUll", "none", "None", "nil"])
def test_other_null_words_are_strings(text: str) -> None:
    assert value(text) == text


@pytest.mark.parametrize("text", [".inf", "-.inf", "+.inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"])
def test_special_floats_are_errors(text: str) -> None:
    p = only_problem(f"v: {text}\n")
    assert (p.line, p.col, p.path) == (1, 4, "v")
    assert "not a finite number" in p.message


def test_float_overflow_is_an_error() -> None:
    p = only_problem("v: 1e999\n")
    assert (p.line, p.col, p.path) == (1, 4, "v")
    assert "out of range" in p.message


def test_quoted_scalars_are_strings() -> None:
    got = data("a: 'true'\nb: \"1e-3\"\nc: '010'\nd: \"~\"\ne: |\n  5\n")
    assert got == {"a": "true", "b": "1e-3", "c": "010", "d": "~", "e": "5\n"}


def test_keys_are_strings() -> None:
    assert data("1: a\ntrue: b\nnull: c\n1e3: d\n") == {"1": "a", "true": "b", "null": "c", "1e3": "d"}


# --- tags -------------------------------------------------------------------------


def test_str_tag() -> None:
    got = value("!!str 5")
    assert got == "5"
    assert type(got) is str


def test_non_specific_tag_is_a_string() -> None:
    assert value("! 12") == "12"


def test_int_tag_on_text_is_an_error() -> None:
    p = only_problem('v: !!int "x"\n')
    assert (p.line, p.col, p.path) == (1, 4, "v")
    assert "'x' is not a valid !!int" in p.message


def test_float_tag_on_int() -> None:
    got = value("!!float 1")
    assert isinstance(got, float)
    assert got == 1.0


@pytest.mark.parametrize(("text", "expected"), [
    ("!!int 0x1F", 31), ("!!bool true", True), ('!!null ""', None), ("!!float 1e-3", 0.001), ('!!str "x"', "x"),
])
def test_core_tags(text: str, expected: object) -> None:
    assert value(text) == expected


def test_core_collection_tags_are_allowed() -> None:
    assert data("a: !!map {x: 1}\nb: !!seq [1]\n") == {"a": {"x": 1}, "b": [1]}


@pytest.mark.parametrize(("text", "tag"), [
    ("!!binary aGVsbG8=", "!!binary"),
    ("!!timestamp 2024-01-01", "!!timestamp"),
    ("!custom x", "!custom"),
    ("!!python/str x", "!!python/str"),
    ("!!str {a: 1}", "!!str"),
    ("!!set {a, b}", "!!set"),
    ("!!omap [{a: 1}]", "!!omap"),
])
def test_other_tags_are_errors(text: str, tag: str) -> None:
    p = only_problem(f"v: {text}\n")
    assert (p.line, p.path) == (1, "v")
    assert f"tag {tag} is not allowed" in p.message


@pytest.mark.parametrize("payload", [
    "description: !!python/object/apply:os.system ['touch {marker}']",
    "description: !!python/object/new:os.system ['touch {marker}']",
    "description: !!python/object/apply:subprocess.check_call [[touch, '{marker}']]",
    "!!python/object/apply:os.system ['touch {marker}']: key",
    "%TAG !p! tag:yaml.org,2002:python/object/apply:\n---\ndescription: !p!os.system ['touch {marker}']",
])
def test_python_tags_never_execute(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    text = payload.format(marker=marker) + "\n"
    found = problems(text)
    assert not marker.exists()
    assert any("not allowed" in p.message or "a key must be a plain value" in p.message for p in found)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    with pytest.raises(ManifestError):
        load_manifest(str(manifest))
    assert not marker.exists()


def test_merge_key_is_refused() -> None:
    p = only_problem("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert (p.line, p.col, p.path) == (3, 3, 'other["<<"]')
    assert "merge keys" in p.message


def test_quoted_merge_key_is_a_plain_key() -> None:
    assert data('"<<": 1\n') == {"<<": 1}


# --- duplicate keys and structure ---------------------------------------------------


def test_duplicate_key_names_the_first_line() -> None:
    p = only_problem("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert (p.line, p.col, p.path) == (5, 3, "b.c")
    assert "duplicate key 'c'" in p.message
    assert "first defined at line 3" in p.message


def test_duplicate_key_quoted_and_plain() -> None:
    p = only_problem('name: a\n"name": b\n')
    assert p.line == 2
    assert "first defined at line 1" in p.message


def test_every_duplicate_is_reported() -> None:
    found = problems("a: 1\na: 2\nb: 1\nb: 2\n")
    assert [(p.line, p.path) for p in found] == [(2, "a"), (4, "b")]


def test_complex_key_is_an_error() -> None:
    p = only_problem("? [a, b]\n: c\n")
    assert (p.line, p.col) == (1, 3)
    assert "a key must be a plain value" in p.message


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- a\n- b\n", "found a list"),
    ("just text\n", "found a single value"),
    ("42\n", "found a single value"),
])
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    p = only_problem(text)
    assert (p.line, p.col) == (1, 1)
    assert message in p.message


def test_multiple_documents_are_an_error() -> None:
    p = only_problem("a: 1\n---\nb: 2\n")
    assert p.line == 2
    assert "single document" in p.message


@pytest.mark.parametrize(("text", "line", "col"), [
    ("a:\n\tb: 1\n", 2, 1),
    ('a: "open\n', 2, 1),
    ("a: [1, 2\n", 2, 1),
    ("a: b: c\n", 1, 5),
])
def test_syntax_errors_are_located(text: str, line: int, col: int) -> None:
    p = only_problem(text)
    assert (p.line, p.col) == (line, col)
    assert p.message.startswith("invalid YAML: ")


def test_tab_indentation_says_so() -> None:
    assert "tabs are not allowed" in only_problem("a:\n\tb: 1\n").message


def test_incompatible_yaml_directive_is_an_error() -> None:
    assert only_problem("%YAML 2.0\n---\na: 1\n").message.startswith("invalid YAML")


# --- bytes ------------------------------------------------------------------------------


def test_bom_is_accepted_and_positions_are_unchanged() -> None:
    source = parse_source("m.yaml", b"\xef\xbb\xbf" + MINIMAL.encode())
    assert source.data["name"] == "demo"
    assert source.root.value[1][1].start_mark.line == 1  # `demo` is on line 2


def test_crlf_line_endings() -> None:
    assert data(MINIMAL.replace("\n", "\r\n")) == data(MINIMAL)


def test_nul_byte_is_an_error() -> None:
    p = only_problem(b"a: 1\nb: x\x00y\n")
    assert (p.line, p.col) == (2, 5)
    assert "NUL byte" in p.message


def test_escaped_nul_in_a_string_is_kept() -> None:
    assert data('a: "x\\0y"\n') == {"a": "x\x00y"}  # refused later by the schema where it matters


def test_non_utf8_is_an_error() -> None:
    p = only_problem(b"a: 1\nb: caf\xe9\n")
    assert (p.line, p.col) == (2, 7)
    assert "not valid UTF-8 (byte 0xe9)" in p.message


def test_utf16_is_not_utf8() -> None:
    p = only_problem("a: 1\n".encode("utf-16"))
    assert "not valid UTF-8" in p.message


def test_unicode_is_kept() -> None:
    assert data("cmd: echo 'héllo ✓ 日本語 🚀'\n") == {"cmd": "echo 'héllo ✓ 日本語 🚀'"}


# --- aliases and limits -------------------------------------------------------------------


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a: &a [" + ", ".join(["lol"] * width) + "]"]
    prev = "a"
    for i in range(1, levels):
        name = f"l{i}"
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * width) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly() -> None:
    text = billion_laughs()
    start = time.perf_counter()
    p = only_problem(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"took {elapsed:.3f}s"  # a safety bound, not a benchmark
    assert "alias bomb" in p.message
    assert p.line > 0


def test_alias_bomb_is_refused_quickly_by_load_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "bomb.yaml"
    manifest.write_text(MINIMAL + "description:\n" + textwrap.indent(billion_laughs(), "  "))
    start = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        load_manifest(str(manifest))
    assert time.perf_counter() - start < 1.0
    assert "alias bomb" in info.value.problems[0].message


def test_legitimate_aliases_share_values() -> None:
    got = data("a: &x [1, 2]\nb: *x\nc: &s hello\nd: *s\n")
    assert got == {"a": [1, 2], "b": [1, 2], "c": "hello", "d": "hello"}


def test_recursive_alias_is_refused() -> None:
    p = only_problem("a: &a\n  b: *a\n")
    assert "recursive alias" in p.message
    assert p.line == 1


def test_recursive_alias_in_a_list() -> None:
    assert "recursive alias" in only_problem("a: &a [1, *a]\n").message


def test_undefined_alias_is_an_error() -> None:
    p = only_problem("a: *nope\n")
    assert (p.line, p.col) == (1, 4)
    assert "undefined alias" in p.message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 5000])
def test_deep_nesting_is_a_clean_error(depth: int) -> None:
    p = only_problem("a: " + "[" * depth + "]" * depth + "\n")
    assert f"nesting deeper than {MAX_DEPTH} levels" in p.message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 5000])
@pytest.mark.parametrize("extra", ["", "b: &x 1\nc: *x\n", "d: ! 5\n"], ids=["plain", "alias", "non-specific-tag"])
def test_deep_nesting_is_located_on_every_path(depth: int, extra: str) -> None:
    """The tree check, the alias walk and the event scan give the same located line."""
    p = only_problem(extra + "a: " + "[" * depth + "]" * depth + "\n")
    assert (p.line, p.col, p.message) == (extra.count("\n") + 1, 4 + MAX_DEPTH - 1, f"nesting deeper than {MAX_DEPTH} levels")


def test_one_parse_for_a_file_without_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """libyaml 0.2.6 bounds nesting itself: the event scan runs only for a file holding a `!`."""
    from manifest_compiler import load

    assert load._NESTING_BOUNDED  # PyYAML 6.0.4's wheel carries libyaml 0.2.6 (tests/constraints.txt)
    calls = []
    monkeypatch.setattr(load, "_scan", lambda path, text, *a: calls.append(path) or set())
    parse_source("m.yaml", MINIMAL.encode())
    assert calls == []
    parse_source("t.yaml", (MINIMAL + "description: ! 5\n").encode())
    assert calls == ["t.yaml"]


def test_nesting_at_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 1  # the root mapping is one level
    got = data("a: " + "[" * depth + "]" * depth + "\n")
    assert isinstance(got["a"], list)


def test_very_deep_nesting_does_not_crash_the_process() -> None:
    code = (
        "from manifest_compiler.load import parse_source\n"
        "from manifest_compiler.errors import ManifestError\n"
        "raw = b'a: ' + b'[' * 60000 + b']' * 60000\n"
        "try:\n    parse_source('m.yaml', raw)\nexcept ManifestError as e:\n    print(e.problems[0].message)\n"
    )
    # the stack limit must be set before the interpreter starts: run the check in a grandchild
    wrapper = (
        "import resource, subprocess, sys\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_STACK)\n"
        "limit = 8 << 20 if hard == resource.RLIM_INFINITY or hard >= 8 << 20 else hard\n"
        "resource.setrlimit(resource.RLIMIT_STACK, (limit, hard))\n"
        f"sys.exit(subprocess.run([sys.executable, '-c', {code!r}]).returncode)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "nesting deeper than" in proc.stdout


def test_integer_with_too_many_digits_is_a_manifest_error() -> None:
    p = only_problem("v: " + "9" * 4301 + "\n")
    assert (p.line, p.col, p.path) == (1, 4, "v")


def test_long_hex_integer_is_fine() -> None:
    assert value("0x" + "f" * 5000) == int("f" * 5000, 16)


# --- positions ---------------------------------------------------------------------------


def test_problem_positions_are_one_based() -> None:
    p = only_problem("a:\n  b: .nan\n")
    assert (p.line, p.col, p.path) == (2, 6, "a.b")


def test_format_path() -> None:
    assert format_path(()) == ""
    assert format_path(("run", "commands", 1)) == "run.commands[1]"
    assert format_path(("container", "binds", 0, "target")) == "container.binds[0].target"
    assert format_path((0, "a")) == "[0].a"


# --- extends --------------------------------------------------------------------------------


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


BASE = """\
    version: 1
    name: base
    project: study
    container:
      image: /images/base.sif
      workdir: /workdir
    data:
      subsets: [a, b, c]
    resources:
      time: 1h
      mem: 4G
      gpus: 1
    run:
      grid:
        template: echo {{ x }}
        parameters: {x: [1, 2]}
    env:
      A: from-base
      B: from-base
    """

CHILD = """\
    extends: base.yaml
    name: child
    container:
      image: /images/child.sif
    data:
      subsets: [z]
    resources:
      time: 2h
    run:
      commands:
        - echo child
    env:
      B: from-child
    """


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    write(tmp_path, {"base.yaml": BASE, "child.yaml": CHILD})
    return tmp_path / "child.yaml"


def test_extends_deep_merge(chain: Path) -> None:
    loaded = load_manifest(str(chain))
    d = loaded.data
    assert "extends" not in d
    assert d["name"] == "child"
    assert d["project"] == "study"
    assert d["container"] == {"image": "/images/child.sif", "workdir": "/workdir"}  # maps merge
    assert d["data"] == {"subsets": ["z"]}  # lists replace
    assert d["resources"] == {"time": "2h", "mem": "4G", "gpus": 1}
    assert d["run"] == {"commands": ["echo child"]}  # the child's run kind replaces the base's
    assert d["env"] == {"A": "from-base", "B": "from-child"}
    assert [Path(s.path).name for s in loaded.sources] == ["child.yaml", "base.yaml"]
    assert loaded.sources[1].raw == (chain.parent / "base.yaml").read_bytes()


def test_locate_finds_each_value_in_its_own_file(chain: Path) -> None:
    loaded = load_manifest(str(chain))
    base, child = str(chain.parent / "base.yaml"), str(chain)
    assert loaded.locate(("project",)) == (base, 3, 10)
    assert loaded.locate(("container", "workdir")) == (base, 6, 12)
    assert loaded.locate(("resources", "mem")) == (base, 11, 8)
    assert loaded.locate(("env", "A")) == (base, 18, 6)
    assert loaded.locate(("env", "A"), key=True) == (base, 18, 3)
    assert loaded.locate(("name",)) == (child, 2, 7)
    assert loaded.locate(("container", "image")) == (child, 4, 10)
    assert loaded.locate(("data", "subsets", 0)) == (child, 6, 13)
    assert loaded.locate(("env", "B")) == (child, 13, 6)
    assert loaded.locate(("run", "commands", 0)) == (child, 11, 7)


def test_locate_missing_key_prefers_the_deepest_parent_child_first(chain: Path) -> None:
    loaded = load_manifest(str(chain))
    child = str(chain)
    # resources exists in both; the extending file wins
    assert loaded.locate(("resources", "nope")) == (child, 8, 3)
    # only the base has `container.workdir`: its node is deeper than anything in the child
    assert loaded.locate(("container", "workdir", "deeper")) == (str(chain.parent / "base.yaml"), 6, 12)
    # nothing anywhere: the root of the extending file
    assert loaded.locate(("outputs",)) == (child, 1, 1)


def test_problem_in_base_is_located_in_base(chain: Path) -> None:
    loaded = load_manifest(str(chain))
    p = loaded.problem(("env", "A"), "x")
    assert (Path(p.file).name, p.line, p.col, p.path) == ("base.yaml", 18, 6, "env.A")


def test_extends_chain_of_three_and_relative_paths(tmp_path: Path) -> None:
    write(tmp_path, {
        "common/base.yaml": "version: 1\nproject: study\nenv: {A: '1'}\n",
        "exps/mid.yaml": "extends: ../common/base.yaml\nenv: {B: '2'}\n",
        "exps/deep/leaf.yaml": "extends: ../mid.yaml\nname: leaf\nenv: {A: override}\n",
    })
    loaded = load_manifest(str(tmp_path / "exps/deep/leaf.yaml"))
    assert loaded.data == {"version": 1, "project": "study", "name": "leaf", "env": {"A": "override", "B": "2"}}
    assert len(loaded.sources) == 3


def test_extends_missing_base(tmp_path: Path) -> None:
    write(tmp_path, {"m.yaml": "version: 1\nextends: nowhere.yaml\n"})
    with pytest.raises(ManifestError) as info:
        load_manifest(str(tmp_path / "m.yaml"))
    (p,) = info.value.problems
    assert (p.file, p.line, p.col, p.path) == (str(tmp_path / "m.yaml"), 2, 10, "extends")
    assert "cannot read 'nowhere.yaml'" in p.message


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, {"a.yaml": "extends: b.yaml\nname: a\n", "b.yaml": "name: b\nextends: a.yaml\n"})
    with pytest.raises(ManifestError) as info:
        load_manifest(str(tmp_path / "a.yaml"))
    (p,) = info.value.problems
    assert (Path(p.file).name, p.line, p.col) == ("b.yaml", 2, 10)
    assert "extends cycle" in p.message
    assert "a.yaml -> " in p.message and "b.yaml -> " in p.message


@pytest.mark.parametrize("bad", ["[base.yaml]", "{a: b}", "5", "true", '""'])
def test_extends_must_be_a_path(tmp_path: Path, bad: str) -> None:
    write(tmp_path, {"m.yaml": f"version: 1\nextends: {bad}\n"})
    with pytest.raises(ManifestError) as info:
        load_manifest(str(tmp_path / "m.yaml"))
    (p,) = info.value.problems
    assert (p.line, p.col, p.path) == (2, 10, "extends")


def test_extends_null_is_left_to_the_schema(tmp_path: Path) -> None:
    write(tmp_path, {"m.yaml": "version: 1\nextends:\n"})
    assert load_manifest(str(tmp_path / "m.yaml")).data == {"version": 1, "extends": None}


def test_error_in_base_is_reported_in_base(tmp_path: Path) -> None:
    write(tmp_path, {"m.yaml": "extends: base.yaml\n", "base.yaml": "a: 1\na: 2\n"})
    with pytest.raises(ManifestError) as info:
        load_manifest(str(tmp_path / "m.yaml"))
    (p,) = info.value.problems
    assert (Path(p.file).name, p.line) == ("base.yaml", 2)


def test_missing_manifest_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(str(tmp_path / "absent.yaml"))
    (p,) = info.value.problems
    assert (p.line, p.col) == (0, 0)
    assert p.message.startswith("cannot read: ")


def test_merge_rules() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": {"k": 1}, "run": {"grid": {"template": "t"}}, "s": 1}
    over = {"a": {"y": [3]}, "b": None, "run": {"sweep": {"id": "e/p/s"}}, "s": {"now": "map"}}
    assert merge(base, over) == {
        "a": {"x": 1, "y": [3]},
        "b": None,
        "run": {"sweep": {"id": "e/p/s"}},
        "s": {"now": "map"},
    }
    assert base["a"] == {"x": 1, "y": [1, 2]}, "merge must not modify its inputs"


def test_run_kind_replacement_only_at_run() -> None:
    # a key named like a run kind elsewhere merges normally
    assert merge({"env": {"commands": "1", "grid": "2"}}, {"env": {"sweep": "3"}}) == {
        "env": {"commands": "1", "grid": "2", "sweep": "3"}
    }
    # a run kind in the extending file replaces the base's run, even the same kind
    assert merge({"run": {"grid": {"template": "t", "parameters": {"x": [1]}}}},
                 {"run": {"grid": {"template": "u"}}}) == {"run": {"grid": {"template": "u"}}}
    # a run without a kind merges as a plain mapping
    assert merge({"run": {"grid": {"template": "t"}}}, {"run": {}}) == {"run": {"grid": {"template": "t"}}}


def test_scalar_text_of_plain_values() -> None:
    assert scalar_text(True) == "true"
    assert scalar_text(False) == "false"
    assert scalar_text("x") == "x"
    assert scalar_text(3) == "3"
    assert math.isclose(float(scalar_text(0.5)), 0.5)
