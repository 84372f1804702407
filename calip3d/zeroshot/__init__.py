"""Zero-shot pipelines over typed configs and a loaded backbone: `run_eval` (the zero-shot methods of the registry on a
dataset), `run_tune_views` (view weights and betas tuned on train clouds) and `classify_clouds` (your own files).
Importing this package registers every zero-shot method (`ZERO_SHOT_METHODS`): each `*_rows` module of the package
holds methods and is discovered here, in name order, not listed by hand."""

import importlib
import pkgutil

from .classify_files import ClassifyConfig, classify_clouds, load_clouds
from .config import EvalConfig, SearchConfig, TuneConfig, TuneViewsConfig
from .pipeline import run_eval
from .registry import ZERO_SHOT_METHODS, ZeroShotMethod, method_list, register_zero_shot
from .tune_views import run_tune_views

for _module in pkgutil.iter_modules(__path__):
    if _module.name.endswith("_rows"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ClassifyConfig", "EvalConfig", "SearchConfig", "TuneConfig", "TuneViewsConfig", "ZERO_SHOT_METHODS",
           "ZeroShotMethod", "classify_clouds", "load_clouds", "method_list", "register_zero_shot", "run_eval",
           "run_tune_views"]
