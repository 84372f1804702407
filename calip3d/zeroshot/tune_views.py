"""`run_tune_views`: PointCLIP view weights (and CALIP's betas, jointly) tuned on train clouds, scored on a split.

Uses the same cached per-view terms as `run_eval`, so a second run with another grid, search method or tuning subset
does not re-encode. Test-tuned rows only with `oracle`, labelled ORACLE.
"""

from __future__ import annotations

from calip3d.backbone import CLIPBackbone
from calip3d.datasets import load_split
from calip3d.errors import CalipError
from calip3d.results import EvalResult, provenance

from .config import TuneViewsConfig
from .pipeline import data_provenance, draw_shots, encoding_provenance, prepare, tuning_plan
from .registry import ScoringRun, Tuning, ViewWeights, score_methods, select_methods


def run_tune_views(config: TuneViewsConfig, backbone: CLIPBackbone) -> EvalResult | None:
    """Rows: PointCLIP (uniform) and CALIP (default betas), then both tuned on the tuning clouds (and on the test
    labels with `oracle`). Tuning on the evaluated split itself (`split` train) is reported as ORACLE. In a torchrun
    job every rank encodes its shards; rank 0 searches and returns the result, the other ranks None."""
    run = prepare(config, backbone)
    if not run.info.is_points:
        raise CalipError(f"tune-views tunes the view weights of point-cloud datasets; {run.info.name} is an image "
                         "dataset (its betas are tuned by `calip3d eval`)")
    tune, oracle = tuning_plan("test" if config.oracle else "val", config.split, "train")
    tuning = None
    if tune:
        if config.tune_split == "fewshot":
            split, description = draw_shots(run.info, run.root, config.points, config.shots, config.seed)
        else:
            split = load_split(run.info.name, run.root, "train", config.points)
            description = f"the train split, {len(split)} clouds"
        tuning = Tuning(run.encoder.terms(split, run.text, run.prompts.description, desc="tuning set"), description)
    if not run.encoder.ranks.main:
        return None
    scoring = ScoringRun(run.info, run.terms, tuning, oracle, None, ViewWeights(), config.search,
                         config.search.beta_range(run.info.beta_search_range), options=config)
    methods = score_methods(select_methods(None, run.info), scoring, explicit=False)
    projector = run.encoder.loading.projector
    prov = provenance(backbone=backbone.info.as_dict(), precision=backbone.precision,
                      templates=run.prompts.description, split_file=run.test.source,
                      temperature=config.encode.temperature, limit=config.limit, data=data_provenance(run),
                      **encoding_provenance(run),
                      points=run.test.settings,
                      projector=projector.describe(), cache=run.cache_status,
                      tuning_set=tuning.description if tuning else None, tune_split=config.tune_split,
                      view_search={"method": config.search.view_method, "restarts": config.search.restarts,
                                   "rounds": config.search.rounds})
    return EvalResult(run.info.name, config.split, int(len(run.terms.labels)), len(run.test.classnames), methods,
                      prov)
