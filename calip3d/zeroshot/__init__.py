"""Zero-shot pipelines over typed configs and a loaded backbone: `run_eval` (CLIP / PointCLIP vs CALIP on a dataset),
`run_tune_views` (view weights and betas tuned on train clouds) and `classify_clouds` (your own files)."""

from .classify import ClassifyConfig, classify_clouds, load_clouds
from .config import EvalConfig, SearchConfig, TuneConfig, TuneViewsConfig
from .pipeline import run_eval
from .tune_views import run_tune_views

__all__ = ["ClassifyConfig", "EvalConfig", "SearchConfig", "TuneConfig", "TuneViewsConfig", "classify_clouds",
           "load_clouds", "run_eval", "run_tune_views"]
