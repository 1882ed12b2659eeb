"""Long lists are checked by a fast path; it must report exactly what jsonschema reports."""

from __future__ import annotations

import pytest

import manifest_compiler.schema as schema_module
import manifest_compiler.validate as validate
from manifest_compiler.load import LoadedManifest, parse_source

HEAD = "version: 1\nname: n\nproject: p\ncontainer: {image: /x.sif}\nresources: {time: 1h, mem: 1G}\nrun:\n"


def _problems(raw: bytes, long_list: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(validate, "LONG_LIST", long_list)
    source = parse_source("m.yaml", raw)
    return [str(p) for p in validate.validate_manifest(LoadedManifest("m.yaml", source.data, [source]))]


def _commands() -> str:
    items = [f'"python t.py {i}"' for i in range(200)]
    items[5], items[70], items[150] = "7", '""', '"a\\0b"'
    return "  commands: [" + ", ".join(items) + "]\n"


def _grid() -> str:
    values = [str(i) for i in range(300)]
    values[0], values[100], values[200] = "null", "[1, 2]", "{a: 1}"
    return "  grid: {template: 'x {{ a }}', parameters: {a: [" + ", ".join(values) + "], b: [1, 2]}}\n"


def _too_many() -> str:
    return "  commands: [" + ", ".join(["x"] * 70) + "]\n"


@pytest.mark.parametrize(("body", "count"), [(_commands(), 3), (_grid(), 4), ("  commands: [" + ", ".join(["ok"] * 100) + "]\n", 0)])
def test_fast_path_reports_what_jsonschema_reports(body: str, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (HEAD + body).encode()
    fast = _problems(raw, 64, monkeypatch)
    assert fast == _problems(raw, 10**9, monkeypatch)
    assert len(fast) == count


def test_fast_path_still_enforces_max_items(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = validate._item_schema(("run", "commands"), 1)
    monkeypatch.setitem(schema, "maxItems", 65)  # the real maximum is 1,000,000
    # jsonschema-rs was built from the unpatched schema: send the document to jsonschema
    monkeypatch.setattr(schema_module, "quick_validator", lambda version: lambda document: False)
    found = _problems((HEAD + _too_many()).encode(), 64, monkeypatch)
    assert found == ["m.yaml:7:13: run.commands: has 70 items; at most 65 allowed"]


def test_the_shipped_schema_takes_the_fast_path() -> None:
    """Wording keywords (titles, editor messages) must not turn the fast path off: it did, and a
    grid of 10,000 values went through jsonschema value by value."""
    data = {"run": {"commands": ["x"] * 100, "grid": {"parameters": {"seed": list(range(100)), "lr": ["a"] * 100}}}}
    _, cut = validate._without_long_lists(data, 1)
    assert sorted(path for path, _, _ in cut) == [("run", "commands"), ("run", "grid", "parameters", "lr"),
                                                  ("run", "grid", "parameters", "seed")]
