"""A million tasks: grid tasks computed on demand, streamed files, bounded memory.

The references below are the materialising implementations this replaced (commit
4913db5): the lazy sequence and the streams must give exactly their bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shlex
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifest_compiler import jobdir, render, spool
from manifest_compiler.cli import main
from manifest_compiler.jobdir import StreamedFile
from manifest_compiler.load import SourceFloat, SourceInt, scalar_text
from manifest_compiler.pipeline import build_job, compile_manifest
from manifest_compiler.resolve import GridTasks, resolve_manifest
from manifest_compiler.write import content_hash, write_run

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------- the references

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def old_expand_grid(template: str, parameters: dict[str, list[t.Any]]) -> t.Iterator[str]:
    pieces = _PLACEHOLDER.split(template)
    literals, names = pieces[0::2], pieces[1::2]
    order = list(parameters)
    quoted = [[shlex.quote(scalar_text(v)) for v in parameters[name]] for name in order]
    slot = [order.index(name) for name in names]
    for combo in itertools.product(*quoted):
        out = [literals[0]]
        for i, lit in zip(slot, literals[1:], strict=True):
            out.append(combo[i])
            out.append(lit)
        yield "".join(out)


def old_encode_tasks(tasks: t.Sequence[str]) -> tuple[bytes, bytes]:
    encoded = [c.encode() for c in tasks]
    commands = b"\n".join(encoded) + b"\n"
    offsets, pos = [], 0
    for c in encoded:
        offsets.append(pos)
        pos += len(c) + 1
    offsets.append(pos)
    index = "".join(f"{o:0{jobdir.INDEX_WIDTH}d}\n" for o in offsets).encode()
    return commands, index


def old_json(value: t.Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def old_content_hash(files: t.Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        data = files[path]
        digest.update(f"{path}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


# ----------------------------------------------------------------- strategies

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # any character but lone surrogates
_value = st.one_of(_text, st.integers(-10**20, 10**20), st.floats(), st.booleans(), st.none(),
                   st.sampled_from(["{{ x }}", "{}", "{0}", "}{", "'", '"', "\\", "\n", "é", "a b"]))
_literal = st.one_of(_text.filter(lambda s: "{{" not in s and "{%" not in s and "{#" not in s),
                     st.sampled_from(["{", "}", "{0}", "{x}", " --a ", "\\n", "%s", "é"]))


@st.composite
def grids(draw: st.DrawFn, max_values: int = 4) -> tuple[str, dict[str, list[t.Any]]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "lr"]), min_size=1, max_size=4, unique=True))
    parameters = {n: draw(st.lists(_value, min_size=1, max_size=max_values)) for n in names}
    used = draw(st.lists(st.sampled_from(names), min_size=0, max_size=5))  # repeated, unused, any order
    template = draw(_literal)
    for name in used:
        template += draw(st.sampled_from(["{{%s}}", "{{ %s }}", "{{  %s}}"])) % name + draw(_literal)
    return template, parameters


# ----------------------------------------------------------------- GridTasks


@given(grids())
@settings(max_examples=300, deadline=None)
def test_grid_tasks_are_the_old_expansion(grid: tuple[str, dict[str, list[t.Any]]]) -> None:
    template, parameters = grid
    old = list(old_expand_grid(template, parameters))
    tasks = GridTasks(template, parameters)
    assert len(tasks) == len(old)
    assert list(tasks) == old and tasks == old and old == tasks
    assert [tasks[i] for i in range(len(old))] == old
    assert [tasks[-i] for i in range(1, len(old) + 1)] == [old[-i] for i in range(1, len(old) + 1)]
    assert tasks[1:-1:2] == old[1:-1:2] and tasks[::-1] == old[::-1]
    for size in (1, 3, 4096):  # a stretch of the template formatted once for its combinations
        batches = list(tasks.text_batches(size))
        assert "".join(text for text, _ in batches) == "".join(f"{task}\n" for task in old)
        assert [n for _, lengths in batches for n in lengths] == [len(task) for task in old]


def test_grid_tasks_index_errors_and_equality() -> None:
    tasks = GridTasks("x {{a}} {{b}}", {"a": [1, 2, 3], "b": ["p q", "r"]})
    assert len(tasks) == 6 and tasks[5] == "x 3 r" and tasks[-6] == "x 1 'p q'"
    for bad in (6, -7):
        with pytest.raises(IndexError):
            tasks[bad]
    assert tasks == GridTasks("x {{ a }} {{ b }}", {"a": [1, 2, 3], "b": ["p q", "r"]})
    assert GridTasks("x {{a}}", {"a": [1]}) == GridTasks("x 1", {}) == ["x 1"]  # equal commands, another grid
    assert tasks != ["x 1 'p q'"] and tasks != tuple(tasks) and tasks != "x"
    with pytest.raises(TypeError):
        hash(tasks)


def test_a_million_tasks_are_not_a_million_strings() -> None:
    tasks = GridTasks("t {{a}} {{b}}", {"a": list(range(1000)), "b": list(range(1000))})
    assert len(tasks) == 1_000_000
    assert tasks[999_999] == "t 999 999" and tasks[123_456] == "t 123 456"
    assert sys.getsizeof(tasks) < 1000


def test_a_grid_resolves_to_grid_tasks_that_json_sees_as_a_list() -> None:
    data = {"version": 1, "name": "n", "project": "p", "container": {"image": "/x.sif"},
            "resources": {"time": "1h", "mem": "1G"}, "run": {"grid": {"template": "x {{a}}", "parameters": {"a": [1, 2]}}}}
    resolved = resolve_manifest(data)
    assert isinstance(resolved["run"]["tasks"], GridTasks)
    assert json.loads(json.dumps(resolved, default=list))["run"]["tasks"] == ["x 1", "x 2"]


# ----------------------------------------------------------------- the streamed files


def _resolved(template: str, parameters: dict[str, list[t.Any]]) -> dict[str, t.Any]:
    data = {"version": 1, "name": "n", "project": "p", "container": {"image": "/x.sif"},
            "resources": {"time": "1h", "mem": "1G"}, "env": {"A": "é\n\"x\""},
            "run": {"grid": {"template": template, "parameters": parameters}}}
    return resolve_manifest(data)


@given(grids())
@settings(max_examples=200, deadline=None)
def test_streamed_files_are_the_old_bytes(grid: tuple[str, dict[str, list[t.Any]]]) -> None:
    resolved = _resolved(*grid)
    plain = {**resolved, "run": {**resolved["run"], "tasks": list(resolved["run"]["tasks"])}}
    tasks = resolved["run"]["tasks"]
    old_commands, old_index = old_encode_tasks(list(tasks))
    survey = render.survey_tasks(tasks)
    assert b"".join(render.command_chunks(survey)) == old_commands
    assert survey.size == len(old_commands)
    assert b"".join(render.index_chunks(survey.ends)) == old_index
    assert render.encode_tasks(tasks) == (old_commands, old_index)
    old_resolved = old_json(plain)
    assert b"".join(render.resolved_json_chunks(resolved)) == old_resolved
    assert b"".join(render.resolved_json_chunks(plain)) == old_resolved
    assert b"".join(render.resolved_json_chunks(resolved, survey)) == old_resolved  # from tasks/commands' bytes
    assert render.resolved_json_size(resolved, survey) == len(old_resolved)


@pytest.mark.parametrize("batch", [1, 3, 7, 4096])
@pytest.mark.parametrize(("template", "parameters"), [
    ("python t.py --a {{ a }} --b {{ b }}", {"a": [1, 2, 3], "b": ["x y", "z", "é", "w"]}),  # a run of b at a time
    ("{{ b }} then {{ a }}", {"a": ["1", "2"], "b": list(range(10))}),  # the fast one first in the text
    ("{{ b }} {{ b }} {{ a }}", {"a": [1, 2], "b": ["q", "r"]}),  # named twice: one task at a time
    ("x {{ a }}", {"a": ["q'\"", "n\nl", "t\tt"]}),  # JSON escapes: the generic path
    ("no placeholder", {"a": [1, 2, 3]}),
    ("--lr {{ lr }} --seed {{ seed }} --fold {{ fold }}", {"lr": [0.1, 0.2], "seed": [1, 2, 3], "fold": ["f 0", "f 1"]}),  # last two
    ("{{ seed }} {{ lr }} {{ fold }}", {"lr": [0.1, 0.2], "seed": [1, 2, 3], "fold": ["x", "y"]}),  # last one only
    ("{{ c }}{{ a }}", {"a": [1, 2], "b": [3, 4], "c": [5, 6]}),  # b named nowhere
])
def test_grid_text_batches_make_the_old_bytes(template: str, parameters: dict[str, list[t.Any]], batch: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "_BATCH", batch)
    resolved = _resolved(template, parameters)
    tasks = resolved["run"]["tasks"]
    assert isinstance(tasks, GridTasks)
    plain = {**resolved, "run": {**resolved["run"], "tasks": list(tasks)}}
    survey = render.survey_tasks(tasks)
    assert (b"".join(render.command_chunks(survey)), b"".join(render.index_chunks(survey.ends))) == old_encode_tasks(list(tasks))
    assert b"".join(render.resolved_json_chunks(resolved, survey)) == old_json(plain)
    assert render.resolved_json_size(resolved, survey) == len(old_json(plain))


def _source(value: t.Any, text: str) -> t.Any:
    value.text = text
    return value


@pytest.mark.parametrize("tasks", [["a"], ["x"] * 3, ["é\n'\"\\\x00", "", "{}"], [f"python t.py {i}" for i in range(10_000)],
                                   ["a", "b\nc", "d", "\t", "é", 'q"', "\\", "\x7f", "\r", "", "z"] * 3])
@pytest.mark.parametrize("spool_memory", [1 << 24, 50], ids=["spool-in-memory", "spool-in-a-file"])
def test_streamed_files_of_commands_and_batches(tasks: list[str], spool_memory: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "_BATCH", 7)  # many batches, and a last one that is not full
    monkeypatch.setattr(render, "_CHUNK", 100)
    monkeypatch.setattr(spool, "MEMORY", spool_memory)
    resolved = {"name": "n", "run": {"kind": "commands", "tasks": tasks},
                "z": {"deep": {"list": [1, 2.5, None, {}], "e": {}, "nested": [[1, "a"], []], "empty": []},
                      "scalars": [True, False, 0, -1, 10**30, -0.0, 1e-7, 1e300, float("nan"), float("inf"), float("-inf"),
                                  None, "s", "é\n\"", _source(SourceInt(16), "0x10"), _source(SourceFloat(0.001), "1e-3"),
                                  *range(20)],
                      "strings": [str(i) * i for i in range(30)]}}
    survey = render.survey_tasks(tasks)
    assert (survey.spool._fd is None) == (survey.size <= spool_memory)
    assert (b"".join(render.command_chunks(survey)), b"".join(render.index_chunks(survey.ends))) == old_encode_tasks(tasks)
    assert b"".join(render.resolved_json_chunks(resolved)) == old_json(resolved)
    assert b"".join(render.resolved_json_chunks(resolved, survey)) == old_json(resolved)
    assert render.resolved_json_size(resolved, survey) == len(old_json(resolved))


def test_rendered_files_hash_as_the_old_bytes_did() -> None:
    _, files, _, _ = build_job(str(ROOT / "manifests" / "grid.yaml"))
    as_bytes = {path: data if isinstance(data, bytes) else data.read() for path, data in files.items()}
    assert isinstance(files["tasks/commands"], StreamedFile) and isinstance(files["resolved.json"], StreamedFile)
    assert content_hash(files) == content_hash(as_bytes) == old_content_hash(as_bytes)


def test_plan_never_streams_the_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(tasks: t.Iterable[str]) -> t.NoReturn:
        raise AssertionError("plan went through every task")

    monkeypatch.setattr(render, "survey_tasks", refuse)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(_grid_manifest(1000, 1000))
    assert main(["plan", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "1000000 tasks" in out and "999999  python t.py --a 999 --b 'v 999'" in out
    assert out.count("python t.py") == 19


def test_a_stream_that_breaks_its_size_writes_no_run(tmp_path: Path) -> None:
    liar = StreamedFile(lambda: [b"abc"], size=4)
    with pytest.raises(AssertionError):
        write_run(tmp_path, "n", {"a": b"x", "b": liar}, {})  # hashed while written
    assert list((tmp_path / "n").iterdir()) == []
    write_run(tmp_path, "n", {"a": b"other"}, {})  # now a run exists: the next one is hashed first
    calls = iter([[b"abc"], [b"abcd"]])
    changeling = StreamedFile(lambda: next(calls), size=3)  # hashed as 3 bytes, then writes 4
    with pytest.raises(AssertionError):
        write_run(tmp_path, "n", {"a": b"x", "b": changeling}, {})
    assert len(list((tmp_path / "n").iterdir())) == 1


def test_hashed_while_written_or_first_the_run_is_the_same(tmp_path: Path) -> None:
    files = {"z": b"last", "a/b": StreamedFile(lambda: [b"12", b"345"]), "m": StreamedFile(lambda: iter([]), size=0)}
    record = {"manifest.yaml": b"# not hashed\n"}
    first = write_run(tmp_path / "one", "n", files, record)  # an empty folder: hashed while written
    write_run(tmp_path / "two", "n", {"other": b"x"}, record)
    second = write_run(tmp_path / "two", "n", files, record)  # beside another run: hashed first
    plain = {"z": b"last", "a/b": b"12345", "m": b""}
    assert first.created and second.created and first.hash == second.hash == old_content_hash(plain)
    assert first.path.name == second.path.name == first.hash[:12]
    for run in (first.path, second.path):
        assert {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()} == {**plain, **record}
    again = write_run(tmp_path / "one", "n", files, record)
    assert not again.created and again.path == first.path


# ----------------------------------------------------------------- bounded memory


def _grid_manifest(a: int, b: int) -> str:
    return ("version: 1\nname: big\nproject: p\ncontainer: {image: /x.sif}\nresources: {time: 1h, mem: 1G}\n"
            "run:\n  grid:\n    template: python t.py --a {{ a }} --b {{ b }}\n    parameters:\n"
            f"      a: [{', '.join(str(i) for i in range(a))}]\n"
            f"      b: [{', '.join(repr(f'v {i}') for i in range(b))}]\n")


_PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kb(argv: list[str]) -> int:
    """Peak RSS of one process, read in a wrapper of its own (RUSAGE_CHILDREN of pytest holds every child)."""
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, *argv], capture_output=True, text=True, check=True).stdout
    return int(out)


def test_compile_memory_does_not_grow_with_the_tasks(tmp_path: Path) -> None:
    peaks = {}
    for n, (a, b) in {2_000: (20, 100), 200_000: (2_000, 100)}.items():
        manifest = tmp_path / f"grid{n}.yaml"
        manifest.write_text(_grid_manifest(a, b))
        runs = tmp_path / f"runs{n}"
        peaks[n] = _peak_rss_kb([sys.executable, "-m", "manifest_compiler", "compile", str(manifest), "--runs", str(runs)])
        run = next((runs / "big").iterdir())
        assert (run / "tasks" / "index").stat().st_size == (n + 1) * (jobdir.INDEX_WIDTH + 1)
    # materialised, 200,000 tasks cost about 3.2 x the memory of 2,000 (the tasks as str,
    # the encoded list, the offsets, resolved.json as one string); streamed, about 1.15 x
    assert peaks[200_000] < 1.5 * peaks[2_000], peaks


def test_compile_of_a_big_grid_is_the_same_run_as_the_old_bytes(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(_grid_manifest(300, 70))
    result = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs"))
    resolved = json.loads((result.run.path / "resolved.json").read_bytes())
    tasks = resolved["run"]["tasks"]
    assert len(tasks) == 21_000
    commands, index = old_encode_tasks(tasks)
    assert (result.run.path / "tasks" / "commands").read_bytes() == commands
    assert (result.run.path / "tasks" / "index").read_bytes() == index
    assert (result.run.path / "resolved.json").read_bytes() == old_json(resolved)
    generated = {str(p.relative_to(result.run.path)): p.read_bytes() for p in result.run.path.rglob("*")
                 if p.is_file() and p.name != "manifest.yaml"}
    assert old_content_hash(generated)[:12] == result.run.path.name
