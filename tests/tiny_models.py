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


# ------------------------------------------------------------------------------------------------ varied models
# Random tiny towers give nearly constant features (a common offset dominates every output), so every cloud and
# every image is predicted as one class and end-to-end checks cannot tell right features from wrong ones. A varied
# model redraws every weight matrix with a larger spread and removes the mean global feature of a calibration set
# (real train data of the kind it will see) from the attention pooling's output bias.

VARIED_SCALE = 3.0  # weights ~ N(0, (VARIED_SCALE / sqrt(fan_in))^2)


def build_varied(seed: int = 0, scale: float = VARIED_SCALE) -> open_clip.CLIP:
    """The tiny ResNet CLIP with every >= 2-D weight redrawn from a generator seeded with `seed`."""
    model = build_tiny("resnet", seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, weight in sorted(model.named_parameters()):
            if weight.ndim >= 2:
                fan_in = weight[0].numel()
                weight.copy_(torch.randn(weight.shape, generator=generator) * scale / fan_in ** 0.5)
    return model.eval()


def calibrate(model: open_clip.CLIP, images: torch.Tensor, batch_size: int = 256) -> None:
    """Subtract the mean raw global feature of `images` `[N, 3, S, S]` from the attention pooling's output bias."""
    from calip3d.backbone import CLIPBackbone

    backbone = CLIPBackbone(model)
    raw = []
    for start in range(0, images.shape[0], batch_size):
        glob, _, norms = backbone.encode_image_norms(images[start:start + batch_size])
        raw.append(glob.float() * norms[:, None])
    with torch.no_grad():
        model.visual.attnpool.c_proj.bias -= torch.cat(raw).mean(dim=0).to(model.visual.attnpool.c_proj.bias.dtype)


def calibration_images(kind: str, data_root: Path, image_size: int) -> torch.Tensor:
    """Train inputs the model will see: ModelNet40 train clouds projected by PointCLIP's 10 few-shot views
    (`points`), or every 8th Caltech101 train image through the model's own transform (`images`)."""
    from calip3d.backbone import CLIPBackbone
    from calip3d.datasets import load_split
    from calip3d.encoding import EncodeConfig
    from calip3d.projection import ProjectorConfig

    if kind == "points":
        split = load_split("modelnet40", data_root, "train")
        projector = ProjectorConfig(views=10).build(image_size)
    else:
        split = load_split("caltech101", data_root, "train")
        split = split.subset(range(0, len(split), 8))
        projector = None
    backbone = CLIPBackbone(build_tiny("resnet"))
    loading = EncodeConfig(use_cache=False, workers=0).encoder(backbone, projector).loading
    return torch.cat([x.flatten(0, 1) if x.ndim == 5 else x for x, _, _ in split.batches(loading)])


def write_varied(folder: Path, kind: str, data_root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a varied tiny ResNet calibrated on `kind` ("points" or "images") train data under `data_root`;
    returns (config, checkpoint) as `write_tiny` does."""
    folder.mkdir(parents=True, exist_ok=True)
    model = build_varied(seed)
    calibrate(model, calibration_images(kind, data_root, TINY_CONFIGS["resnet"]["vision_cfg"]["image_size"]))
    config, checkpoint = folder / f"varied-{kind}.json", folder / f"varied-{kind}.safetensors"
    config.write_text(json.dumps(TINY_CONFIGS["resnet"]))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    return config, checkpoint
