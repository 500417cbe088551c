"""What a control plane's database holds of the heartbeats of :class:`RemoteDevice`\\ s, read
straight from its tables (SQLite or PostgreSQL), and the checks that no write was torn.

A numbered heartbeat (``fleet_support.RemoteDevice.heartbeat``) writes its number ``n`` into
the device row (``agent_version`` ``seq-n`` and the agent metric ``sequence``), into the
device's model row (version ``vn``) and, when it is a history sample, into a
``heartbeat_samples`` row: every table a heartbeat batch writes tells which heartbeat wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from edgefleet.fleet.db.engine import make_engine
from edgefleet.fleet.db.models import Device, DeviceModel, HeartbeatSample


@dataclass
class HeartbeatRows:
    """Per device name: the number its device row holds (None: no numbered heartbeat), the
    numbers of its model rows and of its history samples; problems found while reading."""

    @property
    def samples_twice(self) -> int:
        """History samples of a heartbeat that has another (a retry stored again)."""
        return sum(len(numbers) - len(set(numbers)) for numbers in self.samples.values())

    device: dict[str, int | None] = field(default_factory=dict)
    models: dict[str, list[int]] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _number(text: str | None, prefix: str) -> int | None:
    if text is None or not text.startswith(prefix):
        return None
    return int(text.removeprefix(prefix))


def read_heartbeat_rows(database_url: str) -> HeartbeatRows:
    """The numbered heartbeats the database at ``database_url`` holds, with every row that
    disagrees with its device row (a torn write) or has no device (an orphan) in
    ``problems``."""
    engine = make_engine(database_url)
    rows = HeartbeatRows()
    try:
        with engine.connect() as connection:
            names: dict[int, str] = {}
            for device_id, name, version, metrics in connection.execute(select(
                    Device.id, Device.name, Device.agent_version, Device.agent_metrics)):
                names[device_id] = name
                seq = _number(version, "seq-")
                rows.device[name] = seq
                metric = {m.get("MetricName"): m.get("Value") for m in metrics or []}
                if seq is not None and metric.get("sequence") != seq:
                    rows.problems.append(f"{name}: agent_version seq-{seq} but metric "
                                         f"sequence {metric.get('sequence')}")
            for device_id, model, version in connection.execute(select(
                    DeviceModel.device_id, DeviceModel.model_name, DeviceModel.model_version)):
                name = names.get(device_id, f"<device id {device_id}>")
                if device_id not in names:
                    rows.problems.append(f"orphan model row {model!r} of device id {device_id}")
                seq = _number(version, "v")
                if seq is not None:
                    rows.models.setdefault(name, []).append(seq)
                    if rows.device.get(name) != seq:
                        rows.problems.append(f"{name}: model {model} v{seq} but device row "
                                             f"seq-{rows.device.get(name)}")
            for device_id, agent in connection.execute(select(HeartbeatSample.device_id,
                                                              HeartbeatSample.agent)):
                if device_id not in names:
                    rows.problems.append(f"orphan heartbeat sample of device id {device_id}")
                    continue
                seq = agent.get("sequence")
                if seq is not None:
                    name = names[device_id]
                    rows.samples.setdefault(name, []).append(int(seq))
                    if rows.device[name] is None or int(seq) > (rows.device[name] or 0):
                        rows.problems.append(f"{name}: sample of heartbeat {seq} is newer than "
                                             f"the device row's seq-{rows.device[name]}")
    finally:
        engine.dispose()
    return rows


def unexpected(rows: HeartbeatRows, acked: dict[str, set[int]],
               unknown: dict[str, set[int]] | None = None) -> tuple[list[str], list[str]]:
    """(lost, let in): acknowledged heartbeats that left no trace where they must (the latest
    acknowledged one of each device in its device row, unless a heartbeat sent later, with no
    answer, replaced it), and stored heartbeats that were neither acknowledged nor left without
    an answer (``unknown``: sent when the server died; either outcome is right)."""
    unknown = unknown or {}
    lost, let_in = [], []
    for name, numbers in acked.items():
        stored = rows.device.get(name)
        latest = max(numbers, default=None)
        later_unknown = {n for n in unknown.get(name, set()) if latest is None or n > latest}
        if latest is not None and stored != latest and stored not in later_unknown:
            lost.append(f"{name}: heartbeat {latest} acknowledged, device row holds {stored}")
    for name, stored in rows.device.items():
        allowed = acked.get(name, set()) | unknown.get(name, set())
        for seq in _present(stored, rows.samples.get(name, [])):
            if seq not in allowed:
                let_in.append(f"{name}: heartbeat {seq} stored, never acknowledged nor being sent")
    return lost, let_in


def _present(stored: int | None, samples: Iterable[int]) -> set[int]:
    return ({stored} if stored is not None else set()) | set(samples)
