"""Retention actor: the only code that deletes from storage.

It keeps, per indexed prefix (a task's frames, a task's alert images), an ordered index of the keys stored there:
built once at start from one listing per prefix, then maintained from ``Stored`` messages, so the bucket is never
listed again. Each new key costs an append and, past the bound, a pop: O(1) per frame whatever the number of objects.

Messages: ``Stored`` (from the writer), ``Sweep`` (timer, every second: age bounds, retries, the delete batch).
Deletes are collected and sent in one call per sweep, or sooner when 100 are waiting, so deleting costs one request
per second rather than one per frame. The index never holds more than the bound; the objects in storage exceed it by
at most the frames written since the last batch (one second's worth), and after each batch exactly the newest remain.
Deletes that fail are retried on the next sweep, counted, and never forgotten.

Thread: ``retention``. A failure of the store at start (unreachable) leaves the index empty for that prefix, reported
in the stats; retention then bounds what this run writes.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
from collections import deque
from typing import Any

import msgspec
import pykka

from .messages import RetentionStatsRequest, Stored, Sweep
from .metrics import Metrics
from .storage import Store, StoreError

log = logging.getLogger(__name__)

DELETE_BATCH = 100


class Bound(msgspec.Struct, frozen=True):
    task_id: str
    prefix: str
    max_count: int  # 0 = unlimited
    max_age_sec: float | None = None


def key_time(key: str) -> float | None:
    """Wall time encoded in a key's name (``...YYYYmmddTHHMMSS.mmmZ-seq.jpg``), or None for foreign keys."""
    name = key.rsplit("/", 1)[-1]
    try:
        stamp = name[:19]  # 20251118T172959.123
        secs = calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S"))
        return secs + int(stamp[16:19]) / 1000
    except (ValueError, IndexError):
        return None


class RetentionStats(msgspec.Struct, frozen=True):
    indexed: dict[str, int]
    deleted: int
    delete_failures: int
    pending_deletes: int
    listings: int


class RetentionActor(pykka.ThreadingActor):
    def __init__(self, *, store: Store, bounds: list[Bound], metrics: Metrics) -> None:
        super().__init__()
        self._store = store
        self._bounds = {b.prefix: b for b in bounds}
        self._index: dict[str, deque[str]] = {b.prefix: deque() for b in bounds}
        self._metrics = metrics
        self._pending: list[str] = []
        self._retry: list[str] = []
        self.deleted = 0
        self.delete_failures = 0
        self.listings = 0

    def on_start(self) -> None:
        threading.current_thread().name = "retention"
        for prefix in self._index:
            self._rebuild(prefix)
        self._flush()

    def on_stop(self) -> None:
        self._flush()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Stored():
                self._add(message)
            case Sweep():
                self._sweep()
            case RetentionStatsRequest():
                self._flush()
                return self.statistics()
            case _:
                log.warning("retention: unexpected message %r", type(message).__name__)
        if len(self._pending) >= DELETE_BATCH:
            self._flush()
        return None

    def statistics(self) -> RetentionStats:
        return RetentionStats(
            indexed={p: len(q) for p, q in self._index.items()},
            deleted=self.deleted,
            delete_failures=self.delete_failures,
            pending_deletes=len(self._pending) + len(self._retry),
            listings=self.listings,
        )

    # --- work ---

    def _rebuild(self, prefix: str) -> None:
        index = self._index[prefix]
        bound = self._bounds[prefix]
        self.listings += 1
        try:
            for key in self._store.list_keys(prefix):
                index.append(key)
                self._trim(index, bound)  # memory stays at the bound even for a million leftover objects
                if len(self._pending) >= DELETE_BATCH:
                    self._flush()
        except StoreError as exc:
            log.error("retention: cannot list %s at start (%s); bounding only what this run stores", prefix, exc)
        self._metrics.stored(bound.task_id, self._task_total(bound.task_id))

    def _add(self, msg: Stored) -> None:
        index = self._index.get(msg.prefix)
        bound = self._bounds.get(msg.prefix)
        if index is None or bound is None:
            log.warning("retention: key under unknown prefix %s", msg.key)
            return
        index.append(msg.key)
        self._trim(index, bound)
        self._metrics.stored(bound.task_id, self._task_total(bound.task_id))

    def _trim(self, index: deque[str], bound: Bound) -> None:
        if bound.max_count > 0:
            while len(index) > bound.max_count:
                self._pending.append(index.popleft())

    def _sweep(self) -> None:
        now = time.time()
        for prefix, bound in self._bounds.items():
            if bound.max_age_sec is None:
                continue
            index = self._index[prefix]
            while index:
                t = key_time(index[0])
                if t is None or now - t <= bound.max_age_sec:
                    break
                self._pending.append(index.popleft())
            self._metrics.stored(bound.task_id, self._task_total(bound.task_id))
        self._pending.extend(self._retry)
        self._retry.clear()
        self._flush()

    def _task_total(self, task_id: str) -> int:
        return sum(len(self._index[p]) for p, b in self._bounds.items() if b.task_id == task_id)

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:DELETE_BATCH], self._pending[DELETE_BATCH:]
            try:
                failed = self._store.delete_many(batch)
            except StoreError as exc:
                log.warning("retention: delete batch failed (%s); will retry", exc)
                failed = batch
            self.deleted += len(batch) - len(failed)
            log.debug("retention: deleted %d objects", len(batch) - len(failed))
            if failed:
                self.delete_failures += len(failed)
                self._retry.extend(failed)
