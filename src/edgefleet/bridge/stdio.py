"""The line-delimited transport: one JSON-RPC message (request or batch) per input line, one
response line per message that has an answer (none for notifications), flushed at once.

stdout carries nothing but responses (compact JSON, UTF-8, ``\\n``-terminated); logs go to
stderr. Empty lines are skipped. A line longer than ``max_line_bytes`` is answered with an
Invalid Request error and skipped. End of input, SIGTERM or SIGINT stop it cleanly: a message
being answered is finished and its response written first.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

from edgefleet.bridge.protocol import InvalidRequest, dump, response_error

log = logging.getLogger(__name__)


class _Stop(Exception):
    pass


def serve_stdio(handle: Callable[[bytes], Any], stdin: IO[bytes], stdout: IO[bytes], *,
                max_line_bytes: int) -> None:
    """Answer lines of ``stdin`` on ``stdout`` with ``handle`` until end of input or a stop
    signal (installs SIGTERM and SIGINT handlers; call it from the main thread)."""
    state = {"waiting": True, "stop": False}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        state["stop"] = True
        if state["waiting"]:
            raise _Stop

    previous = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not state["stop"]:
            try:
                line = stdin.readline(max_line_bytes + 1)
            except _Stop:
                break
            state["waiting"] = False
            if not line:
                break
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                _skip_rest(stdin, max_line_bytes)
                answer: Any = response_error(InvalidRequest(
                    f"the line is longer than {max_line_bytes} bytes (max_request_bytes)"), None)
            elif line.strip():
                answer = handle(line)
            else:
                answer = None
            if answer is not None:
                stdout.write(dump(answer) + b"\n")
                stdout.flush()
            state["waiting"] = True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _skip_rest(stdin: IO[bytes], chunk: int) -> None:
    while True:
        piece = stdin.readline(chunk)
        if not piece or piece.endswith(b"\n"):
            return
