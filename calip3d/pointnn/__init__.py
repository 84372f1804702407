"""Point-NN (Zhang et al., CVPR 2023): the training-free point-cloud encoder and its memory-bank classifier."""

from .encoder import PointNN, encode_clouds
from .memory import memory_logits, search_gamma

__all__ = ["PointNN", "encode_clouds", "memory_logits", "search_gamma"]
