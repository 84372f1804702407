"""Throughput options that must not change the numbers beyond a stated tolerance: decoding images on the device
(`--decode-on-device`: torchvision's decoder and antialiased tensor resize instead of PIL's) and `torch.compile` of
the image tower (`--compile`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from torchvision import transforms as T

from calip3d.cli.eval import main as eval_main
from calip3d.datasets import load_split
from calip3d.datasets.images import TensorTransform, device_image_batches
from calip3d.encoding import Loading
from calip3d.errors import CalipError
from tiny_models import write_tiny

LEVEL = 1 / 255


def _loading(transform, **extra) -> Loading:
    return Loading(transform, None, batch_size=8, workers=0, device=torch.device("cpu"), image_size=224, **extra)


@pytest.mark.parametrize("size", [224, 64])
def test_decoding_on_the_device_stays_within_2_levels_of_pil(caltech_root, size):
    split = load_split("caltech101", caltech_root, "test")
    split = split.subset(range(0, len(split), 97))  # 26 images of 26 classes, colour and greyscale
    transform = image_transform_v2(PreprocessCfg(size=size), is_train=False)
    std = torch.tensor(transform.transforms[-1].std)[:, None, None]
    pil = list(split.batches(_loading(transform)))
    device = list(split.batches(_loading(transform, decode_on_device=True)))
    for (a, labels_a, idx_a), (b, labels_b, idx_b) in zip(pil, device, strict=True):
        assert torch.equal(labels_a, labels_b) and torch.equal(idx_a, idx_b) and a.shape == b.shape
        pixels = ((a - b) * std).abs()  # back to [0, 1] intensities
        assert pixels.max() <= 2 * LEVEL + 1e-6
        assert pixels.mean() < 0.1 * LEVEL


def test_device_decoding_names_or_skips_unreadable_files(caltech_root, tmp_path):
    split = load_split("caltech101", caltech_root, "test").subset(range(5))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated, not a JPEG")
    items = [*split.items[:2], (str(bad), 0), *split.items[2:]]
    transform = image_transform_v2(PreprocessCfg(size=64), is_train=False)
    with pytest.raises(CalipError, match="cannot read image .*bad.jpg"):
        list(device_image_batches(items, _loading(transform, decode_on_device=True)))
    batches = list(device_image_batches(items, _loading(transform, decode_on_device=True, skip_bad_files=True)))
    assert torch.cat([i for _, _, i in batches]).tolist() == [0, 1, 3, 4, 5]
    assert batches[0][0].shape == (5, 3, 64, 64)


def test_only_the_validation_steps_run_on_the_device():
    augmenting = T.Compose([T.RandomResizedCrop(64), T.ToTensor()])
    with pytest.raises(CalipError, match="EncodeConfig.decode_on_device"):
        TensorTransform.of(augmenting, torch.device("cpu"))
    steps = TensorTransform.of(image_transform_v2(PreprocessCfg(size=64), is_train=False), torch.device("cpu"))
    assert steps.crop == (64, 64) and steps.mean.flatten().tolist() == pytest.approx(PreprocessCfg().mean)


def _caltech(tiny, root, tmp_path, name: str, *extra: str) -> list[str]:
    return ["--dataset", "caltech101", "--data-root", str(root), "--backbone", str(tiny[0]), "--pretrained",
            str(tiny[1]), "--limit", "10", "--tune-on", "none", "--workers", "0", "--batch-size", "4",
            "--cache-dir", str(tmp_path / name), "--output", str(tmp_path / f"{name}.json"), *extra]


def _terms(folder: Path) -> dict[str, torch.Tensor]:
    (entry,) = folder.glob("terms-*.pt")
    return torch.load(entry, weights_only=True)["tensors"]


def test_eval_options_decode_on_device_and_compile(caltech_root, tmp_path):
    """`--decode-on-device` and `--compile` through `calip3d eval`: recorded in the provenance, cached under their
    own keys, and the terms close to the default path's (compile: within 1e-4, as `--compile` promises)."""
    tiny = write_tiny(tmp_path / "tiny", "vit", seed=3)
    assert eval_main(_caltech(tiny, caltech_root, tmp_path, "eager")) == 0
    assert eval_main(_caltech(tiny, caltech_root, tmp_path, "decoded", "--decode-on-device")) == 0
    assert eval_main(_caltech(tiny, caltech_root, tmp_path, "compiled", "--compile")) == 0
    prov = {name: json.loads((tmp_path / f"{name}.json").read_text())["provenance"]
            for name in ("eager", "decoded", "compiled")}
    assert prov["decoded"]["decode"] == "torchvision on cpu" and "decode" not in prov["eager"]
    assert prov["compiled"]["compiled"] and not prov["eager"]["compiled"]
    eager, decoded, compiled = (_terms(tmp_path / name) for name in ("eager", "decoded", "compiled"))
    names = {p.name for name in ("eager", "decoded", "compiled") for p in (tmp_path / name).glob("*.pt")}
    assert len(names) == 3  # three keys: neither option reuses the default path's entry
    for key in ("clip", "visual_guided", "textual_blended", "global_feats"):
        assert (compiled[key] - eager[key]).abs().max() <= 1e-4, key
        assert (decoded[key] - eager[key]).abs().max() <= 1e-3, key  # inputs within 2/255, through a tiny random ViT
    assert torch.equal(decoded["indices"], eager["indices"])
