"""Every input that changes cached bytes is in the feature-cache key (a change misses), and nothing else is (changing
only betas or view weights hits). The key parts are generated from typed configs, so the field-by-field tests below
pick up a new setting by themselves."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calip3d.backbone import BackboneConfig
from calip3d.cache import FeatureCache, cache_key, fingerprint_fields
from calip3d.cli.eval import main as eval_main
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.datasets import PointSettings, load_split
from calip3d.datasets.images import ImageAugment
from calip3d.encoding import EncodeConfig, Encoder, Loading
from calip3d.projection import PointCLIPProjector, ProjectorConfig, RealisticProjector
from tiny_models import write_tiny


@pytest.fixture(scope="module")
def points_backbone(varied_points):
    return BackboneConfig(str(varied_points[0]), str(varied_points[1]), device="cpu").load()


@pytest.fixture(scope="module")
def images_backbone(varied_images):
    return BackboneConfig(str(varied_images[0]), str(varied_images[1]), device="cpu").load()


def _encoder(backbone, projector=None, temperature: float = 0.5) -> Encoder:
    return EncodeConfig(use_cache=False, workers=0).encoder(backbone, projector, temperature)


def _tokens_key(encoder: Encoder, split) -> str:
    return cache_key(encoder.spec("tokens", split))


# ------------------------------------------------------------------------------------------------ point settings


def _changed(value, name: str):
    """A different valid value for a setting, by type (bool flipped, numbers moved, names swapped)."""
    alternatives = {"format": "resampled", "sampling": "fps", "up_axis": "z"}
    if name in alternatives:
        return alternatives[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value // 2 if value > 64 else value + 1
    if isinstance(value, float):
        return value * 0.75 + 0.05
    raise AssertionError(f"no alternative value for the new setting {name}={value!r}: add one here")


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(PointSettings)])
def test_every_point_setting_misses_the_token_cache(name, points_backbone, modelnet_h5_dir):
    """A run with any point setting changed (e.g. --points 64 after --points 1024) never reuses the tokens."""
    root = modelnet_h5_dir.parent
    base = PointSettings(format="h5", num_points=1024, sampling="first", seed=0, normalize=True, up_axis="y")
    other = dataclasses.replace(base, **{name: _changed(getattr(base, name), name)})
    encoder = _encoder(points_backbone, ProjectorConfig(views=6).build(points_backbone.image_size))
    split, changed = (s.load("modelnet40", root, "test").subset(range(4)) for s in (base, other))
    assert _tokens_key(encoder, split) != _tokens_key(encoder, changed)


# ------------------------------------------------------------------------------------------------ projectors

# One other valid value for every constructor parameter of each projector; a parameter missing here fails the test
# below, so a new projector setting cannot be left out of the key unnoticed.
PROJECTOR_CHANGES = {
    PointCLIPProjector: {"views": 10, "distance": 1.7, "resolution": 100, "image_size": 32},
    RealisticProjector: {"views": 6, "tilts": [(0.0, 0.1, 0.0)] * 10, "resolution": 100, "depth": 6,
                         "obj_ratio": 0.7, "depth_bias": 0.3, "translation": (-0.5, -0.5, -1.0),
                         "pool_size": (1, 5, 5), "pool_padding": (0, 1, 1), "smooth_size": (1, 5, 5),
                         "smooth_padding": (0, 2, 2), "sigma_xy": 2.0, "sigma_z": 2.0, "background": 0.1,
                         "image_size": 32},
}


@pytest.mark.parametrize("cls", list(PROJECTOR_CHANGES))
def test_every_projector_setting_misses_the_token_cache(cls, points_backbone, modelnet_h5_dir):
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert params == set(PROJECTOR_CHANGES[cls]), "list an alternative value for every projector setting"
    split = load_split("modelnet40", modelnet_h5_dir.parent, "test").subset(range(2))
    base = _tokens_key(_encoder(points_backbone, cls()), split)
    for name, value in PROJECTOR_CHANGES[cls].items():
        assert _tokens_key(_encoder(points_backbone, cls(**{name: value})), split) != base, name


# ------------------------------------------------------------------------------------------------ loading, backbone


def test_every_loading_field_is_keyed_or_declared_irrelevant(images_backbone, caltech_root):
    """`Loading.fingerprint` is generated: each field not in NOT_IN_KEY changes the key, each one in it does not."""
    split = load_split("caltech101", caltech_root, "test").subset(range(3))
    encoder = _encoder(images_backbone)
    base = _tokens_key(encoder, split)
    from torchvision import transforms as T

    changes = {"transform": T.Compose([T.Resize(64), T.CenterCrop(64), T.ToTensor()]), "projector": None,
               "batch_size": 7, "workers": 3, "device": torch.device("meta"), "image_size": 32, "skip_bad_files": True,
               "pin_memory": True, "decode_on_device": True, "offset": 5}
    assert set(changes) == {f.name for f in dataclasses.fields(Loading)}, "list a change for every Loading field"
    changes["projector"] = PointCLIPProjector()
    for name, value in changes.items():
        other = dataclasses.replace(encoder, loading=dataclasses.replace(encoder.loading, **{name: value}))
        assert (_tokens_key(other, split) != base) == (name not in Loading.NOT_IN_KEY), name


def test_backbone_weights_architecture_and_precision_miss(images_backbone, caltech_root, tmp_path):
    split = load_split("caltech101", caltech_root, "test").subset(range(3))
    base = _tokens_key(_encoder(images_backbone), split)
    others = [BackboneConfig(*map(str, write_tiny(tmp_path / "a", "resnet", seed=1)), device="cpu"),  # weights
              BackboneConfig(*map(str, write_tiny(tmp_path / "b", "vit", seed=0)), device="cpu"),  # architecture
              BackboneConfig(images_backbone.info.name, images_backbone.info.pretrained, device="cpu",
                             precision="bf16")]  # precision
    keys = {_tokens_key(_encoder(config.load()), split) for config in others}
    assert base not in keys and len(keys) == 3


def test_every_backbone_info_field_is_keyed(images_backbone, caltech_root):
    split = load_split("caltech101", caltech_root, "test").subset(range(2))
    encoder = _encoder(images_backbone)
    base = _tokens_key(encoder, split)
    info = images_backbone.info
    for f in dataclasses.fields(info):
        value = getattr(info, f.name)
        if isinstance(value, dict):
            changed = {"x": 1}
        elif isinstance(value, bool):
            changed = not value
        else:
            changed = value + 1 if isinstance(value, int) else f"{value}!"
        images_backbone.info = dataclasses.replace(info, **{f.name: changed})
        try:
            assert _tokens_key(encoder, split) != base, f.name
        finally:
            images_backbone.info = info


# ------------------------------------------------------------------------------------------------ augmentation


def test_augmentation_seed_and_recipe_miss(images_backbone, points_backbone, caltech_root, modelnet_h5_dir):
    images = load_split("caltech101", caltech_root, "train").subset(range(3))
    encoder = _encoder(images_backbone)
    keys = {_tokens_key(encoder, s) for s in (images, images.augmented(1), images.augmented(2),
                                              images.augmented(1, ImageAugment(scale=(0.8, 1.0))),
                                              images.augmented(1, ImageAugment(flip=0.0)))}
    assert len(keys) == 5
    clouds = load_split("modelnet40", modelnet_h5_dir.parent, "train").subset(range(3))
    encoder = _encoder(points_backbone, PointCLIPProjector())
    assert len({_tokens_key(encoder, s) for s in (clouds, clouds.augmented(1), clouds.augmented(2))}) == 3


# ------------------------------------------------------------------------------------------------ terms


def test_terms_key_has_temperature_prompts_and_text(images_backbone, caltech_root):
    split = load_split("caltech101", caltech_root, "test").subset(range(2))
    text = torch.nn.functional.normalize(torch.randn(100, images_backbone.embed_dim), dim=-1)

    def key(temperature=0.5, prompts="default", features=text):
        spec = _encoder(images_backbone, temperature=temperature).spec("terms", split, temperature=temperature,
                                                                       prompts=prompts, text=_digest(features))
        return cache_key(spec)

    base = key()
    assert key() == base
    assert key(temperature=0.25) != base and key(prompts="ensemble") != base and key(features=text.flip(0)) != base


def _digest(tensor: torch.Tensor) -> str:
    from calip3d.encoding import digest_tensor

    return digest_tensor(tensor)


def _eval(config, root, cache, out, *extra):
    argv = ["--dataset", "modelnet40", "--data-root", str(root), "--backbone", str(config[0]), "--pretrained",
            str(config[1]), "--cache-dir", str(cache), "--workers", "0", "--tune-on", "none", "--output", str(out),
            "--views", "6", *extra]
    assert eval_main(argv) == 0
    return json.loads(Path(out).read_text())["provenance"]["cache"]


def test_eval_term_cache_hits_on_betas_and_view_weights_and_misses_on_the_rest(varied_points, modelnet_h5_dir,
                                                                               tmp_path):
    """Through the command: a rerun with other betas or view weights costs no encoding; a change of temperature,
    templates, weights or projector settings encodes again."""
    root, cache, out = modelnet_h5_dir.parent, tmp_path / "cache", tmp_path / "out.json"
    assert _eval(varied_points, root, cache, out) == "miss"
    assert _eval(varied_points, root, cache, out, "--betas", "1,2,0.5") == "hit"
    assert _eval(varied_points, root, cache, out, "--view-weights", "1,2,3,4,5,6") == "hit"
    assert _eval(varied_points, root, cache, out, "--temperature", "0.25") == "miss"
    assert _eval(varied_points, root, cache, out, "--templates", "ensemble") == "miss"
    assert _eval(varied_points, root, cache, out, "--resolution", "100") == "miss"
    other = write_tiny(tmp_path / "other", "resnet", seed=3)
    assert _eval(other, root, cache, out) == "miss"
    assert _eval(varied_points, root, cache, out) == "hit"


def test_stale_tokens_points_64_after_1024_is_a_miss(varied_points, modelnet_h5_dir, tmp_path, capsys):
    """The issue's case: `--points 64` after `--points 1024` with the same --cache-tokens folder encodes again."""
    def run(points: str) -> str:
        argv = ["--dataset", "modelnet40", "--data-root", str(modelnet_h5_dir.parent), "--backbone",
                str(varied_points[0]), "--pretrained", str(varied_points[1]), "--method", "zero-shot", "--shots", "1",
                "--points", points, "--views", "6", "--workers", "0", "--cache-tokens", str(tmp_path / "tokens"),
                "--split-dir", str(tmp_path / "splits"), "--output", str(tmp_path / f"{points}.json")]
        assert fewshot_main(argv) == 0
        return capsys.readouterr().err

    assert "writing tokens of the test split" in run("1024")
    assert "writing tokens of the test split" in run("64")
    assert "writing tokens of the test split" not in run("1024")  # the 1024-point entry is still there: a hit
    first, second = (json.loads((tmp_path / f"{p}.json").read_text()) for p in ("1024", "64"))
    assert first["provenance"]["points"]["num_points"] == 1024 and second["provenance"]["points"]["num_points"] == 64


@dataclasses.dataclass
class _Inner:
    table: object


@dataclasses.dataclass
class _Outer:
    inner: _Inner
    weights: object
    paths: tuple = ()


def test_key_parts_see_every_element_of_nested_arrays_tensors_and_lists():
    """A value's repr elides the middle of a large array, so a key built from reprs would miss a change there."""
    big = np.zeros(5000, dtype=np.float32)
    moved = big.copy()
    moved[2500] = 1.0
    base = _Outer(_Inner(big), torch.zeros(3000), (Path("a.json"),))
    assert str(big) == str(moved)  # the trap: the reprs agree
    assert cache_key(fingerprint_fields(_Outer(_Inner(moved), base.weights, base.paths))) != \
        cache_key(fingerprint_fields(base))
    tensor = torch.zeros(3000)
    tensor[1500] = 1.0
    assert cache_key(fingerprint_fields(_Outer(base.inner, tensor, base.paths))) != cache_key(fingerprint_fields(base))
    assert cache_key(fingerprint_fields(_Outer(base.inner, base.weights, (Path("b.json"),)))) != \
        cache_key(fingerprint_fields(base))
    assert fingerprint_fields(base, exclude=frozenset({"inner", "weights"})) == fingerprint_fields(
        _Outer(_Inner(moved), tensor, base.paths), exclude=frozenset({"inner", "weights"}))


def test_a_cache_entry_is_read_back_only_under_its_own_spec(tmp_path):
    from calip3d.encoding import Tokens

    cache = FeatureCache(tmp_path)
    tokens = Tokens(torch.ones(2, 3), torch.ones(2, 4, 3).half(), torch.tensor([0, 1]), torch.tensor([0, 1]),
                    torch.ones(2))
    spec = {"kind": "tokens", "data": {"points": 1024}}
    cache.save(spec, tokens)
    assert cache.load({**spec, "data": {"points": 64}}, Tokens) is None and cache.last_status == "miss"
    assert torch.equal(cache.load(spec, Tokens).global_norms, tokens.global_norms) and cache.last_status == "hit"
