"""`mcompile import -- <job_submitter.sh arguments>`: the flags, the decisions, the refusals.

Runs the CLI in a child process in a folder named like a project (its name is the project, as
job_submitter.sh took it) with its own HOME. What the imported manifests compile to, compared
with what the old scripts requested, is tests/test_import_equivalence.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifest_compiler.importer import FLAGS, import_invocation
from manifest_compiler.pipeline import check_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "my-project"
    folder.mkdir()
    (folder / "experiment_configurations.txt").write_text("python main.py --lr 0.1\n")
    (tmp_path / "home").mkdir()
    return folder


def mcompile_import(project: Path, *args: str, home: Path | None = None,
                    scratch: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCRATCH"}
    env.update({"HOME": str(home or project.parent / "home"), "PYTHONPATH": f"{ROOT}:{env.get('PYTHONPATH', '')}", "NO_COLOR": "1"})
    if scratch is not None:
        env["SCRATCH"] = str(scratch)
    return subprocess.run([sys.executable, "-m", "manifest_compiler", "import", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60)


IMAGE = ["--singularity-container", "/images/app.sif", "--mem", "16G"]


def _doc(text: str) -> dict:
    return yaml.safe_load(text)


def test_every_flag_becomes_its_field(project: Path) -> None:
    (project / "configs").mkdir()
    (project / "configs" / "lr.txt").write_text("python main.py --lr 1\n")
    proc = mcompile_import(project, "--", "--account", "def-me", "--gpus", "2", "--gpu-type", "v100l", "--cpus", "4",
                           "--mem", "32G", "--time", "1-02:00:00", "--num-nodes", "1", "--exp-name", "lr",
                           "--job-type", "standard", "--data", "data/imagenet/train", "data/mnist",
                           "--singularity-container", "/images/app.sif", "--workdir", "/workdir", "--configs", "configs/lr.txt")
    assert proc.returncode == 0, proc.stderr
    assert _doc(proc.stdout) == {
        "version": 1, "name": "lr", "project": "my-project",
        "cluster": {"account": "def-me"},
        "container": {"image": "/images/app.sif", "workdir": "/workdir"},
        "data": {"subsets": ["imagenet/train", "mnist"], "stage": "archive"},
        "resources": {"time": "1-02:00:00", "nodes": 1, "cpus_per_task": 4, "mem": "32G", "gpus": 2, "gpu_type": "v100l"},
        "run": {"commands_file": "configs/lr.txt"},
    }
    assert proc.stdout.startswith("# yaml-language-server: $schema=experiment.v1.schema.json\n# Imported by `mcompile import`")
    assert "hostname" in proc.stderr and "extends" in proc.stderr  # the untranslatable cluster branches are named


def test_the_flag_table_is_every_flag_of_the_seed_page() -> None:
    seed = Path("/work/shared/seed/seed-system.md")
    if not seed.is_file():
        pytest.skip("the seed pages are not on this machine")
    flags_line = seed.read_text().split("## job_submitter.sh", 1)[1].split("- The project name", 1)[0]
    import re

    assert sorted(set(re.findall(r"`(--[a-z-]+)", flags_line))) == sorted(FLAGS)


def test_defaults_time_one_hour_name_from_the_project(project: Path) -> None:
    proc = mcompile_import(project, "--", *IMAGE)
    assert proc.returncode == 0, proc.stderr
    doc = _doc(proc.stdout)
    assert doc["resources"] == {"time": "1h", "mem": "16G"} and doc["name"] == "my-project"
    assert doc["run"] == {"commands_file": "experiment_configurations.txt"}
    assert "no --exp-name" in proc.stderr and "no --workdir" in proc.stderr


def test_torchrun_multiplies_cpus_by_gpus_and_says_so(project: Path) -> None:
    proc = mcompile_import(project, "--", *IMAGE, "--job-type", "distributed", "--which-distributed", "torchrun",
                           "--gpus", "4", "--cpus", "3", "--num-nodes", "2")
    assert proc.returncode == 0, proc.stderr
    doc = _doc(proc.stdout)
    assert doc["resources"]["cpus_per_task"] == 12 and doc["resources"]["nodes"] == 2
    assert doc["run"]["launcher"] == "torchrun" and "tasks_per_node" not in doc["resources"]
    assert "written as cpus_per_task: 12 (3 x 4)" in proc.stderr


def test_lightning_is_srun_with_a_task_per_gpu(project: Path) -> None:
    proc = mcompile_import(project, "--", *IMAGE, "--job-type", "distributed", "--which-distributed", "lightning",
                           "--gpus", "4", "--cpus", "3", "--num-nodes", "2")
    assert proc.returncode == 0, proc.stderr
    doc = _doc(proc.stdout)
    assert doc["resources"]["tasks_per_node"] == 4 and doc["resources"]["cpus_per_task"] == 3
    assert doc["run"]["launcher"] == "srun"


def test_the_wandb_key_file_becomes_a_secret(project: Path) -> None:
    home = project.parent / "home"
    (home / "wandb_credentials.txt").write_text("0123456789abcdef\n")
    proc = mcompile_import(project, "--", *IMAGE)
    assert proc.returncode == 0, proc.stderr
    assert _doc(proc.stdout)["secrets"] == {"WANDB_API_KEY": {"file": "~/wandb_credentials.txt"}}
    assert "0123456789abcdef" not in proc.stdout + proc.stderr
    assert "env" not in _doc(proc.stdout)


def test_a_sweep_leaves_marked_fields_that_validate_rejects(project: Path) -> None:
    (project / "experiment_configurations.txt").write_text("# sweep\nwandb agent --count 1 me/my-project/SWEEP_ID\n")
    out = project / "sweep.yaml"
    proc = mcompile_import(project, "--output", "sweep.yaml", "--", *IMAGE, "--job-type", "sweep", "--exp-name", "sw")
    assert proc.returncode == 0, proc.stderr
    assert "fill in run.sweep.id, run.sweep.agents" in proc.stderr
    problems = [(p.path, p.level) for p in check_file(str(out))[1]]
    assert problems == [("run.sweep.id", "error"), ("run.sweep.agents", "error")]
    assert "<FILL IN:" in out.read_text()
    # the answers given as options: it validates
    proc = mcompile_import(project, "--output", "sweep2.yaml", "--sweep-id", "abc123xy", "--agents", "6", "--",
                           *IMAGE, "--job-type", "sweep", "--exp-name", "sw")
    assert proc.returncode == 0, proc.stderr
    doc = _doc((project / "sweep2.yaml").read_text())
    assert doc["run"] == {"sweep": {"id": "me/my-project/abc123xy", "agents": 6, "runs_per_agent": 1}}
    assert check_file(str(project / "sweep2.yaml"))[1] == []
    assert "max_parallel: 10" in proc.stderr  # the throttle one cluster got by hostname


def test_a_sweep_needs_a_wandb_agent_line(project: Path) -> None:
    proc = mcompile_import(project, "--", *IMAGE, "--job-type", "sweep")
    assert proc.returncode == 2
    assert "no `wandb agent ... ENTITY/PROJECT/SWEEP_ID` line in experiment_configurations.txt" in proc.stderr


def test_unknown_flags_are_an_error_listing_the_known_ones(project: Path) -> None:
    proc = mcompile_import(project, "--", *IMAGE, "--partition", "gpu")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("mcompile import: unknown job_submitter.sh flag '--partition'; known flags: --account NAME,")
    assert all(flag in proc.stderr for flag in FLAGS)


@pytest.mark.parametrize(("args", "message"), [
    (["--singularity-container", "/images/app.img", "--mem", "1G"], "must end in .sif"),
    (["--mem", "1G"], "--singularity-container PATH.sif is required"),
    ([*IMAGE, "--job-type", "array"], "expected standard, distributed or sweep"),
    ([*IMAGE, "--gpu-type", "v100l"], "--gpu-type v100l needs --gpus N"),
    ([*IMAGE, "--gpus"], "--gpus needs a value"),
    ([*IMAGE, "--data", "other/set"], "expected data or data/SUBSET"),
    ([*IMAGE, "--configs", "missing.txt"], "cannot read the commands file"),
])
def test_what_the_scripts_refused_is_refused(project: Path, args: list[str], message: str) -> None:
    proc = mcompile_import(project, "--", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_data_whole_folder_is_listed_from_scratch(project: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    for name in ("b", "a", ".hidden"):
        (scratch / "my-project" / "data" / name).mkdir(parents=True)
    proc = mcompile_import(project, "--", *IMAGE, "--data", "data", scratch=scratch)
    assert proc.returncode == 0, proc.stderr
    assert _doc(proc.stdout)["data"] == {"subsets": ["a", "b"], "stage": "archive"}
    assert mcompile_import(project, "--", *IMAGE, "--data", "data").returncode == 2  # no $SCRATCH to list


def test_never_overwrites_without_force(project: Path) -> None:
    out = project / "experiment.yaml"
    out.write_text("mine\n")
    proc = mcompile_import(project, "--output", "experiment.yaml", "--", *IMAGE)
    assert proc.returncode == 2 and "exists; give --force" in proc.stderr
    assert out.read_text() == "mine\n"
    proc = mcompile_import(project, "--output", "experiment.yaml", "--force", "--", *IMAGE)
    assert proc.returncode == 0 and out.read_text().startswith("# yaml-language-server")


def test_the_commands_file_is_relative_to_the_output(project: Path) -> None:
    (project / "manifests").mkdir()
    proc = mcompile_import(project, "--output", "manifests/exp.yaml", "--", *IMAGE)
    assert proc.returncode == 0, proc.stderr
    doc = _doc((project / "manifests" / "exp.yaml").read_text())
    assert doc["run"]["commands_file"] == "../experiment_configurations.txt"
    assert check_file(str(project / "manifests" / "exp.yaml"))[1] == []


def test_a_relative_image_is_made_absolute_and_said(project: Path) -> None:
    proc = mcompile_import(project, "--", "--singularity-container", "app.sif", "--mem", "1G")
    assert proc.returncode == 0
    assert _doc(proc.stdout)["container"]["image"] == str(project / "app.sif")
    assert "written as the absolute path" in proc.stderr


def test_a_value_mcompile_refuses_is_shown_and_exits_1(project: Path) -> None:
    proc = mcompile_import(project, "--", "--singularity-container", "/a.sif", "--mem", "16GB")
    assert proc.returncode == 1
    assert "resources.mem" in proc.stderr and "write 16G" in proc.stderr
    assert proc.stdout.startswith("# yaml-language-server")  # written, for the user to fix


def test_a_standard_job_on_several_nodes_is_said(project: Path) -> None:
    proc = mcompile_import(project, "--", *IMAGE, "--num-nodes", "3")
    assert proc.returncode == 0, proc.stderr
    assert _doc(proc.stdout)["resources"]["nodes"] == 1
    assert "left the others idle" in proc.stderr


def test_import_needs_arguments(project: Path) -> None:
    proc = mcompile_import(project)
    assert proc.returncode == 2 and "give job_submitter.sh's arguments after --" in proc.stderr


def test_the_project_name_must_be_a_name(tmp_path: Path) -> None:
    folder = tmp_path / "my project"
    folder.mkdir()
    (folder / "experiment_configurations.txt").write_text("echo\n")
    with pytest.raises(Exception, match="not a valid project name"):
        import_invocation([*IMAGE], cwd=str(folder), home=str(tmp_path), output=None)


def test_the_readme_import_run_is_real(tmp_path: Path) -> None:
    """The README's `mcompile import` session, replayed in a folder named like its project: the
    same output, and the manifest it writes is manifests/imported.yaml (but for the schema line)."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Coming from job_submitter.sh", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block is not None
    project = tmp_path / "mnist-study"
    project.mkdir()
    shutil.copy(ROOT / "manifests" / "mnist-commands.txt", project)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "wandb_credentials.txt").write_text("key\n")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    env.pop("MCOMPILE_RUNS", None)
    ran = 0
    for chunk in re.split(r"^\$ ", block[1], flags=re.M)[1:]:
        command, _, expected = chunk.partition("\n")
        if not command.startswith("mcompile") or "--submit" in command:
            continue  # the cd; the submission needs a cluster (tests/e2e/test_imported_run.py submits one)
        proc = subprocess.run(["bash", "-c", command.replace("mcompile", f"{sys.executable} -m manifest_compiler", 1) + " 2>&1"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert proc.stdout == expected, command
        ran += 1
    assert ran == 3
    written = (project / "imported.yaml").read_text()
    example = (ROOT / "manifests" / "imported.yaml").read_text()
    assert written == example.replace("$schema=../schemas/experiment.v1.schema.json", "$schema=experiment.v1.schema.json", 1)


@pytest.mark.parametrize(("line", "per_agent"), [
    ("wandb agent --count 3 me/p/SWEEP_ID", 3),
    ("wandb agent me/p/SWEEP_ID --count 4", 4),
    ("  wandb agent me/p/SWEEP_ID", 1),
])
def test_the_agent_line_gives_entity_project_and_runs_per_agent(tmp_path: Path, line: str, per_agent: int) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "experiment_configurations.txt").write_text(f"# wandb agent --count 9 commented/out/x\n{line}\n")
    imported = import_invocation([*IMAGE, "--job-type", "sweep"], cwd=str(folder), home=str(tmp_path), output=None,
                                 sweep_id="abc123", agents=2)
    assert _doc(imported.text)["run"] == {"sweep": {"id": "me/p/abc123", "agents": 2, "runs_per_agent": per_agent}}
    assert imported.problems == [] and imported.fill_in == []
