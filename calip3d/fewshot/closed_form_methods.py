"""GDA, APE and Tip-X behind the few-shot method registry: closed-form training-free heads (`closed_form`) added to
zero-shot logits, with their released settings and searches.

Every method adds its term to `base_logits` (`--base`): "clip" (default; CLIP's `100 f T^T`, for point clouds
PointCLIP's, views averaged), which is what the releases add to, or "calip" (CALIP with the run's betas), a calip3d
combination with no published counterpart. The per-cloud feature is PointCLIP's normalised concatenation of the
views against the text repeated V times (`flat_global`, `flat_text`), as the project's Tip-Adapter uses. None of
the three releases has a 3D run: for point clouds every released setting is a stand-in, labelled.

Searches run where `released_search` says: the val shots (honest), the full val split (release), or, on a dataset
without one (ImageNet, point clouds), the test split, labelled ORACLE, as the releases tune ImageNet on its test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from ..encoding import Tokens
from .closed_form import (
    GDA_ALPHAS,
    GDA_START_ALPHA,
    TIPX_SEARCH_SCALE,
    TIPX_SEARCH_STEP,
    TIPX_TEMPERATURE,
    ApeCache,
    GridSearch,
    TipXCache,
    ape_affinity,
    ape_cache_logits,
    ape_fit,
    ape_grids,
    ape_search,
    gda_head,
    gda_logits,
    gda_search,
    tipx_cache_logits,
    tipx_grids,
    tipx_kl_logits,
    tipx_fit,
    tipx_ranges,
    tipx_search,
)
from .methods import FewShotMethod, FitData, TokenBatch, cache_features, flat_global, flat_text, register_method
from .selection import TEST_SPLIT, VAL_SHOTS, Selection, released_search

_BATCH = 256  # rows per batch when the zero-shot base logits of a whole search set are computed


class _ClosedForm(FewShotMethod):
    """Shared parts: the base logits, the search set and its selection, the fitted tensors' device."""

    OPTIONS = frozenset({"base", "augment"})
    BASES = ("clip", "pointclip", "calip")
    DEFAULT_BASE = "clip"
    WHAT: ClassVar[str]
    RULE: ClassVar[str]
    RELEASED: ClassVar[str]

    def _search_selection(self) -> Selection:
        return released_search(self.WHAT, self.RULE, self.settings.options.protocol, self.settings.has_val_split,
                               self.RELEASED)

    def selections(self) -> list[Selection]:
        return [self._search_selection(), *self.extra_selections]

    @property
    def _device(self) -> torch.device:
        return torch.device(self.settings.device)

    def _features(self, glob: torch.Tensor) -> torch.Tensor:
        """The normalised per-item feature `[N, F]` (3D: PointCLIP's concatenation of the views)."""
        return flat_global(glob.to(self._device))

    def _text(self, text: torch.Tensor) -> torch.Tensor:
        return flat_text(text.to(self._device), self.views)

    def _base_of(self, tokens: Tokens, text: torch.Tensor) -> torch.Tensor:
        """`base_logits` of every item of a set `[N, C]`, batch by batch, as the test split is scored."""
        parts = [self.base_logits(batch, text).to(self._device) for batch in tokens.batches(_BATCH)]
        return torch.cat(parts) if parts else torch.zeros(0, text.shape[0], device=self._device)

    def _search_set(self, data: FitData) -> Tokens | None:
        tokens = data.sets[self._search_selection().source]
        return tokens if len(tokens) else None

    def _base_note(self) -> str:
        if self.base == "calip":
            return (f"calip: CALIP's zero-shot logits (betas {list(self.settings.betas)}, "
                    f"{self.settings.betas_selection.label()}): a calip3d combination, no published counterpart")
        return ("clip: CLIP/PointCLIP zero-shot logits (100 f.T; point clouds: PointCLIP's, views averaged), as "
                "released" + (" for images (no 3D release)" if self.views else ""))

    def _search_details(self, result: GridSearch | None, source: str) -> dict[str, Any]:
        if result is None:
            return {"search": f"none: no labelled item in the {source}; the starting values are kept"}
        return {"search_accuracy": result.accuracy, "search_samples": result.total,
                "search_beat_start": result.index is not None}

    def _cache_keys(self, data: FitData) -> tuple[torch.Tensor, torch.Tensor]:
        """Tip-Adapter's cache keys `[M, F]` (the mean of the augmented copies' raw features, normalised once;
        3D: of their normalised view concatenations; the shots themselves without copies) and their labels."""
        parts = [cache_features(c) for c in data.copies] if data.copies else [cache_features(data.shots)]
        keys = F.normalize(torch.stack(parts).mean(0).to(self._device), dim=-1)
        return keys, data.shots.labels.to(self._device)

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        base = self.base_logits(batch, text)
        # on the fitted tensors' device: a torchrun rank may score on another device than rank 0 fitted on
        feats = flat_global(batch.global_feats.to(self._fitted_on))
        return base + self._term(feats).to(base.device)

    @property
    def _fitted_on(self) -> torch.device:
        """The device of the fitted tensors."""
        raise NotImplementedError

    def _term(self, feats: torch.Tensor) -> torch.Tensor:
        """The method's addition to the base logits `[B, C]` for normalised features `[B, F]`."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ GDA

EMPTY_CLASS_RULE = "zero mean: weight 0, bias log(1/C) (calip3d's choice; the release gives NaN)"
GDA_SOURCE = "mrflogs/ICLR24 main_few_shots.py (560fe21): augment_epoch 10 (configs/few_shots/*.yaml), KS " \
             "estimator, alpha grid [1e-4 .. 100] from best_alpha 0.1"


@register_method
class GDAMethod(_ClosedForm):
    """GDA (Wang et al., ICLR 2024): a Gaussian discriminant head with a shared KS-estimated precision on the
    augmented shots (every augmented pass its own L2-normalised row), added to the zero-shot logits with weight
    alpha searched on the release's grid."""

    name = "gda"
    paper_method = "GDA"
    WHAT = "alpha"
    RULE = "first best accuracy of GDA's grid [1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100] from alpha 0.1"
    RELEASED = "ICLR24 main_few_shots.py alpha search on the full val split"

    @classmethod
    def default_augment(cls, dataset: str) -> int:
        return 10

    def fit(self, data: FitData) -> None:
        rows = data.copies or [data.shots]
        feats = torch.cat([self._features(r.global_feats) for r in rows])
        labels = torch.cat([r.labels for r in rows]).to(self._device)
        num_classes = data.text.shape[0]
        self.weight, self.bias = gda_head(feats, labels, num_classes)
        self.alpha, result = GDA_START_ALPHA, None
        search = self._search_set(data)
        if search is not None:
            feats_s = self._features(search.global_feats)
            result = gda_search(self._base_of(search, data.text), gda_logits(feats_s, self.weight, self.bias),
                                search.labels.to(self._device))
            self.alpha = result.params["alpha"]
        empty = int((torch.bincount(labels, minlength=num_classes) == 0).sum())
        self.details = {
            "alpha": self.alpha, "alpha_grid": list(GDA_ALPHAS), "start_alpha": GDA_START_ALPHA,
            **self._search_details(result, self._search_selection().source),
            "rows": int(feats.shape[0]), "feature_dim": int(feats.shape[1]),
            "precision": "KS estimator: D * pinv((N - 1) S + tr(S) I), S = torch.cov of the class-centred rows",
            "prior": "uniform, log(1/C)",
            "empty_classes": empty,
            **({"empty_class_rule": EMPTY_CLASS_RULE} if empty else {}),
            "text_classifier": "the run's prompts (provenance.templates); the release uses each dataset's template "
                               "and ImageNet's 7-template ensemble, calip3d's default prompts (--templates ensemble)",
            "base": self._base_note(), "config": GDA_SOURCE,
            **self._augmentation("every augmented pass its own L2-normalised row, as released"
                                 if data.copies else "none: the shots themselves are the rows (calip3d's fallback)"),
        }
        self._score_val(data)

    @property
    def _fitted_on(self) -> torch.device:
        return self.weight.device

    def _term(self, feats: torch.Tensor) -> torch.Tensor:
        return self.alpha * gda_logits(feats, self.weight, self.bias)


# ------------------------------------------------------------------------------------------------ APE


class ApeRelease(NamedTuple):
    """One `configs/<dataset>.yaml` of APE (yangyangyang127/APE): `search_scale` (beta, alpha, gamma) and
    `search_step`, the initial beta, alpha, gamma, the channel count `feat_num` (`training_free_feat_num`),
    (lambda1, lambda2) (`w_training_free`) and the augmented passes averaged into the cache keys."""

    search_scale: tuple[float, float, float]
    search_step: tuple[int, int, int]
    init_beta: float
    init_alpha: float
    init_gamma: float
    feat_num: int
    lambdas: tuple[float, float]
    augment_epoch: int


# Keyed by calip3d's dataset names; transcribed from yangyangyang127/APE configs/*.yaml at 70460de.
APE_RELEASED: dict[str, ApeRelease] = {
    "imagenet": ApeRelease((7, 7, 0.5), (200, 20, 5), 1, 2, 0.1, 500, (0.7, 0.3), 10),
    "caltech101": ApeRelease((7, 7, 1), (200, 20, 20), 1, 1, 0.1, 800, (0.5, 0.5), 10),
    "oxford_pets": ApeRelease((7, 7, 1), (200, 20, 20), 1, 2, 0.1, 800, (0.7, 0.3), 10),
    "stanford_cars": ApeRelease((10, 7, 1), (200, 20, 20), 1, 1, 0.1, 500, (0.6, 0.4), 10),
    "oxford_flowers": ApeRelease((7, 7, 1), (200, 20, 20), 1, 3, 0.1, 700, (0.4, 0.6), 10),
    "food101": ApeRelease((7, 7, 1), (200, 20, 20), 1, 0.8, 0.1, 700, (0.3, 0.7), 10),
    "fgvc_aircraft": ApeRelease((20, 10, 1), (200, 20, 20), 1, 5, 0.1, 800, (0.1, 0.9), 10),
    "sun397": ApeRelease((10, 7, 1), (200, 20, 20), 1, 1, 0.1, 800, (0.7, 0.3), 10),
    "dtd": ApeRelease((7, 7, 1), (200, 20, 20), 1, 3, 0.1, 400, (0.5, 0.5), 10),
    "eurosat": ApeRelease((30, 5, 1.5), (200, 20, 20), 1, 1, 0.1, 700, (0.9, 0.1), 10),
    "ucf101": ApeRelease((10, 7, 1.5), (200, 20, 20), 1, 2, 0.1, 700, (0.3, 0.7), 10),
}
APE_SOURCE = "yangyangyang127/APE configs/{}.yaml (70460de)"
APE_FALLBACK = "imagenet"  # point clouds (no APE release): ImageNet's config stands in, as for Tip-Adapter


def ape_released(dataset: str) -> tuple[ApeRelease, str]:
    """APE's released config for `dataset` (ImageNet's where it has none, e.g. point clouds) and its source."""
    key = dataset if dataset in APE_RELEASED else APE_FALLBACK
    source = APE_SOURCE.format({"fgvc_aircraft": "fgvc"}.get(key, key))
    return APE_RELEASED[key], source + ("" if key == dataset else f" (no APE config for {dataset}: calip3d's stand-in)")


@register_method
class APEMethod(_ClosedForm):
    """APE (Zhu et al., ICCV 2023), training-free: Tip-Adapter's cache on the top-Q channels of APE's criterion
    (inter-class similarity and text variance), cache values re-weighted by the keys' KL-based divergence from their
    text prediction; beta, alpha, gamma searched on the release's per-dataset grids."""

    name = "ape"
    paper_method = "APE"
    WHAT = "beta, alpha, gamma"
    RULE = "first maximum of APE's per-dataset grid (beta outer, alpha, gamma inner)"
    RELEASED = "APE main.py search on the full val split"

    @classmethod
    def default_augment(cls, dataset: str) -> int:
        return ape_released(dataset)[0].augment_epoch

    def fit(self, data: FitData) -> None:
        config, source = ape_released(self.settings.dataset)
        keys, key_labels = self._cache_keys(data)
        text = self._text(data.text)
        feat_num = min(config.feat_num, keys.shape[1])
        self.cache: ApeCache = ape_fit(text, keys, key_labels, feat_num, config.lambdas)
        grids = ape_grids(config.search_scale, config.search_step)
        self.beta, self.alpha, self.gamma = config.init_beta, config.init_alpha, config.init_gamma
        result, search = None, self._search_set(data)
        if search is not None:
            result = ape_search(self._base_of(search, data.text), self.cache, self._features(search.global_feats),
                                search.labels.to(self._device), grids)
            self.beta, self.alpha, self.gamma = (result.params[k] for k in ("beta", "alpha", "gamma"))
        capped = feat_num < config.feat_num
        self.details = {
            "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
            "search_scale": list(config.search_scale), "search_step": list(config.search_step),
            "grid_ends": {k: [v[0], v[-1]] for k, v in grids.items()},
            "init": {"beta": config.init_beta, "alpha": config.init_alpha, "gamma": config.init_gamma,
                     "used": "when nothing is searched (the release searches from (0, 0, 0) and prints these "
                             "values' test accuracy before the search)"},
            **self._search_details(result, self._search_selection().source),
            "feat_num": feat_num, "feature_dim": int(keys.shape[1]),
            **({"feat_num_released": config.feat_num, "feat_num_rule": "capped at the feature dimension "
                "(calip3d's choice; the release's topk would fail)"} if capped else {}),
            "lambdas": list(config.lambdas), "criterion": "text and cache samples (training-free cal_criterion)",
            "div": "log2 with eps 1e-6, softmax of the unscaled cosine logits of the selected channels",
            "text_classifier": "the run's prompts (provenance.templates); the release adds GPT-3 CuPL prompts to "
                               "CLIP's templates (extract_features.py), which calip3d does not have",
            "config": source, "base": self._base_note(),
            **self._augmentation("cache keys: the mean of the copies' raw features, normalised once (Tip-Adapter's "
                                 "cache, as APE's extract_features.py builds it)"),
        }
        self._score_val(data)

    @property
    def _fitted_on(self) -> torch.device:
        return self.cache.keys.device

    def _term(self, feats: torch.Tensor) -> torch.Tensor:
        return ape_cache_logits(self.cache, ape_affinity(self.cache, feats), self.beta, self.gamma) * self.alpha


# ------------------------------------------------------------------------------------------------ Tip-X

TIPX_SOURCE = "vishaal27/SuS-X tipx.py (d7d4d37): temperature 0.5, search_scale [50, 50, 30], search_step " \
              "[200, 20, 50]"


@dataclass(frozen=True)
class TipXRanges:
    """The min-max rescaling of the KL matrix used at test time: from `source` (KL min, max) to `target`
    (affinity min, max), and where each came from."""

    source: tuple[float, float]
    target: tuple[float, float]
    source_from: str
    target_from: str


@register_method
class TipXMethod(_ClosedForm):
    """Tip-X (Udandarao et al., ICCV 2023) on the few-shot cache: Tip-Adapter's cache logits plus the negated KL
    divergences between the text-space distributions of the test item and of each support sample, min-max rescaled
    to the affinities' range; alpha, beta, gamma searched on the release's grid.

    The rescaling at test time uses fixed ranges, so one item's logits never depend on the batch or on the other
    test items: honest, the val shots' KL and affinity ranges (where alpha, beta, gamma were chosen); release, as
    tipx.py runs it, the test split's own KL range mapped to the search set's affinity range (the release's
    `new_knowledge` left over from the val loop), which reads the test split's features (not its labels)."""

    name = "tip-x"
    paper_method = "Tip-X"
    WHAT = "alpha, beta, gamma"
    RULE = "first maximum of Tip-X's grid (alpha outer, beta, gamma inner)"
    RELEASED = "SuS-X tipx.py hparam_search on the full val split"

    @classmethod
    def default_augment(cls, dataset: str) -> int:
        return 10

    def _range_selection(self) -> Selection:
        what, rule = "KL rescaling range", "min and max of the KL matrix, mapped to the searched set's affinity range"
        if self.settings.options.protocol == "honest":
            return Selection(what, VAL_SHOTS, "min and max of the val shots' KL matrix and affinities")
        return Selection(what, TEST_SPLIT, rule, "as released: tipx.py rescales the test KL matrix by its own min "
                         "and max to the val affinities' range (new_knowledge of the last val iteration); it reads "
                         "test features, not labels")

    def selections(self) -> list[Selection]:
        return [self._search_selection(), self._range_selection(), *self.extra_selections]

    def fit(self, data: FitData) -> None:
        keys, key_labels = self._cache_keys(data)
        self.cache: TipXCache = tipx_fit(keys, key_labels, self._text(data.text), TIPX_TEMPERATURE)
        grids = tipx_grids()
        self.alpha = self.beta = self.gamma = 0.0
        result, search = None, self._search_set(data)
        source = self._search_selection().source
        if search is not None:
            feats = self._features(search.global_feats)
            kl_range, affinity_range = tipx_ranges(self.cache, feats)
            kl_logits = tipx_kl_logits(self.cache, feats, affinity_range, kl_range)
            result = tipx_search(self._base_of(search, data.text), self.cache, feats, kl_logits,
                                 search.labels.to(self._device), grids)
            self.alpha, self.beta, self.gamma = (result.params[k] for k in ("alpha", "beta", "gamma"))
            self.ranges = TipXRanges(kl_range, affinity_range, f"the {source}", f"the {source}")
            if self.settings.options.protocol == "release" and source != TEST_SPLIT:
                test_kl, _ = tipx_ranges(self.cache, self._features(data.sets[TEST_SPLIT].global_feats))
                self.ranges = TipXRanges(test_kl, affinity_range, "the test split (as released)",
                                         f"the {source} (as released: the val affinities' range)")
        else:  # nothing to search on: the support set's own ranges (calip3d's choice)
            kl_range, affinity_range = tipx_ranges(self.cache, self.cache.keys)
            self.ranges = TipXRanges(kl_range, affinity_range, "the support set (nothing searched)",
                                     "the support set (nothing searched)")
        self.details = {
            "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "temperature": TIPX_TEMPERATURE,
            "search_scale": list(TIPX_SEARCH_SCALE), "search_step": list(TIPX_SEARCH_STEP),
            "grid_ends": {k: [v[0], v[-1]] for k, v in grids.items()},
            **self._search_details(result, source),
            "kl_range": list(self.ranges.source), "kl_range_from": self.ranges.source_from,
            "affinity_range": list(self.ranges.target), "affinity_range_from": self.ranges.target_from,
            "support": "Tip-Adapter's few-shot cache (SuS-X's generated or retrieved support sets are not built)",
            "text_classifier": "the run's prompts (provenance.templates); tipx.py's default text_prompt_type "
                               "'combined' is GPT-3 CuPL prompts plus a template ensemble (run_cupl_baseline.py), "
                               "which calip3d does not have",
            "config": TIPX_SOURCE, "base": self._base_note(),
            **self._augmentation("cache keys: the mean of the copies' raw features, normalised once (Tip-Adapter's "
                                 "cache)"),
        }
        self._score_val(data)

    @property
    def _fitted_on(self) -> torch.device:
        return self.cache.keys.device

    def _term(self, feats: torch.Tensor) -> torch.Tensor:
        kl = tipx_kl_logits(self.cache, feats, self.ranges.target, self.ranges.source)
        cache = tipx_cache_logits(self.cache, feats @ self.cache.keys.T, self.beta)
        return kl * self.gamma + cache * self.alpha
