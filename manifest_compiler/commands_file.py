"""A commands file (`run.commands_file`): its format, in one place.

One array task per command. The file is UTF-8 text, read line by line:

- a blank line (nothing, or only whitespace) is skipped;
- a line whose first character after blanks is `#` is a comment, skipped;
- a line that ends in an odd number of backslashes continues on the next line: the last
  backslash and the line break are removed, as bash removes `\\`-newline (the old
  job_submitter.sh users wrote long commands that way); a continued line is part of the
  command whatever it starts with, and a command that ends with the file is refused;
- a CR before a line break (a file saved with CRLF line endings) is removed, and said
  in a warning; a CR anywhere else is kept;
- everything else is kept byte for byte: leading and trailing blanks, quotes, commas,
  backslashes, `$VARS`.

`load` reads the file (relative to the manifest that names it, as `extends`); `validate`
checks each command with the rules of `run.commands` and reports problems at FILE:line;
`resolve` makes the commands the run's tasks; the file is recorded beside the run.
"""

from __future__ import annotations

import typing as t

from .errors import Problem, not_utf8

WHERE = "run.commands_file"  # the path of the file's own problems

# A commands file may be far larger than a manifest (16 MiB): that is what it is for. A
# million tasks of 256 bytes each fit.
MAX_BYTES = 256 * 1024 * 1024

CRLF_WARNING = ("CRLF line endings: the CR before each line break is removed ({count} line{s}); "
                "save the file with LF endings to silence this")


class CommandsFile(t.NamedTuple):
    """A commands file as read: its commands, the line each starts on, and its own problems."""

    path: str  # as shown to the user
    raw: bytes
    commands: list[str]
    lines: list[int]  # 1-based line of each command's first line
    problems: list[Problem]  # about the file as a whole or its lines: encoding, CRLF, a last line continued


def parse_commands_file(path: str, raw: bytes) -> CommandsFile:
    """The commands of a commands file, with the rules of the module docstring."""
    if len(raw) > MAX_BYTES:
        return CommandsFile(path, raw, [], [], [Problem(path, 0, 0, WHERE, f"the file is larger than {MAX_BYTES // 2**20} MiB; "
                                                        "split it, or use a grid for many similar commands")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return CommandsFile(path, raw, [], [], [not_utf8(path, raw, e, WHERE)])
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = text.split("\n")
    if rows[-1] == "":
        rows.pop()  # the final line break ends the last line; it starts none
    problems: list[Problem] = []
    crlf, first_crlf = 0, 0
    commands: list[str] = []
    lines: list[int] = []
    pending: list[str] = []  # the parts of a command continued with a backslash
    start = 0
    for number, row in enumerate(rows, start=1):
        if row.endswith("\r"):
            row = row[:-1]
            crlf += 1
            first_crlf = first_crlf or number
        if not pending and (not row or row.isspace() or row.lstrip(" \t").startswith("#")):
            continue
        if not pending:
            start = number
        if row.endswith("\\") and (len(row) - len(row.rstrip("\\"))) % 2:
            pending.append(row[:-1])
            continue
        command = "".join(pending) + row if pending else row
        pending = []
        if command and not command.isspace():
            commands.append(command)
            lines.append(start)
    if pending:
        problems.append(Problem(path, len(rows), 1, WHERE, "the last line ends with a backslash, which continues the command "
                                "on a next line, but the file ends there; remove the backslash or add the line"))
    if crlf:
        problems.append(Problem(path, first_crlf, 1, WHERE, CRLF_WARNING.format(count=crlf, s="s" if crlf != 1 else ""),
                                level="warning"))
    return CommandsFile(path, raw, commands, lines, problems)
