"""Headless Chromium (Debian's chromium, installed by scripts/setup.sh) for tests and benches.

Every request the browser makes goes to a proxy that this module listens for on loopback
(--proxy-server with loopback not bypassed): a page that loads nothing makes no connection to it.
A page opened as file:// is read from disk, never through the proxy. Chromium itself asks Google
for the time and for component updates whatever its flags (`BROWSER_OWN`): those are not the page's.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import zlib
from pathlib import Path

CHROMIUM = shutil.which("chromium")
_QUIET = ["--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-default-apps", "--hide-scrollbars",
          "--force-device-scale-factor=1", "--force-color-profile=srgb"]


# Hosts headless Chromium contacts by itself, with no page open (an empty page shows the same).
BROWSER_OWN = ("clients2.google.com", "accounts.google.com", "update.googleapis.com", "redirector.gvt1.com")


def request_host(request: bytes) -> str:
    """The host a proxied request goes to (`GET http://host/...` or `CONNECT host:443`)."""
    parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
    target = parts[1] if len(parts) > 1 else ""
    return target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] if target else ""


class Proxy:
    """A loopback listener standing in for the network: it counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096))
                except OSError:
                    self.requests.append(b"")

    def page_requests(self) -> list[str]:
        """The hosts of the requests that are not the browser's own."""
        return [h for h in map(request_host, self.requests) if h not in BROWSER_OWN]

    def close(self) -> None:
        self.sock.close()


def chromium(page: Path, *args: str, proxy: Proxy, user_data: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a file with these arguments (--dump-dom, --screenshot=...)."""
    assert CHROMIUM is not None
    argv = [CHROMIUM, *_QUIET, f"--user-data-dir={user_data}", f"--proxy-server=127.0.0.1:{proxy.port}",
            "--proxy-bypass-list=<-loopback>", *args, page.resolve().as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB or RGBA PNG (as Chromium writes them), unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = colour = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for k, v in enumerate(line) if k % 4 != 3))
        prev = line
    return width, height, rows


def colours(data: bytes) -> dict[tuple[int, int, int], int]:
    """How many pixels of each colour a PNG has."""
    _, _, rows = png_pixels(data)
    out: dict[tuple[int, int, int], int] = {}
    for row in rows:
        for i in range(0, len(row), 3):
            key = (row[i], row[i + 1], row[i + 2])
            out[key] = out.get(key, 0) + 1
    return out
