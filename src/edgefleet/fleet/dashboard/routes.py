"""The dashboard's routes: the overview at ``/``, everything else under ``/ui/``.

Handlers are thin: they read the session, call the fleet services (the same functions the REST
API calls: :mod:`~edgefleet.fleet.reports`, :mod:`~edgefleet.fleet.fleets`,
:mod:`~edgefleet.fleet.rollout`, :mod:`~edgefleet.fleet.packaging`,
:mod:`~edgefleet.fleet.captures`, :mod:`~edgefleet.fleet.drift_series`) or the dashboard's own
queries (:mod:`.views`), and render a template. A page asked with ``?fragment=1`` answers only
its live part, which ``static/dashboard.js`` fetches every few seconds (short polling: every
server process can answer it from the database alone, with no connection held per browser).

Pages without a valid session redirect to the login page (fragments answer 401). Forms post
URL-encoded bodies, read here with the server's ``max_request_bytes`` limit, and carry the
session's CSRF token; a post without it is refused with 403. None of these routes is in the
OpenAPI schema.

Charts of captured data and drift change only when the capture index adds records of the
device: they are cached (drift series too, which the page's table also shows) under the
device's ``updated_at`` in the index, which their URLs carry (``?t=``).
"""

from __future__ import annotations

import math
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from edgefleet.drift import MIN_ROWS, PSI_THRESHOLD
from edgefleet.errors import EdgefleetError, FailedPrecondition, NotFound, ResourceExhausted
from edgefleet.fleet import (
    admin_api,
    captures,
    drift_series,
    fleets,
    history,
    notify,
    packaging,
    reports,
    rollout,
    schemas,
)
from edgefleet.fleet.capture_location import CaptureLocation
from edgefleet.fleet.crypto import token_hash
from edgefleet.fleet.dashboard import charts, session, views
from edgefleet.fleet.fleets import get_fleet
from edgefleet.fleet.sigv4 import Unauthenticated

router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).parent
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
#: Templates of pages' live parts (``_<page>.html``, what ``?fragment=1`` answers).
_PARTIALS = frozenset(_templates.list_templates(filter_func=lambda n: n.startswith("_")))
#: Files under /ui/static (all of them: nothing else is served from the folder).
_STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
#: Device tiles per page of the overview, and the largest page a request may ask for.
PAGE_SIZE, MAX_PAGE_SIZE = 200, 1000
#: Chart ranges offered on the device page, in hours.
RANGES = (1, 6, 24)
#: Largest form body the dashboard reads (also bounded by max_request_bytes).
MAX_FORM_BYTES = 64 << 10
#: Rows of a stage's device table (the counts above it cover every device).
MAX_STAGE_ROWS = 500
#: Rows of the device page's table of captures (older ones: the "older" link).
CAPTURE_ROWS = 25
_charts = charts.ChartCache[bytes]()
_drift = charts.ChartCache[list[drift_series.DriftSeries]]()


def _age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return "never"
    seconds = max(seconds_ago, 0.0)
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _utc(epoch: float | None, micro: bool = False) -> str:
    if epoch is None:
        return "-"
    if not micro:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    seconds, micros = divmod(round(epoch * 1e6), 1_000_000)  # inference times keep µs
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{micros:06d} UTC"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / charts.MIB:,.1f} MiB"


def _size(value: int) -> str:
    return f"{value:,} bytes" if value < 10_240 else f"{value / 1024:,.1f} KiB"


def _query(values: dict[str, Any]) -> str:
    """A URL query of the values that are not None."""
    return urllib.parse.urlencode({k: v for k, v in values.items() if v is not None})


_templates.filters.update(utc=_utc, mib=_mib, size=_size, query=_query,
                          stage_state=rollout.stage_state)


def _context(request: Request) -> Any:
    return request.app.state.context


def _signer(request: Request) -> session.SessionSigner:
    signer: session.SessionSigner | None = getattr(request.app.state, "dashboard_signer", None)
    if signer is None:
        context = _context(request)
        signer = session.load_signer(context.sessions, context.key,
                                     context.settings.dashboard_session_hours * 3600)
        request.app.state.dashboard_signer = signer
    return signer


def _login(request: Request) -> session.Login | None:
    login = _signer(request).verify(request.cookies.get(session.COOKIE), time.time())
    if login is None:
        return None
    with _context(request).sessions() as db:
        return login if session.token_exists(db, login.token_id) else None


def _require_login(request: Request) -> session.Login:
    """The session, or an answer that sends the browser to the login page."""
    login = _login(request)
    if login is not None:
        return login
    if request.query_params.get("fragment"):
        raise HTTPException(401, "the dashboard session ended; log in again at /ui/login")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise HTTPException(303, "log in first", headers={
        "Location": "/ui/login?" + urllib.parse.urlencode({"next": target})})


def _render(request: Request, template: str, login: session.Login | None, status: int = 200,
            **values: Any) -> HTMLResponse:
    # A page without a live part (a captured record) answers a fragment request in full.
    fragment = bool(request.query_params.get("fragment")) and f"_{template}" in _PARTIALS
    name = f"_{template}" if fragment else template
    values.update(
        now=time.time(), age=lambda at: _age(None if at is None else time.time() - at),
        csrf=_signer(request).csrf(login) if login is not None else "",
        path=request.url.path, query=request.url.query, logged_in=login is not None)
    html = _templates.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str]:
    """The URL-encoded form of a post, read with a size limit (413 beyond it)."""
    limit = min(_context(request).settings.max_request_bytes, MAX_FORM_BYTES)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the form ({declared} bytes) is larger than the dashboard "
                                 f"accepts ({limit} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the form is larger than the dashboard accepts "
                                     f"({limit} bytes)")
    if body and not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        raise HTTPException(400, "dashboard forms are posted as "
                                 "application/x-www-form-urlencoded")
    try:
        fields = urllib.parse.parse_qs(body.decode(), keep_blank_values=True,
                                       max_num_fields=100, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"the form could not be read: {exc}") from None
    return {name: values[-1] for name, values in fields.items()}


async def _checked_form(request: Request) -> tuple[session.Login, dict[str, str]]:
    login = _require_login(request)
    form = await _form(request)
    if not _signer(request).check_csrf(login, form.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or belongs to another "
                                 "session; reload the page and submit again")
    return login, form


def _back(path: str, notice: str, kind: str = "ok") -> RedirectResponse:
    return RedirectResponse(path + "?" + urllib.parse.urlencode({"notice": notice, "kind": kind}),
                            status_code=303)


# -- login ------------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    # Only paths on this server: "//host" or "https://..." would make an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/ui/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The login form (the admin token from <data-dir>/admin-token)."""
    if _login(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _render(request, "login.html", None, next=_safe_next(next), message="")


@router.post("/ui/login")
async def login(request: Request) -> Response:
    """Check the admin token as the REST API does and open a session."""
    form = await _form(request)
    target = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    try:
        await run_in_threadpool(admin_api.require_admin, request, credentials)
    except (Unauthenticated, ResourceExhausted) as exc:
        status = 429 if isinstance(exc, ResourceExhausted) else 401
        message = (exc.message if status == 429 else
                   "unknown admin token: paste the token the server wrote at first start "
                   "(the file admin-token in its data directory)")
        return _render(request, "login.html", None, status, next=target, message=message)
    context = _context(request)
    with context.sessions() as db:
        token_id = session.token_id(db, token_hash(token))
    if token_id is None:  # deleted between the two reads
        return _render(request, "login.html", None, 401, next=target,
                       message="the admin token was just deleted; use the current one")
    signer = _signer(request)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(session.COOKIE, signer.issue(token_id, time.time()),
                      max_age=int(signer.lifetime_seconds), httponly=True, samesite="strict",
                      secure=request.url.scheme == "https", path="/")
    return answer


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    """End the session (the cookie is removed)."""
    await _checked_form(request)
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(session.COOKIE, path="/", httponly=True, samesite="strict")
    return answer


# -- fleet overview ---------------------------------------------------------------------------

@router.get("/")
def overview(request: Request, fleet: str | None = None, state: views.State | None = None,
             page: int = Query(1, ge=1),
             size: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)) -> Response:
    """Fleet overview: counts per state, model and agent versions, a page of device tiles
    (with each device's number of captured events)."""
    login = _require_login(request)
    settings = _context(request).settings
    with _context(request).sessions() as db:
        names = views.fleet_names(db)
        if not names:
            return _render(request, "overview.html", login, fleets=[], fleet=None)
        name = fleet if fleet is not None else names[0]
        now = time.time()
        cutoff = now - settings.connected_window_seconds
        report = reports.fleet_report(db, name, window_seconds=settings.connected_window_seconds,
                                      now=now)
        fleet_id = get_fleet(db, name).id
        counts = views.state_counts(db, fleet_id, cutoff)
        matching = counts.registered if state is None else getattr(counts, state)
        pages = max(1, math.ceil(matching / size))
        tiles = views.device_tiles(db, fleet_id, cutoff, state=state,
                                   offset=(min(page, pages) - 1) * size, limit=size)
        events = captures.event_counts(db, [t.name for t in tiles])
    served = max([s.connected_device_count + s.offline_device_count
                  for s in report.model_stats] + [1])
    return _render(request, "overview.html", login, fleets=names, fleet=name, report=report,
                   counts=counts, tiles=tiles, events=events, state=state,
                   page=min(page, pages), pages=pages, size=size, served=served,
                   window=settings.connected_window_seconds,
                   agents=max([v.agent_count for v in report.agent_versions] + [1]))


# -- device -----------------------------------------------------------------------------------

def _bucket(request: Request) -> int:
    """The current sampling period's number: charts change at most once per period."""
    period: float = _context(request).settings.history_sample_seconds
    return math.floor(time.time() / period)


def _location(request: Request) -> CaptureLocation | None:
    """The capture location, or None when the server has none."""
    index = _context(request).captures
    return None if index is None else index.location


def _stamp(totals: captures.Totals) -> int:
    """The version of a device's captured data in the index (ms of its last update)."""
    return 0 if totals.updated_at is None else round(totals.updated_at * 1000)


def _device_drift(request: Request, db: Session, name: str,
                  totals: captures.Totals) -> list[drift_series.DriftSeries]:
    context = _context(request)
    return _drift.get(("drift", name, _stamp(totals)), lambda: drift_series.device_drift(
        db, context.baselines, name))


@router.get("/ui/devices/{name}")
def device_page(request: Request, name: str, hours: int = Query(6, ge=1, le=24 * 30),
                event: str | None = Query(None, max_length=64),
                before: str | None = Query(None, max_length=100)) -> Response:
    """A device: state, agent metrics, models, charts of its history, captured data (a page of
    records, ``before`` and ``event`` as the REST API's) and input drift, deployment history."""
    login = _require_login(request)
    context = _context(request)
    settings = context.settings
    location = _location(request)
    found: dict[str, Any] = {}
    with context.sessions() as db:
        try:
            device = fleets.describe_device(db, name)
        except NotFound as exc:  # e.g. the device of a captured record, deregistered since
            return _render(request, "error.html", login, 404, title=f"Device {name}",
                           error=exc.message)
        if location is not None:
            totals = captures.device_totals(db, name)
            found = {"totals": totals, "stamp": _stamp(totals),
                     "page": captures.list_captures(db, device=name, event=event,
                                                    before=before, limit=CAPTURE_ROWS),
                     "event_names": captures.device_events(db, name),
                     "drift": _device_drift(request, db, name, totals),
                     "no_baseline": [(m.model_name, m.model_version) for m in device.models
                                     if m.model_version and context.baselines.get(
                                         m.model_name, m.model_version) is None]}
    latest = device.latest_heartbeat
    cutoff = time.time() - settings.connected_window_seconds
    state = "never" if latest is None else "online" if latest >= cutoff else "offline"
    agent = {m.get("MetricName"): m.get("Value") for m in device.agent_metrics}
    models = [(m, {x.get("MetricName"): x.get("Value") for x in m.metrics})
              for m in device.models]
    return _render(request, "device.html", login, device=device, state=state, agent=agent,
                   models=models, hours=hours, ranges=RANGES, bucket=_bucket(request),
                   location=None if location is None else location.describe(),
                   turn_on=captures.TURN_ON,
                   scan_seconds=settings.capture_scan_seconds, event=event, before=before,
                   threshold=PSI_THRESHOLD, min_rows=MIN_ROWS,
                   window_days=drift_series.WINDOW_DAYS, **found)


def _samples(request: Request, name: str, hours: int) -> tuple[list[history.Sample], float]:
    since = time.time() - hours * 3600
    with _context(request).sessions() as db:
        device_id = views.device_id(db, name)
        if device_id is None:
            raise NotFound(f"device {name!r} is not registered")
        return history.device_samples(db, device_id, since=since), since


def _svg(drawing: bytes) -> Response:
    # The URL names the sampling period (?t=), so a browser may keep it.
    return Response(drawing, media_type="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/ui/devices/{name}/agent.svg")
def agent_chart(request: Request, name: str, hours: int = Query(6, ge=1, le=24 * 30),
                t: int = 0) -> Response:
    """SVG chart of the device's heartbeats and agent metrics over the last ``hours``."""
    _require_login(request)
    gap = _context(request).settings.connected_window_seconds

    def draw() -> bytes:
        samples, since = _samples(request, name, hours)
        return charts.agent_chart(samples, since=since, until=time.time(), gap_seconds=gap)

    return _svg(_charts.get(("agent", name, hours, _bucket(request)), draw))


@router.get("/ui/devices/{name}/models/{model}.svg")
def model_chart(request: Request, name: str, model: str,
                hours: int = Query(6, ge=1, le=24 * 30), t: int = 0) -> Response:
    """SVG chart of one model's rate, latency and errors on the device."""
    _require_login(request)

    def draw() -> bytes:
        samples, since = _samples(request, name, hours)
        return charts.model_chart(samples, model, since=since, until=time.time())

    return _svg(_charts.get(("model", name, model, hours, _bucket(request)), draw))


@router.get("/ui/devices/{name}/captures.svg")
def device_captures_chart(request: Request, name: str, t: int = 0) -> Response:
    """SVG chart of the device's captured records per hour (or day) of inference time."""
    _require_login(request)
    with _context(request).sessions() as db:
        stamp = _stamp(captures.device_totals(db, name))
        return _svg(_charts.get(("captures", name, stamp), lambda: charts.captures_chart(
            captures.hour_counts(db, name))))


@router.get("/ui/devices/{name}/drift.svg")
def device_drift_chart(request: Request, name: str, t: int = 0) -> Response:
    """SVG chart of the daily largest feature PSI of the device's captured inputs, per model
    version, with the threshold."""
    _require_login(request)
    with _context(request).sessions() as db:
        totals = captures.device_totals(db, name)
        series = _device_drift(request, db, name, totals)
    return _svg(_charts.get(("drift", name, _stamp(totals)),
                            lambda: charts.drift_chart(series)))


# -- captured records -------------------------------------------------------------------------

def _stored(request: Request, capture: int) -> tuple[CaptureLocation, captures.CaptureOut,
                                                    bytes]:
    """The capture location, the capture and its JSON line as stored.

    Raises:
        FailedPrecondition: the server has no capture location (:data:`captures.TURN_ON`).
        NotFound, Unavailable: as :func:`captures.read_line`.
    """
    location = _location(request)
    if location is None:
        raise FailedPrecondition(captures.TURN_ON)
    with _context(request).sessions() as db:
        out, line = captures.read_line(location, db, capture)
    return location, out, line


def _registered(request: Request, device: str) -> bool:
    with _context(request).sessions() as db:
        return views.device_id(db, device) is not None


def _capture_error(request: Request, login: session.Login, capture: int,
                   error: EdgefleetError) -> HTMLResponse:
    """The record page of a record that cannot be shown: what is known of it and why."""
    with _context(request).sessions() as db:
        try:
            known: captures.CaptureOut | None = captures.get_capture(db, capture)[0]
        except NotFound:
            known = None
    return _render(request, "capture.html", login, schemas.HTTP_STATUS.get(error.code, 500),
                   capture=known, number=capture, error=error.message,
                   registered=known is not None and _registered(request, known.device))


@router.get("/ui/captures/{capture}")
def capture_page(request: Request, capture: int) -> Response:
    """One captured record: who and when, each tensor's dtype, shape and first values, the
    auxiliary data, and download links; a record that cannot be read says why."""
    login = _require_login(request)
    try:
        location, out, line = _stored(request, capture)
        record = captures.decode_line(location, out.file, line)
    except EdgefleetError as exc:
        return _capture_error(request, login, capture, exc)
    tensors = {kind: [views.tensor_table(name, array) for name, array in arrays.items()]
               for kind, arrays in (("inputs", record.input_arrays),
                                    ("outputs", record.output_arrays))}
    auxiliary = {kind: [(item, *views.auxiliary_text(item.text, item.content_type))
                        for item in captures.auxiliary(line, record, outputs)]
                 for kind, outputs in (("inputs", False), ("outputs", True))}
    return _render(request, "capture.html", login, capture=out, number=capture, error=None,
                   tensors=tensors, auxiliary=auxiliary, line_bytes=len(line),
                   registered=_registered(request, out.device))


@router.get("/ui/captures/{capture}/download")
def capture_download(request: Request, capture: int,
                     format: str = Query("jsonl", pattern="^(jsonl|npz)$")) -> Response:
    """The record as the REST download gives it: its JSON line as stored (``jsonl``), or its
    tensors as a numpy ``.npz`` (arrays ``input/<name>`` and ``output/<name>``)."""
    login = _require_login(request)
    try:
        location, out, line = _stored(request, capture)
        content, media, filename = captures.download(location, out, line, format)
    except EdgefleetError as exc:
        return _capture_error(request, login, capture, exc)
    return Response(content, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})


# -- deployments ------------------------------------------------------------------------------

@router.get("/ui/deployments")
def deployments(request: Request, notice: str = "", kind: str = "ok") -> Response:
    """Plans with their stages' progress, recent failures and rollbacks, the plan form."""
    login = _require_login(request)
    with _context(request).sessions() as db:
        plans = rollout.list_plans(db)
        failures = views.recent_failures(db)
        jobs = [j for j in packaging.list_jobs(db) if j.status == "COMPLETED"]
        names = views.fleet_names(db)
    return _render(request, "deployments.html", login, plans=plans, failures=failures,
                   jobs=jobs, fleets=names, notice=notice[:500], kind=kind)


@router.get("/ui/deployments/{plan}/{stage}")
def stage_page(request: Request, plan: str, stage: str) -> Response:
    """A stage's devices: status, result message (rollback reasons), hints for stuck ones."""
    login = _require_login(request)
    with _context(request).sessions() as db:
        described = rollout.describe_plan(db, plan)
        devices = rollout.stage_devices(db, plan, stage)
    found = [s for s in described.stages if s.name == stage]
    order = {"FAILED": 0, "INPROGRESS": 1, "READYTODEPLOY": 2, "STOPPED": 3, "DEPLOYED": 4}
    devices.sort(key=lambda d: (order.get(d.status, 5), d.device_name))
    return _render(request, "stage.html", login, plan=described, stage=found[0],
                   devices=devices[:MAX_STAGE_ROWS], total=len(devices))


def _plan_spec(form: dict[str, str]) -> schemas.PlanCreate:
    kind = form.get("selection_type", "")
    value = form.get("selection", "").strip()
    selection: dict[str, Any] = {"type": kind}
    if kind == "SELECTION":
        selection["device_names"] = [n.strip() for n in value.split(",") if n.strip()]
    elif kind == "PERCENTAGE":
        selection["percentage"] = value
    else:
        selection["name_contains"] = value
    return schemas.PlanCreate.model_validate({
        "name": form.get("name", "").strip(), "fleet": form.get("fleet", ""),
        "models": [{"model_handle": form.get("model_handle", "").strip(),
                    "packaging_job": form.get("packaging_job", "")}],
        "stages": [{"name": form.get("stage", "").strip(), "selection": selection,
                    "failure_handling_policy": form.get("policy", "ROLLBACK_ON_FAILURE")}]})


def _write(request: Request, action: Any, *args: Any) -> None:
    with _context(request).sessions.begin() as db:
        action(db, *args)


@router.post("/ui/deployments")
async def create_plan(request: Request) -> Response:
    """Create a plan with one model and one stage (rollout.create_plan, as the REST API)."""
    _, form = await _checked_form(request)
    try:
        spec = _plan_spec(form)
        await run_in_threadpool(_write, request, rollout.create_plan, spec)
    except ValidationError as exc:
        return _back("/ui/deployments", "the plan was not created: "
                     + schemas.describe_errors(exc.errors()), "error")
    except EdgefleetError as exc:
        return _back("/ui/deployments", f"the plan was not created: {exc.message}", "error")
    return _back("/ui/deployments", f"plan {spec.name} created")


@router.post("/ui/deployments/{plan}/{stage}/{action}")
async def stage_action(request: Request, plan: str, stage: str, action: str) -> Response:
    """Start or stop a stage (rollout.start_stage / stop_stage, as the REST API)."""
    await _checked_form(request)
    service = {"start": rollout.start_stage, "stop": rollout.stop_stage}.get(action)
    if service is None:
        raise HTTPException(404, f"unknown stage action {action!r}; use start or stop")
    try:
        await run_in_threadpool(_write, request, service, plan, stage)
    except EdgefleetError as exc:
        return _back("/ui/deployments", f"{action} {plan}/{stage}: {exc.message}", "error")
    context = _context(request)
    if action == "start" and context.notifier is not None:
        await run_in_threadpool(notify.notify_stage_started, context.notifier,
                                context.sessions, plan, stage)
    done = {"start": "started: its devices get the deployment at their next poll",
            "stop": "stopped: devices that had not applied it no longer get it"}[action]
    return _back("/ui/deployments", f"stage {plan}/{stage} {done}")


# -- static files -----------------------------------------------------------------------------

@router.get("/ui/static/{name}")
def static(name: str) -> Response:
    """The dashboard's CSS and JavaScript (from the package; nothing from a CDN)."""
    media = _STATIC.get(name)
    if media is None:
        raise NotFound(f"no dashboard file {name!r}")
    return Response((_HERE / "static" / name).read_bytes(), media_type=media,
                    headers={"Cache-Control": "public, max-age=300"})
