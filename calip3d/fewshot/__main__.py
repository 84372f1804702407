"""`python -m calip3d.fewshot`: a shim over `calip3d.cli.fewshot`."""

from calip3d.cli.fewshot import main
from calip3d.errors import run_cli

run_cli(lambda: main(prog="python -m calip3d.fewshot"))
