"""Schemathesis against a real ``edgefleet server``: every management route, generated requests.

The server is a real process (SQLite, local object store); ``st run`` drives it over HTTP with
the admin token, generating valid and invalid requests from the server's own OpenAPI schema and
running stateful sequences (create a fleet, then read it, ...). It fails on any 5xx, any status
code or body the schema does not document, and any response that breaks its schema.

Left out: ``positive_data_acceptance``, which expects every schema-valid request to succeed;
rules a JSON schema cannot state (a stage naming a model handle the plan does not have, a
device of a fleet that does not exist) are answered 400/404/409, as documented.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.fleet_server import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

SHORT, LONG = 25, 250  # examples per operation and phase


def test_the_management_api_keeps_to_its_schema(tmp_path: Path, long_run: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The fuzzer sends hundreds of requests without or with wrong tokens on purpose (to check
    # that every route needs one): lift the per-address lockout (test_auth_limits.py tests it).
    monkeypatch.setenv("EDGEFLEET_SERVER_AUTH_FAILURES_PER_MINUTE", "1000000")
    server = start_server(tmp_path / "server", free_port(), tmp_path / "server.log")
    try:
        token = (server.data_dir / "admin-token").read_text().strip()
        schema = httpx.get(f"{server.url}/openapi.json").json()
        operations = sum(len(methods) for methods in schema["paths"].values())
        st = Path(sys.executable).with_name("st")
        done = subprocess.run(
            [str(st), "run", f"{server.url}/openapi.json",
             "--header", f"Authorization: Bearer {token}",
             "--max-examples", str(LONG if long_run else SHORT), "--seed", "20261203",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--no-color"],
            capture_output=True, text=True, timeout=1800, cwd=tmp_path)
        summary = done.stdout[done.stdout.find("SUMMARY"):]
        print(summary)
        assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
        # Every operation of the schema was exercised (none skipped for lack of data).
        assert " passed" in summary and f"Tested: {operations}" in summary, summary
        assert "Traceback" not in server.log.read_text()
    finally:
        stop_server(server)
