"""Building a data archive: one walk, and tar's own listing proving the archive is the walked data.

The fingerprint is one find(1) walk; a build checks tar's `-cvv --full-time` listing (type, size
and mtime of every member) against that walk. These tests run the real find, sort and tar on
real files: the check passes without a second walk on ordinary data, a change between the walk
and tar's read is refused (nothing left under the archive's name), and data the listing cannot
be matched with (hard links) falls back to the second walk and builds.
"""

from __future__ import annotations

import os
import subprocess
import typing as t
from pathlib import Path

import pytest

from manifest_compiler import stage
from manifest_compiler.errors import OperationError


def make_data(root: Path) -> Path:
    sub = root / "set"
    (sub / "a b" / "deep").mkdir(parents=True)
    (sub / "a b" / "deep" / "x.txt").write_text("x\n")
    (sub / "tab\there").write_text("tab\n")
    (sub / "new\nline").write_text("newline\n")
    (sub / os.fsdecode(b"latin-\xe9")).write_text("latin\n")
    (sub / "empty").mkdir()
    (sub / "link").symlink_to("a b/deep/x.txt")
    (sub / "whole-second").write_text("s\n")
    os.utime(sub / "whole-second", ns=(1_577_836_800_000_000_000, 1_577_836_800_000_000_000))
    (sub / "trailing-zeros").write_text("z\n")
    os.utime(sub / "trailing-zeros", ns=(1_577_836_800_500_000_000, 1_577_836_800_500_000_000))
    for i in range(50):
        (sub / f"f{i:02d}").write_bytes(os.urandom(100 + i))
    return sub


def counting_walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    walks: list[str] = []
    real = stage.fingerprint

    def counted(root: Path, subset: str) -> stage.Fingerprint:
        walks.append(subset)
        return real(root, subset)

    monkeypatch.setattr(stage, "fingerprint", counted)
    return walks


def archives_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "archives"
    folder.mkdir()
    return folder


def members(archive: Path) -> list[str]:
    return subprocess.run(["tar", "-tf", str(archive)], capture_output=True, check=True).stdout.decode(errors="replace").splitlines()


@pytest.mark.parametrize("piece", [1 << 20, 300], ids=["one-piece", "many-pieces"])
def test_a_build_is_checked_by_tars_listing_without_a_second_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    make_data(tmp_path / "data")
    monkeypatch.setattr(stage, "_PIECE", piece)  # the walk is summed a piece of whole records at a time
    walks = counting_walks(monkeypatch)
    archive = stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert archive.built and walks == ["set"], "tar's listing did not match the walk: a second walk was needed"
    assert "set/a b/deep/x.txt" in members(archive.path) and "set/link" in members(archive.path)
    walks.clear()
    again = stage._stage_one(tmp_path / "data", "set", 0, tmp_path / "archives", None)
    assert not again.built and again.path == archive.path and walks == ["set"]


def test_the_fingerprint_follows_names_sizes_mtimes_and_links(tmp_path: Path) -> None:
    sub = make_data(tmp_path / "data")
    first = stage.fingerprint(tmp_path / "data", "set").digest
    assert stage.fingerprint(tmp_path / "data", "set").digest == first
    changes: list[t.Callable[[], object]] = [
        lambda: os.utime(sub / "f00", ns=(1, 1)),
        lambda: (sub / "f01").write_bytes(b"other size"),
        lambda: (sub / "f02").rename(sub / "f02-renamed"),
        lambda: (sub / "link").unlink() or (sub / "link").symlink_to("f03"),
        lambda: (sub / "empty" / "new").mkdir(),
    ]
    seen = {first}
    for change in changes:
        change()
        digest = stage.fingerprint(tmp_path / "data", "set").digest
        assert digest not in seen
        seen.add(digest)


def test_data_changed_between_the_walk_and_tar_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = make_data(tmp_path / "data")
    real = stage.fingerprint
    calls: list[str] = []

    def walk_then_change(root: Path, subset: str) -> stage.Fingerprint:
        fingerprint = real(root, subset)
        if not calls:  # after the first walk, before tar reads it: a new mtime, as an editor would
            os.utime(sub / "f07", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
        calls.append(subset)
        return fingerprint

    monkeypatch.setattr(stage, "fingerprint", walk_then_change)
    with pytest.raises(OperationError, match="data subset set changed while it was archived; try again when it is stable"):
        stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert len(calls) == 2  # the listing disagreed; the second walk confirmed the change
    assert list((tmp_path / "archives").iterdir()) == []  # neither the archive nor its temporary


def test_hard_links_fall_back_to_a_second_walk_and_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = make_data(tmp_path / "data")
    os.link(sub / "f00", sub / "f00-hard")  # tar lists the second name as a link of size 0
    walks = counting_walks(monkeypatch)
    archive = stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert archive.built and walks == ["set", "set"]
    assert {"set/f00", "set/f00-hard"} <= set(members(archive.path))


@pytest.mark.parametrize("missing", ["find", "sort", "tar"])
def test_a_missing_tool_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    make_data(tmp_path / "data")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in {"find", "sort", "tar"} - {missing}:
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout.strip(), bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(OperationError, match=rf"^{missing} is not on PATH: staging a data archive needs GNU find, sort and tar"):
        stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
