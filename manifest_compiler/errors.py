"""Problems and the exception hierarchy.

A `Problem` is one line of user-facing output: `file:line:col: path: message`.
Stages collect problems instead of raising on the first one, so a user sees every
mistake of a file at once; they raise `ManifestError` carrying the list.
"""

from __future__ import annotations

import json
import re
import typing as t

# A key written plainly in a document path; any other key is quoted (`env["A B"]`).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(path: t.Sequence[str | int]) -> str:
    """`("run", "commands", 1)` -> `run.commands[1]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):  # a key with dots, spaces, newlines...: quoted
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        else:
            out += f".{part}" if out else part
    return out


class Problem(t.NamedTuple):
    """One finding about an input file, located as precisely as we can.

    Ordered and hashable by its fields, in this order. A named tuple, not a dataclass:
    `dataclasses` imports `inspect`, which costs a tenth of a validate run.
    """

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    path: str  # document path, e.g. "resources.gpus" or "run.commands[1]"; "" for the whole file
    message: str
    level: t.Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}"
        path = f" {self.path}:" if self.path else ""
        prefix = "warning: " if self.level == "warning" else ""
        return f"{where}:{path} {prefix}{self.message}"

    def as_dict(self) -> dict[str, t.Any]:
        return self._asdict()


def not_utf8(path: str, raw: bytes, error: UnicodeDecodeError, where: str = "") -> Problem:
    """The problem of a file that is not UTF-8, at the line and column of its first bad byte."""
    line = raw.count(b"\n", 0, error.start) + 1
    col = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
    return Problem(path, line, col, where, f"not valid UTF-8 (byte 0x{raw[error.start]:02x}); save the file as UTF-8")


class McompileError(Exception):
    """Base class of every error mcompile reports to the user."""

    exit_code = 1


class ManifestError(McompileError):
    """The manifest cannot be loaded, is invalid, or cannot be compiled."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class UsageError(McompileError):
    """The command line itself is wrong."""

    exit_code = 2


class OperationError(McompileError):
    """Something outside the manifest failed: I/O, sbatch, git, the cluster."""

    exit_code = 3


class DiffError(McompileError):
    """`mcompile diff` cannot compare: a side is missing, unreadable or invalid (exit 2, as diff(1))."""

    exit_code = 2


class DiffManifestError(DiffError, ManifestError):
    """A side of a diff is not a valid manifest: one located line per problem (exit 2)."""
