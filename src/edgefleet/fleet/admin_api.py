"""The management REST API under ``/api/v1`` (OpenAPI at ``/docs``); thin handlers over services.

Every route but ``/api/v1/root-certificate`` and ``/healthz`` needs the admin token as
``Authorization: Bearer <token>``. Errors are ``{"error": <class>, "message": <what to do>}``
with the HTTP status of the error's kind (see ``edgefleet.fleet.schemas.HTTP_STATUS``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Form,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.fleet import (
    bootstrap,
    captures,
    compilation,
    drift_series,
    fleets,
    notify,
    operator_keys,
    packaging,
    reports,
    rollout,
    schemas,
)
from edgefleet.fleet.capture_location import CaptureLocation
from edgefleet.fleet.crypto import token_hash
from edgefleet.fleet.db.models import AdminToken
from edgefleet.fleet.sigv4 import Unauthenticated

public = APIRouter()


_bearer = HTTPBearer(auto_error=False, description="The admin token the server wrote at first "
                                                   "start (<data-dir>/admin-token).")


def require_admin(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Dependency: the request carries a valid admin token (documented in OpenAPI as HTTP
    bearer authentication, so /docs offers "Authorize").

    Raises:
        Unauthenticated: no ``Authorization: Bearer`` header, or an unknown token.
        ResourceExhausted: this address failed too often in the last minute (429).
    """
    context = request.app.state.context
    address = context.client_address(request)
    context.auth_failures.check(address)
    if credentials is None or not credentials.credentials:
        context.auth_failures.failed(address)
        raise Unauthenticated("this route needs the admin token: send 'Authorization: Bearer "
                              "<token>' (the CLI reads it from --token or EDGEFLEET_ADMIN_TOKEN)")
    with context.sessions() as session:
        known = session.scalar(select(AdminToken.id).where(
            AdminToken.token_hash == token_hash(credentials.credentials.strip())))
    if known is None:
        context.auth_failures.failed(address)
        raise Unauthenticated("unknown admin token; use the token the server wrote at first "
                              "start (data dir file admin-token)")


def _read(request: Request) -> Iterator[Session]:
    with request.app.state.context.sessions() as session:
        yield session


def _write(request: Request) -> Iterator[Session]:
    with request.app.state.context.sessions.begin() as session:
        yield session


# scope="function": the transaction commits before the response is sent, so "201" means stored.
ReadSession = Annotated[Session, Depends(_read, scope="function")]
WriteSession = Annotated[Session, Depends(_write, scope="function")]
#: The errors every management route may answer (schemas.HTTP_STATUS maps error classes to
#: these codes), documented so that clients and schema-driven tests know them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorOut, "description": description} for code, description in {
        400: "Invalid argument: the message names the field and what it expects.",
        401: "No admin token, or an unknown one.",
        404: "No such fleet, device, packaging job, deployment plan or stage.",
        409: "Already exists, or not possible in the current state (the message says why).",
        413: "The request body is larger than the server's max_request_bytes.",
        422: "The request does not match the schema (the message names the field).",
        429: "Too many requests or a resource limit reached.",
        503: "A service the server needs (database, object store) is unavailable.",
    }.items()}
router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_admin)],
                   responses=ERROR_RESPONSES)


@public.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers (it does not touch the database)."""
    return {"status": "ok"}


@public.get("/api/v1/root-certificate", tags=["packaging"], response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def root_certificate(session: ReadSession) -> Response:
    """The PEM root certificate package signatures chain to; install it on devices in the
    folder ``sagemaker_edge_core_root_certs_path`` names."""
    return Response(bootstrap.root_certificate(session), media_type="application/x-pem-file")


# -- fleets ---------------------------------------------------------------------------------------

@router.post("/fleets", status_code=201, tags=["fleets"])
def create_fleet(spec: schemas.FleetCreate, session: WriteSession) -> schemas.FleetOut:
    """Create a device fleet (409 if the name is taken)."""
    return fleets.create_fleet(session, spec)


@router.get("/fleets", tags=["fleets"])
def list_fleets(session: ReadSession) -> list[schemas.FleetOut]:
    """Every device fleet."""
    return fleets.list_fleets(session)


@router.get("/fleets/{name}", tags=["fleets"])
def describe_fleet(name: str, session: ReadSession) -> schemas.FleetOut:
    """One device fleet (404 if unknown)."""
    return fleets.describe_fleet(session, name)


@router.patch("/fleets/{name}", tags=["fleets"])
def update_fleet(name: str, spec: schemas.FleetUpdate, request: Request,
                 session: WriteSession) -> schemas.FleetOut:
    """Change a fleet's description, output location, role ARN, KMS key or IoT role alias."""
    settings = request.app.state.context.settings
    return fleets.update_fleet(session, name, spec, region=settings.region,
                               account_id=settings.account_id)


@router.delete("/fleets/{name}", status_code=204, tags=["fleets"])
def delete_fleet(name: str, session: WriteSession) -> None:
    """Delete an empty fleet (409 while devices or plans refer to it)."""
    fleets.delete_fleet(session, name)


@router.get("/fleets/{name}/report", tags=["fleets"])
def fleet_report(name: str, request: Request, session: ReadSession) -> schemas.FleetReport:
    """Agent versions and per-model offline/connected/active/sampling device counts."""
    window = request.app.state.context.settings.connected_window_seconds
    return reports.fleet_report(session, name, window_seconds=window)


# -- devices --------------------------------------------------------------------------------------

@router.post("/devices", status_code=201, tags=["devices"])
def register_device(spec: schemas.DeviceRegister, request: Request,
                    session: WriteSession) -> schemas.DeviceRegistered:
    """Register a device; the answer holds its secret (shown once) and a ready agent config."""
    context = request.app.state.context
    settings = context.settings
    return fleets.register_device(session, context.key, spec, endpoint=context.base_url(request),
                                  region=settings.region,
                                  poll_seconds=settings.agent_deployment_poll_seconds,
                                  mqtt_url=settings.mqtt_url,
                                  mqtt_topic_prefix=settings.mqtt_topic_prefix)


@router.get("/devices", tags=["devices"])
def list_devices(session: ReadSession, fleet: str | None = None, after: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=fleets.MAX_PAGE)] = 100
                 ) -> schemas.DevicePage:
    """Devices by name, optionally of one fleet; page with ``after`` = previous ``next_after``.
    Models and deployments are not listed: describe a device for them."""
    return fleets.list_devices(session, fleet=fleet, after=after, limit=limit)


@router.get("/devices/{name}", tags=["devices"])
def describe_device(name: str, session: ReadSession) -> schemas.DeviceOut:
    """A device: latest heartbeat, agent metrics, models with metrics, deployments."""
    return fleets.describe_device(session, name)


@router.post("/devices/{name}/credentials", tags=["devices"])
def issue_credentials(name: str, request: Request, session: WriteSession,
                      spec: schemas.CredentialsRequest | None = None
                      ) -> schemas.DeviceRegistered:
    """New credentials for a device (the old ones stop working) and its agent config: how a
    device registered through the sagemaker API gets its config, and how a secret rotates."""
    context = request.app.state.context
    settings = context.settings
    old, issued = fleets.issue_credentials(
        session, context.key, name, endpoint=context.base_url(request), region=settings.region,
        root_certs_path=(spec or schemas.CredentialsRequest()).root_certs_path,
        poll_seconds=settings.agent_deployment_poll_seconds, mqtt_url=settings.mqtt_url,
        mqtt_topic_prefix=settings.mqtt_topic_prefix)
    context.credentials.forget(old)
    return issued


@router.delete("/devices/{name}", status_code=204, tags=["devices"])
def deregister_device(name: str, request: Request, session: WriteSession) -> None:
    """Deregister a device; its credentials stop working (on other server instances once
    their credential cache expires, ``credential_cache_seconds``)."""
    request.app.state.context.credentials.forget(fleets.deregister_device(session, name))


# -- packaging ------------------------------------------------------------------------------------

@router.post("/packaging-jobs", status_code=201, tags=["packaging"])
def create_packaging_job(
        request: Request, name: Annotated[str, Form(pattern=schemas.NAME_PATTERN, max_length=63)],
        model_name: Annotated[str, Form()], model_version: Annotated[str, Form()],
        model: Annotated[UploadFile, File(description="the ONNX model file")],
        baseline: Annotated[UploadFile | None, File(
            description="optional drift baseline: a .npy of training inputs of one model "
                        "input (first dimension rows), or a baseline.json")] = None,
        baseline_tensor: Annotated[str | None, Form(
            max_length=1024, description="the model input a .npy baseline is for (default: "
                                         "the model's only input)")] = None,
) -> schemas.PackagingJobOut:
    """Package and sign an uploaded ONNX model, with its drift baseline if one is uploaded; a
    model that cannot be packaged, or a baseline that does not fit it, gives a job with status
    FAILED and the reason; an unreadable baseline is refused (400). Model and baseline together
    are bounded by the server's max_model_upload_bytes."""
    context = request.app.state.context
    with tempfile.TemporaryDirectory(prefix="edgefleet-upload-") as tmp:
        path = Path(tmp) / "model.onnx"
        with path.open("wb") as out:
            shutil.copyfileobj(model.file, out)
        made = None if baseline is None else packaging.baseline_from_upload(
            baseline.file, baseline.filename, path, tensor=baseline_tensor)
        return packaging.create_job(context.sessions, context.key, context.store, name=name,
                                    model_name=model_name, model_version=model_version,
                                    model_path=path, baseline=made)


@router.get("/packaging-jobs", tags=["packaging"])
def list_packaging_jobs(session: ReadSession) -> list[schemas.PackagingJobOut]:
    """Every packaging job, newest first."""
    return packaging.list_jobs(session)


@router.get("/packaging-jobs/{name}", tags=["packaging"])
def describe_packaging_job(name: str, session: ReadSession) -> schemas.PackagingJobOut:
    """A packaging job: status, package object key, SHA-1 and size."""
    return packaging.describe_job(session, name)


# -- compilation jobs ------------------------------------------------------------------------------

@router.post("/compilation-jobs", status_code=201, tags=["packaging"])
def create_compilation_job(spec: schemas.CompilationCreate,
                           request: Request) -> schemas.CompilationJobOut:
    """Read an ONNX model from S3, check that ONNX Runtime loads it, keep it for packaging
    (a model that cannot be read or loaded gives a FAILED job with the reason)."""
    context = request.app.state.context
    return compilation.create_job(context.sessions, context.store, spec,
                                  source_endpoint_url=context.settings.source_s3_endpoint_url)


@router.get("/compilation-jobs", tags=["packaging"])
def list_compilation_jobs(session: ReadSession) -> list[schemas.CompilationJobOut]:
    """Every compilation job, newest first."""
    return compilation.list_jobs(session)


@router.get("/compilation-jobs/{name}", tags=["packaging"])
def describe_compilation_job(name: str, session: ReadSession) -> schemas.CompilationJobOut:
    """A compilation job."""
    return compilation.describe_job(session, name)


# -- operator keys (the sagemaker API's credentials) -----------------------------------------------

@router.post("/operator-keys", status_code=201, tags=["operator keys"])
def create_operator_key(spec: schemas.OperatorKeyCreate, request: Request,
                        session: WriteSession) -> schemas.OperatorKeyCreated:
    """A new operator key for boto3's sagemaker client (the secret is shown only here)."""
    return operator_keys.create_key(session, request.app.state.context.key, spec.description)


@router.get("/operator-keys", tags=["operator keys"])
def list_operator_keys(session: ReadSession) -> list[schemas.OperatorKeyOut]:
    """Every operator key, without secrets."""
    return operator_keys.list_keys(session)


@router.delete("/operator-keys/{access_key_id}", tags=["operator keys"])
def revoke_operator_key(access_key_id: str, session: WriteSession) -> schemas.OperatorKeyOut:
    """Revoke an operator key: requests it signs are refused from now on."""
    return operator_keys.revoke_key(session, access_key_id)


# -- deployment plans and stages ------------------------------------------------------------------

@router.post("/deployment-plans", status_code=201, tags=["rollout"])
def create_plan(spec: schemas.PlanCreate, session: WriteSession) -> schemas.PlanOut:
    """Create a deployment plan: models (handle -> packaging job), a fleet, stages."""
    return rollout.create_plan(session, spec)


@router.get("/deployment-plans", tags=["rollout"])
def list_plans(session: ReadSession) -> list[schemas.PlanOut]:
    """Every deployment plan."""
    return rollout.list_plans(session)


@router.get("/deployment-plans/{name}", tags=["rollout"])
def describe_plan(name: str, session: ReadSession) -> schemas.PlanOut:
    """A deployment plan with its stages and per-stage device status counts."""
    return rollout.describe_plan(session, name)


@router.delete("/deployment-plans/{name}", status_code=204, tags=["rollout"])
def delete_plan(name: str, session: WriteSession) -> None:
    """Delete a plan (409 while one of its stages is in progress)."""
    rollout.delete_plan(session, name)


@router.post("/deployment-plans/{name}/stages", status_code=201, tags=["rollout"])
def add_stage(name: str, spec: schemas.StageSpec, session: WriteSession) -> schemas.PlanOut:
    """Append a stage to a plan."""
    return rollout.add_stage(session, name, spec)


@router.delete("/deployment-plans/{name}/stages/{stage}", status_code=204, tags=["rollout"])
def delete_stage(name: str, stage: str, session: WriteSession) -> None:
    """Delete a stage that is not in progress."""
    rollout.delete_stage(session, name, stage)


@router.post("/deployment-plans/{name}/stages/{stage}/start", tags=["rollout"])
def start_stage(name: str, stage: str, session: WriteSession, request: Request,
                background: BackgroundTasks) -> schemas.StageOut:
    """Start a stage: select its devices; GetDeployments hands them the deployment (and, with
    an MQTT broker configured, they are notified to poll at once)."""
    started = rollout.start_stage(session, name, stage)
    context = request.app.state.context
    if context.notifier is not None:  # runs after the commit and the response
        background.add_task(notify.notify_stage_started, context.notifier, context.sessions,
                            name, stage)
    return started


@router.post("/deployment-plans/{name}/stages/{stage}/stop", tags=["rollout"])
def stop_stage(name: str, stage: str, session: WriteSession) -> schemas.StageOut:
    """Stop a stage: devices that have not applied it no longer get it."""
    return rollout.stop_stage(session, name, stage)


@router.get("/deployment-plans/{name}/stages/{stage}/devices", tags=["rollout"])
def list_stage_devices(name: str, stage: str,
                       session: ReadSession) -> list[schemas.StageDeviceOut]:
    """Per-device status of a stage, from GetDeployments and heartbeats' DeploymentResult."""
    return rollout.stage_devices(session, name, stage)


# -- captured data and drift ----------------------------------------------------------------------

def _capture_location(request: Request) -> CaptureLocation | None:
    index = request.app.state.context.captures
    return None if index is None else index.location


@router.get("/captures", tags=["captures"])
def list_captures(session: ReadSession, device: str | None = None, model: str | None = None,
                  event: str | None = None, before: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=captures.MAX_PAGE)] = 100
                  ) -> captures.CapturePage:
    """Indexed capture records, newest inference time first, optionally of one device, model
    and event; page with ``before`` = previous ``next_before``."""
    return captures.list_captures(session, device=device, model=model, event=event,
                                  before=before, limit=limit)


@router.get("/devices/{name}/captures", tags=["captures"])
def device_captures(name: str, session: ReadSession, model: str | None = None,
                    event: str | None = None, before: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=captures.MAX_PAGE)] = 100
                    ) -> captures.DeviceCaptures:
    """A device's captured data: totals, records per model and UTC hour of inference time,
    and a page of its records (newest first)."""
    return captures.device_captures(session, name, model=model, event=event, before=before,
                                    limit=limit)


@router.get("/captures/{capture}", tags=["captures"])
def describe_capture(capture: int, request: Request,
                     session: ReadSession) -> captures.CaptureDetail:
    """One capture record with its tensors (dtype, shape, values) and auxiliary data, read
    from the capture location (409 when the server has none)."""
    location = _capture_location(request)
    out, line = captures.read_line(location, session, capture)
    assert location is not None
    return captures.capture_detail(out, line, captures.decode_line(location, out.file, line))


@router.get("/captures/{capture}/download", tags=["captures"], response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {},
                                         "application/octet-stream": {}}}})
def download_capture(capture: int, request: Request, session: ReadSession,
                     format: Annotated[str, Query(pattern="^(jsonl|npz)$")] = "jsonl"
                     ) -> Response:
    """The record's JSON line as stored (``jsonl``), or its tensors as a numpy ``.npz``
    (arrays ``input/<name>`` and ``output/<name>``)."""
    location = _capture_location(request)
    out, line = captures.read_line(location, session, capture)
    assert location is not None
    content, media, filename = captures.download(location, out, line, format)
    return Response(content, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/devices/{name}/drift", tags=["captures"])
def device_drift(name: str, request: Request, session: ReadSession,
                 days: Annotated[int, Query(ge=1, le=3660)] = drift_series.DEFAULT_DAYS
                 ) -> captures.DeviceDrift:
    """Input drift of the device's captures against their packages' baselines: per model
    version, one point per UTC day, the largest feature PSI over the trailing 7 days."""
    return captures.drift_out(session, request.app.state.context.baselines, name, days)
