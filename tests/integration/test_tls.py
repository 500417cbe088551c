"""The control plane over TLS: ``edgefleet server --tls-cert --tls-key``, and agents that verify
its certificate against ``sagemaker_edge_provider_aws_ca_cert_file`` (issue 14, "Security")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.agent_process import start_agent
from support.fleet_server import FLEET, free_port, register, start_server, stop_server
from support.polling import wait_for
from support.tls import make_server_certificate

pytestmark = pytest.mark.slow


def test_agents_heartbeat_over_tls_and_refuse_a_server_they_cannot_verify(
        tmp_path: Path) -> None:
    tls = make_server_certificate(tmp_path / "tls")
    other = make_server_certificate(tmp_path / "other-ca", ca_name="someone else's CA")
    server = start_server(tmp_path / "server", free_port(), tmp_path / "server.log", tls=tls)
    try:
        assert server.url.startswith("https://")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/healthz")  # the system's CAs do not know this one
        server.admin.create_fleet(FLEET, "s3://captures/wind")
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "edgefleet-root.pem").write_bytes(server.admin.root_certificate())

        trusting = start_agent(register(server, "turbine-tls", tmp_path / "a", certs,
                                        sagemaker_edge_provider_aws_ca_cert_file=str(tls.ca)),
                               tmp_path / "a")
        doubting = start_agent(register(server, "turbine-mitm", tmp_path / "b", certs,
                                        sagemaker_edge_provider_aws_ca_cert_file=str(other.ca)),
                               tmp_path / "b")
        try:
            wait_for(lambda: server.admin.describe_device("turbine-tls")["latest_heartbeat"],
                     30, "a heartbeat over TLS")
            wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in doubting.log()
                     or "certificate verify failed" in doubting.log(), 30,
                     "the agent with the wrong CA to refuse the server")
            assert server.admin.describe_device("turbine-mitm")["latest_heartbeat"] is None
        finally:
            assert trusting.stop() == 0, trusting.log()[-3000:]
            assert doubting.stop() == 0, doubting.log()[-3000:]
    finally:
        stop_server(server)


@pytest.mark.parametrize("options, message", [
    (["--tls-cert", "CERT"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "CERT", "--tls-key", "CERT"], "cannot use --tls-cert"),
])
def test_a_bad_tls_pair_is_refused_at_start(tmp_path: Path, options: list[str],
                                            message: str) -> None:
    tls = make_server_certificate(tmp_path / "tls")
    args = [str(tls.cert) if option == "CERT" else option for option in options]
    done = subprocess.run([sys.executable, "-m", "edgefleet.fleet", "server", "--data-dir",
                           str(tmp_path / "server"), "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
