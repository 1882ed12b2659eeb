#!/usr/bin/env python3
"""Build a test ".sif" image for the apptainer TEST DOUBLE (tests/doubles/apptainer).

Real SIF files cannot be built on the project's machines, so a test image is an
uncompressed tar archive (named *.sif) holding a root-filesystem fragment:

    .singularity.d/runscript   the image's runscript (executable), optional
    usr/local/bin/wandb        e.g. a stand-in program on the container's PATH
    opt/app/train.py           any other file

The container's OS (/usr, /etc, ...) comes from the host; the image's files are
laid over it (see README.md). Usable as a library::

    from make_test_image import make_image
    make_image(tmp_path / "app.sif", {"usr/local/bin/wandb": "#!/bin/sh\\necho wandb\\n"})

or from the command line::

    python3 make_test_image.py app.sif --add usr/local/bin/wandb=./fake_wandb
"""

from __future__ import annotations

import argparse
import io
import os
import posixpath
import sys
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

RUNSCRIPT_PATH = ".singularity.d/runscript"
WORKDIR_VAR = "WORKDIR"
MTIME = 1_700_000_000  # fixed, so that the same inputs give the same bytes

# Like the seed project's Singularity.bld runscript: go to the work directory if
# one is set, then run the first argument as a bash command.
DEFAULT_RUNSCRIPT = f"""#!/bin/bash
# Runscript of a test image: cd to ${WORKDIR_VAR} when it is set, then run the
# first argument as a bash command (as `singularity run IMAGE "$cmd"` does).
if [ -n "${{{WORKDIR_VAR}:-}}" ]; then
    cd "${WORKDIR_VAR}" || exit 1
fi
exec bash -c "$1"
"""


def make_image(
    path: str | os.PathLike[str],
    files: Mapping[str, str | bytes] | None = None,
    runscript: str | bytes | None = DEFAULT_RUNSCRIPT,
    executable: Iterable[str] = (),
) -> Path:
    """Write a test image to path and return it as a Path.

    files maps paths relative to the container's root (e.g. "opt/app/train.py")
    to contents (str is written as UTF-8). A file is executable (0755) when it is
    listed in executable or lies directly in a bin/ or sbin/ directory; other files
    are 0644. runscript is stored executable at .singularity.d/runscript; None
    leaves the image without one.
    """
    entries = dict(files or {})
    if runscript is not None:
        entries[RUNSCRIPT_PATH] = runscript
    make_exec = {normalise(p) for p in executable} | {RUNSCRIPT_PATH}
    out = Path(path)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        for directory in parent_dirs(entries):
            archive.addfile(tar_info(directory, tarfile.DIRTYPE, 0o755))
        for name in sorted(entries):
            data = to_bytes(entries[name])
            mode = 0o755 if is_executable(normalise(name), make_exec) else 0o644
            archive.addfile(
                tar_info(normalise(name), tarfile.REGTYPE, mode, len(data)), io.BytesIO(data)
            )
    return out


def normalise(name: str) -> str:
    """Check that name is a plain relative path inside the image."""
    clean = posixpath.normpath(name)
    if name.startswith("/") or clean == "." or clean.split("/")[0] == "..":
        raise ValueError(f"image paths must be relative and stay inside the image: {name!r}")
    return clean


def parent_dirs(names: Iterable[str]) -> list[str]:
    dirs: set[str] = set()
    for name in names:
        parent = posixpath.dirname(normalise(name))
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(dirs)


def is_executable(name: str, listed: set[str]) -> bool:
    return name in listed or posixpath.basename(posixpath.dirname(name)) in ("bin", "sbin")


def tar_info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, MTIME
    return info


def to_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build a tar-format test image for the apptainer test double."
    )
    parser.add_argument("image", help="output file, must end in .sif")
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="DEST=HOSTFILE",
        help="put HOSTFILE at DEST (relative to the container root); executable if HOSTFILE is",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--runscript", metavar="FILE", help="use FILE as the runscript instead of the default"
    )
    group.add_argument(
        "--no-runscript", action="store_true", help="build an image without a runscript"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    if not args.image.endswith(".sif"):
        print("make_test_image: the image name must end in .sif", file=sys.stderr)
        return 2
    files: dict[str, str | bytes] = {}
    executable: list[str] = []
    for spec in args.add:
        dest, sep, source = spec.partition("=")
        if not sep or not dest or not source:
            print(f"make_test_image: --add expects DEST=HOSTFILE, got {spec!r}", file=sys.stderr)
            return 2
        files[dest] = Path(source).read_bytes()
        if os.access(source, os.X_OK):
            executable.append(dest)
    runscript: str | bytes | None = DEFAULT_RUNSCRIPT
    if args.no_runscript:
        runscript = None
    elif args.runscript:
        runscript = Path(args.runscript).read_bytes()
    make_image(args.image, files, runscript, executable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
