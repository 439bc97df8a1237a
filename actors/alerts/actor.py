"""Alert actor: batches alerts to the sink; what the sink refuses waits in a spool, in order.

Messages: ``Alert`` (from the writer), ``Flush`` (timer, every ``alert_batch_interval_sec``), ``AlertStatsRequest``.
A batch is written when it reaches ``alert_batch_size`` or when the timer fires (or at once when batching is off).
Older spooled alerts always go before newer ones, so one camera's alerts stay in order through an outage.

When the sink fails, the batch goes to the spool (on disk for Kafka, so alerts survive a crash of the sink and a
restart of framewatch; bounded, and a full spool drops its oldest entries as a counted, logged event). While the sink
is failing, it is tried again only after a backoff (``retry_initial_sec`` doubling to ``retry_max_sec``); batches in
between go straight to the spool behind the older ones. A new actor on a non-empty spool replays it first. On stop the
actor flushes: what the sink still refuses (or a sink already known down) stays in the spool for the next run.

The actor posts its ``AlertStats`` on an ``AlertBoard`` after every message, so the supervisor's stats never wait on
this actor, which may spend seconds in a write to a dead broker.

Thread: ``alerts``; the sink is created in ``setup`` and closed in ``on_stop``/``on_failure`` on this thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from ..alerts.sinks import Sink, SinkError
from ..core.messages import Alert, AlertStatsRequest, Flush
from ..core.metrics import Metrics
from ..core.supervision import Backoff, ChildActor

log = logging.getLogger(__name__)


class AlertSpool(Protocol):
    """FIFO of alerts the sink has not taken yet (``actors.spool.Spool`` on disk, ``MemorySpool`` otherwise)."""

    def append(self, alerts: Sequence[Alert]) -> int:
        """Add at the tail; returns how many of the oldest entries were dropped to stay within the bound."""
        ...

    def peek(self, n: int) -> list[Alert]: ...

    def drop(self, n: int) -> None: ...

    def __len__(self) -> int: ...


class MemorySpool:
    """A bounded in-memory spool, for sinks that are themselves local files."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._q: deque[Alert] = deque()
        self._max = max_entries

    def append(self, alerts: Sequence[Alert]) -> int:
        self._q.extend(alerts)
        dropped = 0
        while len(self._q) > self._max:
            self._q.popleft()
            dropped += 1
        return dropped

    def peek(self, n: int) -> list[Alert]:
        return [self._q[i] for i in range(min(n, len(self._q)))]

    def drop(self, n: int) -> None:
        for _ in range(min(n, len(self._q))):
            self._q.popleft()

    def __len__(self) -> int:
        return len(self._q)


class AlertStats(msgspec.Struct, frozen=True):
    batch_queue: int
    spooled: int
    sink_ok: bool
    sink_error: str = ""  # why the last write failed, while ``sink_ok`` is False


class AlertBoard:
    """The alert actor's latest ``AlertStats``, readable from any thread without asking the actor."""

    def __init__(self) -> None:
        self.stats = AlertStats(batch_queue=0, spooled=0, sink_ok=True)


class AlertActor(ChildActor):
    thread_name = "alerts"

    def __init__(
        self,
        *,
        sink_factory: Callable[[], Sink],
        spool: AlertSpool,
        metrics: Metrics,
        batch_size: int,
        batching: bool = True,
        board: AlertBoard | None = None,
        retry_initial_sec: float = 0.5,
        retry_max_sec: float = 5.0,
        **child: Any,
    ) -> None:
        super().__init__(**child)
        self._sink_factory = sink_factory
        self._sink: Sink | None = None
        self._spool = spool
        self._metrics = metrics
        self._batch_size = batch_size if batching else 1
        self._batch: list[Alert] = []
        self._sink_ok = True
        self._sink_error = ""
        self._backoff = Backoff(retry_initial_sec, retry_max_sec, reset_after_sec=retry_max_sec)
        self._retry_at = 0.0  # monotonic: while the sink fails, no write before this
        self.board = board or AlertBoard()

    def setup(self) -> None:
        self._sink = self._sink_factory()
        if len(self._spool):
            log.info("alerts: %d spooled alerts from before; replaying them first", len(self._spool))
            self._flush()
        self._publish()

    def on_stop(self) -> None:
        if self._sink_ok:
            self._flush()
        else:  # known down: do not hold the shutdown for another timeout; the next run replays the spool
            self._spool_batch()
        self._close_sink()
        self._publish()

    def on_crash(self, exc: BaseException) -> None:
        # The spool outlives this incarnation (the alerts child owns it): the batch waits there, and the alerts not
        # read yet go back to the link, so the next incarnation delivers both, oldest first.
        self._spool_batch()
        self._close_sink()
        self.requeue_unread()
        self._publish()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Alert():
                self._batch.append(message)
                if len(self._batch) >= self._batch_size:
                    self._flush()
            case Flush():
                self._flush()
            case AlertStatsRequest():
                return self.statistics()
            case _:
                log.warning("alerts: unexpected message %r", type(message).__name__)
        self._publish()
        return None

    def statistics(self) -> AlertStats:
        return AlertStats(batch_queue=len(self._batch), spooled=len(self._spool), sink_ok=self._sink_ok,
                          sink_error=self._sink_error)

    def _publish(self) -> None:
        self.board.stats = self.statistics()

    def _close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _flush(self) -> None:
        """Spool first (older), then the batch; on the first failure, or while backing off, the batch joins the spool."""
        if time.monotonic() < self._retry_at:
            self._spool_batch()
            return
        if len(self._spool) and not self._drain_spool():
            self._spool_batch()
            return
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            delivered = self._deliver(batch)
        except BaseException:  # a bug in the sink: keep the batch for on_failure to spool
            self._batch = batch + self._batch
            raise
        if not delivered:
            self._spool_alerts(batch)

    def _drain_spool(self) -> bool:
        while len(self._spool):
            chunk = self._spool.peek(max(self._batch_size, 100))
            if not self._deliver(chunk):
                return False
            self._spool.drop(len(chunk))
        return True

    def _deliver(self, alerts: list[Alert]) -> bool:
        if self._sink is None:
            return False
        try:
            self._sink.write(alerts)
        except SinkError as exc:
            if self._sink_ok:
                log.error("alerts: sink %s failed (%s); spooling until it recovers", self._sink.name, exc)
            self._sink_ok = False
            self._sink_error = str(exc)
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            return False
        if not self._sink_ok:
            log.info("alerts: sink %s works again; %d alerts still spooled", self._sink.name, len(self._spool))
        self._sink_ok = True
        self._sink_error = ""
        self._backoff.attempt = 0
        self._metrics.alerts_delivered(len(alerts))
        return True

    def _spool_batch(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._spool_alerts(batch)

    def _spool_alerts(self, alerts: list[Alert]) -> None:
        dropped = self._spool.append(alerts)
        if dropped:
            self._metrics.alerts_lost(dropped)
            log.error("alerts: spool full, dropped the %d oldest alerts", dropped)
