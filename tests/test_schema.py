"""The v1 JSON Schema: well-formed, strict, bounded, shipped as written; the examples pass it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from manifest_compiler import SCHEMA_VERSIONS
from manifest_compiler.cli import main
from manifest_compiler.schema import load_schema, schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "experiment.v1.schema.json"
EXAMPLES = sorted((ROOT / "manifests").glob("*.yaml"))


def _schema() -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def _subschemas(node: object, pointer: str = "#") -> t.Iterator[tuple[str, dict[str, t.Any]]]:
    """Every schema object in the document, with its JSON pointer (keywords' values excluded)."""
    if not isinstance(node, dict):
        return
    yield pointer, node
    for key, child in node.items():
        if key in ("properties", "$defs", "patternProperties", "dependentSchemas"):
            for name, sub in child.items():
                yield from _subschemas(sub, f"{pointer}/{key}/{name}")
        elif key in ("properties", "$defs", "patternProperties", "dependentSchemas"):
            pass  # handled above (dependentSchemas below)
        elif key in ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains"):
            yield from _subschemas(child, f"{pointer}/{key}")
        elif key in ("anyOf", "allOf", "oneOf", "prefixItems"):
            for i, sub in enumerate(child):
                yield from _subschemas(sub, f"{pointer}/{key}/{i}")


def _types(node: dict[str, t.Any]) -> set[str]:
    kind = node.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def test_schema_passes_the_2020_12_metaschema() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_walk_sees_the_whole_document() -> None:
    pointers = {p for p, _ in _subschemas(_schema())}
    assert "#/properties/container/properties/binds/items/properties/target" in pointers
    assert "#/properties/cluster/properties/sbatch_options/additionalProperties/anyOf/1" in pointers
    assert "#/$defs/scalar/anyOf/0" in pointers
    assert len(pointers) > 80


# Conditional overlays add rules to an object the schema describes elsewhere (if/then/else
# at the top; dependentSchemas of run; contains, which counts matching items of a list):
# their `properties` name keys, they do not close it.
_OVERLAY = re.compile(r"/(if|then|else|dependentSchemas|contains)(/|$)")


def test_objects_with_fixed_properties_reject_unknown_keys() -> None:
    loose = [
        pointer for pointer, node in _subschemas(_schema())
        if "properties" in node and node.get("additionalProperties") is not False and not _OVERLAY.search(pointer)
    ]
    assert loose == []


def test_overlay_walk_sees_the_branches() -> None:
    pointers = {p for p, _ in _subschemas(_schema())}
    assert "#/else/properties/run/anyOf/2" in pointers
    assert "#/properties/run/dependentSchemas/grid" in pointers


def _overlay_pairs(overlay: dict[str, t.Any], node: dict[str, t.Any], defs: dict[str, t.Any]) -> t.Iterator[tuple[dict[str, t.Any], dict[str, t.Any]]]:
    """Each overlay object with the object of the main schema it adds rules to."""
    yield overlay, node
    for name, sub in overlay.get("properties", {}).items():
        yield from _overlay_pairs(sub, node["properties"][name], defs)
    if isinstance(overlay.get("additionalProperties"), dict):
        yield from _overlay_pairs(overlay["additionalProperties"], node["additionalProperties"], defs)


def test_overlay_names_only_declared_keys() -> None:
    """The complete manifest's required keys (the top-level else) are keys the schema declares."""
    schema = _schema()
    pairs = list(_overlay_pairs(schema["else"], schema, schema["$defs"]))
    assert len(pairs) == 8  # the top, container, data, code, resources, run, secrets and a secret
    for overlay, node in pairs:
        assert set(overlay) <= {"required", "properties", "additionalProperties", "anyOf", "x-expected"}
        for name in overlay.get("required", []):
            assert name in node["properties"], name


def test_every_object_is_closed_or_has_a_value_schema() -> None:
    """A mapping without fixed properties (env, secrets, ...) still constrains its keys and values."""
    for pointer, node in _subschemas(_schema()):
        if "object" in _types(node) and "properties" not in node:
            assert isinstance(node.get("additionalProperties"), dict), pointer
            assert "propertyNames" in node, pointer
            assert "maxProperties" in node, pointer


def test_every_integer_has_a_maximum_and_a_minimum() -> None:
    integers = [(p, n) for p, n in _subschemas(_schema()) if "integer" in _types(n)]
    assert len(integers) >= 9  # sbatch option values, time, 5 resources, agents, runs_per_agent
    for pointer, node in integers:
        assert "maximum" in node, f"{pointer}: integer without a maximum"
        assert "minimum" in node, f"{pointer}: integer without a minimum"


def _pattern_bounds_length(pattern: str) -> bool:
    """An anchored pattern without unbounded repetition (*, +, {n,}) bounds the length."""
    body = pattern.replace("\\\\", "").replace("\\*", "").replace("\\+", "")
    body = re.sub(r"\[[^\]]*\]", "x", body)  # character classes may hold * and + literally
    return pattern.startswith("^") and pattern.endswith("$") and not re.search(r"[*+]|\{\d+,\}", body)


def test_pattern_bound_helper() -> None:
    assert _pattern_bounds_length("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    assert _pattern_bounds_length("^[0-9]{1,12}[KMGT]$")
    assert not _pattern_bounds_length("^[A-Za-z0-9._+/-]+$")
    assert not _pattern_bounds_length("^a{2,}$")
    assert not _pattern_bounds_length("\\.sif$")


def test_every_string_and_list_is_bounded() -> None:
    for pointer, node in _subschemas(_schema()):
        kinds = _types(node)
        if "string" in kinds:
            bounded = "maxLength" in node or "enum" in node or "const" in node \
                or _pattern_bounds_length(node.get("pattern", ""))
            assert bounded, f"{pointer}: string without a length bound"
        if "array" in kinds:
            assert "maxItems" in node, f"{pointer}: list without maxItems"


def test_every_pattern_says_what_it_expects() -> None:
    """validate prints `x-expected` instead of a regular expression."""
    for pointer, node in _subschemas(_schema()):
        if "pattern" in node:
            assert node.get("x-expected"), f"{pointer}: pattern without x-expected"


def test_patterns_speak_to_editors_too() -> None:
    """yaml-language-server shows patternErrorMessage (its extension) instead of the regex."""
    for pointer, node in _subschemas(_schema()):
        if "pattern" in node:
            assert node.get("patternErrorMessage", "").startswith(f"expected {node['x-expected']}"), pointer


def test_every_object_has_a_title() -> None:
    """An editor names a mapping's type by its title (else it borrows the document's)."""
    for pointer, node in _subschemas(_schema()):
        if "object" in _types(node):
            assert node.get("title"), pointer


def _prefix_regex(names: t.Iterable[str]) -> str:
    trie: dict[str, t.Any] = {}
    for name in names:
        node = trie
        for char in name:
            node = node.setdefault(char, {})

    def alternatives(node: dict[str, t.Any]) -> str:
        return "|".join(c + (f"(?:{alternatives(node[c])})?" if node[c] else "") for c in sorted(node))

    return alternatives(trie)


def test_owned_sbatch_options_and_their_abbreviations_are_refused_keys() -> None:
    rule = _schema()["properties"]["cluster"]["properties"]["sbatch_options"]["propertyNames"]["allOf"][1]
    owned = rule["x-set-by"]
    assert {"gres", "array", "time", "job-name", "export"} <= set(owned)
    assert rule["pattern"] == f"^(?!(?:{_prefix_regex(owned)})$)"
    check = re.compile(rule["pattern"])
    for name in owned:
        assert not check.search(name)
        assert not check.search(name[:2])
    for name in ("mail-type", "mail-user", "exclusive", "time-min", "mem-bind", "comment", "gpu-bind"):
        assert check.search(name), name
    for name, field in owned.items():
        assert field == "" or re.fullmatch(r"[a-z_. ,()A-Z]+", field), name


_TIME_SAMPLES = [
    "90m", "12h", "1d12h", "1d", "30s", "1h30m", "2d3h4m5s", "3h30", "3.5h", "1h 30m", "90", "90:30", "90:60", "1:59:59",
    "1:60:00", "100:00:00", "1-0", "1-23", "1-24", "1-023", "1-12:30", "1-12:60", "1-12:30:59", "1-12:30:60", "1-2-3",
    "h", "m", "", "1hh", "1m1h", "01:02", "7-", "-7", ":30", "1::2", "1d-2", "soon", "0", "0:00", "0m", "1:2:3:4",
]


@pytest.mark.parametrize("text", _TIME_SAMPLES)
def test_time_pattern_is_as_strict_as_the_parser(text: str) -> None:
    """A time string matches the pattern exactly when parse_time reads it, apart from the bounds
    (more than zero, at most 366 days), which a pattern cannot say."""
    from manifest_compiler.units import parse_time

    pattern = re.compile(_schema()["$defs"]["time"]["pattern"])
    try:
        parse_time(text)
        reads = True
    except ValueError as e:
        reads = str(e) in ("must be more than zero", "must be at most 366 days")
    assert (pattern.search(text) is not None) == reads


def test_every_property_is_described() -> None:
    for pointer, node in _subschemas(_schema()):
        if _OVERLAY.search(pointer):
            continue
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{pointer}/properties/{name}: no description"


def test_required_keys_are_declared_properties() -> None:
    for pointer, node in _subschemas(_schema()):
        if _OVERLAY.search(pointer):
            continue  # test_overlay_names_only_declared_keys
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{pointer}: required {name!r} is not a property"


def test_contract_values() -> None:
    """The names and bounds the manifest contract fixes."""
    schema = _schema()
    props = schema["properties"]
    complete = schema["else"]
    assert "required" not in schema  # a partial file (extends, base: true) needs none of them
    assert schema["if"] == {"anyOf": [{"required": ["extends"]}, {"required": ["base"], "properties": {"base": {"const": True}}}]}
    assert set(complete["required"]) == {"version", "name", "project", "container", "resources", "run"}
    assert props["version"] == {"description": props["version"]["description"], "const": 1}
    assert props["base"]["type"] == "boolean"
    assert schema["dependentRequired"] == {"base": ["version"]}
    assert complete["properties"]["container"]["required"] == ["image"]
    assert set(complete["properties"]["resources"]["required"]) == {"time", "mem"}
    assert [b["required"] for b in complete["properties"]["run"]["anyOf"]] == [["commands"], ["commands_file"], ["grid"], ["sweep"]]
    assert set(props["run"]["properties"]) == {"commands", "commands_file", "grid", "sweep", "launcher", "processes_per_node", "pack"}
    assert props["run"]["properties"]["launcher"]["enum"] == ["single", "srun", "torchrun"]
    assert set(props["resources"]["properties"]["requeue"]["properties"]) == {"before_end", "max_restarts"}
    assert props["container"]["properties"]["runtime"]["enum"] == ["auto", "apptainer", "singularity"]
    assert props["container"]["properties"]["entry"]["enum"] == ["run", "exec"]
    assert props["container"]["properties"]["gpu"]["enum"] == ["auto", "nvidia", "rocm", "none"]
    assert props["data"]["properties"]["stage"]["enum"] == ["archive", "copy", "bind"]
    assert schema["$id"].endswith(":v1")


def test_schema_command_prints_the_file_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert out == SCHEMA_FILE.read_text(encoding="utf-8")
    assert err == ""
    assert main(["schema", "--version", "1"]) == 0
    assert capsys.readouterr().out == SCHEMA_FILE.read_text(encoding="utf-8")


def test_schema_command_bytes_in_a_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "manifest_compiler", "schema"], capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == SCHEMA_FILE.read_bytes()
    assert proc.stderr == b""


def test_schema_command_unknown_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--version", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "no schema for format version 2" in err
    assert "Traceback" not in err


def test_packaged_schema_is_the_file() -> None:
    for version in SCHEMA_VERSIONS:
        assert schema_text(version) == SCHEMA_FILE.read_text(encoding="utf-8")
        assert load_schema(version) == _schema()


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"base.yaml", "commands.yaml", "grid.yaml", "sweep.yaml", "resnet50-seeds.yaml"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_silently(example: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(example.parent)
    assert main(["validate", example.name]) == 0
    assert capsys.readouterr() == ("", "")


def test_examples_validate_in_one_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "manifest_compiler", "validate", *map(str, EXAMPLES)],
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_declare_the_schema_for_editors(example: Path) -> None:
    first = example.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/experiment.v1.schema.json"


def test_a_base_validates_but_never_compiles(tmp_path: Path) -> None:
    from manifest_compiler.errors import ManifestError
    from manifest_compiler.load import BASE_REFUSED, load_manifest, refuse_base

    base = ROOT / "tests" / "cases" / "valid" / "schema-extends-base"
    refuse_base(load_manifest(str(base / "manifest.yaml")))  # the extending file: base does not carry
    with pytest.raises(ManifestError) as raised:
        refuse_base(load_manifest(str(base / "base.yaml")))
    [problem] = raised.value.problems
    assert (problem.line, problem.col, problem.path, problem.message) == (2, 1, "base", BASE_REFUSED)


@pytest.mark.parametrize("command", ["compile", "plan", "stage"])
def test_the_cli_refuses_to_compile_a_base(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every command that compiles says so in one located line (it was an internal error)."""
    from manifest_compiler.load import BASE_REFUSED

    base = ROOT / "tests" / "cases" / "valid" / "schema-base-alone" / "manifest.yaml"
    extra = ["--runs", str(tmp_path)] if command == "compile" else []
    assert main([command, str(base), *extra]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{base}:3:1: base: {BASE_REFUSED}\n")
    assert not list(tmp_path.iterdir())
