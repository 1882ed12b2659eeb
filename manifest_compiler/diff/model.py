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
class ManifestDiff:
    """Every change from side A (old) to side B (new)."""

    a: str
    b: str
    changes: tuple[Change, ...]

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
