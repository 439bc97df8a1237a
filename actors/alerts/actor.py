"""Alert actor: every alert into the journal first (durable), then in batches to the sink, in order.

Messages: ``Alert`` (from the writer), ``Flush`` (timer, every ``alert_batch_interval_sec``), ``AlertStatsRequest``.

The journal (``alerts.spool.Spool``, on disk under ``[alerts] spool_dir``, for every sink) is where an alert becomes
durable, and only then is it counted emitted (``Metrics.alert_emitted``): an alert counted emitted is on disk or in
the sink, never only in memory, whatever kills the process. Group commit: alerts that arrive together are appended
with one fsync, committed as soon as the actor's mailbox is empty (or ``alert_batch_size`` are waiting), so a storm
costs one fsync per burst and a lone alert waits for one fsync only. Batches go from the journal's head to the sink
when ``alert_batch_size`` are journaled or when the timer fires (at once when batching is off), and leave the journal
only once the sink confirmed them: a crash in between delivers them again after the restart, same id, same bytes
(consumers dedupe on ``id``). The journal is bounded (``spool_max_bytes``): a full one drops its oldest entries as a
counted (``dropped``), logged event. If the journal itself cannot be written (a full disk), alerts wait in memory,
bounded by ``MAX_UNJOURNALED``, not counted emitted yet, and the append is retried at every message.

When the sink fails, alerts stay in the journal; it is tried again only after a backoff (``retry_initial_sec``
doubling to ``retry_max_sec``). A new actor on a non-empty journal replays it first, in order. On stop the actor
commits and flushes: what the sink still refuses (or a sink already known down) stays in the journal for the next run,
and the log says how many.

Every batch the sink accepts (new, or replayed from the spool) is then added to the alert history (``History``,
SQLite), the same batch in one transaction: a row means the sink has the alert, so the history never shows an alert
its consumers never got, and with the JSON Lines sink the rows are the file's lines. An alert still spooled is not a
row yet (while Kafka is down, the history lags the detections); a crash between the sink's write and the history's
loses that batch's rows, not the alerts. A history failure never fails delivery: the batch's alerts are counted
(``history_missed``), the failure is logged as a state (down once, a reminder, back up once), and the history is
tried again after a backoff (0.5 s doubling to 30 s), the batches in between counted too.

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

from ..alerts.history import History, HistoryError
from ..alerts.sinks import Sink, SinkError
from ..core.logstate import StateLog
from ..core.messages import Alert, AlertStatsRequest, Flush
from ..core.metrics import Metrics
from ..core.supervision import Backoff, ChildActor

log = logging.getLogger(__name__)


#: Alerts held in memory while the journal cannot be written (a full disk); past it the oldest are dropped, counted.
MAX_UNJOURNALED = 10_000


class AlertSpool(Protocol):
    """FIFO of alerts the sink has not taken yet: the journal (``alerts.spool.Spool`` on disk; ``MemorySpool`` only
    in tests and benchmarks that do not measure durability). ``append`` raises ``OSError`` when the disk refuses."""

    def append(self, alerts: Sequence[Alert]) -> int:
        """Add at the tail; returns how many of the oldest entries were dropped to stay within the bound."""
        ...

    def peek(self, n: int) -> list[Alert]: ...

    def drop(self, n: int) -> None: ...

    def __len__(self) -> int: ...


class MemorySpool:
    """A bounded in-memory spool, for tests and benchmarks only: framewatch itself always journals on disk."""

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
    batch_queue: int  # alerts received and not journaled yet (a group commit pending, or the disk refusing)
    spooled: int  # alerts journaled and not confirmed by the sink yet
    sink_ok: bool
    sink_error: str = ""  # why the last write failed, while ``sink_ok`` is False
    history_ok: bool = True  # the last batch went into the alert history (True without a history)
    history_error: str = ""  # why it did not, while ``history_ok`` is False
    history_missed: int = 0  # alerts the sink took that are not in the history (failures, backoff), since start


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
        history: History | None = None,
        **child: Any,
    ) -> None:
        """``history``: where delivered batches also go (None: nowhere). It and ``spool`` outlive this incarnation."""
        super().__init__(**child)
        self._sink_factory = sink_factory
        self._sink: Sink | None = None
        self._spool = spool
        self._metrics = metrics
        self._batch_size = batch_size if batching else 1
        self._unjournaled: list[Alert] = []  # received, waiting for the next group commit
        self._sink_ok = True
        self._sink_error = ""
        self._backoff = Backoff(retry_initial_sec, retry_max_sec, reset_after_sec=retry_max_sec)
        self._retry_at = 0.0  # monotonic: while the sink fails, no write before this
        self.board = board or AlertBoard()
        self._history = history
        self._history_state = StateLog(log, "alerts: history")
        self._history_backoff = Backoff(0.5, 30.0, reset_after_sec=60.0)
        self._history_retry_at = 0.0  # monotonic: while the history fails, no write before this
        self._history_missed = self.board.stats.history_missed  # the board outlives incarnations: so does the count
        self._journal_state = StateLog(log, "alerts: journal (alerts wait in memory, not counted emitted)")
        self._full_state = StateLog(log, "alerts: journal space", level=logging.ERROR)

    def setup(self) -> None:
        self._sink = self._sink_factory()
        if len(self._spool):
            log.info("alerts: %d alerts in the journal from before; delivering them first", len(self._spool))
            self._flush()
        self._publish()

    def on_stop(self) -> None:
        self._commit()
        if self._sink_ok:  # known down: do not hold the shutdown for another timeout; the next run replays
            self._flush()
        self._close_sink()
        if len(self._spool):
            log.warning("alerts: %d alerts not delivered stay in the journal for the next start", len(self._spool))
        if self._unjournaled:
            self._metrics.alerts_lost(len(self._unjournaled))
            log.error("alerts: %d alerts lost at stop: the journal could not be written (%s)",
                      len(self._unjournaled), self._journal_state.reason)
        self._publish()

    def on_crash(self, exc: BaseException) -> None:
        # The journal outlives this incarnation (the alerts child owns it): what was received is committed there, and
        # the alerts not read yet go back to the link, so the next incarnation delivers both, oldest first.
        self._commit()
        self._close_sink()
        self.requeue_unread()
        self._publish()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Alert():
                self._unjournaled.append(message)
                if len(self._unjournaled) >= self._batch_size or self.actor_inbox.empty():
                    self._commit()
                    if len(self._spool) >= self._batch_size:
                        self._flush()
            case Flush():
                self._commit()
                self._flush()
            case AlertStatsRequest():
                return self.statistics()
            case _:
                log.warning("alerts: unexpected message %r", type(message).__name__)
        self._publish()
        return None

    def statistics(self) -> AlertStats:
        return AlertStats(batch_queue=len(self._unjournaled), spooled=len(self._spool), sink_ok=self._sink_ok,
                          sink_error=self._sink_error, history_ok=not self._history_state.is_down,
                          history_error=self._history_state.reason, history_missed=self._history_missed)

    def _publish(self) -> None:
        self.board.stats = self.statistics()

    def _close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _commit(self) -> None:
        """Journal what was received (one append, one fsync); only then is it counted emitted."""
        if not self._unjournaled:
            return
        alerts = self._unjournaled
        try:
            dropped = self._spool.append(alerts)
        except OSError as exc:
            self._journal_state.down(f"cannot append to the journal: {exc.strerror or exc}")
            excess = len(alerts) - MAX_UNJOURNALED
            if excess > 0:
                del alerts[:excess]
                self._metrics.alerts_lost(excess)
                log.error("alerts: %d alerts dropped: the journal cannot be written and %d wait in memory",
                          excess, MAX_UNJOURNALED)
            return
        self._unjournaled = []
        self._journal_state.up()
        for alert in alerts:
            self._metrics.alert_emitted(alert.task_id)
        if dropped:
            self._metrics.alerts_lost(dropped)
            self._full_state.down("journal full (spool_max_bytes): dropping its oldest alerts, counted in "
                                  "alerts.dropped")
        else:
            self._full_state.up()

    def _flush(self) -> None:
        """Deliver the journal from its head, unless the sink is failing and its backoff has not passed."""
        if time.monotonic() < self._retry_at or self._sink is None:
            return
        self._drain_spool()

    def _drain_spool(self) -> bool:
        while len(self._spool):
            try:
                chunk = self._spool.peek(max(self._batch_size, 100))
            except OSError as exc:
                self._journal_state.down(f"cannot read the journal: {exc.strerror or exc}")
                return False
            if not self._deliver(chunk):
                return False
            try:
                self._spool.drop(len(chunk))
            except OSError as exc:  # delivered; on disk its head stays behind: delivered again after a restart
                self._journal_state.down(f"cannot advance the journal's head: {exc.strerror or exc}")
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
        self._record(alerts)
        return True

    def _record(self, alerts: list[Alert]) -> None:
        """The batch the sink took, into the history. Never raises: the alerts are delivered whatever happens here."""
        if self._history is None:
            return
        if time.monotonic() < self._history_retry_at:
            self._history_missed += len(alerts)
            return
        try:
            self._history.add(alerts)
        except Exception as exc:  # noqa: BLE001 - HistoryError, or a bug in it: either way delivery goes on
            self._history_missed += len(alerts)
            self._history_state.down(str(exc) if isinstance(exc, HistoryError) else f"{type(exc).__name__}: {exc}")
            self._history_retry_at = time.monotonic() + self._history_backoff.next_delay()
            return
        self._history_backoff.attempt = 0
        self._history_state.up()


