"""Zero-shot evaluation: encode splits (cached), then score CLIP / PointCLIP and CALIP under the honest protocol.

Protocol: plain CLIP; CALIP with published betas where they exist (2D) or the default pair (3D); CALIP with betas
(and, for 3D, view weights) tuned on a held-out tuning set; and, only on request, the same tuned on the test labels,
labelled "oracle" everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .backbone import BackboneInfo, CLIPBackbone
from .errors import CalipError
from .features import Terms, TermCache, batched, stream_terms
from .metrics import topk_accuracy
from .search import search_betas, search_joint, search_view_weights

LOGIT_SCALE = 100.0


@dataclass
class Encoder:
    """What encoding a split needs, shared by the image and point-cloud paths."""

    backbone: CLIPBackbone
    transform: Callable
    info: BackboneInfo
    precision: str
    batch_size: int
    workers: int
    temperature: float
    cache: TermCache
    skip_bad_files: bool = False

    def base_spec(self) -> dict[str, Any]:
        return {"backbone": self.info.as_dict(), "precision": self.precision, "temperature": self.temperature}

    def image_terms(self, split: Any, items: Sequence[tuple[str, int]], text: torch.Tensor, prompts: str,
                    desc: str) -> Terms:
        """Terms of image `items` ([(path, label)]) of `split` (an `ImageSplit`), cached."""
        from .datasets.images import ImageFileDataset, collate_skip_bad

        spec = {**self.base_spec(), "kind": "image-terms", "dataset": split.dataset, "split": split.split,
                "split_file": split.split_file, "items": _digest_items(items), "prompts": prompts,
                "text": _digest_tensor(text), "transform": repr(self.transform), "skip_bad": self.skip_bad_files}

        def compute() -> Terms:
            data = ImageFileDataset(list(items), self.transform, skip_bad_files=self.skip_bad_files)
            loader = DataLoader(data, batch_size=self.batch_size, num_workers=self.workers, shuffle=False,
                                collate_fn=collate_skip_bad)
            return stream_terms(self.backbone, loader, text, self.temperature, total=len(items), desc=desc)

        return self.cache.get_or_compute(spec, compute)

    def point_terms(self, split: Any, projector: Any, text: torch.Tensor, prompts: str, desc: str) -> Terms:
        """Per-view terms `[N, V, K]` of a `PointSplit`, every view of every cloud in one batched pass, cached."""
        spec = {**self.base_spec(), "kind": "point-terms", "dataset": split.name, "split": split.split,
                "source": split.source, "settings": split.settings, "points": _digest_array(split.points),
                "labels": _digest_array(split.labels), "projector": projector.describe(), "prompts": prompts,
                "text": _digest_tensor(text)}

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            device = self.backbone.device
            for rows in batched(list(range(len(split.labels))), self.batch_size):
                points = torch.from_numpy(np.ascontiguousarray(split.points[rows])).to(device)
                yield projector.images(points), torch.from_numpy(split.labels[rows]), torch.tensor(rows)

        return self.cache.get_or_compute(
            spec, lambda: stream_terms(self.backbone, batches(), text, self.temperature,
                                       total=len(split.labels), desc=desc))


def _digest_items(items: Sequence[tuple[str, int]]) -> str:
    return hashlib.sha256("\n".join(f"{p}\t{y}" for p, y in items).encode()).hexdigest()


def _digest_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _digest_tensor(tensor: torch.Tensor) -> str:
    return _digest_array(tensor.detach().float().cpu().numpy())


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5)}


def aggregate_views(terms: Sequence[torch.Tensor], weights: Sequence[float] | None) -> list[torch.Tensor]:
    """Sum `[N, V, K]` terms over views with `weights` (uniform 1.0 when None) -> `[N, K]` each."""
    if weights is None:
        return [t.sum(dim=1) for t in terms]
    w = torch.tensor([float(x) for x in weights], dtype=terms[0].dtype)
    if w.numel() != terms[0].shape[1]:
        raise CalipError(f"--view-weights has {w.numel()} values but the projector makes {terms[0].shape[1]} views")
    return [torch.einsum("nvk,v->nk", t, w) for t in terms]


def calip_scores(terms: Sequence[torch.Tensor], labels: torch.Tensor, betas: Sequence[float]) -> dict[str, float]:
    clip, vg, tb = terms
    b1, b2, b3 = betas
    return score(LOGIT_SCALE * (b1 * clip + b2 * vg + b3 * tb), labels)


def image_methods(
    test: Terms,
    tune: Terms | None,
    tune_source: str | None,
    paper_betas: tuple[float, float] | None,
    paper_source: str,
    user_betas: tuple[float, float, float] | None,
    oracle: bool,
    beta2_max: float,
    beta3_max: float,
    steps: int,
) -> dict[str, dict[str, Any]]:
    """The method entries of a 2D result, in table order."""
    labels = test.labels
    methods: dict[str, dict[str, Any]] = {
        "clip": {**score(LOGIT_SCALE * test.clip, labels), "betas": None, "betas_source": "plain CLIP (global only)",
                 "oracle": False},
    }
    if paper_betas is not None:
        betas = (1.0, *paper_betas)
        methods["calip_paper"] = {**calip_scores(test.triple, labels, betas), "betas": list(betas),
                                  "betas_source": paper_source, "oracle": False}
    if user_betas is not None:
        methods["calip_user"] = {**calip_scores(test.triple, labels, user_betas), "betas": list(user_betas),
                                 "betas_source": "--betas", "oracle": False}
    search = {"beta2_max": beta2_max, "beta3_max": beta3_max, "steps": steps}
    if tune is not None:
        found = search_betas(*tune.triple, tune.labels, beta2_max=beta2_max, beta3_max=beta3_max, steps=steps)
        betas = (1.0, found.beta2, found.beta3)
        methods["calip_tuned"] = {**calip_scores(test.triple, labels, betas), "betas": list(betas),
                                  "betas_source": f"tuned on {tune_source}", "tuning_top1": found.accuracy,
                                  "search": search, "oracle": False}
    if oracle:
        found = search_betas(*test.triple, labels, beta2_max=beta2_max, beta3_max=beta3_max, steps=steps)
        betas = (1.0, found.beta2, found.beta3)
        methods["calip_oracle"] = {**calip_scores(test.triple, labels, betas), "betas": list(betas),
                                   "betas_source": "ORACLE: tuned on the test labels", "search": search,
                                   "oracle": True}
    return methods


def point_methods(
    test: Terms,
    tune: Terms | None,
    tune_source: str | None,
    default_betas: tuple[float, float],
    default_source: str,
    view_weights: Sequence[float] | None,
    view_weights_source: str,
    view_weights_oracle: bool,
    user_betas: tuple[float, float, float] | None,
    oracle: bool,
    beta2_max: float,
    beta3_max: float,
    steps: int,
    grid: Sequence[float],
) -> dict[str, dict[str, Any]]:
    """The method entries of a 3D result: PointCLIP (clip term, views summed) beside CALIP, default then tuned."""
    labels = test.labels
    uniform = [1.0] * test.clip.shape[1]
    weights = list(view_weights) if view_weights is not None else uniform
    agg = aggregate_views(test.triple, weights)
    vw = {"view_weights": weights, "view_weights_source": view_weights_source}
    methods: dict[str, dict[str, Any]] = {
        "pointclip": {**score(LOGIT_SCALE * aggregate_views([test.clip], uniform)[0], labels), "betas": None,
                      "view_weights": uniform, "view_weights_source": "uniform (PointCLIP's released code)",
                      "betas_source": "plain PointCLIP (global only)", "oracle": False},
    }
    if view_weights is not None:
        methods["pointclip_weighted"] = {**score(LOGIT_SCALE * agg[0], labels), "betas": None, **vw,
                                         "betas_source": "plain PointCLIP (global only)",
                                         "oracle": view_weights_oracle}
    betas = user_betas or (1.0, *default_betas)
    methods["calip"] = {**calip_scores(agg, labels, betas), "betas": list(betas),
                        "betas_source": "--betas" if user_betas else default_source, **vw,
                        "oracle": view_weights_oracle}
    search = {"beta2_max": beta2_max, "beta3_max": beta3_max, "steps": steps, "view_grid": list(grid)}
    for name, source, is_oracle in (("tuned", tune, False), ("oracle", test if oracle else None, True)):
        if source is None:
            continue
        where = "ORACLE: tuned on the test labels" if is_oracle else f"tuned on {tune_source}"
        pc = search_view_weights(LOGIT_SCALE * source.clip, source.labels, grid=grid)
        methods[f"pointclip_{name}"] = {
            **score(LOGIT_SCALE * aggregate_views([test.clip], pc.weights)[0], labels), "betas": None,
            "betas_source": "plain PointCLIP (global only)", "view_weights": list(pc.weights),
            "view_weights_source": where, "search": search, "oracle": is_oracle}
        joint = search_joint(*source.triple, source.labels, grid=grid, beta2_max=beta2_max, beta3_max=beta3_max,
                             steps=steps)
        jb = (1.0, joint.beta2, joint.beta3)
        methods[f"calip_{name}"] = {
            **calip_scores(aggregate_views(test.triple, joint.weights), labels, jb), "betas": list(jb),
            "betas_source": where, "view_weights": list(joint.weights), "view_weights_source": where,
            "search": search, "oracle": is_oracle}
    return methods
