"""The `calip3d` dispatcher, the Python API, `tune-views`, the dataset registry, and weights-file errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from calip3d.backbone import OPEN_CLIP_ATTRIBUTES, BackboneConfig, CLIPBackbone, check_open_clip_attributes
from calip3d.cache import FeatureCache
from calip3d.cli.eval import main as eval_main
from calip3d.cli.tune_views import main as tune_views_main
from calip3d.datasets import DATASETS, get_dataset, is_point_dataset
from calip3d.encoding import EncodeConfig, Terms
from calip3d.errors import CalipError
from calip3d.zeroshot import EvalConfig, TuneConfig, run_eval
from tiny_models import build_tiny, write_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tinycmd"), "resnet", seed=5)


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300, **kw)


def test_help_lists_the_subcommands():
    proc = _run("-m", "calip3d", "--help")
    assert proc.returncode == 0
    for name in ("eval", "classify", "fewshot", "tune-views"):
        assert f"  {name} " in proc.stdout
    sub = _run("-m", "calip3d", "tune-views", "--help")
    assert sub.returncode == 0 and sub.stdout.startswith("usage: calip3d tune-views")
    assert "--distance" in sub.stdout and "--tune-shots" not in sub.stdout and "--tune-on" not in sub.stdout
    unknown = _run("-m", "calip3d", "evaluate")
    assert unknown.returncode == 2 and "unknown subcommand 'evaluate'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_old_entry_points_still_work(tiny, caltech_root, tmp_path):
    args = ["--dataset", "caltech101", "--data-root", str(caltech_root), "--backbone", str(tiny[0]),
            "--pretrained", str(tiny[1]), "--limit", "8", "--tune-on", "none", "--workers", "0", "--no-cache"]
    old = _run("-m", "calip3d.eval", *args, "--output", str(tmp_path / "old.json"))
    new = _run("-m", "calip3d", "eval", *args, "--output", str(tmp_path / "new.json"))
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("old.json", "new.json"))
    assert a["clip"] == b["clip"] and a["calip_paper"] == b["calip_paper"]
    assert _run("-m", "calip3d.eval", "--help").stdout.startswith("usage: python -m calip3d.eval")


def test_python_api_equals_the_command(tiny, caltech_root, tmp_path):
    config, checkpoint = tiny
    backbone = BackboneConfig(str(config), str(checkpoint), device="cpu").load()
    api = run_eval(EvalConfig(dataset="Caltech-101", data_root=str(caltech_root), limit=12,
                              tune=TuneConfig(limit=10), encode=EncodeConfig(workers=0, use_cache=False)), backbone)
    assert api.dataset == "caltech101" and api.num_samples == 12
    assert [m.name for m in api.methods] == ["clip", "calip_paper", "calip_tuned"]
    assert "calip_tuned" in api.table()
    assert eval_main(["--dataset", "caltech101", "--data-root", str(caltech_root), "--backbone", str(config),
                      "--pretrained", str(checkpoint), "--limit", "12", "--tune-limit", "10", "--workers", "0",
                      "--no-cache", "--output", str(tmp_path / "cli.json")]) == 0
    cli = json.loads((tmp_path / "cli.json").read_text())
    for method in api.methods:
        assert cli[method.name] == method.as_dict()


def test_a_wrapped_model_gets_a_transform_and_a_weights_digest():
    model = build_tiny("vit", seed=3)
    a, b = CLIPBackbone(model), CLIPBackbone(build_tiny("vit", seed=4))
    assert a.info.weights.startswith("state sha256:") and a.info.weights != b.info.weights
    assert a.precision == "fp32" and a.transform is not None
    assert CLIPBackbone(build_tiny("vit", seed=3)).info.weights == a.info.weights


@pytest.mark.parametrize("kind", sorted(OPEN_CLIP_ATTRIBUTES))
def test_open_clip_still_has_the_attributes_calip3d_reads(kind):
    """Fails loudly, naming the attribute, if an open_clip release moves one of them."""
    model = build_tiny(kind)
    check_open_clip_attributes(model, kind)
    attribute = OPEN_CLIP_ATTRIBUTES[kind][2].split(".")[-1]
    delattr(type(model.visual), attribute) if attribute in vars(type(model.visual)) else delattr(model.visual,
                                                                                                 attribute)
    with pytest.raises(CalipError, match=f"no `visual.{attribute}`"):
        check_open_clip_attributes(model, kind)


@pytest.fixture
def restore_open_clip_classes():
    """The attribute test deletes a method from an open_clip class: put it back afterwards."""
    import open_clip.model as oc_model
    import open_clip.modified_resnet as oc_resnet
    import open_clip.transformer as oc_transformer

    saved = {cls: dict(vars(cls)) for cls in (oc_resnet.ModifiedResNet, oc_transformer.VisionTransformer)}
    yield
    for cls, members in saved.items():
        for key, value in members.items():
            if key not in vars(cls):
                setattr(cls, key, value)
    del oc_model


test_open_clip_still_has_the_attributes_calip3d_reads = pytest.mark.usefixtures("restore_open_clip_classes")(
    test_open_clip_still_has_the_attributes_calip3d_reads)


def _corrupt_files(tmp_path: Path, checkpoint: Path) -> dict[str, Path]:
    data = checkpoint.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    torch_file = tmp_path / "model.pt"
    torch.save({k: v for k, v in build_tiny("resnet", seed=5).state_dict().items()}, torch_file)
    cut_zip = tmp_path / "cut.pt"
    cut_zip.write_bytes(torch_file.read_bytes()[: torch_file.stat().st_size * 2 // 3])
    garbage = tmp_path / "notes.bin"
    garbage.write_text("these are my notes, not a checkpoint\n" * 20)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    return {"truncated safetensors": truncated, "truncated torch zip": cut_zip, "text file": garbage,
            "empty file": empty}


def test_corrupt_weights_files_give_one_clear_error(tiny, caltech_root, tmp_path):
    config, checkpoint = tiny
    assert zipfile.is_zipfile(REPO / "pyproject.toml") is False
    for what, path in _corrupt_files(tmp_path, checkpoint).items():
        proc = _run("-m", "calip3d", "eval", "--dataset", "caltech101", "--data-root", str(caltech_root),
                    "--backbone", str(config), "--pretrained", str(path), "--limit", "2", "--no-cache")
        assert proc.returncode == 2, (what, proc.stderr)
        assert "Traceback" not in proc.stderr, what
        assert str(path) in proc.stderr and "download it again" in proc.stderr, (what, proc.stderr)
        assert proc.stderr.count("\n") == 1, (what, proc.stderr)  # one paragraph


def test_tune_views_honours_projection_and_limit(tiny, modelnet_h5_dir, tmp_path):
    config, checkpoint = tiny
    common = ["--dataset", "modelnet40", "--data-root", str(modelnet_h5_dir.parent), "--backbone", str(config),
              "--pretrained", str(checkpoint), "--shots", "1", "--limit", "10", "--cache-dir", str(tmp_path / "c")]
    assert tune_views_main([*common, "--distance", "1.7", "--resolution", "100",
                            "--output", str(tmp_path / "a.json")]) == 0
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["schema"] == "calip3d.eval/1" and result["num_samples"] == 10
    assert result["provenance"]["projector"]["distance"] == 1.7
    assert result["provenance"]["projector"]["resolution"] == 100
    assert {"pointclip", "calip", "pointclip_tuned", "calip_tuned"} <= set(result["methods"])
    assert "tuned on 1 train clouds per class" in result["calip_tuned"]["betas_source"]
    assert tune_views_main([*common, "--output", str(tmp_path / "b.json")]) == 0
    default = json.loads((tmp_path / "b.json").read_text())
    assert default["provenance"]["projector"]["distance"] == 1.6
    # the projection really changed: the cached test terms of the two runs differ
    tests = [Terms(**torch.load(f, weights_only=True)["tensors"]) for f in (tmp_path / "c").glob("terms-*.pt")]
    tests = [t for t in tests if len(t.labels) == 10]
    assert len(tests) == 2 and not torch.equal(tests[0].clip, tests[1].clip)
    refused = _run("-m", "calip3d", "tune-views", *common, "--tune-shots", "4")
    assert refused.returncode == 2 and "unrecognized arguments: --tune-shots" in refused.stderr


def test_tune_views_refuses_an_image_dataset(tiny, caltech_root):
    with pytest.raises(CalipError, match="image dataset"):
        tune_views_main(["--dataset", "caltech101", "--data-root", str(caltech_root), "--backbone", str(tiny[0]),
                         "--pretrained", str(tiny[1]), "--limit", "2", "--no-cache", "--workers", "0"])


@pytest.mark.parametrize("name, expected", [
    ("caltech101", "caltech101"), ("Caltech-101", "caltech101"), ("caltech", "caltech101"),
    ("OxfordPets", "oxford_pets"), ("flowers102", "oxford_flowers"), ("DescribableTextures", "dtd"),
    ("food-101", "food101"), ("ImageNet1k", "imagenet"), ("FGVC Aircraft", "fgvc_aircraft"),
    ("modelnet40", "modelnet40"), ("ModelNet-10", "modelnet10"), ("OBJ_ONLY", "scanobjectnn-objonly"),
    ("scanobjectnn_obj_bg", "scanobjectnn-objbg"), ("PB_T50_RS", "scanobjectnn-hardest"),
    ("hardest", "scanobjectnn-hardest"),
])
def test_registry_lookup_by_name_and_alias(name, expected):
    info = get_dataset(name)
    assert info.name == expected
    assert is_point_dataset(name) == expected.startswith(("modelnet", "scanobjectnn"))


def test_registry_answers_per_dataset():
    assert len(DATASETS) == 16
    assert get_dataset("caltech101").paper_betas == (5.0, 0.18)
    assert get_dataset("caltech101").template == "a photo of a {}."
    assert get_dataset("modelnet40").default_betas[0] == (1.12, 0.02)
    assert get_dataset("scanobjectnn-hardest").table1_view_weights == (3, 10, 7, 4, 1, 0)
    assert get_dataset("modelnet10").classnames[0] == "bathtub"
    with pytest.raises(CalipError, match="unknown point-cloud dataset 'caltech101'"):
        get_dataset("caltech101", kind="points")
    with pytest.raises(CalipError, match="unknown dataset 'cifar10'"):
        get_dataset("cifar10")


def test_cache_entry_of_another_kind_is_never_used(tmp_path):
    cache = FeatureCache(tmp_path)
    terms = Terms(*(torch.randn(3, 2) for _ in range(4)), torch.tensor([0, 1, 0]), torch.arange(3))
    cache.save({"kind": "terms", "a": 1}, terms)
    assert cache.load({"kind": "tokens", "a": 1}, Terms) is None and cache.last_status == "miss"
