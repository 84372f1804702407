"""The dataset records: every per-dataset table is a view of them (`DatasetInfo` reads its record), a new CoOp-format
dataset needs only its record (calip3d/records/coop.py), a record lacking a part is a CalipError naming the dataset,
and data/README.md's generated tables (sources, 2D and 3D datasets with their published sizes) are the ones the
records give."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import replace

import pytest
from PIL import Image

from calip3d import published, tables
from calip3d.cli.eval import datasets_help
from calip3d.datasets import get_dataset, load_split
from calip3d.datasets.images import IMAGE_DATASETS, load_image_split
from calip3d.datasets.pointclouds import load_point_split
from calip3d.datasets.registry import DATASETS as REGISTRY
from calip3d.datasets.registry import LABEL_SETS, dataset_order
from calip3d.errors import CalipError
from calip3d.fetch import RELEASES, dataset_status, fetch_dataset, format_listing, list_datasets, resolve_dataset
from calip3d.fetch.readme import HEADER, TABLES, image_table, point_table, rewrite, sources_table
from calip3d.records import (
    IMAGES, POINTS, RECORDS, LiveView, RemoteFile, SplitSizes, TipAdapterRelease, records, unpack,
)
from calip3d.records.coop import coop_json
from conftest import REPO

pytest_plugins = ["fetch_helpers"]  # fixture: server

CLASSES = ("red_kite", "Blue Tit")


def toy_record(**changes: object) -> object:
    """A CoOp-format dataset that is not one of calip3d's, written as its record in calip3d/records/coop.py would be."""
    fields = dict(
        name="toy_birds", title="ToyBirds", template="a photo of a {}, a type of bird.", aliases=("toys",),
        folder="toy-birds", image_dir="pics", tree="pics/<class>/<id>.jpg", images_from="pics.zip (nowhere)",
        release_title="Toy Birds", origin="`pics.zip`, nowhere", sizes=SplitSizes(2, 2, 2, 2),
        files=(RemoteFile("pics.zip", unpack("pics", "toy-birds/pics"), urls=("http://127.0.0.1:9/pics.zip",)),),
        split_drive_id="drive-id-of-the-split", betas=(0.7, 0.03),
        tip_adapter=TipAdapterRelease((9, 4), (200, 20), 1, 2, 20, 10))
    return coop_json(**{**fields, **changes})


def toy_files() -> dict[str, bytes]:
    """The release's files: the images (as `pics.zip` holds them) and CoOp's split json, by path under the root."""
    files, split = {}, {}
    for s in ("train", "val", "test"):
        split[s] = []
        for label, cname in enumerate(CLASSES):
            rel = f"c{label}/{s}.jpg"
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (40 * label, 0, 0)).save(buffer, "JPEG")
            files[f"pics/{rel}"] = buffer.getvalue()
            split[s].append([rel, label, cname])
    files["split_zhou_ToyBirds.json"] = json.dumps(split).encode()
    return files


@pytest.fixture
def toy(monkeypatch):
    """The toy record added to the records (and nothing else)."""
    record = toy_record()
    monkeypatch.setitem(RECORDS, record.name, record)
    return record


def test_every_per_dataset_table_is_a_view_of_the_records():
    assert tuple(REGISTRY) == tuple(RECORDS) == dataset_order() == tables.DATASET_ORDER
    for record in records():
        info = get_dataset(record.name)
        assert info.record is record and REGISTRY[record.name] is info and not info.is_folder
        assert (info.name, info.kind, info.title, info.template, info.aliases, info.classnames, info.presets_key) == (
            record.name, record.kind, record.title, record.template, record.aliases, record.classnames,
            record.presets_key)
        assert info.formats == (record.points.formats if record.points else ()) and info.is_points == record.is_points
        assert info.has_val_split is record.val_split and record.name in datasets_help()
        assert published.PAPER_BETAS.get(record.name) == record.betas == info.paper_betas
        assert published.TIP_ADAPTER_RELEASED.get(record.name) == record.tip_adapter
        assert all(RELEASES[release.key] is release for release in record.releases)
        if record.kind == IMAGES:
            assert IMAGE_DATASETS[record.name].folder == record.image.folder == record.releases[0].folder
            assert resolve_dataset(record.name) is record.releases[0]
        else:
            assert info.formats == record.points.formats == tuple(r.fmt for r in record.releases)
            assert LABEL_SETS[record.presets_key] == record.classnames
            assert published.POINTCLIP_TABLE1_VIEW_WEIGHTS[record.presets_key] == record.view_weights
            assert published.POINTCLIP_TABLE1_PROJECTION[record.presets_key] == record.projection == info.table1_projection
    assert list(RELEASES) == ["modelnet40", "modelnet40_normal_resampled", "scanobjectnn"] + [
        r.name for r in records(IMAGES)]  # fetch --list: the point-cloud releases first
    assert [r.name for r in records() if r.val_split] == [r.name for r in records(IMAGES) if r.name != "imagenet"]


def readme_table(text: str, header: str) -> str:
    """The table of `text` that starts at the line `header`, up to its last row."""
    lines = text.splitlines()
    start = lines.index(header)
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return "\n".join(lines[start:end])


def test_data_readme_tables_are_the_ones_the_records_generate():
    text = (REPO / "data" / "README.md").read_text()
    assert readme_table(text, HEADER[0]) == sources_table()
    for table in TABLES.values():
        assert readme_table(text, table().split("\n")[0]) == table()
    assert rewrite(text) == text  # a stale README fails here: `python -m calip3d.fetch.readme` rewrites it
    stale = text.replace("| 7,639 / 1,898 / 3,783 |", "| 7,000 / 1,898 / 3,783 |")
    assert stale != text and rewrite(stale) == text
    with pytest.raises(CalipError, match="^data/README.md has no table of sources to rewrite"):
        rewrite(text.replace(HEADER[0], "| dataset |"))


def test_every_records_published_sizes_are_in_the_readme_tables():
    images, points = image_table().splitlines(), point_table().splitlines()
    assert len(images) == 2 + len(records(IMAGES)) and len(points) == 2 + 5  # ModelNet40 and 10 share a row
    for record in records(IMAGES):
        (sizes,) = record.sizes
        val = "= test" if sizes.val is None else f"{sizes.val:,}"
        row = next(line for line in images if line.startswith(f"| `{record.name}` |"))
        assert f"| `{record.image.folder}/` | {sizes.classes} | {sizes.train:,} / {val} / {sizes.test:,} |" in row
        assert row.endswith(f" | {record.releases[0].origin} |") and (sizes.val is None) == (not record.val_split)
    for record in records(POINTS):
        assert len(record.sizes) == len(record.releases) and all(s.val is None for s in record.sizes)
        for release, sizes in zip(record.releases, record.sizes):
            row = next(line for line in points if f"`{record.name}`" in line and release.folder in line)
            assert f"{sizes.train:,} / {sizes.test:,}" in row and str(sizes.classes) in row.split(" | ")[2]
    assert images[2] == ("| `imagenet` | `imagenet/` | 1000 | 1,281,167 / = test / 50,000 | "
                         "ILSVRC-2012, https://image-net.org |")
    assert points[3] == ("| `modelnet40` / `modelnet10` (resampled) | `modelnet40_normal_resampled/` | 40 / 10 | "
                         "9,843 / 2,468; ModelNet10 3,991 / 908 | `modelnet40_normal_resampled.zip` (PointNet++; 1.6 GB; "
                         "sources above) |")
    assert points[-1] == ("| `scanobjectnn-hardest` (PB_T50_RS) | `scanobjectnn/h5_files/main_split/` | 15 | "
                          "11,416 / 2,882 | same |")


def test_a_new_record_shows_in_the_readme_tables(toy, monkeypatch):
    assert image_table().splitlines()[-1] == "| `toy_birds` | `toy-birds/` | 2 | 2 / 2 / 2 | `pics.zip`, nowhere |"
    hardest = RECORDS["scanobjectnn-hardest"]
    clouds = replace(hardest, name="scanobjectnn-toy", title="ScanObjectNN PB_T25", sizes=(SplitSizes(15, 7, None, 3),),
                     points=replace(hardest.points, h5_file=("main_split", "objectdataset_augmented25_norot.h5")))
    monkeypatch.setitem(RECORDS, clouds.name, clouds)
    assert point_table().splitlines()[-1] == (
        "| `scanobjectnn-toy` (PB_T25) | `scanobjectnn/h5_files/main_split/` | 15 | 7 / 3 | same |")
    text = rewrite((REPO / "data" / "README.md").read_text())
    assert "| `toy_birds` | `toy-birds/` |" in text and "| `scanobjectnn-toy` (PB_T25) |" in text
    monkeypatch.setitem(RECORDS, clouds.name, replace(clouds, sizes=clouds.sizes * 2))
    with pytest.raises(CalipError, match="^scanobjectnn-toy: its dataset record has 2 published sizes for 1 releases"):
        point_table()


def test_a_new_coop_dataset_needs_only_its_record(toy, tmp_path, server):
    """Adding the toy record is all it takes: lookup by alias, help, table order, presets, loading every split, fetch
    status and listing, the README table, and a fetch from a mirror."""
    info = get_dataset("Toys")
    assert info.name == "toy_birds" and info.kind == IMAGES and info.has_val_split
    assert info.default_betas == ((0.7, 0.03), published.PAPER_BETAS_SOURCE) and info.beta_search_range == (2.0, 0.1)
    assert published.TIP_ADAPTER_RELEASED["toy_birds"] == toy.tip_adapter
    assert "ucf101, toy_birds; 3D:" in datasets_help()
    assert dataset_order().index("toy_birds") == dataset_order().index("ucf101") + 1 < dataset_order().index(
        "modelnet40")
    assert "`toy_birds` | `pics.zip`" in sources_table()

    empty, root = tmp_path / "empty", tmp_path / "root"
    with pytest.raises(CalipError, match=r"toy_birds: dataset folder not found(.|\n)*toy-birds/(.|\n)*pics\.zip"):
        load_split("toy_birds", empty)
    assert dataset_status("toy_birds", empty) == "missing"
    listing = format_listing(list_datasets(empty), empty).splitlines()
    assert f"toy_birds: missing  (Toy Birds, 2 files of unpublished size) -> {empty / 'toy-birds'}" in listing

    for path, data in toy_files().items():
        (root / "toy-birds" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "toy-birds" / path).write_bytes(data)
    for split in ("train", "val", "test"):
        data = load_split("toy_birds", root, split)
        assert data.classnames == list(CLASSES) and len(data) == 2
        assert data.source == str(root / "toy-birds" / "split_zhou_ToyBirds.json")
    assert dataset_status("toys", root) == "present"

    files = toy_files()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for path, data in files.items():
            if path.startswith("pics/"):
                zf.writestr(path, data)
    server.put("mirror/pics.zip", archive.getvalue())
    server.put("mirror/split_zhou_ToyBirds.json", files["split_zhou_ToyBirds.json"])
    fetched = tmp_path / "fetched"
    report = fetch_dataset("toy_birds", fetched, mirrors=[server.url("mirror")], progress=False, log=lambda _: None)
    assert report.fetched and report.folder == fetched / "toy-birds"
    assert load_image_split("toy_birds", fetched, "test").classnames == list(CLASSES)


@pytest.mark.parametrize("name, change, call, message", [
    ("caltech101", {"releases": ()}, lambda: resolve_dataset("caltech101"), "has no files to fetch"),
    ("caltech101", {"releases": ()}, lambda: dataset_status("Caltech-101"), "has no files to fetch"),
    ("caltech101", {"image": None}, lambda: load_image_split("caltech101", "/nowhere"), "has no image layout"),
    ("modelnet10", {"points": None}, lambda: resolve_dataset("modelnet10"), "has no point-cloud layout"),
    ("modelnet10", {"points": None}, lambda: load_point_split("modelnet10", "/nowhere"), "has no point-cloud layout"),
    ("modelnet40", {"releases": ()}, lambda: resolve_dataset("modelnet40", "resampled"), "has no files to fetch"),
    ("scanobjectnn-objbg", {"points": None}, lambda: load_point_split("obj_bg", "/nowhere"),
     "has no point-cloud layout"),
    ("dtd", {"sizes": ()}, image_table, r"has no published sizes \(classes, split sizes\)"),
    ("modelnet10", {"sizes": ()}, point_table, "has no published sizes"),
])
def test_a_record_lacking_a_part_is_a_calip_error_naming_the_dataset(monkeypatch, name, change, call, message):
    monkeypatch.setitem(RECORDS, name, replace(RECORDS[name], **change))
    with pytest.raises(CalipError, match=f"^{re.escape(name)}: its dataset record .* {message}"):
        call()


def test_a_release_missing_from_a_format_or_a_record_name_is_a_calip_error(monkeypatch):
    modelnet40 = RECORDS["modelnet40"]
    monkeypatch.setitem(RECORDS, "modelnet40", replace(modelnet40, releases=modelnet40.releases[:1]))
    with pytest.raises(CalipError, match="^modelnet40: .* no files to fetch for PointSettings.format 'resampled'"):
        resolve_dataset("modelnet40", "resampled")
    scan = RECORDS["scanobjectnn-hardest"]
    monkeypatch.setitem(RECORDS, scan.name, replace(scan, points=replace(scan.points, h5_file=None)))
    with pytest.raises(CalipError, match="^scanobjectnn-hardest: .* names no h5 file"):
        load_point_split("hardest", "/nowhere")
    monkeypatch.delitem(RECORDS, "dtd")
    with pytest.raises(CalipError, match="unknown image dataset 'dtd'"):
        load_image_split("dtd", "/nowhere")
    assert "dtd" not in RELEASES and "dtd" not in IMAGE_DATASETS and "dtd" not in published.PAPER_BETAS


def test_betas_of_a_dataset_without_published_ones_are_labelled_by_kind(monkeypatch):
    monkeypatch.setitem(RECORDS, "caltech101", replace(RECORDS["caltech101"], betas=None))
    assert get_dataset("caltech101").default_betas == (
        (1.12, 0.02), "CALIP's ImageNet betas (no published betas for this dataset)")
    assert get_dataset("modelnet40").default_betas == ((1.12, 0.02), "CALIP's ImageNet betas (no published 3D betas)")


def test_live_view_follows_the_records_and_its_overrides(monkeypatch):
    source = {"a": RECORDS["dtd"]}
    view = LiveView(lambda rs: {r.name: r.title for r in rs}, source)
    assert dict(view) == {"dtd": "DescribableTextures"}
    source["b"] = RECORDS["eurosat"]
    assert list(view) == ["dtd", "eurosat"]
    with monkeypatch.context() as patch:
        patch.setitem(view, "dtd", "other")
        patch.setitem(view, "new", "added")
        assert dict(view) == {"dtd": "other", "eurosat": "EuroSAT", "new": "added"}
    assert dict(view) == {"dtd": "DescribableTextures", "eurosat": "EuroSAT"} and not view._overrides
    del view["eurosat"]
    assert list(view) == ["dtd"] and len(view) == 1
    with pytest.raises(KeyError):
        del view["eurosat"]


def test_records_are_plain_data_of_the_two_kinds():
    assert {r.kind for r in records()} == {IMAGES, POINTS}
    with pytest.raises(CalipError, match="^toy_birds: kind must be"):
        replace(toy_record(), kind="video")
