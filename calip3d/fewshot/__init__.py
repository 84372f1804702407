"""Few-shot classification on frozen CLIP features: CoOp's protocol, CALIP-FS and the baselines behind one method
registry, training and checkpoints, and `run_fewshot` (typed config + loaded backbone -> result)."""

from .config import FewShotConfig, TrainOverrides
from .pipeline import run_fewshot

__all__ = ["FewShotConfig", "TrainOverrides", "run_fewshot"]
