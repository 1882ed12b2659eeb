"""Proof of equivalence: an imported job_submitter.sh invocation asks SLURM for what the old
scripts asked, binds what they bound, and hands every command to the runtime byte for byte.

The expected values are written by hand from the seed pages (../shared/seed/seed-system.md,
singularity-jobs-README.md), not computed by mcompile:
- job_submitter.sh passes `--account`, `--gres=gpu:N` or `--gres=gpu:TYPE:N`, `--cpus-per-task`
  (times the GPUs under torchrun), `--mem`, `--time` (one hour by default), `--nodes`, one task
  per node (lightning: one per GPU), and a sweep's `--array=1-N` (its `%10` throttle was a
  hostname branch of one cluster, which import names instead of writing);
- standard_job.sh runs `singularity run --nv --cleanenv --no-home --contain --writable-tmpfs`
  with binds /scratch_storage (from $SCRATCH/<project>/<exp>/…), /data (holding data/<subset>),
  $HOME, /db, /tmp and the workdir (all node-local but /scratch_storage), and hands the command
  to the image's runscript as its one argument.
Known differences, named by import on stderr and so not compared: the job name (mcompile:
<project>-<name>), the log file name, the results folder's name (`<job>_<task>`, was
`singularity_<job>_<task>`), the dummy /workdir_<job>_<task> without --workdir.

The job scripts run with bash outside SLURM, with the apptainer **test double**
(tests/doubles/apptainer: apptainer cannot be installed here), which logs the argv, binds and
flags it was given and runs the plan with bubblewrap. tests/e2e/test_imported_run.py runs an imported
manifest on a real SLURM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from helpers.jobs import run_task
from helpers.make_test_image import make_image
from helpers.sbatch import header_arguments

from manifest_compiler.importer import import_invocation
from manifest_compiler.pipeline import compile_manifest
from manifest_compiler.stage import stage_archives

if not shutil.which("bwrap"):
    if os.environ.get("CI"):
        pytest.fail("bubblewrap is not installed; scripts/setup.sh installs it", pytrace=False)
    pytest.skip("bubblewrap (bwrap) is not installed: run scripts/setup.sh", allow_module_level=True)

PROJECT = "seed-project"
IMAGE = "$SCRATCH/containers/app.sif"
OLD_FLAGS = ["--cleanenv", "--contain", "--no-home", "--writable-tmpfs"]  # standard_job.sh's, besides --nv


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One job_submitter.sh command line and what the old scripts requested for it (by hand)."""

    id: str
    args: list[str]
    commands: bytes  # the commands file (experiment_configurations.txt)
    sbatch: dict[str, str]  # the old scripts' sbatch options, name -> value
    binds: list[str]  # the targets the old job bound, /data shown as the subsets it holds
    gpu_flag: bool  # --nv
    sweep: dict[str, object] = dataclasses.field(default_factory=dict)  # import's --sweep-id/--agents


INVOCATIONS = [
    Invocation(
        "standard-typed-gpus-data-workdir",
        ["--account", "def-lab", "--gpus", "2", "--gpu-type", "v100l", "--cpus", "6", "--mem", "32G",
         "--time", "0-12:00:00", "--exp-name", "resnet", "--job-type", "standard", "--data", "data/imagenet/val", "data/mnist",
         "--singularity-container", IMAGE, "--workdir", "/workdir"],
        b"python main.py --data /data/mnist --out /scratch_storage\n",
        {"account": "def-lab", "gres": "gpu:v100l:2", "cpus-per-task": "6", "mem": "32G", "time": "0-12:00:00",
         "nodes": "1", "ntasks-per-node": "1"},
        ["$HOME", "/scratch_storage", "/db", "/tmp", "/workdir", "/data/imagenet/val", "/data/mnist"], True),
    Invocation(
        "standard-defaults",  # no --time: one hour; no --gpus; no --workdir
        ["--mem", "4000M", "--exp-name", "cpu-only", "--singularity-container", IMAGE],
        b"echo one command\n",
        {"mem": "4000M", "time": "0-01:00:00", "nodes": "1", "ntasks-per-node": "1", "cpus-per-task": "1"},
        ["$HOME", "/scratch_storage", "/db", "/tmp"], False),
    Invocation(
        "distributed-torchrun",  # one task per node, cpus multiplied by gpus
        ["--account", "def-lab", "--gpus", "4", "--cpus", "3", "--mem", "64G", "--time", "1-00:00:00", "--num-nodes", "2",
         "--exp-name", "ddp", "--job-type", "distributed", "--which-distributed", "torchrun",
         "--singularity-container", IMAGE, "--workdir", "/code"],
        b"python -m torch.distributed.run train.py\n",
        {"account": "def-lab", "gres": "gpu:4", "cpus-per-task": "12", "mem": "64G", "time": "1-00:00:00", "nodes": "2",
         "ntasks-per-node": "1"},
        ["$HOME", "/scratch_storage", "/db", "/tmp", "/code"], True),
    Invocation(
        "distributed-lightning",  # tasks-per-node = gpus
        ["--gpus", "2", "--gpu-type", "p100", "--cpus", "8", "--mem", "32G", "--num-nodes", "2", "--exp-name", "pl",
         "--job-type", "distributed", "--which-distributed", "lightning", "--singularity-container", IMAGE],
        b"python train_lightning.py\n",
        {"gres": "gpu:p100:2", "cpus-per-task": "8", "mem": "32G", "time": "0-01:00:00", "nodes": "2", "ntasks-per-node": "2"},
        ["$HOME", "/scratch_storage", "/db", "/tmp"], True),
    Invocation(
        "sweep",  # the scripts asked for the sweep id and 5 agents; --array=1-5
        ["--account", "def-lab", "--gpus", "1", "--cpus", "4", "--mem", "16G", "--time", "0-06:00:00", "--exp-name", "sw",
         "--job-type", "sweep", "--data", "data/mnist", "--singularity-container", IMAGE],
        b"# the agent line; job_submitter.sh rewrote its sweep id\nwandb agent --count 1 my-entity/seed-project/SWEEP_ID\n",
        {"account": "def-lab", "gres": "gpu:1", "cpus-per-task": "4", "mem": "16G", "time": "0-06:00:00", "nodes": "1",
         "ntasks-per-node": "1", "array": "1-5"},
        ["$HOME", "/scratch_storage", "/db", "/tmp", "/data/mnist"], True,
        sweep={"sweep_id": "abc123xy", "agents": 5}),
]

# Commands the old scripts broke (they deleted newlines, CRs and backslashes, and passed the
# result through sbatch's comma-separated --export), and what each task must receive: by hand.
TRICKY_FILE = (
    b"# tricky lines; blank lines and comments are skipped\n"
    b"\n"
    b"printf '[%s]\\n' --tags=a,b,c --opt x,y,z > /scratch_storage/commas\n"
    b"printf '[%s]\\n' \"it's\" 'a \"quoted\" word' \"say \\\"hi\\\"\" > /scratch_storage/quotes\n"
    b"printf '[%s]\\n' back\\\\slash 'single\\back' \"dq\\\\back\" > /scratch_storage/backslashes\n"
    b"printf '[%s]\\n' '$HOME' \"$MCOMPILE_TASK\" ${UNSET_VAR:-default} > /scratch_storage/vars\n"
    b"python main.py \\\n"
    b"    --lr 0.1 \\\n"
    b"    --name \"two words\"\n"
    b"echo escaped-backslash-ends-the-line \\\\\n"
    b"  \tprintf '%s\\n' 'lead and trail blanks'  \n"
)
TRICKY_COMMANDS = [
    "printf '[%s]\\n' --tags=a,b,c --opt x,y,z > /scratch_storage/commas",
    "printf '[%s]\\n' \"it's\" 'a \"quoted\" word' \"say \\\"hi\\\"\" > /scratch_storage/quotes",
    "printf '[%s]\\n' back\\\\slash 'single\\back' \"dq\\\\back\" > /scratch_storage/backslashes",
    "printf '[%s]\\n' '$HOME' \"$MCOMPILE_TASK\" ${UNSET_VAR:-default} > /scratch_storage/vars",
    "python main.py     --lr 0.1     --name \"two words\"",
    "echo escaped-backslash-ends-the-line \\\\",
    "  \tprintf '%s\\n' 'lead and trail blanks'  ",
]
# What bash makes of the first four, in the container (by hand).
TRICKY_OUTPUTS = {
    "commas": "[--tags=a,b,c]\n[--opt]\n[x,y,z]\n",
    "quotes": "[it's]\n[a \"quoted\" word]\n[say \"hi\"]\n",
    "backslashes": "[back\\slash]\n[single\\back]\n[dq\\back]\n",
    "vars": "[$HOME]\n[3]\n[default]\n",
}


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A login node's view: $SCRATCH (image, data), $SLURM_TMPDIR, $HOME with the W&B key, the project folder."""
    scratch, local, home, project = tmp_path / "scratch", tmp_path / "local", tmp_path / "home", tmp_path / PROJECT
    for d in (scratch / "containers", local, home, project):
        d.mkdir(parents=True)
    for subset in ("imagenet/val", "mnist"):
        (scratch / PROJECT / "data" / subset).mkdir(parents=True)
        (scratch / PROJECT / "data" / subset / "rows.txt").write_text(f"rows of {subset}\n")
    make_image(scratch / "containers" / "app.sif", {"usr/local/bin/wandb": "#!/bin/sh\necho wandb \"$@\"\n",
                                                    "usr/local/bin/python": "#!/bin/sh\necho python \"$@\"\n"})
    (home / "wandb_credentials.txt").write_text("key-that-must-not-leak\n")
    (home / "wandb_credentials.txt").chmod(0o600)
    return {"scratch": scratch, "local": local, "home": home, "project": project}


def _import(site: dict[str, Path], args: list[str], commands: bytes, **sweep: object) -> Path:
    (site["project"] / "experiment_configurations.txt").write_bytes(commands)
    imported = import_invocation(args, cwd=str(site["project"]), home=str(site["home"]), output="experiment.yaml",
                                 scratch=str(site["scratch"]), **sweep)  # type: ignore[arg-type]
    assert [p for p in imported.problems if p.level == "error"] == [], imported.problems
    path = site["project"] / "experiment.yaml"
    path.write_text(imported.text)
    return path


def _sbatch_options(run: Path) -> dict[str, str]:
    options = {}
    for arg in header_arguments((run / "job.sbatch").read_text()):
        name, _, value = arg[2:].partition("=")
        options[name] = value
    return options


def _tasks_and_throttle(array: str | None) -> tuple[int, int | None]:
    """How many array tasks an --array value asks for, and its throttle (1-5 and 0-4 are both 5)."""
    if array is None:
        return 1, None
    spec, _, throttle = array.partition("%")
    low, _, high = spec.partition("-")
    return int(high or low) - int(low) + 1, int(throttle) if throttle else None


def _run_every_task(site: dict[str, Path], run: Path, env: dict[str, str], tasks: int, job: int = 7000) -> list[dict]:
    from manifest_compiler.jobdir import read_resolved

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCRATCH", str(site["scratch"]))  # stage_archives expands $SCRATCH as the login node would
        archives = stage_archives(read_resolved(run))
    env = {**env, "SCRATCH": str(site["scratch"]), "SLURM_TMPDIR": str(site["local"]), "HOME": str(site["home"]),
           **dict(a.export.split("=", 1) for a in archives)}
    for task in range(tasks):
        proc = run_task(run, task if tasks > 1 else None, job=job, env=env, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    log = Path(env["APPTAINER_DOUBLE_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("case", INVOCATIONS, ids=[c.id for c in INVOCATIONS])
def test_the_imported_job_requests_what_the_old_scripts_requested(case: Invocation, site: dict[str, Path], tmp_path: Path,
                                                                  stand_in_env: dict[str, str]) -> None:
    manifest = _import(site, case.args, case.commands, **case.sweep)
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    options = _sbatch_options(run)
    for name in ("account", "gres", "cpus-per-task", "mem", "time", "nodes", "ntasks-per-node"):
        assert options.get(name) == case.sbatch.get(name), name
    assert _tasks_and_throttle(options.get("array")) == _tasks_and_throttle(case.sbatch.get("array"))

    mounts = json.loads((run / "mounts.json").read_text())
    assert sorted(m["target"] for m in mounts) == sorted(case.binds)  # the order: mcompile binds parents first
    by_target = {m["target"]: m["source"] for m in mounts}
    exp = manifest.read_text().split("name: ", 1)[1].split()[0]
    assert by_target["/scratch_storage"].startswith(f"$SCRATCH/{PROJECT}/{exp}/")  # the old $SCRATCH/<project>/<exp>/singularity_J_T
    assert all(source.startswith("$SLURM_TMPDIR/") for target, source in by_target.items() if target != "/scratch_storage")
    assert json.loads((run / "resolved.json").read_text())["outputs"]["logs"] == f"$SCRATCH/{PROJECT}/hpc_outputs"  # the old log folder

    if case.sbatch.get("ntasks-per-node", "1") != "1" or case.sbatch["nodes"] != "1":
        return  # a distributed job needs SLURM itself (srun): tests/e2e/test_distributed.py runs both launchers
    tasks = _tasks_and_throttle(case.sbatch.get("array"))[0]
    calls = _run_every_task(site, run, stand_in_env, tasks)
    assert len(calls) == tasks
    for call in calls:
        expected_flags = (["--nv"] if case.gpu_flag else []) + OLD_FLAGS
        assert sorted(f for f in call["flags"] if f in (*OLD_FLAGS, "--nv")) == sorted(expected_flags)
        assert call["subcommand"] == "run"
        home = str(site["home"])
        assert sorted(b["target"] for b in call["binds"]) == sorted(home if t == "$HOME" else t for t in case.binds)
        assert "WANDB_API_KEY" in call["env_file_names"]  # the key reaches the container, as before, from the secret file
    command = case.commands.decode().splitlines()[-1]
    if case.sweep:
        command = "wandb agent --count 1 my-entity/seed-project/abc123xy"
    assert [c["argv"][-1] for c in calls] == [command] * tasks
    assert "key-that-must-not-leak" not in (run / "job.sbatch").read_text() + Path(stand_in_env["APPTAINER_DOUBLE_LOG"]).read_text()


@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_every_command_reaches_the_runtime_byte_for_byte(line_ending: bytes, site: dict[str, Path], tmp_path: Path,
                                                         stand_in_env: dict[str, str]) -> None:
    commands = TRICKY_FILE.replace(b"\n", line_ending)
    manifest = _import(site, ["--mem", "1G", "--exp-name", "tricky", "--singularity-container", IMAGE, "--workdir", "/workdir"],
                       commands)
    result = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs"))
    crlf = [p for p in result.warnings if "CRLF" in p.message]
    assert len(crlf) == (line_ending == b"\r\n")  # the CRs are removed, and said
    run = result.run.path
    assert (run / "commands_file" / "experiment_configurations.txt").read_bytes() == commands
    calls = _run_every_task(site, run, stand_in_env, len(TRICKY_COMMANDS))
    assert [c["argv"][-1] for c in calls] == TRICKY_COMMANDS
    outputs = site["scratch"] / PROJECT / "tricky"
    for name, text in TRICKY_OUTPUTS.items():
        task = next(i for i, c in enumerate(TRICKY_COMMANDS) if c.endswith(f"/scratch_storage/{name}"))
        assert (outputs / f"7000_{task}" / name).read_text() == text, name


def test_the_old_flattening_broke_these_commands() -> None:
    """What job_submitter.sh made of the same file (deleting newlines, CRs and backslashes, then
    splitting --export on commas): none of the tricky commands survived it."""
    flattened = re.sub(rb"[\n\r\\]", b"", TRICKY_FILE).decode()
    export_value = flattened.split(",", 1)[0]  # sbatch --export=ALL,CMD=... ends the value at a comma
    assert all(command not in export_value for command in TRICKY_COMMANDS)
