"""``edgefleet-agent``: the on-device daemon, with the SageMaker agent's command line.

    edgefleet-agent -a /run/edgefleet/agent.sock -c /etc/edgefleet/agent.json [-f]

The agent's command line uses the standard ``argparse`` rather than typer: it has three options,
and leaving typer and rich out keeps the daemon's memory (RSS) about 7 MB smaller on devices.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from edgefleet import __version__
from edgefleet.agent.config import AgentConfig, load_config
from edgefleet.errors import EdgefleetError

log = logging.getLogger("edgefleet.agent")

DESCRIPTION = """\
Serve ONNX model packages to local applications over gRPC on a Unix socket.

Wire-compatible with the Amazon SageMaker Edge Manager agent (AWS.SageMaker.Edge.Agent):
existing applications and their stubs work unchanged. The standard grpc.health.v1 service runs
on the same socket. SIGTERM, SIGHUP or Ctrl-C stop the agent cleanly: calls in flight finish,
captured data is flushed, and the socket file is removed.
"""

EPILOG = """\
exit status: 0 after a clean stop; 1 when the agent cannot start (e.g. the socket is taken);
2 for a bad command line or config (the message names the config key and what it expects).
Config reference: docs/agent-config.md.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-a", "--socket", type=Path, required=True, metavar="SOCKET",
                        help="Unix socket to serve on; clients dial unix://<this path>")
    parser.add_argument("-c", "--config", type=Path, metavar="CONFIG.json",
                        help="agent config: a flat JSON object of sagemaker_edge_* and "
                        "edgefleet_* keys; without it, every key has its default")
    parser.add_argument("-f", "--force", action="store_true",
                        help="remove a stale socket file (one no process serves on) first")
    parser.add_argument("--version", action="version", version=f"edgefleet-agent {__version__}")
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: parse, validate the config, serve until a stop signal.

    Exits with status 1 when the agent cannot start and 2 for a bad config.
    """
    args = _parser().parse_args(argv)
    _configure_logging(False)
    try:
        config = load_config(args.config) if args.config else AgentConfig.from_mapping({})
    except EdgefleetError as error:
        log.error("%s", error.message)
        sys.exit(2)
    _configure_logging(config.sagemaker_edge_log_verbose)

    from edgefleet.agent.daemon import Agent  # after logging: importing grpc may log

    try:
        agent = Agent(config, args.socket, force=args.force)
        agent.start()
    except EdgefleetError as error:
        log.error("cannot start: %s", error.message)
        sys.exit(1)

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, request_stop)
    stop_requested.wait()
    agent.stop()
