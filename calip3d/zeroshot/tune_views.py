"""`run_tune_views`: PointCLIP view weights (and CALIP's betas, jointly) tuned on train clouds, scored on a split.

Uses the same cached per-view terms as `run_eval`, so a second run with another grid, search method or tuning subset
does not re-encode. Test-tuned rows only with `oracle`, labelled ORACLE.
"""

from __future__ import annotations

from calip3d.backbone import CLIPBackbone
from calip3d.errors import CalipError
from calip3d.results import EvalResult
from calip3d.run_context import RunContext

from .config import TuneViewsConfig
from .pipeline import draw_shots, prepare, tuning_plan
from .registry import ScoringRun, Tuning, ViewWeights, score_methods, select_methods


def run_tune_views(config: TuneViewsConfig, backbone: CLIPBackbone) -> EvalResult | None:
    """Rows: PointCLIP (uniform) and CALIP (default betas), then both tuned on the tuning clouds (and on the test
    labels with `oracle`). Tuning on the evaluated split itself (`split` train) is reported as ORACLE. In a torchrun
    job every rank encodes its shards; rank 0 searches and returns the result, the other ranks None."""
    context = RunContext.build(config, backbone)
    if not context.info.is_points:
        raise CalipError(f"tune-views tunes the view weights of point-cloud datasets; {context.info.name} is an image "
                         "dataset (its betas are tuned by `calip3d eval`)")
    run = prepare(config, context)
    tune, oracle = tuning_plan("test" if config.oracle else "val", config.split, "train")
    tuning = None
    if tune:
        if config.tune_split == "fewshot":
            split, description = draw_shots(context, config.shots, config.seed)
        else:
            split = context.load("train")
            description = f"the train split, {len(split)} clouds"
        tuning = Tuning(run.encode(split, "tuning set"), description)
    if not run.encoder.ranks.main:
        return None
    scoring = ScoringRun(run.info, run.terms, tuning, oracle, config.calip.betas, ViewWeights(), config.search,
                         config.search.beta_range(run.info.beta_search_range), options=config)
    methods = score_methods(select_methods(None, run.info), scoring, explicit=False)
    prov = run.provenance(config, tuning_set=tuning.description if tuning else None, tune_split=config.tune_split,
                          view_search={"method": config.search.view_method, "restarts": config.search.restarts,
                                       "rounds": config.search.rounds})
    return EvalResult(run.info.name, config.split, int(len(run.terms.labels)), len(run.test.classnames), methods,
                      prov)
