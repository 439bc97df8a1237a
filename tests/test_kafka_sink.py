"""KafkaSink against a real Kafka-API broker (Tansu, from ``.ci/servers.sh start`` or started by the test); no mocks."""

from __future__ import annotations

import json
import time

import msgspec
import pytest
from framewatch.actors.alerts.kafka import KafkaSink
from framewatch.actors.alerts.sinks import SinkError
from framewatch.actors.core.messages import Alert
from kafka import KafkaAdminClient

from tests.servers import (
    KAFKA_BOOTSTRAP,
    TansuBroker,
    consume,
    free_port,
    kafka_threads,
    make_alert,
    require_kafka,
    unique_name,
    wait_until,
)

decode_alert = msgspec.json.Decoder(Alert).decode


@pytest.fixture
def topic() -> str:
    return unique_name("fw-alerts")


def test_alerts_arrive_on_the_topic_in_order_per_camera_with_every_field(topic: str) -> None:
    require_kafka()
    sink = KafkaSink(KAFKA_BOOTSTRAP, topic, batch_size=50, interval_sec=1.0, timeout_sec=5.0, partitions=3)
    cams = ["cam-01", "cam-02", "cam-03"]
    sent = [make_alert(cams[i % 3], i) for i in range(60)]
    try:
        sink.write(sent[:25])
        sink.write(sent[25:])
    finally:
        sink.close()

    records = consume(KAFKA_BOOTSTRAP, topic, len(sent))

    assert len(records) == len(sent)
    for cam in cams:
        mine = [r for r in records if r.key == cam.encode()]
        assert {r.partition for r in mine} == {mine[0].partition}  # one camera, one partition
        assert [decode_alert(r.value) for r in sorted(mine, key=lambda r: r.offset)] == [a for a in sent if a.task_id == cam]
    first = json.loads(records[0].value)
    assert first["schema"] == 3 and isinstance(first["id"], int) and isinstance(first["result"], str)


def test_the_topic_is_created_on_the_first_write(topic: str) -> None:
    require_kafka()
    sink = KafkaSink(KAFKA_BOOTSTRAP, topic, partitions=2)
    try:
        sink.write([make_alert("cam-01", 1)])
    finally:
        sink.close()
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP, request_timeout_ms=5000)
    try:
        assert topic in admin.list_topics()
    finally:
        admin.close()


def test_an_empty_batch_needs_no_broker() -> None:
    sink = KafkaSink(f"127.0.0.1:{free_port()}", "unused")
    sink.write([])
    sink.close()
    assert sink.producers_created == 0


def test_a_broker_that_never_ran_makes_write_raise_sink_error_quickly() -> None:
    before = kafka_threads()
    sink = KafkaSink(f"127.0.0.1:{free_port()}", "unused", timeout_sec=2.0)
    started = time.monotonic()
    with pytest.raises(SinkError, match="ai_analysis.mq_address"):
        sink.write([make_alert("cam-01", 1)])
    elapsed = time.monotonic() - started
    sink.close()

    assert elapsed < 4.0
    wait_until(lambda: kafka_threads() == before, 5.0, "kafka-python threads to end")


def test_a_dead_broker_fails_the_write_in_bounded_time_and_a_restarted_one_is_used_again(topic: str) -> None:
    before = kafka_threads()
    broker = TansuBroker()
    broker.start()
    sink = KafkaSink(broker.bootstrap, topic, timeout_sec=2.0)
    try:
        sink.write([make_alert("cam-01", 1)])
        assert sink.producers_created == 1
        assert "framewatch-alerts-network-thread" in kafka_threads()

        broker.kill()
        started = time.monotonic()
        with pytest.raises(SinkError):
            sink.write([make_alert("cam-01", 2)])
        elapsed = time.monotonic() - started
        assert elapsed < 6.0, f"write blocked {elapsed:.1f}s on a dead broker"

        broker.start()  # same port, empty broker (memory storage): the topic must be created again

        def delivered() -> bool:
            try:
                sink.write([make_alert("cam-01", 3), make_alert("cam-01", 4)])
                return True
            except SinkError:
                return False

        wait_until(delivered, 20.0, "a write to the restarted broker", interval=0.2)
        records = consume(broker.bootstrap, topic, 2)
        assert [decode_alert(r.value).frame_seq for r in records] == [3, 4]
        assert sink.producers_created >= 2
    finally:
        sink.close()
        broker.stop()
    wait_until(lambda: kafka_threads() == before, 5.0, "kafka-python threads to end after close")
