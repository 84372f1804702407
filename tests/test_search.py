"""calip3d.search against straightforward loops written here, under the same strict rule: an image is
correct iff its true-class logit (float64) is strictly greater than every other class's logit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from calip3d.errors import CalipError
from calip3d.search import (beta_correct_counts, official_beta_grid, search_betas, search_joint,
                            search_view_weights, view_correct_counts)

GRID = (0.25, 0.5, 0.75, 1.0)


def strict_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Count of rows whose true logit beats every other logit strictly, by a plain loop over the classes."""
    true = logits[torch.arange(len(labels)), labels]
    ok = torch.ones(len(labels), dtype=torch.bool)
    for k in range(logits.shape[1]):
        ok &= (labels == k) | (true > logits[:, k])
    return int(ok.sum())


def brute_beta_counts(clip, vg, tb, labels, g2, g3) -> torch.Tensor:
    """The official double loop (beta2 outer, beta3 inner), in float64 with the strict rule."""
    clip, vg, tb = (torch.as_tensor(t).double() for t in (clip, vg, tb))
    labels = torch.as_tensor(labels)
    out = torch.zeros(len(g2), len(g3), dtype=torch.long)
    for i, b2 in enumerate(g2):
        for j, b3 in enumerate(g3):
            out[i, j] = strict_correct(clip + b2 * vg + b3 * tb, labels)
    return out


def first_optimum(counts: torch.Tensor) -> tuple[int, int, int]:
    best = None
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if best is None or counts[i, j] > best[0]:
                best = (int(counts[i, j]), i, j)
    return best


def random_terms(seed: int, n: int, k: int, kind: str):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    if kind == "float":  # float32 terms with a class signal, like real cached logits
        signal = torch.nn.functional.one_hot(labels, k).float()
        clip = 0.3 * signal + torch.randn(n, k, generator=g)
        vg = 0.5 * clip + torch.randn(n, k, generator=g)
        tb = 10 * torch.randn(n, k, generator=g) + 5 * signal
    else:  # "ties": small integers, so many classes tie exactly in one, two or all three terms
        clip, vg, tb = (torch.randint(-2, 3, (n, k), generator=g).float() for _ in range(3))
        clip[:4] = clip[:4, :1]  # rows whose classes tie in every term
        vg[:4], tb[:4] = vg[:4, :1], tb[:4, :1]
    return clip, vg, tb, labels


def breakpoint_terms(seed: int, n: int, k: int, g2, g3):
    """Terms where a wrong class exactly ties the true class (in real numbers) at a chosen grid point."""
    clip, vg, tb, labels = random_terms(seed, n, k, "float")
    clip, vg, tb = clip.double(), vg.double(), tb.double()
    g = torch.Generator().manual_seed(seed + 100)
    for r in range(n):
        i, j = (int(x) for x in torch.randint(0, len(g2), (2,), generator=g))
        other = (int(labels[r]) + 1) % k
        y = int(labels[r])
        d1, d2 = vg[r, y] - vg[r, other], tb[r, y] - tb[r, other]
        clip[r, other] = clip[r, y] + g2[i] * d1 + g3[min(j, len(g3) - 1)] * d2
    return clip, vg, tb, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["float", "ties"])
def test_search_betas_equals_double_loop(seed: int, kind: str) -> None:
    steps = 20 + 7 * seed
    clip, vg, tb, labels = random_terms(seed, n=40, k=5, kind=kind)
    g2, g3 = official_beta_grid(2.0, steps), official_beta_grid(0.1, steps)
    brute = brute_beta_counts(clip, vg, tb, labels, g2, g3)
    assert torch.equal(beta_correct_counts(clip, vg, tb, labels, g2, g3), brute)
    count, i, j = first_optimum(brute)
    result = search_betas(clip, vg, tb, labels, steps=steps)
    assert (result.accuracy, result.beta2, result.beta3) == (100.0 * count / 40, g2[i], g3[j])
    assert (result.beta2_index, result.beta3_index) == (i, j)


@pytest.mark.parametrize("seed", range(3))
def test_search_betas_at_exact_breakpoints(seed: int) -> None:
    steps = 25
    g2, g3 = official_beta_grid(5.0, steps), official_beta_grid(0.1, steps)  # Caltech's beta2 bound
    clip, vg, tb, labels = breakpoint_terms(seed, n=30, k=4, g2=g2, g3=g3)
    # The data really puts margins at rounding level of zero on grid points.
    near_zero = 0
    for b2 in g2:
        for b3 in g3:
            logits = clip + b2 * vg + b3 * tb
            margin = logits[torch.arange(30), labels] - logits[torch.arange(30), (labels + 1) % 4]
            near_zero += int((margin.abs() < 1e-12).sum())
    assert near_zero >= 20
    brute = brute_beta_counts(clip, vg, tb, labels, g2, g3)
    assert torch.equal(beta_correct_counts(clip, vg, tb, labels, g2, g3), brute)
    count, i, j = first_optimum(brute)
    result = search_betas(clip.numpy(), vg.numpy(), tb.numpy(), labels.numpy(), beta2_max=5.0, steps=steps)
    assert (result.accuracy, result.beta2, result.beta3) == (100.0 * count / 30, g2[i], g3[j])


def test_search_betas_caltech_bound_and_numpy_inputs() -> None:
    clip, vg, tb, labels = random_terms(7, n=50, k=6, kind="float")
    g2, g3 = official_beta_grid(5.0, 30), official_beta_grid(0.1, 30)
    count, i, j = first_optimum(brute_beta_counts(clip, vg, tb, labels, g2, g3))
    for args in [(clip, vg, tb, labels), tuple(t.numpy() for t in (clip, vg, tb, labels))]:
        result = search_betas(*args, beta2_max=5.0, steps=30)
        assert (result.accuracy, result.beta2, result.beta3) == (100.0 * count / 50, g2[i], g3[j])
    assert result.beta2_grid == tuple(g2) and len(result.beta3_grid) == 30
    assert g2[0] == 0.001 and g2[1] == 1 * (5.0 - 0.001) / 30 + 0.001


def brute_views(per_view: torch.Tensor, labels: torch.Tensor, grid) -> tuple[list[int], tuple, int]:
    """Loop over itertools.product: counts of every weighting, the first optimum and its count."""
    per_view = per_view.double()
    counts, best_w, best = [], None, -1
    for w in itertools.product(grid, repeat=per_view.shape[1]):
        counts.append(strict_correct(sum(wv * per_view[:, v] for v, wv in enumerate(w)), labels))
        if counts[-1] > best:
            best_w, best = w, counts[-1]
    return counts, best_w, best


def view_data(seed: int, n: int, views: int, k: int, integer: bool):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    if integer:  # exact ties within and across views
        return torch.randint(-2, 3, (n, views, k), generator=g).float(), labels
    strength = torch.rand(views, generator=g)[None, :, None]
    signal = strength * torch.nn.functional.one_hot(labels, k)[:, None, :]
    return signal + torch.randn(n, views, k, generator=g), labels


@pytest.mark.parametrize("views", [3, 4, 5, 6])
@pytest.mark.parametrize("integer", [False, True])
def test_exhaustive_view_weights_equal_product_loop(views: int, integer: bool) -> None:
    per_view, labels = view_data(views, n=30, views=views, k=5, integer=integer)
    counts, weights, best = brute_views(per_view, labels, GRID)
    combos = torch.tensor(list(itertools.product(GRID, repeat=views)))
    assert view_correct_counts(per_view, labels, combos).tolist() == counts
    result = search_view_weights(per_view, labels, GRID, method="exhaustive")
    assert (result.accuracy, result.weights, result.method) == (100.0 * best / 30, weights, "exhaustive")
    assert result.evaluations == len(GRID) ** views
    auto = search_view_weights(per_view.numpy(), labels.numpy(), GRID)  # 4^6 <= 100k: exhaustive
    assert (auto.method, auto.weights) == ("exhaustive", weights)


@pytest.mark.parametrize("integer", [False, True])
def test_view_correct_counts_any_positive_weights(integer: bool) -> None:
    per_view, labels = view_data(9, n=40, views=5, k=6, integer=integer)
    g = torch.Generator().manual_seed(1)
    weights = 10.0 ** (4 * torch.rand(64, 5, generator=g, dtype=torch.float64) - 2)  # 0.01 .. 100
    weights[:8] = weights[:8].round().clamp(min=1)  # integer weights: exact ties across views
    expected = [strict_correct(sum(w * per_view[:, v].double() for v, w in enumerate(row.tolist())), labels)
                for row in weights]
    assert view_correct_counts(per_view, labels, weights).tolist() == expected


def test_coordinate_ascent_consistent_and_deterministic() -> None:
    per_view, labels = view_data(11, n=60, views=10, k=6, integer=False)
    grid = (0.2, 0.4, 0.6, 0.8, 1.0)
    result = search_view_weights(per_view, labels, grid, method="auto", restarts=2, seed=3)
    assert result.method == "coordinate" and len(result.weights) == 10 and set(result.weights) <= set(grid)
    logits = sum(w * per_view[:, v].double() for v, w in enumerate(result.weights))
    assert result.accuracy == 100.0 * strict_correct(logits, labels) / 60
    uniform = 100.0 * strict_correct(per_view.double().sum(1), labels) / 60
    assert result.accuracy >= uniform
    assert search_view_weights(per_view, labels, grid, method="coordinate", restarts=2, seed=3) == result


def test_coordinate_never_beats_exhaustive() -> None:
    per_view, labels = view_data(5, n=40, views=4, k=5, integer=False)
    exhaustive = search_view_weights(per_view, labels, GRID, method="exhaustive")
    coordinate = search_view_weights(per_view, labels, GRID, method="coordinate", restarts=3)
    assert coordinate.accuracy <= exhaustive.accuracy
    logits = sum(w * per_view[:, v].double() for v, w in enumerate(coordinate.weights))
    assert coordinate.accuracy == 100.0 * strict_correct(logits, labels) / 40


def test_search_joint_consistent() -> None:
    g = torch.Generator().manual_seed(2)
    n, views, k = 40, 3, 5
    labels = torch.randint(0, k, (n,), generator=g)
    signal = torch.nn.functional.one_hot(labels, k)[:, None, :].float()
    clip = 0.5 * signal + torch.randn(n, views, k, generator=g)
    vg = 0.5 * signal + torch.randn(n, views, k, generator=g)
    tb = 10 * torch.randn(n, views, k, generator=g)
    result = search_joint(clip, vg, tb, labels, grid=GRID, steps=15, rounds=2)
    assert len(result.history) == 2 and result.accuracy == max(result.history)
    per_view = clip.double() + result.beta2 * vg.double() + result.beta3 * tb.double()
    logits = sum(w * per_view[:, v] for v, w in enumerate(result.weights))
    assert result.accuracy == 100.0 * strict_correct(logits, labels) / n
    assert result.beta2 in official_beta_grid(2.0, 15) and result.beta3 in official_beta_grid(0.1, 15)
    # never worse than the betas alone with uniform view weights
    alone = search_betas(clip.sum(1), vg.sum(1), tb.sum(1), labels, steps=15)
    assert result.accuracy >= alone.accuracy


@pytest.mark.parametrize("call, message", [
    (lambda t, y: search_betas(t, t[:, :3], t, y), "shape"),
    (lambda t, y: search_betas(t, t, t, y[:5]), "labels must have shape"),
    (lambda t, y: search_betas(t, t, t, y + 10), "labels must lie in"),
    (lambda t, y: search_betas(t, t, t, y.float()), "integers"),
    (lambda t, y: search_betas(t, t, t, y, steps=0), "steps"),
    (lambda t, y: search_betas(t, t, t, y, beta2_max=0.001), "beta maximum"),
    (lambda t, y: search_betas(t, t, t, y, beta3_max=-1.0), "beta maximum"),
    (lambda t, y: search_betas([[1.0]], t, t, y), "torch.Tensor or numpy"),
    (lambda t, y: search_betas(t * float("nan"), t, t, y), "NaN"),
    (lambda t, y: search_betas(t[:, :1], t[:, :1], t[:, :1], y * 0), "at least 2 classes"),
    (lambda t, y: beta_correct_counts(t, t, t, y, [0.2, 0.1], [0.1]), "strictly increasing"),
    (lambda t, y: search_view_weights(t, y), "3 dimensions"),
    (lambda t, y: search_view_weights(t[:, None], y, grid=(0.0, 1.0)), "> 0"),
    (lambda t, y: search_view_weights(t[:, None], y, grid=()), "empty"),
    (lambda t, y: search_view_weights(t[:, None], y, method="greedy"), "method"),
    (lambda t, y: search_view_weights(t[:, None], y, max_rounds=0), "max_rounds"),
    (lambda t, y: search_view_weights(t[:, None].expand(8, 13, 4), y, method="exhaustive"), "too large"),
    (lambda t, y: view_correct_counts(t[:, None], y, torch.ones(2, 3)), "shape"),
    (lambda t, y: search_joint(t, t, t, y), "3 dimensions"),
    (lambda t, y: search_joint(t[:, None], t[:, None], t[:, None], y, rounds=0), "rounds"),
])
def test_invalid_inputs_raise_calip_error(call, message: str) -> None:
    terms, labels = torch.randn(8, 4), torch.arange(8) % 4
    with pytest.raises(CalipError, match=message):
        call(terms, labels)


def test_integer_term_arrays_are_accepted() -> None:
    clip = np.array([[3, 1], [0, 2]], dtype=np.int64)
    result = search_betas(clip, clip, clip, np.array([0, 0]), steps=2)
    assert result.accuracy == 50.0


# ------------------------------------------------------------------------------------------------ tie rules


def test_coordinate_ascent_moves_only_on_strict_improvement_and_to_the_first_best_value() -> None:
    """Two views, one image, two classes: the true class wins iff w0 * 1 + w1 * (-1) > 0, i.e. iff w0 > w1. From
    the start (all = max(grid) = 1.0: a tie, wrong) view 0 cannot improve (w0 <= 1.0); view 1 improves with any
    w1 < 1.0, and the first best value of the grid, 0.25, is taken. A second image that every weighting gets right
    keeps the counts apart from zero."""
    per_view = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])
    labels = torch.tensor([0, 0])
    result = search_view_weights(per_view, labels, GRID, method="coordinate")
    assert result.weights == (1.0, 0.25) and result.accuracy == 100.0
    # all weightings tie: nothing moves from the start (a non-strict move would walk to the grid's first value)
    flat = torch.zeros(3, 2, 2)
    flat[:, :, 0] = 1.0
    tied = search_view_weights(flat, torch.zeros(3, dtype=torch.long), GRID, method="coordinate", restarts=3, seed=1)
    assert tied.weights == (1.0, 1.0) and tied.accuracy == 100.0  # the first start wins ties among starts
    assert search_view_weights(flat, torch.zeros(3, dtype=torch.long), GRID, method="exhaustive").weights == \
        (0.25, 0.25)  # exhaustive: the first weighting in product order


def test_joint_search_keeps_the_earliest_round_on_ties(monkeypatch) -> None:
    """Rounds scripted to reach 50%, 50% (other weights and betas), then 25%: the first round's choice wins; the
    betas of each round are searched on the terms aggregated with the previous round's weights."""
    import calip3d.search as search

    seen_weights, rounds = [], iter([((0.5, 1.0), 50.0), ((1.0, 0.5), 50.0), ((0.25, 0.25), 25.0)])
    betas = iter([(0.2, 0.01), (0.4, 0.02), (0.6, 0.03)])

    def fake_betas(clip, vg, tb, labels, **kw):
        seen_weights.append(round(float(clip[0, 0]), 6))
        b2, b3 = next(betas)
        return search.BetaSearchResult(0.0, b2, b3, 0, 0, (), ())

    def fake_views(combined, labels, grid, method):
        weights, accuracy = next(rounds)
        return search.ViewWeightResult(accuracy, weights, "exhaustive", 1)

    monkeypatch.setattr(search, "search_betas", fake_betas)
    monkeypatch.setattr(search, "search_view_weights", fake_views)
    clip = torch.ones(2, 2, 3)
    result = search.search_joint(clip, clip, clip, torch.zeros(2, dtype=torch.long), grid=GRID, rounds=3)
    assert result.history == (50.0, 50.0, 25.0)
    assert (result.weights, result.beta2, result.beta3, result.accuracy) == ((0.5, 1.0), 0.2, 0.01, 50.0)
    assert seen_weights == [2.0, 1.5, 1.5]  # uniform 1.0 + 1.0, then round 1's 0.5 + 1.0, round 2's 1.0 + 0.5
