"""Operating a queued run on the real SLURM: logs, cancel, efficiency, pending reasons, start estimates.

The container runtime is tests/doubles/apptainer (bubblewrap): Apptainer cannot be installed
here. SLURM, slurmdbd and sacct are real.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster import Cluster
from test_requeue import COUNTER, signal_when_counting
from test_submit import Project

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
from helpers.make_test_image import make_image  # noqa: E402

LATER = {"begin": "now+3600"}  # sbatch --begin: the tasks stay pending (reason BeginTime)

# Touches 200 MiB, keeps it, and burns CPU for 4 s, then sleeps 2 s holding the memory.
HOG = """\
import time
block = bytearray(200 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
start = time.process_time()
burned = 0
while time.process_time() - start < 4:  # burn CPU
    burned += 1
time.sleep(2)
print("hog: done", len(block), flush=True)
"""


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    p = Project(tmp_path, dbd_cluster)
    make_image(p.scratch / "containers" / "app.sif", {"opt/app/counter.py": COUNTER, "opt/app/hog.py": HOG})
    return p


def _json_rows(p: Project, name: str) -> list[dict]:
    proc = p.mcompile("runs", name, "--runs", str(p.runs), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _wait_for(predicate, what: str, timeout: float = 60, show=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}" + (f"; last: {show()}" if show else ""))


def test_logs_of_a_requeued_task_mark_both_attempts(project: Project) -> None:
    manifest = project.manifest("count", {"commands": ["python3 /opt/app/counter.py 40"]}, data=None,
                                resources={"time": "10m", "mem": "256M", "requeue": {"before_end": "2m", "max_restarts": 2}})
    _, job, proc = project.submit(manifest)
    assert "expected to start around 2" in proc.stderr and "(sbatch --test-only, using " in proc.stderr, proc.stderr
    out = project.outputs("count", job, 0)
    signal_when_counting(project, job, out / "checkpoint", 5)
    project.cluster.wait_gone(job, timeout=120)

    logs = project.mcompile("logs", "count", "--runs", str(project.runs), "--task", "0")
    assert logs.returncode == 0, logs.stderr
    text = logs.stdout
    log = project.scratch / "proj" / "hpc_outputs" / f"count_{job}_0.out"
    assert f"==> attempt 1 of 2 (job {job}, first start): {log} <==" in text, text
    assert f"==> attempt 2 of 2 (job {job}, restart 1): {log} <==" in text, text
    first, second = text.split("==> attempt 2 of 2")
    assert "counter: stopped by SIGUSR1" in first and "requeueing it (restart 1 of 2)" in first, first
    assert "counter: done at 40" in second and "stopped by SIGUSR1" not in second, second

    only = project.mcompile("logs", "count", "--runs", str(project.runs), "--task", "0", "--attempt", "1").stdout
    assert "attempt 1 of 2" in only and "attempt 2 of 2" not in only and "done at 40" not in only, only
    wrong = project.mcompile("logs", "count", "--runs", str(project.runs), "--task", "0", "--attempt", "3")
    assert wrong.returncode == 2 and "task 0 has 2 attempts with a log, not 3" in wrong.stderr, wrong.stderr


def test_follow_ends_when_the_task_ends(project: Project) -> None:
    command = "for i in 1 2 3 4 5 6; do echo tick $i; sleep 1; done; echo all done"
    manifest = project.manifest("tick", {"commands": [command]}, data=None)
    _, job, _ = project.submit(manifest)
    follow = subprocess.Popen([sys.executable, "-m", "manifest_compiler", "logs", "tick", "--runs", str(project.runs),
                               "--task", "0", "--follow"], env=project.env(), cwd=project.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = follow.communicate(timeout=90)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err
    assert "tick 1" in out and "all done" in out, out
    assert out.count("all done") == 1 and out.count("tick 6") == 1, out  # nothing printed twice
    assert out.rstrip().endswith("==> task 0: COMPLETED, exit code 0:0 <=="), out
    assert squeue_empty(project, job)


def squeue_empty(p: Project, job: str) -> bool:
    return not p.cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip()


def test_logs_without_a_task_show_failed_tails_and_why_others_have_not_started(project: Project) -> None:
    commands = ["echo fine", "echo line one; echo the real error >&2; exit 3"]
    manifest = project.manifest("mixed", {"commands": commands}, data=None)
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=60)
    _wait_for(lambda: [r["state"] for r in _json_rows(project, "mixed")] == ["COMPLETED", "FAILED"], "both tasks to end")
    summary = project.mcompile("logs", "mixed", "--runs", str(project.runs)).stdout
    assert "task 1: FAILED, exit code 3:0; last " in summary and f"(job {job}):" in summary, summary
    assert "  the real error" in summary and "exited with status 3" in summary and "task 0" not in summary, summary

    later = project.manifest("later", {"commands": ["echo a", "echo b"]}, data=None, cluster={"sbatch_options": LATER})
    _, job2, _ = project.submit(later)
    try:
        _wait_for(lambda: all(r["reason"] == "BeginTime" for r in _json_rows(project, "later")), "the pending reason")
        summary = project.mcompile("logs", "later", "--runs", str(project.runs)).stdout
        assert f"task 0: PENDING (BeginTime), job {job2}: not started yet, no log" in summary, summary
        one = project.mcompile("logs", "later", "--runs", str(project.runs), "--task", "1").stdout
        assert one == f"task 1: PENDING (BeginTime), job {job2}: not started yet, no log\n", one
        text = project.mcompile("runs", "later", "--runs", str(project.runs)).stdout
        assert "    pending (BeginTime): tasks 0-1" in text, text
    finally:
        project.cluster.run("scancel", job2, check=False)


def test_efficiency_of_a_task_that_uses_200_mib_and_4_s_of_cpu(project: Project) -> None:
    # acctg-freq: sample every second (the cluster's default is 30 s, longer than the task)
    manifest = project.manifest("hog", {"commands": ["python3 /opt/app/hog.py"]}, data=None,
                                resources={"time": "30m", "mem": "1G"}, cluster={"sbatch_options": {"acctg-freq": "task=1"}})
    _, job, _ = project.submit(manifest)
    project.cluster.wait_gone(job, timeout=90)
    _wait_for(lambda: _json_rows(project, "hog")[0]["efficiency"] is not None, "accounting to record the task")
    [row] = _json_rows(project, "hog")
    e = row["efficiency"]
    assert row["state"] == "COMPLETED" and e["time_limit_s"] == 1800 and e["mem_bytes"] == 1 << 30, row
    assert 6 <= e["elapsed_s"] <= 40, e
    cpu_seconds = e["cpu_efficiency"] * e["elapsed_s"] * e["cpus"]
    assert 3.5 <= cpu_seconds <= 6.5, e  # 4 s of burning, and python's start
    assert (200 << 20) <= e["max_rss_bytes"] <= (320 << 20), e
    text = project.mcompile("runs", "hog", "--runs", str(project.runs)).stdout
    print(text, json.dumps(e))  # the figures, for `pytest -s`
    assert "  efficiency (1 finished task, sacct): elapsed " in text and " of 30m (" in text, text
    assert "memory 2" in text and "M at most of 1G (" in text, text
    assert "  advice: `mem: 1G` used 2" in text and "M at most: 320M would do" in text or "M at most: 384M would do" in text, text
    assert "advice: `time: 0-00:30:00` took " in text and "at most: 1m would do" in text, text
    # the same figures drawn in `mcompile report`'s page: one task in the 0-10% bar of its time limit and
    # in the 20-30% bar of its memory request (200-320 MiB of 1 GiB), with the same advice
    page = Path(project.mcompile("report", "hog", "--runs", str(project.runs)).stdout.strip()).read_text()
    section = page[page.index("<h2>Elapsed time and memory</h2>"):page.index("<h2>Plan</h2>")]
    bars = re.findall(r"<tr><td>([0-9]+-[0-9]+%|over)</td><td>.*?</td><td>(\d+)</td></tr>", section)
    assert [label for label, n in bars[:11] if n == "1"] == ["0-10%"] and [label for label, n in bars[11:] if n == "1"] in (["10-20%"], ["20-30%"]), section
    assert "advice: `mem: 1G` used 2" in section, section


def test_cancel_records_and_stops_queued_tasks(project: Project) -> None:
    manifest = project.manifest("stop", {"commands": [f"echo {i}" for i in range(4)]}, data=None, cluster={"sbatch_options": LATER})
    run_dir, job, _ = project.submit(manifest)
    some = project.mcompile("cancel", "stop", "--runs", str(project.runs), "--tasks", "1,3")
    assert some.returncode == 0, some.stderr
    assert f"cancelled tasks 1,3 (scancel {job}_[1,3])" in some.stderr, some.stderr
    _wait_for(lambda: [r["state"] for r in _json_rows(project, "stop")] == ["PENDING", "CANCELLED", "PENDING", "CANCELLED"],
              "tasks 1 and 3 to be cancelled", show=lambda: (_json_rows(project, "stop"),
                                                               project.cluster.run("squeue", "-h", "-t", "all", "-r", "-j", job, check=False).stdout,
                                                               project.cluster.run("sacct", "-X", "-D", "-P", "-j", job, check=False).stdout))
    rest = project.mcompile("cancel", "stop", "--runs", str(project.runs))
    assert f"cancelled tasks 0,2 (scancel {job}_[0,2])" in rest.stderr, rest.stderr
    _wait_for(lambda: all(r["state"] == "CANCELLED" for r in _json_rows(project, "stop")), "every task to be cancelled")
    again = project.mcompile("cancel", "stop", "--runs", str(project.runs))
    assert again.returncode == 0 and "nothing to cancel" in again.stderr, again.stderr
    records = [json.loads(line) for line in (run_dir / "cancels.jsonl").read_text().splitlines()]
    assert [(r["tasks"], r["scancel"], r["refused"]) for r in records] == [("1,3", [f"{job}_[1,3]"], None), ("0,2", [f"{job}_[0,2]"], None)]
    text = project.mcompile("runs", "stop", "--runs", str(project.runs)).stdout
    assert "  cancelled tasks 1,3 (mcompile cancel, " in text and "  cancelled tasks 0,2 (mcompile cancel, " in text, text


def test_cancel_of_a_chunked_run_and_its_rerun(tmp_path: Path, small_array_cluster: Cluster) -> None:
    p = Project(tmp_path, small_array_cluster)
    manifest = p.manifest("big", {"commands": [f"echo {i}" for i in range(12)]}, data=None, cluster={"sbatch_options": LATER})
    proc = p.mcompile("compile", str(manifest), "--runs", str(p.runs), "--submit")
    assert proc.returncode == 0, proc.stderr
    run_dir, first, second = proc.stdout.split()
    rerun = p.mcompile("rerun", "big", "--runs", str(p.runs), "--tasks", "2")
    assert rerun.returncode == 0, rerun.stderr
    third = rerun.stdout.split()[0]
    cancel = p.mcompile("cancel", "big", "--runs", str(p.runs))
    assert cancel.returncode == 0, cancel.stderr
    assert f"cancelled tasks 0-11 (scancel {first} {second} {third})" in cancel.stderr, cancel.stderr
    for job in (first, second, third):
        p.cluster.wait_gone(job, timeout=60)
    rows = json.loads(p.mcompile("runs", "big", "--runs", str(p.runs), "--format", "json").stdout)
    assert all(r["state"] == "CANCELLED" for r in rows), rows
    assert [r["job_id"] for r in rows][9:] == [second] * 3 and rows[2]["job_id"] == third, rows


def test_efficiency_is_not_available_without_accounting(tmp_path: Path, filetxt_cluster: Cluster) -> None:
    p = Project(tmp_path, filetxt_cluster)
    manifest = p.manifest("plain", {"commands": ["echo hi"]}, data=None)
    _, job, _ = p.submit(manifest)
    filetxt_cluster.wait_gone(job, timeout=60)
    text = p.mcompile("runs", "plain", "--runs", str(p.runs)).stdout
    assert "  efficiency: not available (accounting is off here: sacct does not answer; it needs slurmdbd)" in text, text
    rows = json.loads(p.mcompile("runs", "plain", "--runs", str(p.runs), "--format", "json").stdout)
    assert rows[0]["efficiency"] is None and rows[0]["state"] == "COMPLETED", rows


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """What the pseudo-terminal gives until `marker` appears (or the time is up, or it closes)."""
    import os
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("pack", [1, 2], ids=["unpacked", "packed"])
def test_shell_through_a_pty_runs_in_the_tasks_container_and_cleans_up(project: Project, pack: int) -> None:
    """With run.pack, the shell is that of the one task named, not of its array task's pack."""
    import os
    import pty

    local = project.root / "node-local"  # not SLURM_TMPDIR, which SLURM's epilog removes: mcompile must
    local.mkdir()
    commands = [f"echo task {i}" for i in range(3)]
    run = {"commands": commands, **({"pack": pack} if pack > 1 else {})}
    manifest = project.manifest("sh", run, cluster={"local_tmp": str(local)},
                                env={"GREETING": "hello from the manifest"}, resources={"time": "5m", "mem": "256M", "cpus_per_task": 1})
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs))
    assert proc.returncode == 0, proc.stderr
    primary, secondary = pty.openpty()
    shell = subprocess.Popen([sys.executable, "-m", "manifest_compiler", "shell", "sh", "--runs", str(project.runs),
                              "--task", "2", "--time", "2m"], env=project.env(), cwd=project.root,
                             stdin=secondary, stdout=secondary, stderr=secondary, start_new_session=True)
    os.close(secondary)
    try:
        # a command typed into the shell: the task's number, env, secret (its length), staged data, node-local folder
        line = ('echo "T=$MCOMPILE_TASK G=$GREETING K=${#WANDB_API_KEY}"; cat /data/set/part1/rows.txt; '
                'ls -d /proc/1 >/dev/null && echo MARK-$((40 + 2))\n')
        banner = _read_until(primary, b"srun --pty", 60)  # archives are built first; then srun starts
        time.sleep(3)  # the shell in the container starts reading
        os.write(primary, line.encode())
        out = _read_until(primary, b"MARK-42", 60)
        assert b"T=2 G=hello from the manifest K=" in out and b"rows of part 1" in out, banner + out
        during = [p.name for p in local.iterdir()]
        assert len(during) == 1 and during[0].startswith("mcompile-"), during
        os.write(primary, b"exit 7\n")
        _read_until(primary, b"\x00never", 20)
        assert shell.wait(timeout=60) == 7
    finally:
        if shell.poll() is None:
            shell.kill()
        os.close(primary)
    assert list(local.iterdir()) == []  # the task's node-local folder was removed
    assert [p for p in (project.scratch / "proj" / "hpc_outputs").glob("sh_*")] == []  # no log: the shell is on the terminal


def test_gc_keeps_what_a_pending_task_needs_and_frees_the_rest(project: Project) -> None:
    import os

    manifest = project.manifest("keep", {"commands": ["cat /data/set/part0/rows.txt"]}, cluster={"sbatch_options": LATER})
    run_dir, job, _ = project.submit(manifest)
    archives = project.scratch / "proj" / ".mcompile" / "archives"
    [needed] = list(archives.glob("*.tar"))
    (project.data / "set" / "part0" / "rows.txt").write_text("newer rows\n")
    staged = project.mcompile("stage", str(manifest), "--runs", str(project.runs))
    assert staged.returncode == 0, staged.stderr
    [newer] = [a for a in archives.glob("*.tar") if a != needed]
    stale = archives / ("0" * 32 + ".tar")
    stale.write_bytes(b"x" * 5000)
    code = project.scratch / "proj" / ".mcompile" / "code"
    code.mkdir()
    snapshot = code / "0123456789abcdef.tar"
    snapshot.write_bytes(b"y" * 3000)
    week_ago = time.time() - 7 * 86400
    for path in (needed, stale, snapshot):
        os.utime(path, (week_ago, week_ago))

    dry = project.mcompile("gc", "--runs", str(project.runs), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(dry.stdout.splitlines()) == sorted([f"would remove {stale} (4.9K)", f"would remove {snapshot} (2.9K)"]), dry.stdout
    assert "would free 7.8K in 2 files; kept 2 (" in dry.stderr, dry.stderr
    assert stale.exists() and snapshot.exists()

    os.utime(newer, (week_ago, week_ago))  # built by hand a week ago, never submitted: no run needs it
    real = project.mcompile("gc", "--runs", str(project.runs))
    assert real.returncode == 0, real.stderr
    assert sorted(line.split(" (")[0] for line in real.stdout.splitlines()) == sorted(
        f"removed {p}" for p in (newer, stale, snapshot)), real.stdout
    assert needed.exists() and not newer.exists() and not stale.exists() and not snapshot.exists()

    # the run's folder is not under --runs, but SLURM still has its task queued: its archive stays
    elsewhere = project.root / "other-runs"
    elsewhere.mkdir()
    kept = project.mcompile("gc", "--runs", str(elsewhere))
    assert kept.returncode == 0 and kept.stdout == "" and needed.exists(), (kept.stdout, kept.stderr)
    assert "kept 1 (" in kept.stderr, kept.stderr
    project.cluster.run("scancel", job)
    project.cluster.wait_gone(job)
    # and once it is not queued any more, only the runs under --runs keep it
    assert project.mcompile("gc", "--runs", str(project.runs)).stdout == "" and needed.exists()
    (run_dir / "submissions.jsonl").unlink()
    gone = project.mcompile("gc", "--runs", str(project.runs))
    assert gone.stdout.startswith(f"removed {needed} ("), gone.stdout


def test_archives_built_in_a_staging_job_the_array_depends_on(project: Project) -> None:
    commands = [f"cat /data/set/part{i}/rows.txt > /scratch_storage/out.txt" for i in range(2)]
    manifest = project.manifest("staged", {"commands": commands}, data={"subsets": ["set"], "stage": "archive", "build": "job"})
    run_dir, job, proc = project.submit(manifest)
    assert "data set: to be built in a staging job archive " in proc.stderr, proc.stderr
    staging = proc.stderr.split("mcompile: staging job ")[1].split()[0]
    assert staging.isdigit() and int(staging) < int(job), proc.stderr
    record = json.loads((run_dir / "submissions.jsonl").read_text().splitlines()[0])
    assert record["staging_job"] == staging
    assert f"--dependency=afterok:{staging}" in record["sbatch"] and "--kill-on-invalid-dep=yes" in record["sbatch"], record
    project.cluster.wait_gone(job, timeout=120)
    for i in range(2):
        assert (project.outputs("staged", job, i) / "out.txt").read_text() == f"rows of part {i}\n"
    log = (project.scratch / "proj" / "hpc_outputs" / f"staged_{staging}_stage.out").read_text()
    assert "built set " in log, log
    rows = project.cluster.sacct_until(f"{staging},{job}", "JobID,Start,End,State",
                                       lambda r: len(r) == 3 and all(x[3] == "COMPLETED" for x in r), extra=("-X",))
    staged_end = next(r[2] for r in rows if r[0] == staging)
    assert all(r[1] >= staged_end for r in rows if r[0] != staging), rows  # the tasks started after the archive was built
    text = project.mcompile("runs", "staged", "--runs", str(project.runs)).stdout
    assert f"staging job {staging} (data.build: job): COMPLETED, archives built" in text, text


def test_a_failing_staging_job_leaves_no_task_waiting(project: Project) -> None:
    manifest = project.manifest("broken", {"commands": ["echo never", "echo never"]},
                                data={"subsets": ["set"], "stage": "archive", "build": "job"})
    # the node is taken, so the staging job waits; the data changes meanwhile: it must refuse to build
    blocker = project.cluster.sbatch("--exclusive", "--time=5", "--wrap", "sleep 300")
    try:
        run_dir, job, proc = project.submit(manifest)
        staging = proc.stderr.split("mcompile: staging job ")[1].split()[0]
        (project.data / "set" / "part2" / "rows.txt").write_text("changed after --submit\n")
    finally:
        project.cluster.run("scancel", blocker)
    project.cluster.wait_gone(staging, timeout=120)
    project.cluster.wait_gone(job, timeout=120)  # not left pending forever: SLURM cancelled the array
    log = (project.scratch / "proj" / "hpc_outputs" / f"broken_{staging}_stage.out").read_text()
    assert "data subset set changed since it was submitted" in log, log
    _wait_for(lambda: "staging job " + staging + " (data.build: job) FAILED" in
              project.mcompile("runs", "broken", "--runs", str(project.runs)).stdout, "runs to say the staging job failed")
    text = project.mcompile("runs", "broken", "--runs", str(project.runs)).stdout
    assert "its tasks never start (SLURM cancels them: --kill-on-invalid-dep)" in text, text
    assert f"broken_{staging}_stage.out" in text, text
    rows = _json_rows(project, "broken")
    assert all(r["state"] != "PENDING" for r in rows), rows
    assert not (project.outputs("broken", job, 0) / "out.txt").exists()


def test_follow_says_what_it_waits_for_until_the_task_starts(project: Project, tmp_path: Path) -> None:
    manifest = project.manifest("held", {"commands": ["echo started; sleep 2; echo done"]}, data=None,
                                cluster={"sbatch_options": {"hold": True}})
    _, job, _ = project.submit(manifest)
    notes = tmp_path / "follow-stderr.txt"
    with open(notes, "w") as err:
        follow = subprocess.Popen([sys.executable, "-m", "manifest_compiler", "logs", "held", "--runs", str(project.runs),
                                   "--task", "0", "--follow"], env=project.env(), cwd=project.root,
                                  stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            _wait_for(lambda: "waiting for task 0 to start: PENDING" in notes.read_text(), "the waiting line")
            project.cluster.run("scontrol", "release", job)
            out, _ = follow.communicate(timeout=90)
        finally:
            if follow.poll() is None:
                follow.kill()
    said = notes.read_text().splitlines()
    assert said[0].startswith("mcompile: waiting for task 0 to start: PENDING (JobHeld"), said  # the reason from squeue
    assert said.count(said[0]) == 1, said  # said once, not at every look
    assert any(line.startswith("mcompile: task 0 is ") for line in said[1:]), said
    assert "started" in out and out.rstrip().endswith("==> task 0: COMPLETED, exit code 0:0 <=="), out
