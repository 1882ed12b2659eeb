"""code: and the image's identity on a real local SLURM, with the apptainer test double on PATH.

The code is a real git repository; its snapshot is taken by `--submit` and extracted by the job
on every node, so what a task runs is what was committed at submit, whatever happens after.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cluster import Cluster
from test_distributed import DistributedProject
from test_submit import Project

pytestmark = pytest.mark.slurm

TRAIN = """\
import os, pathlib
out = pathlib.Path("/scratch_storage")
rank = os.environ.get("RANK", "0")
open(f"cache-{rank}.txt", "w").write("tools write beside the code")
(out / f"ran-{rank}.json").write_text(__import__("json").dumps({
    "version": open("version.txt").read().strip(),
    "commit": os.environ["MCOMPILE_CODE_COMMIT"],
    "cwd": os.getcwd(),
    "listing": sorted(os.listdir(".")),
    "node": os.environ.get("SLURMD_NODENAME"),
}))
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, version: str = "v1") -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.org")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text(TRAIN)
    (path / "version.txt").write_text(version + "\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", version)
    return path


def code_manifest(project: Project, name: str, **extra: object) -> Path:
    extra.setdefault("container", {"image": "$SCRATCH/containers/app.sif", "workdir": "/work"})
    return project.manifest(name, {"commands": ["python3 train.py"]}, data=None, code={"repo": "repo", **extra.pop("code", {})},  # type: ignore[dict-item]
                            **extra)


def ran(project: Project, name: str, job: str, rank: int = 0) -> dict:
    return json.loads((project.outputs(name, job, 0) / f"ran-{rank}.json").read_text())


def log(project: Project, name: str, job: str) -> str:
    return (project.scratch / "proj" / "hpc_outputs" / f"{name}_{job}_0.out").read_text()


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    return Project(tmp_path, dbd_cluster)


def test_a_held_job_runs_the_code_as_it_was_at_submit(project: Project) -> None:
    repo = make_repo(project.root / "repo")
    first = git(repo, "rev-parse", "HEAD")
    manifest = code_manifest(project, "held", cluster={"sbatch_options": {"hold": True}})
    run_dir, job, proc = project.submit(manifest)
    assert "code: built snapshot" in proc.stderr and f"at {first}" in proc.stderr
    # edited and committed while the job waits in the queue
    (repo / "version.txt").write_text("v2\n")
    git(repo, "commit", "-qam", "v2")
    project.cluster.run("scontrol", "release", job)
    project.cluster.wait_gone(job, timeout=90)
    got = ran(project, "held", job)
    assert got["version"] == "v1" and got["commit"] == first, log(project, "held", job)
    assert got["cwd"] == "/work" and "cache-0.txt" in got["listing"]  # the code is the working directory, writable
    [record] = [json.loads(line) for line in (run_dir / "submissions.jsonl").read_text().splitlines()]
    assert record["code"]["commit"] == first and record["code"]["dirty"] is False
    runs = project.mcompile("runs", "held", "--runs", str(project.runs)).stdout
    assert f"code {first[:12]}" in runs and f"image {record['image']['sha256'][:12]}" in runs, runs


def test_a_dirty_tree_is_refused_naming_the_file_and_include_runs_it_as_dirty(project: Project) -> None:
    repo = make_repo(project.root / "repo")
    (repo / "version.txt").write_text("uncommitted\n")
    manifest = code_manifest(project, "dirty")
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs), "--submit")
    assert proc.returncode == 3 and proc.stdout.split() == [str(next((project.runs / "dirty").iterdir()))]
    assert "uncommitted changes to tracked files: version.txt; commit them" in proc.stderr and "nothing was queued" in proc.stderr
    assert project.cluster.run("squeue", "-h", "-n", "proj-dirty").stdout.strip() == ""
    assert not (next((project.runs / "dirty").iterdir()) / "submissions.jsonl").exists()

    manifest = code_manifest(project, "dirty", code={"dirty": "include"})
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=90)
    got = ran(project, "dirty", job)
    assert got["version"] == "uncommitted" and got["commit"] == git(repo, "rev-parse", "HEAD") + "-dirty"


def test_an_image_replaced_between_submit_and_start_fails_the_task_with_one_clear_line(project: Project) -> None:
    make_repo(project.root / "repo")
    manifest = code_manifest(project, "image", cluster={"sbatch_options": {"hold": True}})
    _, job, _ = project.submit(manifest)
    image = project.scratch / "containers" / "app.sif"
    data = image.read_bytes()
    image.write_bytes(data + b"\0" * 512)  # rebuilt in place: another size (and mtime)
    project.cluster.run("scontrol", "release", job)
    project.cluster.wait_gone(job, timeout=90)
    text = log(project, "image", job)
    lines = [line for line in text.splitlines() if "the image changed after submission" in line]
    assert len(lines) == 1 and lines[0].startswith(f"mcompile: the image changed after submission: {image} ") \
        and lines[0].endswith("; submit again"), text
    assert not (project.outputs("image", job, 0) / "ran-0.json").exists()
    # slurmdbd may still hold the held job's first record (PENDING) after squeue has let it go
    rows = project.cluster.sacct_until(job, "JobID,State", lambda r: any(x[0] == job and x[1] not in ("PENDING", "RUNNING") for x in r),
                                       extra=("-X",))
    assert [job, "FAILED"] in rows, rows


def test_the_snapshot_of_a_clone_elsewhere_has_the_same_sha256(project: Project, tmp_path: Path) -> None:
    repo = make_repo(project.root / "repo")
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    os.utime(clone / "train.py", (0, 0))
    snapshots = []
    for where, source in (("a", repo), ("b", clone)):
        folder = tmp_path / where
        folder.mkdir(exist_ok=True)
        manifest = folder / "m.yaml"
        manifest.write_text(code_manifest(project, "same").read_text().replace("repo: repo", f"repo: {source}"))
        proc = project.mcompile("stage", str(manifest), env=project.env(SCRATCH=str(folder / "scratch")))
        assert proc.returncode == 0, proc.stderr
        [line] = [line for line in proc.stdout.splitlines() if line.split()[1] == "code"]
        snapshots.append(line.split()[2])
        assert Path(line.split()[3]).parent == folder / "scratch" / "proj" / ".mcompile" / "code"
    assert snapshots[0] == snapshots[1]


@pytest.fixture
def two_nodes(tmp_path: Path, filetxt_cluster: Cluster) -> DistributedProject:
    return DistributedProject(tmp_path, filetxt_cluster)


def test_every_node_of_an_srun_task_has_the_snapshot_at_target(two_nodes: DistributedProject) -> None:
    project = two_nodes
    first = git(make_repo(project.root / "repo"), "rev-parse", "HEAD")
    manifest = project.manifest("nodes", {"launcher": "srun", "commands": ["python3 train.py"]}, data=None,
                                code={"repo": "repo", "target": "/code"},
                                container={"image": "$SCRATCH/containers/app.sif", "workdir": "/code"},
                                resources={"time": "5m", "mem": "256M", "nodes": 2},
                                cluster={"local_tmp": f"{project.local}/$SLURMD_NODENAME"})
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=120)
    got = {rank: ran(project, "nodes", job, rank) for rank in (0, 1)}
    assert {g["node"] for g in got.values()} == {"n1", "n2"}, log(project, "nodes", job)
    assert all(g["version"] == "v1" and g["commit"] == first and g["cwd"] == "/code" for g in got.values()), got
