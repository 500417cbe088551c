"""``edgefleet-agent``: the on-device daemon, with the SageMaker agent's command line.

    edgefleet-agent -a /run/edgefleet/agent.sock -c /etc/edgefleet/agent.json [-f]
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from edgefleet import __version__
from edgefleet.agent.config import AgentConfig, load_config
from edgefleet.errors import EdgefleetError

log = logging.getLogger("edgefleet.agent")

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgefleet-agent {__version__}")
        raise typer.Exit()


@app.command()
def run(
    socket_path: Annotated[Path, typer.Option(
        "-a", "--socket", help="Unix socket to serve on; clients dial unix://<this path>.")],
    config_path: Annotated[Path | None, typer.Option(
        "-c", "--config", help="Agent config: a flat JSON object of sagemaker_edge_* and "
        "edgefleet_* keys (see the README). Without it, every key has its default.")] = None,
    force: Annotated[bool, typer.Option(
        "-f", "--force", help="Remove a stale socket file (one no process serves on) first.")
    ] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Serve ONNX model packages to local applications over gRPC on a Unix socket.

    Wire-compatible with the Amazon SageMaker Edge Manager agent (AWS.SageMaker.Edge.Agent):
    existing applications and their stubs work unchanged. The standard grpc.health.v1 service
    runs on the same socket. SIGTERM, SIGHUP or Ctrl-C stop the agent cleanly: calls in flight
    finish, captured data is flushed, and the socket file is removed.
    """
    _configure_logging(False)
    try:
        config = load_config(config_path) if config_path else AgentConfig.from_mapping({})
    except EdgefleetError as error:
        log.error("%s", error.message)
        raise typer.Exit(2) from None
    _configure_logging(config.sagemaker_edge_log_verbose)

    from edgefleet.agent.daemon import Agent  # after logging: importing grpc may log

    try:
        agent = Agent(config, socket_path, force=force)
        agent.start()
    except EdgefleetError as error:
        log.error("cannot start: %s", error.message)
        raise typer.Exit(1) from None

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, request_stop)
    stop_requested.wait()
    agent.stop()


def main() -> None:
    """Console-script entry point."""
    app()
