"""`provisioner`: the command-line client of the provisioner's HTTP API (Typer + rich)."""

from provisioner.cli.commands import app

__all__ = ["app"]
