"""framewatch sending alerts to Kafka (Tansu: the shared broker, or one of the test's own that it kills and restarts);
no mocks. Invariant 6: every alert reaches the topic or waits in the on-disk spool; at-least-once, with the same id."""

from __future__ import annotations

import logging
import threading
import time

from framewatch.actors.core.config import decode_config
from framewatch.actors.core.messages import Alert
from framewatch.actors.system import Running

from tests.servers import (
    KAFKA_BOOTSTRAP,
    Spotter,
    TansuBroker,
    consume,
    first_deliveries,
    pipeline_conf,
    require_kafka,
    unique_name,
)
from tests.waiting import wait_for


def consume_distinct(bootstrap: str, topic: str, distinct: int, earlier: list) -> list:  # type: ignore[type-arg]
    """Records from the start of ``topic`` until, with ``earlier``, they hold ``distinct`` alert ids (redeliveries
    take room in the topic, so the record count alone may fall short)."""
    count = distinct - len(first_deliveries(earlier)) if earlier else distinct
    while True:
        records = consume(bootstrap, topic, count)
        missing = distinct - len(first_deliveries(earlier + records))
        if missing <= 0:
            return records
        count = len(records) + missing


def assert_in_order_per_camera(alerts: list[Alert]) -> None:
    for cam in {a.task_id for a in alerts}:
        seqs = [a.frame_seq for a in alerts if a.task_id == cam]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (cam, seqs)


def settled(fw: Running):  # type: ignore[no-untyped-def]
    """A snapshot once every alert emitted so far was written (none batched, none spooled), or None."""
    snap = fw.snapshot()
    a = snap.alerts
    return snap if a.written == a.emitted and a.batch_queue == 0 and a.spooled == 0 else None


def test_alerts_on_the_topic_are_the_alerts_the_stats_counted_keyed_and_in_order_per_camera(tmp_path):
    require_kafka()
    topic = unique_name("fw-alerts")
    on = threading.Event()
    on.set()
    loaded = decode_config(pipeline_conf(tmp_path, kafka=(KAFKA_BOOTSTRAP, topic)))
    with Running(loaded, detector_factory=lambda: Spotter(on)) as fw:
        wait_for(lambda: all(c.alerts >= 10 for c in fw.snapshot().cameras.values()), 60, "10 alerts per camera")
    final = fw.final
    assert final is not None
    assert final.alerts.written == final.alerts.emitted and final.alerts.dropped == 0 and final.alerts.spooled == 0
    assert final.components["sink"] == "up"

    alerts = first_deliveries(consume(KAFKA_BOOTSTRAP, topic, final.alerts.emitted))
    assert len(alerts) == final.alerts.emitted
    for cam, stats in final.cameras.items():
        assert sum(a.task_id == cam for a in alerts) == stats.alerts
    assert_in_order_per_camera(alerts)
    assert {a.schema for a in alerts} == {3}
    assert len({a.uid for a in alerts}) == len(alerts)


def test_a_broker_down_for_10_s_loses_nothing_the_spool_replays_in_order_with_the_same_ids(tmp_path):
    broker = TansuBroker()
    broker.start()
    topic = unique_name("fw-alerts")
    on = threading.Event()
    on.set()
    loaded = decode_config(pipeline_conf(tmp_path, cams=("cam-a", "cam-b"), kafka=(broker.bootstrap, topic)))
    try:
        with Running(loaded, detector_factory=lambda: Spotter(on)) as fw:
            wait_for(lambda: fw.snapshot().alerts.written >= 10, 60, "alerts written")
            # Tansu keeps its log in memory: read what it holds before killing it.
            on.clear()
            before = wait_for(lambda: settled(fw), 30, "every alert so far written")
            records = consume(broker.bootstrap, topic, before.alerts.written)

            on.set()
            broker.kill()
            killed = time.monotonic()
            down = wait_for(lambda: (s := fw.snapshot()).alerts.spooled >= 10 and s, 30, "alerts spooled")
            assert down.components["sink"].startswith("down: ") and "127.0.0.1:" in down.components["sink"]
            assert down.totals.inferred > before.totals.inferred  # inference does not wait for Kafka
            wait_for(lambda: time.monotonic() - killed >= 10, 15, "ten seconds of outage")
            broker.start()

            wait_for(lambda: fw.snapshot().alerts.spooled == 0, 60, "the spool replayed")
            wait_for(lambda: fw.snapshot().components["sink"] == "up", 10, "the sink up")
            on.clear()
            final = wait_for(lambda: settled(fw), 30, "every alert written")
        assert final.alerts.dropped == 0
        records += consume_distinct(broker.bootstrap, topic, final.alerts.emitted, records)
        alerts = first_deliveries(records)
        assert len(alerts) == final.alerts.emitted  # every alert counted arrived, none twice under different ids
        assert_in_order_per_camera(alerts)
    finally:
        broker.stop()


def test_a_full_spool_drops_its_oldest_alerts_counted_and_the_next_run_replays_the_rest_first(tmp_path, caplog):
    broker = TansuBroker()  # not started yet: Kafka is down during the first run
    topic = unique_name("fw-alerts")
    on = threading.Event()
    on.set()
    text = pipeline_conf(tmp_path, cams=("cam-a",), kafka=(broker.bootstrap, topic), spool_max_bytes=8192)
    with caplog.at_level(logging.ERROR), Running(decode_config(text), detector_factory=lambda: Spotter(on)) as fw:
        wait_for(lambda: fw.snapshot().alerts.dropped >= 5, 60, "the spool dropping its oldest alerts")
    first = fw.final
    assert first is not None and first.alerts.written == 0 and first.alerts.spooled >= 5
    assert first.alerts.emitted == first.alerts.spooled + first.alerts.dropped
    assert "alerts: journal space" in caplog.text and "dropping its oldest alerts" in caplog.text
    stopped_at = time.time()

    broker.start()
    try:
        with Running(decode_config(text), detector_factory=lambda: Spotter(on)) as fw:
            wait_for(lambda: fw.snapshot().alerts.written >= first.alerts.spooled + 5, 60, "replay and new alerts")
        second = fw.final
        assert second is not None and second.alerts.spooled == 0
        records = consume(broker.bootstrap, topic, first.alerts.spooled + second.alerts.emitted)
        alerts = first_deliveries(records)
        replayed = alerts[: first.alerts.spooled]
        assert all(_wall(a.time) < stopped_at for a in replayed)  # the previous run's alerts came first
        assert all(_wall(a.time) >= stopped_at for a in alerts[first.alerts.spooled:])
        assert len(alerts) == first.alerts.spooled + second.alerts.emitted
        assert_in_order_per_camera(replayed)
    finally:
        broker.stop()


def _wall(iso: str) -> float:
    import calendar

    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) + int(iso[20:23]) / 1000
