"""Runs past MaxArraySize, `mcompile rerun` and per-task `runs`, on a real local SLURM.

The cluster has MaxArraySize=10, so a run of 25 tasks is queued as three arrays of at
most 9 tasks (indices 0-8) with offsets 0, 9 and 18.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from cluster import Cluster
from test_submit import Project

pytestmark = pytest.mark.slurm

FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@pytest.fixture
def project(tmp_path: Path, small_array_cluster: Cluster) -> Project:
    return Project(tmp_path, small_array_cluster)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "submissions.jsonl").read_text().splitlines()]


def _compile(project: Project, manifest: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return project.mcompile("compile", str(manifest), "--runs", str(project.runs), *extra, env=env)


def _tasks(project: Project, run: str, settled: set[int] | None = None, timeout: float = 120) -> list[dict]:
    """`runs RUN --format json` once every task (of `settled`) has a final state and exit code.

    Right after a job ends slurmdbd may not have its record yet: squeue then gives the state
    but no exit code.
    """
    deadline = time.monotonic() + timeout
    while True:
        proc = project.mcompile("runs", run, "--runs", str(project.runs), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        tasks = json.loads(proc.stdout)
        wanted = [t for t in tasks if settled is None or t["task"] in settled]
        if all(t["state"] in FINAL and t["exit_code"] is not None for t in wanted) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.5)


def _wait(project: Project, run_dir: Path) -> None:
    for record in _records(run_dir):
        project.cluster.wait_gone(record["job_id"], timeout=120)


def test_a_run_past_max_array_size_is_three_chained_arrays_and_a_rerun_lands_in_its_chunk(project: Project) -> None:
    stamp = ("date +%s.%N > /scratch_storage/start; echo $MCOMPILE_TASK > /scratch_storage/task; "
             "echo {{ i }} > /scratch_storage/param; sleep 0.2; date +%s.%N > /scratch_storage/end")
    manifest = project.manifest("chunked", {"grid": {"template": stamp, "parameters": {"i": list(range(25))}}}, data=None,
                                resources={"time": "5m", "mem": "256M", "max_parallel": 1})
    proc = _compile(project, manifest, "--submit")
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.split()[0])
    jobs = proc.stdout.split()[1:]
    assert len(jobs) == 3, proc.stdout
    assert "25 tasks as 3 arrays (MaxArraySize 10)" in proc.stderr

    records = _records(run_dir)
    assert [(r["job_id"], r["offset"], r["array"], r["tasks"], r["ntasks"]) for r in records] == [
        (jobs[0], 0, "0-8%1", "0-8", 9), (jobs[1], 9, "0-8%1", "9-17", 9), (jobs[2], 18, "0-6%1", "18-24", 7)]
    assert {r["submission"] for r in records} == {records[0]["submission"]}
    assert {(r["kind"], r["planned"]) for r in records} == {("submit", "0-24")}
    # max_parallel holds for the run: each array waits for the one before
    assert not any(a.startswith("--dependency") for a in records[0]["sbatch"])
    assert f"--dependency=afterany:{jobs[0]}" in records[1]["sbatch"]
    assert f"--dependency=afterany:{jobs[1]}" in records[2]["sbatch"]
    image = records[2]["image"]
    export = f"--export=ALL,MCOMPILE_IMAGE_STAT={image['size']}_{image['mtime']},MCOMPILE_TASK_OFFSET=18"
    assert export in records[2]["sbatch"]
    assert "--open-mode=append" in records[2]["sbatch"] and "--open-mode=append" not in records[0]["sbatch"]
    _wait(project, run_dir)

    logs = project.scratch / "proj" / "hpc_outputs"
    outputs = project.scratch / "proj" / "chunked"
    windows = []
    for task in range(25):
        job = jobs[task // 9]
        out = outputs / f"{job}_{task}"
        assert (out / "task").read_text() == f"{task}\n" and (out / "param").read_text() == f"{task}\n"
        windows.append((float((out / "start").read_text()), float((out / "end").read_text())))
        assert f"mcompile: task {task} exited with status 0" in (logs / f"chunked_{job}_{task}.out").read_text()
    assert len(list(outputs.iterdir())) == 25, "every task ran exactly once"
    windows.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in zip(windows, windows[1:], strict=False)), windows
    for job in jobs[1:]:  # SLURM's own messages of a later chunk: one file per array
        assert (logs / f"chunked_{job}_slurm.out").exists()
    assert not list(logs.glob(f"chunked_{jobs[1]}_0.out")), "a later chunk logs by run-wide task numbers"

    tasks = _tasks(project, "chunked")
    # efficiency: null until slurmdbd has the task's record; then the run's 5-minute limit, found through its chunk's offset
    assert all(t.pop("reason") is None and (t.pop("efficiency") or {"time_limit_s": 300})["time_limit_s"] == 300 for t in tasks), tasks
    assert tasks == [{"task": i, "state": "COMPLETED", "exit_code": 0, "attempts": 1, "submissions": 1, "job_id": jobs[i // 9]}
                     for i in range(25)]
    text = project.mcompile("runs", "chunked", "--runs", str(project.runs)).stdout
    assert f"jobs {jobs[0]} (tasks 0-8), {jobs[1]} (tasks 9-17), {jobs[2]} (tasks 18-24)" in text
    assert "tasks (latest attempt): 25 COMPLETED" in text

    again = project.mcompile("rerun", "chunked", "--tasks", "21-23", "--runs", str(project.runs))
    assert again.returncode == 0, again.stderr
    [job4] = again.stdout.split()
    last = _records(run_dir)[-1]
    assert (last["job_id"], last["kind"], last["offset"], last["array"], last["tasks"]) == (job4, "rerun", 18, "3-5%1", "21-23")
    assert "--array=3-5%1" in last["sbatch"] and export in last["sbatch"]
    project.cluster.wait_gone(job4, timeout=90)
    for task in (21, 22, 23):
        assert (outputs / f"{job4}_{task}" / "task").read_text() == f"{task}\n"
        assert f"mcompile: task {task} exited with status 0" in (logs / f"chunked_{job4}_{task}.out").read_text()
    assert len(list(outputs.iterdir())) == 28
    tasks = _tasks(project, "chunked")
    # a rerun is one more submission of the task, not a restart of its first job
    assert [(t["task"], t["submissions"], t["job_id"]) for t in tasks if t["submissions"] != 1] == [(i, 2, job4) for i in (21, 22, 23)]
    assert all(t["state"] == "COMPLETED" and t["attempts"] == 1 for t in tasks)


def test_rerun_failed_queues_exactly_the_failed_tasks(project: Project) -> None:
    markers = project.root / "markers"
    markers.mkdir()
    flaky = "if [ -e /markers/t{0} ]; then echo second > /scratch_storage/try; else touch /markers/t{0}; exit 1; fi"
    commands = [flaky.format(i) if i in (1, 3) else "true" for i in range(5)]
    manifest = project.manifest("flaky", {"commands": commands}, data=None,
                                container={"image": "$SCRATCH/containers/app.sif", "binds": [{"source": str(markers), "target": "/markers"}]})
    run_dir, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=90)
    first = _tasks(project, "flaky")
    assert [(t["task"], t["state"], t["exit_code"]) for t in first] == [
        (0, "COMPLETED", 0), (1, "FAILED", 1), (2, "COMPLETED", 0), (3, "FAILED", 1), (4, "COMPLETED", 0)]
    text = project.mcompile("runs", "flaky", "--runs", str(project.runs)).stdout
    assert "FAILED: tasks 1,3" in text and "mcompile rerun" in text and "--failed" in text

    proc = project.mcompile("rerun", "flaky", "--failed", "--runs", str(project.runs))
    assert proc.returncode == 0, proc.stderr
    [job2] = proc.stdout.split()
    last = _records(run_dir)[-1]
    assert (last["job_id"], last["kind"], last["tasks"], last["ntasks"], last["array"]) == (job2, "rerun", "1,3", 2, "1,3")
    assert "--array=1,3" in last["sbatch"] and last["sbatch"][-1] == "job.sbatch"
    project.cluster.wait_gone(job2, timeout=90)
    tasks = _tasks(project, "flaky")
    assert [(t["state"], t["attempts"], t["submissions"]) for t in tasks] == [
        ("COMPLETED", 1, 1), ("COMPLETED", 1, 2), ("COMPLETED", 1, 1), ("COMPLETED", 1, 2), ("COMPLETED", 1, 1)]
    table = project.mcompile("runs", "flaky", "--runs", str(project.runs)).stdout.splitlines()
    rows = [line.split() for line in table[table.index(next(x for x in table if x.split()[:2] == ["task", "state"])) + 1:][:5]]
    assert rows == [["0", "COMPLETED", "0", "1", "1", job], ["1", "COMPLETED", "0", "1", "2", job2],
                    ["2", "COMPLETED", "0", "1", "1", job], ["3", "COMPLETED", "0", "1", "2", job2],
                    ["4", "COMPLETED", "0", "1", "1", job]], table
    assert "    queued by more than one submission: tasks 1,3" in table and not any("requeued" in line for line in table)
    assert tasks[1]["job_id"] == tasks[3]["job_id"] == job2 and tasks[0]["job_id"] == job
    assert (project.outputs("flaky", job2, 3) / "try").read_text() == "second\n"

    nothing = project.mcompile("rerun", "flaky", "--failed", "--runs", str(project.runs))
    assert nothing.returncode == 0 and "no failed tasks" in nothing.stderr and nothing.stdout == ""
    assert len(_records(run_dir)) == 2


def test_a_refused_chunk_is_reported_and_a_second_submit_queues_only_the_rest(project: Project) -> None:
    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True, env=project.env(), check=True).stdout.strip()
    wrapper = project.root / "bin"
    wrapper.mkdir()
    count = project.root / "parsable-calls"
    (wrapper / "sbatch").write_text(f"""#!/bin/bash
# the real sbatch, except that the second --parsable call is refused
if [[ " $* " == *" --parsable "* ]]; then
  echo x >> {count}
  if [ "$(wc -l < {count})" -eq 2 ]; then
    echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (test)" >&2
    exit 1
  fi
fi
exec {real} "$@"
""")
    (wrapper / "sbatch").chmod(0o755)
    manifest = project.manifest("partial", {"grid": {"template": "echo {{ i }} > /scratch_storage/i", "parameters": {"i": list(range(25))}}},
                                data=None)
    env = project.env()
    env["PATH"] = f"{wrapper}:{env['PATH']}"
    proc = _compile(project, manifest, "--submit", env=env)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir, job1 = proc.stdout.split()
    run_dir = Path(run_dir)
    err = proc.stderr
    assert "sbatch failed for tasks 9-17 (array 2 of 3): Batch job submission failed: Job violates accounting/QOS policy (test)" in err
    assert f"queued: job {job1} (tasks 0-8)" in err
    assert "not queued: tasks 9-24" in err
    assert f"to queue them: mcompile rerun {run_dir} --tasks 9-24" in err
    [record] = _records(run_dir)
    assert (record["job_id"], record["tasks"], record["planned"]) == (job1, "0-8", "0-24")
    project.cluster.wait_gone(job1, timeout=90)
    tasks = _tasks(project, "partial", settled=set(range(9)))
    assert [t["state"] for t in tasks] == ["COMPLETED"] * 9 + ["NOT_QUEUED"] * 16
    assert all(t["job_id"] is None and t["attempts"] == 0 for t in tasks[9:])
    text = project.mcompile("runs", "partial", "--runs", str(project.runs)).stdout
    assert "NOT QUEUED: tasks 9-24 (the same --submit again queues only these" in text and "NOT_QUEUED: tasks 9-24" in text

    rest = _compile(project, manifest, "--submit")
    assert rest.returncode == 0, rest.stderr
    assert "queuing only those" in rest.stderr and "not 9-24" in rest.stderr
    jobs = rest.stdout.split()[1:]
    records = _records(run_dir)
    assert [(r["tasks"], r["offset"], r["submission"]) for r in records] == [
        ("0-8", 0, record["submission"]), ("9-17", 9, record["submission"]), ("18-24", 18, record["submission"])]
    assert [r["job_id"] for r in records[1:]] == jobs
    for job in jobs:
        project.cluster.wait_gone(job, timeout=90)
    tasks = _tasks(project, "partial")
    assert all(t["state"] == "COMPLETED" and t["attempts"] == 1 for t in tasks), tasks
    outputs = project.scratch / "proj" / "partial"
    assert sorted(int(p.name.split("_")[1]) for p in outputs.iterdir()) == list(range(25)), "no task queued twice"

    # the submission is complete now: a further --submit is a whole new one (cancelled at once: only its record matters)
    whole = _compile(project, manifest, "--submit")
    assert whole.returncode == 0 and len(whole.stdout.split()) == 4 and "queuing only" not in whole.stderr
    project.cluster.run("scancel", *whole.stdout.split()[1:])
    assert [r["tasks"] for r in _records(run_dir)[3:]] == ["0-8", "9-17", "18-24"]
    for job in whole.stdout.split()[1:]:
        project.cluster.wait_gone(job, timeout=90)
