"""Few-shot classification on frozen CLIP features: CoOp's protocol, CALIP-FS and the baselines behind one method
registry, the honest and release protocols, training and checkpoints, and `run_fewshot` (typed config + loaded
backbone -> result)."""

from . import closed_form_methods, pointnn_method  # noqa: F401  (register gda, ape, tip-x, then point-nn)
from .config import FewShotConfig, TrainOverrides
from .methods import TipSettings
from .pipeline import run_fewshot
from .report import fewshot_table

__all__ = ["FewShotConfig", "TipSettings", "TrainOverrides", "fewshot_table", "run_fewshot"]
