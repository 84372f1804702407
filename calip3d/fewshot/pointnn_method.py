"""Point-NN's memory-bank classifier as a few-shot method (`point-nn`, point clouds only), alone as released or fused
with PointCLIP's or CALIP's zero-shot logits (`base`: a calip3d design, no published counterpart).

The memory is the L2-normalised Point-NN features of the train shots (`shots` "all": the whole train split), the
logits `exp(-gamma (1 - f M^T)) @ onehot` (`calip3d.pointnn.memory_logits`), `gamma` on the release's grid {0, 2, ...,
9998}: on the val shots (honest) or on the test split as the release does (ORACLE). The fusion `base + w * Point-NN`
chooses `w` on the val shots under both protocols (there is no release to follow).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..metrics import topk_accuracy
from ..pointnn import memory_logits, search_gamma
from ..pointnn.memory import POINTNN_GAMMA_GRID_SOURCE
from .methods import FewShotMethod, FitData, TokenBatch, register_method
from .selection import TEST_SPLIT, VAL_SHOTS, Selection

# calip3d's fusion-weight grid: 0 (the base alone) and 10^-2 .. 10^3 in 21 log steps; first best on the val shots.
FUSION_GRID = (0.0, *[round(10 ** (e / 4), 6) for e in range(-8, 13)])
FUSION_RULE = "first best of calip3d's grid {0, 10^-2 .. 10^3 in 21 log steps} (a calip3d addition, no release)"
POINTNN_SETS = ("train", "val", "test")  # the Point-NN features a run prepares (FitData.extra["pointnn"])


@register_method
class PointNNMethod(FewShotMethod):
    name = "point-nn"
    OPTIONS = frozenset({"base", "pointnn_normalize", "pointnn_shuffle"})
    BASES = ("pointclip", "clip", "calip")
    DEFAULT_BASE = None
    needs_views = True
    needs_pointnn: ClassVar[bool] = True
    all_shots: ClassVar[bool] = True

    def selections(self) -> list[Selection]:
        if self.settings.options.protocol == "honest":
            gamma = Selection("gamma", VAL_SHOTS, "first best of the release's grid {0, 2, ..., 9998}")
        else:
            gamma = Selection("gamma", TEST_SPLIT, "first best of the release's grid {0, 2, ..., 9998}",
                              f"as released: {POINTNN_GAMMA_GRID_SOURCE}", oracle=True)
        chosen = [gamma]
        if self.base is not None:
            chosen.append(Selection("fusion weight", VAL_SHOTS, FUSION_RULE))
            if self.base == "calip":
                chosen.insert(0, self.settings.betas_selection)
        return chosen

    def fit(self, data: FitData) -> None:
        feats = data.extra["pointnn"]
        classes = data.text.shape[0]
        memory, memory_labels = feats["train"], feats["train_labels"]
        release = self.settings.options.protocol == "release"
        if release and feats.get("all_shots"):  # the release's memory: every train cloud
            memory = torch.cat([memory, feats["val"]])
            memory_labels = torch.cat([memory_labels, feats["val_labels"]])
        self.memory, self.memory_labels, self.classes = memory, memory_labels, classes
        gamma_set = "test" if release else "val"
        if len(feats[f"{gamma_set}_labels"]) == 0:
            self.gamma, gamma_top1 = 0, 0.0
        else:
            self.gamma, gamma_top1 = search_gamma(feats[gamma_set], memory, memory_labels, classes,
                                                  feats[f"{gamma_set}_labels"])
        self.test_feats = feats["test"]
        self.weight = 1.0
        search: list[list[float]] = []
        val = data.sets[VAL_SHOTS]
        if self.base is not None and len(val):
            own = memory_logits(feats["val"], memory, memory_labels, classes, self.gamma)
            base = self.base_logits(val, data.text).float()
            best = -1.0
            for weight in FUSION_GRID:
                top1 = topk_accuracy(base + weight * own, val.labels, 1)
                search.append([weight, top1])
                if top1 > best:
                    self.weight, best = weight, top1
        self.details = {"gamma": self.gamma, "gamma_search_top1": gamma_top1, "memory_size": int(len(memory)),
                        "memory": "the train shots" if not feats.get("all_shots") else
                        ("every train cloud (the release's memory)" if release else
                         "every train cloud but the val shots"),
                        "encoder": feats["encoder"],
                        "base": self._base_note(), **({"fusion_weight": self.weight, "fusion_search": search}
                                                      if self.base is not None else {})}
        if len(val):
            self.val_top1 = topk_accuracy(self._val_logits(feats["val"], val, data.text), val.labels)

    def _base_note(self) -> str:
        if self.base is None:
            return "none: Point-NN alone, as released"
        what = "PointCLIP's" if self.base == "clip" else f"CALIP's (betas {list(self.settings.betas)})"
        return (f"{self.base}: {what} zero-shot logits + fusion weight x Point-NN logits, a calip3d combination "
                "with no published counterpart")

    def _val_logits(self, feats: torch.Tensor, val: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        own = memory_logits(feats, self.memory, self.memory_labels, self.classes, self.gamma)
        return own if self.base is None else self.base_logits(val, text).float() + self.weight * own

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        feats = self.test_feats[batch.indices.cpu()]
        own = memory_logits(feats, self.memory, self.memory_labels, self.classes, self.gamma)
        if self.base is None:
            return own.to(batch.global_feats.device)
        base = self.base_logits(batch, text).float()
        return base + self.weight * own.to(base.device)

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.details)
