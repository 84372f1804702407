"""CALIP terms against a per-image loop written from the formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from calip3d.attention import calip_logits, calip_terms
from calip3d.attention import calip as calip_module


def _reference(fv, fs, ft, temperature=0.5):
    clip, vg, tb = [], [], []
    for b in range(fv.shape[0]):
        a = fs[b] @ ft.T / temperature  # [N, K]
        ft_a = torch.softmax(a, dim=0).T @ fs[b]  # [K, D]
        fs_a = torch.softmax(a, dim=1) @ ft  # [N, D]
        fv_a = fs_a.mean(0) + fs_a.max(0).values
        clip.append(fv[b] @ ft.T)
        vg.append(fv[b] @ ft_a.T)
        tb.append(fv_a @ ft.T)
    return torch.stack(clip), torch.stack(vg), torch.stack(tb)


def _feats(b, n, k, d, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    norm = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1).to(dtype)  # noqa: E731
    return norm(b, d), norm(b, n, d), norm(k, d)


@pytest.mark.parametrize("b, n, k, d", [(5, 49, 10, 64), (3, 1, 7, 16), (4, 9, 1, 8), (1, 1, 1, 4), (7, 196, 37, 32)])
def test_terms_equal_per_image_loop(b, n, k, d):
    fv, fs, ft = _feats(b, n, k, d, seed=b * n + k)
    for got, want in zip(calip_terms(fv, fs, ft), _reference(fv, fs, ft)):
        assert got.shape == (b, k) and got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_temperature_and_logits():
    fv, fs, ft = _feats(6, 16, 5, 32, seed=11)
    clip, vg, tb = _reference(fv, fs, ft, temperature=2.0)
    torch.testing.assert_close(calip_terms(fv, fs, ft, temperature=2.0)[1], vg, atol=1e-5, rtol=1e-5)
    clip, vg, tb = _reference(fv, fs, ft)
    got = calip_logits(fv, fs, ft, betas=(1.0, 1.12, 0.02), logit_scale=100.0)
    torch.testing.assert_close(got, 100 * (clip + 1.12 * vg + 0.02 * tb), atol=1e-4, rtol=1e-5)


def test_chunking_gives_same_result(monkeypatch):
    fv, fs, ft = _feats(9, 12, 6, 16, seed=2)
    whole = calip_terms(fv, fs, ft)
    monkeypatch.setattr(calip_module, "_CHUNK_ELEMENTS", 12 * 16 * 2)  # two images per chunk
    for a, b in zip(calip_terms(fv, fs, ft), whole):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_computed_in_float32(dtype):
    fv, fs, ft = _feats(4, 25, 8, 32, seed=4, dtype=dtype)
    got = calip_terms(fv, fs, ft)
    want = _reference(fv.float(), fs.float(), ft.float())
    for a, b in zip(got, want):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_shape_errors():
    fv, fs, ft = _feats(2, 4, 3, 8)
    with pytest.raises(ValueError):
        calip_terms(fv, fs, ft[:, :4])
    with pytest.raises(ValueError):
        calip_terms(fv[0], fs, ft)
