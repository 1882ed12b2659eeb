"""A spool: bytes written once, then read back by range, without holding them all in memory.

Compile spools tasks/commands while it formats the tasks, so that no task is formatted twice;
stage spools the walk of a data subset, so that the check of what tar archived needs no
second walk.
"""

from __future__ import annotations

import os

MEMORY = 4 << 20  # bytes kept in memory (80,000 commands of 50 bytes); more go to a temporary file


class Spool:
    """Bytes written once and read back by range: in memory up to `memory` bytes, then in an
    unnamed temporary file (in $TMPDIR, removed as soon as it is made), closed with the object.
    Reads take their own offsets (pread), so readers may take turns."""

    __slots__ = ("_buffer", "_fd", "_memory", "size")

    def __init__(self, memory: int | None = None) -> None:
        self._buffer: bytearray | None = bytearray()
        self._fd: int | None = None
        self._memory = MEMORY if memory is None else memory
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._buffer is not None and len(self._buffer) + len(data) > self._memory:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="mcompile-spool-")
            os.unlink(name)
            self._fd = fd
            self._write_fd(bytes(self._buffer))
            self._buffer = None
        if self._buffer is not None:
            self._buffer += data
        else:
            self._write_fd(data)
        self.size += len(data)

    def _write_fd(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def read(self, start: int, end: int) -> bytes:
        if self._buffer is not None:
            with memoryview(self._buffer) as view:
                return bytes(view[start:end])
        assert self._fd is not None
        parts, at = [], start
        while at < end:
            part = os.pread(self._fd, end - at, at)
            if not part:
                raise OSError(f"the spool ended at byte {at} of {end}")
            parts.append(part)
            at += len(part)
        return b"".join(parts)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
