"""calip3d.pointnn against a straightforward re-expression of the Point-NN release written here from the spec
(methods.md sections 3.1 and 5.3), on real ModelNet40 clouds: numpy, one cloud at a time, FPS one pick at a time,
kNN by sorting each centre's distances, PosE channel by channel; and the memory bank against a loop over the gamma
grid. Each test's docstring names the bugs it is there to catch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from calip3d.errors import CalipError
from calip3d.pointnn import PointNN, encode_clouds, memory_logits, search_gamma
from calip3d.pointnn.encoder import RELEASE_ENCODER, farthest_point_sample, knn_indices
from calip3d.pointnn.memory import POINTNN_GAMMA_GRID, gamma_correct_counts

RELEASE = dict(num_stages=4, embed_dim=72, k_neighbors=90, alpha=1000.0, beta=100.0)
# Features agree to TOL relative to the largest feature of the cloud (about 90). The package and the loop reference
# differ by 3.4e-7 of it on the release settings; leaving out the BatchNorm scale 1/sqrt(1 + 1e-5) moves the features
# by 1.8e-5 of it, so the 1e-4 of the brief would not see that bug and TOL is tighter.
TOL = 2e-6


def load_h5(folder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The first 1024 points of each stored cloud (float32, no normalisation, as the release) and the labels."""
    import h5py

    with h5py.File(folder / f"ply_data_{split}0.h5", "r") as handle:
        return np.asarray(handle["data"][:, :1024], dtype=np.float32), np.asarray(handle["label"][:, 0], np.int64)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread: the encoder's chunked ops lose badly to thread oversubscription on the shared 2 cores."""


@pytest.fixture(scope="module")
def test_clouds(modelnet_h5_dir) -> np.ndarray:
    return load_h5(modelnet_h5_dir, "test")[0]


# ------------------------------------------------------------------------------------------ the loop reference


def ref_pose(coords: np.ndarray, dim: int, alpha: float, beta: float) -> np.ndarray:
    """PosE channel by channel: `coords [..., 3]` -> `[..., dim]`; channel axis*2fd + 2j is sin, + 1 is cos."""
    fd = dim // 6
    out = np.empty(coords.shape[:-1] + (dim,), np.float32)
    for axis in range(3):
        scaled = np.float32(beta) * coords[..., axis]
        for j in range(fd):
            freq = np.float32(alpha) ** (np.float32(j) / np.float32(fd))
            arg = scaled / freq
            out[..., axis * 2 * fd + 2 * j] = np.sin(arg)
            out[..., axis * 2 * fd + 2 * j + 1] = np.cos(arg)
    return out


def ref_fps(xyz: np.ndarray, n: int, skip_small: bool = True) -> list[int]:
    """The FPS kernel one pick at a time on one cloud `[P, 3]` (float32): start 0, running minimum from 1e10, first
    argmax; points with x^2 + y^2 + z^2 <= 1e-3 (compared in double, as the C kernel does) never taken."""
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    small = (x * x + y * y + z * z).astype(np.float64) <= 1e-3 if skip_small else np.zeros(len(xyz), bool)
    temp = np.full(len(xyz), 1e10, np.float32)
    picks = [0]
    for _ in range(1, n):
        px, py, pz = xyz[picks[-1]]
        temp = np.minimum(temp, (x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2)
        best, best_i = -1.0, 0
        for i in np.flatnonzero(~small):  # the kernel's scan: strictly greater replaces, so the first max wins
            if temp[i] > best:
                best, best_i = temp[i], int(i)
        picks.append(best_i)
    return picks


def ref_knn(xyz: np.ndarray, centres: np.ndarray, k: int) -> np.ndarray:
    """For each centre, the k smallest `-2 c.x + |c|^2 + |x|^2` by a stable sort: `[G, k]`."""
    sq = xyz[:, 0] * xyz[:, 0] + xyz[:, 1] * xyz[:, 1] + xyz[:, 2] * xyz[:, 2]
    out = np.empty((len(centres), k), np.int64)
    for g, c in enumerate(centres):
        dot = c[0] * xyz[:, 0] + c[1] * xyz[:, 1] + c[2] * xyz[:, 2]
        dist = -2 * dot + (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]) + sq
        out[g] = np.argsort(dist, kind="stable")[:k]
    return out


_GEOMETRY: dict[tuple, list] = {}


def ref_geometry(cloud: np.ndarray, stages: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre indices, neighbour indices) per stage: they depend on the xyz alone, so they are kept per cloud."""
    key = (cloud.tobytes(), stages, k)
    if key not in _GEOMETRY:
        xyz, out = cloud, []
        for _ in range(stages):
            centres = np.array(ref_fps(xyz, len(xyz) // 2))
            out.append((centres, ref_knn(xyz, xyz[centres], k)))
            xyz = xyz[centres]
        _GEOMETRY[key] = out
    return _GEOMETRY[key]


def ref_encode(clouds: np.ndarray, normalize: str, num_stages=4, embed_dim=72, k_neighbors=90, alpha=1000.0,
               beta=100.0) -> np.ndarray:
    """The release's encoder on a batch `[B, N, 3]` (float32) -> `[B, F]`: the clouds one by one, except that with
    `normalize="batch"` the two sigmas of each stage are the std of the whole batch's tensors."""
    clouds = np.asarray(clouds, np.float32)
    geometry = [ref_geometry(c, num_stages, k_neighbors) for c in clouds]
    xyz = list(clouds)
    feats = [ref_pose(c, embed_dim, alpha, beta) for c in clouds]
    for stage in range(num_stages):
        dxs, dxyzs, centre_feats = [], [], []
        for b in range(len(clouds)):
            centres, nb = geometry[b][stage]
            centre_feats.append(feats[b][centres])
            dxs.append(feats[b][nb] - feats[b][centres][:, None, :])  # [G, K, C]
            dxyzs.append(xyz[b][nb] - xyz[b][centres][:, None, :])  # [G, K, 3]
            xyz[b] = xyz[b][centres]
        if normalize == "batch":
            sx = np.concatenate([d.ravel() for d in dxs]).astype(np.float64).std(ddof=1)
            sxyz = np.concatenate([d.ravel() for d in dxyzs]).astype(np.float64).std(ddof=1)
            sigmas = [(sx, sxyz)] * len(clouds)
        else:
            sigmas = [(d.astype(np.float64).std(ddof=1), e.astype(np.float64).std(ddof=1)) for d, e in zip(dxs, dxyzs)]
        for b in range(len(clouds)):
            sx, sxyz = (np.float32(s) + np.float32(1e-5) for s in sigmas[b])
            dx, dxyz = dxs[b] / sx, dxyzs[b] / sxyz
            channels = dx.shape[-1]
            feat = np.concatenate([dx, np.repeat(centre_feats[b][:, None, :], dx.shape[1], axis=1)], axis=-1)
            pe = ref_pose(dxyz, 2 * channels, alpha, beta)
            w = (feat + pe) * pe
            pooled = w.max(axis=1) + w.mean(axis=1)
            pooled = pooled / np.float32(math.sqrt(1 + 1e-5))  # BatchNorm1d, eval mode, fresh statistics
            p64 = pooled.astype(np.float64)
            feats[b] = (0.5 * p64 * (1 + erf(p64 / math.sqrt(2)))).astype(np.float32)  # exact GELU
    return np.stack([f.max(axis=0) + f.mean(axis=0) for f in feats])


def assert_close(got: torch.Tensor, want: np.ndarray, tol: float = TOL) -> float:
    """Max difference relative to each cloud's largest feature; asserted <= tol and returned."""
    got = got.double().numpy()
    scale = np.abs(want).max(axis=1, keepdims=True)
    err = float((np.abs(got - want) / scale).max())
    assert err <= tol, f"features differ from the reference by {err:.3g} of their scale"
    return err


# ------------------------------------------------------------------------------------------------ the encoder


@pytest.mark.parametrize("normalize", ["cloud", "batch"])
def test_features_equal_the_loop_reference_on_modelnet(test_clouds, normalize):
    """Release settings (the defaults), 1024 real points, k = 90, a batch of 6. Catches: alpha/beta swapped (as in
    the release's class defaults), the sin/cos or axis channel layout, PE of dxyz at the input width, dx/dxyz not
    centred or not scaled, one sigma shared by dx and dxyz, the +1e-5 or the BatchNorm scale left out, a sigma over
    the wrong extent (per cloud vs batch), [centre, dx] in the wrong order, (x + PE) * PE written otherwise, max or
    mean alone, the FPS start or the kNN excluding the centre, the wrong centres carried to the next stage, and max or
    mean alone in the global feature, and a biased std (1.7e-4: the PE of dxyz magnifies sigma's error)."""
    clouds = test_clouds[:6]
    encoder = PointNN(normalize=normalize)  # the contract's defaults are the release's settings
    assert {name: getattr(encoder, name) for name in RELEASE} == RELEASE
    got = encoder(torch.from_numpy(clouds))
    assert got.shape == (6, 1152) and got.dtype == torch.float32
    want = ref_encode(clouds, normalize)
    assert_close(got, want)


def test_small_settings_and_odd_point_counts_equal_the_reference(test_clouds):
    """Other settings through the same code: 3 stages, embed_dim 12, k 7, 100 points (100 -> 50 -> 25 -> 12
    groups). Catches group counts computed as N / 2**stage instead of halving the current count, widths or PE
    dimension hard-coded to the defaults, and k not passed on."""
    settings = dict(num_stages=3, embed_dim=12, k_neighbors=7, alpha=50.0, beta=20.0)
    clouds = test_clouds[8:12, :100]
    for normalize in ("cloud", "batch"):
        got = PointNN(**settings, normalize=normalize)(torch.from_numpy(clouds))
        assert got.shape == (4, 12 * 8)
        assert_close(got, ref_encode(clouds, normalize, **settings))


def test_cloud_normalisation_is_independent_of_the_batch(test_clouds):
    """A cloud's feature alone, in a batch, and in a shuffled batch agree to 1e-5. Catches a batch-wide statistic
    (or any cross-cloud reduction) leaking into normalize="cloud"."""
    encoder = PointNN(normalize="cloud")
    clouds = torch.from_numpy(test_clouds[:6])
    batch = encoder(clouds)
    order = torch.tensor([4, 0, 5, 2, 1, 3])
    shuffled = encoder(clouds[order])
    alone = torch.cat([encoder(clouds[i:i + 1]) for i in (0, 3)])
    assert torch.allclose(shuffled, batch[order], rtol=0, atol=1e-5 * batch.abs().max())
    assert torch.allclose(alone, batch[[0, 3]], rtol=0, atol=1e-5 * batch.abs().max())


def test_batch_normalisation_depends_on_batch_mates_as_released(test_clouds):
    """normalize="batch": cloud 0's feature changes when its 5 batch mates change, by far more than float noise,
    and equals the reference computed on that same batch. Catches a per-cloud sigma under "batch" (then the
    feature would not move) and a sigma over the wrong batch."""
    encoder = PointNN(normalize="batch")
    first = encoder(torch.from_numpy(test_clouds[:6]))[0]
    mates = np.concatenate([test_clouds[:1], test_clouds[12:17]])
    second = encoder(torch.from_numpy(mates))
    change = float((first - second[0]).abs().max() / first.abs().max())
    assert change > 1e-3, f"cloud 0's feature moved only {change:.2g} with other batch mates"
    assert_close(second, ref_encode(mates, "batch"))


def test_fps_never_picks_points_at_the_origin(test_clouds):
    """40 points of a real cloud moved into the ball x^2 + y^2 + z^2 <= 1e-3 are never picked by FPS (and one
    outside it is), while an FPS without the rule does pick some of them; the encoder's features of that cloud still
    equal the reference. Catches the kernel's zero-norm rule left out (or applied with the wrong threshold)."""
    cloud = test_clouds[3].copy()
    rng = np.random.default_rng(0)
    inside = rng.choice(np.arange(1, 1024), 40, replace=False)
    direction = rng.normal(size=(40, 3)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    cloud[inside] = direction * rng.uniform(0.0, 0.031, (40, 1)).astype(np.float32)  # |p|^2 <= 9.6e-4
    cloud[inside[0]] = 0.0
    outside = rng.choice(np.setdiff1d(np.arange(1, 1024), inside))
    cloud[outside] = np.float32([0.02, 0.02, 0.02])  # |p|^2 = 1.2e-3: pickable, and picked (its neighbours are not)
    picks = farthest_point_sample(torch.from_numpy(cloud)[None], 512)[0].tolist()
    assert picks == ref_fps(cloud, 512)
    assert not set(picks) & set(inside.tolist())
    assert outside in picks
    assert set(ref_fps(cloud, 512, skip_small=False)) & set(inside.tolist()), "the check would pass without the rule"
    assert_close(PointNN(normalize="cloud")(torch.from_numpy(cloud)[None]), ref_encode(cloud[None], "cloud"))


def test_fps_edge_cases_follow_the_kernel():
    """Index 0 starts even at the origin; a cloud with no other pickable point gets index 0 for every pick; ties
    take the lowest index; float64 points give the same picks as a pure-Python double loop. Catches argmax taking
    the last maximum, the start index chosen otherwise, and an all-origin cloud crashing or picking skipped points."""
    zeros = torch.zeros(2, 16, 3)
    zeros[1, 5] = torch.tensor([1.0, 0.0, 0.0])
    assert farthest_point_sample(zeros, 4).tolist() == [[0, 0, 0, 0], [0, 5, 5, 5]]
    square = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]])
    assert farthest_point_sample(square, 3).tolist() == [[0, 2, 1]]  # 1 and 3 tie after {0, 2}: the lower wins

    rng = np.random.default_rng(1)
    cloud = rng.normal(size=(200, 3)) * 0.5
    cloud[rng.choice(np.arange(1, 200), 10, replace=False)] *= 0.01
    picks, temp = [0], [1e10] * 200
    for _ in range(99):
        last = cloud[picks[-1]]
        best, best_i = -1.0, 0
        for i, p in enumerate(cloud):
            if p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= 1e-3:
                continue
            d = (p[0] - last[0]) ** 2 + (p[1] - last[1]) ** 2 + (p[2] - last[2]) ** 2
            temp[i] = min(temp[i], d)
            if temp[i] > best:
                best, best_i = temp[i], i
        picks.append(best_i)
    assert farthest_point_sample(torch.from_numpy(cloud)[None], 100)[0].tolist() == picks


def test_knn_includes_the_centre_and_matches_a_sort(test_clouds):
    """The neighbour sets equal a stable sort of the distances, and each centre is its own neighbour. Catches the
    centre excluded, the k largest taken, and distances to the wrong cloud of the batch."""
    xyz = torch.from_numpy(test_clouds[:3])
    centres = torch.stack([xyz[b, farthest_point_sample(xyz[b:b + 1], 64)[0]] for b in range(3)])
    found = knn_indices(xyz, centres, 90)
    for b in range(3):
        want = ref_knn(test_clouds[b], centres[b].numpy(), 90)
        assert [sorted(r) for r in found[b].tolist()] == [sorted(r) for r in want.tolist()]
        own = farthest_point_sample(xyz[b:b + 1], 64)[0]
        assert all(int(c) in row for c, row in zip(own, found[b].tolist()))


@pytest.mark.parametrize("kwargs, message", [
    ({"normalize": "x"}, "PointNN.normalize must be 'cloud' or 'batch', got 'x'"),
    ({"num_stages": 0}, "PointNN.num_stages must be an integer >= 1, got 0"),
    ({"k_neighbors": 2.5}, "PointNN.k_neighbors must be an integer >= 1, got 2.5"),
    ({"embed_dim": 70}, "PointNN.embed_dim must be a multiple of 6"),
    ({"alpha": 0.0}, "PointNN.alpha must be a finite number > 0, got 0.0"),
    ({"beta": float("nan")}, "PointNN.beta must be a finite number > 0, got nan"),
])
def test_settings_are_validated_naming_the_field(kwargs, message):
    """Bad settings raise CalipError naming the field. Catches silent acceptance (e.g. an unknown normalize
    falling through to one of the modes)."""
    with pytest.raises(CalipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PointNN(**kwargs)


def test_inputs_too_small_or_misshaped_are_errors():
    """Too few points for the stages and k, or not [B, N, 3]: CalipError with the numbers. Catches topk or FPS
    failing with an opaque RuntimeError deep inside."""
    with pytest.raises(CalipError, match=r"needs at least 720 points per cloud, got 512"):
        PointNN()(torch.rand(1, 512, 3))
    with pytest.raises(CalipError, match=r"expects points of shape \[B, N, 3\]"):
        PointNN()(torch.rand(1024, 3))
    assert PointNN.as_released().normalize == "batch" and RELEASE_ENCODER["k_neighbors"] == 90
    assert PointNN().out_dim == 1152 and PointNN(num_stages=2, embed_dim=6).out_dim == 24


def test_encode_clouds_batches_consecutively_in_dataset_order(test_clouds):
    """encode_clouds with normalize="batch" equals the encoder on consecutive batches (the last one shorter), from
    numpy or torch input, and returns an ordinary (non-inference) CPU tensor. Catches shuffled, padded or dropped
    batches and an inference tensor leaking out. A small encoder: the equality is about the batching."""
    encoder = PointNN(num_stages=2, embed_dim=12, k_neighbors=8, normalize="batch")
    clouds = test_clouds[:11, :128]
    got = encode_clouds(clouds, encoder, batch_size=4, device="cpu")
    x = torch.from_numpy(clouds)
    want = torch.cat([encoder(x[0:4]), encoder(x[4:8]), encoder(x[8:11])])
    assert torch.equal(got, want) and not got.is_inference() and got.device.type == "cpu"
    assert torch.equal(encode_clouds(x, encoder, batch_size=4, device=torch.device("cpu")), got)
    assert not torch.allclose(encode_clouds(clouds, encoder, batch_size=11, device="cpu"), got, atol=1e-4)
    got.mul_(2)  # ordinary tensor: in-place edits allowed
    assert encode_clouds(clouds[:0], encoder, device="cpu").shape == (0, 48)
    with pytest.raises(CalipError, match="batch_size must be an integer >= 1, got 0"):
        encode_clouds(clouds, encoder, batch_size=0, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_features_equal_cpu(test_clouds):
    """The same features on a GPU (both normalisations). Catches device mismatches and CPU-only indexing."""
    x = torch.from_numpy(test_clouds[:8])
    for normalize in ("cloud", "batch"):
        encoder = PointNN(normalize=normalize)
        cpu, gpu = encoder(x), encoder(x.cuda()).cpu()
        assert float((cpu - gpu).abs().max() / cpu.abs().max()) < 1e-4


# -------------------------------------------------------------------------------------------- the memory bank


@pytest.fixture(scope="module")
def encoded(modelnet_h5_dir):
    """Release-encoded features (batch 16 in file order, batch-wide sigma) of the 127 train and 29 test shapes."""
    train, train_labels = load_h5(modelnet_h5_dir, "train")
    test, test_labels = load_h5(modelnet_h5_dir, "test")
    encoder = PointNN.as_released()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the autouse one_thread fixture
    try:
        return (encode_clouds(train, encoder, device="cpu"), torch.from_numpy(train_labels),
                encode_clouds(test, encoder, device="cpu"), torch.from_numpy(test_labels))
    finally:
        torch.set_num_threads(threads)


def loop_logits(test: np.ndarray, memory: np.ndarray, labels: np.ndarray, num_classes: int, gamma: float):
    """exp(-gamma (1 - cos)) summed per class, one test item and one memory item at a time, in float64."""
    out = np.zeros((len(test), num_classes))
    for i, t in enumerate(test):
        for m, label in zip(memory, labels):
            cos = float(t @ m) / (math.sqrt(float(t @ t)) * math.sqrt(float(m @ m)))
            out[i, label] += math.exp(-gamma * (1 - cos))
    return out


def test_memory_logits_equal_the_formula(encoded):
    """memory_logits equals the per-item loop (float64 exactly, float32 to its rounding). Catches a missing
    L2 normalisation, exp(-gamma * a) or exp(gamma * (a - 1)) written otherwise, and one-hot columns swapped."""
    train, train_labels, test, _ = encoded
    t, m, y = test[:10].double().numpy(), train[:60].double().numpy(), train_labels[:60].numpy()
    for gamma in (0.0, 2.0, 50.0, 400.0):
        want = loop_logits(t, m, y, 40, gamma)
        got64 = memory_logits(torch.from_numpy(t), torch.from_numpy(m), torch.from_numpy(y), 40, gamma)
        assert got64.dtype == torch.float64 and got64.shape == (10, 40)
        np.testing.assert_allclose(got64.numpy(), want, rtol=1e-10, atol=1e-300)
        got32 = memory_logits(test[:10], train[:60], train_labels[:60], 40, gamma)
        np.testing.assert_allclose(got32.double().numpy(), want, rtol=1e-6 * max(1.0, gamma), atol=1e-30)
    assert torch.equal(memory_logits(t, m, y, 40, 0.0).sum(1), torch.full((10,), 60.0, dtype=torch.float64))


def plain_predictions(test, memory, labels, num_classes, grid) -> torch.Tensor:
    """The release's line as written, in float32: `(-gamma * (1 - affinity)).exp() @ onehot`, argmax: `[G, M]`."""
    t, m = test / test.norm(dim=-1, keepdim=True), memory / memory.norm(dim=-1, keepdim=True)
    affinity, onehot = t @ m.T, torch.nn.functional.one_hot(labels, num_classes).float()
    return torch.stack([((-gamma * (1 - affinity)).exp() @ onehot).argmax(dim=1) for gamma in grid])


def test_search_gamma_equals_the_release_loop_and_beats_chance(encoded):
    """search_gamma over the full 5000-gamma grid equals the release's loop (start (0, 0), strictly better only,
    first best) over memory_logits, and so do the per-gamma counts; the release's float32 line as written makes the
    same 145,000 decisions. The chosen accuracy on the 29 test shapes with the 127 train shapes as memory is far
    above chance (40 classes). Catches a chunk boundary bug, the last best kept instead of the first, >= instead of
    >, gammas evaluated on the wrong labels, and a fast path whose flushed subnormal terms change decisions."""
    train, train_labels, test, test_labels = encoded
    best_gamma, best_acc, predictions = 0, 0.0, []
    for gamma in POINTNN_GAMMA_GRID:
        predictions.append(memory_logits(test, train, train_labels, 40, gamma).argmax(dim=1))
        acc = 100.0 * int((predictions[-1] == test_labels).sum()) / len(test_labels)
        if acc > best_acc:
            best_gamma, best_acc = gamma, acc
    predictions = torch.stack(predictions)
    counts = (predictions == test_labels).sum(dim=1)
    assert torch.equal(gamma_correct_counts(test, train, train_labels, 40, test_labels), counts)
    assert search_gamma(test, train, train_labels, 40, test_labels) == (best_gamma, best_acc)
    plain = plain_predictions(test, train, train_labels, 40, POINTNN_GAMMA_GRID)
    assert int((plain != predictions).sum()) == 0
    majority = 100.0 * np.bincount(test_labels.numpy()).max() / len(test_labels)
    print(f"Point-NN memory bank, 127 train -> 29 test shapes: {best_acc:.2f}% at gamma {best_gamma} "
          f"(gamma 0: {100 * int(counts[0]) / 29:.2f}%; chance 2.5%, majority class {majority:.2f}%)")
    assert best_acc >= 50.0


def test_gamma_counts_through_the_subnormal_regime():
    """Synthetic features whose affinities take many test items through the range where float32 exp is subnormal or
    zero (and exact ties at gamma 0): the fast counts still equal the memory_logits loop, and the release's float32
    line as written disagrees on at most a few decisions (its exp differs from the correctly rounded value by one
    unit, 1.4e-45, on some subnormal terms). Catches a flush without the exact re-check, a wrong zero-row rule, and
    a re-check on the wrong gamma or column."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 12, (700,), generator=g)
    centres = torch.randn(12, 48, generator=g)
    memory = 8 + centres[labels] + 1.5 * torch.randn(700, 48, generator=g)
    truth = torch.randint(0, 12, (90,), generator=g)
    test = 8 + centres[truth] + 1.5 * torch.randn(90, 48, generator=g)
    grid = range(0, 10000, 40)
    loop = torch.stack([memory_logits(test, memory, labels, 12, gamma).argmax(dim=1) for gamma in grid])
    assert torch.equal(gamma_correct_counts(test, memory, labels, 12, truth, grid), (loop == truth).sum(dim=1))
    distance = 1 - torch.nn.functional.normalize(test, dim=1) @ torch.nn.functional.normalize(memory, dim=1).T
    subnormal_rows = sum(int(((gamma * distance.min(dim=1).values) > 87.3).sum()) for gamma in grid)
    assert subnormal_rows > 0.2 * loop.numel()  # the regime is exercised
    differing = int((plain_predictions(test, memory, labels, 12, grid) != loop).sum())
    assert differing <= 0.002 * loop.numel(), differing


def test_search_gamma_order_rules(encoded):
    """The grid is searched in its own order (a reversed grid gives the last best of the forward grid), only a
    strictly better accuracy replaces, and (0, 0.0) comes back when nothing is right, even for a grid without 0.
    Catches a search that sorts the grid, keeps the last maximum, or starts from the first grid point."""
    train, train_labels, test, test_labels = encoded
    grid = list(range(0, 400, 2))
    counts = gamma_correct_counts(test, train, train_labels, 40, test_labels, grid)
    best = counts.max()
    tied = [g for g, c in zip(grid, counts.tolist()) if c == best]
    assert search_gamma(test, train, train_labels, 40, test_labels, grid)[0] == tied[0]
    assert search_gamma(test, train, train_labels, 40, test_labels, grid[::-1])[0] == tied[-1]
    absent = next(c for c in range(1, 40) if c not in set(train_labels.tolist()))
    never = torch.full_like(test_labels, absent)
    assert search_gamma(test, train, train_labels, 40, never, range(2, 100, 2)) == (0, 0.0)


def test_memory_bank_inputs_are_validated(encoded):
    """Mismatched shapes or labels outside [0, num_classes) raise CalipError. Catches one_hot silently widening
    the classes or a broadcasting mistake."""
    train, train_labels, test, test_labels = encoded
    with pytest.raises(CalipError, match=r"labels must lie in \[0, 10\)"):
        memory_logits(test, train, train_labels, 10, 1.0)
    with pytest.raises(CalipError, match="expected test"):
        memory_logits(test[:, :10], train, train_labels, 40, 1.0)
    with pytest.raises(CalipError, match="eval_labels"):
        search_gamma(test, train, train_labels, 40, test_labels[:5])
