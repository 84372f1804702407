"""The download settings read from the environment (the data root itself: `calip3d.datasets.root`)."""

from __future__ import annotations

import os

from calip3d.datasets.root import DATA_ENV, data_root, default_data_root
from calip3d.errors import CalipError

__all__ = ["DATA_ENV", "MIRROR_ENV", "OFFLINE_ENV", "check_mirror", "data_root", "default_data_root",
           "mirrors_from_env", "offline"]

MIRROR_ENV = "CALIP3D_MIRROR"
OFFLINE_ENV = "CALIP3D_OFFLINE"


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
