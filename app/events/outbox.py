"""The bounded on-disk queue of events waiting for their sinks, and the record of what was accepted.

One sqlite3 file in EVENTS_DIR (WAL, ``synchronous=FULL``: every accepted event and every acknowledgement is
on disk before the call returns). An event is kept until each sink it was queued for acknowledged it, so a
publisher that dies or a receiver that is down loses nothing; a new publisher on the same folder picks up
where the old one stopped, in order. The deduplication key (run, stream, track, type) of each accepted event is
kept (without images) for ``KEYS_DAYS`` in the same transaction, so an event offered twice (a restarted identify
stage) is refused, and a restarted deriver can ask what was already announced.

Bound: when the undelivered events exceed ``max_bytes``, the oldest are dropped (a sink down for days should
not fill the disk, and the newest events matter most); each drop is logged with its count and the fix.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from app.errors import FacestreamError
from app.events.schema import Event

log = logging.getLogger("facestream.events")
KEYS_DAYS = 7.0  # how long an accepted event's key is remembered (a run lasting longer could re-announce)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, body BLOB NOT NULL,
                                  size INTEGER NOT NULL, accepted REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending(sink TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(sink, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys(key TEXT PRIMARY KEY, summary TEXT NOT NULL, accepted REAL NOT NULL) WITHOUT ROWID;
"""


class Outbox:
    """Thread-safe; several processes may open the same file (a deriver reads ``announced``)."""

    def __init__(self, events_dir: str | Path, sinks: Iterable[str] = (), max_bytes: int = 256 << 20,
                 readonly: bool = False) -> None:
        self.path = Path(events_dir) / "outbox.sqlite3"
        self.sinks = tuple(sinks)
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
            self._db = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False, isolation_level=None)
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                self._db.execute("DELETE FROM keys WHERE accepted < ?", (time.time() - KEYS_DAYS * 86400,))
        except (OSError, sqlite3.Error) as exc:
            raise FacestreamError(f"cannot open the events queue {self.path}: {exc} — set EVENTS_DIR to a "
                                  "writable folder") from None
        if not readonly:
            self._report_orphans()

    def accept(self, event: Event) -> int | None:
        """Queue ``event`` for every sink; return its sequence number, or None when its key was accepted before
        (a duplicate, refused). Durable when it returns."""
        body = event.to_json()
        now = time.time()
        with self._lock, self._tx():
            try:
                self._db.execute("INSERT INTO keys(key, summary, accepted) VALUES (?, ?, ?)",
                                 (event.key, json.dumps(event.summary()), now))
            except sqlite3.IntegrityError:
                return None
            if not self.sinks:
                return 0  # nothing to deliver to: remembered for deduplication only
            seq = self._db.execute("INSERT INTO events(key, body, size, accepted) VALUES (?, ?, ?, ?)",
                                   (event.key, body, len(body), now)).lastrowid
            self._db.executemany("INSERT INTO pending(sink, seq) VALUES (?, ?)", [(s, seq) for s in self.sinks])
            self._enforce_bound()
        return seq

    def pending(self, sink: str, after: int = 0, limit: int = 64) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (seq, body) still owed to ``sink`` with seq > ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT e.seq, e.body FROM pending p JOIN events e ON e.seq = p.seq "
                                    "WHERE p.sink = ? AND p.seq > ? ORDER BY p.seq LIMIT ?",
                                    (sink, after, limit)).fetchall()
        return [(int(seq), bytes(body)) for seq, body in rows]

    def ack(self, sink: str, seq: int) -> None:
        """``sink`` has the event: forget it for that sink, and drop the event once every sink has it."""
        with self._lock, self._tx():
            self._db.execute("DELETE FROM pending WHERE sink = ? AND seq = ?", (sink, seq))
            self._db.execute("DELETE FROM events WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM pending WHERE "
                             "seq = ?)", (seq, seq))

    def count(self, sink: str | None = None) -> int:
        """Events still owed (to ``sink``, or to any sink)."""
        with self._lock:
            try:
                if sink is None:
                    return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
                return int(self._db.execute("SELECT COUNT(*) FROM pending WHERE sink = ?", (sink,)).fetchone()[0])
            except sqlite3.OperationalError:  # read-only open of a queue whose publisher has not made its tables yet
                return 0

    def announced(self, key: str) -> dict | None:
        """The summary of the accepted event with this dedup key, or None (for a restarted deriver)."""
        with self._lock:
            try:
                row = self._db.execute("SELECT summary FROM keys WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError:  # read-only open of a queue no publisher has created yet
                return None
        return None if row is None else json.loads(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------
    def _tx(self):
        return _Transaction(self._db)

    def _enforce_bound(self) -> None:
        total = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()[0])
        if total <= self.max_bytes:
            return
        dropped = 0
        for seq, size in self._db.execute("SELECT seq, size FROM events ORDER BY seq").fetchall():
            if total <= self.max_bytes:
                break
            self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            total -= size
            dropped += 1
        self.dropped += dropped
        waiting = [s for (s,) in self._db.execute("SELECT DISTINCT sink FROM pending")]
        log.warning("events queue %s is full (%.0f MB): dropped the %d oldest undelivered event(s) (%d so far); "
                    "%s not taking events — fix it or raise EVENTS_MAX_MB", self.path, self.max_bytes / 2**20,
                    dropped, self.dropped, ", ".join(waiting) or "a sink is")

    def _report_orphans(self) -> None:
        rows = self._db.execute("SELECT sink, COUNT(*) FROM pending GROUP BY sink").fetchall()
        for sink, n in rows:
            if sink not in self.sinks:
                log.warning("%d event(s) in %s wait for %s, which is not configured now: they are kept until it "
                            "is set again (or the queue's bound drops them)", n, self.path, sink)


def announced_lookup(events_dir: str | Path):
    """``Outbox.announced`` for another process (the identify stage's deriver): opens the queue read-only when
    it exists, and answers None until a publisher has created it."""
    box: list[Outbox] = []

    def announced(key: str) -> dict | None:
        if not box:
            if not (Path(events_dir) / "outbox.sqlite3").is_file():
                return None
            box.append(Outbox(events_dir, readonly=True))
        return box[0].announced(key)

    return announced


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): one fsync'd write per call."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
