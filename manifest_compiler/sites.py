"""Site profiles: `extends: site:NAME` names a cluster's known facts (a base manifest).

A profile is looked up, first found wins, as `NAME.yaml` in each folder of $MCOMPILE_SITES
(colon-separated), then in $XDG_CONFIG_HOME/mcompile/sites (default ~/.config/mcompile/sites),
then among the profiles shipped in the package (manifest_compiler/sites/: narval, rorqual,
fir, nibi, trillium). A profile of your own is a manifest with `base: true`; it may extend
another (`extends: site:narval`).
"""

from __future__ import annotations

import errno
import os
import re

PREFIX = "site:"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sites")


def is_site(ref: str) -> bool:
    return ref.startswith(PREFIX)


def folders() -> list[str]:
    """Where profiles are looked up, in order."""
    own = [f for f in os.environ.get("MCOMPILE_SITES", "").split(":") if f]
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [*own, os.path.join(config, "mcompile", "sites"), _SHIPPED]


def shipped() -> list[str]:
    return sorted(name[:-5] for name in os.listdir(_SHIPPED) if name.endswith(".yaml"))


def site_path(ref: str) -> str:
    """The file of `site:NAME`. Raises OSError (its strerror names the profiles there are)."""
    name = ref[len(PREFIX):]
    if not _NAME.fullmatch(name):
        raise OSError(errno.EINVAL, f"{ref!r} is not a site profile name (site: then lower-case letters, digits, - or _)")
    for folder in folders():
        path = os.path.join(folder, f"{name}.yaml")
        if os.path.isfile(path):
            return path
    raise OSError(errno.ENOENT, f"no site profile {name!r}; shipped: {', '.join(shipped())} "
                                f"(your own go in $MCOMPILE_SITES or ~/.config/mcompile/sites)")
