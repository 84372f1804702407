"""Backbone: global/spatial tokens against independent computations, loading paths and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from calip3d.backbone import CLIPBackbone, load_backbone
from calip3d.errors import CalipError
from tiny_models import TINY_CONFIGS, build_tiny, write_tiny


def _resnet_reference(model: open_clip.CLIP, images: torch.Tensor) -> torch.Tensor:
    """Attention pooling written out head by head, every position used as a query: [B, HW+1, D]."""
    vis = model.visual
    x = vis.stem(images)
    x = vis.layer4(vis.layer3(vis.layer2(vis.layer1(x))))
    pool = vis.attnpool
    tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
    tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1) + pool.positional_embedding
    q, k, v = pool.q_proj(tokens), pool.k_proj(tokens), pool.v_proj(tokens)
    heads, width = pool.num_heads, tokens.shape[-1]
    outs = []
    for h in range(heads):
        sl = slice(h * width // heads, (h + 1) * width // heads)
        scale = (width // heads) ** -0.5
        attn = torch.softmax((q[..., sl] * scale) @ k[..., sl].transpose(1, 2), dim=-1)
        outs.append(attn @ v[..., sl])
    return pool.c_proj(torch.cat(outs, dim=-1))


def _vit_reference(model: open_clip.CLIP, images: torch.Tensor) -> torch.Tensor:
    vis = model.visual
    vis.output_tokens = True
    try:
        pooled, tokens = vis(images)
    finally:
        vis.output_tokens = False
    return torch.cat([pooled[:, None], tokens @ vis.proj], dim=1)


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_global_equals_encode_image_and_spatial_matches_reference(kind):
    model = build_tiny(kind, seed=3)
    backbone = CLIPBackbone(model)
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    glob, spatial = backbone.encode_image(images)
    with torch.no_grad():
        expected_global = F.normalize(model.encode_image(images), dim=-1)
        ref = F.normalize((_resnet_reference if kind == "resnet" else _vit_reference)(model, images), dim=-1)
    grid = (64 // 32) ** 2 if kind == "resnet" else (64 // 16) ** 2
    assert glob.shape == (4, 32) and spatial.shape == (4, grid, 32)
    torch.testing.assert_close(glob, expected_global, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(glob, ref[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(spatial, ref[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(spatial.norm(dim=-1), torch.ones(4, grid), atol=1e-5, rtol=0)


def test_class_features_are_normalised_template_means():
    backbone = CLIPBackbone(build_tiny("resnet"))
    templates = ["a photo of a {}.", "art of the {}."]
    feats = backbone.class_features(["cat", "dog", "fire truck"], templates)
    for row, name in zip(feats, ["cat", "dog", "fire truck"]):
        each = backbone.encode_text([t.format(name) for t in templates])
        torch.testing.assert_close(row, F.normalize(each.mean(0), dim=-1), atol=1e-6, rtol=1e-6)
    assert feats.shape == (3, 32)


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_load_from_config_json_and_checkpoint(tmp_path, kind):
    config, checkpoint = write_tiny(tmp_path, kind, seed=5)
    backbone, transform, info = load_backbone(str(config), str(checkpoint))
    reference = build_tiny(kind, seed=5)
    assert not backbone.model.training
    for (name, a), b in zip(backbone.model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    assert info.architecture == kind and info.image_size == 64 and "sha256:" in info.weights
    assert transform.transforms[0].size == 64


def test_config_file_never_shadows_builtin_name(tmp_path):
    before = open_clip.get_model_config("RN50")
    config, checkpoint = write_tiny(tmp_path, "resnet", name="RN50")
    backbone, _, info = load_backbone(str(config), str(checkpoint))
    assert info.embed_dim == 32
    assert open_clip.get_model_config("RN50") == before  # the built-in RN50 is untouched


def test_torchscript_checkpoint_loads_without_unpickling(tmp_path):
    model = build_tiny("resnet", seed=7)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["resnet"]))

    path = tmp_path / "openai_style.pt"  # a TorchScript archive holding the weights, as OpenAI's files do
    torch.jit.script(_StateHolder(model.state_dict())).save(str(path))
    backbone, _, info = load_backbone(str(config), str(path))
    for (name, a), b in zip(backbone.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert info.quick_gelu  # OpenAI's TorchScript files are QuickGELU models


class _StateHolder(torch.nn.Module):
    """A module whose registered buffers are named like CLIP's state dict (dots -> nested modules)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for key, value in state.items():
            parent = self
            *path, leaf = key.split(".")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, torch.nn.Module())
                parent = getattr(parent, part)
            parent.register_buffer(leaf, value.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vision_cfg": {"timm_model_name": "vit_base_patch16_224", "image_size": 64}}, "timm"),
        ({"vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "pool_type": "avg",
                         "no_ln_pre": False}}, "class token"),
        ({"vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "attentional_pool": True}},
         "attentional"),
        ({"multimodal_cfg": {"width": 32}}, "CoCa"),
    ],
)
def test_unsupported_towers_are_refused(tmp_path, change, message):
    cfg = {**TINY_CONFIGS["vit"], **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(CalipError, match=message):
        load_backbone(str(path), None)


def test_config_without_required_keys_is_refused(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {}}))
    with pytest.raises(CalipError, match="text_cfg"):
        load_backbone(str(path), None)


def test_config_json_with_a_weights_tag_is_refused(tmp_path):
    config, _ = write_tiny(tmp_path, "resnet")
    with pytest.raises(CalipError, match="must be a checkpoint file"):
        load_backbone(str(config), "openai")


def test_unknown_tag_and_missing_file(tmp_path):
    with pytest.raises(CalipError, match="neither a checkpoint file nor a known weights tag"):
        load_backbone("RN50", "no-such-tag")
    with pytest.raises(CalipError, match="not found"):
        load_backbone("RN50", str(tmp_path / "missing.safetensors"))


def test_offline_without_cached_weights_gives_one_clear_error(tmp_path, caltech_root):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "calip3d.eval", "--dataset", "caltech101", "--data-root", str(caltech_root),
         "--backbone", "RN50", "--pretrained", "openai"],
        capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "--pretrained PATH" in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr
    assert str(tmp_path / "hub") in proc.stderr


def test_low_precision_keeps_open_clip_mixed_precision(tmp_path):
    config, checkpoint = write_tiny(tmp_path, "vit", seed=9)
    full, _, _ = load_backbone(str(config), str(checkpoint))
    half, _, _ = load_backbone(str(config), str(checkpoint), precision="bf16")
    assert half.dtype == torch.bfloat16
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    (g16, s16), (g32, s32) = half.encode_image(images), full.encode_image(images)
    torch.testing.assert_close(g16.float(), g32, atol=0.05, rtol=0)
    torch.testing.assert_close(s16.float(), s32, atol=0.05, rtol=0)
    torch.testing.assert_close(half.class_features(["cat"], ["a {}."]), full.class_features(["cat"], ["a {}."]),
                               atol=0.05, rtol=0)
