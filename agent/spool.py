"""Batches the collector did not take, kept on disk and replayed oldest first.

The spool is one SQLite file in the agent's state directory: each row is the serialized OTLP
request of one export. Replay sends rows in the order they were stored and deletes each only
after the collector took it, so a crash between the two sends a batch twice, which the collector
counts once.

The spool is bounded. Past ``max_bytes`` the oldest batches are dropped first, and when the disk
is full the spool drops its oldest batches to make room, then the new batch if that is not
enough. Either way the drop is counted, persisted and logged. Counters are cumulative, so a later
batch still carries every total: a dropped batch costs time resolution (its interval merges into
the next one), never joules or tokens.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,"
    " size INTEGER NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
COUNTER_NAMES = ("spooled", "replayed", "dropped_for_size", "dropped_disk_full", "refused")


class Delivery(enum.Enum):
    """What became of one attempt to send a batch."""

    DELIVERED = "delivered"
    RETRY = "retry"  # the collector is away or busy: keep the batch
    REFUSED = "refused"  # the collector will never take it (malformed, too large): drop it


Sender = Callable[[bytes], Delivery]


class Spool:
    """A bounded on-disk queue of serialized export requests."""

    def __init__(self, path: str | Path, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("a spool needs a size above zero")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self._conn.execute(statement)
        self._pending_bytes = self._conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM batches"
        ).fetchone()[0]
        # Drops that could not be written to disk (the disk was full) are kept here meanwhile.
        self._unsaved: dict[str, int] = {}

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def counters(self) -> dict[str, int]:
        """Totals since the spool file was created: spooled, replayed, dropped, refused."""
        with self._lock:
            saved = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
        return {name: saved.get(name, 0) + self._unsaved.get(name, 0) for name in COUNTER_NAMES}

    def put(self, body: bytes) -> bool:
        """Keep ``body`` for a later replay; False if it had to be dropped (disk full)."""
        with self._lock:
            if len(body) > self.max_bytes:
                logger.warning(
                    "a batch of %d bytes is larger than the whole spool (%d bytes); dropped",
                    len(body),
                    self.max_bytes,
                )
                self._count("dropped_for_size")
                return False
            try:
                self._insert(body)
            except sqlite3.OperationalError as exc:
                return self._put_on_full_disk(body, exc)
            self._trim()
            if self._unsaved:
                self._count(next(iter(self._unsaved)), 0)
            return True

    def replay(self, send: Sender) -> bool:
        """Send stored batches oldest first; True once the spool is empty.

        Stops at the first batch the collector does not take, so nothing newer overtakes it.
        """
        while True:
            with self._lock:
                row = self._conn.execute(
                    "SELECT id, size, body FROM batches ORDER BY id LIMIT 1"
                ).fetchone()
            if row is None:
                return True
            batch_id, size, body = row

            outcome = send(body)
            if outcome is Delivery.RETRY:
                return False

            with self._lock:
                self._delete(batch_id, size)
                self._count("replayed" if outcome is Delivery.DELIVERED else "refused")

    def close(self) -> None:
        with self._lock:
            if self._unsaved:
                self._count(next(iter(self._unsaved)), 0)
            self._conn.close()

    def _insert(self, body: bytes) -> None:
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute(
                "INSERT INTO batches (created_ns, size, body) VALUES (?, ?, ?)",
                (time.time_ns(), len(body), body),
            )
            self._bump("spooled", 1)
        self._pending_bytes += len(body)

    def _trim(self) -> None:
        """Drop the oldest batches until the spool is within its size."""
        dropped = 0
        while self._pending_bytes > self.max_bytes:
            oldest = self._conn.execute(
                "SELECT id, size FROM batches ORDER BY id LIMIT 1"
            ).fetchone()
            if oldest is None:
                break
            self._delete(*oldest)
            dropped += 1
        if dropped:
            self._count("dropped_for_size", dropped)
            logger.warning(
                "spool over %d bytes: dropped the %d oldest batch(es); totals are kept by the "
                "next batch, only their time resolution is lost",
                self.max_bytes,
                dropped,
            )

    def _put_on_full_disk(self, body: bytes, error: sqlite3.OperationalError) -> bool:
        """Make room by dropping the oldest half of the spool, then try once more."""
        logger.warning("cannot write the spool %s: %s", self.path, error)
        try:
            count = self._conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            doomed = self._conn.execute(
                "SELECT id, size FROM batches ORDER BY id LIMIT ?", (max(count // 2, 1),)
            ).fetchall()
            for batch_id, size in doomed:
                self._delete(batch_id, size)
            if doomed:
                self._count("dropped_disk_full", len(doomed))
            self._insert(body)
            return True
        except sqlite3.OperationalError as again:
            logger.warning("spool still cannot be written (%s); this batch is dropped", again)
            self._count("dropped_disk_full")
            return False

    def _delete(self, batch_id: int, size: int) -> None:
        self._conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        self._pending_bytes -= size

    def _count(self, name: str, amount: int = 1) -> None:
        """Add to a persisted counter; when the disk is full, hold it in memory until it is not."""
        self._unsaved[name] = self._unsaved.get(name, 0) + amount
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                for key, value in self._unsaved.items():
                    self._bump(key, value)
            self._unsaved.clear()
        except sqlite3.OperationalError:
            pass

    def _bump(self, name: str, amount: int) -> None:
        self._conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )
