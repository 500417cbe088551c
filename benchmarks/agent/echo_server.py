"""The transport floor: a bare gRPC unary server on a Unix socket that echoes a payload.

Its handler holds each call as long as the model computes (``--hold-us``), then answers with
``--reply-bytes`` bytes, so that it costs what the agent costs minus the agent's own work. It
uses the same server settings as the agent (thread pool of ``--workers``, message limits).

    python benchmarks/agent/echo_server.py --socket /tmp/echo.sock --hold-us 40 --reply-bytes 16
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from concurrent import futures

import grpc

METHOD = "/bench.Echo/Call"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--hold-us", type=float, default=0.0,
                        help="microseconds each call is held (the model's compute time)")
    parser.add_argument("--reply-bytes", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, nargs="+", default=None,
                        help="run on these CPUs only, as the agent's edgefleet_cpu_affinity does")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, set(args.cpus))  # before gRPC starts its threads: they inherit
    reply = b"\0" * args.reply_bytes
    hold = args.hold_us / 1e6

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        if hold:
            time.sleep(hold)
        return reply

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Call": grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=None, response_serializer=None)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), options=[
        ("grpc.max_receive_message_length", 1 << 30),
        ("grpc.max_send_message_length", 1 << 30)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{args.socket}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
