"""The registries (zero-shot methods, few-shot methods, projectors): a new entry is one class in one module, and the
commands pick it up by name; every registered method is listed, scored in order and described."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from calip3d.cli.eval import build_parser as eval_parser
from calip3d.cli.fewshot import build_parser as fewshot_parser
from calip3d.fewshot.methods import METHODS
from calip3d.projection import PROJECTORS, PointCLIPProjector, ProjectorConfig, register_projector
from calip3d.reference import PAPER_METHODS
from calip3d.results import MethodResult
from calip3d.zeroshot import ZERO_SHOT_METHODS, EvalConfig, ZeroShotMethod, method_list, register_zero_shot, run_eval
from calip3d.zeroshot.registry import IMAGES, accuracies


@pytest.fixture
def registered(monkeypatch):
    """Register entries for one test only."""
    monkeypatch.setattr("calip3d.zeroshot.registry.ZERO_SHOT_METHODS", dict(ZERO_SHOT_METHODS))
    monkeypatch.setattr("calip3d.projection.PROJECTORS", PROJECTORS)
    added: list[str] = []
    yield added
    for kind in added:
        PROJECTORS.pop(kind, None)


def test_every_zero_shot_method_is_listed_described_and_selectable():
    listing = method_list().splitlines()
    assert [line.split()[0] for line in listing] == list(ZERO_SHOT_METHODS)
    for name, cls in ZERO_SHOT_METHODS.items():
        assert cls.summary and cls.kinds, name
        assert eval_parser().parse_args(["--dataset", "caltech101", "--methods", name]).methods == (name,)
        if cls.paper_method:
            assert PAPER_METHODS[name] == cls.paper_method  # the registry says what each method compares with
    with pytest.raises(SystemExit):
        eval_parser().parse_args(["--dataset", "caltech101", "--methods", "clip,nonesuch"])


def test_every_few_shot_method_is_a_choice_of_the_command():
    parser = fewshot_parser()
    for name in METHODS:
        assert parser.parse_args(["--dataset", "caltech101", "--method", name]).method == name
    assert {"gda", "ape", "tip-x", "point-nn"} <= set(METHODS)


def test_a_new_few_shot_method_is_one_module():
    """Importing the package, in a fresh interpreter, imports every module of `calip3d.fewshot` whose name's last
    word is `methods` or `method` (nothing lists them), and every registered few-shot method lives in one: a new
    method is a new module so named."""
    code = ("import json, pkgutil, calip3d.fewshot as fewshot\n"
            "from calip3d.fewshot.methods import METHODS\n"
            "print(json.dumps({'modules': [m.name for m in pkgutil.iter_modules(fewshot.__path__)],\n"
            "                  'methods': {name: cls.__module__ for name, cls in METHODS.items()}}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    holding = {f"calip3d.fewshot.{m}" for m in found["modules"] if m.split("_")[-1] in ("methods", "method")}
    assert {"calip3d.fewshot.methods", "calip3d.fewshot.closed_form_methods", "calip3d.fewshot.pointnn_method"} \
        <= holding
    assert set(found["methods"].values()) == holding  # each such module registers methods, and only those do
    assert list(found["methods"]) == list(METHODS)


def test_a_new_zero_shot_method_is_one_class(registered, varied_images, caltech_root):
    import calip3d.zeroshot.registry as registry

    @register_zero_shot
    class Half(ZeroShotMethod):
        """Plain CLIP on half its logit scale: same ranking, so the same accuracies as `clip`."""

        name = "half_clip"
        summary = "test entry"
        kinds = frozenset({IMAGES})

        def score(self, run):
            return MethodResult(self.name, **accuracies(50 * run.test.clip, run.labels), betas=None,
                                betas_source="test")

    assert "half_clip" in registry.ZERO_SHOT_METHODS
    from calip3d.backbone import BackboneConfig
    from calip3d.encoding import EncodeConfig
    backbone = BackboneConfig(str(varied_images[0]), str(varied_images[1]), device="cpu").load()
    result = run_eval(EvalConfig("caltech101", str(caltech_root), limit=30, methods=("half_clip", "clip"),
                                 encode=EncodeConfig(use_cache=False, workers=0)), backbone)
    assert [m.name for m in result.methods] == ["half_clip", "clip"]
    assert result.method("half_clip").top1 == result.method("clip").top1


def test_a_new_projector_is_one_class(registered):
    @register_projector
    class Wide(PointCLIPProjector):
        kind = "wide"

        @classmethod
        def released(cls, views, image_size, overrides):
            return cls(views=6 if views is None else views, image_size=image_size, distance=3.0, **overrides)

    registered.append("wide")
    built = ProjectorConfig(kind="wide").build(224)
    assert isinstance(built, Wide) and built.num_views == 6
    with pytest.raises(ValueError, match="registered twice"):
        register_projector(Wide)
