"""Few-shot classification on frozen CLIP features: CoOp's protocol, CALIP-FS and the baselines behind one method
registry, the honest and release protocols, training and checkpoints, and `run_fewshot` (typed config + loaded
backbone -> result). Importing this package registers every few-shot method (`methods.METHODS`): each module of the
package whose name's last word is `methods` or `method` (`methods`, `closed_form_methods`, `pointnn_method`) holds
methods and is discovered here, not listed by hand: `methods` (the registry's own) first, then the others in name
order."""

import importlib
import pkgutil

from .config import FewShotConfig, TipSettings
from .pipeline import run_fewshot
from .report import fewshot_table
from .training import TrainConfig

for _module in pkgutil.iter_modules(__path__):
    if _module.name.split("_")[-1] in ("methods", "method"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FewShotConfig", "TipSettings", "TrainConfig", "fewshot_table", "run_fewshot"]
