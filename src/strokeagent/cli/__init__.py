"""The ``strokeagent`` command."""

from strokeagent.cli.main import app, main

__all__ = ["app", "main"]
