"""`python -m calip3d SUBCOMMAND ...`."""

from calip3d.cli.main import entry

entry()
