"""Retention actor: the only code that deletes from storage.

It keeps, per indexed prefix (a task's frames, a task's alert images), an ordered index of the keys stored there:
built once at start from one listing per prefix, then maintained from ``Stored`` messages, so the bucket is never
listed again. Keys whose name is not a frame key (no time in it, ``key_time`` is None: the old system's
``algo_config.json`` beside a task's frames, anything else put there) are left out of the index: never counted,
never deleted. Each new key costs an append and, past the bound, a pop: O(1) per frame whatever the number of objects.

Messages: ``Stored`` (from the writer), ``Sweep`` (timer, every second: age bounds, retries, the delete batch).
Deletes are collected and sent in one call per sweep, or sooner when 100 are waiting, so deleting costs one request
per second rather than one per frame. The index never holds more than the bound; the objects in storage exceed it by
at most the frames written since the last batch (one second's worth), and after each batch exactly the newest remain.
Deletes that fail are retried on the next sweep, counted, and never forgotten.

Thread: ``retention``. When the start-up listing of a prefix fails (storage unreachable), retention bounds what this
run stores and lists that prefix again on each sweep until the listing succeeds once; the keys it indexed meanwhile
are merged in, so the surplus left by an earlier run is still deleted. After that, that prefix is never listed again.

While storage is down, listing and deleting fail on every sweep: each is logged as a state (``StateLog``), once when
it starts failing, as a reminder every few minutes, once when it works again; the attempts in between go to DEBUG.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections import deque
from typing import Any

import msgspec

from ..core.logstate import StateLog
from ..core.messages import AddBounds, RetentionStatsRequest, Stored, Sweep
from ..core.metrics import Metrics
from ..core.supervision import ChildActor
from ..storage.store import Store, StoreError, utc_stamp

log = logging.getLogger(__name__)

DELETE_BATCH = 100


class Bound(msgspec.Struct, frozen=True):
    task_id: str
    prefix: str
    max_count: int  # 0 = unlimited
    max_age_sec: float | None = None


#: framewatch's key names (``20251118T172959.123Z-000000042.jpg``) and the old system's (``20251118-172959.123.jpg``,
#: Go's ``20060102-150405.000``), so frames a migrated site left behind are indexed, bounded and aged like ours. The
#: old names carry no time zone: read as UTC (an age bound may be off by the site's offset for those frames only).
_STAMP_FORMATS = ("%Y%m%dT%H%M%S", "%Y%m%d-%H%M%S")


def key_time(key: str) -> float | None:
    """Wall time encoded in a key's name (see ``_STAMP_FORMATS``), or None for foreign keys."""
    name = key.rsplit("/", 1)[-1]
    if len(name) < 19 or name[15] != ".":
        return None
    for fmt in _STAMP_FORMATS:
        try:
            secs = calendar.timegm(time.strptime(name[:15], fmt))
            return secs + int(name[16:19]) / 1000
        except ValueError:
            continue
    return None


class RetentionStats(msgspec.Struct, frozen=True):
    indexed: dict[str, int]
    deleted: int
    delete_failures: int
    pending_deletes: int
    listings: int
    unlisted: int = 0  # prefixes whose start-up listing has not succeeded yet


class RetentionActor(ChildActor):
    thread_name = "retention"

    def __init__(self, *, store: Store, bounds: list[Bound], metrics: Metrics, **child: Any) -> None:
        super().__init__(**child)
        self._store = store
        self._bounds = {b.prefix: b for b in bounds}
        self._index: dict[str, deque[str]] = {b.prefix: deque() for b in bounds}
        self._metrics = metrics
        self._pending: list[str] = []
        self._retry: list[str] = []
        self._unlisted: list[str] = []  # prefixes whose listing has not succeeded yet (storage was down)
        self._listed_this_run: set[str] = set()  # listed keys this run stored: their ``Stored`` may still come
        self._since = utc_stamp(time.time() - 5)  # keys stamped after this were (almost surely) stored by this run
        self.deleted = 0
        self.delete_failures = 0
        self.listings = 0
        self._listing = StateLog(log, "retention: start-up listing")
        self._deleting = StateLog(log, "retention: deletes", level=logging.WARNING)

    def setup(self) -> None:
        for prefix in self._index:
            if not self._rebuild(prefix):
                self._unlisted.append(prefix)
        if self._unlisted:
            self._listing.down(f"cannot list {len(self._unlisted)} prefixes; bounding only what this run stores, and "
                               "listing them again once storage answers", kind="unlisted")
        self._flush()

    def on_crash(self, exc: BaseException) -> None:
        # The index dies with this incarnation; the next one rebuilds it with one listing (which finds every key
        # stored meanwhile) and gets the ``Stored`` messages this one had not read.
        self.requeue_unread()

    def on_stop(self) -> None:
        self._flush()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Stored():
                self._add(message)
            case Sweep():
                self._sweep()
            case AddBounds(bounds=bounds):
                self._add_bounds(bounds)
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
            unlisted=len(self._unlisted),
        )

    # --- work ---

    def _add_bounds(self, bounds: tuple[Bound, ...]) -> None:
        """Bound new prefixes (a camera added at run time): each indexed from one listing, like at start."""
        for bound in bounds:
            if bound.prefix in self._bounds:
                continue
            self._bounds[bound.prefix] = bound
            self._index[bound.prefix] = deque()
            if not self._rebuild(bound.prefix):
                self._unlisted.append(bound.prefix)

    def _rebuild(self, prefix: str) -> bool:
        """Index ``prefix`` from one listing, merged with the keys indexed so far; False if the listing failed."""
        bound = self._bounds[prefix]
        known = self._index[prefix]  # stored by this run while the prefix could not be listed (empty at start)
        seen = set(known)
        listed: deque[str] = deque()
        self.listings += 1
        try:
            for key in self._store.list_keys(prefix):
                if key_time(key) is None:
                    continue  # not a frame (the old system's algo_config.json sits beside a task's frames): never ours
                if key not in seen:
                    listed.append(key)
                    self._trim(listed, bound)  # memory stays at the bound even for a million leftover objects
                    if key.rsplit("/", 1)[-1] >= self._since:
                        self._listed_this_run.add(key)  # few: only what the writer stored while this listing ran
                if len(self._pending) >= DELETE_BATCH:
                    self._flush()
        except StoreError as exc:
            log.debug("retention: cannot list %s: %s", prefix, exc)
            return False  # the partial listing is dropped; the deletes it queued were beyond the bound anyway
        index = self._index[prefix] = deque(sorted([*listed, *known]))
        self._trim(index, bound)
        self._metrics.stored(bound.task_id, self._task_total(bound.task_id))
        return True

    def _add(self, msg: Stored) -> None:
        index = self._index.get(msg.prefix)
        bound = self._bounds.get(msg.prefix)
        if index is None or bound is None:
            log.warning("retention: key under unknown prefix %s", msg.key)
            return
        if msg.key in self._listed_this_run:
            self._listed_this_run.discard(msg.key)
            return  # stored while the listing ran: indexed (or already trimmed) from the listing
        index.append(msg.key)
        self._trim(index, bound)
        self._metrics.stored(bound.task_id, self._task_total(bound.task_id))

    def _trim(self, index: deque[str], bound: Bound) -> None:
        if bound.max_count > 0:
            while len(index) > bound.max_count:
                self._pending.append(index.popleft())

    def _sweep(self) -> None:
        if self._unlisted:
            self._list_again()
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

    def _list_again(self) -> None:
        """The start-up listings that failed, tried again (one sweep at a time) until each succeeds once."""
        for prefix in list(self._unlisted):
            if not self._rebuild(prefix):
                self._listing.down(f"{len(self._unlisted)} prefixes still unlisted", kind="unlisted")
                return  # storage still down: the other prefixes wait for the next sweep
            self._unlisted.remove(prefix)
            log.debug("retention: %s listed now that storage answers; %d keys indexed", prefix, len(self._index[prefix]))
        self._listing.up(f"every prefix listed; {sum(len(q) for q in self._index.values())} keys indexed")

    def _task_total(self, task_id: str) -> int:
        return sum(len(self._index[p]) for p, b in self._bounds.items() if b.task_id == task_id)

    def _flush(self) -> None:
        if not self._pending:
            return
        error, kind = "", "refused"  # the last exception, if a batch raised one; else the store refused some keys
        attempted, retry_before = len(self._pending), len(self._retry)
        while self._pending:
            batch, self._pending = self._pending[:DELETE_BATCH], self._pending[DELETE_BATCH:]
            try:
                failed = self._store.delete_many(batch)
            except StoreError as exc:
                error, kind, failed = f" ({exc})", type(exc).__name__, batch
            self.deleted += len(batch) - len(failed)
            log.debug("retention: deleted %d objects", len(batch) - len(failed))
            if failed:
                self.delete_failures += len(failed)
                self._retry.extend(failed)
        failed_now = len(self._retry) - retry_before
        if failed_now:  # one state update per flush (a sweep), however many batches it took
            self._deleting.down(f"{failed_now} of {attempted} objects not deleted{error}; retrying on each sweep",
                                kind=kind)
        else:
            self._deleting.up(f"{self.deleted} deleted so far")
