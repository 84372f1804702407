"""`python -m calip3d.eval`: a shim over `calip3d.cli.eval` (same flags as `calip3d eval`)."""

from calip3d.cli.eval import main
from calip3d.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main(prog="python -m calip3d.eval"))
