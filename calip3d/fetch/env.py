"""The data root and the download settings read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

from calip3d.errors import CalipError

DATA_ENV = "CALIP3D_DATA"
MIRROR_ENV = "CALIP3D_MIRROR"
OFFLINE_ENV = "CALIP3D_OFFLINE"


def default_data_root() -> Path:
    """`$CALIP3D_DATA`, else `$XDG_CACHE_HOME/calip3d/data`, else `~/.cache/calip3d/data`.

    As the XDG spec says, an empty or relative `XDG_CACHE_HOME` is ignored. The folder need not exist yet (a root
    that does not exist counts as empty).
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "calip3d" / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """`root` as an absolute path (`~` expanded), or `default_data_root()` when it is None."""
    return default_data_root() if root is None else Path(root).expanduser().absolute()


def check_mirror(url: str) -> str:
    """`url` without a trailing slash; a mirror must be an http(s) URL of a folder holding the release files."""
    if not url.startswith(("http://", "https://")):
        raise CalipError(f"mirror {url!r} is not an http:// or https:// URL (a folder holding the release files)")
    return url.rstrip("/")


def mirrors_from_env() -> list[str]:
    """The mirrors in `$CALIP3D_MIRROR` (comma-separated URLs), in order."""
    return [check_mirror(url.strip()) for url in os.environ.get(MIRROR_ENV, "").split(",") if url.strip()]


def offline() -> bool:
    """True when `$CALIP3D_OFFLINE` is set to 1 (or true/yes/on): nothing is downloaded."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
