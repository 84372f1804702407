"""ParametricCALIP (CALIP-FS): exact zero-shot CALIP before training, and the design formula after."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from calip3d.attention.calip import calip_terms, combine_terms
from calip3d.attention.parametric import ParametricCALIP
from calip3d.errors import CalipError


def _feats(b: int, n: int, d: int, k: int, views: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lead = (b,) if views is None else (b, views)
    fv = F.normalize(torch.randn(*lead, d, generator=g), dim=-1)
    fs = F.normalize(torch.randn(*lead, n, d, generator=g), dim=-1)
    ft = F.normalize(torch.randn(k, d, generator=g), dim=-1)
    return fv, fs, ft


@pytest.mark.parametrize("b,n,d,k", [(3, 5, 16, 4), (2, 1, 8, 3), (4, 6, 8, 1), (1, 1, 4, 1)])
@pytest.mark.parametrize("hidden", [None, 3])
def test_untrained_2d_equals_zero_shot_calip(b, n, d, k, hidden):
    fv, fs, ft = _feats(b, n, d, k)
    module = ParametricCALIP(d, hidden=hidden, betas=(1.0, 0.7, 0.3))
    expected = calip_terms(fv, fs, ft, temperature=0.5)
    with torch.no_grad():
        got = module.terms(fv, fs, ft)
        logits = module(fv, fs, ft)
    for g, e in zip(got, expected):
        assert g.shape == (b, k)
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, combine_terms(expected, (1.0, 0.7, 0.3), 100.0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shared", [True, False])
def test_untrained_3d_equals_weighted_per_view_calip(shared):
    b, v, n, d, k = 3, 4, 5, 8, 6
    fv, fs, ft = _feats(b, n, d, k, views=v, seed=1)
    weights = (0.5, 1.0, 2.0, 0.25)
    module = ParametricCALIP(d, num_views=v, shared_views=shared, view_weights=weights, temperature=0.3)
    expected = [torch.zeros(b, k) for _ in range(3)]
    for view in range(v):
        per_view = calip_terms(fv[:, view], fs[:, view], ft, temperature=0.3)
        for total, term in zip(expected, per_view):
            total += weights[view] * term
    with torch.no_grad():
        got = module.terms(fv, fs, ft)
        logits = module(fv, fs, ft)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, combine_terms(expected, (1.0, 1.12, 0.02), 100.0), atol=1e-4, rtol=0)


def _dense(res_map, view: int) -> torch.Tensor:
    """The map's matrix M (x -> M x) for one view, built from its parameters."""
    c = 0 if res_map.copies == 1 else view
    w = res_map.weight[c] if res_map.hidden is None else res_map.up[c] @ res_map.down[c]
    return torch.eye(w.shape[0]) + w


def _naive_terms(module: ParametricCALIP, fv, fs, ft):
    """The design formula applied literally, token by token, view by view (no adjoint tricks)."""
    b, v, n, d = fs.shape
    out = [torch.zeros(b, v, ft.shape[0]) for _ in range(3)]
    for view in range(v):
        pv, pt, qt, qv = (_dense(m, view) for m in
                          (module.pre_visual, module.pre_text, module.post_text, module.post_visual))
        for i in range(b):
            tokens, glob = fs[i, view], fv[i, view]
            attn = (tokens @ pv.t()) @ (ft @ pt.t()).t() / module.temperature  # [N, K]
            ft_a = attn.softmax(dim=0).t() @ tokens @ qt.t()  # [K, D]
            fs_a = attn.softmax(dim=1) @ ft @ qv.t()  # [N, D]
            fv_a = fs_a.mean(dim=0) + fs_a.max(dim=0).values
            out[0][i, view] = glob @ ft.t()
            out[1][i, view] = ft_a @ glob
            out[2][i, view] = fv_a @ ft.t()
    return out


@pytest.mark.parametrize("shared,hidden", [(True, None), (False, None), (True, 2), (False, 3)])
def test_trained_module_matches_literal_formula(shared, hidden):
    b, v, n, d, k = 2, 3, 4, 6, 5
    fv, fs, ft = _feats(b, n, d, k, views=v, seed=2)
    module = ParametricCALIP(d, num_views=v, shared_views=shared, hidden=hidden, init_seed=7)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p + 0.3 * torch.randn(p.shape, generator=g))
        got = module.view_terms(fv, fs, ft)
    for a, e in zip(got, _naive_terms(module, fv, fs, ft)):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


def test_chunked_batches_match_one_pass(monkeypatch):
    fv, fs, ft = _feats(7, 3, 4, 2, views=2, seed=4)
    module = ParametricCALIP(4, num_views=2, hidden=2)
    whole = module.view_terms(fv, fs, ft)
    monkeypatch.setattr("calip3d.attention.parametric._CHUNK_ELEMENTS", 20)
    for a, e in zip(module.view_terms(fv, fs, ft), whole):
        torch.testing.assert_close(a, e)


def test_half_precision_inputs_are_computed_in_float32():
    fv, fs, ft = _feats(2, 3, 8, 4)
    module = ParametricCALIP(8)
    logits = module(fv.half(), fs.half(), ft)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, module(fv.half().float(), fs.half().float(), ft))


def test_every_zero_initialised_map_gets_a_gradient():
    fv, fs, ft = _feats(4, 5, 8, 3, views=2)
    module = ParametricCALIP(8, num_views=2, learn_betas=True, learn_view_weights=True)
    F.cross_entropy(module(fv, fs, ft), torch.tensor([0, 1, 2, 0])).backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_describe_from_config_and_parameter_counts():
    d, v, r = 8, 3, 2
    assert ParametricCALIP(d).num_trainable() == 4 * d * d
    assert ParametricCALIP(d, num_views=v, shared_views=False).num_trainable() == 4 * v * d * d
    assert ParametricCALIP(d, hidden=r).num_trainable() == 4 * 2 * d * r
    module = ParametricCALIP(d, num_views=v, hidden=r, learn_betas=True, learn_view_weights=True,
                             view_weights=(1, 2, 3))
    assert module.num_trainable() == 4 * 2 * d * r + 3 + v
    config = module.describe()
    clone = ParametricCALIP.from_config(config)
    assert clone.describe() == config
    for (name, a), (_, b) in zip(module.state_dict().items(), clone.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)  # same init_seed -> same low-rank init


def test_bad_shapes_and_settings_raise_calip_error():
    fv, fs, ft = _feats(2, 3, 8, 4, views=2)
    with pytest.raises(CalipError, match="3 view"):
        ParametricCALIP(8, num_views=3)(fv, fs, ft)
    with pytest.raises(CalipError, match="4 views"):
        ParametricCALIP(8, num_views=4)(fv[:, 0], fs[:, 0], ft)
    with pytest.raises(CalipError, match="text"):
        ParametricCALIP(8, num_views=2)(fv, fs, ft[:, :4])
    with pytest.raises(CalipError, match="view_weights"):
        ParametricCALIP(8, num_views=2, view_weights=(1.0,))
    with pytest.raises(CalipError, match="hidden"):
        ParametricCALIP(8, hidden=0)
    with pytest.raises(CalipError, match="not ParametricCALIP"):
        ParametricCALIP.from_config({"class": "Other", "dim": 8})
