"""The ``edgefleet`` umbrella command: one sub-command group per area."""

from __future__ import annotations

import typer

from edgefleet.package.cli import keys_app, package_app

app = typer.Typer(
    name="edgefleet", no_args_is_help=True, rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="edgefleet: signed model packages and the edge agent's tools.")
app.add_typer(package_app, name="package")
app.add_typer(keys_app, name="keys")


def main() -> None:
    """Entry point of the ``edgefleet`` console script."""
    app()
