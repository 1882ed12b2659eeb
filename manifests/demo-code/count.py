"""The demo's code (manifests/demo.yaml, code.repo): count the words of a book.

mcompile snapshots this folder's tracked files at submit; every task runs them from
its own writable copy at /workdir, whatever happens to this file after submission.
"""

import os
import sys

path = sys.argv[1]
with open(path, encoding="utf-8") as fh:
    words = len(fh.read().split())
print(f"{words} {path}")
print(f"counted by commit {os.environ.get('MCOMPILE_CODE_COMMIT', '?')[:12]}", file=sys.stderr)
