"""Attention maps and terms of `calip3d.explain` against CALIP's own terms and classify's math, on real data."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calip3d.attention import calip_attention, calip_terms, combine_terms, terms_from_attention
from calip3d.attention import calip as calip_module
from calip3d.datasets.registry import MODELNET40_CLASSES
from calip3d.errors import CalipError
from calip3d.explain import (
    NPZ_KEYS, explain_clouds, explain_images, image_inputs, is_image_file, load_maps, read_image,
)
from calip3d.cloud_files import load_point_cloud
from calip3d.point_preprocessing import normalize_unit_sphere
from calip3d.projection import make_projector

BETAS = (1.0, 1.12, 0.02)
GRIDS = {"resnet": (2, 2), "vit": (4, 4)}  # tiny models: 64 px, ResNet /32, ViT patch 16


@pytest.fixture(scope="module")
def chairs(modelnet_resampled_dir):
    files = [modelnet_resampled_dir / "chair" / "chair_0391.txt", modelnet_resampled_dir / "airplane" /
             "airplane_0703.txt"]
    return np.stack([normalize_unit_sphere(load_point_cloud(f, num_points=1024)) for f in files]).astype(np.float32)


def _feats(b, n, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(b, d, generator=g), dim=-1), F.normalize(torch.randn(b, n, d, generator=g), dim=-1),
            F.normalize(torch.randn(k, d, generator=g), dim=-1))


def test_calip_terms_is_attention_then_terms_bit_for_bit(monkeypatch):
    fv, fs, ft = _feats(6, 49, 11, 32, seed=5)
    split = terms_from_attention(fv, fs, ft, *calip_attention(fs, ft, 0.5))
    for whole, parts in zip(calip_terms(fv, fs, ft), split):
        assert torch.equal(whole, parts)
    monkeypatch.setattr(calip_module, "_CHUNK_ELEMENTS", 49 * 32 * 2)  # chunked: still the same numbers
    for whole, parts in zip(calip_terms(fv, fs, ft), split):
        assert torch.equal(whole, parts)


def _independent_visual_guided(fv, fs, maps):
    """visual_guided[b, k] = <Fv[b], sum_n P[b, k, n] Fs[b, n]>, straight from the formula."""
    return torch.einsum("bd,bkd->bk", fv, torch.einsum("bkn,bnd->bkd", maps, fs))


def test_cloud_maps_terms_and_probabilities(tiny_loaded, chairs, tmp_path):
    kind, backbone, _ = tiny_loaded
    projector = make_projector("pointclip", image_size=backbone.image_size)
    text = backbone.class_features(list(MODELNET40_CLASSES), ["point cloud depth map of a {}."])
    weights = [3.0, 9.0, 5.0, 4.0, 5.0, 4.0]
    results = explain_clouds(backbone, chairs, projector, text, MODELNET40_CLASSES, BETAS, weights, top_k=3)
    assert len(results) == len(chairs)

    # classify's math, written out: per-view calip_terms, summed over views with the weights, combine, softmax
    images = projector.images(torch.from_numpy(chairs))
    glob, spatial = backbone.encode_image(images.flatten(0, 1))
    terms = [t.view(len(chairs), 6, -1) for t in calip_terms(glob, spatial, text)]
    w = torch.tensor(weights)
    want = combine_terms([torch.einsum("nvk,v->nk", t, w) for t in terms], BETAS).softmax(-1)
    want_clip = (100 * torch.einsum("nvk,v->nk", terms[0], w)).softmax(-1)
    height, width = GRIDS[kind]
    for b, result in enumerate(results):
        np.testing.assert_allclose(result.probabilities, want[b].numpy(), atol=1e-6)
        np.testing.assert_allclose(result.clip_probabilities, want_clip[b].numpy(), atol=1e-6)
        assert list(result.top) == want[b].topk(3).indices.tolist()
        assert result.views.shape == (6, backbone.image_size, backbone.image_size)
        assert (result.grid.height, result.grid.width) == (height, width)
        assert result.positions.shape == (6, 3, height * width)

        path = result.save_npz(tmp_path / f"maps{b}.npz")
        with np.load(path) as raw:
            assert sorted(raw.files) == sorted(NPZ_KEYS)
        saved = load_maps(path)
        np.testing.assert_allclose(saved.positions.sum(-1), 1.0, atol=1e-5)  # per view and class
        assert saved.classes == tuple(result.top_classes)
        np.testing.assert_array_equal(saved.view_weights, weights)
        np.testing.assert_allclose(saved.betas, BETAS)
        assert saved.grid.tokens.shape == (height, width) and saved.grid.tokens.min() == 1

        top = torch.as_tensor(result.top)
        rows = slice(b * 6, (b + 1) * 6)
        maps = torch.from_numpy(saved.positions)  # [V, K, N]
        recomputed = _independent_visual_guided(glob[rows], spatial[rows], maps)
        torch.testing.assert_close(recomputed, terms[1][b][:, top], atol=1e-6, rtol=0)
        for t in range(3):
            torch.testing.assert_close(torch.from_numpy(saved.terms[..., t]), terms[t][b][:, top], atol=1e-6, rtol=0)
        # and the maps themselves are CALIP's softmax over positions, as the formula defines it
        attn = torch.einsum("vnd,kd->vkn", spatial[rows], text[top]) / 0.5
        torch.testing.assert_close(maps, attn.softmax(-1), atol=1e-6, rtol=0)


def test_uniform_view_weights_are_classify_defaults(tiny_loaded, chairs):
    _, backbone, _ = tiny_loaded
    projector = make_projector("pointclip", image_size=backbone.image_size)
    text = backbone.class_features(["chair", "airplane", "lamp"], ["point cloud depth map of a {}."])
    result = explain_clouds(backbone, chairs[0], projector, text, ["chair", "airplane", "lamp"], BETAS, top_k=5)[0]
    glob, spatial = backbone.encode_image(projector.images(torch.from_numpy(chairs[:1])).flatten(0, 1))
    logits = combine_terms([t.sum(0, keepdim=True) for t in calip_terms(glob, spatial, text)], BETAS)
    np.testing.assert_allclose(result.probabilities, logits.softmax(-1)[0].numpy(), atol=1e-6)
    assert result.positions.shape[1] == 3  # top_k capped at the number of classes
    np.testing.assert_array_equal(result.view_weights, np.ones(6))
    with pytest.raises(CalipError, match="view weights"):
        explain_clouds(backbone, chairs[0], projector, text, ["chair", "airplane", "lamp"], BETAS, [1.0, 2.0])


def test_image_maps_and_probabilities(tiny_loaded, caltech_root, tmp_path):
    kind, backbone, transform = tiny_loaded
    path = caltech_root / "caltech-101" / "101_ObjectCategories" / "accordion" / "image_0001.jpg"
    names = ["accordion", "airplane", "anchor", "ant", "barrel"]
    text = backbone.class_features(names, ["a photo of a {}."])
    pixels, display = image_inputs(read_image(path), transform)
    assert display.shape == pixels.shape and 0 <= display.min() and display.max() <= 1
    result = explain_images(backbone, pixels, text, names, (1.0, 5.0, 0.18), top_k=3, display=display)[0]
    glob, spatial = backbone.encode_image(pixels[None])
    terms = calip_terms(glob, spatial, text)
    want = (100 * (terms[0] + 5.0 * terms[1] + 0.18 * terms[2])).softmax(-1)[0]
    np.testing.assert_allclose(result.probabilities, want.numpy(), atol=1e-6)
    np.testing.assert_allclose(result.clip_probabilities, (100 * terms[0]).softmax(-1)[0].numpy(), atol=1e-6)
    height, width = GRIDS[kind]
    assert result.views.shape == (1, 3, backbone.image_size, backbone.image_size)
    assert result.positions.shape == (1, 3, height * width) and result.terms.shape == (1, 3, 3)
    saved = load_maps(result.save_npz(tmp_path / "image.npz"))
    np.testing.assert_allclose(saved.positions.sum(-1), 1.0, atol=1e-5)
    recomputed = _independent_visual_guided(glob, spatial, torch.from_numpy(saved.positions))
    torch.testing.assert_close(recomputed[0], terms[1][0, torch.as_tensor(result.top)], atol=1e-6, rtol=0)


def test_image_inputs_and_errors(tmp_path):
    assert is_image_file("a/B.JPEG") and is_image_file("x.png") and not is_image_file("chair.ply")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CalipError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(CalipError, match="not a calip3d attention-map file"):
        load_maps(bad)
