"""The registries (zero-shot methods, few-shot methods, projectors): a new entry is one class in one module, and the
commands pick it up by name; every registered method is listed, scored in order and described."""

from __future__ import annotations

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
