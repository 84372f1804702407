"""TDA's caches (calip3d.zeroshot.tda) against a per-sample loop written here from the release's description
(docs: methods.md sections 2.1 and 5.2), on real Caltech101 images and ModelNet40 clouds encoded by the calibrated
tiny models, and on hand-made logits that land exactly on the window edges and tie in entropy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

from calip3d.errors import CalipError
from calip3d.zeroshot import tda
from calip3d.zeroshot.tda import TDA_RELEASED, TDA_SOURCE, TDASettings, tda_logits

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ the plain loop


@dataclass
class Stats:
    """What the loop's caches went through (to check that a test exercises them)."""

    pos_inserts: int = 0
    pos_replacements: int = 0
    neg_inserts: int = 0
    neg_replacements: int = 0
    below_window: int = 0
    above_window: int = 0
    pos_size: list[int] = field(default_factory=list)


def _offer(cache: dict, label: int, entry: tuple, capacity: int) -> str:
    """The release's rule: first entry of a class; append below capacity; at capacity swap the last entry only for
    a strictly lower entropy; then stable-sort by entropy (entry[0]). Returns what happened."""
    if label not in cache:
        cache[label] = [entry]
        return "insert"
    entries = cache[label]
    happened = "none"
    if len(entries) < capacity:
        entries.append(entry)
        happened = "insert"
    elif entry[0] < entries[-1][0]:
        entries[-1] = entry
        happened = "replace"
    cache[label] = sorted(entries, key=lambda e: e[0])
    return happened


def _cache_logits(f: torch.Tensor, cache: dict, alpha: float, beta: float, classes: int,
                  mask: tuple[float, float] | None = None) -> torch.Tensor:
    """alpha * exp(-(beta - beta * f K^T)) @ values, entries of the classes in ascending order; one matvec."""
    keys, values = [], []
    for label in sorted(cache):
        for entry in cache[label]:
            keys.append(entry[1])
            if mask is None:
                values.append(F.one_hot(torch.tensor(label), classes).to(f.dtype))
            else:
                p = entry[2]
                values.append(((p > mask[0]) & (p < mask[1])).to(f.dtype))
    affinity = f @ torch.stack(keys).T
    return alpha * (torch.exp(-(beta - beta * affinity)) @ torch.stack(values))


def release_loop(features: torch.Tensor, logits: torch.Tensor, s: TDASettings) -> tuple[torch.Tensor, Stats]:
    """One sample at a time, as the release streams its test set (batch 1)."""
    classes = logits.shape[1]
    pos: dict[int, list] = {}
    neg: dict[int, list] = {}
    stats = Stats()
    rows = []
    for i in range(logits.shape[0]):
        f, z = features[i], logits[i:i + 1]
        loss = float(-(z.softmax(1) * z.log_softmax(1)).sum(1))  # nats
        h = float(-(z.softmax(1) * z.log_softmax(1)).sum(1) / math.log2(classes))
        label = int(z.argmax(1))
        done = _offer(pos, label, (loss, f), s.shot_capacity)
        stats.pos_inserts += done == "insert"
        stats.pos_replacements += done == "replace"
        if s.entropy_low < h < s.entropy_high:
            done = _offer(neg, label, (loss, f, z.softmax(1)[0]), s.shot_capacity_neg)
            stats.neg_inserts += done == "insert"
            stats.neg_replacements += done == "replace"
        else:
            stats.below_window += h <= s.entropy_low
            stats.above_window += h >= s.entropy_high
        stats.pos_size.append(sum(len(v) for v in pos.values()))
        out = z[0].clone()
        if pos:
            out = out + _cache_logits(f, pos, s.alpha_pos, s.beta_pos, classes)
        if neg:
            out = out - _cache_logits(f, neg, s.alpha_neg, s.beta_neg, classes, (s.mask_low, s.mask_high))
        rows.append(out)
    return torch.stack(rows), stats


# ------------------------------------------------------------------------------------------------ real features


def _encode(config, checkpoint, kind: str, root):
    from calip3d.backbone import BackboneConfig
    from calip3d.datasets import load_split
    from calip3d.encoding import EncodeConfig
    from calip3d.prompts import build_prompts, pointclip_fewshot_prompts
    from calip3d.projection import ProjectorConfig

    backbone = BackboneConfig(str(config), str(checkpoint), device="cpu").load()
    encoder_config = EncodeConfig(use_cache=False, workers=0)
    if kind == "images":
        split = load_split("caltech101", root, "test")
        split = split.subset(range(3, len(split), 9))  # 274 images of all 100 classes
        tokens = encoder_config.encoder(backbone, None).tokens(split, "tda test")
        text = backbone.prompt_features(build_prompts("caltech101", split.classnames, "default").prompts)
        return F.normalize(tokens.global_feats, dim=-1), F.normalize(text, dim=-1)
    projector = ProjectorConfig(views=10).build(backbone.image_size)
    parts = [encoder_config.encoder(backbone, projector).tokens(load_split("modelnet40", root, s), "tda test")
             for s in ("test", "train")]  # all 156 real clouds
    feats = torch.cat([p.global_feats.flatten(1) for p in parts])
    text = backbone.prompt_features(pointclip_fewshot_prompts(load_split("modelnet40", root, "test").classnames).prompts)
    views = parts[0].global_feats.shape[1]
    return F.normalize(feats, dim=-1), F.normalize(text.repeat(1, views), dim=-1)


@pytest.fixture(scope="session")
def image_stream(varied_images, caltech_root):
    """(features [274, 32], text [100, 32]) of real Caltech101 test images, in a fixed shuffled order."""
    feats, text = _encode(*varied_images, "images", caltech_root)
    return feats[torch.randperm(len(feats), generator=torch.Generator().manual_seed(1))], text


@pytest.fixture(scope="session")
def cloud_stream(varied_points, modelnet_h5_dir):
    """(features [156, 320], text [40, 320]) of the real ModelNet40 clouds (10 views), in a fixed shuffled order."""
    feats, text = _encode(*varied_points, "points", modelnet_h5_dir.parent)
    return feats[torch.randperm(len(feats), generator=torch.Generator().manual_seed(1))], text


def _scaled_logits(feats: torch.Tensor, text: torch.Tensor, median_h: float) -> torch.Tensor:
    """100 f W^T rescaled so that the median normalised entropy is `median_h`: the tiny models' logits are too
    flat (or too sharp) for the release's window otherwise."""
    cos = feats @ text.T
    lo, hi = 1e-2, 1e5
    for _ in range(60):
        scale = math.sqrt(lo * hi)
        z = scale * cos
        h = -(z.softmax(1) * z.log_softmax(1)).sum(1) / math.log2(z.shape[1])
        lo, hi = (scale, hi) if h.median() > median_h else (lo, scale)
    return math.sqrt(lo * hi) * cos


@pytest.mark.parametrize("stream", ["image_stream", "cloud_stream"])
@pytest.mark.parametrize("median_h", [0.25, 0.35, 0.45])
def test_matches_the_per_sample_loop_on_real_features(request, stream, median_h):
    # Fails on: an entry evicted one step late or early, the sample not counting itself, a wrong window or mask
    # comparison, ties or sorting done differently, a block boundary dropping entries born or dying inside it.
    feats, text = request.getfixturevalue(stream)
    logits = _scaled_logits(feats, text, median_h)
    settings = TDASettings(alpha_pos=2.0, beta_pos=5.0, alpha_neg=0.5, beta_neg=3.0)
    expected, stats = release_loop(feats, logits, settings)
    # the stream exercises both caches: filling, replacing, and samples on both sides of the window
    assert stats.pos_replacements >= 10 and stats.neg_inserts >= 10 and stats.neg_replacements >= 2, stats
    assert stats.below_window >= 10 and stats.above_window >= 3, stats
    assert stats.pos_size[-1] > stats.pos_size[len(feats) // 4]  # classes keep arriving: the cache grows
    assert not torch.allclose(expected, logits, atol=1e-3)
    for block in (512, 37, 1):
        got = tda_logits(feats, logits, settings, block_size=block)
        assert got.dtype == torch.float32 and got.shape == logits.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("density", [0.0, 2.0])
def test_dense_and_pair_by_pair_negative_masks_agree(image_stream, monkeypatch, density):
    # Fails on: a bug in only one of the two ways of adding the negative masks (dense matmul or (entry, class)
    # pairs), or in the chunking of the pairs and of the entropy and mask passes (all forced small here).
    feats, text = image_stream
    logits = _scaled_logits(feats, text, 0.4)
    settings = TDASettings(alpha_pos=1.0, beta_pos=3.0, alpha_neg=1.0, beta_neg=2.0, mask_low=0.005)
    expected, stats = release_loop(feats, logits, settings)
    assert stats.neg_inserts >= 10
    monkeypatch.setattr(tda, "_SPARSE_DENSITY", density)
    monkeypatch.setattr(tda, "_PAIR_CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(tda, "_ENTROPY_CHUNK_ELEMENTS", 1000)  # 10 rows of 100 classes per chunk
    torch.testing.assert_close(tda_logits(feats, logits, settings, block_size=50), expected, atol=1e-5, rtol=1e-5)


def test_float64_in_float64_out(cloud_stream):
    # Fails on: an internal cast to float32 (output dtype or precision lost), or a dtype mix-up in the masks.
    feats, text = cloud_stream
    logits = _scaled_logits(feats, text, 0.35)
    settings = TDASettings(alpha_pos=3.0, beta_pos=8.0)
    got = tda_logits(feats.double(), logits.double(), settings, block_size=40)
    assert got.dtype == torch.float64
    expected, _ = release_loop(feats.double(), logits.double(), settings)
    torch.testing.assert_close(got, expected, atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(got.float(), tda_logits(feats, logits, settings), atol=1e-4, rtol=1e-5)


def test_zero_alphas_return_the_base_logits_exactly(image_stream):
    # Fails on: a cache term added with alpha 0 that is not exactly zero, or the base logits modified in place.
    feats, text = image_stream
    logits = _scaled_logits(feats, text, 0.35)
    before = logits.clone()
    out = tda_logits(feats, logits, TDASettings(alpha_pos=0.0, beta_pos=5.0, alpha_neg=0.0))
    assert torch.equal(out, before) and torch.equal(logits, before) and out.data_ptr() != logits.data_ptr()
    only_pos = tda_logits(feats, logits, TDASettings(alpha_pos=2.0, beta_pos=5.0, alpha_neg=0.0))
    expected, _ = release_loop(feats, logits, TDASettings(alpha_pos=2.0, beta_pos=5.0, alpha_neg=0.0))
    torch.testing.assert_close(only_pos, expected, atol=1e-5, rtol=1e-5)


def test_capacity_zero_behaves_like_one(cloud_stream):
    # Fails on: capacity 0 taken literally (no cache, or entries appended without bound).
    feats, text = cloud_stream
    logits = _scaled_logits(feats, text, 0.3)
    zero = tda_logits(feats, logits, TDASettings(alpha_pos=2.0, beta_pos=5.0, shot_capacity=0, shot_capacity_neg=0))
    one = tda_logits(feats, logits, TDASettings(alpha_pos=2.0, beta_pos=5.0, shot_capacity=1, shot_capacity_neg=1))
    two = tda_logits(feats, logits, TDASettings(alpha_pos=2.0, beta_pos=5.0, shot_capacity=2, shot_capacity_neg=2))
    assert torch.equal(zero, one) and not torch.allclose(one, two, atol=1e-3)
    expected, _ = release_loop(feats, logits, TDASettings(alpha_pos=2.0, beta_pos=5.0, shot_capacity=0,
                                                          shot_capacity_neg=0))
    torch.testing.assert_close(zero, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ hand-made edges


def _h(row: torch.Tensor) -> float:
    """The release's normalised entropy of one logits row, as a Python float."""
    z = row[None]
    return float(-(z.softmax(1) * z.log_softmax(1)).sum(1) / math.log2(z.shape[1]))


@pytest.mark.parametrize("density", [0.0, 2.0])  # negative masks by a dense matmul / pair by pair
def test_window_edges_entropy_ties_argmax_ties_and_mask_edges(monkeypatch, density):
    # Fails on: <= instead of < at either end of the entropy window or the mask window, an equal entropy
    # evicting an entry, the newest instead of the oldest of two tied entries kept on a replacement, argmax ties
    # to the highest index, logits computed before the updates (the sample must count itself).
    monkeypatch.setattr(tda, "_SPARSE_DENSITY", density)
    classes, dim = 4, 8
    e = torch.eye(dim)
    edge_low = torch.tensor([2.0, 1.0, 0.0, 0.0])   # class 0 (its mask would keep class 1)
    edge_high = torch.tensor([0.0, 1.0, 0.0, 0.0])  # class 1, flatter
    inside = torch.tensor([0.0, 0.5, 1.5, 0.0])     # class 2, between the two
    sharp = torch.tensor([0.0, 0.0, 6.0, 0.0])      # class 2, lowest entropy
    tie = torch.tensor([0.0, 1.5, 1.5, 0.0])        # argmax tie between classes 1 and 2
    low, high = _h(edge_low), _h(edge_high)
    assert low < _h(inside) < high and _h(sharp) < low and low < _h(tie) < high
    logits = torch.stack([edge_low, edge_high, inside, inside, sharp, inside, tie])
    # rows 2, 3 and 5 have equal logits (equal entropy) and orthogonal features; row 5 points along row 2
    feats = torch.stack([e[0], e[1], e[2], e[3], e[4], e[2], e[5]])
    p_inside = inside[None].softmax(1)[0]  # p0 = p3 < p1 < p2
    s = TDASettings(alpha_pos=1.0, beta_pos=2.0, shot_capacity=2, alpha_neg=0.5, beta_neg=1.0, entropy_low=low,
                    entropy_high=high, mask_low=float(p_inside[0]), mask_high=float(p_inside[2]))
    out = tda_logits(feats, logits, s)
    expected, stats = release_loop(feats, logits, s)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    assert stats.below_window == 2 and stats.above_window == 1  # rows 0 (= low) and 4; row 1 (= high)

    far = math.exp(-2.0)  # exp(-beta_pos * (1 - 0)) for an orthogonal entry
    one_hot = torch.eye(classes)
    # row 0: only itself in the positive cache; on the low edge, so no negative cache
    torch.testing.assert_close(out[0], edge_low + one_hot[0])
    # row 1: on the high edge, not in the negative cache either
    torch.testing.assert_close(out[1], edge_high + one_hot[1] + far * one_hot[0])
    # row 2: in the window, counts itself in both caches; its mask excludes the classes whose p is exactly on
    # the mask edges (classes 0 and 3 at mask_low, class 2 at mask_high): only class 1 remains
    mask = torch.tensor([0.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(out[2], inside + one_hot[2] + far * (one_hot[0] + one_hot[1]) - 0.5 * mask)
    # row 4: class 2 is full ([row 2, row 3], tied); the sharper row 4 replaces the last of them, row 3
    # row 5: sees class 2 = [row 4, row 2]; row 5 ties with row 2 and does not replace it (not strictly lower)
    pos5 = one_hot[2] * (far + 1.0) + far * (one_hot[0] + one_hot[1])  # row 4 orthogonal, row 2 identical
    # negative cache, class 2: [row 2, row 3] (row 4 is below the window, row 5 ties and is dropped)
    neg5 = 0.5 * mask * (1.0 + math.exp(-1.0))
    torch.testing.assert_close(out[5], inside + pos5 - neg5)
    # row 6: argmax tie -> class 1 (lowest index)
    pos6 = far * (one_hot[0] + 2 * one_hot[2]) + one_hot[1] * (far + 1.0)
    p_tie = tie[None].softmax(1)[0]
    neg6 = 0.5 * math.exp(-1.0) * 2 * mask + 0.5 * ((p_tie > s.mask_low) & (p_tie < s.mask_high)).float()
    torch.testing.assert_close(out[6], tie + pos6 - neg6)


def test_features_are_used_as_given_and_the_order_is_the_stream_order():
    # Fails on: features re-normalised inside, or the rows processed in another order (e.g. sorted by entropy).
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(60, 6, generator=g)  # not unit length on purpose
    logits = 3 * torch.randn(60, 5, generator=g)
    s = TDASettings(alpha_pos=1.0, beta_pos=1.0, entropy_low=0.05, entropy_high=0.6)
    torch.testing.assert_close(tda_logits(feats, logits, s, block_size=8), release_loop(feats, logits, s)[0],
                               atol=1e-5, rtol=1e-5)
    order = torch.randperm(60, generator=g)
    permuted = tda_logits(feats[order], logits[order], s)
    assert not torch.allclose(permuted, tda_logits(feats, logits, s)[order], atol=1e-3)
    assert tda_logits(feats[:0], logits[:0], s).shape == (0, 5)


# ------------------------------------------------------------------------------------------------ settings


def test_settings_defaults_are_the_releases_and_bad_values_name_the_field():
    s = TDASettings(alpha_pos=2.0, beta_pos=5.0)
    assert (s.shot_capacity, s.shot_capacity_neg, s.alpha_neg, s.beta_neg) == (3, 2, 0.117, 1.0)
    assert (s.entropy_low, s.entropy_high, s.mask_low, s.mask_high) == (0.2, 0.5, 0.03, 1.0)
    cases = {
        "shot_capacity": (-1, "TDASettings.shot_capacity must be >= 0, got -1"),
        "shot_capacity_neg": (1.5, "TDASettings.shot_capacity_neg must be an integer, got 1.5"),
        "alpha_neg": (-0.1, "TDASettings.alpha_neg must be >= 0, got -0.1"),
        "beta_pos": (float("inf"), "TDASettings.beta_pos must be finite, got inf"),
        "alpha_pos": (float("nan"), "TDASettings.alpha_pos must be a number, got nan"),
        "entropy_low": (0.5, "TDASettings.entropy_low must be < TDASettings.entropy_high, got 0.5 >= 0.5"),
        "mask_high": (0.01, "TDASettings.mask_low must be < TDASettings.mask_high, got 0.03 >= 0.01"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(CalipError) as err:
            TDASettings(**{"alpha_pos": 2.0, "beta_pos": 5.0, name: value})
        assert str(err.value) == message
    feats, logits = torch.zeros(3, 4), torch.zeros(3, 5)
    for bad, what in ((feats.double(), "dtype"), (feats[:2], "shape"), (torch.zeros(3, 4), "classes")):
        with pytest.raises(CalipError, match=r"tda_logits"):
            tda_logits(bad, logits if what != "classes" else logits[:, :1], s)


def test_released_values_and_source():
    from calip3d.datasets import DATASETS

    assert set(TDA_RELEASED) <= set(DATASETS) and len(TDA_RELEASED) == 11
    assert TDA_RELEASED["imagenet"] == (2.0, 5.0) and TDA_RELEASED["caltech101"] == (5.0, 5.0)
    assert TDA_RELEASED["fgvc_aircraft"] == (2.0, 2.0) and TDA_RELEASED["ucf101"] == (3.0, 8.0)
    assert "kdiAAA/TDA" in TDA_SOURCE and "#7" in TDA_SOURCE
