"""Few-shot training loop, checkpoints and baselines on small separable features (D=32, K=5)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

from calip3d.attention.parametric import ParametricCALIP
from calip3d.errors import CalipError
from calip3d.fewshot.baselines import (
    COOP_C_GRID,
    LinearProbe,
    PointCLIPAdapter,
    TipAdapter,
    TipAdapterF,
    fit_logistic_regression,
    tip_grid,
)
from calip3d.fewshot.training import (
    TrainConfig,
    load_checkpoint,
    predict,
    save_checkpoint,
    smooth_cross_entropy,
    train_classifier,
)
from calip3d.metrics import topk_accuracy

D, K, TOKENS = 32, 5, 4


CENTRES = F.normalize(torch.randn(K, D, generator=torch.Generator().manual_seed(100)), dim=-1)
# Weak text features (a little of the class centre plus a random direction): zero-shot is poor (~60%).
TEXT = F.normalize(0.2 * CENTRES + F.normalize(torch.randn(K, D, generator=torch.Generator().manual_seed(101)),
                                               dim=-1), dim=-1)


pytestmark = pytest.mark.usefixtures("one_thread")  # small matrices: no oversubscription


def _unit_noise(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def _split(shots: int, seed: int, views: int | None = None, spread: float = 0.5):
    """`shots` samples per class around the class centres (global features at distance `spread`, spatial tokens
    at 1.5 * spread). Returns global, spatial, labels, text."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(K).repeat_interleave(shots)
    lead = (labels.numel(),) if views is None else (labels.numel(), views)
    centre = CENTRES[labels].view(labels.numel(), *([1] * (len(lead) - 1)), D)
    glob = F.normalize(centre + spread * _unit_noise((*lead, D), g), dim=-1)
    spatial = F.normalize(centre.unsqueeze(-2) + 1.5 * spread * _unit_noise((*lead, TOKENS, D), g), dim=-1)
    return glob, spatial, labels, TEXT


def _train_calip_fs(seed: int = 0, epochs: int = 15, shots: int = 4, **kw):
    glob, spatial, labels, text = _split(shots, seed=1)
    vglob, vspatial, vlabels, _ = _split(4, seed=2)
    module = ParametricCALIP(D, hidden=kw.pop("hidden", None))
    config = TrainConfig(epochs=epochs, lr=kw.pop("lr", 5e-3), batch_size=8, weight_decay=1e-4, label_smoothing=0.1,
                         seed=seed, **kw)
    result = train_classifier(module, (glob, spatial), labels, (vglob, vspatial), vlabels, text, config,
                              progress=False)
    return module, result


@pytest.mark.parametrize("shots", [1, 2, 4])
def test_calip_fs_training_lowers_the_loss(shots):
    module, result = _train_calip_fs(shots=shots, epochs=20)
    first, last = result.history[1], result.history[-1]
    assert last.loss < 0.8 * first.loss
    assert [r.epoch for r in result.history] == list(range(21))
    assert result.history[-1].train_acc >= result.history[0].train_acc


def test_calip_fs_on_point_cloud_views_trains_per_view_maps_and_weights():
    views = 3
    glob, spatial, labels, text = _split(2, seed=1, views=views)
    module = ParametricCALIP(D, num_views=views, shared_views=False, hidden=4, learn_betas=True,
                             learn_view_weights=True, view_weights=[1 / views] * views)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    result = train_classifier(module, (glob, spatial), labels, None, None, text,
                              TrainConfig(epochs=10, lr=2e-2, batch_size=5, seed=0, eval_batch_size=3), progress=False)
    assert result.history[-1].loss < 0.8 * result.history[1].loss and result.best_epoch == 10
    for name in ("view_weights", "betas", "pre_visual.up", "pre_text.up", "post_text.up", "post_visual.up"):
        assert not torch.equal(module.state_dict()[name], start[name]), name
    assert not torch.equal(module.post_text.up[0], module.post_text.up[1])  # one map per view


def test_training_is_reproducible_by_seed():
    m1, r1 = _train_calip_fs(seed=3, hidden=4)
    m2, r2 = _train_calip_fs(seed=3, hidden=4)
    assert r1.history == r2.history and r1.best_epoch == r2.best_epoch
    for (name, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), name
    _, r3 = _train_calip_fs(seed=4, hidden=4)
    assert r3.history != r1.history  # another seed shuffles differently


def test_best_on_val_epoch_is_kept():
    glob, spatial, labels, _ = _split(4, seed=1)
    vglob, vspatial, vlabels, _ = _split(4, seed=2)
    # The text of class k leans towards the centre of class k-1, so zero-shot mostly predicts y + 1: good on
    # these shifted val labels at epoch 0, and training towards the true labels makes it worse.
    text = F.normalize(0.5 * CENTRES.roll(1, dims=0) + TEXT, dim=-1)
    vlabels_shifted = (vlabels + 1) % K
    module = ParametricCALIP(D)
    untrained = {k: v.clone() for k, v in module.state_dict().items()}
    result = train_classifier(module, (glob, spatial), labels, (vglob, vspatial), vlabels_shifted, text,
                              TrainConfig(epochs=8, lr=3e-2, batch_size=10, seed=0), progress=False)
    accs = [r.val_acc for r in result.history]
    assert accs[0] >= 90.0 and accs[-1] < accs[0] - 20
    assert result.best_epoch == 0 and result.best_val_acc == accs[0]
    assert topk_accuracy(predict(module, (vglob, vspatial), text), vlabels_shifted) == accs[0]
    for name, value in module.state_dict().items():
        assert torch.equal(value, untrained[name]) and torch.equal(value, result.state_dict[name]), name


def test_best_epoch_is_the_first_maximum_of_the_history():
    module, result = _train_calip_fs(epochs=8)
    accs = [r.val_acc for r in result.history]
    assert result.best_epoch == accs.index(max(accs)) and result.best_val_acc == max(accs)
    for name, value in module.state_dict().items():
        assert torch.equal(value, result.state_dict[name]), name


def test_without_val_the_last_epoch_is_kept():
    glob, spatial, labels, text = _split(2, seed=1)
    module = ParametricCALIP(D, hidden=2)
    result = train_classifier(module, (glob, spatial), labels, None, None, text,
                              TrainConfig(epochs=3, lr=1e-3, batch_size=4), progress=False)
    assert result.best_epoch == 3 and math.isnan(result.best_val_acc)


def test_bad_training_settings_raise_calip_error():
    glob, spatial, labels, text = _split(2, seed=1)
    module = ParametricCALIP(D)
    with pytest.raises(CalipError, match="optimizer"):
        TrainConfig(epochs=1, optimizer="adam")
    with pytest.raises(CalipError, match="labels"):
        train_classifier(module, (glob, spatial), labels[:-1], None, None, text, TrainConfig(epochs=1),
                         progress=False)
    with pytest.raises(CalipError, match="epochs"):
        TrainConfig(epochs=0)


def test_checkpoint_round_trip_and_mismatches(tmp_path):
    module, _ = _train_calip_fs(epochs=2)
    meta = {"backbone": "RN50", "weights": "sha256:abc", "classnames": ["a", "b", "c", "d", "e"],
            "dataset": "toy", "views": 1, "shots": 4, "seed": 0}
    path = save_checkpoint(tmp_path / "sub" / "fs.pt", module, meta)
    state = load_checkpoint(path, meta)
    assert state["meta"] == meta and state["config"] == module.describe()
    clone = ParametricCALIP.from_config(state["config"])
    load_checkpoint(path, {"backbone": "RN50"}, module=clone)
    for name, value in module.state_dict().items():
        assert torch.equal(clone.state_dict()[name], value), name

    with pytest.raises(CalipError, match="backbone: the checkpoint has 'RN50', expected 'ViT-B-16'"):
        load_checkpoint(path, {**meta, "backbone": "ViT-B-16"})
    with pytest.raises(CalipError, match="classnames: entry 2 is 'c' in the checkpoint, expected 'x'"):
        load_checkpoint(path, {**meta, "classnames": ["a", "b", "x", "d", "e"]})
    with pytest.raises(CalipError, match="classnames: the checkpoint has 5 entries, expected 2"):
        load_checkpoint(path, {"classnames": ["a", "b"]})
    with pytest.raises(CalipError, match="hidden"):
        load_checkpoint(path, meta, module=ParametricCALIP(D, hidden=2))
    with pytest.raises(CalipError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CalipError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CalipError, match="plain values"):
        save_checkpoint(tmp_path / "bad.pt", module, {"x": object()})


# ------------------------------------------------------------------------------------------------ baselines


def test_tip_adapter_with_alpha_zero_is_zero_shot_clip():
    glob, _, labels, text = _split(2, seed=1)
    tip = TipAdapter().fit(glob, labels, text)
    query, _, _, _ = _split(3, seed=5)
    torch.testing.assert_close(tip.logits(query, alpha=0.0), 100.0 * query @ text.t())


def test_tip_adapter_beats_zero_shot_and_search_is_the_first_grid_maximum():
    glob, _, labels, text = _split(4, seed=1)
    vglob, _, vlabels, _ = _split(6, seed=2)
    tglob, _, tlabels, _ = _split(20, seed=3)
    # the search scales of Tip-Adapter's FGVC / DTD configs (alpha up to 30, beta up to 13)
    tip = TipAdapter(alpha_scale=30, beta_scale=13, beta_steps=12, alpha_steps=6)
    tip = tip.fit(glob, labels, text, vglob, vlabels)
    zero_shot = topk_accuracy(100.0 * tglob @ text.t(), tlabels)
    assert zero_shot < 70 and topk_accuracy(tip.logits(tglob), tlabels) > zero_shot + 25

    best = (-1.0, None, None)  # the official loop: beta outer, alpha inner, strict improvement
    for beta in tip_grid(13.0, 12):
        for alpha in tip_grid(30.0, 6):
            acc = topk_accuracy(tip.logits(vglob, alpha=alpha, beta=beta), vlabels)
            if acc > best[0]:
                best = (acc, alpha, beta)
    assert (tip.search_result.alpha, tip.search_result.beta) == pytest.approx(best[1:])
    assert tip.search_result.accuracy == pytest.approx(best[0])
    assert tip_grid(7.0, 200)[:2] == pytest.approx([0.1, 0.1 + 6.9 / 200])


def test_tip_adapter_f_learns_keys_and_keeps_best_on_val():
    glob, _, labels, text = _split(4, seed=1)
    vglob, _, vlabels, _ = _split(4, seed=2)
    noise = 0.05 * torch.randn(glob.shape, generator=torch.Generator().manual_seed(0))
    augmented = torch.stack([glob, F.normalize(glob + noise, dim=-1)])  # [A=2, M, D] augmented copies
    tip = TipAdapterF(alpha=10.0, alpha_scale=30, beta_scale=13, beta_steps=10, alpha_steps=5)
    tip.fit(augmented, labels, text, select=(vglob, vlabels), search=(vglob, vlabels),
            train=replace(TipAdapterF.TRAIN, epochs=10, lr=1e-2, batch_size=8))
    result = tip.train_result
    accs = [r.val_acc for r in result.history]
    assert result.best_epoch == accs.index(max(accs)) > 0 and max(accs) > accs[0]
    assert not torch.allclose(tip.keys, F.normalize(augmented.mean(0), dim=-1))
    assert topk_accuracy(tip.logits(vglob), vlabels) == tip.search_result.accuracy


def test_linear_probe_separable_and_c_from_the_search():
    glob, _, labels, _ = _split(4, seed=1, spread=0.3)
    vglob, _, vlabels, _ = _split(4, seed=2, spread=0.3)
    tglob, _, tlabels, _ = _split(10, seed=3, spread=0.3)
    probe = LinearProbe(refine_steps=2, max_iter=200).fit(glob, labels, vglob, vlabels)
    assert topk_accuracy(probe.logits(tglob), tlabels) >= 98.0
    tried = [c for c, _ in probe.search_history]
    assert probe.C in tried and set(COOP_C_GRID) <= set(tried) and len(tried) <= len(COOP_C_GRID) + 4
    coarse = LinearProbe(refine_steps=0, max_iter=100).fit(glob, labels, vglob, vlabels)
    assert coarse.C in COOP_C_GRID
    with pytest.raises(CalipError, match="validation"):
        LinearProbe().fit(glob, labels)


def test_logistic_regression_matches_scipy_on_the_same_objective():
    glob, _, labels, _ = _split(3, seed=1, spread=1.5)
    x, y, c = glob.double(), labels, 0.5
    w, b = fit_logistic_regression(x, y, K, C=c, tol=1e-10)

    def objective(theta):
        wt = torch.from_numpy(theta[: K * D].reshape(K, D))
        z = x @ wt.t() + torch.from_numpy(theta[K * D:])
        return float(c * F.cross_entropy(z, y, reduction="sum") + 0.5 * wt.pow(2).sum())

    ref = minimize(objective, np.zeros(K * D + K), method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-14})
    ours = objective(np.concatenate([w.numpy().ravel(), b.numpy()]))
    assert ours <= ref.fun + 1e-6


def test_smooth_cross_entropy_matches_pointclip_formula():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    one_hot = F.one_hot(labels, 4).float()
    target = one_hot * 0.8 + (1 - one_hot) * 0.2 / 3
    expected = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    torch.testing.assert_close(smooth_cross_entropy(logits, labels, 0.2), expected)


def test_pointclip_adapter_forward_matches_concatenated_views():
    views = 3
    glob, _, labels, text = _split(2, seed=1, views=views)
    adapter = PointCLIPAdapter(D, views).eval()
    with torch.no_grad():
        logits = adapter(glob, text)
        adapted = adapter.adapt(glob)
    assert logits.shape == (glob.shape[0], K) and adapted.shape == glob.shape
    image = F.normalize(adapted.reshape(glob.shape[0], views * D), dim=-1)
    text_rep = F.normalize(text.repeat(1, views), dim=-1)
    torch.testing.assert_close(logits, 100.0 * image @ text_rep.t())
    assert adapter.num_trainable() == views + 2 * D + (views * D * D + D) + 2 * D + (D * D + D) + (D * views * D
                                                                                                   + views * D)
    with pytest.raises(CalipError, match="per-view"):
        adapter(glob[:, :2], text)


def test_pointclip_adapter_training_lowers_the_loss():
    views = 3
    glob, _, labels, text = _split(4, seed=1, views=views)
    vglob, _, vlabels, _ = _split(4, seed=2, views=views)
    adapter = PointCLIPAdapter(D, views)
    result = adapter.fit(glob, labels, text, vglob, vlabels, train=replace(PointCLIPAdapter.TRAIN, epochs=30, lr=0.05,
                                                                           batch_size=8), progress=False)
    assert result.history[-1].loss < result.history[1].loss
    assert adapter.logits(vglob).shape == (vglob.shape[0], K)
    assert topk_accuracy(adapter.logits(vglob), vlabels) == result.best_val_acc


# ------------------------------------------------------------------------------------------------ release details


class _RowRecorder(torch.nn.Module):
    """Logits from a linear layer; records which rows (their first feature: the row id) each training step saw."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 3)
        self.seen: list[list[int]] = []

    def forward(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(sorted(int(v) for v in feats[:, 0]))
        return self.layer(feats)


def test_cycled_copies_train_one_copy_per_epoch_in_order():
    """3 copies of 4 items, 5 epochs, batch 4: epoch e sees exactly copy (e - 1) mod 3."""
    rows = torch.stack([torch.arange(12.0), torch.zeros(12)], dim=1)
    labels = torch.tensor([0, 1, 2, 0]).repeat(3)
    module = _RowRecorder()
    result = train_classifier(module, rows, labels, None, None, torch.zeros(3, 2),
                              TrainConfig(epochs=5, batch_size=4), progress=False, copies=3)
    assert module.seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(result.history) == 6
    with pytest.raises(CalipError, match="copies"):
        train_classifier(_RowRecorder(), rows[:11], labels[:11], None, None, torch.zeros(3, 2), TrainConfig(epochs=1),
                         progress=False, copies=3)


def _scripted_probe(correct_by_log_c: dict[float, int], choose: str) -> LinearProbe:
    """A probe whose fit for C predicts one class j for every val sample, where class j is right on j of the 10 val
    samples: the val accuracy of each C is scripted (log10 C rounded to 2 places -> correct count; else 0)."""
    val_labels = torch.tensor([c for c in range(5) for _ in range(c)])  # class c appears c times: 0+1+2+3+4 = 10

    class Scripted(LinearProbe):
        def _fit_c(self, x, y, k, c):
            j = correct_by_log_c.get(round(math.log10(c), 2), 0)
            return torch.zeros(k, x.shape[1], dtype=torch.float64), F.one_hot(torch.tensor(j), k).double()

    return Scripted(refine_steps=3, normalize=False, choose=choose).fit(
        torch.randn(5, 4), torch.arange(5), torch.randn(10, 4), val_labels, num_classes=5)


def test_linear_probe_keeps_the_best_c_or_the_last_bisection_winner():
    """Grid peak C = 1e2; bisection in [1e1, 1e3]: 1e3 wins step 1 (4 correct, the best), 1e3 wins step 2, and step
    3 ties 10^2.5 with 1e3, so the left end wins: "best" keeps 1e3, CoOp's "last" keeps 10^2.5."""
    script = {2.0: 3, 1.0: 1, 3.0: 4, 2.5: 4}
    best, last = (_scripted_probe(script, choose) for choose in ("best", "last"))
    tried = [round(math.log10(c), 2) for c, _ in best.search_history]
    assert tried == [6.0, 4.0, 2.0, 0.0, -2.0, -4.0, -6.0, 1.0, 3.0, 2.5]
    assert math.isclose(math.log10(best.C), 3.0) and math.isclose(math.log10(last.C), 2.5)
    assert best.search_history == last.search_history


def test_tip_adapter_cache_is_the_mean_of_raw_copies_normalised_once():
    """Images: the keys average the augmented copies' raw CLIP features (not their normalised features) and
    normalise once, as Tip-Adapter's build_cache_model does; the clean shots are not in the mean."""
    from calip3d.encoding import Tokens
    from calip3d.fewshot import FewShotConfig
    from calip3d.fewshot.methods import FitData, MethodSettings, TipAdapterMethod
    from calip3d.fewshot.selection import VAL_SHOTS, Selection

    g = torch.Generator().manual_seed(0)

    def tokens(scale: float) -> Tokens:
        glob = F.normalize(torch.randn(K, D, generator=g), dim=-1)
        return Tokens(glob, torch.zeros(K, 1, D).half(), torch.arange(K), torch.arange(K), torch.full((K,), scale))

    shots, copies = tokens(1.0), [tokens(1.0), tokens(9.0)]
    settings = MethodSettings(FewShotConfig("caltech101"), "caltech101", True, (1.0, 1.0, 1.0),
                              Selection("betas", "given", ""), 0.5, "cpu", augment=2)
    method = TipAdapterMethod(settings, None)
    method.fit(FitData(shots, copies, TEXT, {VAL_SHOTS: tokens(1.0)}))
    raw_mean = (copies[0].global_feats * 1.0 + copies[1].global_feats * 9.0) / 2
    torch.testing.assert_close(method.model.keys, F.normalize(raw_mean, dim=-1))
    hp = method.hyperparameters()
    assert (hp["augment"], hp["search_scale"], hp["init_alpha"]) == (2, [12, 5], 3)


def test_stored_norms_give_back_clip_raw_image_features():
    """`Tokens.raw_global()` (normalised global x stored norm) equals open_clip's unnormalised `encode_image`, per
    image and, for point clouds, per view."""
    from calip3d.backbone import CLIPBackbone
    from calip3d.encoding import EncodeConfig
    from tiny_models import build_varied

    class Inputs:
        """A split of ready-made inputs `[N, ...]` (one batch)."""

        def __init__(self, inputs: torch.Tensor) -> None:
            self.inputs = inputs

        def __len__(self) -> int:
            return len(self.inputs)

        def fingerprint(self) -> dict:
            return {}

        def batches(self, loading):
            yield self.inputs, torch.zeros(len(self)), torch.arange(len(self))

    model = build_varied(2)
    images = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    encoder = EncodeConfig(use_cache=False, workers=0).encoder(CLIPBackbone(model))
    flat = encoder.tokens(Inputs(images), "images")
    views = encoder.tokens(Inputs(images.view(2, 3, 3, 64, 64)), "views")
    with torch.no_grad():
        expected = model.encode_image(images)
    torch.testing.assert_close(flat.raw_global(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(views.raw_global(), expected.view(2, 3, -1), rtol=1e-4, atol=1e-5)
