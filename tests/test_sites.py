"""Site profiles: `extends: site:NAME`, the shipped ones and a user's own, and what validate and
--submit check against them."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifest_compiler import sites
from manifest_compiler.errors import OperationError
from manifest_compiler.pipeline import check_file, resolve_file
from manifest_compiler.submit import preflight

MANIFEST = """\
version: 1
extends: site:{site}
name: demo
project: study
cluster: {{account: def-pi}}
container: {{image: {image}}}
resources: {{time: {time}, mem: 4G}}
run: {{commands: [python train.py]}}
"""


def problems(tmp_path: Path, **values: str) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.format(**{"site": "narval", "image": "/images/app.sif", "time": "1h", **values}))
    return [str(p) for p in check_file(str(path))[1]]


@pytest.mark.parametrize("site", ["narval", "rorqual", "fir", "nibi", "trillium"])
def test_every_shipped_profile_is_a_valid_base_and_extends(tmp_path: Path, site: str) -> None:
    assert site in sites.shipped()
    _, own = check_file(sites.site_path(f"site:{site}"))
    assert own == []  # a base validates alone
    assert problems(tmp_path, site=site) == []


def test_a_profile_caps_the_time(tmp_path: Path) -> None:
    assert problems(tmp_path, time="10d") == [
        f"{tmp_path}/m.yaml:7:19: resources.time: 10d is longer than the longest job on narval, 7d (cluster.max_time); "
        "ask for at most that, and requeue (resources.requeue) to go on in a new job"]
    assert problems(tmp_path, time="7d") == []
    assert problems(tmp_path, site="trillium", time="25h")[0].endswith(
        "resources.time: 1d1h is longer than the longest job on trillium, 1d (cluster.max_time); "
        "ask for at most that, and requeue (resources.requeue) to go on in a new job")


def test_a_users_own_profile_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "sites"
    own.mkdir()
    (own / "narval.yaml").write_text("version: 1\nbase: true\nextends: site:rorqual\ncluster: {name: my-narval, max_time: 2d}\n")
    (own / "lab.yaml").write_text("version: 1\nbase: true\ncluster: {name: lab, max_time: 1h}\n")
    monkeypatch.setenv("MCOMPILE_SITES", str(own))
    assert sites.site_path("site:narval") == str(own / "narval.yaml")
    assert problems(tmp_path, time="3d")[0].endswith("3d is longer than the longest job on my-narval, 2d (cluster.max_time); "
                                                     "ask for at most that, and requeue (resources.requeue) to go on in a new job")
    assert "2h is longer than the longest job on lab, 1h" in problems(tmp_path, site="lab", time="2h")[0]
    monkeypatch.delenv("MCOMPILE_SITES")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config" / "mcompile" / "sites").mkdir(parents=True)
    (tmp_path / "config" / "mcompile" / "sites" / "lab.yaml").write_text((own / "lab.yaml").read_text())
    assert sites.site_path("site:lab") == str(tmp_path / "config" / "mcompile" / "sites" / "lab.yaml")


def test_an_unknown_or_malformed_site_is_one_located_line(tmp_path: Path) -> None:
    assert problems(tmp_path, site="cedar") == [
        f"{tmp_path}/m.yaml:2:10: extends: no site profile 'cedar'; shipped: fir, narval, nibi, rorqual, trillium "
        "(your own go in $MCOMPILE_SITES or ~/.config/mcompile/sites)"]
    assert "is not a site profile name" in problems(tmp_path, site="../etc/passwd")[0]


def test_trillium_jobs_are_submitted_from_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "images").mkdir(parents=True)
    (scratch / "images" / "app.sif").write_bytes(b"sif")
    monkeypatch.setenv("SCRATCH", str(scratch))
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.format(site="trillium", image="$SCRATCH/images/app.sif", time="1h"))
    resolved, _, _ = resolve_file(str(path))
    outside = tmp_path / "home" / "runs" / "demo" / "abc"
    outside.mkdir(parents=True)
    with pytest.raises(OperationError, match=r"jobs are submitted from \$SCRATCH .* on this cluster \(cluster.submit_from\), "
                                             r"and the run folder .* is outside it: compile with --runs under it, e.g. --runs \$SCRATCH/runs"):
        preflight(outside, resolved)
    inside = scratch / "runs" / "demo" / "abc"
    inside.mkdir(parents=True)
    assert preflight(inside, resolved).archives == []
