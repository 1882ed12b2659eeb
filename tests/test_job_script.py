"""Run compiled job.sbatch files with bash outside SLURM, through the apptainer test double.

SLURM_* variables are set by hand, SCRATCH and SLURM_TMPDIR are temporary folders,
and tests/doubles/apptainer executes the bind-mount plan for real with bubblewrap.
What reaches the runtime is read back from the double's JSON log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from manifest_compiler.pipeline import compile_manifest

ROOT = Path(__file__).resolve().parent.parent
from helpers.jobs import run_task  # noqa: E402
from helpers.make_test_image import make_image  # noqa: E402

if not shutil.which("bwrap"):
    if os.environ.get("CI"):
        pytest.fail("bubblewrap is not installed; scripts/setup.sh installs it", pytrace=False)
    pytest.skip("bubblewrap (bwrap) is not installed: run scripts/setup.sh", allow_module_level=True)

SECRET = "s3cr3t-VALUE-that-must-not-leak"

NASTY = [
    "echo \"it's\" 'a \"quoted\" word' $HOME `echo backticks` $(echo subst)",
    "printf '%s\\n' back\\\\slash 'single\\back'",
    "echo trailing backslash \\",
    "echo line1\necho line2\n",
    "echo a,b,c --opt=x,y,z",
    "   echo spaced out   ",
    "echo héllo wörld ✓ 日本語 🎉",
    "echo 'ends with newlines'\n\n\n",
    "#SBATCH --time=99:00:00\necho not an sbatch line",
    "echo '%s %q %n' \"${SLURM_JOB_ID:-x}\" ; exit 0",
]


def _write_manifest(tmp: Path, commands: list[str], **extra: object) -> Path:
    doc = {
        "version": 1,
        "name": "jobtest",
        "project": "proj",
        "container": {"image": "$SCRATCH/containers/app.sif", "workdir": "/workdir"},
        "data": {"subsets": ["ds/train"], "stage": "copy"},
        "resources": {"time": "10m", "mem": "1G"},
        "run": {"commands": commands},
        "env": {"PLAIN": "a value with 'quotes' and $dollars", "COUNT": 3},
        "secrets": {"API_KEY": {"file": "~/api_key.txt"}},
    }
    doc.update(extra)
    path = tmp / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


@pytest.fixture
def cluster_dirs(tmp_path: Path) -> dict[str, Path]:
    scratch, local, home = tmp_path / "scratch", tmp_path / "local", tmp_path / "home"
    for d in (scratch / "containers", scratch / "proj" / "data" / "ds" / "train", local, home):
        d.mkdir(parents=True)
    (scratch / "proj" / "data" / "ds" / "train" / "x.txt").write_text("data-line\n")
    make_image(scratch / "containers" / "app.sif", {"opt/app/marker": "image file\n"})
    (home / "api_key.txt").write_text(SECRET + "\n")
    (home / "api_key.txt").chmod(0o600)
    return {"scratch": scratch, "local": local, "home": home}


def _run_task(run: Path, task: int | None, dirs: dict[str, Path], stand_in_env: dict[str, str],
              array_job: int = 4242) -> subprocess.CompletedProcess[str]:
    env = dict(stand_in_env)
    env.update({
        "SCRATCH": str(dirs["scratch"]),
        "SLURM_TMPDIR": str(dirs["local"]),
        "HOME": str(dirs["home"]),
        "API_KEY": "host-value-must-not-be-used",
    })
    return run_task(run, task, job=array_job, env=env, text=True)


def _calls(stand_in_env: dict[str, str]) -> list[dict]:
    log = Path(stand_in_env["APPTAINER_DOUBLE_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_every_task_reaches_the_runtime_with_exactly_its_command(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                                 stand_in_env: dict[str, str]) -> None:
    run = compile_manifest(str(_write_manifest(tmp_path, NASTY)), runs_dir=str(tmp_path / "runs")).run.path
    for task in range(len(NASTY)):
        proc = _run_task(run, task, cluster_dirs, stand_in_env)
        assert "mcompile: task" in proc.stderr, proc.stderr
    calls = _calls(stand_in_env)
    assert [c["argv"][-1] for c in calls] == NASTY
    mounts = json.loads((run / "mounts.json").read_text())
    for task, call in enumerate(calls):
        assert call["subcommand"] == "run"
        assert [b["target"] for b in call["binds"]] == [str(cluster_dirs["home"]) if m["target"] == "$HOME" else m["target"] for m in mounts]
        assert call["binds"][1]["source"] == str(cluster_dirs["scratch"] / "proj" / "jobtest" / f"4242_{task}")
        assert {"--cleanenv", "--contain", "--no-home", "--writable-tmpfs"} <= set(call["flags"])
        assert call["pwd"] == "/workdir"
        assert {"API_KEY", "PLAIN", "COUNT", "MCOMPILE_TASK", "SLURM_JOB_ID"} <= set(call["env_file_names"])
    for task in range(len(NASTY)):
        assert (cluster_dirs["scratch"] / "proj" / "jobtest" / f"4242_{task}").is_dir()
    assert list(cluster_dirs["local"].iterdir()) == [], "node-local folders must be removed at exit"


def test_a_task_sees_data_env_secret_and_writes_results(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                        stand_in_env: dict[str, str]) -> None:
    command = (
        "cat /data/ds/train/x.txt > /scratch_storage/data.txt; "
        "printf '%s' \"$API_KEY\" > /scratch_storage/secret.txt; "
        "printf '%s|%s|%s|%s' \"$PLAIN\" \"$COUNT\" \"$MCOMPILE_TASK\" \"$PWD\" > /scratch_storage/env.txt; "
        "touch /db/ok /tmp/ok \"$HOME/ok\" /workdir/ok; ls /opt/app/marker"
    )
    manifest = _write_manifest(tmp_path, [command])
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    proc = _run_task(run, None, cluster_dirs, stand_in_env)
    assert proc.returncode == 0, proc.stderr
    out = cluster_dirs["scratch"] / "proj" / "jobtest" / "4242_0"
    assert (out / "data.txt").read_text() == "data-line\n"
    assert (out / "secret.txt").read_text() == SECRET
    assert (out / "env.txt").read_text() == "a value with 'quotes' and $dollars|3|0|/workdir"
    # the secret appears nowhere but where the task put it
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET not in Path(stand_in_env["APPTAINER_DOUBLE_LOG"]).read_text()
    for f in run.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert list(cluster_dirs["local"].iterdir()) == []


def test_exit_status_of_the_command_is_the_jobs(tmp_path: Path, cluster_dirs: dict[str, Path], stand_in_env: dict[str, str]) -> None:
    run = compile_manifest(str(_write_manifest(tmp_path, ["exit 7"])), runs_dir=str(tmp_path / "runs")).run.path
    proc = _run_task(run, None, cluster_dirs, stand_in_env)
    assert proc.returncode == 7
    assert "mcompile: task 0 exited with status 7" in proc.stderr


def test_exec_entry_runs_bash_c(tmp_path: Path, cluster_dirs: dict[str, Path], stand_in_env: dict[str, str]) -> None:
    manifest = _write_manifest(tmp_path, ["echo via exec > /scratch_storage/x"])
    doc = yaml.safe_load(manifest.read_text())
    doc["container"]["entry"] = "exec"
    manifest.write_text(yaml.safe_dump(doc))
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    assert _run_task(run, None, cluster_dirs, stand_in_env).returncode == 0
    call = _calls(stand_in_env)[0]
    assert call["subcommand"] == "exec" and call["argv"][-3:] == ["bash", "-c", "echo via exec > /scratch_storage/x"]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unset-scratch", "SCRATCH is not set"),
        ("no-image", "container image not found"),
        ("no-data", "data subset ds/train not found"),
        ("no-secret", "secret API_KEY: cannot read"),
        ("edited-tasks", "tasks/commands was changed after compile"),
        ("damaged-index", "tasks/index is damaged at task 0"),
    ],
)
def test_clear_failure_before_the_container_starts(breakage: str, message: str, tmp_path: Path,
                                                    cluster_dirs: dict[str, Path], stand_in_env: dict[str, str]) -> None:
    run = compile_manifest(str(_write_manifest(tmp_path, ["true"])), runs_dir=str(tmp_path / "runs")).run.path
    env = dict(stand_in_env)
    if breakage == "unset-scratch":
        env.pop("SCRATCH", None)
        dirs = dict(cluster_dirs, scratch=Path(""))
    else:
        dirs = cluster_dirs
    if breakage == "no-image":
        (cluster_dirs["scratch"] / "containers" / "app.sif").unlink()
    if breakage == "no-data":
        shutil.rmtree(cluster_dirs["scratch"] / "proj" / "data")
    if breakage == "no-secret":
        (cluster_dirs["home"] / "api_key.txt").unlink()
    if breakage == "edited-tasks":
        (run / "tasks" / "commands").chmod(0o644)
        (run / "tasks" / "commands").write_text("rm -rf /\n")
    if breakage == "damaged-index":
        (run / "tasks" / "index").chmod(0o644)
        (run / "tasks" / "index").write_text("00000000000\n")  # cut short: its end would read as 0
    if breakage == "unset-scratch":
        env.update({"SLURM_TMPDIR": str(cluster_dirs["local"]), "HOME": str(cluster_dirs["home"])})
        proc = run_task(run, None, job=1, env=env, text=True)
    else:
        proc = _run_task(run, None, dirs, env)
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stderr.startswith("mcompile: ")
    assert _calls(stand_in_env) == [], "the container must not start"


def test_a_task_checks_the_blocks_of_its_own_command(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                     stand_in_env: dict[str, str]) -> None:
    """Commands of 100 KB over 1 MiB blocks: each task verifies the block(s) holding its command."""
    commands = [f"echo {i:02d} # " + "abcdefghijklmnopqrstuvwx"[i] * 100_000 for i in range(24)]
    run = compile_manifest(str(_write_manifest(tmp_path, commands)), runs_dir=str(tmp_path / "runs")).run.path
    assert len((run / "tasks" / "blocks").read_text().splitlines()) == 3  # 2.4 MB of commands
    starts = [int(line) for line in (run / "tasks" / "index").read_text().split()]
    across = next(i for i in range(24) if starts[i] // 2**20 != (starts[i + 1] - 2) // 2**20)
    assert across == 10
    for task in (0, across, 23):  # in block 0; across blocks 0 and 1; in block 2
        assert _run_task(run, task, cluster_dirs, stand_in_env).returncode == 0
    assert [c["argv"][-1] for c in _calls(stand_in_env)] == [commands[0], commands[across], commands[23]]
    data = bytearray((run / "tasks" / "commands").read_bytes())
    data[-10] = ord("X")  # inside task 23's command, in the last block
    (run / "tasks" / "commands").chmod(0o644)
    (run / "tasks" / "commands").write_bytes(bytes(data))
    assert _run_task(run, 0, cluster_dirs, stand_in_env).returncode == 0  # its block is intact
    edited = _run_task(run, 23, cluster_dirs, stand_in_env)
    assert edited.returncode == 1 and "tasks/commands was changed after compile" in edited.stderr
    assert len(_calls(stand_in_env)) == 4


def test_a_failing_task_removes_its_folder_without_a_false_cannot_remove(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                                          stand_in_env: dict[str, str]) -> None:
    # a bare `return` in the EXIT trap's cleanup returned the failed status from before the trap
    run = compile_manifest(str(_write_manifest(tmp_path, ["exit 3"])), runs_dir=str(tmp_path / "runs")).run.path
    proc = _run_task(run, None, cluster_dirs, stand_in_env)
    assert proc.returncode == 3
    assert "cannot remove" not in proc.stderr, proc.stderr
    assert proc.stderr.rstrip().endswith("mcompile: task 0 exited with status 3"), proc.stderr
    assert list(cluster_dirs["local"].iterdir()) == []


def test_a_shared_local_tmp_gets_its_own_subfolder_removed_at_exit(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                                   stand_in_env: dict[str, str]) -> None:
    shared = tmp_path / "scratch-ssd"
    (shared / "someone-else").mkdir(parents=True)
    manifest = _write_manifest(tmp_path, ["true", "true", "true", "ls -d /tmp /db > /scratch_storage/ls.txt"],
                               cluster={"local_tmp": str(shared)})
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    assert _run_task(run, 3, cluster_dirs, stand_in_env, array_job=77).returncode == 0
    assert _calls(stand_in_env)[0]["binds"][2]["source"].startswith(f"{shared}/mcompile-77_3/")
    assert [p.name for p in shared.iterdir()] == ["someone-else"]


def _exec_environment(monkeypatch: pytest.MonkeyPatch, stand_in_env: dict[str, str], dirs: dict[str, Path]) -> None:
    """What `mcompile exec` sees on a login node: the runtime double on PATH, $SCRATCH, $HOME."""
    for key in ("PATH", "APPTAINER_DOUBLE_LOG"):
        monkeypatch.setenv(key, stand_in_env[key])
    monkeypatch.setenv("SCRATCH", str(dirs["scratch"]))
    monkeypatch.setenv("HOME", str(dirs["home"]))


def test_exec_runs_one_task_locally_with_the_same_job_script(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                             stand_in_env: dict[str, str],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    from manifest_compiler.cli import main

    commands = ["exit 9", "cat /data/ds/train/x.txt > /scratch_storage/got.txt; printf '%s' \"$API_KEY\" | wc -c"]
    manifest = _write_manifest(tmp_path, commands, data={"subsets": ["ds/train"], "stage": "archive"})
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    _exec_environment(monkeypatch, stand_in_env, cluster_dirs)
    assert main(["exec", str(run), "--task", "1"]) == 0
    assert (cluster_dirs["scratch"] / "proj" / "jobtest" / "local_1" / "got.txt").read_text() == "data-line\n"
    assert _calls(stand_in_env)[0]["argv"][-1] == commands[1]
    assert main(["exec", "jobtest", "--task", "0", "--runs", str(tmp_path / "runs")]) == 9  # NAME: the newest run
    assert main(["exec", str(run), "--task", "2"]) == 2
    err = capfd.readouterr().err
    assert "there is no task 2" in err and "mcompile: task 0 exited with status 9" in err


def test_exec_runs_one_task_of_a_packed_run_and_again(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                      stand_in_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """run.pack: exec runs the one task named (not the array index's pack), logs it to its own file
    as on the cluster, and a second exec runs it again (its record is exec's own, made anew)."""
    from manifest_compiler.cli import main

    commands = [f"echo ran {i} >> /scratch_storage/ran" for i in range(5)]
    manifest = _write_manifest(tmp_path, commands, run={"pack": 2, "commands": commands})
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    _exec_environment(monkeypatch, stand_in_env, cluster_dirs)
    assert main(["exec", str(run), "--task", "3"]) == 0
    assert main(["exec", str(run), "--task", "3"]) == 0
    out = cluster_dirs["scratch"] / "proj" / "jobtest"
    assert (out / "local_3" / "ran").read_text() == "ran 3\nran 3\n"
    assert sorted(p.name for p in out.iterdir()) == ["local_3"]
    log = (cluster_dirs["scratch"] / "proj" / "hpc_outputs" / "jobtest_local_3.out").read_text()
    assert log.count("mcompile: task 3 exited with status 0") == 2
    assert "a packed task logs to its own file: $SCRATCH/proj/hpc_outputs/jobtest_local_3.out" in capfd.readouterr().err
    assert not (run / "packs" / "local_0").exists()


def test_exec_runs_a_task_of_the_commands_example_byte_for_byte(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                                 stand_in_env: dict[str, str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """manifests/commands.yaml as written, except what this machine lacks: a module system
    (cluster.modules dropped) and /project (the extra bind's source moved to a temporary folder)."""
    from manifest_compiler.cli import main

    doc = yaml.safe_load((ROOT / "manifests" / "commands.yaml").read_text())
    del doc["cluster"]["modules"]
    doc["container"]["binds"][0]["source"] = str(tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    manifest = tmp_path / "commands.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    python = "#!/bin/bash\n# records how the task called it\nprintf '%s\\n' \"$@\" > /scratch_storage/python-args.txt\n"
    make_image(cluster_dirs["scratch"] / "containers" / "mnist.sif", {"usr/local/bin/python": python})
    mnist = cluster_dirs["scratch"] / "mnist-study" / "data" / "mnist"
    mnist.mkdir(parents=True)
    (mnist / "train.csv").write_text("0,1\n")
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    _exec_environment(monkeypatch, stand_in_env, cluster_dirs)
    assert main(["exec", str(run), "--task", "1"]) == 0
    args = (cluster_dirs["scratch"] / "mnist-study" / "mnist-commands" / "local_1" / "python-args.txt").read_text()
    assert args.split() == doc["run"]["commands"][1].split()[1:]
    (call,) = _calls(stand_in_env)
    assert call["argv"][-1].encode() == (run / "tasks" / "commands").read_bytes().split(b"\n")[1]
    assert call["argv"][-1] == doc["run"]["commands"][1]
    assert call["subcommand"] == "run" and call["pwd"] == "/workdir" and "OMP_NUM_THREADS" in call["env_file_names"]
    assert [b["target"] for b in call["binds"]][-2:] == ["/weights", "/data/mnist"]


def test_exec_refuses_a_distributed_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from manifest_compiler.cli import main

    manifest = _write_manifest(tmp_path, ["true"], run={"launcher": "srun", "commands": ["true"]},
                               resources={"time": "10m", "mem": "1G", "nodes": 2})
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    assert main(["exec", str(run), "--task", "0"]) == 2
    assert "uses launcher srun, which needs a SLURM allocation" in capfd.readouterr().err


def test_a_task_reads_its_read_only_overlays_in_order(tmp_path: Path, cluster_dirs: dict[str, Path],
                                                      stand_in_env: dict[str, str]) -> None:
    """container.overlay: each image is laid over the container's root, in order, read-only; a missing
    one stops the task before the container starts, naming the field."""
    overlays = cluster_dirs["scratch"] / "overlays"
    overlays.mkdir()
    make_image(overlays / "imagenet.sqsh", {"imagenet/train/n01.txt": "first\n", "imagenet/labels.txt": "old\n"}, runscript=None)
    make_image(overlays / "labels.sqsh", {"imagenet/labels.txt": "new\n"}, runscript=None)
    command = "cat /imagenet/train/n01.txt /imagenet/labels.txt > /scratch_storage/seen.txt; touch /imagenet/x 2>/dev/null || echo read-only"
    manifest = _write_manifest(tmp_path, [command], container={
        "image": "$SCRATCH/containers/app.sif", "workdir": "/workdir", "writable_tmpfs": False,
        "overlay": [{"path": "$SCRATCH/overlays/imagenet.sqsh"}, {"path": "$SCRATCH/overlays/labels.sqsh", "mode": "ro"}]})
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    proc = _run_task(run, None, cluster_dirs, stand_in_env)
    assert proc.returncode == 0, proc.stderr
    assert (cluster_dirs["scratch"] / "proj" / "jobtest" / "4242_0" / "seen.txt").read_text() == "first\nnew\n"
    assert proc.stdout == "read-only\n"  # the overlay is read-only, like the root
    [call] = _calls(stand_in_env)
    assert call["argv"].count("--overlay") == 2

    (overlays / "labels.sqsh").unlink()
    proc = _run_task(run, None, cluster_dirs, stand_in_env, array_job=4300)
    assert proc.returncode == 1
    assert f"mcompile: overlay image not found: {overlays}/labels.sqsh (container.overlay[1].path)" in proc.stderr
    assert len(_calls(stand_in_env)) == 1  # the container never started


def test_exec_runs_the_code_of_the_recorded_repository_and_a_missing_snapshot_name_fails_the_job(
        tmp_path: Path, cluster_dirs: dict[str, Path], stand_in_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """code: (apptainer double): exec snapshots code.repo (recorded at compile) again, and the task runs from it."""
    from manifest_compiler.cli import main

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "train.py").write_text("import os; open('/scratch_storage/got.txt', 'w').write(os.getcwd() + ' ' + os.environ['MCOMPILE_CODE_COMMIT'])\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "one"], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    manifest = _write_manifest(tmp_path, ["python3 train.py"], data={"subsets": ["ds/train"], "stage": "bind"}, code={"repo": "repo"})
    run = compile_manifest(str(manifest), runs_dir=str(tmp_path / "runs")).run.path
    _exec_environment(monkeypatch, stand_in_env, cluster_dirs)
    monkeypatch.chdir(cluster_dirs["home"])  # exec finds the repository from the run's record, not from here
    assert main(["exec", str(run), "--task", "0"]) == 0
    assert (cluster_dirs["scratch"] / "proj" / "jobtest" / "local_0" / "got.txt").read_text() == f"/workdir {head}"
    # sbatch job.sbatch by hand, without the names a submission gives: the job says what is missing
    proc = _run_task(run, 0, cluster_dirs, stand_in_env)
    assert proc.returncode == 1 and "mcompile: code: the submission names no code snapshot (MCOMPILE_CODE)" in proc.stderr
    capfd.readouterr()
