"""The data root: where the dataset folders live (and where `calip3d fetch` puts them)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CALIP3D_DATA"


def default_data_root() -> Path:
    """`$CALIP3D_DATA`, else `$XDG_CACHE_HOME/calip3d/data`, else `~/.cache/calip3d/data`.

    As the XDG spec says, an empty or relative `XDG_CACHE_HOME` is ignored. The folder need not exist yet (a root
    that does not exist counts as empty).
    """
    if os.environ.get(DATA_ENV):
        return Path(os.path.abspath(os.path.expanduser(os.environ[DATA_ENV])))
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "calip3d" / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """`root` as an absolute path (`~` expanded), or `default_data_root()` when it is None."""
    return default_data_root() if root is None else Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
