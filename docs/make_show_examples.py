"""Regenerate the example pictures in docs/ (README): `python docs/make_show_examples.py [DATA]`.

They are drawn with TINY RANDOM-WEIGHT models (never trained), on a real ModelNet40 shape and a real Caltech101
image, to show the layout only: their maps and scores are noise. The pictures are written as 256-colour PNGs to
keep the repository small. DATA defaults to ../shared/data.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file

from calip3d.backbone import load_backbone
from calip3d.datasets.registry import MODELNET40_CLASSES
from calip3d.datasets.images import load_image_split
from calip3d.explain import explain_clouds, explain_images, image_inputs, read_image
from calip3d.figures import cloud_figure, image_figure, save_figure
from calip3d.cloud_files import load_point_cloud
from calip3d.point_preprocessing import normalize_unit_sphere
from calip3d.published import DEFAULT_3D_BETAS, PAPER_BETAS
from calip3d.projection import make_projector

DOCS = Path(__file__).resolve().parent
NOTE = "Made with a TINY RANDOM-WEIGHT model (not trained), to show the layout: these maps and scores are noise."
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TOWERS = {  # 224 px like RN50 (7 x 7 attention-pool grid) and ViT-B/16 (14 x 14 patches), but tiny and random
    "resnet": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "vit": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
}


def tiny_backbone(kind: str, folder: Path):
    config = {"embed_dim": 32, "vision_cfg": TOWERS[kind], "text_cfg": TEXT}
    torch.manual_seed(0)
    model = open_clip.CLIP(**config)
    (folder / f"{kind}.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{kind}.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_backbone(str(folder / f"{kind}.json"), str(folder / f"{kind}.safetensors"))[:2]


def save_small(fig, path: Path) -> None:
    save_figure(fig, path)
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)


def main(data: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        backbone, _ = tiny_backbone("resnet", Path(tmp))
        shape = data / "modelnet40_normal_resampled" / "chair" / "chair_0391.txt"
        points = normalize_unit_sphere(load_point_cloud(shape, num_points=1024))
        projector = make_projector("pointclip", image_size=backbone.image_size)
        text = backbone.class_features(list(MODELNET40_CLASSES), ["point cloud depth map of a {}."])
        result = explain_clouds(backbone, points, projector, text, MODELNET40_CLASSES, (1.0, *DEFAULT_3D_BETAS))[0]
        save_small(cloud_figure(result, title=f"{shape.name}: CALIP over 6 PointCLIP depth views", note=NOTE),
                   DOCS / "show_cloud_example.png")

        backbone, transform = tiny_backbone("vit", Path(tmp))
        image_path = data / "caltech-101" / "101_ObjectCategories" / "airplanes" / "image_0001.jpg"
        classnames = load_image_split("caltech101", data, "test").classnames
        text = backbone.class_features(classnames, ["a photo of a {}."])
        pixels, display = image_inputs(read_image(image_path), transform)
        result = explain_images(backbone, pixels, text, classnames, (1.0, *PAPER_BETAS["caltech101"]),
                                display=display)[0]
        save_small(image_figure(result, title=f"{image_path.name} (Caltech101): CALIP attention", note=NOTE),
                   DOCS / "show_image_example.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS.parents[1] / "shared" / "data")
