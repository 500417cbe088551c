"""``edgefleet bridge``: the composition root of the JSON-RPC bridge, and its command line.

Settings -> agent client and storage -> methods -> dispatcher -> transport (HTTP or stdio).
Register it on the umbrella command with :func:`add_commands`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgefleet.bridge.config import DEFAULT_PORT, BridgeConfig, load_config
from edgefleet.errors import ConfigError, echo

if TYPE_CHECKING:
    from edgefleet.bridge.client import AgentClient
    from edgefleet.bridge.protocol import Dispatcher, JsonRpcError, Request

log = logging.getLogger("edgefleet.bridge")

HELP = f"""Serve the agent's API as JSON-RPC 2.0: the methods and parameters of the SageMaker
Edge Manager Pelion translator (listModels, loadModel, unloadModel, predict, captureData,
getCaptureDataStatus), so a gateway's existing calls work unchanged.

HTTP (default): POST a request or a batch to http://HOST:PORT/ (default 127.0.0.1:{DEFAULT_PORT};
there is no authentication: keep it on loopback). With --stdio: one message per line on stdin,
one response per line on stdout, logs on stderr.

file:///NAME URLs are NAME in the data folder; s3:///NAME is NAME under the data prefix of the
bucket (SAPT_AWS_S3_BUCKET, SAPT_AWS_S3_DATA_DIR); loadModel's s3_filename is under
SAPT_AWS_S3_MODELS_DIR and is downloaded once into the cache folder. Every setting is also an
environment variable (EDGEFLEET_BRIDGE_ and the setting in capitals, e.g.
EDGEFLEET_BRIDGE_CACHE_FOLDER) and a key of the --config file; options win
over the environment, which wins over the file. Reference: docs/bridge.md.

SIGTERM or Ctrl-C stop it cleanly. Exit status: 0 after a clean stop, 1 when it cannot serve
(e.g. the port is taken), 2 for a bad command line or config (the message names the key).
"""


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def _log_call(request: Request, error: JsonRpcError | None, seconds: float) -> None:
    kind = "notification" if request.notification else f"id={echo(str(request.id), 60)}"
    if error is None:
        log.info("%s %s ok in %.1f ms", request.method, kind, seconds * 1000)
    else:
        log.warning("%s %s failed in %.1f ms: %s", echo(request.method, 60), kind,
                    seconds * 1000, error.message)


def build_dispatcher(config: BridgeConfig) -> tuple[Dispatcher, AgentClient]:
    """The dispatcher over a client of ``config.socket``; close the client when done."""
    # Imported here: the umbrella command loads this module for every sub-command, and these
    # pull in grpc and numpy.
    from edgefleet.bridge.client import AgentClient
    from edgefleet.bridge.methods import BridgeMethods
    from edgefleet.bridge.protocol import Dispatcher
    from edgefleet.bridge.storage import Storage

    agent = AgentClient(config.socket, config.agent_timeout_seconds)
    methods = BridgeMethods(agent, Storage(config))
    return Dispatcher(methods.table(), on_call=_log_call), agent


def bridge(
    stdio: Annotated[bool, typer.Option(
        "--stdio", help="Line-delimited JSON-RPC on stdin/stdout instead of HTTP.")] = False,
    host: Annotated[str | None, typer.Option(
        help="HTTP address [env EDGEFLEET_BRIDGE_HOST; default 127.0.0.1].",
        show_default=False)] = None,
    port: Annotated[int | None, typer.Option(
        help=f"HTTP port [env EDGEFLEET_BRIDGE_PORT; default {DEFAULT_PORT}].",
        show_default=False)] = None,
    socket: Annotated[Path | None, typer.Option(
        help="The agent's Unix socket [env EDGEFLEET_BRIDGE_SOCKET; default "
        "/tmp/edgefleet.sock].", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        help="Settings file: a JSON object or a .toml table of setting names (docs/bridge.md).",
        show_default=False)] = None,
    data_folder: Annotated[Path | None, typer.Option(
        help="Folder of file:///NAME URLs [env EDGEFLEET_BRIDGE_DATA_FOLDER; default ./data].",
        show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")
                       ] = False,
) -> None:
    """Serve the agent's API as JSON-RPC 2.0 over HTTP or stdin/stdout."""
    _configure_logging(verbose)
    try:
        settings = load_config(config, host=host, port=port, socket=socket,
                               data_folder=data_folder)
    except ConfigError as error:
        log.error("%s", error.message)
        raise typer.Exit(2) from None
    dispatcher, agent = build_dispatcher(settings)
    log.info("agent socket %s; data folder %s; models folder %s; bucket %s", settings.socket,
             settings.data_folder.resolve(), settings.models_folder.resolve(),
             settings.bucket or "(none)")
    try:
        if stdio:
            from edgefleet.bridge.stdio import serve_stdio

            log.info("answering JSON-RPC lines on stdin")
            serve_stdio(dispatcher.handle, sys.stdin.buffer, sys.stdout.buffer,
                        max_line_bytes=settings.max_request_bytes)
        else:
            try:
                from edgefleet.bridge.http import create_app, serve_http
            except ImportError as missing:
                log.error("the HTTP transport needs %s: pip install 'edgefleet[bridge]' (or "
                          "use --stdio)", missing.name)
                raise typer.Exit(2) from None
            app = create_app(dispatcher.handle, max_request_bytes=settings.max_request_bytes)
            log.info("serving JSON-RPC on http://%s:%d/", settings.host, settings.port)
            serve_http(app, settings.host, settings.port,
                       log_level="debug" if verbose else "info")
    except SystemExit as exit_:
        raise typer.Exit(int(exit_.code or 0)) from None
    finally:
        agent.close()
    log.info("stopped")


def add_commands(app: typer.Typer) -> None:
    """Add ``bridge`` to the umbrella ``edgefleet`` command."""
    app.command("bridge", help=HELP, rich_help_panel=None,
                context_settings={"max_content_width": 100})(bridge)
