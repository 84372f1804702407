"""What CALIP looks at: attention maps, per-view terms and probabilities for one point cloud or one image.

The numbers come from the same code path as `calip_terms` (`calip_attention` then `terms_from_attention`), so the
maps shown are the ones that produced the terms, and the final probabilities are `classify`'s (3D: per-view terms
summed with the view weights and combined, `calip_scores`, softmax) or `eval`'s (2D). Pure computation, no drawing
(`calip3d.figures` draws an `Explanation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .atomic import atomic_write
from .attention import calip_attention, calip_scores, terms_from_attention
from .backbone import CLIPBackbone
from .errors import CalipError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
NPZ_KEYS = ("positions", "grid", "views", "terms", "classes", "view_weights", "betas")
TERM_NAMES = ("CLIP", "visual-guided", "textual-blended")


@dataclass(frozen=True)
class TokenGrid:
    """The spatial token grid. `tokens[h, w]` is the index, in the image tower's output sequence, of the token at
    grid cell (h, w); index 0 is the global token (CLS for ViT, the mean-token query for ResNet), which CALIP does
    not attend over. Spatial position n of `positions` is the cell holding token n + 1 (row-major)."""

    tokens: np.ndarray  # [H, W] int64

    @property
    def height(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def width(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def size(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Explanation:
    """CALIP on one input (V = 1 view for an image), for its K top classes by the final CALIP probability.

    - `views`: what the backbone sees: `[V, S, S]` depth images (point cloud) or `[V, 3, S, S]` RGB in [0, 1]
      (image; the model's crop, before mean/std normalisation).
    - `positions`: `[V, K, N]` CALIP's softmax over the N = H*W spatial positions, per view and top class.
    - `terms`: `[V, K, 3]` the CLIP, visual-guided and textual-blended terms, without logit scale.
    - `probabilities` / `clip_probabilities`: `[C]` over all candidate classes, CALIP and plain CLIP (PointCLIP
      for a cloud: the CLIP term summed over views with the same view weights), logit scale 100.
    """

    kind: str  # "cloud" or "image"
    classnames: tuple[str, ...]
    views: np.ndarray
    view_names: tuple[str, ...]
    grid: TokenGrid
    top: np.ndarray  # [K] class indices, most probable first
    positions: np.ndarray
    terms: np.ndarray
    view_weights: np.ndarray  # [V]
    betas: np.ndarray  # [3]
    probabilities: np.ndarray  # [C]
    clip_probabilities: np.ndarray  # [C]
    temperature: float

    @property
    def top_classes(self) -> list[str]:
        return [self.classnames[i] for i in self.top]

    def save_npz(self, path: str | Path) -> Path:
        """Write the raw numbers behind the pictures (keys `NPZ_KEYS`) to `path`, atomically."""
        arrays = {"positions": self.positions, "grid": self.grid.tokens, "views": self.views, "terms": self.terms,
                  "classes": np.asarray(self.top_classes, dtype=str), "view_weights": self.view_weights,
                  "betas": self.betas}

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)

        return atomic_write(path, write)


@dataclass(frozen=True)
class SavedMaps:
    """The contents of a `save_npz` file (shapes as in `Explanation`; `classes` `[K]` names)."""

    positions: np.ndarray
    grid: TokenGrid
    views: np.ndarray
    terms: np.ndarray
    classes: tuple[str, ...]
    view_weights: np.ndarray
    betas: np.ndarray


def load_maps(path: str | Path) -> SavedMaps:
    """Read a file written by `Explanation.save_npz`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in NPZ_KEYS}
    except (OSError, ValueError, KeyError) as err:
        raise CalipError(f"{path} is not a calip3d attention-map file ({', '.join(NPZ_KEYS)}): {err}") from None
    return SavedMaps(positions=arrays["positions"], grid=TokenGrid(arrays["grid"]), views=arrays["views"],
                     terms=arrays["terms"], classes=tuple(str(c) for c in arrays["classes"]),
                     view_weights=arrays["view_weights"], betas=arrays["betas"])


def token_grid(backbone: CLIPBackbone, positions: int) -> TokenGrid:
    """The grid of the backbone's `positions` spatial tokens: the attention pool's H x W for a ResNet (image size
    / 32), the patch grid for a ViT."""
    vis = backbone.visual
    if backbone.architecture == "vit":
        height, width = (int(s) for s in vis.grid_size)
    else:
        height = width = backbone.image_size // 32
    if height * width != positions:
        raise ValueError(f"the backbone gave {positions} spatial tokens, expected a {height} x {width} grid")
    return TokenGrid(np.arange(1, positions + 1, dtype=np.int64).reshape(height, width))


def is_image_file(path: str | Path) -> bool:
    """True for image files by extension, in any case (`.JPEG`, `.png`, ...)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> Any:
    """Open an image file as an RGB `PIL.Image`; an unreadable file is a `CalipError` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise CalipError(f"cannot read the image {path}: {err}") from None


def image_inputs(image: Any, transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """A PIL image -> (model input `[3, S, S]`, the same crop for display `[3, S, S]` in [0, 1]).

    The display crop is the model's own transform without its mean/std normalisation, so the attention maps line
    up with it exactly; a transform that is not a torchvision `Compose` falls back to rescaling the input to [0, 1].
    """
    from torchvision.transforms import Compose, Normalize

    pixels = transform(image)
    steps = getattr(transform, "transforms", None)
    if steps is not None and any(isinstance(t, Normalize) for t in steps):
        display = Compose([t for t in steps if not isinstance(t, Normalize)])(image)
    else:
        low, high = pixels.amin(), pixels.amax()
        display = (pixels - low) / (high - low).clamp_min(1e-12)
    return pixels, display.clamp(0, 1)


def _check_common(text_feats: torch.Tensor, classnames: Sequence[str], betas: Sequence[float], top_k: int) -> None:
    if text_feats.ndim != 2 or text_feats.shape[0] != len(classnames):
        raise CalipError(f"text features {tuple(text_feats.shape)} do not match the {len(classnames)} class names")
    if len(betas) != 3:
        raise CalipError(f"betas must be three numbers (beta1, beta2, beta3), got {list(betas)}")
    if top_k < 1:
        raise CalipError(f"the number of classes shown must be >= 1, got {top_k}")


def _attend(backbone: CLIPBackbone, images: torch.Tensor, text_feats: torch.Tensor, temperature: float):
    """Images `[M, 3, S, S]` -> (over_positions `[M, N, C]`, terms 3 x `[M, C]`, grid), float32, as `calip_terms`."""
    glob, spatial = backbone.encode_image(images)
    fv, fs, ft = glob.float(), spatial.float(), text_feats.to(backbone.device).float()
    over_positions, over_classes = calip_attention(fs, ft, temperature)
    terms = terms_from_attention(fv, fs, ft, over_positions, over_classes)
    return over_positions, terms, token_grid(backbone, fs.shape[1])


def _explanations(kind: str, views: torch.Tensor, view_names: Sequence[str], over_positions: torch.Tensor,
                  terms: Sequence[torch.Tensor], grid: TokenGrid, classnames: Sequence[str],
                  view_weights: Sequence[float] | None, betas: Sequence[float], temperature: float,
                  top_k: int) -> list[Explanation]:
    """Per input: views `[B, V, ...]`, over_positions `[B, V, N, C]`, terms 3 x `[B, V, C]` -> explanations."""
    terms = [t.cpu() for t in terms]
    num_views = terms[0].shape[1]
    calip = calip_scores(terms, betas, view_weights).softmax(dim=-1)  # [B, C]
    clip = calip_scores(terms, None, view_weights).softmax(dim=-1)
    top = calip.topk(min(top_k, len(classnames)), dim=-1).indices  # [B, K]
    stacked = torch.stack(terms, dim=-1)  # [B, V, C, 3]
    weights = np.asarray(view_weights if view_weights is not None else [1.0] * num_views, dtype=np.float32)
    out = []
    for b in range(len(top)):
        index = top[b]
        out.append(Explanation(
            kind=kind, classnames=tuple(classnames), views=views[b].float().cpu().numpy(),
            view_names=tuple(view_names), grid=grid, top=index.numpy(),
            positions=over_positions[b][..., index.to(over_positions.device)].transpose(1, 2).cpu().numpy(),
            terms=stacked[b][:, index].numpy(), view_weights=weights, betas=np.asarray(betas, dtype=np.float32),
            probabilities=calip[b].numpy(), clip_probabilities=clip[b].numpy(), temperature=float(temperature)))
    return out


@torch.inference_mode()
def explain_clouds(
    backbone: CLIPBackbone,
    points: torch.Tensor | np.ndarray,
    projector: Any,
    text_feats: torch.Tensor,
    classnames: Sequence[str],
    betas: Sequence[float],
    view_weights: Sequence[float] | None = None,
    temperature: float = 0.5,
    top_k: int = 3,
) -> list[Explanation]:
    """CALIP on point clouds `[B, P, 3]` (or one `[P, 3]`), already centred and scaled as `classify` does.

    All B x V views are projected and encoded in one pass. `text_feats` `[C, D]` (L2-normalised, one row per class
    name); `view_weights` None = uniform (1 per view). One `Explanation` per cloud.
    """
    _check_common(text_feats, classnames, betas, top_k)
    pts = torch.as_tensor(points, dtype=torch.float32, device=backbone.device)
    pts = pts[None] if pts.ndim == 2 else pts
    if view_weights is not None and len(view_weights) != projector.num_views:
        raise CalipError(f"{len(view_weights)} view weights given; the projector makes {projector.num_views} views")
    images = projector.images(pts)  # [B, V, 3, S, S]
    batch, views = images.shape[:2]
    over_positions, terms, grid = _attend(backbone, images.flatten(0, 1), text_feats, temperature)
    over_positions = over_positions.view(batch, views, *over_positions.shape[1:])
    terms = [t.view(batch, views, -1) for t in terms]
    return _explanations("cloud", images[:, :, 0], projector.view_names, over_positions, terms, grid, classnames,
                         view_weights, betas, temperature, top_k)


@torch.inference_mode()
def explain_images(
    backbone: CLIPBackbone,
    pixels: torch.Tensor,
    text_feats: torch.Tensor,
    classnames: Sequence[str],
    betas: Sequence[float],
    temperature: float = 0.5,
    top_k: int = 3,
    display: torch.Tensor | None = None,
) -> list[Explanation]:
    """CALIP on model inputs `[B, 3, S, S]` (or one `[3, S, S]`, see `image_inputs`); `display` is the same crop
    in [0, 1] to store as the view (default: the inputs rescaled to [0, 1]). One `Explanation` per image."""
    _check_common(text_feats, classnames, betas, top_k)
    pixels = pixels[None] if pixels.ndim == 3 else pixels
    if display is None:
        low = pixels.amin(dim=(1, 2, 3), keepdim=True)
        display = (pixels - low) / (pixels.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
    display = display[None] if display.ndim == 3 else display
    over_positions, terms, grid = _attend(backbone, pixels, text_feats, temperature)
    return _explanations("image", display[:, None], ("image",), over_positions[:, None],
                         [t[:, None] for t in terms], grid, classnames, None, betas, temperature, top_k)
