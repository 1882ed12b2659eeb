"""How sbatch reads a script's directives: one port of its tokenizer for every test.

sbatch reads `#SBATCH` lines with its own tokenizer: whitespace separates arguments, quotes
group, a backslash escapes the next character and an unquoted `#` starts a comment. This is
a port of get_argument() in SLURM's src/sbatch/opt.c (22.05, the version Debian 12 ships),
checked against what sbatch 22.05.8 printed (tests/test_fuzz_pipeline.py) and did
(`sbatch --hold`, then `scontrol show job`): `--comment=x --time=7-00:00:00` sets the time
limit to 7 days, a tab splits like a space, `--comment="x --time=7-00:00:00"` sets only the
comment, `--comment=a#b` sets the comment `a`, `--comment="a#b c"` sets `a#b c`,
`--comment=it\\"s` sets `it"s`, and an unmatched quote, single or double, is refused.
"""

from __future__ import annotations

_C_SPACE = b" \t\n\v\f\r"


class SbatchFatal(Exception):
    """sbatch would refuse the script outright (as its parser would)."""


def sbatch_arguments(rest: bytes) -> list[bytes]:
    """The arguments sbatch takes from the text after `#SBATCH` on a line."""
    args: list[bytes] = []
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i] in _C_SPACE:
            i += 1
        if i < n and rest[i : i + 1] == b":":
            raise SbatchFatal("Unexpected `:`")
        if i >= n:
            return args
        arg = bytearray()
        quote = 0
        escape = False
        while i < n and (quote or rest[i] not in _C_SPACE):
            c = rest[i]
            if escape:
                escape = False
            elif c == 0x5C:  # backslash
                escape = True
                i += 1
                continue
            elif quote:
                if c == quote:
                    quote = 0
                    i += 1
                    continue
            elif c in (0x22, 0x27):  # " '
                quote = c
                i += 1
                continue
            elif c == 0x23:  # '#': the rest of the line is a comment
                break
            arg.append(c)
            i += 1
        if quote:
            raise SbatchFatal(f"Unmatched `{chr(quote)}`")
        if not arg:  # get_argument() returns NULL: sbatch stops reading the line
            return args
        args.append(bytes(arg))


def sbatch_block(script: bytes) -> list[bytes]:
    """The lines sbatch reads directives from: up to the first line that is not a comment or blank."""
    out = []
    for line in script.split(b"\n"):
        if line.startswith((b"#SBATCH", b"#SLURM")):
            out.append(line)
            continue
        stripped = line.lstrip(_C_SPACE)
        if stripped and not stripped.startswith(b"#"):
            break
    return out


def wrapper_directive_lines(script: bytes) -> list[tuple[int, bytes]]:
    """Lines sbatch translates as `#PBS` or `#BSUB` directives (unless --ignore-pbs is given).

    Unlike `#SBATCH`, sbatch looks for them beyond the first command: in every line before
    the 101st line that does not start with '#' (SLURM's src/sbatch/opt.c, 22.05).
    Returns (0-based line number, line).
    """
    out, non_comments = [], 0
    for number, line in enumerate(script.split(b"\n")):
        if line.startswith((b"#PBS", b"#BSUB")):
            out.append((number, line))
            continue
        if not line.startswith(b"#"):
            non_comments += 1
            if non_comments > 100:
                break
    return out


def header_arguments(script: str) -> list[str]:
    """Every argument sbatch takes from the script's `#SBATCH` lines, in order."""
    return [arg.decode() for line in sbatch_block(script.encode()) if line.startswith(b"#SBATCH")
            for arg in sbatch_arguments(line[len(b"#SBATCH"):])]
