"""Results: the stdout table, the JSON file and its provenance block.

JSON schema (`calip3d.eval/1`)::

    {
      "schema": "calip3d.eval/1",
      "dataset": str, "split": str, "num_samples": int, "num_classes": int,
      "<method>": {                       # one entry per method, e.g. clip, calip_paper, calip_tuned, calip_oracle
        "top1": float, "top5": float,     # percent
        "betas": [b1, b2, b3] | null,     # null for plain CLIP / PointCLIP
        "betas_source": str,              # where the betas came from ("oracle" when tuned on test labels)
        "view_weights": [...], "view_weights_source": str,   # 3D only
        "oracle": bool, ...
      },
      "methods": [names in table order],
      "provenance": {...}                 # library versions, model, weights, templates, split file, temperature, ...
    }
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write

SCHEMA = "calip3d.eval/1"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for module in ("calip3d", "torch", "open_clip", "numpy", "h5py", "scipy"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:  # noqa: BLE001 - a missing optional library is just not reported
            continue
    return versions


def provenance(**fields: Any) -> dict[str, Any]:
    return {"versions": library_versions(), "command": " ".join(sys.argv),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields}


def _source(entry: dict[str, Any]) -> str:
    parts = [entry["betas_source"]] if entry.get("betas_source") else []
    views = entry.get("view_weights_source")
    if views and views not in parts and not views.startswith("uniform"):
        parts.append(f"views: {views}")
    return "; ".join(parts)


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width table: method, top-1, top-5, betas, view weights (3D) and where they came from."""
    names = result["methods"]
    has_views = any(result[n].get("view_weights") is not None for n in names)
    header = ["method", "top-1", "top-5", "betas"] + (["view weights"] if has_views else []) + ["source"]
    rows = [header]
    for name in names:
        entry = result[name]
        betas = entry.get("betas")
        row = [f"{name} (ORACLE)" if entry.get("oracle") else name, f"{entry['top1']:.2f}", f"{entry['top5']:.2f}",
               "-" if betas is None else ",".join(f"{b:g}" for b in betas)]
        if has_views:
            weights = entry.get("view_weights")
            row.append("-" if weights is None else ",".join(f"{w:g}" for w in weights))
        rows.append(row + [_source(entry)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [f"{result['dataset']} / {result['split']}: {result['num_samples']} samples, "
             f"{result['num_classes']} classes"]
    for i, row in enumerate(rows):
        lines.append("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically (temp file + rename)."""
    text = json.dumps(payload, indent=2, default=str) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
