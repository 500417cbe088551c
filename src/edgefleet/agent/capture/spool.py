"""The durable capture spool: a SQLite database that holds every acknowledged capture until stored.

With ``sagemaker_edge_db_enable`` on, CaptureData answers OK only after the capture is committed
here, so a crash (``kill -9``) or a power loss after the answer loses nothing: the restarted agent
delivers what the spool holds.

Durability settings and why:

* ``journal_mode=WAL``: readers (the flusher loading a batch) do not block the writer.
* Few pages per commit: a capture's commit writes the records table's last page and nothing
  else (``seq`` is a plain rowid, no AUTOINCREMENT counter; the index on ``batch`` leaves out
  captures not yet in a batch).
* SQLite's automatic checkpoint (every 1000 WAL pages) stays: it keeps the WAL file at a fixed
  size, and overwriting a file is cheaper to fsync than growing it (measured: letting the WAL
  grow to 16k pages made commits 20-30% slower).
* ``synchronous=FULL``: every commit fsyncs the WAL. NORMAL would survive a process crash but may
  lose the last commits on a power loss, which the acknowledgement promises not to. The cost is
  paid once per group of captures: the first CaptureData call that finds no commit running
  commits everything queued, the calls that arrive meanwhile wait and share the next commit (group
  commit), so the fsync rate does not bound the capture rate.

Exactly-once delivery: captures are assigned to a batch (key and members stored) in a
transaction before the sink is called; after a crash the same batch is stored again under the same
key, which overwrites what a half-finished attempt left. A batch's records are deleted in the same
transaction that remembers their ids as finished, so a client retrying a capture that was stored
gets ALREADY_EXISTS instead of a duplicate.

Large captures: a capture whose packed size exceeds ``FILE_THRESHOLD`` keeps its bytes in a file
of the folder ``<spool>-payloads`` beside the database, written and fsynced (with the folder)
before the row that names it commits; the row is then small. Inside SQLite a 600 KB row is
rewritten whole when it joins a batch, copied again by every checkpoint and walked page by page
when deleted. A file that no row names (a crash between the two writes) is removed at the next
start; a named file that has gone missing when its capture is read back (see below) makes that
capture FAILURE instead of stopping delivery.

Reading back: the captures this process committed are also kept in memory (at most
``queue_limit`` of them and ``RECENT_MAX_BYTES``) until their batch forms, so the flusher does not
read and decode their rows and payload files again; captures beyond that, and everything after a
restart, are read back from the database.

Budget: ``max_bytes`` counts the payload bytes of held captures (tensor and auxiliary bytes plus a
small header each); SQLite reuses freed pages, so the file stays near its peak size. When a new
capture does not fit, the ``refuse`` policy answers RESOURCE_EXHAUSTED and ``drop-oldest`` deletes
the oldest captures not yet in a batch (the batch being delivered stays whole, so the budget can be
exceeded by at most one batch).
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import orjson

from edgefleet.agent.capture.batcher import Batch, Layout
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    CapturedAuxiliary,
    CapturedTensor,
    CaptureRequest,
    CaptureStatus,
)
from edgefleet.errors import EdgefleetError, ResourceExhausted

log = logging.getLogger(__name__)

#: Packed captures above this many bytes keep their bytes in a file beside the spool (see above).
FILE_THRESHOLD = 64 << 10

#: Seconds between two log lines about dropped captures.
_DROP_LOG_INTERVAL = 10.0

#: Bytes of committed captures kept in memory for the flusher at most (see ``_recent``).
RECENT_MAX_BYTES = 64 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    capture_id TEXT NOT NULL,
    directory TEXT NOT NULL,
    size INTEGER NOT NULL,
    batch INTEGER,
    body BLOB NOT NULL,
    file TEXT);
DROP INDEX IF EXISTS records_batch;
CREATE INDEX IF NOT EXISTS records_batched ON records (batch) WHERE batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS finished (
    capture_id TEXT PRIMARY KEY, status INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS finished_expires ON finished (expires);
"""

OverflowPolicy = Literal["refuse", "drop-oldest"]

#: Captures committed by one multi-row INSERT at most (5 parameters each, far below SQLite's
#: limit of 32766 parameters per statement); larger groups use a transaction.
_ROWS_PER_INSERT = 64


@lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_rows(count: int) -> str:
    """The INSERT statement of ``count`` records (5 parameters each)."""
    return ("INSERT INTO records (capture_id, directory, size, body, file) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * count))

#: A spooled capture as read back: ``(capture_id, body, file)``.
_Row = tuple[str, bytes, str | None]


@dataclass(slots=True)
class _Pending:
    """A capture waiting to be committed; ``done`` once committed or failed (``error``)."""

    request: CaptureRequest
    body: bytes  # empty when the bytes are in ``file``
    directory: str
    wait: bool
    size: int  # packed size, counted against the budget
    file: str | None = None
    done: bool = False
    error: EdgefleetError | None = None


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a spool opened after a stop holds.

    Attributes:
        in_progress: ids of captures not yet stored, oldest first.
        finished: ``(capture_id, status, expires)`` of recently finished captures, ``expires`` a
            Unix time, in order of expiry.
    """

    in_progress: list[str]
    finished: list[tuple[str, CaptureStatus, float]] = field(default_factory=list)


class Spool:
    """SQLite spool of captures; a :class:`~edgefleet.agent.capture.batcher.BatchSource`.

    Args:
        path: the database file (its folder is created).
        layout: folder layout used to name batches.
        max_bytes: budget of held captures, in bytes.
        policy: what to do when the budget is reached (see the module docstring).
        queue_limit: captures waiting to be committed at most
            (``capture_data_buffer_size``).
        status_ttl: seconds finished ids are remembered (``edgefleet_capture_status_ttl_seconds``).
        on_dropped: called with the ids of captures given up (dropped by ``drop-oldest``, or
            not written for a caller that did not wait), outside any lock.

    Raises:
        sqlite3.Error, OSError: the database cannot be opened or created.
    """

    def __init__(self, path: Path, layout: Layout, *, max_bytes: int, policy: OverflowPolicy,
                 queue_limit: int, status_ttl: float,
                 on_dropped: Callable[[list[str]], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._layout = layout
        self._max_bytes = max_bytes
        self._policy = policy
        self._queue_limit = queue_limit
        self._ttl = status_ttl
        self._on_dropped = on_dropped
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        if "file" not in {row[1] for row in self._db.execute("PRAGMA table_info(records)")}:
            self._db.execute("ALTER TABLE records ADD COLUMN file TEXT")  # an older spool
        self.payloads = path.parent / f"{path.stem}-payloads"
        self.payloads.mkdir(mode=0o700, exist_ok=True)
        self._remove_orphan_payloads()
        self._db_lock = threading.Lock()
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('stream', ?)",
                         (uuid.uuid4().hex[:12],))
        self.stream: str = self._db.execute(
            "SELECT value FROM meta WHERE key = 'stream'").fetchone()[0]
        count, held, unbatched = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0), count(*) - count(batch) FROM records"
        ).fetchone()
        self._records: int = count
        self._bytes: int = held
        self._unbatched: int = unbatched
        self._reopened: list[int] = [
            row[0] for row in self._db.execute("SELECT id FROM batches ORDER BY id")]
        self.dropped = 0
        self._dropped_logged = 0
        self._drop_logged_at = 0.0
        self._queue: list[_Pending] = []
        self._queued_bytes = 0
        self._unwaited = 0
        self._committing = False
        self._closing = False
        self._queue_lock = threading.Lock()
        self._committed = threading.Condition(self._queue_lock)
        self._writer_wanted = threading.Condition(self._queue_lock)
        self._woken = False
        self._wanted = 1  # what the blocked wait() waits for: notify only then (saves wake-ups)
        self._changed = threading.Condition()
        # Captures committed by this process and not yet in a batch, by seq: the flusher takes
        # them from here instead of reading and decoding their rows (and payload files) again.
        # Bounded (``queue_limit`` captures, RECENT_MAX_BYTES); what is not here is read back.
        # Guarded by the database lock.
        self._recent: dict[int, tuple[CaptureRequest, int]] = {}  # seq: (capture, packed size)
        self._recent_bytes = 0
        self._writer = threading.Thread(target=self._write_loop, name="capture-spool-writer",
                                        daemon=True)

    # -- state after a restart ---------------------------------------------------------------
    def recovered(self) -> Recovered:
        """Ids this spool holds and remembers, to seed the status table after a restart."""
        with self._db_lock:
            held = [row[0] for row in self._db.execute(
                "SELECT capture_id FROM records ORDER BY seq")]
            finished = [(row[0], CaptureStatus(row[1]), row[2]) for row in self._db.execute(
                "SELECT capture_id, status, expires FROM finished WHERE expires > ? "
                "ORDER BY expires", (time.time(),))]
        return Recovered(held, finished)

    @property
    def records(self) -> int:
        """Captures held (committed, not yet stored)."""
        return self._records

    @property
    def bytes(self) -> int:
        """Bytes of held captures, as counted against ``max_bytes``."""
        return self._bytes

    # -- writing -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (it commits captures appended without ``wait``)."""
        self._writer.start()

    def append(self, request: CaptureRequest, directory: str, *, wait: bool) -> None:
        """Commit a capture to the spool.

        Args:
            request: the capture.
            directory: its batch folder (``Layout.directory``).
            wait: block until the capture is committed (fsynced). Concurrent callers share
                commits (group commit). Without ``wait`` the capture is committed soon by the
                writer thread and, if that fails, passed to ``on_dropped``.

        Raises:
            ResourceExhausted: ``queue_limit`` captures wait to be committed, or the budget is
                reached under the ``refuse`` policy, or the capture alone exceeds the budget, or
                the disk is full.
            EdgefleetError: the database could not be written (INTERNAL; the message says why).
        """
        body = pack_request(request)
        size = len(body)
        if size > self._max_bytes:
            raise ResourceExhausted(
                f"capture of {size} bytes exceeds the whole capture spool budget "
                f"(edgefleet_capture_spool_max_bytes = {self._max_bytes}); send a smaller "
                f"capture or raise that key")
        file = None
        if size > FILE_THRESHOLD:  # written (and fsynced) here, in parallel with other callers
            with self._queue_lock:  # do not write a file only to throw it away
                refusal = self._refusal(size)
            if refusal is not None:
                raise refusal
            file, body = self._write_payload(body), b""
        pending = _Pending(request, body, directory, wait, size, file)
        with self._queue_lock:
            refusal = self._refusal(size)
            if refusal is None:
                self._queue.append(pending)
                self._queued_bytes += size
                if not wait:
                    self._unwaited += 1
                    self._writer_wanted.notify()
                    return
                # Group commit: a caller that finds no commit running commits the whole
                # queue; the others wait for it (or lead the next one).
                while self._committing and not pending.done:
                    self._committed.wait()
                entries = [] if pending.done else self._take_queue()
        if refusal is not None:
            self._remove_payloads([file])
            raise refusal
        if entries:
            self._commit_entries(entries)
        if pending.error is not None:
            raise pending.error

    def _refusal(self, size: int) -> ResourceExhausted | None:
        # Called with the queue lock held: why a capture of ``size`` bytes cannot be queued.
        if self._closing:
            return ResourceExhausted("capture spool is closing; retry after the restart")
        if len(self._queue) >= self._queue_limit:
            return ResourceExhausted(
                f"capture buffer full ({self._queue_limit} captures wait to be written to "
                f"the spool); retry later, or raise "
                f"sagemaker_edge_core_capture_data_buffer_size")
        held = self._bytes + self._queued_bytes + size
        if self._policy == "refuse" and held > self._max_bytes:
            return ResourceExhausted(
                f"capture spool full ({self._bytes} of {self._max_bytes} bytes held while "
                f"the destination catches up); retry later, raise "
                f"edgefleet_capture_spool_max_bytes, or set edgefleet_capture_overflow_policy "
                f"to 'drop-oldest'")
        return None

    def _take_queue(self) -> list[_Pending]:
        # Called with the queue lock held.
        entries, self._queue = self._queue, []
        self._unwaited = 0
        self._committing = True
        return entries

    def _write_loop(self) -> None:
        # Commits captures nobody waits for (sampled from Predict traffic), and the rest on close.
        while True:
            with self._queue_lock:
                while self._committing or not (self._unwaited or self._closing):
                    self._writer_wanted.wait()
                if not self._queue:
                    return
                entries = self._take_queue()
            self._commit_entries(entries)

    def _commit_entries(self, entries: list[_Pending]) -> None:
        try:
            dropped = self._commit(entries)
        except Exception as error:  # reported to every caller in the group, never swallowed
            failure = _write_error(self.path, error)
            log.error("%s", failure.message)
            for entry in entries:
                entry.error = failure
            dropped = [e.request.capture_id for e in entries if not e.wait]
            self._remove_payloads([e.file for e in entries])
        with self._queue_lock:
            self._queued_bytes -= sum(entry.size for entry in entries)
            for entry in entries:
                entry.done = True
            self._committing = False
            self._committed.notify_all()
            if self._unwaited or self._closing:
                self._writer_wanted.notify()
        if dropped:
            self._on_dropped(dropped)

    def _commit(self, entries: list[_Pending]) -> list[str]:
        size = sum(entry.size for entry in entries)
        dropped: list[tuple[int, str, int, str | None]] = []
        if any(entry.file is not None for entry in entries):
            _fsync_folder(self.payloads)  # the files' names, before rows that name them
        rows = [(e.request.capture_id, e.directory, e.size, e.body, e.file) for e in entries]
        with self._db_lock:
            excess = self._bytes + size - self._max_bytes
            if len(rows) <= _ROWS_PER_INSERT and not (
                    self._policy == "drop-oldest" and excess > 0):
                # One statement outside a transaction commits by itself: one call into SQLite
                # instead of three, and each call hands the GIL to other threads and back.
                last = self._db.execute(_insert_rows(len(rows)),
                                        [v for row in rows for v in row]).lastrowid
                if last is not None:  # rows of one INSERT get consecutive rowids
                    self._remember(range(last - len(entries) + 1, last + 1), entries)
            else:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if self._policy == "drop-oldest" and excess > 0:
                        dropped = self._drop_oldest(excess)
                    self._db.executemany(_insert_rows(1), rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        freed = sum(row[2] for row in dropped)
        with self._changed:
            self._records += len(entries) - len(dropped)
            self._bytes += size - freed
            self._unbatched += len(entries) - len(dropped)
            if self._unbatched >= self._wanted:
                self._changed.notify()
        if dropped:
            self._remove_payloads([row[3] for row in dropped])
            self._log_dropped(len(dropped))
        return [row[1] for row in dropped]

    def _drop_oldest(self, excess: int) -> list[tuple[int, str, int, str | None]]:
        victims = []
        freed = 0
        for seq, capture_id, size, file in self._db.execute(
                "SELECT seq, capture_id, size, file FROM records WHERE batch IS NULL "
                "ORDER BY seq"):
            victims.append((seq, capture_id, size, file))
            freed += size
            if freed >= excess:
                break
        self._db.executemany("DELETE FROM records WHERE seq = ?", [(v[0],) for v in victims])
        for victim in victims:
            self._forget_recent(victim[0])
        expires = time.time() + self._ttl
        self._db.executemany(
            "INSERT OR REPLACE INTO finished VALUES (?, ?, ?)",
            [(v[1], int(CaptureStatus.FAILURE), expires) for v in victims])
        return victims

    def _log_dropped(self, count: int) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._drop_logged_at >= _DROP_LOG_INTERVAL:
            log.warning(
                "capture spool full (%d of %d bytes, %d captures held): dropped %d oldest "
                "captures (%d since start); the destination is not keeping up",
                self._bytes, self._max_bytes, self._records, self.dropped - self._dropped_logged,
                self.dropped)
            self._dropped_logged = self.dropped
            self._drop_logged_at = now

    def _remember(self, seqs: range, entries: list[_Pending]) -> None:
        # Called with the database lock, right after the rows committed.
        for seq, entry in zip(seqs, entries, strict=True):
            if (len(self._recent) >= self._queue_limit
                    or self._recent_bytes + entry.size > RECENT_MAX_BYTES):
                return  # the rest is read back from the database when its batch forms
            self._recent[seq] = (entry.request, entry.size)
            self._recent_bytes += entry.size

    def _forget_recent(self, seq: int) -> CaptureRequest | None:
        # Called with the database lock.
        kept = self._recent.pop(seq, None)
        if kept is None:
            return None
        self._recent_bytes -= kept[1]
        return kept[0]

    # -- BatchSource -------------------------------------------------------------------------
    def wait(self, count: int, timeout: float) -> int:
        """See :meth:`BatchSource.wait`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._wanted = count
            while self._unbatched < count and not self._woken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            self._woken = False
            return self._unbatched

    def wake(self) -> None:
        """See :meth:`BatchSource.wake`."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def take_batches(self, limit: int) -> list[Batch]:
        """See :meth:`BatchSource.take_batches`: first the batches formed before a restart."""
        formed = 0
        with self._db_lock:
            if self._reopened:
                ids, self._reopened = self._reopened, []
            else:
                rows = self._db.execute(
                    "SELECT seq, directory FROM records WHERE batch IS NULL ORDER BY seq "
                    "LIMIT ?", (limit,)).fetchall()
                formed = len(rows)
                groups: dict[str, list[int]] = {}
                for seq, directory in rows:
                    groups.setdefault(directory, []).append(seq)
                ids = []
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for directory, seqs in groups.items():
                        cursor = self._db.execute("INSERT INTO batches (key) VALUES ('')")
                        batch_id = cursor.lastrowid
                        assert batch_id is not None
                        self._db.execute("UPDATE batches SET key = ? WHERE id = ?",
                                         (self._layout.key(directory, self.stream, batch_id),
                                          batch_id))
                        # The rows just read are all the unbatched ones of this folder between
                        # its first and last seq (the oldest unbatched, in seq order).
                        self._db.execute(
                            "UPDATE records SET batch = ? WHERE batch IS NULL AND directory = ? "
                            "AND seq BETWEEN ? AND ?", (batch_id, directory, seqs[0], seqs[-1]))
                        ids.append(batch_id)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            stored = [self._fetch(batch_id) for batch_id in ids]
        if formed:
            with self._changed:
                self._unbatched -= formed
        # Reading payload files and decoding copy every payload: done after the lock that
        # CaptureData's commits need.
        batches = []
        missing: list[str] = []
        for batch_id, key, members in stored:
            requests = []
            for member in members:
                if isinstance(member, CaptureRequest):
                    requests.append(member)
                    continue
                capture_id, body, file = member
                if file is not None:
                    try:
                        body = self._read_payload(file)
                    except OSError as error:
                        log.error("capture spool %s: the payload file of capture %r is gone "
                                  "(%s); it is marked FAILURE", self.path, capture_id, error)
                        missing.append(capture_id)
                        continue
                requests.append(unpack_request(body))
            batches.append(Batch(key, tuple(requests), batch_id))
        if missing:
            self._on_dropped(missing)
        return batches

    def _fetch(self, batch_id: int) -> tuple[int, str, list[_Row | CaptureRequest]]:
        """A batch's key and its records in order, each a capture still in memory or its row's
        ``(capture_id, body, file)`` (called with the database lock)."""
        key = self._db.execute("SELECT key FROM batches WHERE id = ?", (batch_id,)).fetchone()[0]
        seqs = [row[0] for row in self._db.execute(
            "SELECT seq FROM records WHERE batch = ? ORDER BY seq", (batch_id,))]
        members: list[_Row | CaptureRequest | None] = [self._forget_recent(seq) for seq in seqs]
        missing = [seq for seq, member in zip(seqs, members, strict=True) if member is None]
        if missing:  # a restart, or more than memory keeps: read back the span they cover
            rows = {row[0]: row[1:] for row in self._db.execute(
                "SELECT seq, capture_id, body, file FROM records WHERE batch = ? "
                "AND seq BETWEEN ? AND ?", (batch_id, missing[0], missing[-1]))}
            members = [rows[seq] if member is None else member
                       for seq, member in zip(seqs, members, strict=True)]
        return batch_id, key, [m for m in members if m is not None]

    def complete(self, batch: Batch) -> None:
        """See :meth:`BatchSource.complete`: delete the batch, remember its ids as stored
        (SUCCESS), or FAILURE for members whose payload file was lost."""
        now = time.time()
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT capture_id, size, file FROM records WHERE batch = ?",
                    (batch.spool_id,)).fetchall()
                count, size = len(rows), sum(row[1] for row in rows)
                files = [row[2] for row in rows if row[2] is not None]
                # Members missing from ``batch.requests`` lost their payload file (FAILURE).
                stored = {r.capture_id for r in batch.requests}
                self._db.execute("DELETE FROM records WHERE batch = ?", (batch.spool_id,))
                self._db.execute("DELETE FROM batches WHERE id = ?", (batch.spool_id,))
                self._db.execute("DELETE FROM finished WHERE expires <= ?", (now,))
                self._db.executemany(
                    "INSERT OR REPLACE INTO finished VALUES (?, ?, ?)",
                    [(row[0], int(CaptureStatus.SUCCESS if row[0] in stored
                                  else CaptureStatus.FAILURE), now + self._ttl)
                     for row in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        with self._changed:
            self._records -= count
            self._bytes -= size
        self._remove_payloads(files)  # after the commit: a crash leaves orphans, not holes

    # -- payload files -------------------------------------------------------------------------
    def _write_payload(self, body: builtins.bytes) -> str:
        """Write and fsync a packed capture to a new file; return its name.

        Raises:
            ResourceExhausted: the disk is full.
            EdgefleetError: any other write error.
        """
        name = f"{uuid.uuid4().hex}.bin"
        path = self.payloads / name
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o600)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(body)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:
            path.unlink(missing_ok=True)
            if error.errno == errno.ENOSPC:
                raise ResourceExhausted(f"capture spool {self.payloads}: disk full ({error}); "
                                        f"free disk space") from None
            raise EdgefleetError(f"capture spool {self.payloads} cannot be written: {error}; "
                                 f"check the disk and the folder's permissions") from None
        return name

    def _read_payload(self, name: str) -> builtins.bytes:
        return self._payload_path(name).read_bytes()

    def _payload_path(self, name: str) -> Path:
        """Raises OSError for a name this spool never writes (it would leave the folder)."""
        if "/" in name or name.startswith("."):
            raise OSError(f"not a payload file name: {name!r}")
        return self.payloads / name

    def _remove_payloads(self, names: Iterable[str | None]) -> None:
        for name in names:
            if name is not None:
                try:
                    self._payload_path(name).unlink(missing_ok=True)
                except OSError as error:  # left in place; the next start tries again
                    log.warning("capture spool: cannot remove payload file %s: %s", name, error)

    def _remove_orphan_payloads(self) -> None:
        named = {row[0] for row in self._db.execute(
            "SELECT file FROM records WHERE file IS NOT NULL")}
        orphans = [entry.name for entry in self.payloads.iterdir() if entry.name not in named]
        self._remove_payloads(orphans)
        if orphans:
            log.info("capture spool %s: removed %d payload files of captures never committed "
                     "(an earlier stop between file and commit)", self.path, len(orphans))

    # -- shutdown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the database."""
        with self._queue_lock:
            self._closing = True
            self._writer_wanted.notify()
        if self._writer.is_alive():
            self._writer.join()
        with self._db_lock:
            self._db.close()


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_error(path: Path, error: Exception) -> EdgefleetError:
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return ResourceExhausted(f"capture spool {path}: disk full ({error}); free disk space")
    return EdgefleetError(f"capture spool {path} cannot be written: {error}; check the disk "
                          f"and the file's permissions")


# -- row format ----------------------------------------------------------------------------------
# body = 4-byte big-endian header length, JSON header, then the payloads in header order.
_LENGTH = struct.Struct(">I")


def pack_request(request: CaptureRequest) -> bytes:
    """Serialise a capture for the spool (a JSON header followed by the raw payloads)."""
    tensors = [(section, t) for section, group in
               (("in", request.input_tensors), ("out", request.output_tensors)) for t in group]
    auxiliary = [(section, a) for section, group in
                 (("in", request.auxiliary_inputs), ("out", request.auxiliary_outputs))
                 for a in group]
    header = orjson.dumps({
        "id": request.capture_id, "model": request.model_alias,
        "version": request.model_version, "time": request.inference_time_ns,
        "sampled": request.sampled,
        "tensors": [[s, t.name, t.data_type, list(t.shape), len(t.data)] for s, t in tensors],
        "auxiliary": [[s, a.name, int(a.encoding), len(a.data)] for s, a in auxiliary],
    })
    return b"".join([_LENGTH.pack(len(header)), header, *(t.data for _, t in tensors),
                     *(a.data for _, a in auxiliary)])


def unpack_request(body: bytes) -> CaptureRequest:
    """The capture :func:`pack_request` serialised."""
    (length,) = _LENGTH.unpack_from(body)
    header = orjson.loads(body[_LENGTH.size:_LENGTH.size + length])
    view = memoryview(body)
    offset = _LENGTH.size + length

    def take(size: int) -> bytes:
        nonlocal offset
        offset += size
        return bytes(view[offset - size:offset])

    tensors: dict[str, list[CapturedTensor]] = {"in": [], "out": []}
    for section, name, data_type, shape, size in header["tensors"]:
        tensors[section].append(CapturedTensor(name, data_type, tuple(shape), take(size)))
    auxiliary: dict[str, list[CapturedAuxiliary]] = {"in": [], "out": []}
    for section, name, encoding, size in header["auxiliary"]:
        auxiliary[section].append(CapturedAuxiliary(name, AuxiliaryEncoding(encoding), take(size)))
    return CaptureRequest(
        capture_id=header["id"], model_alias=header["model"], model_version=header["version"],
        inference_time_ns=header["time"], input_tensors=tuple(tensors["in"]),
        output_tensors=tuple(tensors["out"]), auxiliary_inputs=tuple(auxiliary["in"]),
        auxiliary_outputs=tuple(auxiliary["out"]), sampled=header["sampled"])
