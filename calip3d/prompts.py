"""Text prompts per class: CoOp's templates, CALIP's ImageNet ensemble, PointCLIP's 3D prompts, JSON files.

Class names go into prompts with `_` replaced by a space (`flower_pot` -> "flower pot", `Apply_Eye_Makeup` ->
"Apply Eye Makeup"), as CoOp's ZeroshotCLIP and PointCLIP do. A template holds exactly one `{}`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

from calip3d.datasets.registry import DATASETS, POINTCLOUD_FS_TEMPLATE, POINTCLOUD_ZS_TEMPLATE, get_dataset
from calip3d.errors import CalipError

# CoOp's CUSTOM_TEMPLATES (trainers/zsclip.py), keyed by the --dataset names (kept in the dataset registry).
COOP_TEMPLATES: dict[str, str] = {d.name: d.template for d in DATASETS.values() if not d.is_points}

# The 7 ImageNet templates of CALIP's official run_imagenet.py (CLIP's selected ImageNet ensemble).
IMAGENET_ENSEMBLE: list[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]

__all__ = ["COOP_TEMPLATES", "IMAGENET_ENSEMBLE", "POINTCLOUD_FS_TEMPLATE", "POINTCLOUD_ZS_TEMPLATE", "PROMPT_SPECS",
           "PromptSet", "build_prompts", "from_templates", "pointclip_fewshot_prompts", "prompt_classname",
           "validate_template"]

PROMPT_SPECS = ("default", "single", "ensemble")


@dataclass
class PromptSet:
    """`prompts[k]`: the full sentences for class k; `templates` is None for per-class files (CuPL)."""

    prompts: list[list[str]]
    description: str
    templates: list[str] | None


def prompt_classname(name: str) -> str:
    """A class name as it appears in a prompt: underscores become spaces."""
    return name.replace("_", " ")


def validate_template(template: Any, source: str) -> str:
    """Return `template` if it is a string with exactly one `{}`; CalipError naming `source` otherwise."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise CalipError(f"{source}: template {template!r} must be a string with exactly one '{{}}'")
    return template


def from_templates(classnames: Sequence[str], templates: Sequence[str], description: str) -> PromptSet:
    """Every template filled with every class: prompts[k] = [t.replace('{}', name_k) for t in templates]."""
    if not classnames:
        raise CalipError("no class names to build prompts for")
    if not templates:
        raise CalipError(f"{description}: no templates")
    templates = [validate_template(t, description) for t in templates]
    prompts = [[t.replace("{}", prompt_classname(c)) for t in templates] for c in classnames]
    return PromptSet(prompts=prompts, description=description, templates=templates)


def _single(dataset: str, classnames: Sequence[str]) -> PromptSet:
    info = get_dataset(dataset)
    label = "pointclip-zs" if info.is_points else "coop-single"
    return from_templates(classnames, [info.template], f"{label}: '{info.template}'")


def pointclip_fewshot_prompts(classnames: Sequence[str]) -> PromptSet:
    """PointCLIP's few-shot prompt, 'point cloud of a big {}.'."""
    return from_templates(classnames, [POINTCLOUD_FS_TEMPLATE], f"pointclip-fs: '{POINTCLOUD_FS_TEMPLATE}'")


def _ensemble(classnames: Sequence[str]) -> PromptSet:
    description = f"calip-ensemble: {len(IMAGENET_ENSEMBLE)} ImageNet templates"
    return from_templates(classnames, IMAGENET_ENSEMBLE, description)


def _per_class(classnames: Sequence[str], table: dict[str, Any], description: str) -> PromptSet:
    """CuPL-style {classname: [prompt, ...]}; a key matches the raw name or its prompt form, ignoring case."""
    by_norm: dict[str, str] = {}
    for key in table:
        by_norm.setdefault(prompt_classname(key).strip().lower(), key)
    prompts, missing = [], []
    for cname in classnames:
        key = next((k for k in (cname, prompt_classname(cname)) if k in table), None)
        key = key if key is not None else by_norm.get(prompt_classname(cname).strip().lower())
        if key is None:
            missing.append(cname)
            continue
        sentences = table[key]
        is_list = isinstance(sentences, list) and len(sentences) > 0
        if not is_list or not all(isinstance(s, str) and s for s in sentences):
            raise CalipError(f"{description}: prompts for '{key}' must be a non-empty list of "
                             "non-empty strings")
        prompts.append(list(sentences))
    if missing:
        shown = ", ".join(repr(m) for m in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise CalipError(f"{description}: no prompts for {len(missing)} of {len(classnames)} classes: "
                         f"{shown}")
    return PromptSet(prompts=prompts, description=description, templates=None)


def _from_file(spec: str, classnames: Sequence[str]) -> PromptSet:
    path = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isfile(path):
        raise CalipError(f"prompt spec '{spec}' is not one of {', '.join(PROMPT_SPECS)} "
                         f"and no file {path} exists")
    with open(path, "rb") as fh:
        raw = fh.read()
    description = f"file:{path} (sha256 {hashlib.sha256(raw).hexdigest()})"
    try:
        content = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalipError(f"prompt file {path} is not valid JSON: {err}") from err
    if isinstance(content, list):
        return from_templates(classnames, content, description)
    if isinstance(content, dict):
        if not classnames:
            raise CalipError("no class names to build prompts for")
        return _per_class(classnames, content, description)
    raise CalipError(f"prompt file {path}: expected a list of templates or a {{classname: [prompts]}} object")


def build_prompts(dataset: str, classnames: Sequence[str], spec: str = "default") -> PromptSet:
    """Prompts for `classnames` of `dataset` by `spec`.

    spec: `default` (CoOp's single template; ImageNet -> the 7-template CALIP ensemble; point clouds ->
    PointCLIP's zero-shot template), `single` (CoOp's template / PointCLIP's zero-shot one), `ensemble` (the 7
    templates), or a JSON file: a list of templates, or a CuPL dict {classname: [full prompts]} covering every
    class (extra keys are ignored).
    """
    if spec == "ensemble" or (spec == "default" and get_dataset(dataset).name == "imagenet"):
        return _ensemble(classnames)
    if spec in ("default", "single"):
        return _single(dataset, classnames)
    return _from_file(spec, classnames)
