"""Tune view weights (and betas) on the train split or K train shots per class, report test accuracy.

Uses the same cached per-view terms as `python -m calip3d.eval`, so a second run with another grid, search method
or tuning subset does not re-encode. Test-tuned numbers are produced only with --oracle and labelled ORACLE.

    python experiments/tune_view_weights.py --dataset modelnet40 --data-root DATA --backbone RN50 --pretrained openai \
        --tune-split fewshot --shots 16 --method exhaustive
    python experiments/tune_view_weights.py --dataset modelnet40 --data-root DATA --views 10 --method coordinate
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from calip3d.errors import run_cli
from calip3d.eval import build_parser
from calip3d.pipeline import make_encoder
from calip3d.report import provenance, write_json
from calip3d.sampling import sample_per_class
from calip3d.search import search_joint, search_view_weights
from calip3d.zeroshot import LOGIT_SCALE, aggregate_views, calip_scores, score


def parser() -> argparse.ArgumentParser:
    p = build_parser()
    p.prog = "python experiments/tune_view_weights.py"
    p.description = __doc__.split("\n\n")[0]
    g = p.add_argument_group("view-weight tuning")
    g.add_argument("--tune-split", choices=("fewshot", "train"), default="fewshot",
                   help="tune on --shots train clouds per class (seed --tune-seed) or on the whole train split")
    g.add_argument("--shots", type=int, default=16, help="shots per class for --tune-split fewshot")
    g.add_argument("--method", choices=("auto", "exhaustive", "coordinate"), default="auto",
                   help="exhaustive grid (PointCLIP's post-search) or coordinate ascent (fine grids, 10 views)")
    g.add_argument("--restarts", type=int, default=3, help="random restarts of coordinate ascent")
    g.add_argument("--rounds", type=int, default=2, help="alternations of the joint view-weight/beta search")
    g.add_argument("--oracle", action="store_true", help="also tune on the TEST labels (reported as ORACLE)")
    return p


def main(argv: list[str] | None = None) -> int:
    from calip3d.datasets.pointclouds import load_point_split
    from calip3d.pipeline import _grid, search_range
    from calip3d.projection import make_projector
    from calip3d.prompts import build_prompts

    args = parser().parse_args(argv)
    load = dict(fmt=args.format, num_points=args.points, sampling=args.sampling, seed=0,
                normalize=not args.no_normalize, up_axis=args.up_axis)
    test = load_point_split(args.dataset, args.data_root, "test", **load)
    train = load_point_split(args.dataset, args.data_root, "train", **load)
    if args.tune_split == "fewshot":
        draw = sample_per_class(train.labels, args.shots, args.tune_seed, num_classes=len(train.classnames))
        train = train.subset(np.asarray(draw.indices))
        where = f"{args.shots} train clouds per class (seed {args.tune_seed}), {len(train.labels)} clouds"
    else:
        where = f"the train split, {len(train.labels)} clouds"
    encoder = make_encoder(args)
    projector = make_projector(args.projector, views=args.views, image_size=encoder.backbone.image_size)
    prompts = build_prompts(args.dataset, test.classnames, args.templates)
    text = encoder.backbone.prompt_features(prompts.prompts)
    tune_terms = encoder.point_terms(train, projector, text, prompts.description, desc="tuning set")
    test_terms = encoder.point_terms(test, projector, text, prompts.description, desc="test")
    grid = _grid(args.view_grid)
    beta2_max, beta3_max = search_range(args, args.dataset)

    result: dict = {"dataset": args.dataset, "num_views": projector.num_views, "grid": list(grid),
                    "method": args.method, "tuning_set": where}
    rows = []
    sources = [("tuned", tune_terms, where)] + ([("oracle", test_terms, "ORACLE: test labels")] if args.oracle else [])
    uniform = score(LOGIT_SCALE * aggregate_views([test_terms.clip], None)[0], test_terms.labels)
    rows.append(("pointclip uniform", uniform["top1"], "-", "uniform"))
    for name, terms, label in sources:
        pc = search_view_weights(LOGIT_SCALE * terms.clip, terms.labels, grid=grid, method=args.method,
                                 restarts=args.restarts)
        pc_test = score(LOGIT_SCALE * aggregate_views([test_terms.clip], pc.weights)[0], test_terms.labels)
        joint = search_joint(*terms.triple, terms.labels, grid=grid, beta2_max=beta2_max, beta3_max=beta3_max,
                             steps=args.search_steps, rounds=args.rounds, method=args.method)
        betas = (1.0, joint.beta2, joint.beta3)
        calip_test = calip_scores(aggregate_views(test_terms.triple, joint.weights), test_terms.labels, betas)
        result[f"pointclip_{name}"] = {**pc_test, "view_weights": list(pc.weights), "source": label,
                                       "tuning_top1": pc.accuracy, "search_method": pc.method}
        result[f"calip_{name}"] = {**calip_test, "view_weights": list(joint.weights), "betas": list(betas),
                                   "source": label, "tuning_top1": joint.accuracy}
        rows.append((f"pointclip {name}", pc_test["top1"], "-", ",".join(f"{w:g}" for w in pc.weights)))
        rows.append((f"calip {name}", calip_test["top1"], ",".join(f"{b:g}" for b in betas),
                     ",".join(f"{w:g}" for w in joint.weights)))
    result["pointclip_uniform"] = uniform
    result["provenance"] = provenance(backbone=encoder.info.as_dict(), projector=projector.describe(),
                                      points=test.settings, templates=prompts.description)
    print(f"{args.dataset} test ({len(test_terms.labels)} clouds); tuning set: {where}")
    print(f"{'method':22s} {'top-1':>7s}  {'betas':18s} view weights")
    for label, top1, betas_text, weights_text in rows:
        oracle = " (ORACLE)" if "oracle" in label else ""
        print(f"{label + oracle:22s} {top1:7.2f}  {betas_text:18s} {weights_text}")
    out = Path(args.output or f"results/tune_views_{args.dataset}_{projector.num_views}v.json")
    write_json(out, result)
    print(f"results written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
