"""Flag groups shared by the commands, their parsers, and the typed configs built from them.

Groups share code, not defaults: each command passes its own defaults and help where they differ (e.g. `fewshot`
projects 10 views, `eval` 6).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from calip3d.attention import CalipConfig
from calip3d.backbone import BackboneConfig
from calip3d.datasets import FolderPointSettings, PointSettings, dataset_file_stem, is_folder_dataset
from calip3d.distributed import DEFAULT_TIMEOUT, Ranks, session
from calip3d.encoding import EncodeConfig, default_workers
from calip3d.errors import CalipError, check_at_least
from calip3d.fetch import data_root, ensure_dataset
from calip3d.published import CALIP_TEMPERATURE
from calip3d.projection import PROJECTORS, ProjectorConfig

T = TypeVar("T")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds "(default: X)" to a flag's help unless the help already speaks of its default or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


# ------------------------------------------------------------------------------------------------ value parsers


def parse_betas(text: str) -> tuple[float, float, float]:
    """`--betas 1,B2,B3`."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--betas expects three numbers 1,B2,B3, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"--betas expects three numbers 1,B2,B3, got {text!r}")
    return values  # type: ignore[return-value]


def parse_view_weights(text: str) -> tuple[float, ...] | str:
    """`--view-weights W1,...,WV`, `uniform` or `paper`."""
    if text in ("paper", "uniform"):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--view-weights expects W1,...,WV, 'uniform' or 'paper', got {text!r}") \
            from None
    if any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise argparse.ArgumentTypeError("--view-weights must be non-negative with at least one positive weight")
    return values


def parse_positive_list(flag: str, text: str) -> tuple[float, ...]:
    """Comma-separated positive numbers (`--view-grid`, `--lr-grid`); `CalipError` naming `flag` otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not v > 0 for v in values):
        raise CalipError(f"{flag} expects comma-separated positive numbers, got {text!r}")
    return values


def check_minimums(args: argparse.Namespace, minimums: dict[str, int]) -> None:
    """`--flag must be >= N` for each given flag whose value is below its minimum."""
    for dest, least in minimums.items():
        check_at_least(getattr(args, dest), least, f"--{dest.replace('_', '-')}")


# ------------------------------------------------------------------------------------------------ messages

# The library names config fields in its messages ("SearchConfig.steps must be >= 1, got 0"); the commands name the
# flag that sets the field instead ("--search-steps must be >= 1, got 0"). One entry per `Class.field` a library
# message may name (tests/test_messages.py checks each is a real field and a real flag).
FIELD_FLAGS: dict[str, str] = {
    "BackboneConfig.device": "--device",
    "BackboneConfig.precision": "--precision",
    "BackboneConfig.pretrained": "--pretrained",
    "BackboneConfig.quick_gelu": "--quick-gelu",
    "BackboneConfig.weights_cache": "--cache-dir-weights",
    "CalipConfig.betas": "--betas",
    "CalipConfig.temperature": "--temperature",
    "ClassifyConfig.labels": "--labels",
    "ClassifyConfig.num_points": "--points",
    "ClassifyConfig.template": "--template",
    "ClassifyConfig.view_weights": "--view-weights",
    "EncodeConfig.batch_size": "--batch-size",
    "EncodeConfig.decode_on_device": "--decode-on-device",
    "EncodeConfig.skip_bad_files": "--skip-bad-files",
    "EncodeConfig.workers": "--workers",
    "EvalConfig.limit": "--limit",
    "EvalConfig.memory_shots": "--memory-shots",
    "EvalConfig.methods": "--methods",
    "EvalConfig.stream_seeds": "--stream-seeds",
    "EvalConfig.view_weights": "--view-weights",
    "FewShotConfig.augment": "--augment",
    "FewShotConfig.base": "--base",
    "FewShotConfig.checkpoint": "--checkpoint",
    "FewShotConfig.eval_only": "--eval-only",
    "FewShotConfig.features": "--features",
    "FewShotConfig.limit": "--limit",
    "FewShotConfig.lr_grid": "--lr-grid",
    "FewShotConfig.method": "--method",
    "FewShotConfig.protocol": "--protocol",
    "FewShotConfig.short_classes": "--short-classes",
    "FewShotConfig.shots": "--shots",
    "FewShotConfig.split_dir": "--split-dir",
    "PointSettings.num_points": "--points",
    "PointSettings.format": "--format",
    "PointSettings.sampling": "--sampling",
    "PointSettings.up_axis": "--up-axis",
    "ProjectorConfig.views": "--views",
    "Ranks.timeout": "--dist-timeout",
    "SearchConfig.beta2_max": "--beta2-max",
    "SearchConfig.beta3_max": "--beta3-max",
    "SearchConfig.restarts": "--restarts",
    "SearchConfig.rounds": "--rounds",
    "SearchConfig.steps": "--search-steps",
    "SearchConfig.view_grid": "--view-grid",
    "SearchConfig.view_method": "--method",
    "TrainConfig.batch_size": "--train-batch-size",
    "TrainConfig.epochs": "--epochs",
    "TrainConfig.label_smoothing": "--label-smoothing",
    "TrainConfig.lr": "--lr",
    "TrainConfig.weight_decay": "--weight-decay",
    "TuneConfig.limit": "--tune-limit",
    "TuneConfig.on": "--tune-on",
    "TuneConfig.seed": "--tune-seed",
    "TuneConfig.shots": "--tune-shots",
    "TuneViewsConfig.limit": "--limit",
    "TuneViewsConfig.seed": "--tune-seed",
    "TuneViewsConfig.shots": "--shots",
    "TuneViewsConfig.tune_split": "--tune-split",
}

# `Class.field`, optionally with a suggested setting `=VALUE` (`'quoted'` or one token): "use BackboneConfig.device='cpu'"
_FIELD = re.compile(r"(?<![\w.])([A-Z]\w*\.[a-z_]\w*)(?:=('[^']*'|[\w.:/-]*\w))?(?![\w.]*\w)")


def flag_message(text: str) -> str:
    """`text` with each config field of `FIELD_FLAGS` named by its flag: `SearchConfig.steps` -> `--search-steps`, a
    suggested setting `Field=VALUE` -> `--flag VALUE` (`=True`: the switch alone); other text unchanged."""
    def to_flag(match: re.Match[str]) -> str:
        flag = FIELD_FLAGS.get(match[1])
        if flag is None:
            return match[0]
        value = match[2]
        if value is None or value == "True":
            return flag
        return flag + " " + value.strip("'")
    return _FIELD.sub(to_flag, text)


def speaks_flags(main: Callable[..., T]) -> Callable[..., T]:
    """A command's `main` whose `CalipError`s name flags where the library named config fields (`flag_message`)."""
    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> T:
        try:
            return main(*args, **kwargs)
        except CalipError as err:
            if len(err.args) == 1 and isinstance(err.args[0], str):
                err.args = (flag_message(err.args[0]),)
            raise
    return wrapped


# ------------------------------------------------------------------------------------------------ flag groups


def add_data_flags(parser: argparse.ArgumentParser, download: bool = True) -> None:
    """`--data-root` (optional: the default data root), and with `download` `--no-download` / `--mirror`."""
    parser.add_argument("--data-root", default=None,
                        help="folder holding the dataset folders (default: $CALIP3D_DATA, else "
                             "~/.cache/calip3d/data; see data/README.md; not used by folder:PATH datasets)")
    if download:
        parser.add_argument("--no-download", action="store_true",
                            help="never download a missing dataset (also CALIP3D_OFFLINE=1); report what to get")
        parser.add_argument("--mirror", action="append", default=None, metavar="URL",
                            help="try URL/<file name> first for the dataset's files (repeatable; default: "
                                 "$CALIP3D_MIRROR, comma-separated)")


def ensure_data(args: argparse.Namespace, dataset: str, fmt: str | None = None, ranks: Ranks | None = None) -> str:
    """The data root, once `dataset` is usable there: downloaded (progress on stderr) when missing, unless
    `--no-download` or CALIP3D_OFFLINE=1, which give the expected layout and the `calip3d fetch` command instead. Under
    torchrun with several ranks a missing dataset is that error too (the ranks would download it side by side)."""
    root = data_root(args.data_root)
    several = ranks is not None and ranks.world_size > 1
    ensure_dataset(dataset, root, download=not args.no_download and not several, mirrors=args.mirror, fmt=fmt,
                   no_download_reason="several ranks under torchrun" if several else "--no-download")
    return str(root)


def run_pipeline(args: argparse.Namespace, config: Any, pipeline: Callable[[Any, Any], T]) -> T | None:
    """Join the torchrun job this process belongs to (if any), make the dataset present under the data root, load the
    backbone on this rank's device and run `pipeline(config, backbone)`; None on the ranks other than 0."""
    with distributed_session(args) as ranks:
        config = replace(config, data_root=ensure_data(args, config.dataset, config.points.format, ranks))
        return pipeline(config, backbone_config(args, ranks).load())


def add_backbone_flags(parser: argparse.ArgumentParser) -> None:
    """Model, weights, device, precision, encoding batch and loader workers."""
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
    group.add_argument("--device", default="auto",
                       help="torch device: auto (cuda when available), cpu, cuda, cuda:1; under torchrun, auto and cuda "
                            "mean each rank's own GPU (cuda:LOCAL_RANK)")
    group.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                       help="model precision (default: fp16 on CUDA, fp32 on CPU); CALIP's softmax runs in fp32")
    group.add_argument("--compile", action="store_true",
                       help="run the image tower through torch.compile (the first batch compiles; terms within 1e-4 "
                            "of the eager ones; see experiments/bench_e2e.py for when it is faster)")
    group.add_argument("--batch-size", type=int, default=64, help="encoding batch size (default: 64)")
    group.add_argument("--workers", type=int, default=None,
                       help=f"image-loading worker processes (default: min(4, CPUs) on the CPU, here "
                            f"{default_workers(torch.device('cpu'))}; with a GPU, its share of the CPUs but one, up to "
                            "16)")


def add_scale_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for large runs: decoding on the device, and the torchrun collectives' timeout."""
    group = parser.add_argument_group(
        "large runs", "Start with `torchrun --nproc_per_node N -m calip3d ...` to shard the encoding over N processes "
                      "(one GPU each, or the CPU); rank 0 prints and writes the results, equal to one process's.")
    group.add_argument("--decode-on-device", action="store_true",
                       help="read image files in the workers but decode (nvJPEG on a GPU), resize, crop and normalise "
                            "them on the device; inputs within 2/255 of the PIL path per pixel (CPU decoder; nvJPEG: "
                            "see experiments/measurements/e2e_*.txt)")
    group.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT.total_seconds() / 60, metavar="MINUTES",
                       help="under torchrun: how long a rank waits for the others (e.g. while rank 0 trains a "
                            "few-shot method) before the job stops with an error")


def backbone_config(args: argparse.Namespace, ranks: Ranks | None = None) -> BackboneConfig:
    """The backbone flags; in a session, on `ranks.device` (the `--device` flag resolved for this rank)."""
    pretrained = None if str(args.pretrained).lower() in ("none", "random") else args.pretrained
    return BackboneConfig(name=args.backbone, pretrained=pretrained, quick_gelu=True if args.quick_gelu else None,
                          weights_cache=args.weights_cache, device=str(ranks.device) if ranks else args.device,
                          precision=args.precision, compile=args.compile)


def distributed_session(args: argparse.Namespace) -> contextlib.AbstractContextManager[Ranks]:
    """`calip3d.distributed.session` for `--device` and `--dist-timeout` (one rank outside torchrun)."""
    if not args.dist_timeout > 0:
        raise CalipError(f"--dist-timeout must be > 0 minutes, got {args.dist_timeout}")
    return session(args.device, timedelta(minutes=args.dist_timeout))


def add_projector_flags(group: argparse._ArgumentGroup, views_default: int | None, views_help: str,
                        settings: bool) -> None:
    """`--projector`, `--views`, and with `settings` PointCLIP's `--distance` / `--resolution`."""
    group.add_argument("--projector", choices=tuple(PROJECTORS), default="pointclip",
                       help="pointclip: PointCLIP's depth scatter; realistic: PointCLIP V2's projection")
    group.add_argument("--views", type=int, choices=(6, 10), default=views_default, help=views_help)
    if settings:
        group.add_argument("--distance", type=float, default=None,
                           help="projection distance (pointclip default 1.6; PointCLIP Table 1: modelnet10 1.7, "
                                "modelnet40 1.6, scanobjectnn 1.8)")
        group.add_argument("--resolution", type=int, default=None,
                           help="depth-map resolution (pointclip default 128; PointCLIP Table 1: modelnet10 100, "
                                "modelnet40 121, scanobjectnn 196)")


def projector_config(args: argparse.Namespace) -> ProjectorConfig:
    return ProjectorConfig(kind=args.projector, views=args.views, distance=getattr(args, "distance", None),
                           resolution=getattr(args, "resolution", None))


def add_point_flags(group: argparse._ArgumentGroup, sampling: bool) -> None:
    """`--points`, `--format`, `--up-axis`, and with `sampling` `--sampling` / `--no-normalize`."""
    group.add_argument("--points", type=int, default=1024, help="points per cloud")
    if sampling:
        group.add_argument("--sampling", choices=("first", "fps", "random"), default="first",
                           help="how to pick --points points (first N as PointCLIP, farthest-point, or seeded random)")
        group.add_argument("--no-normalize", action="store_true",
                           help="do not centre and scale clouds to the unit sphere")
    group.add_argument("--format", choices=("h5", "resampled"), default=None,
                       help="ModelNet40 release: h5 (modelnet40_ply_hdf5_2048, default) or resampled "
                            "(modelnet40_normal_resampled)")
    group.add_argument("--up-axis", choices=("y", "z"), default="y", help="up axis of the data (datasets are y-up)")


def point_settings(args: argparse.Namespace) -> PointSettings:
    """The point flags; for a folder dataset with `--skip-bad-files`, a `FolderPointSettings` that skips unreadable
    clouds when the folder is read."""
    settings = PointSettings(format=args.format, num_points=args.points, sampling=getattr(args, "sampling", "first"),
                             normalize=not getattr(args, "no_normalize", False), up_axis=args.up_axis)
    if getattr(args, "skip_bad_files", False) and is_folder_dataset(getattr(args, "dataset", None) or ""):
        return FolderPointSettings(**asdict(settings), skip_bad_files=True)
    return settings


def add_temperature_flag(group: argparse._ArgumentGroup, help_text: str) -> None:
    group.add_argument("--temperature", type=float, default=CALIP_TEMPERATURE, help=help_text)


def add_cache_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--cache-dir", default=None,
                       help="cache of encoded terms (default: $CALIP3D_CACHE, else ~/.cache/calip3d/features; never "
                            "inside the data root)")
    group.add_argument("--no-cache", action="store_true", help="neither read nor write the term cache")


def calip_config(args: argparse.Namespace) -> CalipConfig:
    """CALIP's settings from `--betas` (where the command has it) and `--temperature`."""
    return CalipConfig(betas=getattr(args, "betas", None), temperature=args.temperature)


def encode_config(args: argparse.Namespace, **overrides: Any) -> EncodeConfig:
    """Encoding settings from the backbone group, the cache flags and `--skip-bad-files`."""
    settings: dict[str, Any] = dict(batch_size=args.batch_size, workers=args.workers,
                                    cache_dir=getattr(args, "cache_dir", None),
                                    use_cache=not getattr(args, "no_cache", False),
                                    skip_bad_files=getattr(args, "skip_bad_files", False),
                                    decode_on_device=getattr(args, "decode_on_device", False))
    return EncodeConfig(**{**settings, **overrides})


def dataset_output_name(dataset: str) -> str:
    """The dataset part of default output file names: `--dataset` as given, or a folder dataset's file-safe stem
    (`DatasetInfo.file_stem`)."""
    return dataset_file_stem(dataset)


def output_name(backbone: str) -> str:
    """The backbone part of default result file names (a config JSON's stem, '/' made safe)."""
    return Path(backbone).stem if backbone.endswith(".json") else backbone.replace("/", "-")
