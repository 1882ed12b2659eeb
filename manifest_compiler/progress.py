"""What long steps tell their caller: a line when a step starts or ends, and how far it has got.

Nothing here prints (cli.py does). A step that can take long (building a data archive, hashing
an image, snapshotting code) calls `progress(text)` when it starts and ends, and, between,
`meter(progress)(what, done, total)` with bytes done out of the total it expects. The printer
decides: a live line on a terminal, nothing more in a log or a pipe.
"""

from __future__ import annotations

import typing as t

Progress = t.Callable[[str], None]  # told what a long step is doing, a line at a time


class Meter(t.Protocol):
    def __call__(self, what: str, done: int, total: int) -> None: ...


def meter(progress: Progress | None) -> Meter | None:
    """The live meter of a progress callback, when its printer shows one (a terminal); else None."""
    return t.cast("Meter | None", getattr(progress, "meter", None))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def meter_line(what: str, done: int, total: int, elapsed: float) -> str:
    """`archiving set: 1.2 GiB of 3.4 GiB (35%), 180.0 MiB/s, about 12 s left`."""
    rate = done / elapsed if elapsed > 0 else 0.0
    share = f" ({100 * done / total:.0f}%)" if total else ""
    left = f", about {human_seconds((total - done) / rate)} left" if rate > 0 and total >= done else ""
    return f"{what}: {human_bytes(done)} of {human_bytes(total)}{share}, {human_bytes(rate)}/s{left}"
