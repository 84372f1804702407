"""Point-NN's non-parametric point-cloud encoder (Zhang et al., CVPR 2023), batched and vectorised in torch.

As the release runs it (ZrrSkywalker/Point-NN `models/point_nn.py`, `models/model_utils.py`, the `pointnet2_ops`
FPS kernel, `run_nn_cls.py`; docs: /work/shared/reference/methods.md sections 3.1 and 5.3):

0. PosE of the raw xyz `[B, N, 3] -> [B, N, embed_dim]`: `fd = dim / 6`, `freq_j = alpha ** (j / fd)`,
   `e = beta * coord / freq_j`; channel `axis * 2 fd + 2 j` is `sin(e)`, channel `+ 1` is `cos(e)`.
1. Per stage, on the stage's `P` points with `C` channels (`P = N, N/2, ...`; `C = embed_dim, 2 embed_dim, ...`):
   - FPS picks `G = P // 2` centres: start at index 0, running minimum of squared distances initialised to 1e10,
     take its argmax (lowest index on ties); points with `x^2 + y^2 + z^2 <= 1e-3` are never picked (the start
     index 0 excepted: the kernel writes it unconditionally);
   - kNN: the `k` nearest of the `P` points to each centre by `-2 c.x + |c|^2 + |x|^2`, the centre included;
   - LGA: `dx` = neighbour features - centre feature `[B, G, k, C]`, `dxyz` = neighbour xyz - centre xyz
     `[B, G, k, 3]`; each is divided by its own unbiased standard deviation + 1e-5 (`normalize="batch"`: over the
     whole batch tensor, as released; `"cloud"`: over that cloud's slice of it); `feat = [dx, centre feature]`
     `[B, G, k, 2C]`; `w = (feat + PE(dxyz)) * PE(dxyz)` with a PosE of width `2C` (the stage's output width);
   - pooling: max over the k neighbours + mean over them, then the untrained BatchNorm1d in eval mode
     (`x / sqrt(1 + 1e-5)`) and the exact (erf) GELU, giving `[B, G, 2C]`; the centres are the next stage's points.
2. Global feature: max over the last stage's groups + mean over them, `[B, embed_dim * 2 ** num_stages]`.

The release's batch-wide sigma makes a cloud's feature depend on its batch mates (batch 16, consecutive clouds in
dataset order). `normalize="cloud"` (the default here) computes the same statistic per cloud, so a cloud's
feature is the same alone and in any batch.

Tensors are channels-last throughout (the release is channels-first; the values are the same). The encoder has no
parameters or buffers: it runs on the device and in the float precision of its input (float32 unless float64 is
given; other dtypes are converted to float32).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from calip3d.errors import CalipError

if TYPE_CHECKING:
    import numpy as np

NORMALIZATIONS = ("cloud", "batch")

# The settings the release runs, and where they come from (methods.md section 5.3).
RELEASE_POINTS = 1024  # "the first 1024 of the 2048 stored points, no normalisation" (run_nn_cls.py)
RELEASE_BATCH_SIZE = 16  # "Freeze as 16": the batch-wide sigma (run_nn_cls.py)
RELEASE_ENCODER = {"num_stages": 4, "embed_dim": 72, "k_neighbors": 90, "alpha": 1000.0, "beta": 100.0,
                   "normalize": "batch"}
RELEASE_SETTINGS = (
    "Point-NN as released (ZrrSkywalker/Point-NN a85bfc3): 4 stages, embed_dim 72, k = 90, alpha 1000, beta 100 "
    "(the run_nn_cls.py CLI, l.32-33, overrides the Point_NN class's swapped defaults beta 1000, alpha 100); "
    "1024 points per cloud (the first 1024 stored, no normalisation); groups 512/256/128/64, widths "
    "144/288/576/1152; batch 16 in dataset order with a batch-wide sigma (normalize='batch'); "
    "FPS zero-norm rule from the pointnet2_ops kernel (x^2 + y^2 + z^2 <= 1e-3 never picked)"
)

FPS_INIT_DISTANCE = 1e10  # the kernel's initial running-minimum distance
FPS_MIN_NORM2 = 1e-3  # the kernel skips points with x^2 + y^2 + z^2 <= this
SIGMA_EPS = 1e-5  # LGA: divide by std + 1e-5
BATCHNORM_EPS = 1e-5  # BatchNorm1d default eps; fresh running stats (mean 0, var 1) in eval mode
_CHUNK_ELEMENTS = 1 << 19  # float elements of a chunk's [groups, K, 2C] tensor per CPU thread (2 MiB: in cache)
_CHUNK_ELEMENTS_GPU = 1 << 28  # on a GPU (1 GiB): few, large kernels


def farthest_point_sample(xyz: torch.Tensor, num: int) -> torch.Tensor:
    """FPS as the `pointnet2_ops` kernel runs it: indices `[B, num]` (int64) into `xyz [B, P, 3]`.

    Starts at index 0; each step updates the running minimum of the squared distance (initialised to 1e10, computed
    as `dx^2 + dy^2 + dz^2` in the input precision) to the point picked last and picks its argmax, lowest index on
    ties. Points with `x^2 + y^2 + z^2 <= 1e-3` are never picked after the start; a cloud without any other point
    gets index 0 for the remaining picks, as the kernel does. One vectorised step over the batch per pick.
    """
    batch, count, _ = xyz.shape
    if not 1 <= num <= count:
        raise CalipError(f"farthest_point_sample needs 1 <= num <= {count} points, got num={num}")
    planes = xyz.transpose(1, 2).contiguous()  # [B, 3, P]
    norm2 = planes[:, 0] * planes[:, 0] + planes[:, 1] * planes[:, 1] + planes[:, 2] * planes[:, 2]
    # Points the kernel skips sit at -1 (below every real distance) and stay there under the running minimum.
    # The kernel compares the float magnitude with the double literal 1e-3: compare in float64 too.
    start, skipped = (torch.tensor(v, dtype=xyz.dtype, device=xyz.device) for v in (FPS_INIT_DISTANCE, -1.0))
    nearest = torch.where(norm2.double() > FPS_MIN_NORM2, start, skipped)  # [B, P]
    chosen = torch.zeros(batch, num, dtype=torch.long, device=xyz.device)
    last = torch.zeros(batch, 1, 1, dtype=torch.long, device=xyz.device)
    for step in range(1, num):
        centre = planes.gather(2, last.expand(batch, 3, 1))  # [B, 3, 1]
        diff = planes - centre
        diff.mul_(diff)
        dist = diff[:, 0] + diff[:, 1]
        dist += diff[:, 2]
        torch.minimum(nearest, dist, out=nearest)
        pick = nearest.argmax(dim=1)  # first maximum
        chosen[:, step] = pick
        last = pick.view(batch, 1, 1)
    return chosen


def knn_indices(xyz: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """Indices `[B, G, k]` of the k points of `xyz [B, P, 3]` nearest to each of `centres [B, G, 3]`, by the
    release's squared distance `-2 c.x + |c|^2 + |x|^2` (the centre itself included when it is one of the points).

    The order within a neighbourhood is unspecified (pooling is order-free); ties at the k-th distance resolve as
    `torch.topk` does (the release uses it too). The dot product is written out per axis, not as a matmul, so the
    distances, and with them the neighbour sets, do not depend on the BLAS or on TF32 settings."""
    if not 1 <= k <= xyz.shape[1]:
        raise CalipError(f"knn_indices needs 1 <= k <= {xyz.shape[1]} points, got k={k}")
    px, py, pz = (xyz[:, None, :, a] for a in range(3))  # [B, 1, P]
    cx, cy, cz = (centres[:, :, None, a] for a in range(3))  # [B, G, 1]
    dist = cx * px
    dist += cy * py
    dist += cz * pz
    dist *= -2.0
    dist += cx * cx + cy * cy + cz * cz
    dist += px * px + py * py + pz * pz
    return dist.topk(k, dim=-1, largest=False, sorted=False).indices


def pos_embed(coords: torch.Tensor, dim: int, alpha: float, beta: float) -> torch.Tensor:
    """The release's PosE: `coords [..., 3] -> [..., dim]` (dim a multiple of 6), `fd = dim / 6`,
    `freq_j = alpha ** (j / fd)`, `e = beta * coord / freq_j`; channel `axis * 2 fd + 2 j` = sin(e), `+ 1` = cos(e)."""
    fd = dim // 6
    freq = torch.pow(torch.tensor(alpha, dtype=coords.dtype, device=coords.device),
                     torch.arange(fd, dtype=coords.dtype, device=coords.device) / fd)  # [fd]
    e = torch.mul(coords, beta).unsqueeze(-1) / freq  # [..., 3, fd]
    out = torch.empty(*e.shape, 2, dtype=coords.dtype, device=coords.device)  # [..., 3, fd, 2]
    torch.sin(e, out=out[..., 0])
    torch.cos(e, out=out[..., 1])
    return out.view(*coords.shape[:-1], dim)


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`values [B, P, C]` at `index [B, ...]` -> `[B, ..., C]`."""
    batch, count, channels = values.shape
    offsets = torch.arange(batch, device=values.device).mul_(count).view(batch, *([1] * (index.dim() - 1)))
    return values.reshape(batch * count, channels)[index + offsets]


def _rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The rows of `values [P, C]` at `index [...]` -> `[..., C]` (index_select: several times faster than
    advanced indexing on the CPU)."""
    return values.index_select(0, index.reshape(-1)).view(*index.shape, values.shape[1])


def _std(values: torch.Tensor, per_cloud: bool) -> torch.Tensor:
    """Unbiased std of `values [B, L]`: of each cloud's row (`[B]`) or of the whole tensor (`[]`)."""
    return values.std(dim=1) if per_cloud else values.std()


def _std_from_sums(sums: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased std `[B]` from float64 `sums [2, B]` (sum and sum of squares of n values each)."""
    return ((sums[1] - sums[0] * sums[0] / n) / (n - 1)).clamp_(min=0).sqrt_()


class PointNN(torch.nn.Module):
    """Point-NN's training-free encoder: `points [B, N, 3] -> features [B, embed_dim * 2 ** num_stages]`.

    The defaults are the release's settings (1152-dim features) except `normalize`: `"cloud"` computes LGA's
    sigma per cloud (a cloud's feature does not depend on its batch); `"batch"` over the whole batch tensor, as
    released (see `RELEASE_SETTINGS`; the release runs batches of 16 consecutive clouds of 1024 points).
    Each stage needs `k_neighbors` <= its number of points and at least 2 points (N >= 2 ** num_stages).
    """

    def __init__(self, num_stages: int = 4, embed_dim: int = 72, k_neighbors: int = 90, alpha: float = 1000.0,
                 beta: float = 100.0, normalize: str = "cloud") -> None:
        super().__init__()
        for name, value in (("num_stages", num_stages), ("embed_dim", embed_dim), ("k_neighbors", k_neighbors)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise CalipError(f"PointNN.{name} must be an integer >= 1, got {value!r}")
        if embed_dim % 6:
            raise CalipError(f"PointNN.embed_dim must be a multiple of 6 (3 axes x sin/cos), got {embed_dim}")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or value <= 0:
                raise CalipError(f"PointNN.{name} must be a finite number > 0, got {value!r}")
        if normalize not in NORMALIZATIONS:
            raise CalipError(f"PointNN.normalize must be 'cloud' or 'batch', got {normalize!r}")
        self.num_stages = int(num_stages)
        self.embed_dim = int(embed_dim)
        self.k_neighbors = int(k_neighbors)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.normalize = normalize

    @classmethod
    def as_released(cls) -> "PointNN":
        """The encoder with every setting as the release runs it, the batch-wide sigma included."""
        return cls(**RELEASE_ENCODER)

    @property
    def out_dim(self) -> int:
        """The width F of the global feature: `embed_dim * 2 ** num_stages`."""
        return self.embed_dim * 2 ** self.num_stages

    def extra_repr(self) -> str:
        return (f"num_stages={self.num_stages}, embed_dim={self.embed_dim}, k_neighbors={self.k_neighbors}, "
                f"alpha={self.alpha:g}, beta={self.beta:g}, normalize={self.normalize!r}")

    def check_points(self, points: torch.Tensor) -> None:
        """`CalipError` unless `points` is `[B, N, 3]` with enough points for every stage's FPS and kNN."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise CalipError(f"PointNN expects points of shape [B, N, 3], got {tuple(points.shape)}")
        count = points.shape[1]
        least = max(2 ** self.num_stages, self.k_neighbors * 2 ** (self.num_stages - 1))
        for stage in range(self.num_stages):
            if count < 2 or self.k_neighbors > count:
                raise CalipError(f"PointNN with num_stages={self.num_stages}, k_neighbors={self.k_neighbors} needs "
                                 f"at least {least} points per cloud, got {points.shape[1]} (stage {stage + 1} has "
                                 f"{count})")
            count //= 2

    @torch.inference_mode()
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Global features `[B, F]` of `points [B, N, 3]`, on the points' device.

        Runs under `torch.inference_mode()`: the result is an inference tensor (`.clone()` it outside inference
        mode before modifying it in place; `encode_clouds` returns ordinary tensors)."""
        self.check_points(points)
        xyz = points if points.dtype in (torch.float32, torch.float64) else points.float()
        feats = pos_embed(xyz, self.embed_dim, self.alpha, self.beta)  # [B, N, embed_dim]
        per_cloud = self.normalize == "cloud"
        for _ in range(self.num_stages):
            xyz, feats = self._stage(xyz, feats, per_cloud)
        return feats.amax(dim=1) + feats.mean(dim=1)

    def _stage(self, xyz: torch.Tensor, feats: torch.Tensor, per_cloud: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One FPS + kNN + LGA + pooling stage: `xyz [B, P, 3]`, `feats [B, P, C]` -> centres `[B, P//2, 3]` and
        their features `[B, P//2, 2C]`.

        The `[B, G, K, 2C]` neighbourhood tensors are never built whole: the B*G groups are processed in chunks
        that stay in cache (on the CPU) after a first pass over the same chunks gathers the sigma statistics."""
        batch, count, channels = feats.shape
        k = self.k_neighbors
        centre_idx = farthest_point_sample(xyz, count // 2)  # [B, G]
        groups = centre_idx.shape[1]
        centre_xyz, centre_x = _gather(xyz, centre_idx), _gather(feats, centre_idx)  # [B, G, 3], [B, G, C]
        neighbours = knn_indices(xyz, centre_xyz, k)  # [B, G, K]
        rows = batch * groups  # one row per group of the batch
        offsets = torch.arange(batch, device=xyz.device).mul_(count).view(batch, 1, 1)
        neighbours = neighbours.add_(offsets).view(rows, k)  # into the flattened [B * P] points
        flat_x, flat_xyz = feats.reshape(batch * count, channels), xyz.reshape(batch * count, 3)
        centre_x, centre_xyz = centre_x.view(rows, 1, channels), centre_xyz.view(rows, 1, 3)

        cloud_of_row = torch.arange(rows, device=xyz.device) // groups

        def divisor(sigma: torch.Tensor) -> torch.Tensor:
            """`sigma + 1e-5` per row, `[rows, 1, 1]`, from a `[B]` (per cloud) or one-element sigma."""
            sigma = sigma.to(feats.dtype).add_(SIGMA_EPS).reshape(-1)
            return (sigma[cloud_of_row] if per_cloud else sigma.expand(rows)).view(rows, 1, 1)

        dxyz = _rows(flat_xyz, neighbours).sub_(centre_xyz)  # [rows, K, 3]: small, built whole
        dxyz.div_(divisor(_std(dxyz.view(batch, groups * k * 3), per_cloud)))
        budget = _CHUNK_ELEMENTS * max(1, torch.get_num_threads()) if xyz.device.type == "cpu" else _CHUNK_ELEMENTS_GPU
        chunk = max(1, budget // (k * 2 * channels))  # groups per chunk
        parts = [slice(start, start + chunk) for start in range(0, rows, chunk)]

        sums = torch.zeros(2, batch, dtype=torch.float64, device=xyz.device)  # per cloud: sum, sum of squares of dx
        for part in parts:
            dx = _rows(flat_x, neighbours[part]).sub_(centre_x[part])  # [R, K, C]
            per_row = torch.stack((dx.sum(dim=(1, 2)), dx.mul_(dx).sum(dim=(1, 2)))).double()  # [2, R]
            sums.index_add_(1, cloud_of_row[part], per_row)
        per_x = groups * k * channels
        sigma_x = _std_from_sums(sums, per_x) if per_cloud else _std_from_sums(sums.sum(1, keepdim=True), batch * per_x)
        divisor_x = divisor(sigma_x)

        out = torch.empty(rows, 2 * channels, dtype=feats.dtype, device=feats.device)
        for part in parts:
            dx = _rows(flat_x, neighbours[part]).sub_(centre_x[part]).div_(divisor_x[part])  # [R, K, C]
            w = pos_embed(dxyz[part], 2 * channels, self.alpha, self.beta)  # [R, K, 2C]: PE(dxyz), made w in place
            pe_x, pe_c = w[..., :channels], w[..., channels:]
            pe_x.mul_(dx.add_(pe_x))  # (dx + PE) * PE
            pe_c.mul_(pe_c + centre_x[part])  # (centre feature + PE) * PE
            torch.add(w.amax(dim=1), w.mean(dim=1), out=out[part])  # max + mean over the K neighbours
        out /= math.sqrt(1.0 + BATCHNORM_EPS)  # BatchNorm1d in eval mode with fresh statistics
        return centre_xyz.view(batch, groups, 3), F.gelu(out).view(batch, groups, 2 * channels)


def encode_clouds(points: np.ndarray | torch.Tensor, encoder: PointNN, batch_size: int = RELEASE_BATCH_SIZE,
                  device: str | torch.device = "auto", desc: str = "Point-NN features") -> torch.Tensor:
    """Features `[M, F]` (float32 unless float64 points, on the CPU) of a dataset's clouds `points [M, N, 3]`
    (numpy or torch), encoded in batches of `batch_size` consecutive clouds in dataset order (the last one
    shorter), as the release does; with `normalize="batch"` the batches decide the features. `device`: `auto`
    (CUDA when available), `cpu`, `cuda`, `cuda:N` or a `torch.device`. A progress bar on stderr counts the clouds.
    """
    from calip3d.backbone import resolve_device
    from calip3d.distributed import Progress

    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise CalipError(f"encode_clouds batch_size must be an integer >= 1, got {batch_size!r}")
    clouds = torch.as_tensor(points)
    if clouds.dim() != 3 or clouds.shape[-1] != 3:
        raise CalipError(f"encode_clouds expects points of shape [M, N, 3], got {tuple(clouds.shape)}")
    target = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = torch.float64 if clouds.dtype == torch.float64 else torch.float32
    out = torch.empty(clouds.shape[0], encoder.out_dim, dtype=dtype)
    with Progress(clouds.shape[0], desc) as progress:
        for start in range(0, clouds.shape[0], batch_size):
            batch = clouds[start:start + batch_size].to(target, dtype)
            out[start:start + batch.shape[0]].copy_(encoder(batch))
            progress.update(batch.shape[0])
    return out
