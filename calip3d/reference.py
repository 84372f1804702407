"""A run's results beside the published numbers (`calip3d.published.PUBLISHED_RESULTS`).

A published number is *comparable* with a run when the run used the same backbone (names normalised: `ViT-B/16`
= `ViT-B-16`, `RN50-quickgelu` = `RN50`, case ignored) and the same open_clip weights tag (`openai` for every paper
here). A run whose weights came from a local file is never comparable: the file's origin cannot be checked.

Which calip3d method is compared with which published method (`PAPER_METHODS`):
- `clip` (2D) -> CLIP zero-shot (CoOp's protocol, as quoted by GDA's authors);
- `calip_paper`, `calip_user`, `calip_tuned`, `calip_oracle` (2D) -> CALIP zero-shot. The official code searches
  the betas on the evaluated split itself, so `calip_oracle` follows the paper's protocol, `calip_paper` uses the
  betas the paper reports, and `calip_tuned` is the honest held-out protocol (expect it to be lower);
- `pointclip`, `pointclip_weighted`, `pointclip_tuned`, `pointclip_oracle` (3D) -> PointCLIP zero-shot. PointCLIP's
  Table 1 searched the view weights on the test labels and used a per-dataset projection (distance, resolution),
  so only `pointclip_oracle`, or `pointclip_weighted` with `--view-weights paper` and the Table 1 projection,
  follow its protocol; plain `pointclip` (uniform weights, released projection) is expected to be lower;
- few-shot `pointclip-adapter` at K shots -> PointCLIP K-shot (inter-view adapter).
No CALIP 3D, CALIP-FS or PointCLIP V2 method is mapped: their published numbers are NOT FOUND (CALIP 3D, CALIP-FS)
or come from a different pipeline (V2: GPT prompts and searched view weights); they still appear in the
reference block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .published import PublishedResult, published_results

# calip3d method name -> (published method it compares with, few-shot?). Filled by the method registries
# (`calip3d.zeroshot.register_zero_shot`, `calip3d.fewshot.methods.register_method`) from each method's
# `paper_method`, so that a new method says what it compares with in its own class.
PAPER_METHODS: dict[str, str] = {}
FEW_SHOT_METHODS: set[str] = set()


def register_comparable(method: str, paper_method: str | None, few_shot: bool = False) -> None:
    """Record that calip3d method `method` compares with published method `paper_method` (None: with none)."""
    if paper_method is not None:
        PAPER_METHODS[method] = paper_method
        if few_shot:
            FEW_SHOT_METHODS.add(method)


def normalise_backbone(name: str | None) -> str:
    """`ViT-B/16`, `vit-b-16`, `ViT-B-16-quickgelu` -> `vit-b-16`; anything else lower-cased."""
    text = (name or "").strip().lower().replace("/", "-")
    return re.sub(r"-quickgelu$", "", text)


def is_comparable(published: PublishedResult, backbone: str | None, pretrained: str | None) -> bool:
    """Same backbone (normalised) and the same weights tag as the run."""
    return (normalise_backbone(published.backbone) == normalise_backbone(backbone)
            and (pretrained or "").strip().lower() == published.weights.lower())


def reference_block(dataset: str, backbone_name: str | None, pretrained_tag: str | None) -> list[dict[str, Any]]:
    """Every published number for `dataset`, for a result file's `reference` block: method, backbone, weights,
    setting, value, source, note and whether it is comparable with a run of `backbone_name` / `pretrained_tag`."""
    return [{"method": r.method, "backbone": r.backbone, "weights": r.weights, "setting": r.setting,
             "value": r.value, "source": r.source, "note": r.note,
             "comparable": is_comparable(r, backbone_name, pretrained_tag)}
            for r in published_results(dataset)]


def published_for(dataset: str, method: str, backbone_name: str | None, pretrained_tag: str | None,
                  shots: int | None = None, protocol: str | None = None) -> PublishedResult | None:
    """The comparable published number for calip3d method `method` (an eval method name, or a few-shot method
    with `shots`) on `dataset`, or None. The first listed (primary) source wins."""
    paper_method = PAPER_METHODS.get(method)
    setting = "zero-shot" if shots is None else f"{shots}-shot"
    if paper_method is None or (method in FEW_SHOT_METHODS) != (shots is not None):
        return None
    return next((r for r in published_results(dataset) if r.method == paper_method and r.setting == setting
                 and is_comparable(r, backbone_name, pretrained_tag) and r.protocol in ("", protocol)), None)


@dataclass(frozen=True)
class PaperCell:
    """The `paper` column of a printed table: the published value and ours minus it, in points."""

    value: float
    difference: float
    source: str

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.difference:+.2f})"


def paper_cell(dataset: str, method: str, top1: float, backbone_name: str | None, pretrained_tag: str | None,
               shots: int | None = None) -> PaperCell | None:
    """The `paper` cell for a method row with top-1 `top1`, or None when nothing comparable is published."""
    found = published_for(dataset, method, backbone_name, pretrained_tag, shots)
    return None if found is None else PaperCell(found.value, top1 - found.value, found.source)


def run_backbone(result: dict[str, Any]) -> tuple[str | None, str | None]:
    """(backbone name, weights tag) of a result file, from its provenance; the tag is None for local files."""
    info = result.get("provenance", {}).get("backbone", {}) or {}
    weights = str(info.get("weights", ""))
    return info.get("name"), info.get("pretrained") if weights.startswith("tag:") else None


def paper_column(result: dict[str, Any]) -> dict[str, PaperCell | None]:
    """For a `calip3d.eval/1` result: method name -> its `paper` cell (None where nothing is comparable)."""
    backbone, tag = run_backbone(result)
    return {m: paper_cell(result["dataset"], m, result[m]["top1"], backbone, tag) for m in result["methods"]}
