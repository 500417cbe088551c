"""Group commit of heartbeats: many devices' heartbeats go to the database in one transaction.

A background thread writes what is queued (:func:`edgefleet.fleet.edge.write_heartbeats`) once
the oldest queued heartbeat has waited ``interval_seconds``, or at once when it was queued while
the previous batch was being written; each request waits until its batch committed, so a device
hears "OK" only for a stored heartbeat. Under load, batches grow by themselves and the database
sees a few statements per batch instead of five per heartbeat (see benchmarks/fleet). When a
device sends twice before its batch is written only its latest heartbeat is written, except
that a queued heartbeat carrying a DeploymentResult is always written before a newer one
replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.fleet.edge import ReceivedHeartbeat, write_heartbeats
from edgefleet.fleet.history import HistoryPolicy, HistoryPruner

log = logging.getLogger(__name__)


class HeartbeatWriter:
    """Queue heartbeats and write them in batches from one daemon thread.

    Args:
        sessions: session factory of the database.
        interval_seconds: how long the oldest queued heartbeat waits for others to share its
            transaction (0: no waiting; batches then form only while a write is running).
        max_batch: flush earlier once this many devices are queued.
        history: how heartbeats are sampled into the heartbeat history and how long they stay.
    """

    def __init__(self, sessions: sessionmaker[Session], *, interval_seconds: float,
                 max_batch: int = 2000, history: HistoryPolicy | None = None) -> None:
        self._sessions = sessions
        self._history = HistoryPruner(history or HistoryPolicy())
        self._interval = interval_seconds
        self._max_batch = max_batch
        self._queue: dict[int, tuple[ReceivedHeartbeat, Future[None]]] = {}
        self._wake = threading.Condition()
        self._closed = False
        self._oldest = 0.0
        self._thread = threading.Thread(target=self._run, name="heartbeat-writer", daemon=True)
        self._thread.start()

    def submit(self, received: ReceivedHeartbeat) -> Future[None]:
        """Queue a heartbeat; the future completes when its batch has committed (or fails with
        the database error). Blocks only when the same device's previous heartbeat, carrying a
        DeploymentResult, is still queued: until that one's batch has been taken."""
        done: Future[None] = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the heartbeat writer is closed")
            queued = self._queue.get(received.device_id)
            must_flush = queued is not None and queued[0].beat.DeploymentResult is not None
            if must_flush:
                self._wake.notify_all()
                while received.device_id in self._queue:
                    self._wake.wait()
            elif queued is not None:
                queued[1].set_result(None)  # superseded: the newer heartbeat carries its data
            if not self._queue:
                self._oldest = time.monotonic()
            self._queue[received.device_id] = (received, done)
            if len(self._queue) in (1, self._max_batch):
                self._wake.notify_all()
        return done

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                # The interval counts from the oldest queued heartbeat: what queued up while
                # the previous batch was being written goes out at once.
                delay = self._oldest + self._interval - time.monotonic()
                if delay > 0 and not self._closed and len(self._queue) < self._max_batch:
                    self._wake.wait(delay)
                batch, self._queue = list(self._queue.values()), {}
                closed = self._closed
                self._wake.notify_all()
            if batch:
                self._write(batch)
            elif closed:
                return

    def _write(self, batch: list[tuple[ReceivedHeartbeat, Future[None]]]) -> None:
        try:
            with self._sessions.begin() as session:
                write_heartbeats(session, [received for received, _ in batch], self._history)
        except Exception as exc:  # the database failed: every waiting request must hear it
            log.error("writing %d heartbeats failed: %s", len(batch), exc)
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)
