"""Pictures for a real ModelNet40 shape and a real Caltech101 image: valid, readable-size, not blank, no overlap."""

from __future__ import annotations

import itertools
import sys

import matplotlib.axes
import matplotlib.text
import numpy as np
import pytest
from PIL import Image

from calip3d.datasets.registry import MODELNET40_CLASSES
from calip3d.explain import explain_clouds, explain_images, image_inputs, read_image
from calip3d.figures import cloud_figure, image_figure, results_bar_chart, save_figure
from calip3d.cloud_files import load_point_cloud
from calip3d.point_preprocessing import normalize_unit_sphere
from calip3d.projection import make_projector
from calip3d.tables import ChartRow

NOTE = "tiny random-weight model (test)"


def _drawn_texts(fig):
    """Every text drawn: titles, labels, legends, and the tick labels inside their axis' view limits."""
    ticks, shown = set(), []
    for ax in fig.findobj(matplotlib.axes.Axes):
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            eps = 1e-9 * max(1.0, abs(low), abs(high))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    ticks.add(id(label))
                    if low - eps <= tick.get_loc() <= high + eps and tick.get_visible():
                        shown.append(label)
    others = [t for t in fig.findobj(matplotlib.text.Text) if id(t) not in ticks]
    return [t for t in shown + others if t.get_visible() and t.get_text().strip()]


def _overlapping_labels(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.95, 0.9)) for t in _drawn_texts(fig)]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def _check_png(path, min_width=1000):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.shape[1] >= min_width and pixels.shape[0] >= 500
    assert pixels.std() > 20  # not blank
    return pixels


@pytest.mark.parametrize("tiny_loaded, projector_kind, views, top_k",
                         [("resnet", "pointclip", 6, 3), ("vit", "realistic", 10, 1), ("vit", "pointclip", 6, 5)],
                         indirect=["tiny_loaded"])
def test_cloud_picture(tiny_loaded, modelnet_resampled_dir, tmp_path, projector_kind, views, top_k):
    _, backbone, _ = tiny_loaded
    points = normalize_unit_sphere(load_point_cloud(modelnet_resampled_dir / "chair" / "chair_0391.txt",
                                                    num_points=1024))
    projector = make_projector(projector_kind, views=views, image_size=backbone.image_size)
    text = backbone.class_features(list(MODELNET40_CLASSES), ["point cloud depth map of a {}."])
    result = explain_clouds(backbone, points, projector, text, MODELNET40_CLASSES, (1, 1.12, 0.02), top_k=top_k)[0]
    fig = cloud_figure(result, title="chair_0391.txt", note=NOTE)
    assert _overlapping_labels(fig) == []
    texts = {t.get_text() for t in _drawn_texts(fig)}
    assert all(any(name in t for t in texts) for name in projector.view_names)  # views titled with their names
    assert any("attention" in t for t in texts)  # the heat maps' colour bar is labelled
    path = save_figure(fig, tmp_path / "chair_0391.png")
    _check_png(path)


def test_image_picture(tiny_loaded, caltech_root, tmp_path):
    _, backbone, transform = tiny_loaded
    image = read_image(caltech_root / "caltech-101" / "101_ObjectCategories" / "accordion" / "image_0001.jpg")
    names = ["accordion", "airplane", "anchor", "ant", "barrel", "bass"]
    text = backbone.class_features(names, ["a photo of a {}."])
    pixels, display = image_inputs(image, transform)
    result = explain_images(backbone, pixels, text, names, (1, 5.0, 0.18), top_k=3, display=display)[0]
    fig = image_figure(result, title="image_0001.jpg", note=NOTE)
    assert _overlapping_labels(fig) == []
    _check_png(save_figure(fig, tmp_path / "image_0001.png"))
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


def test_results_bar_chart(tmp_path):
    rows = [ChartRow("caltech101", {"CLIP": 85.0, "CALIP": 86.9}, {"CLIP": 86.29, "CALIP": 87.71}),
            ChartRow("modelnet40", {"CLIP": 18.2, "CALIP": 21.0}, {"CLIP": 20.18})]
    _check_png(results_bar_chart(rows, tmp_path / "chart.png"))
    with pytest.raises(ValueError):
        results_bar_chart([], tmp_path / "empty.png")
