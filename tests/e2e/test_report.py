"""`mcompile report` of a run on a real local SLURM (slurmdbd accounting), loaded in headless
Chromium: tasks COMPLETED, FAILED, RUNNING and NOT_SUBMITTED as sacct and squeue say."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from cluster import Cluster
from helpers.browser import CHROMIUM, Proxy, chromium
from test_submit import Project

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/setup.sh installs it)")]


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    return Project(tmp_path, dbd_cluster)


def test_the_report_of_a_run_on_slurm_shows_its_states_in_the_browser(project: Project, tmp_path: Path) -> None:
    manifest = project.manifest("rep", {"commands": ["true", "exit 3", "sleep 120", "true"]}, data=None)
    proc = project.mcompile("compile", str(manifest), "--runs", str(project.runs))
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.split()[0])
    proc = project.mcompile("rerun", str(run), "--tasks", "0-2", "--runs", str(project.runs))
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.split()[0]
    try:
        deadline = time.monotonic() + 120
        while True:  # 0 and 1 ended (with their exit codes in the record), 2 running
            proc = project.mcompile("runs", str(run), "--runs", str(project.runs), "--format", "json")
            tasks = json.loads(proc.stdout)
            got = [(t["state"], t["exit_code"]) for t in tasks]
            if got == [("COMPLETED", 0), ("FAILED", 3), ("RUNNING", None), ("NOT_SUBMITTED", None)] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got == [("COMPLETED", 0), ("FAILED", 3), ("RUNNING", None), ("NOT_SUBMITTED", None)]
        proc = project.mcompile("report", str(run), "--runs", str(project.runs))
        assert proc.returncode == 0, proc.stderr
        page = Path(proc.stdout.strip())
        assert page == run / "report.html"
        proxy = Proxy()
        try:
            dom = chromium(page, "--dump-dom", proxy=proxy, user_data=tmp_path / "profile").stdout
            assert proxy.page_requests() == []
        finally:
            proxy.close()
        drawn = dict(re.findall(r'class="legend-item" data-state="([A-Z_]+)" data-count="(\d+)"', dom))
        assert drawn == {"COMPLETED": "1", "FAILED": "1", "RUNNING": "1", "NOT_SUBMITTED": "1"}
        text = project.mcompile("runs", str(run), "--runs", str(project.runs)).stdout
        [log] = re.findall(r"^    logs: (.*)$", text, re.M)
        assert f"<td>log</td><td>{log.replace('<task>', '0')}</td>" in dom  # task 0, shown first
        assert Path(log.replace("<task>", "0")).is_file()  # the log SLURM wrote
        assert f"<td>job</td><td>{job}</td>" in dom
    finally:
        project.cluster.run("scancel", job, check=False)
        project.cluster.wait_gone(job)
