"""`calip3d classify FILE... --labels chair table ...` (`python -m calip3d.classify`): zero-shot CALIP on your own
point clouds and meshes.

Each file is loaded (.ply/.pcd/.xyz/.pts, meshes .off/.obj/.stl, .npy/.npz/.txt/.h5), sampled to `--points` points,
centred and scaled to the unit sphere, projected to depth maps, and classified with per-view CALIP aggregated over
views. Defaults: betas 1,1.12,0.02 (CALIP's ImageNet pair; no 3D betas are published) and uniform view weights, both
overridable.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from calip3d.datasets import LABEL_SETS
from calip3d.errors import CalipError, run_cli
from calip3d.published import DEFAULT_BETAS
from calip3d.results import write_json
from calip3d.attention import CalipConfig
from calip3d.zeroshot import ClassifyConfig, classify_clouds, load_clouds

from .flags import (
    add_backbone_flags, add_projector_flags, add_temperature_flag, backbone_config, check_minimums, new_parser,
    parse_betas, parse_view_weights, projector_config, speaks_flags,
)


def build_parser(prog: str = "calip3d classify") -> argparse.ArgumentParser:
    b1, b2, b3 = DEFAULT_BETAS
    parser = new_parser(prog, "Classify point-cloud or mesh files zero-shot with CALIP over PointCLIP depth views. "
                              f"Default betas {b1:g},{b2:g},{b3:g} (CALIP's ImageNet pair) and uniform view weights.")
    parser.add_argument("files", nargs="+", help="point-cloud or mesh files")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", nargs="+", help="candidate class names")
    labels.add_argument("--label-set", choices=tuple(LABEL_SETS), help="use a dataset's class names as candidates")
    add_backbone_flags(parser)
    parser.add_argument("--top-k", type=int, default=5, help="labels printed per file")
    parser.add_argument("--betas", type=parse_betas, default=DEFAULT_BETAS, help="CALIP betas 1,B2,B3")
    parser.add_argument("--view-weights", type=parse_view_weights, default=None, help="W1,...,WV (default uniform)")
    parser.add_argument("--template", default="point cloud depth map of a {}.", help="prompt template")
    add_temperature_flag(parser, "CALIP attention temperature")
    add_projector_flags(parser, None, "number of views", settings=False)
    parser.add_argument("--points", type=int, default=1024, help="points per cloud")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="up axis of the files (scans are often z)")
    parser.add_argument("--mesh-samples", type=int, default=10000, help="points sampled on a mesh's surface")
    parser.add_argument("--output", default=None, help="also write the predictions to this JSON file")
    return parser


def classify_config(args: argparse.Namespace, labels: Sequence[str], template: str,
                    betas: Sequence[float]) -> ClassifyConfig:
    """The config of `classify` (and of `show`'s point clouds) from the flags both take."""
    if args.view_weights == "paper":
        raise CalipError("--view-weights paper is for datasets (`calip3d eval`); give W1,...,WV or uniform")
    weights = None if args.view_weights in (None, "uniform") else tuple(args.view_weights)
    return ClassifyConfig(labels=tuple(labels), template=template,
                          calip=CalipConfig(betas=tuple(betas), temperature=args.temperature), view_weights=weights,
                          num_points=args.points, up_axis=args.up_axis, mesh_samples=args.mesh_samples,
                          projector=projector_config(args))


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d classify") -> int:
    args = build_parser(prog).parse_args(argv)
    check_minimums(args, {"top_k": 1, "points": 1})
    config = classify_config(args, args.labels or LABEL_SETS[args.label_set], args.template, args.betas)
    clouds = load_clouds(args.files, config)
    backbone = backbone_config(args).load()
    probs = classify_clouds(clouds, config, backbone)
    k = min(args.top_k, len(config.labels))
    predictions = []
    for path, row in zip(args.files, probs):
        top = row.topk(k)
        ranked = [{"label": config.labels[i], "probability": float(p)} for p, i in zip(top.values, top.indices)]
        predictions.append({"file": str(path), "top": ranked})
        print(f"{path}:")
        for item in ranked:
            print(f"  {item['probability']:7.2%}  {item['label']}")
    if args.output:
        projector = config.projector.build(backbone.image_size)
        write_json(Path(args.output), {
            "predictions": predictions, "labels": list(config.labels), "betas": list(config.betas),
            "view_weights": list(config.view_weights or [1.0] * projector.num_views),
            "backbone": backbone.info.as_dict(), "projector": projector.describe(), "template": config.template})
    return 0


def entry() -> None:
    run_cli(main)
