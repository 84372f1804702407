"""Tiny open_clip models with random weights, written as a model-config JSON plus a checkpoint file."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_CONFIGS = {
    "resnet": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16, "patch_size": None},
        "text_cfg": TEXT_CFG,
    },
    "vit": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": TEXT_CFG,
    },
}


def build_tiny(kind: str, seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CONFIGS[kind]).eval()


def write_tiny(folder: Path, kind: str = "resnet", seed: int = 0, name: str | None = None) -> tuple[Path, Path]:
    """Write `<name>.json` (open_clip config) and `<name>.safetensors`; returns (config, checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"tiny-{kind}"
    config = folder / f"{name}.json"
    config.write_text(json.dumps(TINY_CONFIGS[kind]))
    checkpoint = folder / f"{name}.safetensors"
    state = {k: v.contiguous() for k, v in build_tiny(kind, seed).state_dict().items()}
    save_file(state, str(checkpoint))
    return config, checkpoint
