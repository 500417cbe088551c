"""``edgefleet-agent``'s command line, in process: the sub-commands (install-service, health),
the Greengrass option's errors, and the original form's required socket."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.health import health_server

from edgefleet.agent import cli
from edgefleet.agent.systemd import UnitOptions, render_unit


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # main() configures the root logger for the agent (to this test's captured stderr).
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(argv: list[str]) -> int:
    try:
        cli.main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


# -- the agent's own form --------------------------------------------------------------------
def test_the_socket_is_still_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == 2
    assert "the following arguments are required: -a/--socket" in capsys.readouterr().err
    assert run(["-c", "agent.json"]) == 2


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "edgefleet-agent -a SOCKET [-c CONFIG.json] [-f]" in out
    assert "install-service" in out and "health -a SOCKET" in out
    assert "--from-greengrass-config PATH" in out


def test_version_is_the_original_agents_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    # 1.<YYYYMMDD>.<commit>, alone on the line, as the SageMaker agent printed it.
    assert re.fullmatch(r"1\.\d{8}\.\w+(-dirty)?\n|1\.0\.dev0\n", capsys.readouterr().out)


# -- --from-greengrass-config ----------------------------------------------------------------
# The agent's logging goes to stderr (basicConfig with force=True replaces caplog's handler).
def test_greengrass_config_file_must_exist(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--from-greengrass-config", str(tmp_path / "missing.json")]) == 2
    assert (f"cannot read the Greengrass configuration {tmp_path / 'missing.json'}: no such "
            f"file") in capsys.readouterr().err


def test_greengrass_gives_config_and_socket(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_IOT_THING_NAME", "turbine-1")
    path = tmp_path / "greengrass.json"
    path.write_text(json.dumps({"DeviceFleetName": "windfarm", "BucketName": "captures",
                                "UnixSocketName": str(tmp_path / "gg.sock")}))

    config, socket_path = cli._greengrass_config(path)

    assert socket_path == tmp_path / "gg.sock"
    assert config.sagemaker_edge_core_device_fleet_name == "windfarm"
    assert config.sagemaker_edge_core_device_name == "turbine-1"


def test_a_bad_greengrass_parameter_is_named(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "greengrass.json"
    path.write_text(json.dumps({"CaptureDataBatchSize": "lots"}))
    assert run(["--from-greengrass-config", str(path)]) == 2
    assert "CaptureDataBatchSize" in capsys.readouterr().err


def test_greengrass_excludes_socket_and_config(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--from-greengrass-config", str(tmp_path), "-a", "/tmp/x.sock"]) == 2
    assert "leave out -a/--socket and -c/--config" in capsys.readouterr().err


# -- install-service -------------------------------------------------------------------------
def test_install_service_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["install-service", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: edgefleet-agent install-service" in out
    for option in ("--dry-run", "--output", "--enable", "--user", "--watchdog-seconds"):
        assert option in out


def test_dry_run_prints_the_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["install-service", "--dry-run", "--exec", "/usr/bin/edgefleet-agent",
                "--output", str(tmp_path / "x.service")]) == 0
    assert capsys.readouterr().out == render_unit(
        UnitOptions(executable="/usr/bin/edgefleet-agent"))
    assert not (tmp_path / "x.service").exists()


def test_the_default_executable_is_this_installation(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["install-service", "--dry-run"]) == 0
    executable = shutil.which("edgefleet-agent", path=str(Path(sys.executable).parent))
    assert executable is not None
    assert f"ExecStart={Path(executable).absolute()} --socket" in capsys.readouterr().out


def test_install_writes_the_unit_and_says_what_next(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edgefleet-agent.service"
    argv = ["install-service", "--output", str(path), "--exec", "/usr/local/bin/edgefleet-agent",
            "--user", "no-such-edgefleet-user", "--group", "apps"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {path}\n")
    assert "useradd --system --user-group" in out and "no-such-edgefleet-user" in out
    assert "sudo systemctl daemon-reload" in out and "enable --now edgefleet-agent.service" in out
    assert "User=no-such-edgefleet-user\nGroup=apps\n" in path.read_text()
    assert run(argv) == 0
    assert capsys.readouterr().out.startswith(f"unchanged: {path}\n")
    assert run([*argv, "--watchdog-seconds", "10"]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert run([*argv, "--watchdog-seconds", "10", "--force"]) == 0
    assert "WatchdogSec=10\n" in path.read_text()


def test_install_to_an_unwritable_path_fails_clearly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:  # root writes anywhere but in sysfs
        folder = Path("/sys")
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
    assert run(["install-service", "--output", str(folder / "edgefleet-agent.service")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {folder / 'edgefleet-agent.service'}" in err
    assert "sudo" in err and "--output PATH" in err and "--dry-run" in err


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["install-service", "--dry-run", "--user", "root"]) == 2
    assert "not root" in capsys.readouterr().err
    assert run(["install-service", "--dry-run", "--exec", "bin/edgefleet-agent"]) == 2
    assert "executable must be an absolute path" in capsys.readouterr().err


def test_enable_runs_systemctl_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = tmp_path / "edgefleet-agent.service"
    assert run(["install-service", "--output", str(path)]) == 0
    assert not calls.exists()
    assert run(["install-service", "--output", str(path), "--enable"]) == 0
    assert calls.read_text() == "daemon-reload\nenable --now edgefleet-agent.service\n"
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 1\n")
    capsys.readouterr()
    assert run(["install-service", "--output", str(path), "--enable"]) == 1
    assert "systemctl daemon-reload failed" in capsys.readouterr().err


# -- health ----------------------------------------------------------------------------------
@pytest.fixture()
def serving_socket() -> Iterator[Path]:
    with health_server() as (path, _):
        yield path


def test_health_of_a_serving_socket(serving_socket: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["health", "--socket", str(serving_socket)]) == 0
    assert capsys.readouterr().out == f"SERVING: unix://{serving_socket}\n"


def test_health_of_a_missing_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["health", "-a", str(tmp_path / "agent.sock")]) == 1
    assert capsys.readouterr().err.startswith(
        f"edgefleet-agent health: no socket at {tmp_path / 'agent.sock'}")


def test_health_needs_a_socket(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["health"]) == 2
    assert "-a/--socket" in capsys.readouterr().err
