"""The ``edgefleet`` umbrella command: one sub-command group per area."""

from __future__ import annotations

import typer

from edgefleet.bridge.cli import add_commands as add_bridge_commands
from edgefleet.fleet.cli import add_commands as add_fleet_commands
from edgefleet.package.cli import keys_app, package_app

app = typer.Typer(
    name="edgefleet", no_args_is_help=True, rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="edgefleet: signed model packages, the edge agent's tools and the fleet control plane.")
app.add_typer(package_app, name="package")
app.add_typer(keys_app, name="keys")
add_fleet_commands(app)
add_bridge_commands(app)


def main() -> None:
    """Entry point of the ``edgefleet`` console script."""
    app()
