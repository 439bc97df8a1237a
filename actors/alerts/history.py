"""Alert history: every alert the sink took, as a row of a SQLite database (the standard library's ``sqlite3``).

What it owns: one database file (``[alerts] history_path``, WAL mode) and its one writer connection. The alert actor
adds each batch the sink accepted (``add``, one transaction: the rows, then the oldest rows past ``max_rows`` deleted
in the same transaction); the HTTP API reads (``query``, ``get``, ``task_ids``) on connections of its own, opened
read-only per request, so a reader never waits for the writer (WAL) and nothing is held per HTTP thread. The API's
``delete`` (one row) takes its turn on the writer connection under a lock: the file still has one writer connection,
and SQLite's own locking never has to arbitrate between two of ours.

A row is the alert's record exactly as the sink writes it (``sinks.encode_alert``, a JSON object), with the
columns the old query API filters on beside it (``SCHEMA``): ``id`` (the alert's numeric id, the primary key),
``created_ms`` (``created_at`` in ms since the epoch: the order of "newest first"), ``task_id``, ``task_type``,
``detection_count``. Indexes (``INDEXES``) cover each filter with the creation order behind it, so a page of a
filtered listing and its total read indexes only, whatever the table's size (``benchmarks/history.py``: 1,000,000
rows).

Failures: a file that is not a database, is damaged, holds a schema of another version, or stays locked by another
process at ``open`` is renamed aside with its ``-wal``/``-shm``/``-journal`` (``<name>.corrupt-<UTC time>``, or
``.locked-...``), one line is logged, and a fresh file is started; a write that finds the file damaged later does the
same and retries once. When even a fresh file cannot be made (a read-only directory, a full disk), the history is
disabled: ``error`` says why, ``add`` raises ``HistoryError`` at once, reads answer it; the alert pipeline never stops
because of the history. Every other failure of a call raises ``HistoryError`` naming the file.

Threads: ``open`` runs on the caller's thread (the supervisor's, at start); ``add`` on the alert actor's; reads
and ``delete`` on HTTP connection threads. Every method is thread-safe.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import msgspec

from ..core.ids import issued_ms
from ..core.messages import Alert
from .sinks import encode_alert

log = logging.getLogger(__name__)

#: ``PRAGMA user_version`` of the schema below; a file with another (non-zero) version is set aside, not migrated.
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,          -- Alert.id (the rowid: unique, < 2^53)
    created_ms INTEGER NOT NULL,     -- Alert.created_at, ms since the epoch
    task_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    detection_count INTEGER NOT NULL,
    record BLOB NOT NULL             -- the record as the sink wrote it (JSON)
)
"""

#: Each filter's column, then ``created_ms, id``: "newest first" within the filter is an index walk, and a page's ids
#: come from the index alone; ``detection_count`` rides along so the min/max filters never read the table.
#: ``alerts_created`` also orders the unfiltered listing and the trim (oldest first); ``alerts_detections`` counts
#: a detection range alone.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS alerts_created ON alerts (created_ms, id, detection_count)",
    "CREATE INDEX IF NOT EXISTS alerts_task ON alerts (task_id, created_ms, id, detection_count)",
    "CREATE INDEX IF NOT EXISTS alerts_type ON alerts (task_type, created_ms, id, detection_count)",
    "CREATE INDEX IF NOT EXISTS alerts_detections ON alerts (detection_count, created_ms)",
)

#: A row as ``add_rows`` takes it: (id, created_ms, task_id, task_type, detection_count, record).
Row = tuple[int, int, str, str, int, bytes]

#: How long a statement waits for a lock held by another connection before it fails (the writer: another process
#: writing the same file; a reader never waits in WAL mode). Short: the alert actor must not stall on it.
BUSY_TIMEOUT_SEC = 0.5
#: At ``open``, how long the file may stay locked before it is set aside as held by something else.
OPEN_TIMEOUT_SEC = 2.0
#: Rows deleted per transaction when trimming a large excess (a lowered ``max_alerts_in_db``, at ``open``).
TRIM_CHUNK = 10_000

#: SQLite's primary result codes that mean "this file is not a (sound) database of ours".
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_LOCKED = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


class HistoryError(Exception):
    """A history call failed; the message names the file and the reason. Nothing of the call may be assumed done."""


class AlertQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The old query API's filters (all optional, combined with AND) and its page; times are ms since the epoch,
    inclusive. The HTTP API builds it from the query string (``api.alerts_api``), tests and tools directly."""

    task_id: str | None = None
    task_type: str | None = None
    min_detections: int | None = None
    max_detections: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    page: int = 1  # 1-based
    page_size: int = 20


class Page(msgspec.Struct, frozen=True):
    """One page of a listing, newest first: the records (JSON bytes, as the sink wrote them) and the filter's total."""

    records: list[bytes]
    total: int


# --- times ------------------------------------------------------------------------------------------------------

#: ``+08:00`` sent unencoded in a query string reaches us as `` 08:00`` (``+`` means space there).
_SPACED_OFFSET = re.compile(r"(.*\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})")
_EPOCH = re.compile(r"-?\d{1,16}")
#: Epoch numbers at or above this are milliseconds (1973-03-03 in ms; the year 5138 in seconds).
_EPOCH_MS_FROM = 100_000_000_000


def time_ms(text: str) -> int:
    """A time as ms since the epoch. Accepted (raises ValueError otherwise):

    - RFC 3339 / ISO 8601 with an offset: ``2026-11-29T06:25:54Z``, ``2026-11-29T06:25:54.384+08:00`` (an
      unencoded ``+`` that a query string turned into a space is put back);
    - without an offset, in this machine's local time (what the old console's date pickers sent):
      ``2026-11-29 06:25:54``, ``2026-11-29T06:25``, ``2026-11-29`` (midnight);
    - a Unix time in seconds (``1795933554``) or, from 100,000,000,000 on, in milliseconds (``1795933554384``).
    """
    s = text.strip()
    if _EPOCH.fullmatch(s):
        n = int(s)
        return n if abs(n) >= _EPOCH_MS_FROM else n * 1000
    spaced = _SPACED_OFFSET.fullmatch(s)
    if spaced:
        s = f"{spaced[1]}+{spaced[2]}"
    moment = datetime.fromisoformat(s)  # naive: .timestamp() takes it as local time
    return round(moment.timestamp() * 1000)


def row_of(alert: Alert) -> Row:
    """The alert's row: its record as the sink writes it and the filter columns."""
    try:
        created = time_ms(alert.created_at)
    except ValueError:  # not one that make_alert made: its id says when it was made, to the ms
        created = issued_ms(alert.id)
    return (alert.id, created, alert.task_id, alert.task_type, alert.detection_count, encode_alert(alert))


# --- the database ---------------------------------------------------------------------------------------------------


class History:
    """The alert history in one SQLite file; ``History.open`` makes one (see the module docstring)."""

    def __init__(self, path: Path, max_rows: int) -> None:
        """Use ``History.open``; this only holds the values (no I/O)."""
        self.path = path
        self.max_rows = max_rows  # 0: unlimited
        self.error = ""  # why the history is disabled; "" while it works
        self.set_aside: list[Path] = []  # files renamed aside by this instance, oldest first
        self._conn: sqlite3.Connection | None = None
        self._rows = 0  # rows in the table, as the writer counts them (every write goes through it)
        self._lock = threading.Lock()  # the writer connection: one call at a time

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, max_rows: int) -> History:
        """The history in ``path`` (made if missing), trimmed to ``max_rows`` (0: unlimited). Never raises for the
        file's sake: a bad file is set aside, and a history that cannot start at all is returned disabled
        (``error``)."""
        history = cls(Path(path), max_rows)
        with history._lock:
            try:
                history._connect()
                history._trim()
            except HistoryError as exc:
                history._disable(str(exc))
        return history

    @property
    def enabled(self) -> bool:
        return self._conn is not None

    @property
    def rows(self) -> int:
        return self._rows

    def close(self) -> None:
        """Close the writer connection (readers open their own per call); the history is disabled afterwards."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self.error = "closed"

    # --- writes (the writer connection, under the lock) ---

    def add(self, alerts: Sequence[Alert]) -> int:
        """Add a batch in one transaction and delete the oldest rows past ``max_rows``; returns the rows added (an
        alert whose id is already there is not added again: a redelivery). Raises HistoryError."""
        return self.add_rows([row_of(a) for a in alerts])

    def add_rows(self, rows: Iterable[Row]) -> int:
        """``add`` for prepared rows (``row_of``): bulk loads, benchmarks."""
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            try:
                return self._add(rows)
            except HistoryError as exc:
                if not _damaged(exc.__cause__):
                    raise
                try:
                    self._set_aside("corrupt", exc)  # damaged under us: start a fresh file, try once more
                except HistoryError as failed:
                    self._disable(str(failed))
                    raise
                return self._add(rows)

    def delete(self, alert_id: int) -> bool:
        """Delete one row; False if there is none with that id. Raises HistoryError."""
        with self._lock:
            with self._write() as conn:
                deleted = conn.execute("DELETE FROM alerts WHERE id = ?", (alert_id,)).rowcount
            self._rows -= deleted
            return deleted > 0

    def _add(self, rows: list[Row]) -> int:
        with self._write() as conn:
            added = conn.executemany("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?)", rows).rowcount
            excess = self._rows + added - self.max_rows if self.max_rows else 0
            trimmed = self._delete_oldest(conn, excess) if excess > 0 else 0
        self._rows += added - trimmed
        return added

    def _trim(self) -> None:
        """Down to ``max_rows``, ``TRIM_CHUNK`` rows per transaction (a large excess: a lowered bound at start)."""
        while self.max_rows and self._rows > self.max_rows:
            with self._write() as conn:
                trimmed = self._delete_oldest(conn, min(self._rows - self.max_rows, TRIM_CHUNK))
            self._rows -= trimmed
            if not trimmed:  # nothing left to delete: the count was off (never expected; do not loop on it)
                break

    @staticmethod
    def _delete_oldest(conn: sqlite3.Connection, n: int) -> int:
        return conn.execute("DELETE FROM alerts WHERE id IN "
                            "(SELECT id FROM alerts ORDER BY created_ms, id LIMIT ?)", (n,)).rowcount

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection (lock held by the caller); sqlite3 errors become
        HistoryError (the sqlite3 error as its cause)."""
        if self._conn is None:
            raise HistoryError(f"alert history {self.path} is disabled: {self.error}")
        try:
            with self._conn:  # commits, or rolls back on an exception
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
        except sqlite3.Error as exc:
            raise HistoryError(f"alert history {self.path}: {_reason(exc)}") from exc

    # --- reads (a read-only connection per call, on the caller's thread) ---

    def query(self, q: AlertQuery) -> Page:
        """One page of the rows matching ``q``, newest first (``created_ms``, then ``id``), and their total."""
        where, params = _where(q)
        # The page's ids from the index alone, then their records: a deep page skips index entries, not rows.
        page_sql = (f"SELECT record FROM alerts WHERE id IN (SELECT id FROM alerts{where} "
                    "ORDER BY created_ms DESC, id DESC LIMIT ? OFFSET ?) ORDER BY created_ms DESC, id DESC")
        with self._read() as conn:
            conn.execute("BEGIN")  # the page and the total from one snapshot
            records = [r for (r,) in conn.execute(page_sql, (*params, q.page_size, (q.page - 1) * q.page_size))]
            (total,) = conn.execute(f"SELECT count(*) FROM alerts{where}", params).fetchone()
            conn.execute("COMMIT")
        return Page(records=records, total=total)

    def get(self, alert_id: int) -> bytes | None:
        """The record of alert ``alert_id``, None if there is none."""
        with self._read() as conn:
            row = conn.execute("SELECT record FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else row[0]

    def task_ids(self) -> list[str]:
        """The task ids that have rows, sorted; one index seek per task id (a skip scan), not a walk of every row."""
        sql = ("WITH RECURSIVE t(v) AS (SELECT min(task_id) FROM alerts UNION ALL "
               "SELECT (SELECT min(task_id) FROM alerts WHERE task_id > t.v) FROM t WHERE t.v IS NOT NULL) "
               "SELECT v FROM t WHERE v IS NOT NULL")
        with self._read() as conn:
            return [v for (v,) in conn.execute(sql)]

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            raise HistoryError(f"alert history {self.path} is disabled: {self.error}")
        try:
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SEC,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise HistoryError(f"alert history {self.path}: {_reason(exc)}") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise HistoryError(f"alert history {self.path}: {_reason(exc)}") from exc
        finally:
            conn.close()

    # --- opening, setting aside (lock held) ---

    def _connect(self) -> None:
        """Open ``path`` as the writer; a file that cannot be ours is set aside and a fresh one made once."""
        try:
            self._conn = self._open_file()
        except HistoryError as exc:
            cause = exc.__cause__
            if not (_damaged(cause) or _locked(cause) or isinstance(cause, _WrongSchema)):
                raise
            self._set_aside("locked" if _locked(cause) else "corrupt", exc)

    def _open_file(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot make the directory of {self.path}: {exc.strerror or exc}") from None
        conn: sqlite3.Connection | None = None
        try:
            # isolation_level None: transactions are the explicit BEGIN IMMEDIATE of ``_write``.
            conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_SEC, isolation_level=None, check_same_thread=False)
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise sqlite3.OperationalError("cannot switch to WAL mode")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut may lose the last batches, not the file
            conn.execute("BEGIN IMMEDIATE")  # also: is the file writable now, or held by another process
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise _WrongSchema(f"schema version {version}, this framewatch writes {SCHEMA_VERSION}")
            conn.execute(SCHEMA)
            for index in INDEXES:
                conn.execute(index)
            if version == 0:  # a new file (writing the same version again would still change the file)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            self._rows = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SEC * 1000)}")
            return conn
        except (sqlite3.Error, _WrongSchema) as exc:
            if conn is not None:
                conn.close()
            raise HistoryError(f"alert history {self.path}: {_reason(exc)}") from exc

    def _set_aside(self, why: str, exc: HistoryError) -> None:
        """Rename the file (and its -wal, -shm) aside, log one line, open a fresh one. Raises HistoryError."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.{why}-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm", "-journal"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{aside}{suffix}")
        except OSError as os_error:
            raise HistoryError(f"{exc}; and it cannot be set aside: {os_error.strerror or os_error}") from None
        self.set_aside.append(aside)
        log.error("%s; set aside as %s, starting a fresh alert history", exc, aside.name)
        self._conn = self._open_file()
        self._rows = 0

    def _disable(self, reason: str) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.error = reason
        log.error("%s; the alert history is disabled (alerts are still delivered)", reason)


class _WrongSchema(Exception):
    """The file is a database, but not one of this schema version."""


def _primary(exc: BaseException | None) -> str:
    """SQLite's primary result code of ``exc`` (``SQLITE_CORRUPT`` for ``SQLITE_CORRUPT_INDEX``), "" if none."""
    name = getattr(exc, "sqlite_errorname", "") if isinstance(exc, sqlite3.Error) else ""
    return "_".join(name.split("_")[:2])


def _damaged(exc: BaseException | None) -> bool:
    return _primary(exc) in _DAMAGED


def _locked(exc: BaseException | None) -> bool:
    return _primary(exc) in _LOCKED


def _reason(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", "") if isinstance(exc, sqlite3.Error) else ""
    return f"{exc} ({name})" if name else str(exc)


def _where(q: AlertQuery) -> tuple[str, tuple[object, ...]]:
    """The WHERE clause of ``q``'s filters (leading space; "" for none) and its parameters."""
    terms: list[str] = []
    params: list[object] = []
    for column, op, value in (("task_id", "=", q.task_id), ("task_type", "=", q.task_type),
                              ("detection_count", ">=", q.min_detections), ("detection_count", "<=", q.max_detections),
                              ("created_ms", ">=", q.start_ms), ("created_ms", "<=", q.end_ms)):
        if value is not None:
            terms.append(f"{column} {op} ?")
            params.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), tuple(params)
