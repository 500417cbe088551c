"""Captured data, as the REST API and the dashboard show it: the service layer over the
capture index (:mod:`edgefleet.fleet.capture_index`) and the capture location.

Every query reads the index's own tables with a bounded number of indexed queries: records
per hour come from the hourly totals (``capture_hours``), lists are keyset pages of
``capture_entries`` (newest inference time first; ``before`` is the previous page's
``next_before``), and one record is read from its batch file by byte range, never the whole
location. Times are epoch seconds, UTC.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from edgefleet.drift import MIN_ROWS, PSI_THRESHOLD
from edgefleet.errors import FailedPrecondition, InvalidArgument, NotFound
from edgefleet.fleet.capture_location import CaptureLocation
from edgefleet.fleet.db.models import CaptureDevice, CaptureEntry, CaptureFile, CaptureHour, Device
from edgefleet.fleet.drift_series import WINDOW_DAYS, Baselines, device_drift
from edgefleet.wire.capture import CaptureRecord, decode_batch, tensor_array

#: Largest page of captures a request may ask for.
MAX_PAGE = 500
#: Hint of every answer that needs the capture location while it is not configured.
TURN_ON = ("captured data is off on this server: start it with --capture-location FOLDER or "
           "s3://bucket/prefix (EDGEFLEET_SERVER_CAPTURE_LOCATION), the folder or bucket the "
           "agents write to")


class CaptureOut(BaseModel):
    """One indexed capture record (``inference_time`` epoch s; ``file`` the batch file's key
    in the capture location, ``line`` counted from 1)."""

    id: int
    fleet: str
    device: str
    model_name: str
    model_version: str
    capture_id: str
    inference_time: float
    sampled: bool
    event: str | None
    file: str
    line: int


class CapturePage(BaseModel):
    """Captures, newest inference time first; pass ``next_before`` as ``before`` for more."""

    captures: list[CaptureOut]
    next_before: str | None


class HourCount(BaseModel):
    """Captures of one model on one device in one UTC hour (``hour_start`` epoch s)."""

    model_name: str
    hour_start: float
    records: int
    events: int


class DeviceCaptures(BaseModel):
    """A device's captured data: totals, records per hour, the newest captures."""

    device: str
    records: int
    events: int
    first_time: float | None = Field(description="Earliest inference time captured, epoch s.")
    last_time: float | None = Field(description="Latest inference time captured, epoch s.")
    hours: list[HourCount]
    page: CapturePage


class TensorOut(BaseModel):
    """A decoded tensor: numpy dtype name, shape, values as nested lists (C order)."""

    name: str
    dtype: str
    shape: list[int]
    values: Any


class AuxiliaryOut(BaseModel):
    """Auxiliary data as stored: its media type, size, bytes (base64) and, when they are
    UTF-8, the text."""

    name: str
    content_type: str
    size_bytes: int
    data_base64: str
    text: str | None


class CaptureDetail(CaptureOut):
    """A capture record with its tensors and auxiliary data decoded."""

    inputs: list[TensorOut]
    outputs: list[TensorOut]
    auxiliary_inputs: list[AuxiliaryOut]
    auxiliary_outputs: list[AuxiliaryOut]


class DriftPointOut(BaseModel):
    """One UTC day (``day`` epoch s of its start): the largest feature PSI over the trailing
    window, which feature, and the tensor rows counted."""

    day: float
    rows: int
    psi: float
    feature: str


class FeaturePsi(BaseModel):
    """A feature's PSI at a series' latest point."""

    feature: str
    psi: float


class DriftSeriesOut(BaseModel):
    """Drift of one model version's input tensor on one device."""

    model_name: str
    model_version: str
    tensor: str
    points: list[DriftPointOut]
    latest: list[FeaturePsi]


class DeviceDrift(BaseModel):
    """A device's drift series and how to read them (edgefleet.drift)."""

    device: str
    threshold: float = Field(description="PSI above which a feature has drifted.")
    min_rows: int = Field(description="Fewest rows a point is computed from.")
    window_days: int = Field(description="Days of captures behind each point.")
    series: list[DriftSeriesOut]


def _out(entry: CaptureEntry, key: str) -> CaptureOut:
    return CaptureOut(id=entry.id, fleet=entry.fleet, device=entry.device,
                      model_name=entry.model_name, model_version=entry.model_version,
                      capture_id=entry.capture_id, inference_time=entry.inference_time,
                      sampled=entry.sampled, event=entry.event, file=key, line=entry.line)


def _cursor(before: str | None) -> tuple[float, int] | None:
    if before is None:
        return None
    at, _, last = before.rpartition(":")
    try:
        parsed = float(at), int(last)
    except ValueError:
        raise InvalidArgument(f"before {before[:100]!r} is not a next_before value of an "
                              "earlier page") from None
    if not math.isfinite(parsed[0]):
        raise InvalidArgument("before must hold a finite time")
    return parsed


def list_captures(session: Session, *, device: str | None = None, model: str | None = None,
                  event: str | None = None, before: str | None = None,
                  limit: int = 100) -> CapturePage:
    """A page of captures, newest inference time first, optionally of one device, model
    (name) and event (one indexed range query).

    Raises:
        InvalidArgument: ``before`` is not a ``next_before`` of an earlier page, or ``limit``
            is not 1 to :data:`MAX_PAGE`.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"limit must be 1 to {MAX_PAGE}, not {limit}")
    query = (select(CaptureEntry, CaptureFile.key)
             .join(CaptureFile, CaptureEntry.file_id == CaptureFile.id)
             .order_by(CaptureEntry.inference_time.desc(), CaptureEntry.id.desc())
             .limit(limit + 1))
    for column, value in ((CaptureEntry.device, device), (CaptureEntry.model_name, model),
                          (CaptureEntry.event, event)):
        if value is not None:
            query = query.where(column == value)
    cursor = _cursor(before)
    if cursor is not None:
        query = query.where(or_(CaptureEntry.inference_time < cursor[0],
                                (CaptureEntry.inference_time == cursor[0])
                                & (CaptureEntry.id < cursor[1])))
    rows = session.execute(query).all()
    page = [_out(entry, key) for entry, key in rows[:limit]]
    more = len(rows) > limit
    return CapturePage(captures=page, next_before=(
        f"{page[-1].inference_time!r}:{page[-1].id}" if more else None))


@dataclass(frozen=True)
class Totals:
    """A device's capture totals (times epoch s; None without captures)."""

    records: int
    events: int
    first_time: float | None
    last_time: float | None
    updated_at: float | None


def device_totals(session: Session, device: str) -> Totals:
    """Records, events and time range of a device's captures (one primary-key read)."""
    row = session.get(CaptureDevice, device)
    if row is None:
        return Totals(0, 0, None, None, None)
    return Totals(row.records, row.events, row.first_time, row.last_time, row.updated_at)


def event_counts(session: Session, devices: list[str]) -> dict[str, int]:
    """Events captured per device, for the devices named (one query; absent: none)."""
    if not devices:
        return {}
    rows = session.execute(select(CaptureDevice.device, CaptureDevice.events).where(
        CaptureDevice.device.in_(devices), CaptureDevice.events > 0))
    return {device: events for device, events in rows}


def device_events(session: Session, device: str, *, scan: int = 5000) -> list[str]:
    """The distinct events (sorted) among the device's ``scan`` newest captures: the choices
    of an event filter (one bounded range query of the device's time index; an event only
    older captures have is left out)."""
    newest = (select(CaptureEntry.event).where(CaptureEntry.device == device)
              .order_by(CaptureEntry.inference_time.desc(), CaptureEntry.id.desc())
              .limit(scan).subquery())
    return list(session.scalars(select(newest.c.event).where(newest.c.event.is_not(None))
                                .distinct().order_by(newest.c.event)))


def hour_counts(session: Session, device: str) -> list[HourCount]:
    """Captures per model and UTC hour of inference time, oldest first (one aggregate over
    the hourly totals' primary key)."""
    rows = session.execute(
        select(CaptureHour.model_name, CaptureHour.hour, func.sum(CaptureHour.records),
               func.sum(CaptureHour.events))
        .where(CaptureHour.device == device)
        .group_by(CaptureHour.model_name, CaptureHour.hour)
        .order_by(CaptureHour.hour, CaptureHour.model_name))
    return [HourCount(model_name=model, hour_start=hour * 3600.0, records=int(records),
                      events=int(events)) for model, hour, records, events in rows]


def _known_device(session: Session, device: str) -> None:
    if session.get(CaptureDevice, device) is None and session.scalar(
            select(Device.id).where(Device.name == device)) is None:
        raise NotFound(f"device {device!r} is not registered and has no captured data")


def device_captures(session: Session, device: str, *, model: str | None = None,
                    event: str | None = None, before: str | None = None,
                    limit: int = 100) -> DeviceCaptures:
    """A device's totals, captures per hour and a page of its captures.

    Raises:
        NotFound: the device is neither registered nor in the capture index.
        InvalidArgument: as :func:`list_captures`.
    """
    _known_device(session, device)
    totals = device_totals(session, device)
    return DeviceCaptures(
        device=device, records=totals.records, events=totals.events,
        first_time=totals.first_time, last_time=totals.last_time,
        hours=hour_counts(session, device),
        page=list_captures(session, device=device, model=model, event=event, before=before,
                           limit=limit))


def get_capture(session: Session, capture: int) -> tuple[CaptureOut, int, int]:
    """An indexed capture, and the byte offset and length of its line in its batch file.

    Raises:
        NotFound: no capture with that id.
    """
    found = session.execute(select(CaptureEntry, CaptureFile.key).join(
        CaptureFile, CaptureEntry.file_id == CaptureFile.id).where(
        CaptureEntry.id == capture)).one_or_none()
    if found is None:
        raise NotFound(f"no captured record {capture}; list them with GET "
                       "/api/v1/devices/{name}/captures")
    entry, key = found
    return _out(entry, key), entry.offset, entry.length


def read_line(location: CaptureLocation | None, session: Session,
              capture: int) -> tuple[CaptureOut, bytes]:
    """The capture and its JSON line exactly as stored (a ranged read of its batch file).

    Raises:
        NotFound: no such capture, or its file is gone from the location.
        FailedPrecondition: the server has no capture location (:data:`TURN_ON`).
        Unavailable: the location cannot be read now.
    """
    if location is None:
        raise FailedPrecondition(TURN_ON)
    out, offset, length = get_capture(session, capture)
    return out, location.read(out.file, offset, length)


def decode_line(location: CaptureLocation, key: str, line: bytes) -> CaptureRecord:
    """Decode one stored line, fetching its raw payload files (``data-ref``) beside ``key``.

    Raises:
        InvalidArgument: the line is no longer a capture record (the file was replaced).
        NotFound, Unavailable: a raw payload file is missing or cannot be read.
    """
    return next(decode_batch(line, lambda ref: location.load_ref(key, ref)))


def _tensors(record: CaptureRecord, outputs: bool) -> list[TensorOut]:
    tensors = record.request.output_tensors if outputs else record.request.input_tensors
    result = []
    for tensor in tensors:
        array = tensor_array(tensor)
        result.append(TensorOut(name=tensor.name, dtype=str(array.dtype),
                                shape=list(array.shape), values=array.tolist()))
    return result


def auxiliary(line: bytes, record: CaptureRecord, outputs: bool) -> list[AuxiliaryOut]:
    """The auxiliary inputs (or outputs) of a decoded record; media types as ``line`` (the
    record's stored JSON) gives them."""
    section = "deviceFleetAuxiliaryOutputs" if outputs else "deviceFleetAuxiliaryInputs"
    types = [entry["observedContentType"] for entry in orjson.loads(line)[section]]
    items = record.request.auxiliary_outputs if outputs else record.request.auxiliary_inputs
    result = []
    for item, content_type in zip(items, types, strict=True):
        try:
            text: str | None = item.data.decode()
        except UnicodeDecodeError:
            text = None
        result.append(AuxiliaryOut(name=item.name, content_type=content_type,
                                   size_bytes=len(item.data),
                                   data_base64=base64.b64encode(item.data).decode(), text=text))
    return result


def capture_detail(out: CaptureOut, line: bytes, record: CaptureRecord) -> CaptureDetail:
    """The REST view of a decoded record (``line``: its JSON as stored)."""
    return CaptureDetail(**out.model_dump(), inputs=_tensors(record, False),
                         outputs=_tensors(record, True),
                         auxiliary_inputs=auxiliary(line, record, False),
                         auxiliary_outputs=auxiliary(line, record, True))


def tensors_npz(record: CaptureRecord) -> bytes:
    """The record's tensors as a numpy ``.npz`` archive: arrays ``input/<name>`` and
    ``output/<name>`` with their dtype and shape (``numpy.load`` reads it)."""
    arrays = {f"input/{t.name}": tensor_array(t) for t in record.request.input_tensors}
    arrays.update({f"output/{t.name}": tensor_array(t) for t in record.request.output_tensors})
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


def download(location: CaptureLocation, out: CaptureOut, line: bytes,
             format: str) -> tuple[bytes, str, str]:
    """A record as a file to download: ``(content, media type, file name)``. ``jsonl`` is its
    JSON line as stored (newline-terminated), ``npz`` its tensors (:func:`tensors_npz`).

    Raises:
        InvalidArgument: ``format`` is neither ``jsonl`` nor ``npz``.
        NotFound, Unavailable: as :func:`decode_line` (``npz`` only).
    """
    if format == "jsonl":
        return line + b"\n", "application/x-ndjson", f"capture-{out.id}.jsonl"
    if format == "npz":
        return (tensors_npz(decode_line(location, out.file, line)), "application/octet-stream",
                f"capture-{out.id}.npz")
    raise InvalidArgument(f"format must be jsonl or npz, not {format[:20]!r}")


def drift_out(session: Session, baselines: Baselines, device: str,
              days: int) -> DeviceDrift:
    """The REST view of :func:`edgefleet.fleet.drift_series.device_drift`.

    Raises:
        NotFound: the device is neither registered nor in the capture index.
    """
    _known_device(session, device)
    series = device_drift(session, baselines, device, days=days)
    return DeviceDrift(device=device, threshold=PSI_THRESHOLD, min_rows=MIN_ROWS,
                       window_days=WINDOW_DAYS, series=[DriftSeriesOut(
                           model_name=s.model_name, model_version=s.model_version,
                           tensor=s.tensor, points=[DriftPointOut(
                               day=p.day, rows=p.rows, psi=p.psi, feature=p.feature)
                               for p in s.points],
                           latest=[FeaturePsi(feature=f, psi=v) for f, v in s.latest])
                           for s in series])
