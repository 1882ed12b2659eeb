"""run.grid.zip: parameters paired element by element, against tables written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifest_compiler.cli import main
from manifest_compiler.pipeline import resolve_file
from manifest_compiler.resolve import GridTasks, grid_axes

HEAD = """\
version: 1
name: demo
project: study
container: {image: /images/app.sif}
resources: {time: 1h, mem: 4G}
run:
  grid:
"""


def tasks_of(tmp_path: Path, grid: str) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + grid)
    resolved, _, _ = resolve_file(str(path))
    return list(resolved["run"]["tasks"])


def test_a_zip_group_is_one_axis_at_its_first_parameter(tmp_path: Path) -> None:
    got = tasks_of(tmp_path, """\
    template: t --lr {{ lr }} --seed {{ seed }} --warmup {{ warmup }}
    parameters: {lr: [0.1, 0.01, 0.001], seed: [1, 2], warmup: [100, 200, 300]}
    zip: [[lr, warmup]]
""")
    assert got == [
        "t --lr 0.1 --seed 1 --warmup 100",
        "t --lr 0.1 --seed 2 --warmup 100",
        "t --lr 0.01 --seed 1 --warmup 200",
        "t --lr 0.01 --seed 2 --warmup 200",
        "t --lr 0.001 --seed 1 --warmup 300",
        "t --lr 0.001 --seed 2 --warmup 300",
    ]


def test_two_groups_and_a_group_listed_in_its_own_order(tmp_path: Path) -> None:
    got = tasks_of(tmp_path, """\
    template: t {{ a }} {{ b }} {{ c }} {{ d }} {{ e }}
    parameters: {a: [a1, a2], b: [b1, b2], c: [c1], d: [d1, d2], e: [e1]}
    zip: [[d, a], [c, e]]
""")
    # axes: [d, a] at a's place, b, [c, e] at c's place; the last varies fastest
    assert grid_axes(["a", "b", "c", "d", "e"], [["d", "a"], ["c", "e"]]) == [["d", "a"], ["b"], ["c", "e"]]
    assert got == [
        "t a1 b1 c1 d1 e1",
        "t a1 b2 c1 d1 e1",
        "t a2 b1 c1 d2 e1",
        "t a2 b2 c1 d2 e1",
    ]


def test_zipped_values_are_quoted_as_the_others(tmp_path: Path) -> None:
    got = tasks_of(tmp_path, """\
    template: 'run {{ name }} {{ path }}'
    parameters: {name: ["it's", plain], path: [/a b, /c]}
    zip: [[name, path]]
""")
    assert got == ["run 'it'\"'\"'s' '/a b'", "run plain /c"]


@pytest.mark.parametrize("size", [1, 2, 4096])
def test_indexing_iteration_and_text_batches_agree(size: int) -> None:
    tasks = GridTasks("x {{ a }}-{{ b }}-{{ c }}", {"a": [1, 2, 3], "b": ["p", "q", "r"], "c": [True, False]}, [["a", "b"]])
    listed = list(tasks)
    assert listed == ["x 1-p-true", "x 1-p-false", "x 2-q-true", "x 2-q-false", "x 3-r-true", "x 3-r-false"]
    assert [tasks[i] for i in range(len(tasks))] == listed and tasks[-1] == listed[-1]
    batches = list(tasks.text_batches(size))
    assert "".join(text for text, _ in batches) == "".join(f"{task}\n" for task in listed)


def test_diff_tells_a_zip_from_a_product(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = """\
    template: t {{ lr }} {{ warmup }}
    parameters: {lr: [1, 2], warmup: [10, 20]}
"""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(HEAD + grid)
    b.write_text(HEAD + grid + "    zip: [[lr, warmup]]\n")
    assert main(["diff", str(a), str(b)]) == 1
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert 'results     run.zip: added [["lr", "warmup"]]' in lines
    assert 'results     run.tasks[1]: removed "t 1 20"' in lines and 'results     run.tasks[2]: removed "t 2 10"' in lines
