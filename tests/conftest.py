"""Shared test fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests never reach the internet: a missing dataset is an error, not a download. The fetch tests switch downloads
# back on for their local server only (the `server` fixture of fetch_helpers.py).
os.environ["CALIP3D_OFFLINE"] = "1"
SHARED_DATA = Path(os.environ.get("CALIP3D_SHARED_DATA", REPO.parent / "shared" / "data"))


def _need(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (set CALIP3D_SHARED_DATA or place ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the real datasets (../shared/data)."""
    return _need("")


@pytest.fixture(scope="session")
def caltech_root() -> Path:
    """Data root containing caltech-101/ in the CoOp layout."""
    _need("caltech-101/split_zhou_Caltech101.json")
    return SHARED_DATA


@pytest.fixture(scope="session")
def modelnet_h5_dir() -> Path:
    return _need("modelnet40_ply_hdf5_2048")


@pytest.fixture(scope="session")
def modelnet_resampled_dir() -> Path:
    return _need("modelnet40_normal_resampled")
