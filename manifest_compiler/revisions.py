"""Manifests from git revisions (`REV:path`), read with `git show` for `load_manifest`.

`path` is relative to the repository root, as in git; `./x` and `../x` are relative to the
current directory. `extends` inside a revision is read from the same revision, so a manifest
and its bases are always of one commit.
"""

from __future__ import annotations

import os
import subprocess

from .errors import OperationError
from .load import Reader


class RevisionError(OperationError):
    """git is missing or fails, or the path lies outside the repository."""


def git(args: list[str]) -> bytes:
    """Run git in the current directory; its stdout.

    Raises:
        RevisionError: git is missing or fails; the message quotes git's stderr.
    """
    try:
        proc = subprocess.run(["git", *args], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise RevisionError(f"cannot run git ({e.strerror or e}); REV:path needs git") from None
    if proc.returncode != 0:
        stderr = "; ".join(line.strip() for line in proc.stderr.decode(errors="replace").splitlines() if line.strip())
        raise RevisionError(f"git {' '.join(args)} failed: {stderr or f'exit status {proc.returncode}'}")
    return proc.stdout


def changed_files(repo: str, a: str, b: str) -> list[str]:
    """The files that differ between commits `a` and `b` of the repository at `repo`.

    Raises:
        RevisionError: git fails: not a repository here, or a commit it does not hold.
    """
    out = git(["-C", repo, "diff", "--name-only", "-z", "--no-renames", a, b, "--"])
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _repo_path(path: str, prefix: str) -> str | None:
    """`path` relative to the repository root (git's reading of REV:path); None outside it."""
    if path.startswith(("./", "../")) or path in (".", ".."):
        path = prefix + path
    norm = os.path.normpath(path)
    if norm.startswith("../") or norm == ".." or os.path.isabs(norm):
        return None
    return norm


def _show(rev: str, repo_path: str) -> bytes:
    raw = git(["show", f"{rev}:{repo_path}"])
    if raw.startswith(f"tree {rev}:{repo_path}\n".encode()):
        raise RevisionError(f"{rev}:{repo_path} is a directory in git, not a manifest")
    return raw


class GitReader(Reader):
    """Files of one git revision, for `load_manifest`: extends resolve inside the same revision."""

    def __init__(self, rev: str) -> None:
        self.rev = rev

    def read(self, path: str, limit: int = 0) -> bytes:  # git show gives the whole file; its reader bounds it
        try:
            return _show(self.rev, path)
        except RevisionError as e:
            raise OSError(str(e)) from None

    def resolve(self, including: str, ref: str) -> str:
        nxt = None if ref.startswith(("/", "~")) else _repo_path(os.path.join(os.path.dirname(including), ref), "")
        if nxt is None:
            raise OSError(f"{ref!r} lies outside the git repository; it cannot be read from revision {self.rev!r}")
        return nxt

    def identity(self, path: str) -> str:
        return path

    def label(self, path: str) -> str:
        return f"{self.rev}:{path}"


def revision_path(rel: str, label: str) -> str:
    """The repository path of a manifest named in `REV:rel` (rel as git reads it, or `./`-relative).

    Args:
        rel: the manifest's path, relative to the repository root (or `./`-relative
            to the current directory).
        label: how the manifest is named when the path lies outside the repository.

    Raises:
        RevisionError: not in a git repository, or the path lies outside it.
    """
    prefix = git(["rev-parse", "--show-prefix"]).decode().strip()
    current = _repo_path(rel, prefix)
    if current is None:
        raise RevisionError(f"{label}: the path lies outside the git repository")
    return current
