"""`calip3d show INPUT... --labels A B C | --label-set NAME`: see what CALIP does, one PNG per input.

INPUT is a point cloud or mesh (anything `classify` reads) or an image (jpg, png, ... in any case); `--dataset NAME
--index I` takes an item of a dataset (`folder:PATH` too) instead. For a point cloud: the projected views as CLIP sees
them, CALIP's attention over the spatial positions for the top classes as heat maps over each view, and per view the
three CALIP terms, the view weights and the final probabilities. For an image: the image, one attention map per top
class, the terms and the CLIP vs CALIP probabilities. Defaults as `eval`: PointCLIP projector, 6 views, betas 1,1.12,0.02 (an
image dataset's published pair for its photos), uniform view weights; the 3 top classes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from calip3d.backbone import CLIPBackbone
from calip3d.datasets import DATASETS, LABEL_SETS, get_dataset, load_split
from calip3d.datasets.registry import POINTCLOUD_ZS_TEMPLATE
from calip3d.errors import CalipError, run_cli
from calip3d.explain import Explanation, explain_clouds, explain_images, image_inputs, is_image_file, read_image
from calip3d.figures import cloud_figure, image_figure, save_figure
from calip3d.published import DEFAULT_BETAS
from calip3d.prompts import from_templates, validate_template
from calip3d.zeroshot import ClassifyConfig, load_clouds

from .classify import classify_config
from .flags import (
    add_backbone_flags, add_data_flags, add_projector_flags, add_temperature_flag, backbone_config, check_minimums,
    ensure_data, new_parser, parse_betas, parse_view_weights, speaks_flags,
)

IMAGE_LABEL_SETS = tuple(name for name, info in DATASETS.items() if not info.is_points)


def build_parser(prog: str = "calip3d show") -> argparse.ArgumentParser:
    parser = new_parser(prog, __doc__)
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="point-cloud, mesh or image files")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", nargs="+", help="candidate class names")
    labels.add_argument("--label-set", choices=tuple(LABEL_SETS) + IMAGE_LABEL_SETS,
                        help="a dataset's class names as candidates (point-cloud sets, or an image dataset's, read "
                             "from its split under --data-root)")
    item = parser.add_argument_group("an item of a dataset instead of files")
    item.add_argument("--dataset", default=None, help="dataset name or alias, or folder:PATH (as eval takes it)")
    item.add_argument("--index", type=int, default=None, help="the item's position in --split")
    item.add_argument("--split", choices=("test", "val", "train"), default="test", help="the split of --index")
    add_data_flags(item)
    add_backbone_flags(parser)
    parser.add_argument("--classes", type=int, default=3, help="top classes shown")
    parser.add_argument("--betas", type=parse_betas, default=None,
                        help="CALIP betas 1,B2,B3 (default: 1,1.12,0.02; for photos of an image dataset, its "
                             "published pair)")
    parser.add_argument("--view-weights", type=parse_view_weights, default=None, help="W1,...,WV (default uniform)")
    parser.add_argument("--template", default=None,
                        help="prompt template (default: 'point cloud depth map of a {}.' for clouds; the image "
                             "dataset's CoOp template, else 'a photo of a {}.', for images)")
    add_temperature_flag(parser, "CALIP attention temperature")
    add_projector_flags(parser, None, "number of views (default: 6 for pointclip, 10 for realistic)", settings=True)
    parser.add_argument("--points", type=int, default=1024, help="points per cloud")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="up axis of the files (scans are often z)")
    parser.add_argument("--mesh-samples", type=int, default=10000, help="points sampled on a mesh's surface")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output", default="show", help="folder of the PNGs (one per input, named after it)")
    out.add_argument("--save-maps", default=None, metavar="FILE.npz",
                     help="also save the numbers behind each picture (positions [V, K, N], grid, views, terms "
                          "[V, K, 3], classes, view_weights, betas); with several inputs, FILE_<input>.npz each")
    return parser


@dataclass
class Shown:
    """One input to explain: a cloud `[P, 3]` or a PIL image, its name (for the PNG) and a title."""

    name: str
    title: str
    cloud: np.ndarray | None = None
    image: Any = None


@dataclass
class Candidates:
    """The candidate classes, and the image dataset they come from (its prompt and betas serve its photos)."""

    classnames: list[str]
    image_dataset: str | None = None


def _dataset_item(args: argparse.Namespace) -> tuple[Shown, Candidates]:
    """`--dataset NAME --index I`: the item and the dataset's classes."""
    if args.inputs or args.index is None:
        raise CalipError("--dataset takes one item by --index, instead of INPUT files")
    info = get_dataset(args.dataset)
    split = load_split(info.name, ensure_data(args, info.name), args.split)
    if not 0 <= args.index < len(split):
        raise CalipError(f"--index {args.index} is outside the {len(split)} items of {info.name} {args.split}")
    label = split.classnames[int(split.labels[args.index])]
    shown = info.title if info.is_folder else info.name
    name, title = f"{info.file_stem}_{args.split}_{args.index}", f"{shown} {args.split} #{args.index} (true: {label})"
    if info.is_points:
        return Shown(name, title, cloud=split.points[args.index]), Candidates(split.classnames)
    return Shown(name, title, image=read_image(split.items[args.index][0])), Candidates(split.classnames, info.name)


def _candidates(args: argparse.Namespace) -> Candidates:
    """`--labels` or `--label-set` (a point-cloud set, or an image dataset's classes read from its split)."""
    if args.labels:
        return Candidates(list(args.labels))
    if args.label_set in LABEL_SETS:
        return Candidates(list(LABEL_SETS[args.label_set]))
    if args.label_set is not None:
        split = load_split(args.label_set, ensure_data(args, args.label_set), "test")
        return Candidates(split.classnames, args.label_set)
    raise CalipError("give the candidate classes: --labels A B C or --label-set NAME")


def _read_files(paths: Sequence[str], config: ClassifyConfig) -> list[Shown]:
    """Every input read (an unreadable one stops the command) before anything is written. Pictures are named after
    the files' stems (their full names where two stems are the same)."""
    files = [Path(p) for p in paths]
    unique = len({f.stem for f in files}) == len(files)
    shown = []
    for path in files:
        name = path.stem if unique else path.name
        if is_image_file(path):
            shown.append(Shown(name, path.name, image=read_image(path)))
        else:
            shown.append(Shown(name, path.name, cloud=load_clouds([path], config)[0]))
    return shown


def _explain(item: Shown, args: argparse.Namespace, config: ClassifyConfig, backbone: CLIPBackbone,
             candidates: Candidates) -> Explanation:
    if item.cloud is not None:
        text = backbone.prompt_features(from_templates(config.labels, [config.template], "show").prompts)
        return explain_clouds(backbone, item.cloud, config.projector.build(backbone.image_size), text,
                              config.labels, config.betas, config.view_weights, config.calip.temperature, args.classes)[0]
    info = get_dataset(candidates.image_dataset) if candidates.image_dataset else None
    template = validate_template(args.template or (info.template if info else "a photo of a {}."), "--template")
    betas = args.betas or ((1.0, *info.paper_betas) if info and info.paper_betas else DEFAULT_BETAS)
    text = backbone.prompt_features(from_templates(config.labels, [template], "show").prompts)
    pixels, display = image_inputs(item.image, backbone.transform)
    return explain_images(backbone, pixels, text, config.labels, betas, config.calip.temperature, args.classes,
                          display=display)[0]


def _save(result: Explanation, item: Shown, args: argparse.Namespace, several: bool) -> None:
    note = f"betas {','.join(f'{b:g}' for b in result.betas)}; CALIP temperature {result.temperature:g}"
    if result.kind == "cloud":
        note += f"; view weights {','.join(f'{w:g}' for w in result.view_weights)}"
    draw = cloud_figure if result.kind == "cloud" else image_figure
    figure = draw(result, item.title, note)
    png = save_figure(figure, Path(args.output) / f"{item.name}.png")
    top = ", ".join(f"{c} {result.probabilities[i]:.1%}" for c, i in zip(result.top_classes, result.top))
    print(f"{item.name}: {top} -> {png}")
    if args.save_maps:
        maps = Path(args.save_maps)
        target = maps.with_name(f"{maps.stem}_{item.name}.npz") if several else maps
        print(f"  maps -> {result.save_npz(target)}")


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d show") -> int:
    args = build_parser(prog).parse_args(argv)
    check_minimums(args, {"classes": 1, "points": 1, "mesh_samples": 2})
    items: list[Shown] = []
    candidates = None
    if args.dataset is not None:
        item, candidates = _dataset_item(args)
        items = [item]
    elif not args.inputs:
        raise CalipError("give INPUT files, or --dataset NAME --index I")
    if args.labels or args.label_set or candidates is None:  # the given classes replace a dataset item's
        chosen = _candidates(args)
        candidates = Candidates(chosen.classnames, chosen.image_dataset or (candidates and candidates.image_dataset))
    config = classify_config(args, candidates.classnames, args.template or POINTCLOUD_ZS_TEMPLATE,
                             args.betas or DEFAULT_BETAS)
    items = items or _read_files(args.inputs, config)
    backbone = backbone_config(args).load()
    for item in items:
        _save(_explain(item, args, config, backbone, candidates), item, args, several=len(items) > 1)
    return 0


def entry() -> None:
    run_cli(main)
