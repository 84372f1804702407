"""Tune PointCLIP view weights (and CALIP's betas) on train clouds, report test accuracy: `calip3d tune-views`.

Kept here because users look for the tuning script in experiments/; every flag is the command's (see --help):

    python experiments/tune_view_weights.py --dataset modelnet40 --data-root DATA --backbone RN50 --pretrained openai \
        --tune-split fewshot --shots 16 --method exhaustive
    python experiments/tune_view_weights.py --dataset modelnet40 --data-root DATA --views 10 --method coordinate
"""

from __future__ import annotations

from calip3d.cli.tune_views import main
from calip3d.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main(prog="python experiments/tune_view_weights.py"))
