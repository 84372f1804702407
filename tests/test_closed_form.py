"""GDA, APE and Tip-X (calip3d.fewshot.closed_form and their registered methods) against straightforward
re-expressions of their releases written here from the spec (docs: /work/shared/reference/methods.md 1.1-1.3,
5.1): plain loops over the grids, dense one-hot matmuls, explicit loops over pairs. Inputs are real features: the
calibrated tiny models on the Caltech101 split and the ModelNet40 sample. End to end, each method runs under both
protocols and both bases through `calip3d fewshot`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calip3d.fewshot import FewShotConfig
from calip3d.fewshot import closed_form as cf
from calip3d.fewshot.methods import METHODS, FitData, MethodSettings, flat_global, flat_text, zero_shot_logits
from calip3d.fewshot.selection import VAL_SHOTS, Selection

pytestmark = pytest.mark.usefixtures("one_thread")  # small matrices: no oversubscription

NEW_METHODS = ("gda", "ape", "tip-x")


# ------------------------------------------------------------------------------------------------ real features


def _per_class(labels, count: int) -> list[int]:
    """The first `count` items of every class, in dataset order."""
    labels = np.asarray(labels)
    return [int(i) for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:count]]


def _encode(model, root: Path, dataset: str, views: int | None):
    from calip3d.backbone import BackboneConfig
    from calip3d.datasets import load_split
    from calip3d.encoding import EncodeConfig
    from calip3d.prompts import build_prompts, pointclip_fewshot_prompts
    from calip3d.projection import ProjectorConfig

    backbone = BackboneConfig(str(model[0]), str(model[1]), device="cpu").load()
    projector = ProjectorConfig(views=views).build(backbone.image_size) if views else None
    encoder = EncodeConfig(use_cache=False, workers=0).encoder(backbone, projector)
    train = load_split(dataset, root, "train")
    held = load_split(dataset, root, "val" if dataset == "caltech101" else "test")
    shots = train.subset(_per_class(train.labels, 2))
    sets = {"shots": encoder.tokens(shots, "shots"),
            "copies": [encoder.tokens(shots.augmented(seed), "copy") for seed in (11, 12)],
            "held": encoder.tokens(held.subset(_per_class(held.labels, 3)), "held out")}
    prompts = pointclip_fewshot_prompts(train.classnames) if views else \
        build_prompts(dataset, train.classnames, "default")
    sets["text"] = backbone.prompt_features(prompts.prompts)
    return sets


@pytest.fixture(scope="module")
def caltech(varied_images, shared_data):
    """Encoded Caltech101: 2 train shots per class (200), 2 augmented copies of them, 3 val items per class, text."""
    return _encode(varied_images, shared_data, "caltech101", None)


@pytest.fixture(scope="module")
def modelnet(varied_points, shared_data):
    """Encoded ModelNet40 sample, 6 views: up to 2 train clouds per class (36 of 40 classes have one), 2 augmented
    copies, the 29 test clouds (3 per class at most), PointCLIP's few-shot text."""
    return _encode(varied_points, shared_data, "modelnet40", 6)


def _flat(sets, dtype=torch.float64):
    """(shot features [N, F], labels, held-out features [M, F], labels, text [C, F]) as the methods see them."""
    views = sets["shots"].global_feats.shape[1] if sets["shots"].global_feats.ndim == 3 else None
    return (flat_global(sets["shots"].global_feats).to(dtype), sets["shots"].labels,
            flat_global(sets["held"].global_feats).to(dtype), sets["held"].labels,
            flat_text(sets["text"], views).to(dtype))


def _tip_keys(sets, dtype=torch.float64) -> torch.Tensor:
    """Tip-Adapter's cache keys written out: raw CLIP features (3D: normalised view concatenations) of the copies,
    averaged, normalised once."""
    def raw(tokens):
        if tokens.global_feats.ndim == 3:
            return F.normalize(tokens.global_feats.flatten(1), dim=-1)
        return tokens.global_feats * tokens.global_norms[:, None]
    return F.normalize(sum(raw(c) for c in sets["copies"]) / len(sets["copies"]), dim=-1).to(dtype)


# ------------------------------------------------------------------------------------------------ GDA


def _gda_reference(feats, labels, num_classes):
    """ICLR24's estimator written plainly: per-class loops, the covariance spelt out (re-centred, N - 1)."""
    n, d = feats.shape
    mus = torch.stack([feats[labels == c].mean(0) for c in range(num_classes)])
    z = torch.cat([feats[labels == c] - mus[c] for c in range(num_classes)])
    zc = z - z.mean(0)
    cov = zc.T @ zc / (n - 1)
    precision = d * torch.linalg.pinv((n - 1) * cov + torch.trace(cov) * torch.eye(d, dtype=feats.dtype))
    weight = torch.stack([precision @ mus[c] for c in range(num_classes)])
    bias = torch.stack([math.log(1 / num_classes) - 0.5 * mus[c] @ precision @ mus[c] for c in range(num_classes)])
    return weight, bias, precision, mus


def _gda_alpha_loop(clip_logits, gda_logits, labels):
    """main_few_shots.py's loop: best_alpha 0.1, best_acc 0, strict improvement."""
    best_acc, best_alpha = 0.0, 0.1
    for alpha in [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]:
        acc = 100.0 * float(((clip_logits + alpha * gda_logits).argmax(1) == labels).float().mean())
        if acc > best_acc:
            best_acc, best_alpha = acc, alpha
    return best_alpha, best_acc


def test_gda_two_classes_by_hand():
    """1-D: rows -3, -1 | 1, 3: means -2, 2, Z = (-1, 1, -1, 1), S = 4/3, (N-1) S + tr S = 16/3, P = 3/16. 2-D with
    correlation: rows (0,0), (2,2) | (3,0), (3,2): means (1,1), (3,1), sum z z^T = [[2, 2], [2, 4]], tr S = 2,
    P = 2 inv([[4, 2], [2, 6]]) = [[0.6, -0.2], [-0.2, 0.4]]. Catches a missing D factor, N for N - 1, a missing
    trace term, a wrong prior or sign."""
    w, b = cf.gda_head(torch.tensor([[-3.0], [-1.0], [1.0], [3.0]]), torch.tensor([0, 0, 1, 1]), 2)
    torch.testing.assert_close(w, torch.tensor([[-3 / 8], [3 / 8]]))
    torch.testing.assert_close(b, torch.full((2,), math.log(0.5) - 3 / 8))
    rows = torch.tensor([[0.0, 0.0], [2.0, 2.0], [3.0, 0.0], [3.0, 2.0]], dtype=torch.float64)
    w, b = cf.gda_head(rows, torch.tensor([0, 0, 1, 1]), 2)
    torch.testing.assert_close(w, torch.tensor([[0.4, 0.2], [1.6, -0.2]], dtype=torch.float64))
    torch.testing.assert_close(b, torch.tensor([math.log(0.5) - 0.3, math.log(0.5) - 2.3], dtype=torch.float64))
    logits = cf.gda_fused_logits(rows, torch.eye(2, dtype=torch.float64), w, b, 0.5)
    torch.testing.assert_close(logits, 100 * rows + 0.5 * (rows @ w.T + b))


@pytest.mark.parametrize("kind", ["caltech", "modelnet"])
def test_gda_matches_the_release_on_real_features(kind, request):
    """Head (weight = P mu_c, bias) to 1e-5 against the plain estimator, on every augmented pass as its own row,
    and the same alpha as the release's loop; float64 in -> float64 out, float32 -> float32. ModelNet40's sample
    has classes without a train cloud: their mean is zero (weight 0, bias log 1/C)."""
    sets = request.getfixturevalue(kind)
    _, _, held, held_labels, text = _flat(sets)
    rows = torch.cat([flat_global(c.global_feats).double() for c in sets["copies"]])
    labels = torch.cat([c.labels for c in sets["copies"]])
    num_classes = text.shape[0]
    w, b = cf.gda_head(rows, labels, num_classes)
    assert w.dtype == b.dtype == torch.float64 and w.shape == (num_classes, rows.shape[1])
    present = torch.bincount(labels, minlength=num_classes) > 0
    ref_w, ref_b, precision, mus = _gda_reference(rows, labels, num_classes) if bool(present.all()) else \
        (None, None, None, None)
    if ref_w is None:  # the reference on the present classes only (C counts all classes in the prior)
        remap = torch.cumsum(present.long(), 0) - 1
        ref_w_p, ref_b_p, precision, _ = _gda_reference(rows, remap[labels], int(present.sum()))
        ref_b_p = ref_b_p - math.log(1 / int(present.sum())) + math.log(1 / num_classes)
        ref_w = torch.zeros_like(w).index_copy_(0, present.nonzero().squeeze(1), ref_w_p)
        ref_b = torch.full_like(b, math.log(1 / num_classes)).index_copy_(0, present.nonzero().squeeze(1), ref_b_p)
        assert not bool(present.all()) and torch.equal(w[~present], torch.zeros_like(w[~present]))
    else:
        torch.testing.assert_close(w, (precision @ mus.T).T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b, ref_b, rtol=1e-5, atol=1e-5)
    clip = 100 * held @ text.T
    gda = cf.gda_logits(held, w, b)
    found = cf.gda_search(clip, gda, held_labels)
    alpha, acc = _gda_alpha_loop(clip, held @ ref_w.T + ref_b, held_labels)
    assert found.params["alpha"] == alpha and found.accuracy == pytest.approx(acc)
    fused = cf.gda_fused_logits(held, text, w, b, alpha)
    assert fused.dtype == torch.float64
    torch.testing.assert_close(fused, clip + alpha * (held @ ref_w.T + ref_b), rtol=1e-5, atol=1e-5)
    w32, b32 = cf.gda_head(rows.float(), labels, num_classes)
    assert w32.dtype == b32.dtype == torch.float32
    assert cf.gda_fused_logits(held.float(), text.float(), w32, b32, alpha).dtype == torch.float32


def test_gda_search_keeps_the_start_alpha_when_nothing_is_right():
    """best_alpha starts at 0.1 and only a strictly better accuracy (from 0) replaces it."""
    base = torch.zeros(3, 2)
    base[:, 1] = 1.0
    result = cf.gda_search(base, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    assert result.params == {"alpha": 0.1} and result.index is None and result.accuracy == 0
    result = cf.gda_search(base, torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0]]), torch.zeros(3, dtype=torch.long))
    assert result.params == {"alpha": 1.0} and result.correct == 1  # first alpha with 1 right: 1 (5 alpha > 1)


# ------------------------------------------------------------------------------------------------ APE


def _ape_criterion_loops(text, keys, key_labels, lambdas, classes):
    """utils.py cal_criterion's four loops (text first, then the class's keys) over `classes`."""
    feats = [torch.cat([text[c:c + 1], keys[key_labels == c]]) for c in classes]
    sim, count = torch.zeros(text.shape[1], dtype=text.dtype), 0
    for i in range(len(classes)):
        for j in range(len(classes)):
            if i != j:
                for m in range(feats[i].shape[0]):
                    for n in range(feats[j].shape[0]):
                        sim += feats[i][m] * feats[j][n]
                        count += 1
    sub_text = text[list(classes)]
    return -lambdas[0] * sim / count + lambdas[1] * torch.var(sub_text.T, dim=1)


def _ape_reference(text, keys, key_labels, feat_num, lambdas, base, feats, labels, grids):
    """APE's training-free path written plainly: top-Q channels, re-normalised keys / text / features, div with
    dense one-hot L, and the three loops (beta, alpha, gamma) with `E @ (L * exp(div * gamma))` per grid point."""
    num_classes = text.shape[0]
    feats_c = torch.cat([text[None], torch.stack([keys[key_labels == c] for c in range(num_classes)], 1)], 0)
    sims = torch.zeros(text.shape[1], dtype=text.dtype)
    for i in range(num_classes):  # class pairs, every sample pair of the two at once
        for j in range(num_classes):
            if i != j:
                sims += (feats_c[:, i, None, :] * feats_c[None, :, j, :]).sum((0, 1))
    criterion = -lambdas[0] * sims / (num_classes * (num_classes - 1) * feats_c.shape[0] ** 2) + \
        lambdas[1] * torch.var(text.T, dim=1)
    indices = torch.topk(criterion, feat_num).indices
    nk = keys[:, indices] / keys[:, indices].norm(dim=-1, keepdim=True)
    nt = text[:, indices] / text[:, indices].norm(dim=-1, keepdim=True)
    nf = feats[:, indices] / feats[:, indices].norm(dim=-1, keepdim=True)
    values = F.one_hot(key_labels, num_classes).to(text.dtype)
    key_logits = (nk @ nt.T).softmax(1)
    div = torch.sum(values * torch.log2((values + 1e-6) / (key_logits + 1e-6)), dim=1)[:, None]
    affinity = nf @ nk.T
    counts = torch.zeros(len(grids["beta"]), len(grids["alpha"]), len(grids["gamma"]), dtype=torch.long)
    best, chosen = 0, (0, 0, 0)
    for a, beta in enumerate(grids["beta"]):
        for b, alpha in enumerate(grids["alpha"]):
            for c, gamma in enumerate(grids["gamma"]):
                soft = values * (div * gamma).exp()
                logits = base + ((-1) * (beta - beta * affinity)).exp() @ soft * alpha
                counts[a, b, c] = int((logits.argmax(1) == labels).sum())
                if counts[a, b, c] > best:
                    best, chosen = int(counts[a, b, c]), (beta, alpha, gamma)
    return {"criterion": criterion, "indices": indices, "div": div[:, 0], "counts": counts, "chosen": chosen,
            "affinity": affinity, "values": values}


def test_ape_criterion_is_the_release_pair_loop():
    """S over ordered pairs of samples of different classes (text + keys), V the unbiased text variance, on 12
    real classes; a class with fewer keys still weighs each pair once. Catches counting same-class pairs, a biased
    variance, a wrong sign or lambda order, or averaging per class instead of per pair."""
    g = torch.Generator().manual_seed(3)
    text = F.normalize(torch.randn(5, 16, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 4, 3, 1])  # unequal class sizes
    keys = F.normalize(torch.randn(labels.numel(), 16, generator=g, dtype=torch.float64), dim=-1)
    found = cf.ape_criterion(text, keys, labels, (0.3, 0.7))
    torch.testing.assert_close(found, _ape_criterion_loops(text, keys, labels, (0.3, 0.7), range(5)))


def test_ape_criterion_on_real_features(caltech):
    shots, labels, _, _, text = _flat(caltech)
    keys = _tip_keys(caltech)
    classes = list(range(12))
    mask = torch.isin(labels, torch.tensor(classes))
    found = cf.ape_criterion(text[classes], keys[mask], labels[mask], (0.5, 0.5))
    torch.testing.assert_close(found, _ape_criterion_loops(text, keys, labels, (0.5, 0.5), classes),
                               rtol=1e-5, atol=1e-7)


APE_TEST_GRID = cf.ape_grids((7, 7, 1), (10, 5, 4))  # Caltech101's scales, fewer steps for the plain loops


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ape_matches_the_release_on_real_features(caltech, dtype):
    """Selected channels, div, affinities and the whole count grid equal the plain loops; the chosen (beta, alpha,
    gamma) are the release's and the logits there agree to 1e-5. Keys arrive unsorted (shuffled) as a cache may."""
    _, labels, held, held_labels, text = _flat(caltech, dtype)
    keys = _tip_keys(caltech, dtype)
    perm = torch.randperm(keys.shape[0], generator=torch.Generator().manual_seed(0))
    keys, labels = keys[perm], labels[perm]
    base = 100 * held @ text.T
    ref = _ape_reference(text.double(), keys.double(), labels, 20, (0.5, 0.5), base.double(), held.double(),
                         held_labels, APE_TEST_GRID)
    cache = cf.ape_fit(text, keys, labels, 20, (0.5, 0.5))
    assert cache.keys.dtype == cache.div.dtype == dtype
    assert torch.equal(cache.indices, ref["indices"])
    order = torch.sort(labels, stable=True).indices  # the cache keeps its keys sorted by class
    torch.testing.assert_close(cache.div.double(), ref["div"][order], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cf.ape_affinity(cache, held).double(), ref["affinity"][:, order], rtol=1e-5,
                               atol=1e-5)
    result = cf.ape_search(base, cache, held, held_labels, APE_TEST_GRID)
    assert (result.params["beta"], result.params["alpha"], result.params["gamma"]) == ref["chosen"]
    if dtype == torch.float64:
        assert torch.equal(result.counts, ref["counts"])
    beta, alpha, gamma = ref["chosen"]
    logits = cf.ape_logits(base, cache, held, alpha, beta, gamma)
    assert logits.dtype == dtype
    expected = base.double() + ((-1) * (beta - beta * ref["affinity"])).exp() @ (
        ref["values"] * (ref["div"][:, None] * gamma).exp()) * alpha
    torch.testing.assert_close(logits.double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_ape_grids_and_released_settings():
    """The grids' exact points (main.py: beta and alpha from 0.1 in steps (s - 0.1) / n, gamma from 0 in s / n) and
    the per-dataset configs, transcribed here separately from yangyangyang127/APE configs/*.yaml."""
    from calip3d.fewshot.closed_form_methods import APE_RELEASED, ape_released

    grids = cf.ape_grids((7, 7, 0.5), (200, 20, 5))  # ImageNet's
    assert len(grids["beta"]) == 200 and grids["beta"][:2] == pytest.approx((0.1, 0.1 + 6.9 / 200))
    assert grids["beta"][-1] == pytest.approx(0.1 + 199 * 6.9 / 200)
    assert grids["alpha"][-1] == pytest.approx(0.1 + 19 * 6.9 / 20)
    assert grids["gamma"] == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4))
    configs = {  # scale, step, init alpha, Q, lambdas
        "imagenet": ((7, 7, 0.5), (200, 20, 5), 2, 500, (0.7, 0.3)),
        "caltech101": ((7, 7, 1), (200, 20, 20), 1, 800, (0.5, 0.5)),
        "dtd": ((7, 7, 1), (200, 20, 20), 3, 400, (0.5, 0.5)),
        "eurosat": ((30, 5, 1.5), (200, 20, 20), 1, 700, (0.9, 0.1)),
        "fgvc_aircraft": ((20, 10, 1), (200, 20, 20), 5, 800, (0.1, 0.9)),
        "food101": ((7, 7, 1), (200, 20, 20), 0.8, 700, (0.3, 0.7)),
        "oxford_flowers": ((7, 7, 1), (200, 20, 20), 3, 700, (0.4, 0.6)),
        "oxford_pets": ((7, 7, 1), (200, 20, 20), 2, 800, (0.7, 0.3)),
        "stanford_cars": ((10, 7, 1), (200, 20, 20), 1, 500, (0.6, 0.4)),
        "sun397": ((10, 7, 1), (200, 20, 20), 1, 800, (0.7, 0.3)),
        "ucf101": ((10, 7, 1.5), (200, 20, 20), 2, 700, (0.3, 0.7)),
    }
    assert set(APE_RELEASED) == set(configs)
    for dataset, (scale, step, alpha, q, lambdas) in configs.items():
        config, source = ape_released(dataset)
        assert (config.search_scale, config.search_step, config.init_alpha, config.feat_num, config.lambdas) == \
            (scale, step, alpha, q, lambdas), dataset
        assert (config.init_beta, config.init_gamma, config.augment_epoch) == (1, 0.1, 10)
        assert source.startswith("yangyangyang127/APE configs/") and "stand-in" not in source
    config, source = ape_released("modelnet40")
    assert config == APE_RELEASED["imagenet"] and "no APE config for modelnet40" in source
    assert ape_released("fgvc_aircraft")[1].startswith("yangyangyang127/APE configs/fgvc.yaml")


# ------------------------------------------------------------------------------------------------ Tip-X


def _kl_loops(p, q):
    """KL(p_m || q_n) for every pair, one pair at a time."""
    out = torch.zeros(p.shape[0], q.shape[0], dtype=p.dtype)
    for m in range(p.shape[0]):
        for n in range(q.shape[0]):
            out[m, n] = torch.sum(p[m] * (p[m].log() - q[n].log()))
    return out


def _kl_release(p, q):
    """tipx.py get_kl_divergence_sims' arithmetic (every test row repeated against every support row), all rows."""
    repeated = torch.repeat_interleave(p, q.shape[0], dim=0)
    return (repeated * (repeated.log() - torch.cat([q] * p.shape[0]).log())).sum(-1).view(p.shape[0], -1)


def _tipx_reference(keys, key_labels, text, base, feats, labels, grids, target=None):
    """tipx.py's path: distributions at T = 0.5, KL, scale_ to the affinities' range (`target`: another set's),
    negated @ L, the three loops (alpha, beta, gamma) with dense one-hot products."""
    values = F.one_hot(key_labels, text.shape[0]).to(text.dtype)
    p = ((feats @ text.T) / 0.5).softmax(-1)
    q = ((keys @ text.T) / 0.5).softmax(-1)
    kl = _kl_release(p, q)
    affinity = feats @ keys.T
    t_lo, t_hi = (affinity.min(), affinity.max()) if target is None else target
    scaled = (kl - kl.min()) / (kl.max() - kl.min()) * (t_hi - t_lo) + t_lo
    kl_logits = (-scaled) @ values
    counts = torch.zeros(len(grids["alpha"]), len(grids["beta"]), len(grids["gamma"]), dtype=torch.long)
    best, chosen = 0, (0, 0, 0)
    for a, alpha in enumerate(grids["alpha"]):
        for b, beta in enumerate(grids["beta"]):
            cache = ((-1) * (beta - beta * affinity)).exp() @ values
            for c, gamma in enumerate(grids["gamma"]):
                counts[a, b, c] = int(((base + kl_logits * gamma + cache * alpha).argmax(1) == labels).sum())
                if counts[a, b, c] > best:
                    best, chosen = int(counts[a, b, c]), (alpha, beta, gamma)
    return {"kl": kl, "kl_logits": kl_logits, "counts": counts, "chosen": chosen, "affinity": affinity,
            "values": values}


TIPX_TEST_GRID = {k: v[::n] for (k, v), n in zip(cf.tipx_grids().items(), (4, 25, 8))}  # 5 x 8 x 7 of its points


def test_tipx_grids_are_the_release_grids():
    """alpha 20 points 0.1 .. 47.505, beta 200 points 1 .. 49.755, gamma 50 points 0.1 .. 29.402 (tipx.py:
    i (scale - start) / steps + start)."""
    grids = cf.tipx_grids()
    assert list(grids) == ["alpha", "beta", "gamma"]  # the release's loop order
    assert [len(v) for v in grids.values()] == [20, 200, 50]
    assert (grids["alpha"][0], grids["alpha"][-1]) == pytest.approx((0.1, 47.505))
    assert (grids["beta"][0], grids["beta"][-1]) == pytest.approx((1.0, 49.755))
    assert (grids["gamma"][0], grids["gamma"][-1]) == pytest.approx((0.1, 29.402))
    assert grids["beta"][1] - grids["beta"][0] == pytest.approx(49 / 200)


@pytest.mark.parametrize("kind", ["caltech", "modelnet"])
def test_tipx_kl_matrix_is_the_pairwise_kl(kind, request):
    """One matmul equals the release's per-pair arithmetic on every pair, and an explicit loop on 6 x all pairs."""
    sets = request.getfixturevalue(kind)
    _, labels, held, _, text = _flat(sets)
    cache = cf.tipx_fit(_tip_keys(sets), labels, text)
    p = cf.text_distributions(held, text)
    q = cf.text_distributions(cache.keys, text)
    found = cf.tipx_kl(cache, held)
    torch.testing.assert_close(found, _kl_release(p, q), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(found[:6], _kl_loops(p[:6], q), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(cf.kl_divergence_matrix(p, q), found)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["caltech", "modelnet"])
def test_tipx_matches_the_release_on_real_features(kind, dtype, request):
    """kl_logits (own ranges), the whole count grid and the chosen (alpha, beta, gamma) equal the plain loops;
    logits there to 1e-5. ModelNet40's keys miss 4 classes (the padded class sums)."""
    sets = request.getfixturevalue(kind)
    _, labels, held, held_labels, text = _flat(sets, dtype)
    keys = _tip_keys(sets, dtype)
    base = 100 * held @ text.T
    ref = _tipx_reference(keys.double(), labels, text.double(), base.double(), held.double(), held_labels,
                          TIPX_TEST_GRID)
    cache = cf.tipx_fit(keys, labels, text)
    kl_logits = cf.tipx_kl_logits(cache, held)
    assert kl_logits.dtype == dtype
    scale = float(ref["kl_logits"].abs().max())
    torch.testing.assert_close(kl_logits.double(), ref["kl_logits"], rtol=1e-5, atol=1e-5 * scale)
    result = cf.tipx_search(base, cache, held, kl_logits, held_labels, TIPX_TEST_GRID)
    assert (result.params["alpha"], result.params["beta"], result.params["gamma"]) == ref["chosen"]
    if dtype == torch.float64:
        assert torch.equal(result.counts, ref["counts"])
    alpha, beta, gamma = ref["chosen"]
    logits = cf.tipx_logits(base, kl_logits, cf.tipx_cache_logits(cache, held @ cache.keys.T, beta), alpha, gamma)
    expected = base.double() + ref["kl_logits"] * gamma + ((-1) * (beta - beta * ref["affinity"])).exp() @ \
        ref["values"] * alpha
    torch.testing.assert_close(logits.double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_tipx_rescaling_range_is_a_parameter(caltech):
    """None: the set's own KL and affinity ranges; a given target range (the release's val range at test time) is
    used as given: min KL -> the target's low end, max -> its high end."""
    _, labels, held, _, text = _flat(caltech)
    cache = cf.tipx_fit(_tip_keys(caltech), labels, text)
    (kl_lo, kl_hi), (a_lo, a_hi) = cf.tipx_ranges(cache, held)
    kl = cf.tipx_kl(cache, held)
    assert (kl_lo, kl_hi) == (float(kl.min()), float(kl.max()))
    own = cf.tipx_kl_logits(cache, held)
    torch.testing.assert_close(own, cf.tipx_kl_logits(cache, held, (a_lo, a_hi), (kl_lo, kl_hi)))
    given = cf.tipx_kl_logits(cache, held, (0.0, 1.0))
    assert not torch.allclose(given, own)
    ref = _tipx_reference(cache.keys, cache.segments.labels, text, 100 * held @ text.T, held, caltech["held"].labels,
                          {"alpha": (1.0,), "beta": (1.0,), "gamma": (1.0,)}, target=(0.0, 1.0))
    torch.testing.assert_close(given, ref["kl_logits"])
    scaled = cf.minmax_rescale(kl, (2.0, 3.0))
    assert (float(scaled.min()), float(scaled.max())) == pytest.approx((2.0, 3.0))


# ------------------------------------------------------------------------------------------------ search core


def test_grid_counts_equal_the_dense_loop_with_ties_and_unequal_classes():
    """Integer-valued logits (many exact ties: argmax's first index must win), one and two inner parameters, and
    class sums with unequal and empty classes equal the dense one-hot product."""
    g = torch.Generator().manual_seed(5)
    base = torch.randint(0, 3, (400, 7), generator=g).double()
    e, k = (torch.randint(0, 2, (400, 7), generator=g).double() for _ in range(2))
    labels = torch.randint(0, 7, (400,), generator=g)
    alphas = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 7.5, 9.0, 11.0, 15.0], dtype=torch.float64)
    dense = torch.stack([((base + e * a).argmax(1) == labels).sum() for a in alphas.tolist()])
    assert torch.equal(cf._grid_correct(base, [e], [alphas], labels)[0], dense)
    gammas = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)
    dense = torch.tensor([[int((((base + k * gm) + e * a).argmax(1) == labels).sum()) for a in alphas.tolist()]
                          for gm in gammas.tolist()])
    assert torch.equal(cf._grid_correct(base, [k, e], [gammas, alphas], labels)[0], dense)
    groups = torch.arange(400) % 3  # rows counted per group
    found = cf._grid_correct(base, [e], [alphas], labels, groups, 3)
    for grp in range(3):
        rows = groups == grp
        dense = torch.stack([((base[rows] + e[rows] * a).argmax(1) == labels[rows]).sum() for a in alphas.tolist()])
        assert torch.equal(found[grp], dense)
    key_labels = torch.tensor([0, 0, 0, 2, 2, 3, 5, 5, 5, 5, 6])  # classes 1 and 4 empty
    segments = cf.Segments(key_labels, 7)
    values = torch.randn(3, key_labels.numel(), generator=g)
    torch.testing.assert_close(segments.class_sums(values), values @ F.one_hot(key_labels, 7).float())
    uniform = cf.Segments(torch.arange(7).repeat_interleave(2), 7)
    assert uniform.per_class == 2 and segments.per_class is None


def test_first_best_is_the_first_maximum_in_loop_order():
    counts = torch.tensor([[[1, 3], [3, 0]], [[3, 2], [0, 0]]])
    result = cf.first_best(counts, {"a": (1, 2), "b": (3, 4), "c": (5, 6)}, {"a": 0, "b": 0, "c": 0})
    assert result.index == (0, 0, 1) and result.params == {"a": 1.0, "b": 3.0, "c": 6.0} and result.correct == 3
    none = cf.first_best(torch.zeros(2, 2, 2, dtype=torch.long), {"a": (1, 2), "b": (3, 4), "c": (5, 6)},
                         {"a": 0, "b": 0, "c": 0})
    assert none.index is None and none.params == {"a": 0, "b": 0, "c": 0}


# ------------------------------------------------------------------------------------------------ methods


def _settings(dataset: str, protocol: str = "honest", base: str | None = None, augment: int = 2) -> MethodSettings:
    return MethodSettings(FewShotConfig(dataset, protocol=protocol, base=base), dataset, dataset == "caltech101",
                          (1.0, 2.0, 0.1), Selection("betas", "given", "--betas"), 0.5, "cpu", augment)


@pytest.mark.parametrize("base", ["clip", "calip"])
@pytest.mark.parametrize("name", NEW_METHODS)
def test_method_logits_are_base_plus_the_released_term(name, base, caltech):
    """Fitted on the shots' copies with the val items as val shots: `logits` = base_logits (CLIP or CALIP with the
    run's betas) + the method's term at the chosen values, the search made on those base logits; hyperparameters
    record every value and, for calip, that the combination has no published counterpart."""
    method = METHODS[name](_settings("caltech101", base=base), None)
    method.fit(FitData(caltech["shots"], caltech["copies"], caltech["text"], {VAL_SHOTS: caltech["held"]}))
    batch = next(caltech["held"].batches(64))
    clip, calip = zero_shot_logits(batch.global_feats, batch.spatial_feats, caltech["text"], (1.0, 2.0, 0.1), 0.5, None)
    zero = calip if base == "calip" else clip
    feats, text = flat_global(batch.global_feats), caltech["text"]
    hp = method.hyperparameters()
    if name == "gda":
        rows = torch.cat([flat_global(c.global_feats) for c in caltech["copies"]])
        w, b = cf.gda_head(rows, torch.cat([c.labels for c in caltech["copies"]]), text.shape[0])
        term = hp["alpha"] * (feats @ w.T + b)
        assert hp["rows"] == rows.shape[0] == 400 and hp["alpha"] in cf.GDA_ALPHAS
    elif name == "ape":
        cache = cf.ape_fit(text, _tip_keys(caltech, torch.float32), caltech["shots"].labels, 32, (0.5, 0.5))
        term = cf.ape_cache_logits(cache, cf.ape_affinity(cache, feats), hp["beta"], hp["gamma"]) * hp["alpha"]
        assert (hp["feat_num"], hp["feat_num_released"], hp["lambdas"]) == (32, 800, [0.5, 0.5])
    else:
        cache = cf.tipx_fit(_tip_keys(caltech, torch.float32), caltech["shots"].labels, text)
        term = cf.tipx_kl_logits(cache, feats, tuple(hp["affinity_range"]), tuple(hp["kl_range"])) * hp["gamma"] + \
            cf.tipx_cache_logits(cache, feats @ cache.keys.T, hp["beta"]) * hp["alpha"]
        assert hp["kl_range_from"] == hp["affinity_range_from"] == "the val shots"
    torch.testing.assert_close(method.logits(batch, text), zero + term, rtol=1e-5, atol=1e-4)
    note = hp["base"]
    assert note.startswith(base) and (("no published counterpart" in note) == (base == "calip"))
    assert ("betas [1.0, 2.0, 0.1]" in note) == (base == "calip")
    assert hp["augment"] == 2 and hp["search_samples"] == len(caltech["held"])
    assert method.val_top1 is not None


def _argv(model, root, out: Path, dataset: str, *extra: str) -> list[str]:
    limit = ["--limit", "60"] if dataset == "caltech101" else ["--views", "6"]
    return ["--dataset", dataset, "--data-root", str(root), "--backbone", str(model[0]), "--pretrained",
            str(model[1]), "--shots", "1", "--seed", "1", "--augment", "1", "--workers", "0", "--split-dir",
            str(out.parent / "splits"), "--output", str(out), *limit, *extra]


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokens")


def _thin_val(monkeypatch):
    """Keep the release runs cheap: Caltech101's val split cut to its first 3 items per class (300 of 1649)."""
    from calip3d.fewshot import pipeline

    real_load = pipeline.FewShotData.load

    def load(config):
        data = real_load(config)
        if data.val is not None:
            data.val = data.val.subset(_per_class(data.val.labels, 3))
        return data

    monkeypatch.setattr(pipeline.FewShotData, "load", load)


@pytest.mark.parametrize("base", ["clip", "calip"])
@pytest.mark.parametrize("protocol", ["honest", "release"])
@pytest.mark.parametrize("name", NEW_METHODS)
@pytest.mark.parametrize("dataset", ["caltech101", "modelnet40"])
def test_end_to_end_both_protocols_and_bases(dataset, name, protocol, base, request, tokens_dir, tmp_path,
                                             monkeypatch, capsys):
    """`calip3d fewshot --method gda|ape|tip-x`: the search is on the val shots (honest), the val split (release,
    Caltech101) or the test split (release, ModelNet40, which has no val split: ORACLE); honest never reads the
    test split and is never ORACLE; the base is recorded; the printed table carries every label."""
    from calip3d.cli.fewshot import main as fewshot_main

    model = request.getfixturevalue("varied_images" if dataset == "caltech101" else "varied_points")
    root = request.getfixturevalue("shared_data")
    _thin_val(monkeypatch)
    out = tmp_path / "out.json"
    assert fewshot_main(_argv(model, root, out, dataset, "--method", name, "--protocol", protocol, "--base", base,
                              "--cache-tokens", str(tokens_dir))) == 0
    result = json.loads(out.read_text())
    found = [(s["what"], s["source"], s["oracle"]) for s in result["selections"]]
    search = {"gda": "alpha", "ape": "beta, alpha, gamma", "tip-x": "alpha, beta, gamma"}[name]
    if protocol == "honest":
        expected = [(search, "val shots", False)]
    elif dataset == "caltech101":
        expected = [(search, "val split", False)]
    else:
        expected = [(search, "test split", True)]
    if name == "tip-x":
        expected.append(("KL rescaling range", "val shots" if protocol == "honest" else "test split", False))
    assert found == expected
    assert result["oracle"] == (protocol == "release" and dataset == "modelnet40")
    table = capsys.readouterr().out
    for selection in result["selections"]:
        assert selection["label"] in table
        if selection["source"] in ("val split", "test split"):
            assert selection["why"].startswith("as released: ")
    assert ("ORACLE" in result["selections"][0]["label"]) == result["oracle"]
    hp = result["hyperparameters"]
    assert hp["base"].startswith(base) and ("no published counterpart" in hp["base"]) == (base == "calip")
    assert hp["augment"] == 1 and result["ignored_flags"] == []
    assert result["num_samples"] == (60 if dataset == "caltech101" else 29)
    assert math.isfinite(result["test"]["top1"])
    if name == "tip-x":
        where = {"honest": "the val shots", "release": "the test split (as released)" if dataset == "caltech101"
                 else "the test split"}[protocol]
        assert hp["kl_range_from"] == where
    if name == "ape" and dataset == "modelnet40":
        assert "no APE config for modelnet40" in hp["config"]


def test_registry_and_help_list_the_methods(capsys):
    """The three are registered (in this order), list under --method, read --base and
    --augment, and take the clip / pointclip / calip bases."""
    from calip3d.cli.fewshot import main as fewshot_main

    assert [m for m in METHODS if m in NEW_METHODS] == list(NEW_METHODS)
    for name in NEW_METHODS:
        cls = METHODS[name]
        assert {"base", "augment"} <= cls.OPTIONS and cls.BASES == ("clip", "pointclip", "calip")
        assert cls.DEFAULT_BASE == "clip" and cls.default_augment("caltech101") == 10
    with pytest.raises(SystemExit):
        fewshot_main(["--help"])
    help_text = capsys.readouterr().out
    assert "gda,ape,tip-x" in help_text.replace(" ", "")
