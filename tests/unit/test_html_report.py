"""`mcompile report`'s page without a browser: its data (the counts and every task's latest attempt,
as `runs` derives them), its bytes (the same run state, the same page apart from the time), the
embedded JSON that no command can break out of, and the command line. The run's states come from the
fake scheduler (tests/helpers/fake_slurm.py); tests/test_report_browser.py loads the page in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.report_run import EXPECTED_COUNTS, report_run

from manifest_compiler import cli
from manifest_compiler.html_report import render_report, report_data


def _embedded(html: str) -> dict[str, object]:
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
    assert m
    value = json.loads(m.group(1))
    assert isinstance(value, dict)
    return value


def test_the_page_data_is_the_runs_states_and_the_tasks(tmp_path: Path) -> None:
    run, scheduler = report_run(tmp_path)
    data = report_data(str(tmp_path / "runs"), str(run), scheduler=scheduler, generated="then")
    assert {c["state"]: c["n"] for c in data.counts} == EXPECTED_COUNTS
    g = data.grid
    assert [g["states"][s] for s in g["state"]] == ["COMPLETED", "FAILED", "RUNNING", "COMPLETED", "NOT_SUBMITTED", "NOT_SUBMITTED"]
    assert g["exit"] == [0, 3, None, 0, None, None]
    assert g["attempts"] == [1, 1, 1, 1, 0, 0]
    assert g["jobs"] == [{"id": "100", "offset": 0, "log": f"{tmp_path}/logs/rep_100_%a.out"}] and g["job"] == [0, 0, 0, 0, -1, -1]
    assert g["commands"][3] == "echo </script>"
    assert data.identity["image"]["sha256"] and data.identity["manifest_sha256"] and data.identity["failed"] == 3
    assert data.identity["time"] == "0-00:10:00"
    assert "since " in data.diff and 'resources.time: "0-00:05:00" → "0-00:10:00"' in data.diff
    assert data.plan.startswith("mcompile plan: p / rep")

    html = render_report(data)
    assert _embedded(html) == json.loads(json.dumps(g))  # the script reads what the data says
    assert "</script>\"" not in html and "echo \\u003c/script>" in html
    assert f"image <code>{data.identity['image']['sha256'][:12]}</code>" in html  # what the submission ran


def test_the_same_run_state_gives_the_same_page_apart_from_the_time(tmp_path: Path) -> None:
    run, scheduler = report_run(tmp_path)
    one = render_report(report_data(str(tmp_path / "runs"), str(run), scheduler=scheduler, generated="2026-01-01T00:00:00Z"))
    two = render_report(report_data(str(tmp_path / "runs"), str(run), scheduler=scheduler, generated="2026-01-02T00:00:00Z"))
    assert one != two
    assert one.replace("2026-01-01T00:00:00Z", "") == two.replace("2026-01-02T00:00:00Z", "")


def test_a_run_never_submitted_has_every_task_not_submitted(tmp_path: Path) -> None:
    run, scheduler = report_run(tmp_path)
    (run / "submissions.jsonl").unlink()
    data = report_data(str(tmp_path / "runs"), str(run), scheduler=scheduler, generated="now")
    assert data.counts == [{"state": "NOT_SUBMITTED", "n": 6, "colour": "#e3e3e3"}] and data.submissions == []
    assert data.identity["image"] is None
    assert "<p>not submitted</p>" in render_report(data)


def test_report_writes_the_page_in_the_run_directory_or_to_o(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run, scheduler = report_run(tmp_path)
    monkeypatch.setattr(cli, "build_scheduler", lambda: scheduler)
    assert cli.main(["report", "rep", "--runs", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out == f"{run / 'report.html'}\n"
    assert "NOT_SUBMITTED" in (run / "report.html").read_text()
    assert cli.main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file()
    assert cli.main(["report", "nothing", "--runs", str(tmp_path / "runs")]) == 2
    assert "no compiled run 'nothing'" in capsys.readouterr().err


def test_histograms_count_the_finished_tasks_by_tenths_of_their_request() -> None:
    from manifest_compiler.html_report import _histogram

    h = _histogram("elapsed time against the time limit", [(30, 600), (59, 600), (60, 600), (599, 600), (900, 600), (5, None)])
    assert [(b["label"], b["n"]) for b in h["bars"] if b["n"]] == [("0-10%", 2), ("10-20%", 1), ("90-100%", 1), ("over", 1)]
    assert h["unknown"] == 1 and max(b["share"] for b in h["bars"]) == 100


def test_the_page_shows_the_histograms_and_the_advice(tmp_path: Path) -> None:
    import dataclasses

    from manifest_compiler.html_report import _histogram

    run, scheduler = report_run(tmp_path)
    data = report_data(str(tmp_path / "runs"), str(run), scheduler=scheduler, generated="then")
    data = dataclasses.replace(data, accounting_note="", advice=["`mem: 1G` used 230M at most: 320M would do"],
                               histograms=[_histogram("peak memory (MaxRSS) against the request", [(230 << 20, 1 << 30)])])
    html = render_report(data)
    assert "<h3>peak memory (MaxRSS) against the request</h3>" in html and 'id="accounting"' not in html
    assert "<td>20-30%</td>" in html and "advice: `mem: 1G` used 230M at most: 320M would do" in html
