"""`python -m calip3d.classify FILE... --labels chair table ...`: zero-shot CALIP on your own point clouds and meshes.

Each file is loaded (`calip3d.io.load_point_cloud`: .ply/.pcd/.xyz/.pts, meshes .off/.obj/.stl, .npy/.npz/.txt/.h5),
sampled to `--points` points, centred and scaled to the unit sphere, projected to depth maps, and classified with
per-view CALIP aggregated over views. Defaults: betas 1,1.12,0.02 (CALIP's ImageNet pair; no 3D betas are published)
and uniform view weights, both overridable.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import CalipError, run_cli
from .eval import HelpFormatter, _betas, _weights, add_backbone_args, load_from_args
from .presets import DEFAULT_3D_BETAS

MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup", "curtain",
    "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel",
    "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool",
    "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)


def label_sets() -> dict[str, tuple[str, ...]]:
    from .datasets.pointclouds import MODELNET10_CLASSES, SCANOBJECTNN_CLASSES

    return {"modelnet40": MODELNET40_CLASSES, "modelnet10": MODELNET10_CLASSES,
            "scanobjectnn": SCANOBJECTNN_CLASSES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m calip3d.classify",
        description="Classify point-cloud or mesh files zero-shot with CALIP over PointCLIP depth views. "
                    f"Default betas 1,{DEFAULT_3D_BETAS[0]},{DEFAULT_3D_BETAS[1]} (CALIP's ImageNet pair) and "
                    "uniform view weights.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("files", nargs="+", help="point-cloud or mesh files")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", nargs="+", help="candidate class names")
    labels.add_argument("--label-set", choices=("modelnet40", "modelnet10", "scanobjectnn"),
                        help="use a dataset's class names as candidates")
    add_backbone_args(parser)
    parser.add_argument("--top-k", type=int, default=5, help="labels printed per file")
    parser.add_argument("--betas", type=_betas, default=(1.0, *DEFAULT_3D_BETAS), help="CALIP betas 1,B2,B3")
    parser.add_argument("--view-weights", type=_weights, default=None, help="W1,...,WV (default uniform)")
    parser.add_argument("--template", default="point cloud depth map of a {}.", help="prompt template")
    parser.add_argument("--temperature", type=float, default=0.5, help="CALIP attention temperature")
    parser.add_argument("--projector", choices=("pointclip", "realistic"), default="pointclip",
                        help="depth projection")
    parser.add_argument("--views", type=int, choices=(6, 10), default=None, help="number of views")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="up axis of the files (scans are often z)")
    parser.add_argument("--mesh-samples", type=int, default=10000, help="points sampled on a mesh's surface")
    parser.add_argument("--output", default=None, help="also write the predictions to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .attention import calip_terms, combine_terms
    from .io import load_point_cloud
    from .pointops import normalize_unit_sphere
    from .projection import make_projector
    from .prompts import from_templates, validate_template
    from .report import write_json
    from .zeroshot import aggregate_views

    classnames = list(args.labels) if args.labels else list(label_sets()[args.label_set])
    if len(set(classnames)) != len(classnames):
        raise CalipError("--labels contains duplicates")
    if args.top_k < 1 or args.points < 1:
        raise CalipError("--top-k and --points must be >= 1")
    validate_template(args.template, "--template")
    clouds = np.stack([
        normalize_unit_sphere(load_point_cloud(f, num_points=args.points, up_axis=args.up_axis,
                                               mesh_samples=args.mesh_samples))
        for f in args.files
    ]).astype(np.float32)

    backbone, _, info, _ = load_from_args(args)
    projector = make_projector(args.projector, views=args.views, image_size=backbone.image_size)
    if isinstance(args.view_weights, list) and len(args.view_weights) != projector.num_views:
        raise CalipError(f"--view-weights has {len(args.view_weights)} values; the projector makes "
                         f"{projector.num_views} views")
    weights = args.view_weights if isinstance(args.view_weights, list) else None
    text = backbone.prompt_features(from_templates(classnames, [args.template], "classify").prompts)
    with torch.inference_mode():
        images = projector.images(torch.from_numpy(clouds).to(backbone.device))  # [F, V, 3, S, S]
        glob, spatial = backbone.encode_image(images.flatten(0, 1))
        terms = [t.view(len(args.files), projector.num_views, -1).cpu()
                 for t in calip_terms(glob, spatial, text, args.temperature)]
        logits = combine_terms(aggregate_views(terms, weights), args.betas)
        probs = logits.softmax(dim=-1)

    k = min(args.top_k, len(classnames))
    predictions = []
    for path, row in zip(args.files, probs):
        top = row.topk(k)
        ranked = [{"label": classnames[i], "probability": float(p)} for p, i in zip(top.values, top.indices)]
        predictions.append({"file": str(path), "top": ranked})
        print(f"{path}:")
        for item in ranked:
            print(f"  {item['probability']:7.2%}  {item['label']}")
    if args.output:
        write_json(Path(args.output), {
            "predictions": predictions, "labels": classnames, "betas": list(args.betas),
            "view_weights": weights or [1.0] * projector.num_views, "backbone": info.as_dict(),
            "projector": projector.describe(), "template": args.template})
    return 0


def entry() -> None:
    run_cli(main)


if __name__ == "__main__":
    entry()

