"""The `digitlab` command line."""

from digitlab.cli.commands import app, main

__all__ = ["app", "main"]
