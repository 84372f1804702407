"""`python -m calip3d.eval`: zero-shot CLIP / PointCLIP vs CALIP on an image or point-cloud dataset.

Prints a table and writes a JSON result (schema in `calip3d.report`). Terms are cached on disk, so a rerun that
changes only betas, view weights or the tuning protocol costs seconds.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import torch

from .errors import CalipError, run_cli

def _betas(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--betas expects three numbers 1,B2,B3, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"--betas expects three numbers 1,B2,B3, got {text!r}")
    return values  # type: ignore[return-value]


def _weights(text: str) -> list[float] | str:
    if text in ("paper", "uniform"):
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--view-weights expects W1,...,WV, 'uniform' or 'paper', got {text!r}") \
            from None
    if any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise argparse.ArgumentTypeError("--view-weights must be non-negative with at least one positive weight")
    return values


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds "(default: X)" to a flag's help unless the help already speaks of its default or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def add_backbone_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by eval, classify and fewshot: model, weights, device, precision, encoding batch."""
    group = parser.add_argument_group("backbone")
    group.add_argument("--backbone", default="RN50",
                       help="open_clip model name (RN50, RN101, RN50x4, ViT-B-32, ViT-B-16, ...), hf-hub:/local-dir: "
                            "schema, or the path of an open_clip model-config JSON (default: RN50)")
    group.add_argument("--pretrained", default="openai",
                       help="open_clip weights tag (openai, laion2b_s34b_b79k, ...) or a local checkpoint file "
                            "(.pt/.bin/.safetensors, OpenAI TorchScript .pt too); 'none' = random weights, for "
                            "timing only (default: openai)")
    group.add_argument("--quick-gelu", action="store_true",
                       help="build the model with QuickGELU; needed for OpenAI weights loaded from a local file "
                            "(automatic for the 'openai' tag and OpenAI's TorchScript .pt files)")
    group.add_argument("--cache-dir-weights", dest="weights_cache", default=None,
                       help="where open_clip/huggingface look for downloaded weights (default: the HF hub cache)")
    group.add_argument("--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1")
    group.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                       help="model precision (default: fp16 on CUDA, fp32 on CPU); CALIP's softmax runs in fp32")
    group.add_argument("--batch-size", type=int, default=64, help="encoding batch size (default: 64)")
    group.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                       help="image-loading worker processes (default: min(4, CPUs))")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CalipError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CalipError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device


def load_from_args(args: argparse.Namespace):
    """(backbone, transform, info, precision) from the shared backbone flags."""
    from .backbone import load_backbone

    device = resolve_device(args.device)
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    pretrained = None if str(args.pretrained).lower() in ("none", "random") else args.pretrained
    backbone, transform, info = load_backbone(
        args.backbone, pretrained, device=device, precision=precision,
        quick_gelu=True if args.quick_gelu else None, cache_dir=args.weights_cache)
    return backbone, transform, info, precision


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m calip3d.eval",
        description="Zero-shot CLIP/PointCLIP vs CALIP on one dataset. Reports plain CLIP, CALIP with published "
                    "(2D) or default (3D) betas, and CALIP tuned on a held-out tuning set; test-tuned ('oracle') "
                    "numbers only with --tune-on test.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--dataset", required=True,
                        help="2D: imagenet, caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, "
                             "fgvc_aircraft, sun397, dtd, eurosat, ucf101; 3D: modelnet40, modelnet10, "
                             "scanobjectnn-objonly, scanobjectnn-objbg, scanobjectnn-hardest")
    parser.add_argument("--data-root", required=True, help="folder holding the dataset folders (see data/README.md)")
    add_backbone_args(parser)
    parser.add_argument("--split", choices=("test", "val", "train"), default="test", help="split to evaluate")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples (quick looks)")
    calip = parser.add_argument_group("CALIP")
    calip.add_argument("--betas", type=_betas, default=None,
                       help="also report CALIP with these betas, '1,B2,B3' (beta1 is the CLIP term's weight)")
    calip.add_argument("--tune-on", choices=("val", "none", "test"), default="val",
                       help="val: tune betas on the tuning set (CoOp val; 16 train shots per class for ImageNet and "
                            "3D); test: ALSO report betas tuned on the test labels, labelled ORACLE; none: no tuning")
    calip.add_argument("--tune-shots", type=int, default=16,
                       help="shots per class of the tuning set drawn from train (ImageNet and 3D datasets)")
    calip.add_argument("--tune-seed", type=int, default=1, help="seed of the tuning-set draw")
    calip.add_argument("--tune-limit", type=int, default=None, help="use only the first N tuning samples")
    calip.add_argument("--beta2-max", type=float, default=None,
                       help="upper bound of the beta2 grid (default: 2.0, widened to cover the paper's value)")
    calip.add_argument("--beta3-max", type=float, default=None,
                       help="upper bound of the beta3 grid (default: 0.1, widened to cover the paper's value)")
    calip.add_argument("--search-steps", type=int, default=200, help="grid steps per beta (official: 200)")
    calip.add_argument("--temperature", type=float, default=0.5,
                       help="attention temperature (official code: 0.5, i.e. A*2)")
    calip.add_argument("--templates", default="default",
                       help="default (CoOp's single template; ImageNet: the 7-template ensemble; 3D: 'point cloud "
                            "depth map of a {}.'), single, ensemble, or FILE.json (templates, or CuPL per-class "
                            "prompts)")
    images = parser.add_argument_group("images")
    images.add_argument("--skip-bad-files", action="store_true",
                        help="skip unreadable images (reported) instead of stopping")
    points = parser.add_argument_group("point clouds")
    points.add_argument("--projector", choices=("pointclip", "realistic"), default="pointclip",
                        help="pointclip: PointCLIP's depth scatter; realistic: PointCLIP V2's projection")
    points.add_argument("--views", type=int, choices=(6, 10), default=None,
                        help="number of views (default: 6 for pointclip, 10 for realistic)")
    points.add_argument("--view-weights", type=_weights, default=None,
                        help="W1,...,WV; 'paper' = PointCLIP Table 1 (searched on test labels: ORACLE); "
                             "default uniform")
    points.add_argument("--view-grid", default="0.25,0.5,0.75,1.0",
                        help="grid of view-weight values for tuning (PointCLIP's post-search grid)")
    points.add_argument("--points", type=int, default=1024, help="points per cloud")
    points.add_argument("--sampling", choices=("first", "fps", "random"), default="first",
                        help="how to pick --points points (first N as PointCLIP, farthest-point, or seeded random)")
    points.add_argument("--no-normalize", action="store_true", help="do not centre and scale clouds to the unit sphere")
    points.add_argument("--format", choices=("h5", "resampled"), default=None,
                        help="ModelNet40 release: h5 (modelnet40_ply_hdf5_2048, default) or resampled "
                             "(modelnet40_normal_resampled)")
    points.add_argument("--up-axis", choices=("y", "z"), default="y", help="up axis of the data (datasets are y-up)")
    points.add_argument("--distance", type=float, default=None,
                        help="projection distance (pointclip default 1.6; PointCLIP Table 1: modelnet10 1.7, "
                             "modelnet40 1.6, scanobjectnn 1.8)")
    points.add_argument("--resolution", type=int, default=None,
                        help="depth-map resolution (pointclip default 128; PointCLIP Table 1: modelnet10 100, "
                             "modelnet40 121, scanobjectnn 196)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--cache-dir", default=None,
                     help="cache of encoded terms (default: $CALIP3D_CACHE or ~/.cache/calip3d)")
    out.add_argument("--no-cache", action="store_true", help="neither read nor write the term cache")
    out.add_argument("--output", default=None,
                     help="JSON result path (default: results/<dataset>_<backbone>_<split>.json)")
    return parser


def is_point_dataset(name: str) -> bool:
    from .datasets.pointclouds import POINT_DATASETS

    return name in POINT_DATASETS


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("batch_size", "limit", "tune_shots", "points", "search_steps", "tune_limit"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CalipError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.workers < 0:
        raise CalipError("--workers must be >= 0")
    from .pipeline import run_eval

    result = run_eval(args)
    from .report import format_table, write_json

    print(format_table(result))
    output = Path(args.output) if args.output else default_output(args)
    write_json(output, result)
    print(f"results written to {output}")
    return 0


def default_output(args: argparse.Namespace) -> Path:
    backbone = Path(args.backbone).stem if args.backbone.endswith(".json") else args.backbone.replace("/", "-")
    return Path("results") / f"{args.dataset}_{backbone}_{args.split}.json"


def entry() -> None:
    run_cli(main)


if __name__ == "__main__":
    entry()
