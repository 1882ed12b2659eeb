"""`mcompile report`'s page in a real browser: headless Chromium (Debian's chromium) loads the page
of a run with COMPLETED, FAILED, RUNNING and NOT_SUBMITTED tasks, runs its script, and the test reads
the counts the script drew, checks that no request left the browser, and that the screenshot shows
the grid's colours. The run's states come from the fake scheduler (tests/helpers/fake_slurm.py)."""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

import pytest
from helpers.browser import CHROMIUM, Proxy, chromium, colours
from helpers.report_run import EXPECTED_COUNTS, report_run

from manifest_compiler.html_report import STATE_COLOURS, render_report, report_data

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/setup.sh installs it)")


@pytest.fixture
def proxy() -> t.Iterator[Proxy]:
    p = Proxy()
    yield p
    p.close()


def _page(tmp_path: Path) -> Path:
    run, scheduler = report_run(tmp_path)
    page = tmp_path / "report.html"
    page.write_text(render_report(report_data(str(tmp_path / "runs"), str(run), scheduler=scheduler, generated="now")))
    return page


def test_the_page_shows_the_counts_its_script_drew_and_requests_nothing(tmp_path: Path, proxy: Proxy) -> None:
    page = _page(tmp_path)
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|@import|url\(""", html, re.I)
    dom = chromium(page, "--dump-dom", proxy=proxy, user_data=tmp_path / "profile").stdout
    drawn = dict(re.findall(r'class="legend-item" data-state="([A-Z_]+)" data-count="(\d+)"', dom))
    assert {s: int(n) for s, n in drawn.items()} == EXPECTED_COUNTS
    assert "6 tasks drawn." in dom
    # the task shown first (0) is filled in by the script; the command with </script> stays text
    assert "<td>command</td><td>echo a</td>" in dom and "echo &lt;/script&gt;" in html
    assert proxy.page_requests() == []


def test_a_page_that_loads_something_is_caught_by_the_proxy(tmp_path: Path, proxy: Proxy) -> None:
    """The check above can fail: an image from the network reaches the stand-in proxy."""
    page = tmp_path / "net.html"
    page.write_text('<!DOCTYPE html><img src="http://example.org/x.png"><p>x</p>')
    chromium(page, "--dump-dom", "--virtual-time-budget=2000", proxy=proxy, user_data=tmp_path / "profile")
    assert "example.org" in proxy.page_requests(), proxy.requests


def test_the_screenshot_shows_the_grid_in_the_states_colours(tmp_path: Path, proxy: Proxy) -> None:
    page = _page(tmp_path)
    shot = tmp_path / "shot.png"
    chromium(page, f"--screenshot={shot}", "--window-size=1000,1400", proxy=proxy, user_data=tmp_path / "profile")
    seen = colours(shot.read_bytes())
    assert len(seen) > 2
    for state in EXPECTED_COUNTS:
        rgb = tuple(int(STATE_COLOURS[state][k:k + 2], 16) for k in (1, 3, 5))
        near = sum(n for c, n in seen.items() if max(abs(a - b) for a, b in zip(c, rgb, strict=True)) <= 3)
        assert near > 50, (state, rgb)  # a cell of the grid (and the swatches), not a stray pixel
