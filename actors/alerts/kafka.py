"""The Kafka backend of the ``Sink`` interface (``ai_analysis.mq_type = "kafka"``).

Each alert is one record on ``ai_analysis.mq_topic``: key = the task id (UTF-8), so one camera's alerts land on one
partition and stay in order; value = ``sinks.encode_alert(alert)``: the old system's alert row as JSON (numeric
``id``, ``result`` as a string...) plus framewatch's fields, ``schema`` 2 (``core.messages.Alert``, README).

``write(batch)`` sends the batch and waits until the broker confirmed every record (``acks='all'``), within
``timeout_sec``; otherwise it raises ``SinkError`` and the alert actor keeps the batch in its spool. Order holds across
retries (idempotent producer, one request in flight). A batch that failed may still have been partly written, so
delivery is at-least-once: consumers dedupe on ``Alert.id``, which a redelivery keeps, with the same bytes.

The producer is created on the first ``write`` (never in ``__init__``, which runs on the caller's thread), and after a
failure it is closed and created again on the next ``write``: a broker that was down is picked up when it returns.
Each time a producer is created, the topic is created if missing (admin client, best effort: a broker that
auto-creates topics, or a user without the right, still works).

Logging: no line per attempt. The alert actor logs the sink failing and working again (once each); this module adds
only a reminder every few minutes while Kafka stays down, and the topic check's state (``StateLog``). kafka-python's
own per-reconnect lines are silenced by ``logstate.quiet_library_loggers``.

Owned and called by the alert actor's thread only; ``close`` releases the producer's sender thread and sockets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..alerts.sinks import SinkError, encode_alert
from ..core.logstate import StateLog
from ..core.messages import Alert

log = logging.getLogger(__name__)

#: Rough size of one encoded alert, to size producer batches from a count of alerts.
_ALERT_BYTES_ESTIMATE = 1024


class KafkaSink:
    """Alerts to a Kafka topic, one record per alert, keyed by task id."""

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        batch_size: int = 100,
        interval_sec: float = 2.0,
        timeout_sec: float = 5.0,
        partitions: int = 1,
        client_id: str = "framewatch-alerts",
    ) -> None:
        """``batch_size`` and ``interval_sec`` are the alert actor's batching (``ai_analysis.alert_batch_*``);
        ``timeout_sec`` bounds every blocking step (connect, metadata, delivery of a batch). The producer's sender
        thread is named ``<client_id>-network-thread``."""
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.partitions = partitions
        timeout_ms = max(100, int(timeout_sec * 1000))
        self._timeout_sec = timeout_ms / 1000
        # write() flushes at once, so lingering only matters for records sent by other paths; keep it short.
        linger_ms = min(int(interval_sec * 1000) // 4, 50)
        self._config = dict(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,  # with one request in flight: no reordering, no duplicates from retries
            max_in_flight_requests_per_connection=1,
            linger_ms=linger_ms,
            batch_size=min(max(batch_size * _ALERT_BYTES_ESTIMATE, 16 * 1024), 1024 * 1024),
            request_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            delivery_timeout_ms=timeout_ms + linger_ms,
            bootstrap_timeout_ms=timeout_ms,
            retry_backoff_ms=100,
            reconnect_backoff_ms=100,
            reconnect_backoff_max_ms=1000,
        )
        self._producer: KafkaProducer | None = None
        # The alert actor reports down/up; these add the reminders, and the topic check (best effort) once.
        self._state = StateLog(log, f"kafka {bootstrap_servers}", level=logging.DEBUG)
        self._topic_state = StateLog(log, f"kafka topic {topic!r}", level=logging.WARNING)
        self.producers_created = 0
        """How many producers were created: 1 + one per recovery from a failure."""

    def write(self, alerts: Sequence[Alert]) -> None:
        """Deliver every alert of the batch, in order, or raise SinkError (bounded by ~2 x ``timeout_sec``)."""
        if not alerts:
            return
        try:
            self._write(alerts)
        except SinkError as exc:
            self._state.down(str(exc))
            raise
        self._state.up()

    def _write(self, alerts: Sequence[Alert]) -> None:
        producer = self._ensure_producer()
        deadline = time.monotonic() + self._timeout_sec
        try:
            futures = [producer.send(self.topic, key=a.task_id.encode(), value=encode_alert(a)) for a in alerts]
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            self._discard()
            raise SinkError(f"Kafka at {self.bootstrap_servers} did not confirm {len(alerts)} alerts on topic {self.topic!r}: {_short(exc)}") from None

    def close(self) -> None:
        self._discard(timeout=self._timeout_sec)

    # --- producer lifecycle ----------------------------------------------------------------------------------------

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is not None:
            return self._producer
        try:
            producer = KafkaProducer(**self._config)
        except KafkaError as exc:
            raise SinkError(f"cannot reach Kafka at {self.bootstrap_servers} (ai_analysis.mq_address): {_short(exc)}") from None
        self.producers_created += 1
        self._producer = producer
        self._create_topic()
        return producer

    def _create_topic(self) -> None:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id=f"{self._config['client_id']}-admin",
                request_timeout_ms=self._config["request_timeout_ms"],
                bootstrap_timeout_ms=self._config["bootstrap_timeout_ms"],
                reconnect_backoff_max_ms=1000,
            )
        except KafkaError as exc:
            self._topic_state.down(f"cannot check it (admin client): {_short(exc)}", kind=type(exc).__name__)
            return
        try:
            admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
            log.info("created Kafka topic %r (%d partitions)", self.topic, self.partitions)
            self._topic_state.up()
        except TopicAlreadyExistsError:
            self._topic_state.up()
        except KafkaError as exc:
            self._topic_state.down(f"cannot create it: {_short(exc)}", kind=type(exc).__name__)
        finally:
            admin.close()

    def _discard(self, timeout: float = 0.0) -> None:
        """Close the producer, dropping what it still holds (the caller keeps the batch), and stop its thread."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=timeout)
        except KafkaError:
            # close() flushes first and gives up on timeout before stopping its sender thread: stop it here.
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(self._timeout_sec)
            try:
                producer.close(timeout=0)
            except KafkaError:
                pass


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}" if type(exc).__name__ not in text else text[:200]
