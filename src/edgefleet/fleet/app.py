"""The composition root: settings -> engine, server key, object store -> FastAPI routes.

``create_app`` builds everything long-lived; nothing else does. It does not migrate: run
:func:`edgefleet.fleet.bootstrap.prepare` first (``edgefleet server`` does).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import edgefleet
from edgefleet.errors import EdgefleetError
from edgefleet.fleet import admin_api, edge_api, schemas
from edgefleet.fleet.capture_index import CaptureIndex
from edgefleet.fleet.capture_location import open_capture_location
from edgefleet.fleet.context import Context
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.dashboard import router as dashboard_router
from edgefleet.fleet.db.engine import failure_message, make_engine, make_sessionmaker
from edgefleet.fleet.drift_series import PackageBaselines
from edgefleet.fleet.edge import CredentialCache
from edgefleet.fleet.heartbeats import HeartbeatWriter
from edgefleet.fleet.history import HistoryPolicy
from edgefleet.fleet.limits import AuthFailureLimit, BodyLimit
from edgefleet.fleet.notify import make_notifier
from edgefleet.fleet.sagemaker_api import routes as sagemaker_api
from edgefleet.fleet.settings import ServerSettings
from edgefleet.fleet.storage import open_object_store

log = logging.getLogger(__name__)



def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own 422 body is a list of dicts; answer in the shape of every other error.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"error": "InvalidArgument",
                         "message": f"invalid request: {schemas.describe_errors(exc.errors())}"},
                        status_code=422)


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # A statement the database refused (a full disk, a lost connection) ends the request's
    # transaction, rolled back: 503 with the reason, in the shape of every other error.
    assert isinstance(exc, SQLAlchemyError)
    message = failure_message(exc)
    if request.method not in ("GET", "HEAD"):
        message = f"nothing was stored: {message}"
    log.error("%s %s: %s", request.method, request.url.path, message)
    return JSONResponse({"error": "Unavailable", "message": message}, status_code=503)


def _management_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EdgefleetError)
    return JSONResponse({"error": type(exc).__name__, "message": exc.message},
                        status_code=schemas.HTTP_STATUS.get(exc.code, 500))


#: Error class names for the HTTP errors Starlette and FastAPI raise themselves (a body that is
#: not JSON, an unknown route, a method the route lacks).
_HTTP_ERRORS = {400: "InvalidArgument", 401: "Unauthenticated", 404: "NotFound",
                405: "MethodNotAllowed", 413: "PayloadTooLarge"}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    # Answer in the shape of every other error ({"error", "message"}), not FastAPI's {"detail"}.
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 405:
        # FastAPI makes one route per method, and Starlette's Allow names the methods of the
        # first route whose path matched: list those of every route on this path (RFC 9110).
        allowed = [method for method in _METHODS if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes)]
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
    return JSONResponse({"error": _HTTP_ERRORS.get(exc.status_code, "HTTPError"),
                         "message": message}, status_code=exc.status_code, headers=headers)


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the control plane's ASGI app for ``settings`` (database already migrated)."""
    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_sessionmaker(engine)
    store = open_object_store(settings.object_store, data_dir)
    baselines = PackageBaselines(sessions, store)
    captures = None if settings.capture_location is None else CaptureIndex(
        sessions, open_capture_location(settings.capture_location), baselines,
        scan_seconds=settings.capture_scan_seconds)
    context = Context(
        settings=settings, sessions=sessions,
        key=ServerKey.load_or_create(settings.resolved_server_key_file()),
        store=store, captures=captures, baselines=baselines,
        credentials=CredentialCache(settings.credential_cache_seconds),
        auth_failures=AuthFailureLimit(settings.auth_failures_per_minute),
        heartbeats=HeartbeatWriter(sessions, interval_seconds=settings.heartbeat_batch_seconds,
                                   history=HistoryPolicy.from_settings(settings)),
        notifier=make_notifier(settings.mqtt_url, settings.mqtt_topic_prefix))
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if captures is not None:
            captures.start()
        yield
        if captures is not None:
            captures.stop()
        context.heartbeats.close()
        engine.dispose()

    app = FastAPI(
        lifespan=lifespan, title="edgefleet control plane", version=edgefleet.__version__,
        description="Management API of the edgefleet fleet control plane (admin token as "
                    "`Authorization: Bearer <token>`), and the `sagemaker-edge` device API "
                    "(SigV4-signed by each device's own credentials).")
    app.state.context = context
    app.add_exception_handler(EdgefleetError, _management_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes,
                       max_upload_bytes=settings.max_model_upload_bytes)
    app.include_router(admin_api.public)
    app.include_router(admin_api.router)
    app.include_router(edge_api.router)
    app.include_router(dashboard_router)
    app.include_router(sagemaker_api.router)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory of ``edgefleet server``: settings from ``EDGEFLEET_SERVER_*`` environment
    variables, and garbage-collector settings for a server process."""
    app = create_app(ServerSettings())
    # Requests allocate many short-lived objects: with the default threshold (700) young
    # collections cost ~14% of the CPU of a heartbeat (benchmarks/fleet). Long-lived objects
    # made so far (modules, the app) are moved out of the collector's way for good.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return app
