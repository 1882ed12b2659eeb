"""Parsing and normalising SLURM time and memory values (shared by validate and resolve)."""

from __future__ import annotations

import re

MAX_TIME_SECONDS = 366 * 24 * 3600

_HUMAN = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
_SLURM = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\Z")

TIME_FORMS = "90m, 12h, 1d12h, MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


def parse_time(value: int | str) -> int:
    """Seconds of a manifest time value.

    Integers are minutes (as SLURM reads `--time=90`). Strings are SLURM forms or
    human forms. Raises ValueError with a user-facing message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a time such as {TIME_FORMS}")
    seconds = value * 60 if isinstance(value, int) else _parse_time_text(value)
    if seconds <= 0:
        raise ValueError("must be more than zero")
    if seconds > MAX_TIME_SECONDS:
        raise ValueError("must be at most 366 days")
    return seconds


def _parse_time_text(text: str) -> int:
    human = _HUMAN.match(text)
    if text and human and any(human.groups()):
        d, h, m, s = (int(g or 0) for g in human.groups())
        return ((d * 24 + h) * 60 + m) * 60 + s
    slurm = _SLURM.match(text)
    if not slurm:
        raise ValueError(f"expected a time such as {TIME_FORMS}, got {text!r}")
    days, a, b, c = slurm.groups()
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, s = int(a), int(b or 0), int(c or 0)
        if h > 23 or m > 59 or s > 59:
            raise ValueError(f"{text!r}: hours must be < 24 and minutes, seconds < 60 after a day count")
        return ((int(days) * 24 + h) * 60 + m) * 60 + s
    if c is not None:  # HH:MM:SS
        h, m, s = int(a), int(b), int(c)
    elif b is not None:  # MM:SS
        h, m, s = 0, int(a), int(b)
    else:  # MM
        h, m, s = 0, int(a), 0
    if (c is not None and m > 59) or s > 59:
        raise ValueError(f"{text!r}: minutes and seconds must be < 60")
    return (h * 60 + m) * 60 + s


def minutes_seconds(value: object) -> tuple[int, int] | None:
    """(minutes, seconds) when `value` is written in SLURM's MM:SS form, else None.

    `1:30` is 1 minute 30 seconds and `03:00` is 3 minutes to SLURM (and here), though it
    reads as hours and minutes to most people.
    """
    slurm = _SLURM.match(value) if isinstance(value, str) else None
    if slurm is None:
        return None
    days, a, b, c = slurm.groups()
    return (int(a), int(b)) if days is None and b is not None and c is None else None


def format_human_time(seconds: int) -> str:
    """The human form of a duration, largest units first: 5400 -> 1h30m, 86400 -> 1d."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def format_time(seconds: int) -> str:
    """D-HH:MM:SS, the form SLURM prints and every SLURM accepts."""
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    d, h = divmod(hours, 24)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}"


_MEM_UNITS = "KMGT"
MAX_MEM_KIB = 64 * 1024**3  # 64 TiB per node


def parse_mem(text: str) -> int:
    """KiB of `32G`-style memory. Raises ValueError with a user-facing message."""
    if not isinstance(text, str) or len(text) < 2 or text[-1] not in _MEM_UNITS or not text[:-1].isdigit():
        raise ValueError("expected memory such as 4096M, 32G or 1T")
    kib: int = int(text[:-1]) * 1024 ** _MEM_UNITS.index(text[-1])
    if kib <= 0:
        raise ValueError("must be more than zero")
    if kib > MAX_MEM_KIB:
        raise ValueError("must be at most 64T per node")
    return kib


def format_mem(kib: int) -> str:
    """The largest unit that divides exactly: 32768M -> 32G, 1536M stays 1536M."""
    for power in range(3, -1, -1):
        unit = 1024**power
        if kib % unit == 0:
            return f"{kib // unit}{_MEM_UNITS[power]}"
    raise AssertionError("unreachable: K always divides")  # pragma: no cover
