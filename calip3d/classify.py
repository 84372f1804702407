"""`python -m calip3d.classify`: a shim over `calip3d.cli.classify` (same flags as `calip3d classify`)."""

from calip3d.cli.classify import main
from calip3d.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: main(prog="python -m calip3d.classify"))
