"""The dashboard's own aggregate queries, and how the capture page lays out a record: what
the fleet services do not answer already.

Every query function costs a fixed number of queries whatever the fleet's size (a page of
device tiles: three), and none loads more rows than it shows. States use the fleet report's
definition (:mod:`edgefleet.fleet.reports`): *online* is a heartbeat at or after
``now - connected_window_seconds``; *offline* an older one; *never* no heartbeat yet.

:func:`tensor_table` and :func:`auxiliary_text` turn a decoded capture record
(:mod:`edgefleet.fleet.captures`) into what a person can read on one page: tensors as tables
of their first values, auxiliary data as (pretty-printed) text, both cut at a bounded size.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from edgefleet.fleet.db.models import DeploymentPlan, Device, DeviceModel, Fleet, Stage, StageDevice

State = Literal["online", "offline", "never"]
STATES: tuple[State, ...] = ("online", "offline", "never")


@dataclass(frozen=True)
class StateCounts:
    """Devices of a fleet per state."""

    registered: int
    online: int
    offline: int
    never: int


@dataclass
class DeviceTile:
    """What a device's tile shows: state, latest heartbeat (epoch s), agent version, the
    models it serves (name, version) and its status in the latest stage that selected it."""

    name: str
    state: State
    latest_heartbeat: float | None
    agent_version: str | None
    models: list[tuple[str, str | None]] = field(default_factory=list)
    deployment: str | None = None


@dataclass(frozen=True)
class Failure:
    """A device that failed a stage (and, under ROLLBACK_ON_FAILURE, rolled back), with the
    reasons the agent reported (epoch s in ``at``)."""

    device: str
    plan: str
    stage: str
    at: float
    message: str


def fleet_names(session: Session) -> list[str]:
    """Every fleet name, sorted."""
    return list(session.scalars(select(Fleet.name).order_by(Fleet.name)))


def _state_filter(state: State | None, cutoff: float) -> ColumnElement[bool] | None:
    if state == "online":
        return Device.last_heartbeat_at >= cutoff
    if state == "offline":
        return Device.last_heartbeat_at < cutoff
    if state == "never":
        return Device.last_heartbeat_at.is_(None)
    return None


def state_counts(session: Session, fleet_id: int, cutoff: float) -> StateCounts:
    """Devices of the fleet per state (one aggregate query on the fleet/heartbeat index)."""
    registered, online, never = session.execute(
        select(func.count(), func.count(case((Device.last_heartbeat_at >= cutoff, 1))),
               func.count(case((Device.last_heartbeat_at.is_(None), 1))))
        .where(Device.fleet_id == fleet_id)).one()
    return StateCounts(registered, online, registered - online - never, never)


def device_tiles(session: Session, fleet_id: int, cutoff: float, *, state: State | None,
                 offset: int, limit: int) -> list[DeviceTile]:
    """One page of the fleet's devices by name, optionally of one state."""
    query = (select(Device.id, Device.name, Device.last_heartbeat_at, Device.agent_version)
             .where(Device.fleet_id == fleet_id).order_by(Device.name)
             .offset(offset).limit(limit))
    condition = _state_filter(state, cutoff)
    if condition is not None:
        query = query.where(condition)
    tiles: dict[int, DeviceTile] = {}
    for device_id, name, latest, version in session.execute(query):
        tiles[device_id] = DeviceTile(
            name, "never" if latest is None else "online" if latest >= cutoff else "offline",
            latest, version)
    if not tiles:
        return []
    for device_id, model, model_version in session.execute(
            select(DeviceModel.device_id, DeviceModel.model_name, DeviceModel.model_version)
            .where(DeviceModel.device_id.in_(tiles)).order_by(DeviceModel.model_name)):
        tiles[device_id].models.append((model, model_version))
    for device_id, status in session.execute(
            select(StageDevice.device_id, StageDevice.status)
            .join(Stage, StageDevice.stage_id == Stage.id)
            .where(StageDevice.device_id.in_(tiles))
            .order_by(Stage.started_at, Stage.id)):
        tiles[device_id].deployment = status  # ordered: the latest stage's status stays
    return list(tiles.values())


def recent_failures(session: Session, limit: int = 20) -> list[Failure]:
    """The latest failed stage devices, newest first."""
    rows = session.execute(
        select(Device.name, DeploymentPlan.name, Stage.name, StageDevice.updated_at,
               StageDevice.status_message)
        .join(Stage, StageDevice.stage_id == Stage.id)
        .join(DeploymentPlan, Stage.plan_id == DeploymentPlan.id)
        .join(Device, StageDevice.device_id == Device.id)
        .where(StageDevice.status == "FAILED")
        .order_by(StageDevice.updated_at.desc()).limit(limit))
    return [Failure(*row) for row in rows]


def device_id(session: Session, name: str) -> int | None:
    """The id of device ``name``, or None."""
    return session.scalar(select(Device.id).where(Device.name == name))


# -- a capture record on one page -------------------------------------------------------------

#: Rows and columns of a tensor's table at most (the windfarm model's [24, 24] window fits).
MAX_ROWS, MAX_COLUMNS = 32, 24
#: A 1-D tensor is shown this many values a row.
ROW_WIDTH = 10
#: Characters of an auxiliary text shown at most.
MAX_TEXT_CHARS = 20_000
#: Significant digits of a float shown, by its size in bytes: enough to read a window of
#: sensor values at a glance (float32 holds about 7); the downloads keep every bit.
_DIGITS = {2: 4, 4: 5, 8: 6}
#: A float tensor whose largest magnitude lies in this range is shown in fixed point, every
#: value with the same decimals (as numpy prints arrays: the points line up); others in
#: scientific notation.
FIXED_RANGE = (1e-3, 1e5)


@dataclass(frozen=True)
class TensorTable:
    """A tensor as the capture page shows it.

    Attributes:
        name, dtype, shape: the tensor's (numpy dtype name; shape ``()`` for a scalar).
        size: its number of values.
        columns: column headers: indices of the last axis (a 1-D tensor longer than
            :data:`ROW_WIDTH` is wrapped: offsets ``+0`` to ``+9`` within the row).
        rows: ``(label, formatted values)``; a label is the row's index (``[i, j]`` over the
            leading axes of a tensor with three or more), or a wrapped row's first index.
        note: what is left out of the table, for a person ("" when nothing is).
        summary: ``min ... · max ... · mean ...`` of its finite values ("" without any, or
            for a single value).
        rounding: how floats are rounded for the page, e.g. ``4 decimals`` ("" for integers).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    note: str
    summary: str
    rounding: str


def _format(array: np.ndarray) -> tuple[str, str]:
    """The format spec of the tensor's values, and how it rounds them."""
    if array.dtype.kind != "f":
        return "", ""
    digits = _DIGITS.get(array.dtype.itemsize, 7)
    finite = np.abs(array[np.isfinite(array)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest == 0.0:
        return "g", ""
    if FIXED_RANGE[0] <= largest < FIXED_RANGE[1]:
        decimals = max(digits - 1 - math.floor(math.log10(largest)), 0)
        return f".{decimals}f", f"{decimals} decimal{'s' if decimals != 1 else ''}"
    return f".{digits - 1}e", f"{digits} significant digits"


def _summary(array: np.ndarray, spec: str) -> str:
    values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if values.size == 0:
        return ""
    low, high = (format(v.item(), spec) for v in (values.min(), values.max()))
    mean = format(values.astype(np.float64).mean(), spec or ".6g")
    skipped = array.size - values.size
    return f"min {low} · max {high} · mean {mean}" + (
        f" · {skipped:,} NaN or infinite" if skipped else "")


def _labels(shape: tuple[int, ...], count: int) -> list[str]:
    """Labels of the first ``count`` rows of a tensor laid out as rows x last axis."""
    if len(shape) <= 1:
        return [""]
    if len(shape) == 2:
        return [str(row) for row in range(count)]
    leading = np.unravel_index(np.arange(count), shape[:-1])
    return ["[" + ", ".join(str(int(i)) for i in index) + "]"
            for index in zip(*leading, strict=True)]


def tensor_table(name: str, array: np.ndarray) -> TensorTable:
    """``array`` (a captured tensor of any shape, numeric dtype) as at most
    :data:`MAX_ROWS` x :data:`MAX_COLUMNS` formatted values: a 2-D tensor row by row, a 1-D
    one :data:`ROW_WIDTH` values a row, higher ones with the last axis as columns and a row
    per index of the others."""
    spec, rounding = _format(array)
    columns: list[str] = []
    rows: list[tuple[str, list[str]]] = []
    cut, shown = "", 0
    if array.ndim == 1 and array.size > ROW_WIDTH:
        shown = min(array.size, MAX_ROWS * ROW_WIDTH)
        values = [format(v, spec) for v in array[:shown].tolist()]
        columns = [f"+{c}" for c in range(ROW_WIDTH)]
        rows = [(str(at), values[at:at + ROW_WIDTH]) for at in range(0, shown, ROW_WIDTH)]
        if shown < array.size:
            cut = f"the first {shown:,} of {array.size:,} values"
    elif array.size:
        grid = array.reshape(1, -1) if array.ndim < 2 else array.reshape(-1, array.shape[-1])
        count, width = min(grid.shape[0], MAX_ROWS), min(grid.shape[1], MAX_COLUMNS)
        columns = [str(c) for c in range(width)]
        rows = [(label, [format(v, spec) for v in values]) for label, values in zip(
            _labels(array.shape, count), grid[:count, :width].tolist(), strict=True)]
        shown = count * width
        cut = " and ".join(f"the first {part:,} of {total:,} {noun}"
                           for part, total, noun in ((count, grid.shape[0], "rows"),
                                                     (width, grid.shape[1], "columns"))
                           if part < total)
    note = (f"Showing {cut}: {array.size - shown:,} more values are in the downloads (JSON "
            "line or .npz)." if cut else "")
    return TensorTable(name, str(array.dtype), tuple(array.shape), int(array.size), columns,
                       rows, note, _summary(array, spec) if array.size > 1 else "",
                       rounding)


def auxiliary_text(text: str | None, content_type: str) -> tuple[str | None, int]:
    """Auxiliary data for reading: JSON (by ``content_type``, or text that is a JSON object
    or array) indented by two spaces, at most :data:`MAX_TEXT_CHARS` characters; and how many
    characters were cut. None when the data is not UTF-8 text."""
    if text is None:
        return None, 0
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError):  # not JSON after all: shown as it is
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return text[:MAX_TEXT_CHARS], max(len(text) - MAX_TEXT_CHARS, 0)
