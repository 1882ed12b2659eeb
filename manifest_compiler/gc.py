"""gc: remove the data archives (and code snapshots) that no run refers to.

The folders looked in are those of the runs under --runs: each run's archive folder
(<scratch>/<project>/.mcompile/archives, with this host's variables) and, where it exists, the
code folder beside it (<scratch>/<project>/.mcompile/code). An archive is kept when

  - a submission of a run under --runs names it (submissions.jsonl: MCOMPILE_ARCHIVE_<i>=<fingerprint>
    in the sbatch line), or a submission of a run that SLURM says still has a job queued or running
    (squeue: the job's work directory is a run directory, wherever it is);
  - it was built or reused within the last GRACE seconds (a --submit may be about to queue it:
    stage touches an archive it reuses), or, with --older-than N, within the last N days.

A code snapshot (<sha256>.tar in the code folder; its trees/ notes are a cache, left alone) is
kept when its name, or its name without its suffix, appears in the job.sbatch, mounts.json, plan.txt or submissions.jsonl of a
run under --runs or of a queued or running one, under the same rules of age.

When SLURM cannot be asked which jobs are queued, nothing is removed. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from pathlib import Path

from .errors import OperationError
from .jobdir import JOB_SCRIPT, MOUNTS, PLAN, SUBMISSIONS, list_runs, read_resolved
from .plan import ARCHIVE_VARIABLE_PREFIX, archive_dir
from .slurm import Scheduler
from .stage import FINGERPRINT_LENGTH, expand
from .submissions import read_submissions

GRACE = 3600  # seconds: an archive built or reused this recently may be about to be queued
CODE_FOLDER = "code"  # beside the archives folder: <scratch>/<project>/.mcompile/code
_ARCHIVE = re.compile(rf"^([0-9a-f]{{{FINGERPRINT_LENGTH}}})\.tar$")
_NAMED = re.compile(rf"{re.escape(ARCHIVE_VARIABLE_PREFIX)}\d+=([0-9a-f]{{{FINGERPRINT_LENGTH}}})")


@dataclasses.dataclass(frozen=True)
class Removal:
    """An archive or snapshot gc removed (or, with --dry-run, would remove)."""

    path: Path
    size: int  # bytes


@dataclasses.dataclass
class Collected:
    removed: list[Removal] = dataclasses.field(default_factory=list)
    kept: int = 0  # archives and snapshots looked at and kept
    folders: list[Path] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(r.size for r in self.removed)


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.lstat().st_size for p in path.rglob("*"))
    return path.lstat().st_size


def _record_text(run: Path) -> str:
    """What of a run may name a code snapshot (not its tasks: a million of them say nothing of it)."""
    parts = []
    for name in (JOB_SCRIPT, MOUNTS, PLAN, SUBMISSIONS):
        try:
            parts.append((run / name).read_text(errors="replace"))
        except OSError:
            continue
    return "\n".join(parts)


def _named_archives(run: Path) -> set[str]:
    return {fp for record in read_submissions(run) for arg in record.get("sbatch", []) for fp in _NAMED.findall(str(arg))}


def _folders(run: Path) -> Path | None:
    """The run's archive folder on this host (None: its variables are not set here, or no data)."""
    try:
        resolved = read_resolved(run)
        return Path(expand(archive_dir(resolved), cwd=run))
    except OperationError:
        return None


def collect(runs_dir: str, *, dry_run: bool, older_than_days: float | None, scheduler: Scheduler) -> Collected:
    """Remove (or with `dry_run` list) the archives and code snapshots no run refers to.

    Raises:
        OperationError: SLURM cannot be asked which jobs are queued (nothing was removed).
    """
    runs = list_runs(runs_dir)
    active = scheduler.active_workdirs()
    if active is None:
        raise OperationError("cannot ask SLURM (squeue) which jobs are queued or running: nothing removed "
                             "(an archive a queued task will extract must stay)")
    live_runs = [Path(w) for w in active if (Path(w) / JOB_SCRIPT).is_file() and (Path(w) / SUBMISSIONS).is_file()]
    known = {os.path.realpath(r) for r in runs}
    referring = runs + [r for r in live_runs if os.path.realpath(r) not in known]
    named: set[str] = set()
    texts: list[str] = []
    folders: set[Path] = set()
    for run in referring:
        named |= _named_archives(run)
        texts.append(_record_text(run))
        folder = _folders(run)
        if folder is not None:
            folders.add(folder)
    done = Collected(folders=sorted(folders))
    youngest = time.time() - max(GRACE, (older_than_days or 0) * 86400)
    all_text = "\n".join(texts)
    for folder in sorted(folders):
        candidates: list[tuple[Path, bool]] = []
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                m = _ARCHIVE.match(entry.name)
                if m:
                    candidates.append((entry, m.group(1) in named))
        code = folder.parent / CODE_FOLDER
        if code.is_dir():
            for entry in sorted(code.iterdir()):
                if entry.name.startswith(".") or entry.name == "trees":
                    continue  # one being written; the tree notes (a cache of small files, each checked against its snapshot)
                stem = entry.name.split(".", 1)[0]
                candidates.append((entry, entry.name in all_text or (len(stem) >= 8 and stem in all_text)))
        for entry, referred in candidates:
            try:
                recent = entry.lstat().st_mtime > youngest
            except OSError:
                continue
            if referred or recent:
                done.kept += 1
                continue
            removal = Removal(entry, _size(entry))
            if not dry_run:
                try:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                except OSError as e:
                    done.notes.append(f"cannot remove {entry}: {e.strerror or e}")
                    continue
            done.removed.append(removal)
    return done
