"""`mcompile ... --submit` on a real local SLURM, with the apptainer test double on PATH.

Jobs really run: slurmctld schedules them, slurmd starts job.sbatch, which stages
data and runs the bind-mount plan through tests/doubles/apptainer (bubblewrap).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cluster import Cluster

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
from helpers.make_test_image import make_image  # noqa: E402

SECRET = "wandb-key-0123456789-must-not-leak"
WANDB = """#!/bin/bash
# stand-in wandb: records how the agent was called
printf '%s\\n' "$*" > /scratch_storage/wandb-args.txt
printf '%s' "$WANDB_API_KEY" | wc -c > /scratch_storage/key-length.txt
"""


class Project:
    """A user's scratch space, manifests and runs folder, submitting to one cluster."""

    def __init__(self, root: Path, cluster: Cluster) -> None:
        self.root = root
        self.cluster = cluster
        self.scratch = root / "scratch"
        self.runs = root / "runs"
        (self.scratch / "containers").mkdir(parents=True)
        make_image(self.scratch / "containers" / "app.sif", {"usr/local/bin/wandb": WANDB})
        self.data = self.scratch / "proj" / "data"
        for i in range(3):
            (self.data / "set" / f"part{i}").mkdir(parents=True, exist_ok=True)
            (self.data / "set" / f"part{i}" / "rows.txt").write_text(f"rows of part {i}\n")
        (self.scratch / "key.txt").write_text(SECRET + "\n")
        (self.scratch / "key.txt").chmod(0o600)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(self.cluster.env)
        env.update({"SCRATCH": str(self.scratch), "PATH": f"{ROOT / 'tests' / 'doubles'}:{env['PATH']}", "NO_COLOR": "1"})
        env.update(extra)
        return env

    def manifest(self, name: str, run: dict, **extra: object) -> Path:
        doc = {
            "version": 1,
            "name": name,
            "project": "proj",
            "container": {"image": "$SCRATCH/containers/app.sif"},
            "data": {"subsets": ["set"], "stage": "archive"},
            "resources": {"time": "5m", "mem": "256M"},
            "run": run,
            "secrets": {"WANDB_API_KEY": {"file": "$SCRATCH/key.txt"}},
        }
        doc.update(extra)
        doc = {k: v for k, v in doc.items() if v is not None}  # data=None: no data section
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def mcompile(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "manifest_compiler", *args], env=env or self.env(),
                              capture_output=True, text=True, timeout=120, cwd=self.root)

    def submit(self, manifest: Path, **env: str) -> tuple[Path, str, subprocess.CompletedProcess[str]]:
        proc = self.mcompile("compile", str(manifest), "--runs", str(self.runs), "--submit", env=self.env(**env))
        assert proc.returncode == 0, proc.stderr
        run_dir, job = proc.stdout.split()
        return Path(run_dir), job, proc

    def outputs(self, name: str, job: str, task: int) -> Path:
        return self.scratch / "proj" / name / f"{job}_{task}"


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    return Project(tmp_path, dbd_cluster)


def test_array_reads_staged_data_writes_results_and_is_throttled(project: Project) -> None:
    stamp = 'date +%s.%N > /scratch_storage/start; sleep 2; date +%s.%N > /scratch_storage/end'
    commands = [f"cat /data/set/part{i}/rows.txt > /scratch_storage/out.txt; {stamp}" for i in range(3)]
    manifest = project.manifest("arr", {"commands": commands}, resources={"time": "5m", "mem": "256M", "max_parallel": 2})
    run_dir, job, proc = project.submit(manifest)
    assert "built archive" in proc.stderr
    project.cluster.wait_gone(job, timeout=90)
    # at once, before slurmdbd has recorded every task: runs still accounts for all three
    early = json.loads(project.mcompile("runs", "arr", "--runs", str(project.runs), "--format", "json").stdout)
    assert [t["task"] for t in early] == [0, 1, 2] and all(t["state"] != "UNKNOWN" and t["job_id"] == job for t in early), early
    # squeue fills in the exit code of a task it has seen complete (it was blank before)
    assert all(t["exit_code"] == 0 for t in early if t["state"] == "COMPLETED"), early

    windows = []
    for i in range(3):
        out = project.outputs("arr", job, i)
        assert (out / "out.txt").read_text() == f"rows of part {i}\n"
        windows.append((float((out / "start").read_text()), float((out / "end").read_text())))
        log = project.scratch / "proj" / "hpc_outputs" / f"arr_{job}_{i}.out"
        assert f"mcompile: task {i} exited with status 0" in log.read_text()
    most = max(sum(1 for s, e in windows if s <= t < e) for t, _ in windows)
    assert most <= 2, windows

    rows = project.cluster.sacct_until(job, "JobID,State,ExitCode", lambda r: len([x for x in r if "." not in x[0]]) == 3, extra=("-X",))
    assert sorted(rows) == [[f"{job}_{i}", "COMPLETED", "0:0"] for i in range(3)]
    runs = json.loads(project.mcompile("runs", "--runs", str(project.runs), "--format", "json").stdout)
    assert runs[0]["submissions"][0]["states"] == {"COMPLETED": 3}
    assert runs[0]["submissions"][0]["state_source"] == "sacct"
    text = project.mcompile("runs", "arr", "--runs", str(project.runs)).stdout
    assert f"job {job}" in text and "3 COMPLETED" in text

    record = [json.loads(line) for line in (run_dir / "submissions.jsonl").read_text().splitlines()]
    assert record[0]["job_id"] == job and record[0]["sbatch"][-1] == "job.sbatch"
    assert {"time", "user", "host", "manifest_sha256", "git"} <= set(record[0])

    # the second submission of unchanged data reuses the archive; changed data gets a new one
    _, job2, proc2 = project.submit(manifest)
    assert "reusing archive" in proc2.stderr
    (project.data / "set" / "part1" / "rows.txt").write_text("changed rows\n")
    _, job3, proc3 = project.submit(manifest)
    assert "built archive" in proc3.stderr
    for j in (job2, job3):
        project.cluster.wait_gone(j, timeout=90)
    assert (project.outputs("arr", job3, 1) / "out.txt").read_text() == "changed rows\n"
    assert (project.outputs("arr", job2, 1) / "out.txt").read_text() == "rows of part 1\n"
    assert len((run_dir / "submissions.jsonl").read_text().splitlines()) == 3
    # three submissions of the same run are not restarts
    tasks = json.loads(project.mcompile("runs", "arr", "--runs", str(project.runs), "--format", "json").stdout)
    assert [(t["attempts"], t["submissions"], t["job_id"]) for t in tasks] == [(1, 3, job3)] * 3, tasks
    text = project.mcompile("runs", "arr", "--runs", str(project.runs)).stdout
    assert "queued by more than one submission: tasks 0-2" in text and "requeued" not in text, text
    archives = list((project.scratch / "proj" / ".mcompile" / "archives").glob("*.tar"))
    assert len(archives) == 2 and not list(archives[0].parent.glob(".*tmp*"))


def test_sweep_runs_wandb_agents_in_the_container(project: Project) -> None:
    manifest = project.manifest("sw", {"sweep": {"id": "ent/proj/abc123", "agents": 2, "runs_per_agent": 3}})
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=90)
    for i in range(2):
        out = project.outputs("sw", job, i)
        assert (out / "wandb-args.txt").read_text() == "agent --count 3 ent/proj/abc123\n"
        assert (out / "key-length.txt").read_text().strip() == str(len(SECRET))


def test_a_failing_task_is_failed_with_its_exit_code(project: Project) -> None:
    manifest = project.manifest("fail", {"commands": ["true", "exit 3"]}, data=None)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=90)
    rows = project.cluster.sacct_until(job, "JobID,State,ExitCode", lambda r: len(r) == 2, extra=("-X",))
    assert sorted(rows) == [[f"{job}_0", "COMPLETED", "0:0"], [f"{job}_1", "FAILED", "3:0"]]
    tasks = json.loads(project.mcompile("runs", "fail", "--runs", str(project.runs), "--format", "json").stdout)
    assert all(t.pop("reason") is None and t.pop("efficiency")["time_limit_s"] == 300 for t in tasks), tasks
    assert tasks == [{"task": 0, "state": "COMPLETED", "exit_code": 0, "attempts": 1, "submissions": 1, "job_id": job},
                     {"task": 1, "state": "FAILED", "exit_code": 3, "attempts": 1, "submissions": 1, "job_id": job}]
    runs = json.loads(project.mcompile("runs", "--runs", str(project.runs), "--format", "json").stdout)
    sub = runs[0]["submissions"][0]
    assert sub["states"] == {"COMPLETED": 1, "FAILED": 1}
    assert sub["failed"] == [{"job_id": job, "task": 1, "state": "FAILED", "exit_code": "3:0"}]
    text = project.mcompile("runs", "fail", "--runs", str(project.runs)).stdout
    assert "FAILED task 1 exit code 3:0" in text


def test_impossible_request_is_refused_at_preflight_and_nothing_is_queued(project: Project) -> None:
    manifest = project.manifest("big", {"commands": ["true"]}, resources={"time": "5m", "mem": "256M", "cpus_per_task": 999})
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs), "--submit")
    assert proc.returncode == 3
    assert "SLURM refuses this job" in proc.stderr and "More processors requested than permitted" in proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = Path(proc.stdout.split()[0])
    assert run_dir.is_dir() and not (run_dir / "submissions.jsonl").exists()
    assert project.cluster.run("squeue", "-h").stdout.strip() == ""


def test_missing_image_is_refused_before_sbatch(project: Project) -> None:
    (project.scratch / "containers" / "app.sif").unlink()
    proc = project.mcompile("compile", str(project.manifest("noimg", {"commands": ["true"]})), "--runs", str(project.runs), "--submit")
    assert proc.returncode == 3 and "container image not found" in proc.stderr


def test_secret_reaches_the_command_but_nothing_else(project: Project) -> None:
    command = "printf '%s' \"$WANDB_API_KEY\" | sha256sum > /scratch_storage/key.sha256; sleep 4"
    manifest = project.manifest("sec", {"commands": [command]}, data=None)
    # the secret is also in the submitting shell's environment: it must not travel with sbatch
    run_dir, job, _ = project.submit(manifest, WANDB_API_KEY=SECRET)
    out = project.outputs("sec", job, 0)
    seen_running = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = project.cluster.run("squeue", "-h", "-j", job, "-o", "%T", check=False).stdout.strip()
        if state == "RUNNING":
            if not seen_running:  # a running task has no exit code yet
                rows = json.loads(project.mcompile("runs", "sec", "--runs", str(project.runs), "--format", "json").stdout)
                assert [(r["state"], r["exit_code"], r["attempts"]) for r in rows] == [("RUNNING", None, 1)], rows
                table = project.mcompile("runs", "sec", "--runs", str(project.runs)).stdout.splitlines()
                header = next(i for i, line in enumerate(table) if line.split()[:2] == ["task", "state"])
                assert table[header + 1].split() == ["0", "RUNNING", "-", "1", "1", job], table
            seen_running = True
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            assert SECRET not in ps
            show = project.cluster.run("scontrol", "show", "job", job).stdout
            assert SECRET not in show
        if not state:
            break
        time.sleep(0.5)
    assert seen_running
    assert (out / "key.sha256").read_text().split()[0] == hashlib.sha256(SECRET.encode()).hexdigest()
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    log = (project.scratch / "proj" / "hpc_outputs" / f"sec_{job}_0.out").read_text()
    assert SECRET not in log
    # slurmctld keeps each job's exported environment in its state folder
    state_files = [p for p in (project.cluster.dir / "state").rglob("*") if p.is_file()]
    assert state_files
    for p in state_files:
        assert SECRET.encode() not in p.read_bytes(), p
    assert b"SCRATCH=" in b"".join(p.read_bytes() for p in state_files), "state folder holds no environment: the check proves nothing"


def test_runs_without_accounting_reads_squeue_and_jobcomp(tmp_path: Path, filetxt_cluster: Cluster) -> None:
    project = Project(tmp_path, filetxt_cluster)
    manifest = project.manifest("ft", {"commands": ["true", "exit 4"]})
    _, job, _ = project.submit(manifest)
    filetxt_cluster.wait_gone(job, timeout=90)
    deadline = time.monotonic() + 30
    while True:
        runs = json.loads(project.mcompile("runs", "--runs", str(project.runs), "--format", "json").stdout)
        sub = runs[0]["submissions"][0]
        if sum(sub["states"].values()) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sub["state_source"] == "squeue+jobcomp"
    assert sub["states"] == {"COMPLETED": 1, "FAILED": 1}
    assert sub["failed"][0]["task"] == 1 and sub["failed"][0]["exit_code"].startswith("4")


def test_submit_without_sbatch_is_one_clear_line(project: Project) -> None:
    bin_dir = project.root / "bin"  # a PATH with find, sort and tar (for staging) but no SLURM
    bin_dir.mkdir()
    for tool in ("find", "sort", "tar"):
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout.strip(), bin_dir / tool)
    proc = project.mcompile("compile", str(project.manifest("nosb", {"commands": ["true"]})), "--runs", str(project.runs),
                            "--submit", env=project.env(PATH=str(bin_dir)))
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("mcompile: sbatch not found")


def _by_hand(project: Project, run_dir: Path, line: str, **env: str) -> str:
    """Run a by-hand submission line in a shell; the job id sbatch printed."""
    proc = subprocess.run(["bash", "-c", line], env=project.env(**env), capture_output=True, text=True, timeout=60, cwd=run_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Submitted batch job "), proc.stdout
    return proc.stdout.split()[-1]


def test_by_hand_an_archive_run_needs_the_line_mcompile_stage_prints(project: Project) -> None:
    commands = [f"cat /data/set/part{i}/rows.txt > /scratch_storage/out.txt; echo task {i} says hello" for i in range(2)]
    manifest = project.manifest("hand", {"commands": commands})
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs))
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip())
    logs = project.scratch / "proj" / "hpc_outputs"
    assert not logs.exists()  # nothing made it yet: by hand, the job creates it

    # plain sbatch: the job cannot know which archive; it stops at once, saying so in the run's log
    job = _by_hand(project, run_dir, "sbatch job.sbatch")
    project.cluster.wait_gone(job)
    for task in range(2):
        log = (logs / f"hand_{job}_{task}.out").read_text()
        assert "names no archive (MCOMPILE_ARCHIVE_0)" in log and "the sbatch line 'mcompile stage FILE' prints" in log, log
        assert (run_dir / f"slurm-{job}_{task}.out").read_text() == ""  # SLURM's file: only SLURM's own messages

    # the line mcompile stage prints, run as printed (the secret is also in this shell: it must not travel)
    staged = project.mcompile("stage", str(manifest), "--runs", str(project.runs), env=project.env(WANDB_API_KEY=SECRET))
    assert staged.returncode == 0, staged.stderr
    [line] = [x.split("by hand, submit with: ", 1)[1] for x in staged.stderr.splitlines() if "by hand, submit with: " in x]
    [archive] = staged.stdout.splitlines()
    fingerprint = archive.split()[2]
    assert line == (f"cd {run_dir} && env -u WANDB_API_KEY sbatch --export=ALL,MCOMPILE_ARCHIVE_0={fingerprint},"
                    f"MCOMPILE_IMAGE_STAT={_image_stat(project)} job.sbatch")
    job = _by_hand(project, project.root, line, WANDB_API_KEY=SECRET)
    project.cluster.wait_gone(job, timeout=90)
    for task in range(2):
        assert (project.outputs("hand", job, task) / "out.txt").read_text() == f"rows of part {task}\n"
        log = (logs / f"hand_{job}_{task}.out").read_text()
        assert f"task {task} says hello" in log and log.rstrip().endswith(f"mcompile: task {task} exited with status 0"), log
    state_files = [p for p in (project.cluster.dir / "state").rglob("*") if p.is_file()]
    assert not any(SECRET.encode() in p.read_bytes() for p in state_files)
    # not in submissions.jsonl, but runs finds both jobs: their name, and sbatch ran in the run directory
    assert not (run_dir / "submissions.jsonl").exists()
    tasks = json.loads(project.mcompile("runs", "hand", "--runs", str(project.runs), "--format", "json").stdout)
    assert [(t["state"], t["exit_code"], t["attempts"], t["submissions"], t["job_id"]) for t in tasks] == [
        ("COMPLETED", 0, 1, 2, job), ("COMPLETED", 0, 1, 2, job)], tasks
    text = project.mcompile("runs", "hand", "--runs", str(project.runs)).stdout
    assert f"job {job} (by hand from the run directory, tasks 0-1)" in text, text
    nothing = project.mcompile("rerun", "hand", "--failed", "--runs", str(project.runs))
    assert nothing.returncode == 0 and "no failed tasks" in nothing.stderr, nothing.stderr


def _image_stat(project: Project) -> str:
    """MCOMPILE_IMAGE_STAT of the project's image: its size and mtime, which the job compares."""
    st = os.stat(project.scratch / "containers" / "app.sif")
    return f"{st.st_size}_{st.st_mtime_ns // 10**9}"


def test_by_hand_a_run_without_archives_is_plain_sbatch_and_an_own_output_is_kept(project: Project) -> None:
    manifest = project.manifest("plain", {"commands": ["echo single task"]}, data=None)
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs))
    run_dir = Path(proc.stdout.strip())
    staged = project.mcompile("stage", str(manifest), "--runs", str(project.runs))
    assert f"mcompile: by hand, submit with: cd {run_dir} && sbatch --export=ALL,MCOMPILE_IMAGE_STAT={_image_stat(project)} job.sbatch\n" in staged.stderr
    job = _by_hand(project, run_dir, "sbatch job.sbatch")  # without the image's stat the job does not compare it
    project.cluster.wait_gone(job)
    log = (project.scratch / "proj" / "hpc_outputs" / f"plain_{job}_0.out").read_text()  # where --submit puts it
    assert "single task" in log and log.rstrip().endswith("mcompile: task 0 exited with status 0"), log
    assert (run_dir / f"slurm-{job}.out").read_text() == ""
    # an --output of the user's own is where the log goes
    job = _by_hand(project, run_dir, "sbatch --output=mine-%j.out job.sbatch")
    project.cluster.wait_gone(job)
    assert "single task" in (run_dir / f"mine-{job}.out").read_text()
    assert not (project.scratch / "proj" / "hpc_outputs" / f"plain_{job}_0.out").exists()
    # a job of the same name submitted from elsewhere is not the run's
    other = _by_hand(project, project.root, f"sbatch --job-name=proj-plain --output=/dev/null {run_dir / 'job.sbatch'}")
    project.cluster.wait_gone(other)
    tasks = json.loads(project.mcompile("runs", "plain", "--runs", str(project.runs), "--format", "json").stdout)
    assert [(t["state"], t["submissions"], t["job_id"]) for t in tasks] == [("COMPLETED", 2, job)], tasks
