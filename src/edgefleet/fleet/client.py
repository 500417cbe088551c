"""A small client of the management REST API (what the ``edgefleet`` commands use).

Every method returns the decoded JSON answer; an error answer raises :class:`ApiError` carrying
the server's message (which says what was wrong and what to do).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx


def _q(name: str) -> str:
    """``name`` as one URL path segment."""
    return quote(name, safe="")


class ApiError(Exception):
    """The server refused a request; ``status`` is the HTTP status, ``message`` its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class AdminClient:
    """Management API client.

    Args:
        base_url: the control plane, e.g. ``http://127.0.0.1:8080``.
        token: the admin token.
        timeout: seconds per request (packaging a large model may need more).
        verify: for an ``https`` server, the PEM file of the CA to trust (default: the system's
            CAs, or the file in ``SSL_CERT_FILE``), or False to skip the check.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 300.0,
                 verify: str | bool = True) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"},
                                  verify=ssl.create_default_context(cafile=verify)
                                  if isinstance(verify, str) else verify)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the control plane at {self._http.base_url}: {exc}; "
                              "check --server and that `edgefleet server` runs") from exc
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = None
            message = body.get("message") if isinstance(body, dict) else None
            raise ApiError(answer.status_code, str(message or answer.text))
        if answer.status_code == 204:
            return None
        if answer.headers.get("content-type", "").startswith("application/json"):
            return answer.json()
        return answer.content

    def create_fleet(self, name: str, output_location: str, description: str = "") -> Any:
        """POST /api/v1/fleets."""
        return self._call("POST", "/api/v1/fleets", json={
            "name": name, "output_location": output_location, "description": description})

    def list_fleets(self) -> Any:
        """GET /api/v1/fleets."""
        return self._call("GET", "/api/v1/fleets")

    def describe_fleet(self, name: str) -> Any:
        """GET /api/v1/fleets/{name}."""
        return self._call("GET", f"/api/v1/fleets/{_q(name)}")

    def delete_fleet(self, name: str) -> None:
        """DELETE /api/v1/fleets/{name}."""
        self._call("DELETE", f"/api/v1/fleets/{_q(name)}")

    def report(self, fleet: str) -> Any:
        """GET /api/v1/fleets/{fleet}/report."""
        return self._call("GET", f"/api/v1/fleets/{_q(fleet)}/report")

    def register_device(self, spec: dict[str, Any]) -> Any:
        """POST /api/v1/devices (fields of ``schemas.DeviceRegister``)."""
        return self._call("POST", "/api/v1/devices", json=spec)

    def deregister_device(self, name: str) -> None:
        """DELETE /api/v1/devices/{name}."""
        self._call("DELETE", f"/api/v1/devices/{_q(name)}")

    def describe_device(self, name: str) -> Any:
        """GET /api/v1/devices/{name}."""
        return self._call("GET", f"/api/v1/devices/{_q(name)}")

    def list_devices(self, fleet: str | None, after: str | None, limit: int) -> Any:
        """GET /api/v1/devices."""
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("fleet", fleet), ("after", after)) if v is not None})
        return self._call("GET", "/api/v1/devices", params=params)

    def root_certificate(self) -> bytes:
        """GET /api/v1/root-certificate (PEM)."""
        pem: bytes = self._call("GET", "/api/v1/root-certificate")
        return pem

    def create_packaging_job(self, name: str, model_name: str, model_version: str,
                             model_file: Path, baseline: Path | None = None, *,
                             baseline_tensor: str | None = None) -> Any:
        """POST /api/v1/packaging-jobs (multipart upload of the ONNX file and, with
        ``baseline``, of its drift baseline: a ``.npy`` of training inputs of one model input,
        first dimension rows, or a ``baseline.json``; ``baseline_tensor`` names the input a
        ``.npy`` is for when the model has several)."""
        data = {"name": name, "model_name": model_name, "model_version": model_version}
        if baseline_tensor is not None:
            data["baseline_tensor"] = baseline_tensor
        with model_file.open("rb") as model:
            files = {"model": (model_file.name, model, "application/octet-stream")}
            if baseline is None:
                return self._call("POST", "/api/v1/packaging-jobs", data=data, files=files)
            with baseline.open("rb") as training:
                files["baseline"] = (baseline.name, training, "application/octet-stream")
                return self._call("POST", "/api/v1/packaging-jobs", data=data, files=files)

    def describe_packaging_job(self, name: str) -> Any:
        """GET /api/v1/packaging-jobs/{name}."""
        return self._call("GET", f"/api/v1/packaging-jobs/{_q(name)}")

    def list_packaging_jobs(self) -> Any:
        """GET /api/v1/packaging-jobs."""
        return self._call("GET", "/api/v1/packaging-jobs")

    def create_plan(self, spec: dict[str, Any]) -> Any:
        """POST /api/v1/deployment-plans (fields of ``schemas.PlanCreate``)."""
        return self._call("POST", "/api/v1/deployment-plans", json=spec)

    def add_stage(self, plan: str, spec: dict[str, Any]) -> Any:
        """POST /api/v1/deployment-plans/{plan}/stages (fields of ``schemas.StageSpec``)."""
        return self._call("POST", f"/api/v1/deployment-plans/{_q(plan)}/stages", json=spec)

    def describe_plan(self, name: str) -> Any:
        """GET /api/v1/deployment-plans/{name}."""
        return self._call("GET", f"/api/v1/deployment-plans/{_q(name)}")

    def list_plans(self) -> Any:
        """GET /api/v1/deployment-plans."""
        return self._call("GET", "/api/v1/deployment-plans")

    def delete_plan(self, name: str) -> None:
        """DELETE /api/v1/deployment-plans/{name}."""
        self._call("DELETE", f"/api/v1/deployment-plans/{_q(name)}")

    def stage_action(self, plan: str, stage: str, action: str) -> Any:
        """POST /api/v1/deployment-plans/{plan}/stages/{stage}/{start|stop}."""
        return self._call(
            "POST", f"/api/v1/deployment-plans/{_q(plan)}/stages/{_q(stage)}/{action}")

    def stage_devices(self, plan: str, stage: str) -> Any:
        """GET /api/v1/deployment-plans/{plan}/stages/{stage}/devices."""
        return self._call("GET", f"/api/v1/deployment-plans/{_q(plan)}/stages/{_q(stage)}/devices")

    def update_fleet(self, name: str, spec: dict[str, Any]) -> Any:
        """PATCH /api/v1/fleets/{name} (fields of ``schemas.FleetUpdate``)."""
        return self._call("PATCH", f"/api/v1/fleets/{_q(name)}", json=spec)

    def issue_credentials(self, name: str, root_certs_path: str | None = None) -> Any:
        """POST /api/v1/devices/{name}/credentials: new credentials and agent config."""
        body = {"root_certs_path": root_certs_path} if root_certs_path else None
        return self._call("POST", f"/api/v1/devices/{_q(name)}/credentials", json=body)

    def create_compilation_job(self, spec: dict[str, Any]) -> Any:
        """POST /api/v1/compilation-jobs (fields of ``schemas.CompilationCreate``)."""
        return self._call("POST", "/api/v1/compilation-jobs", json=spec)

    def describe_compilation_job(self, name: str) -> Any:
        """GET /api/v1/compilation-jobs/{name}."""
        return self._call("GET", f"/api/v1/compilation-jobs/{_q(name)}")

    def list_compilation_jobs(self) -> Any:
        """GET /api/v1/compilation-jobs."""
        return self._call("GET", "/api/v1/compilation-jobs")

    def delete_stage(self, plan: str, stage: str) -> None:
        """DELETE /api/v1/deployment-plans/{plan}/stages/{stage}."""
        self._call("DELETE", f"/api/v1/deployment-plans/{_q(plan)}/stages/{_q(stage)}")

    def create_operator_key(self, description: str = "") -> Any:
        """POST /api/v1/operator-keys: a new key, with its secret (shown only here)."""
        return self._call("POST", "/api/v1/operator-keys", json={"description": description})

    def list_operator_keys(self) -> Any:
        """GET /api/v1/operator-keys."""
        return self._call("GET", "/api/v1/operator-keys")

    def revoke_operator_key(self, access_key_id: str) -> Any:
        """DELETE /api/v1/operator-keys/{access_key_id}."""
        return self._call("DELETE", f"/api/v1/operator-keys/{_q(access_key_id)}")

    def list_captures(self, device: str | None = None, model: str | None = None,
                      event: str | None = None, before: str | None = None,
                      limit: int = 100) -> Any:
        """GET /api/v1/captures: indexed capture records, newest first (``CapturePage``)."""
        return self._call("GET", "/api/v1/captures", params=_params(
            device=device, model=model, event=event, before=before, limit=limit))

    def device_captures(self, name: str, model: str | None = None, event: str | None = None,
                        before: str | None = None, limit: int = 100) -> Any:
        """GET /api/v1/devices/{name}/captures: totals, records per hour, a page of records."""
        return self._call("GET", f"/api/v1/devices/{_q(name)}/captures", params=_params(
            model=model, event=event, before=before, limit=limit))

    def describe_capture(self, capture: int) -> Any:
        """GET /api/v1/captures/{capture}: the record with its tensors and auxiliary data."""
        return self._call("GET", f"/api/v1/captures/{capture}")

    def download_capture(self, capture: int, format: str = "jsonl") -> bytes:
        """GET /api/v1/captures/{capture}/download: the JSON line as stored (``jsonl``) or
        the tensors as a numpy ``.npz`` (``npz``)."""
        data: bytes = self._call("GET", f"/api/v1/captures/{capture}/download",
                                 params={"format": format})
        return data

    def device_drift(self, name: str, days: int = 60) -> Any:
        """GET /api/v1/devices/{name}/drift: per model version, the daily largest feature PSI."""
        return self._call("GET", f"/api/v1/devices/{_q(name)}/drift", params={"days": days})


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the ones not given."""
    return {name: value for name, value in values.items() if value is not None}
