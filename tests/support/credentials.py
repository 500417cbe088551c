"""A stand-in container credentials endpoint, as Greengrass's token exchange service (or ECS)
serves one to a process: boto3 reads ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and
``AWS_CONTAINER_AUTHORIZATION_TOKEN`` and GETs the URI with the token in ``Authorization``."""

from __future__ import annotations

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.s3server import ACCESS_KEY, SECRET_KEY

#: The authorization token the endpoint accepts.
TOKEN = "greengrass-tes-token-1234"


class CredentialsEndpoint:
    """A container credentials endpoint on 127.0.0.1: GET with :data:`TOKEN` in
    ``Authorization`` -> ``{AccessKeyId, SecretAccessKey, Token, Expiration}`` for the SeaweedFS
    fixture's keys; a wrong or missing token -> 401; while :attr:`available` is False -> 503
    (the service is down).

    Args:
        session_token: the ``Token`` it hands out. SeaweedFS refuses a request that carries a
            session token for one of its static identities (``InvalidAccessKeyId``), so the
            tests that upload get an empty one, which botocore then leaves out.
        available: whether it answers with credentials from the start.
    """

    def __init__(self, session_token: str = "", *, available: bool = True) -> None:
        self.calls: list[str | None] = []  # the Authorization header of each request
        self.available = available
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.calls.append(self.headers.get("Authorization"))
                if not endpoint.available:
                    self._reply(503, {"code": "ServiceUnavailable",
                                      "message": "the token exchange service is starting"})
                    return
                if self.headers.get("Authorization") != TOKEN:
                    self._reply(401, {"code": "UnauthorizedException",
                                      "message": "Request is not authorized"})
                    return
                expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
                self._reply(200, {"AccessKeyId": ACCESS_KEY, "SecretAccessKey": SECRET_KEY,
                                  "Token": session_token,
                                  "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")})

            def _reply(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (f"http://127.0.0.1:{self._server.server_address[1]}"
                    "/2016-11-01/credentialprovider/")  # the TES's path
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def environment(self) -> dict[str, str]:
        """The variables that point boto3's container credential provider here."""
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": TOKEN}

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
