"""The capture index: batch files of the capture location, read once, as database rows.

A background thread (:class:`CaptureIndex`, started and stopped with the app) scans the
capture location every ``capture_scan_seconds``. A scan walks a bounded slice of the
location's keys in order (:meth:`CaptureLocation.list_after`, continuing where the previous
scan stopped and starting over at the end), skips the files already in ``capture_files``, and
indexes at most :data:`MAX_FILES_PER_SCAN` files (:data:`MAX_BYTES_PER_SCAN` bytes). Each file
is one transaction: its ``capture_files`` row (the unique key makes a file indexed at most
once, also when several server processes scan the same location), one ``capture_entries``
row per record, and the ``capture_hours`` and ``capture_devices`` totals.

Per record the index keeps fleet, device, model name and version, capture id, inference time
(the record's own ``inferenceTime``: replayed historical data keeps its date) and its UTC hour,
the sampled flag, where its line is, and an *event*: the ``"event"`` string (at most
:data:`MAX_EVENT_CHARS` characters) of the first auxiliary input or output in JSON whose
top-level object has one, e.g. ``{"event": "anomaly", "score": 0.93}``.

When the record's model version was packaged by this server with a drift baseline
(:class:`edgefleet.fleet.drift_series.Baselines`), the input tensor the baseline describes is
decoded and its :func:`edgefleet.drift.bin_counts` are added to the hour's counts.

A malformed line (not a capture record of docs/capture.md) is counted in its file's row and
skipped; a file that cannot be read now (store unreachable) is tried again at the next scan.
Both are logged at most once a minute, as one line with the counts since the last one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.drift import bin_counts
from edgefleet.errors import EdgefleetError, Unavailable
from edgefleet.fleet.capture_location import CaptureLocation
from edgefleet.fleet.db.models import CaptureDevice, CaptureEntry, CaptureFile, CaptureHour
from edgefleet.fleet.drift_series import Baselines
from edgefleet.wire.capture import AuxiliaryEncoding, CaptureRecord, decode_batch

log = logging.getLogger(__name__)

#: Most batch files one scan indexes, and most bytes of batch files it reads.
MAX_FILES_PER_SCAN = 200
MAX_BYTES_PER_SCAN = 64 << 20
#: Keys one scan lists at most (the next scan continues after them).
MAX_KEYS_PER_SCAN = 5000
#: Longest event string kept; longer ones are ignored.
MAX_EVENT_CHARS = 64
#: Column limits of capture_entries: a record with longer names is malformed.
_LIMITS = {"deviceFleetName": 255, "deviceId": 255, "modelName": 255, "modelVersion": 64,
           "eventId": 256}
_AUX = ("deviceFleetAuxiliaryInputs", "deviceFleetAuxiliaryOutputs")


@dataclass
class IndexedRecord:
    """What the index keeps of one record (times in epoch s; ``offset``/``length`` in bytes
    of its line in the batch file, ``line`` from 1)."""

    line: int
    offset: int
    length: int
    fleet: str
    device: str
    model_name: str
    model_version: str
    capture_id: str
    inference_time: float
    sampled: bool
    event: str | None
    drift_rows: int = 0
    drift_counts: list[list[int]] | None = None


@dataclass
class ParsedFile:
    """A batch file's records and its malformed lines (``errors``: line number and reason)."""

    records: list[IndexedRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    drift_errors: list[str] = field(default_factory=list)


class RateLimitedLog:
    """Counts problems and logs them as one WARNING line at most every ``period`` seconds."""

    def __init__(self, what: str, period: float = 60.0) -> None:
        self._what = what
        self._period = period
        self._next = 0.0
        self._count = 0
        self._latest = ""
        self._lock = threading.Lock()

    def add(self, count: int, latest: str) -> None:
        """Count ``count`` problems, ``latest`` describing the newest; log if due."""
        with self._lock:
            self._count += count
            self._latest = latest
            now = time.monotonic()
            if now < self._next:
                return
            self._next = now + self._period
            total, self._count = self._count, 0
        log.warning("capture index: %d %s since the last report (latest: %s)", total,
                    self._what, latest[:500])


def _event(record: CaptureRecord) -> str | None:
    for aux in (*record.request.auxiliary_inputs, *record.request.auxiliary_outputs):
        if aux.encoding is not AuxiliaryEncoding.JSON:
            continue
        try:
            document = orjson.loads(aux.data)
        except orjson.JSONDecodeError:
            continue
        event = document.get("event") if isinstance(document, dict) else None
        if isinstance(event, str) and 0 < len(event) <= MAX_EVENT_CHARS:
            return event
    return None


def _needed(document: dict[str, Any], tensor: str | None) -> bytes:
    """The record with only what the index decodes: the baseline's input tensor and the JSON
    auxiliary data (so raw payloads of other tensors are never fetched)."""
    inputs = document.get("deviceFleetInputs")
    kept = dict(document)
    kept["deviceFleetInputs"] = [e for e in inputs if isinstance(e, dict)
                                 and e.get("name") == tensor] if isinstance(inputs, list) else []
    kept["deviceFleetOutputs"] = []
    for section in _AUX:
        entries = document.get(section)
        kept[section] = [e for e in entries if isinstance(e, dict) and e.get(
            "observedContentType") == "application/json"] if isinstance(entries, list) else []
    return orjson.dumps(kept)


def parse_file(key: str, data: bytes, location: CaptureLocation,
               baselines: Baselines) -> ParsedFile:
    """Read the records of the batch file ``key`` (its bytes ``data``) for the index.

    Lines that are not capture records are reported in :attr:`ParsedFile.errors`, never
    raised; a record whose baseline tensor cannot be counted (wrong features, not a number)
    keeps its row without drift counts and is reported in :attr:`ParsedFile.drift_errors`.
    """
    parsed = ParsedFile()
    offset = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            document = orjson.loads(line)
            meta = document["eventMetadata"]
            baseline = baselines.get(str(meta["modelName"]), str(meta["modelVersion"]))
            record = next(decode_batch(
                _needed(document, baseline.tensor if baseline else None),
                lambda ref: location.load_ref(key, ref)))
            for name, limit in _LIMITS.items():
                if len(meta[name]) > limit:
                    raise ValueError(f"{name} is longer than {limit} characters")
        except Unavailable:
            raise  # the store, not the record, failed: the whole file is read again later
        except (EdgefleetError, KeyError, TypeError, ValueError, StopIteration) as exc:
            reason = exc.message if isinstance(exc, EdgefleetError) else (
                f"{type(exc).__name__}: {exc}")
            parsed.errors.append(f"{key} line {number}: {reason}")
            continue
        request = record.request
        indexed = IndexedRecord(
            number, start, len(line), record.device.fleet, record.device.device,
            request.model_alias, request.model_version, request.capture_id,
            request.inference_time_ns / 1e9, request.sampled, _event(record))
        if baseline is not None:
            arrays = record.input_arrays
            if baseline.tensor not in arrays:
                parsed.drift_errors.append(f"{key} line {number}: no input tensor "
                                           f"{baseline.tensor!r} (the baseline's)")
            else:
                array = arrays[baseline.tensor]
                try:
                    indexed.drift_counts = bin_counts(baseline, array)
                    indexed.drift_rows = int(array.shape[0])
                except EdgefleetError as exc:
                    parsed.drift_errors.append(f"{key} line {number}: {exc.message}")
        parsed.records.append(indexed)
    return parsed


def _add_counts(into: list[list[int]] | None, counts: list[list[int]]) -> list[list[int]] | None:
    """Element-wise sum; None when the shapes differ (a record counted against another
    baseline layout is left out rather than mixed in)."""
    if into is None:
        return [list(feature) for feature in counts]
    if len(into) != len(counts) or any(len(a) != len(b) for a, b in zip(into, counts,
                                                                          strict=True)):
        return None
    return [[x + y for x, y in zip(a, b, strict=True)] for a, b in zip(into, counts,
                                                                       strict=True)]


def _hour(at: float) -> int:
    return math.floor(at / 3600)


def store_file(session: Session, key: str, size: int, parsed: ParsedFile, now: float) -> None:
    """Write one indexed file in ``session``'s transaction (see the module docstring).

    Raises:
        sqlalchemy.exc.IntegrityError: another process indexed ``key`` meanwhile.
    """
    file = CaptureFile(key=key, size_bytes=size, records=len(parsed.records),
                       errors=len(parsed.errors),
                       error=parsed.errors[0][:2000] if parsed.errors else None, indexed_at=now)
    session.add(file)
    session.flush()
    if not parsed.records:
        return
    session.execute(insert(CaptureEntry), [{
        "file_id": file.id, "line": r.line, "offset": r.offset, "length": r.length,
        "fleet": r.fleet, "device": r.device, "model_name": r.model_name,
        "model_version": r.model_version, "capture_id": r.capture_id,
        "inference_time": r.inference_time, "hour": _hour(r.inference_time),
        "sampled": r.sampled, "event": r.event} for r in parsed.records])
    hours: dict[tuple[str, str, str, int], list[IndexedRecord]] = {}
    for r in parsed.records:
        hours.setdefault((r.device, r.model_name, r.model_version, _hour(r.inference_time)),
                         []).append(r)
    for pk, records in hours.items():
        row = session.get(CaptureHour, pk, with_for_update=True)
        if row is None:
            row = CaptureHour(device=pk[0], model_name=pk[1], model_version=pk[2], hour=pk[3],
                              fleet=records[0].fleet, records=0, events=0, drift_rows=0,
                              drift_counts=None)
            session.add(row)
        row.records += len(records)
        row.events += sum(1 for r in records if r.event is not None)
        counts = row.drift_counts
        for r in records:
            if r.drift_counts is not None:
                summed = _add_counts(counts, r.drift_counts)
                if summed is not None:
                    counts = summed
                    row.drift_rows += r.drift_rows
        row.drift_counts = counts  # a new list: the JSON column sees the change
    devices: dict[str, list[IndexedRecord]] = {}
    for r in parsed.records:
        devices.setdefault(r.device, []).append(r)
    for name, records in devices.items():
        times = [r.inference_time for r in records]
        events = sum(1 for r in records if r.event is not None)
        device = session.get(CaptureDevice, name, with_for_update=True)
        if device is None:
            session.add(CaptureDevice(device=name, fleet=records[0].fleet,
                                      records=len(records), events=events,
                                      first_time=min(times), last_time=max(times),
                                      updated_at=now))
        else:
            device.records += len(records)
            device.events += events
            device.first_time = min(device.first_time, *times)
            device.last_time = max(device.last_time, *times)
            device.updated_at = now


@dataclass
class ScanResult:
    """What one scan did: files and records indexed, malformed lines, files to read again
    later, and whether work was left for the next scan (a bound was reached)."""

    files: int = 0
    records: int = 0
    malformed: int = 0
    retry: int = 0
    more: bool = False


class CaptureIndex:
    """Indexes a capture location into the database, in a background thread or on demand.

    Args:
        sessions: the control plane's session factory.
        location: where the batch files are.
        baselines: the drift baselines of packaged model versions.
        scan_seconds: pause between scans.
        clock: epoch seconds (tests may pass their own).
    """

    def __init__(self, sessions: sessionmaker[Session], location: CaptureLocation,
                 baselines: Baselines, *, scan_seconds: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self.location = location
        self.baselines = baselines
        self.scan_seconds = scan_seconds
        self._clock = clock
        self._after = ""
        self._scan_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._malformed = RateLimitedLog("malformed capture records")
        self._unreadable = RateLimitedLog("capture files or scans that failed (tried again)")
        self._drift = RateLimitedLog("captures left out of drift counts")

    def scan_once(self) -> ScanResult:
        """One bounded scan (thread-safe: concurrent calls take turns)."""
        with self._scan_lock:
            return self._scan()

    def scan_all(self, max_scans: int = 10_000) -> ScanResult:
        """Scan until nothing is left (tests, and catching up from the command line)."""
        total = ScanResult()
        for _ in range(max_scans):
            result = self.scan_once()
            total.files += result.files
            total.records += result.records
            total.malformed += result.malformed
            total.retry += result.retry
            if not result.more:
                break
        return total

    def _known(self, keys: list[str]) -> set[str]:
        known: set[str] = set()
        with self.sessions() as session:
            for i in range(0, len(keys), 500):
                known.update(session.scalars(select(CaptureFile.key).where(
                    CaptureFile.key.in_(keys[i:i + 500]))))
        return known

    def _scan(self) -> ScanResult:
        result = ScanResult()
        listing = self.location.list_after(self._after, MAX_KEYS_PER_SCAN)
        known = self._known([key for key, _ in listing.files])
        budget = MAX_BYTES_PER_SCAN
        for key, size in listing.files:
            if key in known:
                continue
            if result.files >= MAX_FILES_PER_SCAN or (size > budget and result.files):
                # Continue right before this file next time.
                self._after = max(self._after, _before(key))
                result.more = True
                return result
            budget -= size
            try:
                self._index(key, size, result)
            except Exception as exc:  # unreadable now (or the database failed): the next
                result.retry += 1     # pass over the key tries again; later files go on
                reason = exc.message if isinstance(exc, EdgefleetError) else repr(exc)
                self._unreadable.add(1, f"{key}: {reason}")
        self._after = "" if listing.complete else listing.next_after
        result.more = not listing.complete
        return result

    def _index(self, key: str, size: int, result: ScanResult) -> None:
        parsed = parse_file(key, self.location.read(key), self.location, self.baselines)
        try:
            with self.sessions.begin() as session:
                store_file(session, key, size, parsed, self._clock())
        except IntegrityError:
            if self._known([key]):
                return  # another server process indexed it first
            raise  # another constraint: not indexed; logged, and tried again next scan
        result.files += 1
        result.records += len(parsed.records)
        result.malformed += len(parsed.errors)
        if parsed.errors:
            self._malformed.add(len(parsed.errors), parsed.errors[-1])
        if parsed.drift_errors:
            self._drift.add(len(parsed.drift_errors), parsed.drift_errors[-1])

    def _run(self) -> None:
        while True:
            try:
                more = self.scan_once().more
            except Exception as exc:  # never let the thread die: the next scan tries again
                self._unreadable.add(1, f"scan of {self.location.describe()}: "
                                        f"{type(exc).__name__}: {exc}")
                more = False
            if self._stop.wait(min(self.scan_seconds, 0.2) if more else self.scan_seconds):
                return

    def start(self) -> None:
        """Start the scanning thread (daemon; it scans at once, then every scan_seconds)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="capture-index", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _before(key: str) -> str:
    """A string that sorts right before ``key`` and after every smaller key (``key`` with its
    last character removed sorts before it; keys between are longer prefixes of ``key``,
    which are never batch files because they lack its ``.jsonl`` ending)."""
    return key[:-1]
