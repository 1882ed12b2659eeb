"""Building a data archive: one walk, and tar's own listing proving the archive is the walked data.

The fingerprint is one find(1) walk; a build checks tar's `-cvv --full-time` listing (type, size
and mtime of every member) against that walk. These tests run the real find, sort and tar on
real files: the check passes without a second walk on ordinary data, a change between the walk
and tar's read is refused (nothing left under the archive's name), and data the listing cannot
be matched with (hard links) falls back to the second walk and builds.
"""

from __future__ import annotations

import os
import shutil
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


# --- two tars at once ------------------------------------------------------------------------


def tricky_tree(sub: Path, folders: int = 12, files: int = 8, deep: bool = False, long: bool = False) -> None:
    """Folders of small files, with names tar and a list of names must keep byte for byte.
    deep: everything in one folder, two down. long: every folder's name is long."""
    top = sub / "only" / "level" if deep else sub
    for d in range(folders):
        name = f"d{d:02d}" if d % 4 and not long else f"d{d:02d} \\n " + "long-" * 24  # over 100 bytes, a backslash
        folder = top / name
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"f{f}").write_bytes(os.urandom(50 * f))
        (folder / "back\\nslash").write_text("\\n is not a newline here\n")
        (folder / "new\nline").write_text("newline\n")
        (folder / "-dash").write_text("dash\n")
        (folder / "st*r [x]?").write_text("wildcards\n")
        (folder / os.fsdecode(b"latin-\xe9")).write_text("latin\n")
        (folder / "empty").mkdir()
        (folder / "link").symlink_to("f1")
        (folder / "far").symlink_to("../" * 3 + "x" * 120)  # a link target over 100 bytes
    (top / "zz-file").write_text("last\n")


def after_the_cut(monkeypatch: pytest.MonkeyPatch, action: t.Callable[[stage._Cut, bytes], None]) -> None:
    """`action(cut, top)` once the two tars' names are listed and before the tars start."""
    real = stage._two_tars

    def then(cut: stage._Cut, top: bytes, scratch: str) -> tuple[list[str | bytes], list[str | bytes]]:
        names = real(cut, top, scratch)
        action(cut, top)
        return names

    monkeypatch.setattr(stage, "_two_tars", then)


def force_two_tars(monkeypatch: pytest.MonkeyPatch) -> list[stage._Cut | None]:
    """Two tars for any subset of a few entries (as for many on a machine of two cores or more);
    the cuts made, as a list."""
    monkeypatch.setattr(stage, "_SPLIT_ENTRIES", 10)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    cuts: list[stage._Cut | None] = []
    real = stage._cut

    def spied(top: bytes, before: stage.Fingerprint) -> stage._Cut | None:
        cut = real(top, before)
        cuts.append(cut)
        return cut

    monkeypatch.setattr(stage, "_cut", spied)
    return cuts


def one_tar(root: Path, subset: str, out: Path) -> bytes:
    """The archive one tar makes of the subset, the way a build runs it, without its end of zeros."""
    subprocess.run(["tar", "-cf", str(out), "--sort=name", "--format=gnu", f"--transform=s,^\\.,{subset},S", "-C",
                    os.path.realpath(root / subset), "."], check=True, env={**os.environ, "TZ": "UTC0", "LC_ALL": "C"})
    return out.read_bytes().rstrip(b"\0")


def extracted(archive: Path, into: Path) -> dict[str, tuple[str, bytes, int]]:
    """What the job's `tar -xf` makes of an archive: each path's kind, content or link target, mtime."""
    into.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(into)], check=True)
    found = {}
    for dirpath, dirnames, filenames in os.walk(into):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            kind = "link" if path.is_symlink() else "folder" if path.is_dir() else "file"
            body = os.fsencode(os.readlink(path)) if kind == "link" else path.read_bytes() if kind == "file" else b""
            found[os.fsdecode(path.relative_to(into))] = (kind, body, path.lstat().st_mtime_ns if kind != "folder" else 0)
    return found


@pytest.mark.parametrize(("deep", "long"), [(False, False), (True, False), (False, True)],
                         ids=["cut-in-the-subset", "cut-two-folders-down", "cut-at-a-long-name"])
def test_two_tars_make_the_archive_one_tar_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deep: bool, long: bool) -> None:
    sub = tmp_path / "data" / "set"
    tricky_tree(sub, deep=deep, long=long)
    cuts = force_two_tars(monkeypatch)
    concatenated = []
    monkeypatch.setattr(stage, "_concatenate", lambda *a: concatenated.append(a))
    walks = counting_walks(monkeypatch)
    archive = stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    [cut] = cuts
    assert cut is not None and archive.built and walks == ["set"], "two tars' listings did not match the walk"
    assert len(cut.path) == (3 if deep else 1) and len(cut.at) > 100 * long and concatenated == [], "not joined as written"
    assert archive.path.read_bytes().rstrip(b"\0") == one_tar(tmp_path / "data", "set", tmp_path / "one.tar")
    assert list((tmp_path / "archives").iterdir()) == [archive.path]  # the second tar's part is gone
    mine, theirs = extracted(archive.path, tmp_path / "mine"), extracted(tmp_path / "one.tar", tmp_path / "theirs")
    assert mine == theirs and ("set/only/level/" if deep else "set/") + "d00 \\n " + "long-" * 24 + "/new\nline" in mine  # as the job extracts


def test_a_failing_tar_of_two_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "data" / "set"
    tricky_tree(sub)
    cuts = force_two_tars(monkeypatch)

    def replace_the_cut_folder(cut: stage._Cut, top: bytes) -> None:
        shutil.rmtree(os.path.join(top, cut.at))
        os.symlink("elsewhere", os.path.join(top, cut.at))  # the first tar's last member: a link, not a folder

    after_the_cut(monkeypatch, replace_the_cut_folder)  # the second tar's names are gone
    with pytest.raises(OperationError, match=r"^archiving set failed: tar: \./d\d\d[^\n]*: Cannot stat: No such file or directory"):
        stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert cuts[0] is not None and list((tmp_path / "archives").iterdir()) == []


def test_a_join_that_cannot_find_the_first_archives_end_appends_with_tar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tricky_tree(tmp_path / "data" / "set")
    cuts = force_two_tars(monkeypatch)
    monkeypatch.setattr(stage, "_members_end", lambda fd, last: None)
    archive = stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert cuts[0] is not None and archive.built
    assert archive.path.read_bytes().rstrip(b"\0") == one_tar(tmp_path / "data", "set", tmp_path / "one.tar")


def test_data_changed_before_two_tars_read_it_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "data" / "set"
    tricky_tree(sub)
    cuts = force_two_tars(monkeypatch)
    after_the_cut(monkeypatch, lambda cut, top: os.utime(sub / "d11" / "f3", ns=(1_600_000_000_123_456_789,) * 2))  # in the second part
    with pytest.raises(OperationError, match="data subset set changed while it was archived; try again when it is stable"):
        stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert cuts[0] is not None and list((tmp_path / "archives").iterdir()) == []


def test_hard_links_across_two_tars_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "data" / "set"
    tricky_tree(sub)
    os.link(sub / "d01" / "f5", sub / "d01" / "f5-hard")  # both in the first part: tar lists the second as a link
    os.link(sub / "d02" / "f6", sub / "d11" / "f6-hard")  # one in each part: each tar archives the file
    cuts = force_two_tars(monkeypatch)
    walks = counting_walks(monkeypatch)
    archive = stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert cuts[0] is not None and archive.built and walks == ["set", "set"]
    found = extracted(archive.path, tmp_path / "x")
    assert found["set/d01/f5-hard"][1] == found["set/d01/f5"][1] and found["set/d11/f6-hard"][1] == found["set/d02/f6"][1]


def test_a_folder_of_files_alone_gets_one_tar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "data" / "set" / "all"
    sub.mkdir(parents=True)
    for i in range(40):
        (sub / f"f{i:02d}").write_text(f"{i}\n")
    cuts = force_two_tars(monkeypatch)
    archive = stage._stage_one(tmp_path / "data", "set", 0, archives_folder(tmp_path), None)
    assert cuts == [None] and archive.built
    assert archive.path.read_bytes().rstrip(b"\0") == one_tar(tmp_path / "data", "set", tmp_path / "one.tar")


def test_the_cut_aims_at_the_first_share_of_the_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_FIRST_SHARE", 0.45)
    sub = tmp_path / "data" / "set"
    for d, files in enumerate([30, 1, 1, 5, 40, 2, 2, 2, 30]):
        (sub / f"d{d}").mkdir(parents=True)
        for f in range(files):
            (sub / f"d{d}" / f"f{f:02d}").write_text("x")
    cut = stage._cut(os.fsencode(sub), stage.fingerprint(tmp_path / "data", "set"))
    # 123 entries, aimed at 55: "./", d0 (31), d1, d2 (2 each), d3 (6), d4's own header = 43, 12 off (within an
    # eighth, 15, not a sixteenth); d4 holds the 55th but no folder, so the cut stays at d4: d0..d3 whole, d4 alone
    assert cut == stage._Cut([(b"", [b"d0", b"d1", b"d2", b"d3"])], b"d4", [b"d5", b"d6", b"d7", b"d8"])
    monkeypatch.setattr(stage, "_FIRST_SHARE", 0.5)  # aimed at 61: d4 is 18 off, d5 23
    assert stage._cut(os.fsencode(sub), stage.fingerprint(tmp_path / "data", "set")) is None
