"""A data archive of many small files, built by two tars at once (stage.py joins their archives),
reaches the node whole: on the real SLURM, the task sees every file of the subset with its bytes,
folders and links as they are on the submitting host."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cluster import Cluster
from test_submit import Project

from manifest_compiler import stage

pytestmark = pytest.mark.slurm

# every regular file's path and content, and every link's target, in one digest; and the counts
DIGEST = ("cd /data/many && { find . -type f -print0 | sort -z | xargs -0 sha256sum; "
          "find . -type l -printf '%p -> %l\\n' | sort; find . -type d | sort; } | sha256sum | cut -c1-64 > /scratch_storage/digest; "
          "find . -type f | wc -l > /scratch_storage/files")


def _host_digest(top: Path) -> str:
    files = sorted(p for p in top.rglob("*") if p.is_file() and not p.is_symlink())
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(top)}\n" for p in files]
    links = sorted(f"./{p.relative_to(top)} -> {os.readlink(p)}\n" for p in top.rglob("*") if p.is_symlink())
    folders = sorted(["."] + [f"./{p.relative_to(top)}" for p in top.rglob("*") if p.is_dir() and not p.is_symlink()])
    return hashlib.sha256("".join(lines + links + [f + "\n" for f in folders]).encode()).hexdigest()


@pytest.fixture
def project(tmp_path: Path, dbd_cluster: Cluster) -> Project:
    return Project(tmp_path, dbd_cluster)


def test_an_archive_built_by_two_tars_reaches_the_node_whole(project: Project) -> None:
    top = project.data / "many"
    for d in range(80):
        folder = top / f"shard-{d:03d}" / ("inner" if d % 7 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(80):
            (folder / f"item {f:03d}.bin").write_bytes(os.urandom(200 + (d * 80 + f) % 900))
    (top / "shard-040" / "latest").symlink_to("item 079.bin")
    fingerprint = stage.fingerprint(project.data, "many")
    assert fingerprint.entries >= stage._SPLIT_ENTRIES  # the layout takes the two-tar path on a 2-CPU host
    assert stage._cut(os.fsencode(os.path.realpath(top)), fingerprint) is not None
    manifest = project.manifest("many", {"commands": [DIGEST]}, data={"subsets": ["many"], "stage": "archive"})
    run_dir, job, proc = project.submit(manifest)
    assert "built archive" in proc.stderr, proc.stderr
    project.cluster.wait_gone(job, timeout=180)
    out = project.outputs("many", job, 0)
    assert (out / "files").read_text().strip() == "6400"
    assert (out / "digest").read_text().strip() == _host_digest(top)
