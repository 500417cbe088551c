"""``edgefleet-agent``: the on-device daemon, with the SageMaker agent's command line.

    edgefleet-agent -a /run/edgefleet/agent.sock -c /etc/edgefleet/agent.json [-f]
    edgefleet-agent --from-greengrass-config PATH [-f]
    edgefleet-agent install-service [--dry-run] [--output PATH] ...
    edgefleet-agent health --socket PATH

The first form is the SageMaker agent's and stays exactly as it was; the sub-commands are picked
by the first argument, so an option value can never be mistaken for one. The agent's command line
uses the standard ``argparse`` rather than typer: it has few options, and leaving typer and rich
out keeps the daemon's memory (RSS) about 7 MB smaller on devices.
"""

from __future__ import annotations

import argparse
import functools
import logging
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet import __version__
from edgefleet.agent.config import AgentConfig, load_config
from edgefleet.errors import EdgefleetError

if TYPE_CHECKING:
    from edgefleet.agent.daemon import Agent

log = logging.getLogger("edgefleet.agent")

#: What stops the agent cleanly: calls in flight finish, captures are flushed.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

#: What makes the agent read its config file again and take new control-plane credentials from
#: it (docs/agent-config.md, "Reloading on SIGHUP"); it keeps serving throughout.
RELOAD_SIGNAL = signal.SIGHUP

DESCRIPTION = """\
Serve ONNX model packages to local applications over gRPC on a Unix socket.

Wire-compatible with the Amazon SageMaker Edge Manager agent (AWS.SageMaker.Edge.Agent):
existing applications and their stubs work unchanged. The standard grpc.health.v1 service runs
on the same socket. SIGTERM or Ctrl-C stop the agent cleanly: calls in flight finish,
captured data is flushed, and the socket file is removed. SIGHUP makes it read CONFIG.json
again and take new control-plane credentials from it, without interrupting any call (other
changed keys are logged and wait for a restart).
"""

EPILOG = """\
commands (each has --help):
  edgefleet-agent install-service   write a systemd unit for the agent
  edgefleet-agent health -a SOCKET  check that the agent at SOCKET serves (exit status 0)

exit status: 0 after a clean stop; 1 when the agent cannot start (e.g. the socket is taken);
2 for a bad command line or config (the message names the config key and what it expects).
Config reference: docs/agent-config.md; systemd and containers: docs/service-and-container.md.
"""

USAGE = """\
edgefleet-agent -a SOCKET [-c CONFIG.json] [-f]
       edgefleet-agent --from-greengrass-config PATH [-f]
       edgefleet-agent {install-service,health} ..."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # Required unless --from-greengrass-config gives it (checked in _run_agent).
    parser.add_argument("-a", "--socket", type=Path, metavar="SOCKET",
                        help="Unix socket to serve on; clients dial unix://<this path>")
    parser.add_argument("-c", "--config", type=Path, metavar="CONFIG.json",
                        help="agent config: a flat JSON object of sagemaker_edge_* and "
                        "edgefleet_* keys; without it, every key has its default")
    parser.add_argument("-f", "--force", action="store_true",
                        help="remove a stale socket file (one no process serves on) first")
    parser.add_argument("--from-greengrass-config", type=Path, metavar="PATH",
                        help="take the config and the socket from the configuration of the "
                        "Greengrass SageMaker Edge Manager component at PATH (instead of -a "
                        "and -c)")
    # The original agent's scheme, alone on the line: 1.<YYYYMMDD>.<commit> (edgefleet.version).
    parser.add_argument("--version", action="version", version=__version__)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a sub-command, or the agent itself (parse, validate the
    config, serve until a stop signal).

    Exits with status 1 when the agent cannot start and 2 for a bad command line or config.
    """
    args = sys.argv[1:] if argv is None else argv
    command = COMMANDS.get(args[0]) if args else None
    if command is not None:
        command(args[1:])
    else:
        _run_agent(args)


def _run_agent(argv: list[str]) -> None:
    # The stop and reload signals are blocked before the agent makes any thread (threads
    # inherit the mask) and taken with sigwait, here in the main thread, so that no handler
    # ever runs and a reload is ordinary code. A Python handler runs only in the main thread,
    # and the kernel may deliver SIGTERM to any thread: one delivered to a gRPC or capture
    # thread left the main thread asleep in Event.wait, the agent running and nothing logged
    # (seen under load). A signal that comes during the start (or a reload) waits until the
    # agent serves (or the reload is done).
    signals = {*STOP_SIGNALS, RELOAD_SIGNAL}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        agent, read_config = _start_agent(argv)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # e.g. a bad config: exit 2
        raise
    while (signum := signal.sigwait(signals)) == RELOAD_SIGNAL:
        reload_config(agent, read_config)
    log.info("received %s", signal.Signals(signum).name)
    agent.stop()


def reload_config(agent: Agent, read_config: Callable[[], AgentConfig] | None) -> None:
    """What SIGHUP does: read the config again with ``read_config`` (None: the agent has no
    config file) and hand it to :meth:`Agent.reload <edgefleet.agent.daemon.Agent.reload>`.

    Never raises: a config that cannot be read or is not valid is logged as one ERROR naming
    the problem, and the agent goes on with its current config and credentials.
    """
    if read_config is None:
        log.info("received SIGHUP: no config file (-c) to read again; nothing changed")
        return
    log.info("received SIGHUP: reading the config again")
    try:
        agent.reload(read_config())
    except EdgefleetError as error:
        log.error("SIGHUP: config not reloaded, the agent goes on with its current config and "
                  "credentials: %s", error.message)
    except Exception:  # a bug must not stop the agent: it serves on with what it has
        log.exception("SIGHUP: config not reloaded (unexpected error); the agent goes on with "
                      "its current config and credentials")


def _start_agent(argv: list[str]) -> tuple[Agent, Callable[[], AgentConfig] | None]:
    """Parse ``argv``, load the config and start the agent; exits 1 or 2 when it cannot.

    Returns:
        The serving agent, and what reads its config again on SIGHUP (None without a file).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(False)
    if args.from_greengrass_config is not None:
        if args.socket is not None or args.config is not None:
            parser.error("--from-greengrass-config gives both the config and the socket; "
                         "leave out -a/--socket and -c/--config")
        config, socket_path = _greengrass_config(args.from_greengrass_config)
        read_config: Callable[[], AgentConfig] | None = functools.partial(
            _read_greengrass_config, args.from_greengrass_config)
    else:
        if args.socket is None:
            parser.error("the following arguments are required: -a/--socket")
        socket_path = args.socket
        read_config = functools.partial(load_config, args.config) if args.config else None
        try:
            config = read_config() if read_config else AgentConfig.from_mapping({})
        except EdgefleetError as error:
            log.error("%s", error.message)
            sys.exit(2)
    _configure_logging(config.sagemaker_edge_log_verbose)

    from edgefleet.agent.daemon import Agent  # after logging: importing grpc may log

    try:
        agent = Agent(config, socket_path, force=args.force)
        agent.start()
    except EdgefleetError as error:
        log.error("cannot start: %s", error.message)
        sys.exit(1)
    return agent, read_config


def _greengrass_config(path: Path) -> tuple[AgentConfig, Path]:
    """The config and socket of a Greengrass component configuration; exits 2 when it cannot
    be read or is not valid (the message names the parameter)."""
    if not path.is_file():
        log.error("cannot read the Greengrass configuration %s: no such file", path)
        sys.exit(2)
    from edgefleet.agent.greengrass import load_greengrass_config  # only this option needs it

    try:
        config, socket_path = load_greengrass_config(path)
    except EdgefleetError as error:
        log.error("%s", error.message)
        sys.exit(2)
    return config, Path(socket_path)


def _read_greengrass_config(path: Path) -> AgentConfig:
    """The config of the Greengrass component configuration at ``path``, read again (its
    socket is the one the agent serves on already).

    Raises:
        ConfigError: see :func:`~edgefleet.agent.greengrass.load_greengrass_config`.
    """
    from edgefleet.agent.greengrass import load_greengrass_config

    return load_greengrass_config(path)[0]


# -- install-service -----------------------------------------------------------------------------
def _default_executable() -> str:
    # The edgefleet-agent of this installation (a venv's bin folder, /usr/local/bin, ...).
    from edgefleet.agent.systemd import UnitOptions

    found = shutil.which("edgefleet-agent", path=str(Path(sys.executable).parent))
    return str(Path(found).absolute()) if found else UnitOptions.executable


def _install_parser() -> argparse.ArgumentParser:
    from edgefleet.agent.systemd import DEFAULT_UNIT_PATH, UnitOptions

    defaults = UnitOptions()
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent install-service",
        description="Write a systemd unit that runs the agent as a Type=notify service: a "
        "dedicated user, the socket in /run/<runtime directory> (RuntimeDirectory=), the state "
        "in /var/lib/<state directory>, a watchdog fed only while the socket answers health "
        "checks, Restart=always and sandboxing. Nothing else is changed: the command prints "
        "what to run next (systemctl is called only with --enable).",
        epilog="exit status: 0 written (or unchanged, or printed); 1 the unit cannot be written "
        "or systemctl failed; 2 a bad option. Every unit line is explained in "
        "docs/service-and-container.md.")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_UNIT_PATH, metavar="PATH",
                        help="where to write the unit (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the unit to stdout and write nothing")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing unit file with other content")
    parser.add_argument("--enable", action="store_true",
                        help="then run `systemctl daemon-reload` and `systemctl enable --now` "
                        "for the unit")
    parser.add_argument("--exec", dest="executable", default=None, metavar="PATH",
                        help="absolute path of edgefleet-agent (default: the one of this "
                        "installation)")
    parser.add_argument("-c", "--config", default=defaults.config, metavar="PATH",
                        help="the agent's config file (default: %(default)s)")
    parser.add_argument("--user", default=defaults.user,
                        help="dedicated user the agent runs as (default: %(default)s)")
    parser.add_argument("--group", default=None,
                        help="its group, whose members may use the socket (default: the user's "
                        "name)")
    parser.add_argument("--runtime-directory", default=defaults.runtime_directory,
                        metavar="NAME", help="socket folder under /run (default: %(default)s)")
    parser.add_argument("--socket-name", default=defaults.socket_name, metavar="NAME",
                        help="socket file name in it (default: %(default)s)")
    parser.add_argument("--state-directory", default=defaults.state_directory, metavar="NAME",
                        help="state and working folder under /var/lib (default: %(default)s)")
    parser.add_argument("--watchdog-seconds", type=int, default=defaults.watchdog_seconds,
                        metavar="N", help="WatchdogSec; 0 turns the watchdog off "
                        "(default: %(default)s)")
    parser.add_argument("--restart-seconds", type=int, default=defaults.restart_seconds,
                        metavar="N", help="RestartSec (default: %(default)s)")
    return parser


def _install_service(argv: list[str]) -> None:
    from edgefleet.agent.systemd import UnitOptions, install_unit, next_steps, render_unit

    parser = _install_parser()
    args = parser.parse_args(argv)
    options = UnitOptions(
        executable=args.executable or _default_executable(), config=args.config,
        user=args.user, group=args.group or args.user,
        runtime_directory=args.runtime_directory, socket_name=args.socket_name,
        state_directory=args.state_directory, watchdog_seconds=args.watchdog_seconds,
        restart_seconds=args.restart_seconds)
    try:
        text = render_unit(options)
    except EdgefleetError as error:
        parser.error(error.message)
    if args.dry_run:
        sys.stdout.write(text)
        return
    try:
        changed = install_unit(text, args.output, force=args.force)
    except EdgefleetError as error:
        print(f"edgefleet-agent install-service: {error.message}", file=sys.stderr)
        sys.exit(1)
    print(f"{'wrote' if changed else 'unchanged:'} {args.output}")
    if args.enable:
        _enable(args.output.name)
        return
    sys.stdout.write(next_steps(options, args.output, user_exists=_exists(pwd.getpwnam, args.user),
                                config_exists=Path(options.config).is_file()))


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _enable(unit: str) -> None:
    for command in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit]):
        print("+", " ".join(command))
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"edgefleet-agent install-service: {' '.join(command)} failed ({error}); fix "
                  f"it and run the command again", file=sys.stderr)
            sys.exit(1)


# -- health --------------------------------------------------------------------------------------
def _health(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent health",
        description="Ask the agent at SOCKET for its grpc.health.v1 status (a container "
        "HEALTHCHECK, a Kubernetes exec probe, a script).",
        epilog="exit status: 0 the agent answers SERVING; 1 it does not (the reason is on "
        "stderr); 2 a bad option.")
    parser.add_argument("-a", "--socket", type=Path, required=True, metavar="SOCKET",
                        help="the agent's Unix socket")
    parser.add_argument("--service", default="",
                        help="health service name: '' (the agent, default) or "
                        "AWS.SageMaker.Edge.Agent")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for the answer (default: %(default)s)")
    args = parser.parse_args(argv)
    from edgefleet.agent.systemd import check_health  # late: imports grpc

    problem = check_health(args.socket, timeout=args.timeout, service=args.service)
    if problem is not None:
        print(f"edgefleet-agent health: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"SERVING: unix://{args.socket}")


#: Sub-commands by their name, the first argument.
COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "install-service": _install_service,
    "health": _health,
}
