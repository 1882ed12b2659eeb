"""mcompile diff: golden cases, job directories, git revisions, exit codes, speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifest_compiler.cli import main
from manifest_compiler.diff import diff_specs, summary_against_previous
from manifest_compiler.diff.compare import diff_manifests
from manifest_compiler.diff.formats import FORMATTER_BY_NAME, format_markdown, format_text
from manifest_compiler.diff.sides import Side, load_side
from manifest_compiler.errors import DiffError, DiffManifestError
from manifest_compiler.pipeline import compile_manifest

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted(p for p in (ROOT / "tests" / "diff").iterdir() if (p / "a.yaml").is_file())
EXPECTED = {"text": "expected.txt", "markdown": "expected.md", "json": "expected.json"}

GRID = """\
version: 1
name: lr-grid
project: cifar-study
cluster: {account: def-someone}
container: {image: $SCRATCH/containers/cifar.sif, entry: exec}
resources: {time: 3h, mem: 8G, gpus: 1}
run:
  grid:
    template: python train.py --lr {{ lr }} --seed {{ seed }}
    parameters: {lr: [0.1, 0.01], seed: [1, 2, 3]}
"""


def _diff(a: str, b: str | None = None, *, runs: Path | str = "runs", fmt: str = "json", colour: bool = False) -> tuple[int, str]:
    """The exit code and the output of `mcompile diff A [B] --format FMT`, as the CLI makes them."""
    result = diff_specs(a, b, runs_dir=str(runs))
    return (1 if result.changes else 0), FORMATTER_BY_NAME[fmt](result, colour)


def _changes(out: str) -> list[dict[str, object]]:
    return json.loads(out)["changes"]


# ------------------------------------------------------------------ golden cases


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_golden(case: Path, fmt: str, monkeypatch: pytest.MonkeyPatch, update_golden: bool) -> None:
    monkeypatch.chdir(case)
    code, out = _diff("a.yaml", "b.yaml", fmt=fmt)
    expected = case / EXPECTED[fmt]
    if update_golden:
        expected.write_text(out, encoding="utf-8")
    assert out == expected.read_text(encoding="utf-8"), f"{expected} differs; review and run pytest --update-golden"
    changes = json.loads((case / "expected.json").read_text(encoding="utf-8"))["changes"]
    assert code == (1 if changes else 0)


def _golden_changes(case: str) -> list[dict[str, object]]:
    return json.loads((ROOT / "tests" / "diff" / case / "expected.json").read_text(encoding="utf-8"))["changes"]


def test_resource_bump_is_scheduling_only() -> None:
    changes = _golden_changes("resource-bump")
    assert [c["path"] for c in changes] == ["resources.mem", "resources.time"]
    assert {c["impact"] for c in changes} == {"scheduling"}


def test_new_grid_seed_adds_tasks() -> None:
    changes = _golden_changes("grid-new-seed")
    assert [(c["path"], c["kind"], c["impact"]) for c in changes] == [
        ("run.parameters.seed[3]", "added", "results"),
        ("run.tasks[3]", "added", "results"),
        ("run.tasks[7]", "added", "results"),
    ]
    assert changes[1]["new"] == "python train.py --lr 0.1 --seed 4 --out /scratch_storage"


@pytest.mark.parametrize("case", ["reordered-keys", "time-forms"])
def test_same_meaning_is_no_change(case: str) -> None:
    assert _golden_changes(case) == []


def test_grid_values_reordered_are_reported_reordered_without_task_changes() -> None:
    assert _golden_changes("grid-reordered") == [{
        "section": "run", "path": "run.parameters.seed", "kind": "reordered",
        "old": [1, 2, 3], "new": [3, 1, 2], "impact": "scheduling",
    }]


def test_commands_reordered_is_one_reordered_change() -> None:
    assert [(c["path"], c["kind"]) for c in _golden_changes("commands-reordered")] == [("run.tasks", "reordered")]


def test_extends_base_change_shows_in_child() -> None:
    changes = {c["path"]: c["impact"] for c in _golden_changes("extends-base-changed")}
    assert changes == {"cluster.modules[0]": "scheduling", "env.WANDB_PROJECT": "results"}


def test_secrets_compare_files_never_values() -> None:
    changes = _golden_changes("secrets-file")
    assert changes == [{"section": "secrets", "path": "secrets.WANDB_API_KEY.file", "kind": "changed",
                        "old": "~/wandb_credentials.txt", "new": "~/.config/wandb/api_key", "impact": "results"}]


def test_gpus_count_is_scheduling_but_gpu_mode_affects_results() -> None:
    changes = {c["path"]: c["impact"] for c in _golden_changes("gpus-added")}
    assert changes == {"container.gpu": "results", "resources.gpu_type": "scheduling", "resources.gpus": "scheduling"}


def test_bind_mode_path() -> None:
    assert [c["path"] for c in _golden_changes("bind-mode")] == ["container.binds[0].mode"]


def test_summary_line_first() -> None:
    text = (ROOT / "tests" / "diff" / "container-image" / "expected.txt").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "1 change: 1 affects results, 0 scheduling only"
    text = (ROOT / "tests" / "diff" / "resource-bump" / "expected.txt").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "2 changes: 0 affect results, 2 scheduling only"


# ------------------------------------------------------------------ the comparison


def _side(resolved: dict[str, object], label: str = "x") -> Side:
    return Side(label, resolved, "manifest")


def _resolved(tmp_path: Path, text: str, name: str = "m.yaml") -> dict[str, object]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return load_side(str(tmp_path / name), runs_dir=str(tmp_path / "runs")).resolved


def test_removing_first_bind_is_one_removal(tmp_path: Path) -> None:
    base = GRID.replace("entry: exec}", "entry: exec, binds: [{source: /a, target: /a}, {source: /b, target: /b}]}")
    a = _resolved(tmp_path, base, "a.yaml")
    b = _resolved(tmp_path, base.replace("{source: /a, target: /a}, ", ""), "b.yaml")
    changes = diff_manifests(_side(a), _side(b)).changes
    assert [(c.path, c.kind) for c in changes] == [("container.binds[0]", "removed")]
    assert changes[0].old == {"source": "/a", "target": "/a", "mode": "rw"}


def test_data_section_added_and_removed(tmp_path: Path) -> None:
    a = _resolved(tmp_path, GRID, "a.yaml")
    b = _resolved(tmp_path, GRID + "data: {subsets: [cifar10], stage: bind}\n", "b.yaml")
    [added] = diff_manifests(_side(a), _side(b)).changes
    assert (added.path, added.kind, added.impact, added.old) == ("data", "added", "results", None)
    [removed] = diff_manifests(_side(b), _side(a)).changes
    assert (removed.path, removed.kind, removed.new) == ("data", "removed", None)


def test_changed_task_keeps_index(tmp_path: Path) -> None:
    a = _resolved(tmp_path, GRID, "a.yaml")
    b = _resolved(tmp_path, GRID.replace("[0.1, 0.01]", "[0.1, 0.02]"), "b.yaml")
    changes = diff_manifests(_side(a), _side(b)).changes
    assert [(c.path, c.kind) for c in changes] == [
        ("run.parameters.lr[1]", "changed"),
        ("run.tasks[3]", "changed"), ("run.tasks[4]", "changed"), ("run.tasks[5]", "changed"),
    ]
    assert (changes[1].old, changes[1].new) == ("python train.py --lr 0.01 --seed 1", "python train.py --lr 0.02 --seed 1")


def test_scheduling_and_results_classification_table() -> None:
    base: dict[str, object] = {
        "name": "n", "project": "p", "description": None,
        "cluster": {"account": "a", "partition": None, "qos": None, "constraint": None, "modules": [],
                    "scratch": "$SCRATCH", "local_tmp": "$SLURM_TMPDIR", "sbatch_options": {}},
        "container": {"image": "i.sif", "stage_image": True, "cleanenv": True},
        "resources": {"time": "0-01:00:00", "max_parallel": None},
        "run": {"kind": "commands", "tasks": ["x"]},
        "outputs": {"dir": "d", "logs": "l"},
        "env": {}, "secrets": {},
    }
    edits = {
        ("cluster", "partition"): "scheduling", ("cluster", "qos"): "scheduling",
        ("cluster", "constraint"): "scheduling", ("cluster", "scratch"): "scheduling",
        ("cluster", "local_tmp"): "scheduling", ("cluster", "account"): "scheduling",
        ("container", "stage_image"): "scheduling", ("container", "image"): "results",
        ("container", "cleanenv"): "results", ("resources", "max_parallel"): "scheduling",
        ("outputs", "logs"): "scheduling", ("outputs", "dir"): "results",
        ("description",): "scheduling", ("name",): "results", ("project",): "results",
    }
    for path, impact in edits.items():
        new = json.loads(json.dumps(base))
        holder = new
        for part in path[:-1]:
            holder = holder[part]
        holder[path[-1]] = "changed-value"
        [change] = diff_manifests(_side(base), _side(new)).changes
        assert change.impact == impact, path


def test_many_task_changes_are_capped_in_text_and_markdown(tmp_path: Path) -> None:
    commands = "".join(f"    - python run.py {i}\n" for i in range(50))
    a_text = GRID.split("run:")[0] + "run:\n  commands:\n" + commands
    a = _resolved(tmp_path, a_text, "a.yaml")
    b = _resolved(tmp_path, a_text.replace("python run.py", "python run2.py"), "b.yaml")
    result = diff_manifests(_side(a, "a"), _side(b, "b"))
    assert len(result.changes) == 50
    text = format_text(result)
    assert text.count("run.tasks[") == 20 and "… 30 more task changes (--format json lists them all)" in text
    assert text.rstrip().endswith("more task changes (--format json lists them all)")
    assert format_markdown(result).count("run.tasks[") == 20


def test_markdown_escapes_pipes_and_backticks(tmp_path: Path) -> None:
    a_text = GRID.split("run:")[0] + "run:\n  commands:\n    - python run.py | tee log\n"
    a = _resolved(tmp_path, a_text, "a.yaml")
    b = _resolved(tmp_path, a_text.replace("| tee log", "| tee `date`.log"), "b.yaml")
    md = format_markdown(diff_manifests(_side(a, "a"), _side(b, "b")))
    row = next(line for line in md.splitlines() if "run.tasks[0]" in line)
    assert row == ('| run | `run.tasks[0]` | `"python run.py \\| tee log"` | '
                   '``"python run.py \\| tee `date`.log"`` | **affects results** |')
    assert row.count(" | ") == 4  # every pipe inside a cell is escaped


def test_colour_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "tests" / "diff" / "resource-bump")
    assert "\033[" not in _diff("a.yaml", "b.yaml", fmt="text")[1]
    coloured = _diff("a.yaml", "b.yaml", fmt="text", colour=True)[1]
    assert "\033[36mscheduling\033[0m" in coloured
    assert "\033[" not in _diff("a.yaml", "b.yaml", fmt="markdown")[1] + _diff("a.yaml", "b.yaml", fmt="json")[1]


def test_ten_thousand_tasks_one_differs_is_fast(tmp_path: Path) -> None:
    a = {"run": {"kind": "commands", "tasks": [f"python train.py --seed {i}" for i in range(10_000)]}}
    b = json.loads(json.dumps(a))
    b["run"]["tasks"][5000] = "python train.py --seed 5000 --lr 0.1"
    start = time.perf_counter()
    changes = diff_manifests(_side(a), _side(b)).changes
    assert time.perf_counter() - start < 0.5
    assert [(c.path, c.kind) for c in changes] == [("run.tasks[5000]", "changed")]


def test_sweep_of_identical_tasks_stays_fast() -> None:
    a = {"run": {"kind": "sweep", "agents": 20_000, "tasks": ["wandb agent x"] * 20_000}}
    b = {"run": {"kind": "sweep", "agents": 30_000, "tasks": ["wandb agent x"] * 30_000}}
    start = time.perf_counter()
    changes = diff_manifests(_side(a), _side(b)).changes
    assert time.perf_counter() - start < 2
    assert len(changes) == 1 + 10_000 and changes[1].path == "run.tasks[20000]"


# ------------------------------------------------------- job directories and runs


def test_job_directory_vs_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = ROOT / "tests" / "diff" / "resource-bump"
    run = compile_manifest(str(case / "a.yaml"), runs_dir=str(tmp_path / "runs")).run.path
    code, out = _diff(str(run), str(case / "b.yaml"))
    assert code == 1
    assert _changes(out) == _golden_changes("resource-bump")
    assert json.loads(out)["a"] == str(run)
    assert _diff(str(run), str(case / "a.yaml"))[0] == 0


def test_name_and_hash_under_runs(tmp_path: Path) -> None:
    case = ROOT / "tests" / "diff" / "resource-bump"
    run = compile_manifest(str(case / "a.yaml"), runs_dir=str(tmp_path / "runs")).run.path
    runs = tmp_path / "runs"
    assert _diff(f"resnet50-baseline/{run.name}", str(case / "a.yaml"), runs=runs)[0] == 0
    code, out = _diff("resnet50-baseline", str(case / "b.yaml"), runs=runs)
    assert code == 1 and json.loads(out)["a"] == str(run)


def test_only_a_compares_with_newest_previous_run(tmp_path: Path) -> None:
    case = ROOT / "tests" / "diff" / "resource-bump"
    runs = tmp_path / "runs"
    first = compile_manifest(str(case / "a.yaml"), runs_dir=str(runs)).run.path
    code, out = _diff(str(case / "b.yaml"), runs=runs)
    assert code == 1
    doc = json.loads(out)
    assert (doc["a"], doc["b"]) == (str(first), str(case / "b.yaml"))
    assert _changes(out) == _golden_changes("resource-bump")
    assert _diff(str(case / "a.yaml"), runs=runs)[0] == 0


def test_only_a_without_previous_run_is_an_error(tmp_path: Path) -> None:
    case = ROOT / "tests" / "diff" / "resource-bump"
    with pytest.raises(DiffError) as info:
        _diff(str(case / "a.yaml"), runs=tmp_path / "runs")
    assert info.value.exit_code == 2
    assert str(info.value) == (f"no compiled run of 'resnet50-baseline' under {tmp_path / 'runs'} to compare "
                               f"{case / 'a.yaml'} with; compile it first or name both sides (mcompile diff A B)")


def test_summary_against_previous(tmp_path: Path) -> None:
    case = ROOT / "tests" / "diff" / "resource-bump"
    runs = str(tmp_path / "runs")
    first = compile_manifest(str(case / "a.yaml"), runs_dir=runs)
    assert summary_against_previous(first.plan.resolved, runs, exclude=first.run.path) is None
    second = compile_manifest(str(case / "b.yaml"), runs_dir=runs)
    line = summary_against_previous(second.plan.resolved, runs, exclude=second.run.path)
    assert line == f"since {first.run.path}: 2 changes: 0 affect results, 2 scheduling only"


# ------------------------------------------------------------------ git revisions


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository: commit 1 (base + child), commit 2 (both changed), then a working-tree edit."""
    case = ROOT / "tests" / "diff" / "extends-base-changed"
    repo = tmp_path / "repo"
    (repo / "manifests").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.name", "Test")
    _git(repo, "config", "user.email", "test@example.invalid")
    _git(repo, "config", "commit.gpgsign", "false")
    shutil.copy(case / "base-a.yaml", repo / "manifests" / "base.yaml")
    shutil.copy(case / "a.yaml", repo / "manifests" / "m.yaml")
    m = repo / "manifests" / "m.yaml"
    m.write_text(m.read_text().replace("base-a.yaml", "base.yaml"))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    shutil.copy(case / "base-b.yaml", repo / "manifests" / "base.yaml")  # modules + env
    m.write_text(m.read_text().replace("time: 1d12h", "time: 2d"))
    _git(repo, "commit", "-q", "-am", "second")
    m.write_text(m.read_text().replace("--seed 2", "--seed 3"))
    monkeypatch.chdir(repo)
    return repo


def test_revision_vs_working_tree(repo: Path) -> None:
    code, out = _diff("HEAD:manifests/m.yaml", "manifests/m.yaml")
    assert code == 1
    assert [(c["path"], c["kind"]) for c in _changes(out)] == [("run.tasks[1]", "changed")]


def test_extends_resolves_inside_the_revision(repo: Path) -> None:
    code, out = _diff("HEAD~1:manifests/m.yaml", "HEAD:manifests/m.yaml")
    assert code == 1
    assert [c["path"] for c in _changes(out)] == ["cluster.modules[0]", "resources.time", "env.WANDB_PROJECT"]
    assert json.loads(out)["a"] == "HEAD~1:manifests/m.yaml"
    assert _diff("HEAD:manifests/m.yaml", "HEAD:manifests/m.yaml")[0] == 0


def test_revision_path_relative_to_current_directory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo / "manifests")
    assert _diff("HEAD:./m.yaml", "HEAD:manifests/m.yaml")[0] == 0
    assert _diff("HEAD~1:./m.yaml", "m.yaml")[0] == 1


def test_bad_revision_quotes_git(repo: Path) -> None:
    with pytest.raises(DiffError) as info:
        _diff("nope:manifests/m.yaml", "manifests/m.yaml")
    assert info.value.exit_code == 2
    assert str(info.value) == "nope:manifests/m.yaml: cannot read: git show nope:manifests/m.yaml failed: fatal: invalid object name 'nope'."
    with pytest.raises(DiffError, match=r"fatal: path 'manifests/x.yaml' does not exist in 'HEAD'"):
        _diff("HEAD:manifests/x.yaml", "manifests/m.yaml")


def test_missing_base_in_revision_is_located(repo: Path) -> None:
    m = repo / "manifests" / "m.yaml"
    m.write_text(m.read_text().replace("extends: base.yaml", "extends: gone.yaml"))
    _git(repo, "commit", "-q", "-am", "broken")
    with pytest.raises(DiffManifestError) as info:
        _diff("HEAD:manifests/m.yaml", "HEAD~1:manifests/m.yaml")
    assert info.value.exit_code == 2
    [problem] = info.value.problems
    assert str(problem).startswith("HEAD:manifests/m.yaml:4:10: extends: cannot read 'gone.yaml' (HEAD:manifests/gone.yaml)")


def test_extends_cycle_in_revision(repo: Path) -> None:
    base = repo / "manifests" / "base.yaml"
    base.write_text(base.read_text() + "extends: m.yaml\n")
    _git(repo, "commit", "-q", "-am", "cycle")
    with pytest.raises(DiffManifestError, match="extends cycle: HEAD:manifests/m.yaml -> HEAD:manifests/base.yaml "
                                                "-> HEAD:manifests/m.yaml"):
        _diff("HEAD:manifests/m.yaml", "manifests/m.yaml")


def test_invalid_manifest_in_revision_is_validated(repo: Path) -> None:
    m = repo / "manifests" / "m.yaml"
    m.write_text(m.read_text().replace("time: 2d", "time: 2d\n  gpus: two"))
    _git(repo, "commit", "-q", "-am", "invalid")
    with pytest.raises(DiffManifestError) as info:
        _diff("HEAD:manifests/m.yaml", "HEAD~1:manifests/m.yaml")
    assert info.value.exit_code == 2
    assert [str(p) for p in info.value.problems] == [
        "HEAD:manifests/m.yaml:8:9: resources.gpus: expected an integer, got the string 'two'"
    ]


def test_outside_a_git_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(DiffError, match=r"^git rev-parse --show-prefix failed: fatal: not a git repository"):
        _diff("HEAD:m.yaml", "HEAD:m.yaml")


def test_existing_path_with_colon_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "HEAD:m.yaml").write_text(GRID, encoding="utf-8")
    assert _diff("HEAD:m.yaml", "HEAD:m.yaml")[0] == 0


# -------------------------------------------------------------------- exit codes


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    with pytest.raises(DiffManifestError) as info:
        _diff(str(tmp_path / "missing.yaml"), str(tmp_path / "missing.yaml"))
    assert info.value.exit_code == 2
    assert str(info.value) == f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory"


def test_invalid_manifest_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(GRID.replace("gpus: 1", "gpus: two"), encoding="utf-8")
    (tmp_path / "good.yaml").write_text(GRID, encoding="utf-8")
    with pytest.raises(DiffManifestError) as info:
        _diff(str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml"))
    assert info.value.exit_code == 2
    assert str(info.value) == f"{tmp_path / 'bad.yaml'}:6:38: resources.gpus: expected an integer, got the string 'two'"


def test_directory_without_resolved_json(tmp_path: Path) -> None:
    with pytest.raises(DiffError, match="not a job directory"):
        _diff(str(tmp_path), str(tmp_path))


def test_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "a", "b", "--format", "html"]) == 2
    assert "invalid choice: 'html'" in capsys.readouterr().err


def test_cli_exit_codes_and_streams(tmp_path: Path) -> None:
    case = ROOT / "tests" / "diff" / "resource-bump"
    env = {**os.environ, "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "manifest_compiler", "diff", *args], cwd=case, env=env,
                              capture_output=True, text=True, check=False)

    same = run("a.yaml", "a.yaml")
    assert (same.returncode, same.stderr) == (0, "")
    differ = run("a.yaml", "b.yaml", "--format", "markdown")
    assert differ.returncode == 1 and differ.stdout == (case / "expected.md").read_text(encoding="utf-8")
    missing = run("a.yaml", "missing.yaml")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == ["missing.yaml: cannot read: No such file or directory"]
    assert "Traceback" not in missing.stderr
    bad_rev = run("no-such-rev:a.yaml", "a.yaml")
    assert bad_rev.returncode == 2 and len(bad_rev.stderr.strip().splitlines()) == 1
    no_run = run("a.yaml", "--runs", str(tmp_path))
    assert no_run.returncode == 2 and "no compiled run of 'resnet50-baseline'" in no_run.stderr


def test_other_reordered_list_keeps_its_impact(tmp_path: Path) -> None:
    base = GRID.replace("{account: def-someone}", "{account: def-someone, modules: [a/1, b/2]}")
    base = base.replace("entry: exec}", "entry: exec, binds: [{source: /a, target: /a}, {source: /b, target: /b}]}")
    a = _resolved(tmp_path, base, "a.yaml")
    b = _resolved(tmp_path, base.replace("[a/1, b/2]", "[b/2, a/1]").replace(
        "{source: /a, target: /a}, {source: /b, target: /b}", "{source: /b, target: /b}, {source: /a, target: /a}"), "b.yaml")
    changes = diff_manifests(_side(a), _side(b)).changes
    assert [(c.path, c.kind, c.impact) for c in changes] == [
        ("cluster.modules", "reordered", "scheduling"),
        ("container.binds", "reordered", "results"),
    ]
    assert (changes[0].old, changes[0].new) == (["a/1", "b/2"], ["b/2", "a/1"])


def test_grid_parameter_added_and_kind_change(tmp_path: Path) -> None:
    a = _resolved(tmp_path, GRID, "a.yaml")
    b = _resolved(tmp_path, GRID.replace("seed: [1, 2, 3]}", "seed: [1, 2, 3], wd: [0]}").replace(
        "--seed {{ seed }}", "--seed {{ seed }} --wd {{ wd }}"), "b.yaml")
    changes = diff_manifests(_side(a), _side(b)).changes
    assert [(c.path, c.kind) for c in changes][:2] == [("run.parameters.wd", "added"), ("run.template", "changed")]
    assert len(changes) == 2 + 6 and changes[0].new == [0]
    c = _resolved(tmp_path, GRID.split("run:")[0] + "run:\n  commands: [python train.py --lr 0.1 --seed 1]\n", "c.yaml")
    changes = diff_manifests(_side(a), _side(c)).changes
    assert [(ch.path, ch.kind) for ch in changes] == [
        ("run.kind", "changed"), ("run.parameters", "removed"), ("run.template", "removed"),
        ("run.tasks[1]", "removed"), ("run.tasks[2]", "removed"), ("run.tasks[3]", "removed"),
        ("run.tasks[4]", "removed"), ("run.tasks[5]", "removed"),
    ]


def test_parameter_value_types_differ(tmp_path: Path) -> None:
    a = _resolved(tmp_path, GRID, "a.yaml")
    b = _resolved(tmp_path, GRID.replace("seed: [1, 2, 3]", "seed: [1, 2.0, 3]"), "b.yaml")
    changes = diff_manifests(_side(a), _side(b)).changes
    assert (changes[0].path, changes[0].old, changes[0].new) == ("run.parameters.seed[1]", 2, 2.0)


def test_deepdiff_not_imported_when_only_tasks_differ() -> None:
    code = (
        "import sys, json; from manifest_compiler.diff.sides import Side; from manifest_compiler.diff.compare import diff_manifests\n"
        "a = {'name': 'n', 'run': {'kind': 'grid', 'parameters': {'s': [1, 2]}, 'tasks': ['x 1', 'x 2']}}\n"
        "b = {'name': 'n', 'run': {'kind': 'grid', 'parameters': {'s': [1, 3]}, 'tasks': ['x 1', 'x 3']}}\n"
        "r = diff_manifests(Side('a', a, 'run'), Side('b', b, 'run'))\n"
        "print(len(r.changes), 'deepdiff' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "False"]


def test_huge_task_lists_that_all_differ_are_compared_by_position_quickly() -> None:
    import time

    from manifest_compiler.diff.compare import _ALIGN_AT_MOST, _sequence_changes

    n = _ALIGN_AT_MOST + 5_000
    old = [f"python t.py --seed {i}" for i in range(n)]
    new = [f"python t.py --seed {i + 1}x" for i in range(n + 10)]
    start = time.perf_counter()
    changes = _sequence_changes("run.tasks", old, new)
    assert time.perf_counter() - start < 5  # difflib alone would take minutes here
    assert [c.kind for c in changes].count("changed") == n and [c.kind for c in changes].count("added") == 10
    assert changes[0].path == "run.tasks[0]" and changes[-1].path == f"run.tasks[{n + 9}]"


def test_tasks_compared_by_position_report_only_those_that_differ() -> None:
    from manifest_compiler.diff.compare import _ALIGN_AT_MOST, _sequence_changes

    n = 3 * _ALIGN_AT_MOST
    old = [f"python t.py --seed {i}" for i in range(n)]
    new = [c + " --x" if i % 3 == 0 else c for i, c in enumerate(old)]  # a third differ, spread out
    changes = _sequence_changes("run.tasks", old, new)
    assert [c.path for c in changes] == [f"run.tasks[{i}]" for i in range(0, n, 3)]
    assert all(c.kind == "changed" and c.old != c.new for c in changes)


def test_summary_against_previous_skips_huge_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import manifest_compiler.diff as diff

    src = (ROOT / "manifests" / "grid.yaml").read_text()
    m = tmp_path / "m.yaml"
    m.write_text(src)
    runs = str(tmp_path / "runs")
    first = compile_manifest(str(m), runs_dir=runs)  # 6 tasks
    m.write_text(src.replace("seed: [1, 2, 3]", "seed: [1, 2]"))
    second = compile_manifest(str(m), runs_dir=runs)  # 4 tasks
    monkeypatch.setattr(diff, "SUMMARY_TASKS_AT_MOST", 5)
    line = summary_against_previous(second.plan.resolved, runs, exclude=second.run.path)
    assert line == f"since {first.run.path}: not compared (6 tasks; `mcompile diff {first.run.path} {second.run.path}` compares them)"
    monkeypatch.setattr(diff, "SUMMARY_TASKS_AT_MOST", 6)
    line = summary_against_previous(second.plan.resolved, runs, exclude=second.run.path)
    assert line is not None and line.startswith(f"since {first.run.path}: ") and "not compared" not in line


def test_a_diff_of_two_job_directories_reads_no_yaml(tmp_path: Path) -> None:
    """Job directories hold resolved.json: the YAML parser is not even imported."""
    runs = tmp_path / "runs"
    for seeds in ("[1, 2, 3]", "[1, 2, 4]"):
        manifest = tmp_path / "m.yaml"
        manifest.write_text(GRID.replace("[1, 2, 3]", seeds))
        compile_manifest(str(manifest), runs_dir=str(runs))
    old, new = sorted((runs / "lr-grid").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    code = (
        "import sys; from manifest_compiler.cli import main\n"
        f"code = main(['diff', {str(old)!r}, {str(new)!r}, '--format', 'json'])\n"
        "print(code, 'yaml' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert {c["path"] for c in json.loads(proc.stdout)["changes"]} >= {"run.parameters.seed[2]", "run.tasks[2]"}
    assert proc.stderr.split() == ["1", "False"]
