"""`python -m calip3d.fewshot`."""

from .cli import entry

entry()
