"""Shared test fixtures: the real data in ../shared/data (skipped with a reason when absent, or a failure when
`CALIP3D_REQUIRE_DATA=1`, as CI sets it), and tiny models whose predictions vary with the input on that data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
# Tests never reach the internet: a missing dataset is an error, not a download. The fetch tests switch downloads
# back on for their local server only (the `server` fixture of fetch_helpers.py).
os.environ["CALIP3D_OFFLINE"] = "1"
SHARED_DATA = Path(os.environ.get("CALIP3D_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_DATA = os.environ.get("CALIP3D_REQUIRE_DATA", "") not in ("", "0")


def _need(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        message = f"real test data not found at {path} (set CALIP3D_SHARED_DATA or place ../shared/data beside the repo)"
        if REQUIRE_DATA:
            pytest.fail(f"{message}; CALIP3D_REQUIRE_DATA=1 makes this a failure", pytrace=False)
        pytest.skip(message)
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


# ------------------------------------------------------------------------------------------------ varied models


def check_variety(config: Path, checkpoint: Path, kind: str, data_root: Path) -> dict[str, float]:
    """Encode real test data with the model and assert that its predictions vary with the input: many distinct
    predicted classes and global features far from collinear. Returns the measurements."""
    from calip3d.backbone import BackboneConfig
    from calip3d.datasets import load_split
    from calip3d.encoding import EncodeConfig
    from calip3d.prompts import build_prompts, pointclip_fewshot_prompts
    from calip3d.projection import ProjectorConfig

    backbone = BackboneConfig(str(config), str(checkpoint), device="cpu").load()
    if kind == "points":
        test = load_split("modelnet40", data_root, "test")
        projector = ProjectorConfig(views=10).build(backbone.image_size)
        prompts = pointclip_fewshot_prompts(test.classnames)
        least_distinct = 6
    else:
        test = load_split("caltech101", data_root, "test")
        test = test.subset(range(0, len(test), 10))  # every 10th image: all 100 classes
        projector = None
        prompts = build_prompts("caltech101", test.classnames, "default")
        least_distinct = 25
    tokens = EncodeConfig(use_cache=False, workers=0).encoder(backbone, projector).tokens(test, "variety check")
    text = backbone.prompt_features(prompts.prompts)
    feats = F.normalize(tokens.global_feats.flatten(1), dim=-1)
    views = tokens.global_feats.shape[1] if tokens.global_feats.ndim == 3 else 1
    predicted = (feats @ F.normalize(text.repeat(1, views), dim=-1).t()).argmax(dim=1)
    cosine = feats @ feats.t()
    off_diagonal = cosine[~torch.eye(len(feats), dtype=torch.bool)]
    found = {"distinct": len(set(predicted.tolist())), "items": len(feats),
             "max_cosine": float(off_diagonal.max()), "mean_cosine": float(off_diagonal.mean())}
    assert found["distinct"] >= least_distinct, f"{kind} model predicts too few classes: {found}"
    assert found["max_cosine"] < 0.995 and found["mean_cosine"] < 0.5, f"{kind} features near collinear: {found}"
    return found


def _varied(tmp_path_factory, kind: str) -> tuple[Path, Path]:
    from tiny_models import write_varied

    root = SHARED_DATA
    _need("modelnet40_ply_hdf5_2048" if kind == "points" else "caltech-101/split_zhou_Caltech101.json")
    with torch.random.fork_rng():
        paths = write_varied(tmp_path_factory.mktemp(f"varied-{kind}"), kind, root)
    check_variety(*paths, kind, root)
    return paths


@pytest.fixture(scope="session")
def varied_points(tmp_path_factory) -> tuple[Path, Path]:
    """(config, checkpoint) of a tiny ResNet calibrated on projected ModelNet40 train clouds; its predictions on the
    29 real test clouds vary (asserted here)."""
    return _varied(tmp_path_factory, "points")


@pytest.fixture(scope="session")
def varied_images(tmp_path_factory) -> tuple[Path, Path]:
    """(config, checkpoint) of a tiny ResNet calibrated on Caltech101 train images; its predictions on real test
    images vary (asserted here)."""
    return _varied(tmp_path_factory, "images")


@pytest.fixture
def one_thread():
    """Small matrices: one torch thread avoids oversubscription on a shared 2-core machine (L-BFGS is 5x faster)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["resnet", "vit"])
def tiny_loaded(request, tmp_path_factory):
    """(kind, backbone, transform) of a tiny random-weight model of each kind, loaded as the commands load it."""
    import warnings

    from calip3d.backbone import load_backbone
    from tiny_models import write_tiny

    config, checkpoint = write_tiny(tmp_path_factory.mktemp(request.param), request.param, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backbone, transform, _ = load_backbone(str(config), str(checkpoint))
    return request.param, backbone, transform
