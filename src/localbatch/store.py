"""SQLite persistence under the data dir: resource and job records, and log events.

The API keeps hot state in memory and writes through to SQLite on one writer thread, so a request
never waits for a disk commit. Writes are batched per transaction. Reads of log events use a
separate connection (WAL mode lets it read while the writer writes). After a hard kill of the service
the last few milliseconds of writes may be lost; a graceful stop flushes everything.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS log_streams (
    name TEXT PRIMARY KEY, created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL, ts INTEGER NOT NULL, ingested INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_stream ON log_events (stream, seq);
"""

_Op = tuple[str, tuple[Any, ...]]
log = logging.getLogger("localbatch.store")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Store:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "localbatch.sqlite3"
        self._reader = _connect(self.path)
        self._reader.executescript(_SCHEMA)
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="localbatch-store", daemon=True)
        self._thread.start()

    # -- writes (any thread, never blocks on disk) -------------------------------------------------
    def put(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """`body` must not be mutated afterwards: it is encoded later, on the writer thread."""
        self._queue.put(("put", (kind, key, body)))

    def delete(self, kind: str, key: str) -> None:
        self._queue.put(("delete", (kind, key)))

    def add_stream(self, name: str, created: int) -> None:
        self._queue.put(("stream", (name, created)))

    def add_events(self, stream: str, events: list[tuple[int, str]], ingested: int) -> None:
        self._queue.put(("events", (stream, events, ingested)))

    def flush(self, timeout: float = 30.0) -> None:
        done = threading.Event()
        self._queue.put(("flush", (done,)))
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._reader.close()

    def _run(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                first = self._queue.get()
                batch: list[_Op | None] = [first]
                while len(batch) < 5000:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                waiters = [item[1][0] for item in batch if item is not None and item[0] == "flush"]
                stop = None in batch
                writes = [item for item in batch if item is not None and item[0] != "flush"]
                try:
                    self._commit(conn, writes)
                except Exception:
                    # Keep the writer alive and lose as little as possible: retry one by one.
                    log.exception("SQLite write batch failed; retrying its %d operations singly", len(writes))
                    for item in writes:
                        try:
                            self._commit(conn, [item])
                        except Exception:
                            log.exception("SQLite write %s failed", item[0])
                for waiter in waiters:
                    waiter.set()
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, writes: list[_Op]) -> None:
        conn.execute("BEGIN")
        try:
            for op, args in writes:
                self._apply(conn, op, args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _apply(conn: sqlite3.Connection, op: str, args: tuple[Any, ...]) -> None:
        if op == "put":
            kind, key, body = args
            conn.execute(
                "INSERT OR REPLACE INTO records (kind, id, body) VALUES (?, ?, ?)",
                (kind, key, json.dumps(body)),
            )
        elif op == "delete":
            conn.execute("DELETE FROM records WHERE kind = ? AND id = ?", args)
        elif op == "stream":
            conn.execute("INSERT OR IGNORE INTO log_streams (name, created) VALUES (?, ?)", args)
        elif op == "events":
            stream, events, ingested = args
            conn.executemany(
                "INSERT INTO log_events (stream, ts, ingested, message) VALUES (?, ?, ?, ?)",
                [(stream, ts, ingested, message) for ts, message in events],
            )

    # -- reads --------------------------------------------------------------------------------------
    def load(self, kind: str) -> Iterator[dict[str, Any]]:
        for (body,) in self._reader.execute("SELECT body FROM records WHERE kind = ?", (kind,)):
            yield json.loads(body)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self._reader.execute(sql, args))
