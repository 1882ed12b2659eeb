"""code: snapshots of real git repositories (git on PATH), and the image's identity; submission with a
fake scheduler (tests/helpers/fake_slurm.py) records both. The same on a real SLURM: tests/e2e/test_code.py."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers.fake_slurm import FakeSlurm, exported

from manifest_compiler.errors import OperationError
from manifest_compiler.pipeline import compile_manifest, resolve_file
from manifest_compiler.slurm import Scheduler
from manifest_compiler.snapshot import MTIME, CodeSnapshot, image_identity, snapshot_code
from manifest_compiler.submissions import read_submissions
from manifest_compiler.submit import SubmitError, rerun, submit_run


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(path: Path) -> Path:
    """A repository with a file, an executable, a link, a folder, an ignored and an untracked file."""
    (path / "pkg").mkdir(parents=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.org")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text("print('v1')\n")
    (path / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (path / "pkg" / "run.sh").chmod(0o755)
    (path / "latest").symlink_to("train.py")
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "one")
    (path / "debug.log").write_text("ignored\n")
    (path / "notes.txt").write_text("untracked\n")
    return path


def manifest(tmp_path: Path, repo: str = "repo", dirty: str | None = None, extra: str = "") -> Path:
    image = tmp_path / "app.sif"
    if not image.exists():
        image.write_text("image")
    file = tmp_path / "m.yaml"
    file.write_text(
        f"version: 1\nname: code\nproject: p\ncluster: {{scratch: {tmp_path}/scratch}}\n"
        f"container: {{image: {image}, workdir: /work}}\n"
        f"code: {{repo: {repo}" + (f", dirty: {dirty}" if dirty else "") + "}\n"
        f"resources: {{time: 5m, mem: 256M}}\noutputs: {{logs: {tmp_path}/logs, dir: {tmp_path}/out}}\n"
        f"run: {{commands: ['python3 train.py', 'true']}}\n{extra}")
    return file


def snapshot(tmp_path: Path, repo: Path, dirty: str | None = None) -> tuple[CodeSnapshot, list[tarfile.TarInfo], dict[str, bytes]]:
    resolved = resolve_file(str(manifest(tmp_path, dirty=dirty)))[0]
    snap = snapshot_code(resolved, str(repo))
    assert snap is not None
    with tarfile.open(snap.path) as tar:
        members = tar.getmembers()
        files = {m.name: t.read() for m in members if m.isfile() and (t := tar.extractfile(m))}
    return snap, members, files


def test_a_snapshot_holds_the_tracked_files_sorted_with_fixed_owner_and_mtime(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    snap, members, files = snapshot(tmp_path, repo)
    assert [m.name for m in members] == [".gitignore", "latest", "pkg", "pkg/run.sh", "train.py"]  # no ignored, no untracked
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", MTIME)}
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["pkg/run.sh"] == (tarfile.REGTYPE, 0o755) and modes["train.py"] == (tarfile.REGTYPE, 0o644)
    assert modes["pkg"] == (tarfile.DIRTYPE, 0o755) and members[1].issym() and members[1].linkname == "train.py"
    assert files["train.py"] == b"print('v1')\n"
    head = git(repo, "rev-parse", "HEAD").strip()
    assert snap.commit == head and snap.commit_name == head and not snap.dirty
    assert snap.path == tmp_path / "scratch" / "p" / ".mcompile" / "code" / f"{snap.sha256}.tar"


def test_a_second_snapshot_of_the_same_commit_reuses_the_file_without_writing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = snapshot(tmp_path, repo)[0]
    before = os.stat(first.path)
    (repo / "notes.txt").write_text("an untracked change changes nothing\n")
    again = snapshot(tmp_path, repo)[0]
    after = os.stat(again.path)
    assert again.sha256 == first.sha256 and not again.built
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in (tmp_path / "scratch" / "p" / ".mcompile" / "code").iterdir() if p.suffix == ".tar"] == [f"{again.sha256}.tar"]


def test_the_same_commit_gives_the_same_bytes_from_a_clone_elsewhere(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "a" / "repo")
    clone = tmp_path / "b" / "deeper" / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    os.utime(clone / "train.py", (1, 1))  # other mtimes and umask on the other side
    (clone / "train.py").chmod(0o600)
    a = snapshot(tmp_path / "a", repo)[0]
    b = snapshot(tmp_path / "b", clone)[0]
    assert a.sha256 == b.sha256 and (tmp_path / "a" / "scratch") != (tmp_path / "b" / "scratch")
    assert a.path.read_bytes() == b.path.read_bytes()


def test_a_dirty_tree_is_refused_by_default_naming_the_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('edited')\n")
    (repo / "pkg" / "run.sh").unlink()
    with pytest.raises(OperationError, match=r"uncommitted changes to tracked files: pkg/run.sh, train.py; commit them"):
        snapshot(tmp_path, repo)
    assert not list((tmp_path / "scratch").rglob("*.tar"))


def test_dirty_include_takes_the_work_tree_and_the_commit_reads_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('edited')\n")
    (repo / "pkg" / "run.sh").unlink()
    snap, members, files = snapshot(tmp_path, repo, dirty="include")
    assert files["train.py"] == b"print('edited')\n" and "pkg/run.sh" not in files and "notes.txt" not in files
    assert snap.dirty and snap.commit_name == git(repo, "rev-parse", "HEAD").strip() + "-dirty"


def test_dirty_ignore_takes_head_and_warns_naming_what_was_left_out(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('edited')\n")
    snap, _, files = snapshot(tmp_path, repo, dirty="ignore")
    assert files["train.py"] == b"print('v1')\n" and not snap.dirty
    assert snap.warnings == [f"code: the snapshot is commit {snap.commit[:12]}; uncommitted changes left out: train.py"]


def test_submodules_are_left_out_and_named(tmp_path: Path) -> None:
    inner = make_repo(tmp_path / "inner")
    repo = make_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "vendor/inner"],
                   check=True, capture_output=True)
    git(repo, "commit", "-qm", "submodule")
    (repo / "vendor" / "inner" / "train.py").write_text("a change inside the submodule does not make the tree dirty\n")
    snap, members, _ = snapshot(tmp_path, repo)
    assert not any(m.name.startswith("vendor/inner/") for m in members) and ".gitmodules" in {m.name for m in members}
    assert snap.warnings == ["code: submodules are not in the snapshot (their folders are absent at code.target): vendor/inner"]


def test_a_folder_inside_a_work_tree_is_snapshot_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("a change outside the folder is not this snapshot's\n")
    resolved = resolve_file(str(manifest(tmp_path, repo="repo/pkg")))[0]
    snap = snapshot_code(resolved, str(repo / "pkg"))
    assert snap is not None and snap.repo == str(repo / "pkg")
    with tarfile.open(snap.path) as tar:
        assert tar.getnames() == ["run.sh"]


def test_not_a_repository_and_no_commit_are_one_clear_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    resolved = resolve_file(str(manifest(tmp_path)))[0]
    with pytest.raises(OperationError, match=r"^code.repo: .*/plain is not in a git work tree"):
        snapshot_code(resolved, str(plain))
    git(plain, "init", "-q")
    with pytest.raises(OperationError, match=r"^code.repo: .*/plain has no commit yet; commit the code first$"):
        snapshot_code(resolved, str(plain))


def test_the_image_hash_is_cached_by_path_size_mtime_and_inode(tmp_path: Path) -> None:
    image = tmp_path / "app.sif"
    image.write_bytes(b"x" * 1000)
    cache = tmp_path / "cache"
    first = image_identity(str(image), cache=cache)
    [note] = list(cache.iterdir())
    note.write_text("f" * 64 + "\n")  # what the cache says is believed while the file is unchanged
    assert image_identity(str(image), cache=cache).sha256 == "f" * 64
    replaced = tmp_path / "new.sif"
    replaced.write_bytes(b"y" * 1000)
    os.utime(replaced, ns=(os.stat(image).st_atime_ns, os.stat(image).st_mtime_ns))
    os.replace(replaced, image)  # same size and mtime, another inode: hashed again
    again = image_identity(str(image), cache=cache)
    assert again.sha256 not in (first.sha256, "f" * 64) and (again.size, again.mtime) == (first.size, first.mtime)
    assert again.stat == f"1000_{os.stat(image).st_mtime_ns // 10**9}"


def test_submit_names_the_snapshot_and_the_image_to_the_job_and_records_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    file = manifest(tmp_path)
    run = compile_manifest(str(file), runs_dir=str(tmp_path / "runs")).run.path
    monkeypatch.setenv("MCOMPILE_CODE", "0" * 64)  # a value in the submitting shell never reaches a job
    slurm = FakeSlurm()
    done = submit_run(run, manifest_path=str(file), scheduler=Scheduler(slurm))
    assert all(c.env is not None and "MCOMPILE_CODE" not in c.env for c in slurm.calls if c.argv[0] == "sbatch")
    head = git(repo, "rev-parse", "HEAD").strip()
    [argv] = slurm.sbatch("--parsable")
    exports = exported(argv)
    [record] = read_submissions(run)
    assert record["code"] == {"commit": head, "dirty": False, "snapshot": exports["MCOMPILE_CODE"], "repo": str(repo)}
    assert exports["MCOMPILE_CODE_COMMIT"] == head
    assert record["image"]["sha256"] == image_identity(str(tmp_path / "app.sif")).sha256
    assert exports["MCOMPILE_IMAGE_STAT"] == f"{record['image']['size']}_{record['image']['mtime']}"
    assert any(n.startswith("code: built snapshot ") and n.endswith(f" of {repo} at {head} (4 files)") for n in done.notes)
    # rerun takes the code again from the repository its latest submission used
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-qam", "two")
    rerun(run, tasks="1", failed=False, scheduler=Scheduler(slurm))
    assert read_submissions(run)[-1]["code"]["commit"] == git(repo, "rev-parse", "HEAD").strip() != head


def test_a_refused_dirty_tree_queues_and_records_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('edited')\n")
    file = manifest(tmp_path)
    run = compile_manifest(str(file), runs_dir=str(tmp_path / "runs")).run.path
    slurm = FakeSlurm()
    with pytest.raises(SubmitError, match="train.py; commit them"):
        submit_run(run, manifest_path=str(file), scheduler=Scheduler(slurm))
    assert slurm.calls == [] and read_submissions(run) == []


def test_runs_and_diff_name_the_commit_each_submission_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from manifest_compiler.cli import main
    from manifest_compiler.runs import describe_runs
    from manifest_compiler.runs_formats import FORMATTER_BY_NAME

    repo = make_repo(tmp_path / "repo")
    file = manifest(tmp_path)
    runs_dir = tmp_path / "runs"
    run = compile_manifest(str(file), runs_dir=str(runs_dir)).run.path
    slurm = FakeSlurm()
    submit_run(run, manifest_path=str(file), scheduler=Scheduler(slurm))
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-qam", "two")
    second = git(repo, "rev-parse", "HEAD").strip()
    submit_run(run, manifest_path=str(file), scheduler=Scheduler(slurm))
    records = read_submissions(run)
    image = records[0]["image"]["sha256"][:12]

    text = FORMATTER_BY_NAME["text"](describe_runs(str(runs_dir), "code", scheduler=Scheduler(slurm)))
    assert f"    ran code {first[:12]} (snapshot {records[0]['code']['snapshot'][:12]}), image {image}\n" in text
    assert f"    ran code {second[:12]} (snapshot {records[1]['code']['snapshot'][:12]}), image {image}\n" in text

    assert main(["diff", f"{run}@1", f"{run}@2"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("no changes\n") and f"\ncode\n  {first} → {second} (snapshots " in out
    assert "\n  1 file differs between the commits: train.py\n" in out
    assert main(["diff", f"{run}@1", f"{run}@2", "--format", "json"]) == 1
    code = json.loads(capsys.readouterr().out)["code"]
    assert (code["a"], code["b"], code["files"], code["differs"]) == (first, second, ["train.py"], True)
    assert main(["diff", f"{run}@2", str(run)]) == 0  # the run's latest submission is its second
    assert f"the same code: {second}" in capsys.readouterr().out
    assert main(["diff", f"{run}@3", str(run)]) == 2
    assert capsys.readouterr().err.strip().endswith("the run has 2 recorded submissions")


@pytest.mark.parametrize(("name", "kind", "mode", "size", "link"), [
    ("train.py", "file", 0o644, 12, ""),
    ("bin/run.sh", "file", 0o755, 0, ""),
    ("pkg", "dir", 0o755, 0, ""),
    ("a/" + "long-folder-name/" * 8 + "model.py", "file", 0o644, 5, ""),
    ("a/" + "long-folder-name/" * 6 + "x", "dir", 0o755, 0, ""),  # past 100 bytes with its slash
    ("latest", "link", 0o777, 0, "../" * 40 + "target.py"),
    ("données/naïve-😀.py", "file", 0o644, 3, ""),
    ("huge.bin", "file", 0o644, 9 * 1024**3, ""),  # past 8 GiB: base-256 size
])
def test_tar_headers_are_the_bytes_pythons_tarfile_writes(name: str, kind: str, mode: int, size: int, link: str) -> None:
    """The snapshot writes its own GNU headers (so its bytes do not follow Python's version); on
    this Python they are tarfile's, byte for byte."""
    from manifest_compiler.snapshot import tar_header

    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "link": tarfile.SYMTYPE, "dir": tarfile.DIRTYPE}[kind]
    info.mode, info.size, info.linkname, info.mtime = mode, size, link, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    expected = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert tar_header(name.encode(), kind, mode, size, link.encode()) == expected  # type: ignore[arg-type]


def test_a_large_image_is_announced_when_it_is_hashed_and_not_when_the_cache_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest_compiler import snapshot

    monkeypatch.setattr(snapshot, "HASH_NOTE_BYTES", 1000)  # "large" for this test: 1000 bytes, not 256 MiB
    image = tmp_path / "app.sif"
    image.write_bytes(b"x" * 1000)
    heard: list[str] = []
    image_identity(str(image), cache=tmp_path / "cache", progress=heard.append)
    image_identity(str(image), cache=tmp_path / "cache", progress=heard.append)
    assert heard == [f"hashing the image {image} (0.0 GiB) once; later submissions take its SHA-256 from the cache "
                     "while its size, mtime and inode stay"]


def test_a_refusal_names_ten_changed_files_then_counts_the_rest(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    for i in range(12):
        (repo / f"m{i:02d}.py").write_text("v1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "more")
    for i in range(12):
        (repo / f"m{i:02d}.py").write_text("v2\n")
    names = ", ".join(f"m{i:02d}.py" for i in range(10))
    with pytest.raises(OperationError, match=f"tracked files: {names} and 2 more; commit them"):
        snapshot(tmp_path, repo)


def test_the_code_is_the_working_directory_at_workdir_and_a_bind_of_its_own_elsewhere(tmp_path: Path) -> None:
    from manifest_compiler.plan import plan_job

    def targets(**code: str) -> dict[str, str]:
        file = manifest(tmp_path)
        text = file.read_text().replace("code: {repo: repo}", "code: {repo: repo" + "".join(f", {k}: {v}" for k, v in code.items()) + "}")
        file.write_text(text)
        return {m.target: m.source.rsplit("/", 1)[1] for m in plan_job(resolve_file(str(file))[0]).mounts}

    assert targets()["/work"] == "code" and "workdir" not in targets().values()  # default target: container.workdir
    both = targets(target="/src")
    assert both["/src"] == "code" and both["/work"] == "workdir"
