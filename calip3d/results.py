"""Typed results: one `MethodResult` per method, an `EvalResult` per run, and the JSON and table made from them.

JSON schema `calip3d.eval/1` (written by `eval` and `tune-views`)::

    {
      "schema": "calip3d.eval/1",
      "dataset": str, "split": str, "num_samples": int, "num_classes": int,
      "<method>": {                       # one entry per method, e.g. clip, calip_paper, calip_tuned, calip_oracle
        "top1": float, "top5": float,     # percent
        "betas": [b1, b2, b3] | null,     # null for plain CLIP / PointCLIP
        "betas_source": str,              # where the betas came from ("ORACLE: ..." when tuned on test labels)
        "view_weights": [...], "view_weights_source": str,   # 3D only
        "oracle": bool,                   # true when anything in the row was chosen on the test labels
        ...                               # method details: "search" (grid), "tuning_top1", "search_method"
      },
      "methods": [names in table order],
      "reference": [                      # every published number for this dataset (calip3d.published), whatever
        {"method", "backbone", "weights", "setting", "value", "source", "note",   # the run's backbone; comparable:
         "comparable": bool}, ...         # same backbone and weights tag as the run (calip3d.reference)
      ],
      "provenance": {...}                 # library versions, command, time, model, weights, templates, split file,
    }                                     # temperature, projector and point settings, cache status, tuning set,
                                          # data root and checksums of the data used
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import CalipError
from .reference import paper_column, reference_block, run_backbone

SCHEMA = "calip3d.eval/1"  # written by `eval` and `tune-views` (`EvalResult`)
EVAL_SCHEMA = SCHEMA
FEWSHOT_SCHEMA = "calip3d.fewshot/2"  # written by `fewshot` (`calip3d.fewshot.run_fewshot`)
FEWSHOT_SCHEMAS = ("calip3d.fewshot/1", FEWSHOT_SCHEMA)  # read by `table`: /2 added oracle, selections, protocol


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for module in ("calip3d", "torch", "open_clip", "numpy", "h5py", "scipy"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:  # noqa: BLE001 - a missing optional library is just not reported
            continue
    return versions


def provenance(**fields: Any) -> dict[str, Any]:
    """Library versions, the command line and the time, plus `fields`."""
    return {"versions": library_versions(), "command": " ".join(sys.argv),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields}


@dataclass
class MethodResult:
    """One row: accuracies in percent, the betas and view weights used and where each came from."""

    name: str
    top1: float
    top5: float
    betas: list[float] | None
    betas_source: str
    oracle: bool = False
    view_weights: list[float] | None = None
    view_weights_source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"top1": self.top1, "top5": self.top5, "betas": self.betas}
        if self.view_weights is not None:
            entry.update(view_weights=self.view_weights, view_weights_source=self.view_weights_source)
        return {**entry, "betas_source": self.betas_source, **self.details, "oracle": self.oracle}

    @classmethod
    def from_dict(cls, name: str, entry: dict[str, Any]) -> "MethodResult":
        known = ("top1", "top5", "betas", "betas_source", "oracle", "view_weights", "view_weights_source")
        return cls(name=name, **{k: entry.get(k) for k in known if k in entry},
                   details={k: v for k, v in entry.items() if k not in known})

    @property
    def source(self) -> str:
        """Where the betas (and non-uniform view weights) came from, for the table."""
        parts = [self.betas_source] if self.betas_source else []
        views = self.view_weights_source
        if views and views not in parts and not views.startswith("uniform"):
            parts.append(f"views: {views}")
        return "; ".join(parts)


@dataclass
class EvalResult:
    """A zero-shot run: the methods in table order and the provenance block."""

    dataset: str
    split: str
    num_samples: int
    num_classes: int
    methods: list[MethodResult]
    provenance: dict[str, Any] = field(default_factory=dict)

    def method(self, name: str) -> MethodResult:
        return next(m for m in self.methods if m.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The `calip3d.eval/1` JSON object (its `reference` block made from `calip3d.published` for this run)."""
        backbone, tag = run_backbone({"provenance": self.provenance})
        return {"schema": SCHEMA, "dataset": self.dataset, "split": self.split, "num_samples": self.num_samples,
                "num_classes": self.num_classes, **{m.name: m.as_dict() for m in self.methods},
                "methods": [m.name for m in self.methods], "reference": reference_block(self.dataset, backbone, tag),
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "result") -> "EvalResult":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise CalipError(f"{source} is not a calip3d eval result (schema {SCHEMA})")
        return cls(data["dataset"], data["split"], data["num_samples"], data["num_classes"],
                   [MethodResult.from_dict(n, data[n]) for n in data["methods"]], data.get("provenance", {}))

    def table(self) -> str:
        """A fixed-width table: method, top-1, top-5, the comparable published top-1 and our difference (`paper`,
        where one is published for this backbone and weights tag), betas, view weights (3D), where they came from."""
        has_views = any(m.view_weights is not None for m in self.methods)
        paper = paper_column(self.to_dict())
        has_paper = any(cell is not None for cell in paper.values())
        header = ["method", "top-1", "top-5"] + (["paper"] if has_paper else []) + ["betas"] + \
            (["view weights"] if has_views else []) + ["source"]
        rows = [header]
        for m in self.methods:
            row = [f"{m.name} (ORACLE)" if m.oracle else m.name, f"{m.top1:.2f}", f"{m.top5:.2f}"]
            row += [str(paper[m.name]) if paper[m.name] is not None else "-"] if has_paper else []
            row += ["-" if m.betas is None else ",".join(f"{b:g}" for b in m.betas)]
            if has_views:
                row.append("-" if m.view_weights is None else ",".join(f"{w:g}" for w in m.view_weights))
            rows.append(row + [m.source])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        lines = [f"{self.dataset} / {self.split}: {self.num_samples} samples, {self.num_classes} classes"]
        for i, row in enumerate(rows):
            lines.append("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip())
            if i == 0:
                lines.append("-" * len(lines[-1]))
        return "\n".join(lines)

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically (temp file + rename)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
