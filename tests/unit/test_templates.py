"""The job script's template: every interpolated value goes through a filter that says how it is
made safe, and every launcher gives the same hooks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from manifest_compiler.render import double_quoted_text, double_quoted_vars, shell_number, shell_safe_word

TEMPLATES = Path(__file__).resolve().parents[2] / "manifest_compiler" / "templates"
JOB_SCRIPT = [TEMPLATES / "job.sbatch.j2", *sorted((TEMPLATES / "launchers").glob("*.sh.j2"))]
FILTERS = ("sh", "shpath", "sbatch", "word", "num", "dq", "dqvars")
# Interpolations that are not values: the launcher's hooks, a literal brace, and the rank step's
# line, which the launcher templates pass as a constant.
NOT_VALUES = re.compile(r"(launcher|distributed)\.\w+\(.*\)|'\{'|rank_step|wait_function\(\)")  # macros, not values
HOOKS = {"header", "die", "forward", "log_step", "env", "command", "announce", "start", "requeue_cleanup"}


def _interpolations(path: Path) -> list[str]:
    """The `{{ … }}` of the job script's parts (a launcher's plan.txt part, after `{# plan.txt #}`, is not shell)."""
    text = path.read_text(encoding="utf-8").partition("{# plan.txt #}")[0]
    return [m.strip("{}- ") for m in re.findall(r"\{\{-?.*?-?\}\}", text)]


@pytest.mark.parametrize("path", JOB_SCRIPT, ids=lambda p: p.name)
def test_every_value_goes_through_a_filter(path: Path) -> None:
    unfiltered = [expr for expr in _interpolations(path)
                  if not NOT_VALUES.fullmatch(expr) and expr.rpartition("|")[2].strip().split("(")[0] not in FILTERS
                  and 'map("word")' not in expr]
    assert unfiltered == []


@pytest.mark.parametrize("launcher", ["single", "srun", "torchrun"])
def test_every_launcher_gives_every_hook(launcher: str) -> None:
    text = (TEMPLATES / "launchers" / f"{launcher}.sh.j2").read_text(encoding="utf-8")
    assert set(re.findall(r"\{% macro (\w+)\(", text)) == HOOKS | {"plan_text"}
    used = set(re.findall(r"launcher\.(\w+)\(\)", (TEMPLATES / "job.sbatch.j2").read_text(encoding="utf-8")))
    assert used == HOOKS
    assert re.findall(r"launcher\.(\w+)\(\)", (TEMPLATES / "plan.txt.j2").read_text(encoding="utf-8")) == ["plan_text"]


@pytest.mark.parametrize("value", ["a b", "$HOME", "`id`", "a;b", "x*", "[0]", "~root", "a#b", "", "it's", True])
def test_word_refuses_what_bash_would_read(value: object) -> None:
    with pytest.raises(ValueError):
        shell_safe_word(value)


def test_word_number_and_double_quoted_text_pass_what_they_allow() -> None:
    assert shell_safe_word("data/set-1.v2@x+y=z") == "data/set-1.v2@x+y=z"
    assert shell_number(16) == "16"
    assert double_quoted_text("container.binds[0].source") == "container.binds[0].source"
    for bad in ("1", 1.5, True):
        with pytest.raises(ValueError):
            shell_number(bad)
    for bad in ("a$b", "a`b", 'a"b', "a\\b", "a\nb"):
        with pytest.raises(ValueError):
            double_quoted_text(bad)


def test_dqvars_passes_words_and_braced_references_only() -> None:
    assert double_quoted_vars("${log_name}_${MCOMPILE_JOB}_${MCOMPILE_TASK}.out") == "${log_name}_${MCOMPILE_JOB}_${MCOMPILE_TASK}.out"
    for bad in ("$x", "${x:-y}", "${1}", "$(id)", "`id`", "a b", 'a"b', "a\\b", "a\nb", "${x", "", True):
        with pytest.raises(ValueError):
            double_quoted_vars(bad)
