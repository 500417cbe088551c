"""The systemd module: the notify protocol against real datagram sockets (a path and an abstract
name), the watchdog's liveness rule, the health probe against a real gRPC server, the run
history (crash count) and the heartbeat metrics it feeds, NRestarts, and the unit file."""

from __future__ import annotations

import configparser
import itertools
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health, health_pb2
from support.agent_process import short_socket_dir
from support.health import health_server as serving_health
from support.polling import wait_for

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.device.metrics import HeartbeatMetrics
from edgefleet.agent.device.state import StateStore
from edgefleet.agent.serving.service import AgentService
from edgefleet.agent.systemd import (
    DEFAULT_UNIT_PATH,
    RUNS_FILE,
    Notifier,
    RunHistory,
    UnitOptions,
    check_health,
    install_unit,
    next_steps,
    notify_address,
    read_service_restarts,
    render_unit,
    watchdog_usec,
)
from edgefleet.errors import FailedPrecondition, InvalidArgument

REPO = Path(__file__).resolve().parents[3]
COMMITTED_UNIT = REPO / "integrations" / "systemd" / "edgefleet-agent.service"


class Listener:
    """A bound ``AF_UNIX`` datagram socket that collects what a notifier sends."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5.0)

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def drain(self) -> list[str]:
        """Every datagram waiting now."""
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                got.append(self.receive())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(5.0)
        return got


@pytest.fixture()
def listener() -> Iterator[tuple[Listener, str]]:
    folder = short_socket_dir()
    path = str(folder / "notify")
    got = Listener(path)
    yield got, path
    got.sock.close()
    shutil.rmtree(folder)


# -- the protocol -----------------------------------------------------------------------------
def test_without_notify_socket_nothing_is_sent_or_started() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.ping_interval is None
    assert notifier.ready("x") is False
    notifier.supervise(lambda: None, status="x")
    assert notifier._thread is None
    notifier.stopping()
    notifier.close()


def test_messages_reach_a_path_socket(listener: tuple[Listener, str]) -> None:
    got, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("serving on unix:///run/x.sock")
    assert got.receive() == "READY=1\nSTATUS=serving on unix:///run/x.sock"
    assert notifier.status("loading\nmodels  now")
    assert got.receive() == "STATUS=loading models now"  # one line: STATUS cannot span two
    notifier.stopping("bye")
    assert got.receive() == "STOPPING=1\nSTATUS=bye"
    notifier.close()


def test_messages_reach_an_abstract_socket() -> None:
    name = f"edgefleet-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    got = Listener("\0" + name)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        assert notifier.ready()
        assert got.receive() == "READY=1"
        notifier.close()
    finally:
        got.sock.close()


def test_an_assignment_must_be_one_line() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    with pytest.raises(ValueError, match="one KEY=VALUE line"):
        notifier.send("READY=1\nWATCHDOG=1")
    with pytest.raises(ValueError):
        notifier.send("READY")


def test_a_missing_notify_socket_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    with caplog.at_level(logging.WARNING, "edgefleet.agent.systemd"):
        assert notifier.ready() is False
        assert notifier.status("x") is False
    notifier.close()
    assert [r.getMessage() for r in caplog.records if "cannot notify" in r.getMessage()] == [
        "cannot notify systemd at /nonexistent/notify: [Errno 2] No such file or directory"]


@pytest.mark.parametrize(("value", "address"), [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@/org/systemd/notify", "\0/org/systemd/notify"),
    ("", None), ("@", None), ("relative/notify", None), ("vsock:2:1234", None)])
def test_notify_addresses(value: str, address: str | None) -> None:
    assert notify_address(value) == address


def test_watchdog_honours_watchdog_pid() -> None:
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}, 42) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, 42) is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_usec({}, 42) is None
    notifier = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"})
    assert notifier.ping_interval == 15.0  # half of WatchdogSec, as sd_watchdog_enabled(3) asks
    assert notifier.check_timeout == 5.0
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000",
                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.ping_interval is None


class Liveness:
    """A switchable health check that counts its calls."""

    def __init__(self) -> None:
        self.problem: str | None = "still loading"
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.problem


def test_ready_and_keepalives_follow_the_health_check(listener: tuple[Listener, str]) -> None:
    got, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})  # ping every 0.1 s
    alive = Liveness()
    notifier.supervise(alive, status="serving")
    wait_for(lambda: alive.calls >= 3, 5, "three failing checks")
    assert got.drain() == ["STATUS=not answering: still loading"]  # once, not per check
    alive.problem = None
    assert got.receive() == "READY=1\nSTATUS=serving"
    stamps = []
    for _ in range(4):
        assert got.receive() == "WATCHDOG=1"
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.05 < gap < 0.5 for gap in gaps), gaps
    alive.problem = "no socket"
    assert got.receive() == "STATUS=not answering: no socket"
    time.sleep(0.35)  # several intervals: the watchdog is not fed while the check fails
    assert "WATCHDOG=1" not in got.drain()
    alive.problem = None
    assert got.receive() == "WATCHDOG=1\nSTATUS=serving"
    notifier.stopping()
    time.sleep(0.25)
    assert got.drain()[-1] == "STOPPING=1\nSTATUS=stopping: finishing calls in flight"
    time.sleep(0.25)
    assert got.drain() == []  # nothing after STOPPING=1
    thread = notifier._thread
    assert thread is not None
    wait_for(lambda: not thread.is_alive(), 5, "the watchdog thread to end")
    notifier.close()


def test_without_a_watchdog_the_thread_ends_after_ready(listener: tuple[Listener, str]) -> None:
    got, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.supervise(lambda: None, status="serving")
    assert got.receive() == "READY=1\nSTATUS=serving"
    assert notifier._thread is not None
    notifier._thread.join(5)
    assert not notifier._thread.is_alive()
    notifier.close()


# -- health -----------------------------------------------------------------------------------
@pytest.fixture(name="health_server")
def _health_server() -> Iterator[tuple[Path, health.HealthServicer]]:
    with serving_health() as served:
        yield served


def test_health_of_a_serving_agent(health_server: tuple[Path, health.HealthServicer]) -> None:
    path, servicer = health_server
    assert check_health(path) is None
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert check_health(path) == f"the agent at {path} reports NOT_SERVING (starting or stopping)"
    assert check_health(path, service="AWS.SageMaker.Edge.Agent") == (
        f"the agent at {path} knows no health service 'AWS.SageMaker.Edge.Agent'")


def test_health_says_what_is_wrong_with_the_socket(tmp_path: Path) -> None:
    missing = tmp_path / "agent.sock"
    assert "no socket at" in (check_health(missing) or "")
    plain = tmp_path / "file"
    plain.write_text("")
    assert check_health(plain) == f"{plain} is not a socket: pass the path the agent serves on"
    folder = short_socket_dir()
    stale = folder / "stale.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(stale))  # the file stays; nobody listens
        started = time.monotonic()
        problem = check_health(stale, timeout=5)
        assert problem is not None and problem.startswith(
            f"the agent at {stale} did not answer (UNAVAILABLE"), problem
        assert time.monotonic() - started < 4  # refused at once, not at the deadline
    finally:
        shutil.rmtree(folder)


# -- the crash count --------------------------------------------------------------------------
def test_run_history_counts_runs_without_a_clean_stop(tmp_path: Path) -> None:
    path = tmp_path / RUNS_FILE
    assert RunHistory(path).begin() == 0
    # ... that run was killed: no end()
    second = RunHistory(path)
    assert second.begin() == 1 and second.crashes == 1
    second.end()  # a clean stop
    third = RunHistory(path)
    assert third.begin(service_restarts=4) == 1
    assert third.service_restarts == 4
    saved = json.loads(path.read_text())
    assert saved["starts"] == 3 and saved["crashes"] == 1 and saved["running"] is True
    assert saved["pid"] == os.getpid()
    third.end()
    assert json.loads(path.read_text())["running"] is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUNS_FILE]  # no temporary left


def test_an_unreadable_run_history_starts_over(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / RUNS_FILE
    path.write_text('{"format": 1, "crashes": 5, "running": tr')  # torn by a foreign write
    assert RunHistory(path).begin() == 0
    assert "unreadable" in caplog.text
    path.write_text('{"format": 99, "crashes": 5, "running": true}')
    assert RunHistory(path).begin() == 0
    path.write_text('{"format": 1, "crashes": "many", "running": true}')
    assert RunHistory(path).begin() == 1


def test_end_before_begin_writes_nothing(tmp_path: Path) -> None:
    RunHistory(tmp_path / RUNS_FILE).end()
    assert not (tmp_path / RUNS_FILE).exists()


def test_heartbeat_metrics_carry_the_crash_count(tmp_path: Path) -> None:
    config = AgentConfig.from_mapping({"sagemaker_edge_local_data_root_path": str(tmp_path)})
    service = AgentService(config)
    try:
        path = tmp_path / RUNS_FILE
        RunHistory(path).begin()  # killed
        runs = RunHistory(path)
        runs.begin()
        state = StateStore(tmp_path / "state.json")
        metrics = HeartbeatMetrics(service.registry, state, runs=runs).collect().agent_metrics
        by_name = {m["MetricName"]: m for m in metrics}
        assert by_name["crash-count"]["Value"] == 1.0
        assert by_name["crash-count"]["Dimension"] == "agent"
        assert "service-restarts" not in by_name  # not under systemd
        runs.service_restarts = 3
        metrics = HeartbeatMetrics(service.registry, state, runs=runs).collect().agent_metrics
        assert {m["MetricName"]: m["Value"] for m in metrics}["service-restarts"] == 3.0
        plain = HeartbeatMetrics(service.registry, state).collect().agent_metrics
        assert "crash-count" not in {m["MetricName"] for m in plain}
    finally:
        service.close()


def fake_systemctl(folder: Path, script: str) -> Path:
    folder.mkdir(exist_ok=True)
    program = folder / "systemctl"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    return folder


def test_nrestarts_comes_from_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    bin_dir = fake_systemctl(tmp_path / "bin", f'echo "$@" >> {calls}; echo 7')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert read_service_restarts("edgefleet-agent.service") == 7
    assert calls.read_text() == "show --property=NRestarts --value edgefleet-agent.service\n"
    fake_systemctl(tmp_path / "bin", "echo 'Failed to connect to bus' >&2; exit 1")
    assert read_service_restarts("edgefleet-agent.service") is None
    fake_systemctl(tmp_path / "bin", "echo '[not set]'")
    assert read_service_restarts("edgefleet-agent.service") is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert read_service_restarts("edgefleet-agent.service") is None


# -- the unit file ----------------------------------------------------------------------------
def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",),
                                       empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # unit keys keep case
    parser.read_string(text)
    return parser


def test_the_committed_unit_is_the_rendered_default() -> None:
    assert COMMITTED_UNIT.read_text() == render_unit(UnitOptions()), (
        "regenerate it: python -c 'from edgefleet.agent.systemd import render_unit; "
        "print(render_unit(), end=\"\")' > integrations/systemd/edgefleet-agent.service")


def test_the_unit_has_the_required_options() -> None:
    unit = parse_unit(render_unit())
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30" and service["Restart"] == "always"
    assert service["User"] == "edgefleet" and service["Group"] == "edgefleet"
    assert service["RuntimeDirectory"] == "edgefleet"
    assert service["RuntimeDirectoryMode"] == "0750"  # group members reach the 0660 socket
    assert service["StateDirectory"] == "edgefleet"
    assert service["WorkingDirectory"] == "/var/lib/edgefleet"
    assert service["ExecStart"] == ("/usr/local/bin/edgefleet-agent --socket "
                                    "/run/edgefleet/agent.sock --config /etc/edgefleet/agent.json "
                                    "--force")
    # `systemctl reload` sends SIGHUP: the agent takes new credentials from its config file.
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Environment"] == "EDGEFLEET_SYSTEMD_UNIT=%n"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert "PrivateIPC" not in service  # clients' System V shared memory must stay visible
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_options_change_the_unit() -> None:
    options = UnitOptions(executable="/opt/edgefleet/.venv/bin/edgefleet-agent",
                          config="/etc/turbine/agent.json", user="turbine", group="apps",
                          runtime_directory="turbine", socket_name="sm.sock",
                          watchdog_seconds=0, restart_seconds=1)
    service = parse_unit(render_unit(options))["Service"]
    assert service["ExecStart"].startswith("/opt/edgefleet/.venv/bin/edgefleet-agent --socket "
                                           "/run/turbine/sm.sock --config /etc/turbine/agent.json")
    assert service["User"] == "turbine" and service["Group"] == "apps"
    assert "WatchdogSec" not in service and service["RestartSec"] == "1"


@pytest.mark.parametrize(("change", "message"), [
    ({"user": "root"}, "not root"),
    ({"user": "Bad User"}, "user must be a system account name"),
    ({"executable": "edgefleet-agent"}, "executable must be an absolute path"),
    ({"config": "/etc/my configs/agent.json"}, "config must be an absolute path"),
    ({"config": "/etc/%h/agent.json"}, "config must be an absolute path"),
    ({"runtime_directory": "a/b"}, "runtime_directory must be one file name"),
    ({"socket_name": ".."}, "socket_name must be one file name"),
    ({"runtime_directory": "r" * 64, "socket_name": "s" * 60}, "longer than 107 bytes"),
    ({"watchdog_seconds": -1}, "0 or more"),
])
def test_bad_unit_options_are_named(change: dict[str, object], message: str) -> None:
    options = UnitOptions(**change)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=message):
        render_unit(options)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    executable = shutil.which("edgefleet-agent", path=str(Path(sys.executable).parent))
    assert executable is not None
    unit = tmp_path / "edgefleet-agent.service"
    unit.write_text(render_unit(UnitOptions(executable=executable)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # unknown keys only warn


def unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere but in sysfs
        return Path("/sys")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    return folder


def test_install_writes_and_refuses_to_clobber(tmp_path: Path) -> None:
    path = tmp_path / "edgefleet-agent.service"
    text = render_unit()
    assert install_unit(text, path) is True
    assert path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert install_unit(text, path) is False  # unchanged
    other = render_unit(UnitOptions(watchdog_seconds=10))
    with pytest.raises(FailedPrecondition, match="exists with other content; pass --force"):
        install_unit(other, path)
    assert install_unit(other, path, force=True) is True
    assert path.read_text() == other
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_install_to_a_folder_it_cannot_write_says_what_to_do(tmp_path: Path) -> None:
    path = unwritable_folder(tmp_path) / "edgefleet-agent.service"
    with pytest.raises(FailedPrecondition) as raised:
        install_unit(render_unit(), path)
    assert raised.value.message.startswith(f"cannot write {path}: ")
    assert "--output PATH" in raised.value.message and "--dry-run" in raised.value.message
    with pytest.raises(FailedPrecondition, match=r"folder .* does not exist"):
        install_unit(render_unit(), tmp_path / "missing" / "x.service")


def test_next_steps_name_the_commands() -> None:
    options = UnitOptions()
    text = next_steps(options, DEFAULT_UNIT_PATH, user_exists=False, config_exists=False)
    assert "useradd --system --user-group" in text and " edgefleet\n" in text
    assert "sudo systemctl daemon-reload" in text
    assert "sudo systemctl enable --now edgefleet-agent.service" in text
    assert "unix:///run/edgefleet/agent.sock" in text and "usermod -aG edgefleet" in text
    quiet = next_steps(options, Path("/tmp/x/edgefleet-agent.service"), user_exists=True,
                       config_exists=True)
    assert "useradd" not in quiet and "install -D" not in quiet
    assert "sudo cp /tmp/x/edgefleet-agent.service /etc/systemd/system/" in quiet


def test_supervising_thread_is_a_daemon_thread(listener: tuple[Listener, str]) -> None:
    # A hung health check must never keep the process from exiting.
    _got, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    release = threading.Event()
    notifier.supervise(lambda: None if release.wait(5) else "x", status="s")
    assert notifier._thread is not None and notifier._thread.daemon
    release.set()
    notifier.close()


def test_every_unit_line_is_explained_in_the_docs() -> None:
    docs = (REPO / "docs" / "service-and-container.md").read_text()
    keys = [line.split("=", 1)[0] for line in render_unit().splitlines()
            if "=" in line and not line.startswith("#")]
    missing = [key for key in keys if f"`{key}=" not in docs]
    assert missing == [], f"explain these unit keys in docs/service-and-container.md: {missing}"
