"""CALIP attention: the parameter-free terms (zero-shot) and, for few-shot, the parametric module."""

from .calip import (
    CALIP_DEFAULT_TEMPERATURE, calip_attention, calip_logits, calip_scores, calip_terms, combine_terms, terms_from_attention,
)
from .config import BETA_CHOICES, CalipConfig
from .parametric import ParametricCALIP

__all__ = [
    "BETA_CHOICES", "CALIP_DEFAULT_TEMPERATURE", "CalipConfig", "ParametricCALIP", "calip_attention", "calip_logits",
    "calip_scores", "calip_terms", "combine_terms", "terms_from_attention",
]
