"""Running the agent under a service manager: systemd's notify protocol and watchdog, the unit
file, the health probe that the watchdog and container health checks share, and the crash count.

The notify protocol (``sd_notify(3)``) is one datagram per message to the ``AF_UNIX``
``SOCK_DGRAM`` socket named by ``$NOTIFY_SOCKET`` (a path, or a Linux abstract name written with
a leading ``@``), holding newline-separated ``KEY=VALUE`` assignments: ``READY=1``,
``STATUS=<text>``, ``WATCHDOG=1``, ``STOPPING=1``. With ``WatchdogSec=`` in the unit, systemd
sets ``$WATCHDOG_USEC`` (microseconds) and ``$WATCHDOG_PID`` and kills the service when no
``WATCHDOG=1`` arrives within that time; ``sd_watchdog_enabled(3)`` asks for a keep-alive every
half of it. The protocol is small enough to speak with :mod:`socket` (no libsystemd), so the
original agent's ``sagemaker_edge_telemetry_libsystemd_path`` is not needed.

Liveness, not a timer: :class:`Notifier` sends ``READY=1`` and each ``WATCHDOG=1`` only after the
agent answered a ``grpc.health.v1`` ``Check`` on its own socket with ``SERVING``
(:func:`check_health`, a new connection each time). An agent whose gRPC server hangs, whose
listening socket was deleted, or whose worker threads are all stuck for ``WatchdogSec`` is killed
and restarted by systemd; one that is merely idle is not.

Crash count: the original agent counted crashes through systemd. Here the agent keeps its own
count (:class:`RunHistory`, a small file in its data folder, marked "running" at start and
"stopped" at a clean stop: a start that finds "running" follows a crash, a ``kill -9``, a
watchdog abort or a power loss), and also reads systemd's ``NRestarts`` when it runs as a unit
(:func:`read_service_restarts`). Heartbeats carry both (``crash-count``, ``service-restarts``;
see :mod:`edgefleet.agent.device.metrics`).

docs/service-and-container.md explains the unit line by line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgefleet import jsondoc
from edgefleet.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

#: Where ``install-service`` writes the unit unless told otherwise.
DEFAULT_UNIT_PATH = Path("/etc/systemd/system/edgefleet-agent.service")

#: The agent's own run history, in its data folder (``sagemaker_edge_local_data_root_path``).
RUNS_FILE = "agent-runs.json"

#: Format of :data:`RUNS_FILE`; another format is set aside and counting starts over.
RUNS_FORMAT = 1

#: Environment variable the rendered unit sets to its own name (``%n``), so that the agent can
#: ask systemd for the unit's ``NRestarts``.
UNIT_ENV = "EDGEFLEET_SYSTEMD_UNIT"

#: Longest wait, in seconds, for one health check of the watchdog.
MAX_CHECK_SECONDS = 5.0

#: Seconds between health checks while the agent does not answer (before it is ready, or while
#: the watchdog is not fed); at most a quarter of the keep-alive interval.
RETRY_SECONDS = 1.0

#: ``sockaddr_un.sun_path`` holds 108 bytes on Linux, the last one a NUL.
MAX_SOCKET_PATH = 107


# -- the notify protocol -------------------------------------------------------------------------
def notify_address(value: str) -> str | None:
    """The ``sendto`` address of a ``$NOTIFY_SOCKET`` value, or None when there is none.

    An absolute path is used as it is; ``@name`` is the abstract socket ``\\0name``. Anything
    else (empty, a relative path, systemd's ``vsock:`` addresses) is None; a value that is set
    but unusable is logged.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        log.warning("NOTIFY_SOCKET=%r is neither an absolute path nor an abstract socket (@name); "
                    "systemd will not hear from the agent", value)
    return None


def watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog timeout in microseconds that systemd expects ``pid`` to honour, or None.

    None when ``$WATCHDOG_USEC`` is unset, not a positive integer, or ``$WATCHDOG_PID`` names
    another process (the variables were inherited from a parent they were meant for).
    """
    usec, owner = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec)


class Notifier:
    """Tells systemd about the agent's state over ``$NOTIFY_SOCKET``; a no-op without it.

    Thread-safe. A socket error never raises: a failed send is logged once (and again after a
    send succeeded), because the agent serves on whether or not systemd hears it.

    Args:
        environ: where ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are read
            (default: :data:`os.environ`), once, here.
        pid: this process's id, for ``WATCHDOG_PID`` (default: :func:`os.getpid`).

    Attributes:
        ping_interval: seconds between keep-alives (half of ``WATCHDOG_USEC``), or None when
            systemd expects none.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *,
                 pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = notify_address(env.get("NOTIFY_SOCKET", ""))
        usec = watchdog_usec(env, os.getpid() if pid is None else pid)
        self.ping_interval = None if usec is None or self._address is None else usec / 2e6
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given (the agent runs as a ``Type=notify`` unit)."""
        return self._address is not None

    @property
    def check_timeout(self) -> float:
        """Seconds one health check of the watchdog may take: half the keep-alive interval, at
        most :data:`MAX_CHECK_SECONDS`."""
        if self.ping_interval is None:
            return MAX_CHECK_SECONDS
        return min(MAX_CHECK_SECONDS, self.ping_interval / 2)

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was sent.

        Raises:
            ValueError: an assignment holds a newline or no ``=`` (it would be misread).
        """
        for item in assignments:
            if "\n" in item or "=" not in item:
                raise ValueError(f"a notify assignment is one KEY=VALUE line, got {item!r}")
        with self._lock:
            return self._send_locked("\n".join(assignments))

    def _send_locked(self, message: str) -> bool:
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode(), self._address)
        except OSError as error:
            if not self._failing:
                log.warning("cannot notify systemd at %s: %s", self._address.replace("\0", "@"),
                            error)
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and ``STATUS=``): startup is finished, the socket serves."""
        return self.send("READY=1", *([f"STATUS={' '.join(status.split())}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=<text>``: one line that ``systemctl status`` shows."""
        return self.send(f"STATUS={' '.join(text.split())}")

    def supervise(self, check: Callable[[], str | None], *, status: str) -> None:
        """Start the thread that sends ``READY=1`` once ``check`` passes, then ``WATCHDOG=1``
        every :attr:`ping_interval` seconds while it passes.

        Without a notify socket nothing starts; without a watchdog the thread ends after
        ``READY=1``. While ``check`` fails it is retried every :data:`RETRY_SECONDS` (at most a
        quarter of the interval), nothing is sent but one ``STATUS=`` saying why, and systemd's
        watchdog kills the agent once ``WatchdogSec`` passed since the last keep-alive.

        Args:
            check: None when the agent is alive, else why not (e.g. :func:`check_health` of
                its socket); called on the supervising thread and must not raise.
            status: the ``STATUS=`` text while the agent is alive.
        """
        if self._address is None or self._thread is not None:
            return
        status = " ".join(status.split())  # STATUS= is one line
        self._thread = threading.Thread(target=self._supervise, args=(check, status),
                                        name="systemd-watchdog", daemon=True)
        self._thread.start()

    def _supervise(self, check: Callable[[], str | None], status: str) -> None:
        interval = self.ping_interval
        retry = RETRY_SECONDS if interval is None else min(RETRY_SECONDS, interval / 4)
        ready, failing, delay = False, False, 0.0
        while not self._stop.wait(delay):
            problem = check()
            with self._lock:
                if self._stop.is_set():  # stopping() ran meanwhile: nothing after STOPPING=1
                    return
                if problem is None:
                    message = "WATCHDOG=1" if ready else "READY=1"
                    if not ready or failing:
                        message += f"\nSTATUS={status}"
                    if failing:
                        log.info("the agent answers its health check again; feeding the "
                                 "systemd watchdog")
                    self._send_locked(message)
                    ready, failing = True, False
                elif not failing:
                    log.warning("health check of the agent's own socket failed: %s; %s",
                                problem, "systemd's watchdog is not fed until it answers"
                                if ready else "not telling systemd it is ready yet")
                    self._send_locked(f"STATUS=not answering: {' '.join(problem.split())}")
                    failing = True
            if ready and interval is None:
                return
            delay = retry if failing else (interval or 0.0)

    def stopping(self, status: str = "stopping: finishing calls in flight") -> None:
        """Send ``STOPPING=1`` (and ``STATUS=``) and end the watchdog thread.

        Does not wait for the thread: it sends nothing after this (a check it is in finishes
        and is dropped), and waiting would only delay the stop.
        """
        with self._lock:
            self._stop.set()
            self._send_locked(f"STOPPING=1\nSTATUS={status}")

    def close(self) -> None:
        """Stop the watchdog thread (without a message) and close the socket."""
        self._stop.set()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


# -- health --------------------------------------------------------------------------------------
def check_health(socket_path: Path, *, timeout: float = MAX_CHECK_SECONDS,
                 service: str = "") -> str | None:
    """Ask the agent at ``socket_path`` for its ``grpc.health.v1`` status, on a new connection.

    Args:
        socket_path: the agent's Unix socket.
        timeout: seconds to wait for the answer.
        service: the health service name: ``""`` (the whole agent) or
            ``AWS.SageMaker.Edge.Agent``.

    Returns:
        None when the agent answers ``SERVING``; otherwise a sentence saying what is wrong
        (no socket, not a socket, no permission, no answer in time, not serving).
    """
    try:
        mode = socket_path.stat().st_mode
    except FileNotFoundError:
        return (f"no socket at {socket_path}: no agent serves there (is it running, and with "
                f"this --socket?)")
    except OSError as error:
        return f"cannot look at {socket_path}: {error.strerror}"
    if not stat.S_ISSOCK(mode):
        return f"{socket_path} is not a socket: pass the path the agent serves on"
    if not os.access(socket_path, os.W_OK):
        return (f"no permission to connect to {socket_path} (mode {stat.S_IMODE(mode):04o}): "
                f"run as the agent's user or a member of the socket's group")
    channel = grpc.insecure_channel(f"unix:{socket_path}")
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"the agent at {socket_path} did not answer within {timeout:g} s"
        if code == grpc.StatusCode.NOT_FOUND:
            return f"the agent at {socket_path} knows no health service {service!r}"
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        return (f"the agent at {socket_path} did not answer "
                f"({code.name if code else 'error'}: {details})")
    finally:
        channel.close()
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return f"the agent at {socket_path} reports {name} (starting or stopping)"
    return None


# -- crash count ---------------------------------------------------------------------------------
def write_atomically(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` so that a crash or power loss leaves the old or the new
    content: a temporary file in the same folder, fsync'ed, renamed over ``path``, then the
    folder fsync'ed.

    Raises:
        OSError: the folder cannot be written (the temporary file is removed).
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class RunHistory:
    """The agent's own count of runs that ended without a clean stop, kept in one JSON file.

    :meth:`begin` at start marks the run "running" (and counts a crash if the previous run was
    still marked so); :meth:`end` at a clean stop marks it "stopped". The file is replaced
    atomically (:func:`write_atomically`), so the count survives power loss. Not for two agents
    sharing one data folder.

    Args:
        path: the file, normally ``<sagemaker_edge_local_data_root_path>/agent-runs.json``.

    Attributes:
        crashes: runs before this one that ended without a clean stop (0 until :meth:`begin`).
        service_restarts: systemd's ``NRestarts`` of the unit, when :meth:`begin` got it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.crashes = 0
        self.service_restarts: int | None = None
        self._data: dict[str, object] = {}

    def _read(self) -> dict[str, object]:
        try:
            data = jsondoc.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("run history %s is unreadable (%s); counting crashes from 0 again",
                        self.path, error)
            return {}
        if not isinstance(data, dict) or data.get("format") != RUNS_FORMAT:
            log.warning("run history %s has another format; counting crashes from 0 again",
                        self.path)
            return {}
        return data

    def begin(self, *, service_restarts: int | None = None) -> int:
        """Count this start; returns :attr:`crashes`. Logs a warning after an unclean stop.

        Raises:
            OSError: the data folder cannot be written.
        """
        previous = self._read()
        crashes = _count(previous.get("crashes"))
        if previous.get("running"):
            crashes += 1
            log.warning("the previous agent run (pid %s, started %s) did not stop cleanly; "
                        "crashes so far: %d", previous.get("pid"), previous.get("started"),
                        crashes)
        self.crashes, self.service_restarts = crashes, service_restarts
        self._data = {"format": RUNS_FORMAT, "starts": _count(previous.get("starts")) + 1,
                      "crashes": crashes, "running": True, "pid": os.getpid(),
                      "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write()
        return crashes

    def end(self) -> None:
        """Mark the run as stopped cleanly (after :meth:`begin`; a no-op otherwise). Never
        raises: a failure is logged, and the next start counts this run as a crash."""
        if not self._data.get("running"):
            return
        self._data["running"] = False
        try:
            self._write()
        except OSError as error:
            log.error("cannot mark the clean stop in %s (%s); the next start counts a crash",
                      self.path, error)

    def _write(self) -> None:
        write_atomically(self.path, json.dumps(self._data, indent=1, sort_keys=True) + "\n")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read_service_restarts(unit: str, *, timeout: float = 2.0) -> int | None:
    """systemd's ``NRestarts`` of ``unit`` (restarts it made since the unit was last started by
    hand), or None when ``systemctl`` is missing, fails or takes longer than ``timeout`` seconds.

    Runs ``systemctl show --property=NRestarts --value UNIT`` (an unprivileged D-Bus query).
    """
    try:
        done = subprocess.run(["systemctl", "show", "--property=NRestarts", "--value", unit],
                              capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        log.info("cannot read NRestarts of %s from systemd (%s); heartbeats carry the agent's "
                 "own crash count only", unit, error)
        return None
    value = done.stdout.strip()
    return int(value) if value.isdigit() else None


# -- the unit file ------------------------------------------------------------------------------
#: Characters that would need quoting or expansion in a unit's ``ExecStart=``.
_UNSAFE = re.compile(r"[\s\"'\\%$;]")
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_DIRECTORY = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class UnitOptions:
    """What the systemd unit varies in; the defaults are the committed
    ``integrations/systemd/edgefleet-agent.service``.

    Attributes:
        executable: absolute path of ``edgefleet-agent``.
        config: absolute path of the agent's JSON config.
        user: the dedicated user the agent runs as (never root).
        group: its group; applications that call the agent must be members (socket mode 0660).
        runtime_directory: folder under ``/run`` that systemd creates for the socket.
        socket_name: the socket's file name in it.
        state_directory: folder under ``/var/lib`` for the agent's state (its working folder).
        watchdog_seconds: ``WatchdogSec=``; 0 turns the watchdog off.
        restart_seconds: ``RestartSec=``, the pause before systemd starts the agent again.
    """

    executable: str = "/usr/local/bin/edgefleet-agent"
    config: str = "/etc/edgefleet/agent.json"
    user: str = "edgefleet"
    group: str = "edgefleet"
    runtime_directory: str = "edgefleet"
    socket_name: str = "agent.sock"
    state_directory: str = "edgefleet"
    watchdog_seconds: int = 30
    restart_seconds: int = 5

    @property
    def socket_path(self) -> str:
        """Where the agent serves: ``/run/<runtime_directory>/<socket_name>``."""
        return f"/run/{self.runtime_directory}/{self.socket_name}"

    @property
    def state_path(self) -> str:
        """The agent's working and state folder: ``/var/lib/<state_directory>``."""
        return f"/var/lib/{self.state_directory}"

    def check(self) -> None:
        """Raises InvalidArgument naming the first option with a value the unit cannot hold."""
        for option, path in (("executable", self.executable), ("config", self.config)):
            if not path.startswith("/") or _UNSAFE.search(path):
                raise InvalidArgument(f"{option} must be an absolute path without spaces, "
                                      f"quotes, '%', '$' or ';', got {path!r}")
        for option, name in (("user", self.user), ("group", self.group)):
            if not _NAME.fullmatch(name):
                raise InvalidArgument(f"{option} must be a system account name (lower-case "
                                      f"letters, digits, '_', '-'; up to 32), got {name!r}")
        if self.user == "root":
            raise InvalidArgument("user must be a dedicated account, not root: the agent needs "
                                  "no privileges (e.g. --user edgefleet)")
        for option, name in (("runtime_directory", self.runtime_directory),
                             ("socket_name", self.socket_name),
                             ("state_directory", self.state_directory)):
            if not _DIRECTORY.fullmatch(name) or name in (".", ".."):
                raise InvalidArgument(f"{option} must be one file name (letters, digits, '.', "
                                      f"'_', '-'), got {name!r}")
        if len(self.socket_path.encode()) > MAX_SOCKET_PATH:
            raise InvalidArgument(f"socket path {self.socket_path} is longer than "
                                  f"{MAX_SOCKET_PATH} bytes")
        if self.watchdog_seconds < 0 or self.restart_seconds < 0:
            raise InvalidArgument("watchdog_seconds and restart_seconds must be 0 or more")


def render_unit(options: UnitOptions = UnitOptions()) -> str:
    """The text of the agent's systemd unit for ``options`` (a pure function).

    Raises:
        InvalidArgument: an option the unit cannot hold (see :meth:`UnitOptions.check`).
    """
    options.check()
    watchdog = (f"WatchdogSec={options.watchdog_seconds}" if options.watchdog_seconds
                else "# WatchdogSec: off (install-service --watchdog-seconds 0)")
    return f"""\
# edgefleet-agent as a systemd service, written by `edgefleet-agent install-service`.
# Each line is explained in docs/service-and-container.md; change settings with
# `systemctl edit edgefleet-agent` (a drop-in) rather than in this file.
[Unit]
Description=edgefleet agent: ONNX models over gRPC on a Unix socket (SageMaker Edge compatible)
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={options.executable} --socket {options.socket_path} --config {options.config} --force
ExecReload=/bin/kill -HUP $MAINPID
Environment={UNIT_ENV}=%n
User={options.user}
Group={options.group}
RuntimeDirectory={options.runtime_directory}
RuntimeDirectoryMode=0750
StateDirectory={options.state_directory}
StateDirectoryMode=0700
WorkingDirectory={options.state_path}
UMask=0027
{watchdog}
Restart=always
RestartSec={options.restart_seconds}
TimeoutStartSec=120
TimeoutStopSec=60
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def install_unit(text: str, path: Path, *, force: bool = False) -> bool:
    """Write the unit ``text`` to ``path`` (mode 0644, atomically); False if it was already so.

    Raises:
        FailedPrecondition: another unit is at ``path`` and ``force`` is off, or the folder is
            missing or not writable (the message says what to do).
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
        if not force:
            raise FailedPrecondition(f"{path} exists with other content; pass --force to "
                                     f"replace it, or --dry-run to see the new unit")
    except FileNotFoundError:
        pass
    except (IsADirectoryError, UnicodeDecodeError):
        raise FailedPrecondition(f"{path} is not a unit file; choose another --output") from None
    except PermissionError:
        pass  # unreadable: writing will say so
    if not path.parent.is_dir():
        raise FailedPrecondition(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        write_atomically(path, text, mode=0o644)
    except OSError as error:
        raise FailedPrecondition(
            f"cannot write {path}: {error.strerror}; run as root (sudo), or write it elsewhere "
            f"with --output PATH, or print it with --dry-run") from None
    return True


def next_steps(options: UnitOptions, unit_path: Path, *, user_exists: bool,
               config_exists: bool) -> str:
    """The commands an operator runs after the unit was written, as text to print."""
    unit = unit_path.name
    lines = ["Next:"]
    if not user_exists:
        lines.append(f"  sudo useradd --system --user-group --no-create-home "
                     f"--home-dir {options.state_path} --shell /usr/sbin/nologin {options.user}")
    if not config_exists:
        lines.append(f"  sudo install -D -m 0640 -g {options.group} agent.json {options.config}"
                     f"   # the agent's config (docs/agent-config.md)")
    if unit_path.parent != DEFAULT_UNIT_PATH.parent:
        lines.append(f"  sudo cp {unit_path} {DEFAULT_UNIT_PATH.parent}/{unit}")
    lines += ["  sudo systemctl daemon-reload",
              f"  sudo systemctl enable --now {unit}",
              f"  systemctl status {unit}; journalctl -u {unit} -f",
              f"Applications dial unix://{options.socket_path}; add their user to group "
              f"{options.group}: sudo usermod -aG {options.group} APP_USER"]
    return "\n".join(lines) + "\n"
