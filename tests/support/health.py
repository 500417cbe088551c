"""A bare ``grpc.health.v1`` server on a Unix socket: what a health check sees of an agent."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from support.agent_process import short_socket_dir


@contextmanager
def health_server() -> Iterator[tuple[Path, health.HealthServicer]]:
    """(socket path, servicer) of a health server answering SERVING; removed afterwards."""
    folder = short_socket_dir()
    path = folder / "agent.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    assert server.add_insecure_port(f"unix:{path}")
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield path, servicer
    finally:
        server.stop(0).wait()
        shutil.rmtree(folder, ignore_errors=True)
