"""What a diff is made of: changes between two resolved manifests. Plain data, cheap to import."""

from __future__ import annotations

import dataclasses
import typing as t

Kind = t.Literal["changed", "added", "removed", "reordered"]
Impact = t.Literal["results", "scheduling"]


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference between the resolved sides."""

    section: str
    path: str
    kind: Kind
    old: t.Any
    new: t.Any
    impact: Impact

    def as_dict(self) -> dict[str, t.Any]:
        """The change as one entry of the JSON output's `changes`."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CodeDiff:
    """The code two submissions ran (code: in submissions.jsonl): their commits and, when the
    repository is at hand, the files that differ between the two commits."""

    a: str  # commit, with -dirty when the snapshot held uncommitted changes
    b: str
    a_snapshot: str  # the snapshot's SHA-256
    b_snapshot: str
    files: tuple[str, ...] | None  # None: the repository (or a commit) is not at hand
    note: str = ""  # why files is None, or what it leaves out

    @property
    def differs(self) -> bool:
        return self.a_snapshot != self.b_snapshot

    def as_dict(self) -> dict[str, t.Any]:
        return {"a": self.a, "b": self.b, "a_snapshot": self.a_snapshot, "b_snapshot": self.b_snapshot,
                "files": None if self.files is None else list(self.files), "note": self.note, "differs": self.differs}

    def lines(self) -> list[str]:
        """Text: the two commits, then the files differing (or why they are not known)."""
        if not self.differs:
            return [f"the same code: {self.a} (snapshot {self.a_snapshot[:12]})"]
        out = [f"{self.a} → {self.b} (snapshots {self.a_snapshot[:12]} → {self.b_snapshot[:12]})"]
        if self.files is not None:
            n = len(self.files)
            out.append(("1 file differs" if n == 1 else f"{n} files differ") + " between the commits"
                       + (": " if self.files else "") + ", ".join(self.files))
        if self.note:
            out.append(self.note)
        return out


@dataclasses.dataclass(frozen=True)
class ManifestDiff:
    """Every change from side A (old) to side B (new), and the code each ran when both are submissions."""

    a: str
    b: str
    changes: tuple[Change, ...]
    code: CodeDiff | None = None

    @property
    def results(self) -> int:
        """How many changes affect results."""
        return sum(c.impact == "results" for c in self.changes)

    @property
    def scheduling(self) -> int:
        """How many changes are scheduling only."""
        return sum(c.impact == "scheduling" for c in self.changes)

    def summary(self) -> str:
        """`4 changes: 1 affects results, 3 scheduling only`, or `no changes`."""
        n = len(self.changes)
        if n == 0:
            return "no changes"
        verb = "affects" if self.results == 1 else "affect"
        return f"{n} change{'s' if n != 1 else ''}: {self.results} {verb} results, {self.scheduling} scheduling only"


def is_task(change: Change) -> bool:
    """Whether the change is one of `run.tasks` (listed last in `run`, and cut short in text)."""
    return change.path == "run.tasks" or change.path.startswith("run.tasks[")
