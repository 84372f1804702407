"""One run context per run (`calip3d.run_context`): each pipeline builds its `RunContext` (dataset, data root,
projector, encoder) once, CALIP's settings reach every pipeline from `CalipConfig`, and every result records the
context's provenance block, the same in `eval`, `tune-views` and `fewshot` for the same data and settings."""

from __future__ import annotations

import json

import pytest

from calip3d.attention import CalipConfig
from calip3d.cli.main import main as calip3d_main
from calip3d.projection import ProjectorConfig
from calip3d.run_context import RunConfig, RunContext

SHARED = ("backbone", "precision", "data", "points", "projector", "world_size", "backend", "compiled")


@pytest.fixture
def builds(monkeypatch):
    """Counts of `RunContext.build` and `ProjectorConfig.build` calls, by name."""
    counts = {"context": 0, "projector": 0}
    context_build, projector_build = RunContext.build.__func__, ProjectorConfig.build

    def count_context(cls, *args, **kwargs):
        counts["context"] += 1
        return context_build(cls, *args, **kwargs)

    def count_projector(self, *args, **kwargs):
        counts["projector"] += 1
        return projector_build(self, *args, **kwargs)

    monkeypatch.setattr(RunContext, "build", classmethod(count_context))
    monkeypatch.setattr(ProjectorConfig, "build", count_projector)
    return counts


def _run(counts: dict[str, int], *argv: str) -> None:
    counts.update(context=0, projector=0)
    assert calip3d_main(list(argv)) == 0, argv
    assert counts == {"context": 1, "projector": 1}, argv  # one context, one projector, however many splits


def test_every_pipeline_builds_one_context_and_records_its_provenance(builds, varied_points, modelnet_h5_dir,
                                                                      tmp_path):
    """Fails if: a pipeline builds its projector or context twice; provenance is assembled differently by the
    pipelines (data, point settings, projector, backbone); the encoding provenance describes the tuning set instead
    of the test split; --temperature no longer reaches a pipeline after its move to CalipConfig."""
    common = ["--dataset", "modelnet40", "--data-root", str(modelnet_h5_dir.parent), "--backbone",
              str(varied_points[0]), "--pretrained", str(varied_points[1]), "--workers", "0", "--temperature", "0.25"]
    out = {name: tmp_path / f"{name}.json" for name in ("eval", "tune", "few")}
    _run(builds, "eval", *common, "--cache-dir", str(tmp_path / "cache"), "--tune-shots", "2",
         "--output", str(out["eval"]))
    _run(builds, "tune-views", *common, "--cache-dir", str(tmp_path / "cache"), "--shots", "1",
         "--output", str(out["tune"]))
    _run(builds, "fewshot", *common, "--method", "zero-shot", "--shots", "1", "--views", "6",
         "--split-dir", str(tmp_path / "splits"), "--output", str(out["few"]))
    results = {name: json.loads(path.read_text()) for name, path in out.items()}
    prov = {name: result["provenance"] for name, result in results.items()}
    for key in SHARED:
        assert prov["eval"][key] == prov["tune"][key] == prov["few"][key], key
    assert prov["eval"]["points"] == {"format": "h5", "num_points": 1024, "sampling": "first", "seed": 0,
                                      "normalize": True, "up_axis": "y"}
    assert prov["eval"]["data"]["data_root"] == str(modelnet_h5_dir.parent)
    # the test split's 29 clouds, not the 72 tuning clouds encoded after them
    assert prov["eval"]["items_per_rank"] == [29] and prov["eval"]["tuning_set"].endswith(", 72 clouds")
    assert prov["eval"]["temperature"] == prov["tune"]["temperature"] == 0.25
    assert results["few"]["hyperparameters"]["temperature"] == 0.25


def test_run_config_is_what_every_pipeline_config_extends():
    from calip3d.fewshot import FewShotConfig
    from calip3d.zeroshot import EvalConfig, TuneViewsConfig

    for cls in (EvalConfig, TuneViewsConfig, FewShotConfig):
        config = cls(dataset="modelnet40", calip=CalipConfig(betas=(1, 2, 3)))
        assert isinstance(config, RunConfig) and config.calip.betas == (1.0, 2.0, 3.0)
    assert FewShotConfig("modelnet40").projector.views == 10  # its own default; the others: the projector's
    assert EvalConfig("modelnet40").projector == TuneViewsConfig("modelnet40").projector == ProjectorConfig()
    assert FewShotConfig("caltech101", calip=CalipConfig(betas="val")).calip.betas == "val"
