"""The alert record (schema 2) as the old system's consumers read it: its alert row, with the row's strict types, from
real Kafka records and ``alerts.jsonl`` lines; the numeric id (``core.ids``); redelivery keeps id and bytes."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import pytest
from framewatch.actors.alerts.sinks import encode_alert
from framewatch.actors.analytics.rules import Decision, RegionResult
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.ids import MAX_SAFE_INTEGER, PER_MS, AlertIds, issued_ms
from framewatch.actors.core.messages import Alert, Detection, Frame
from framewatch.actors.alerts.records import make_alert as slot_make_alert
from framewatch.actors.system import Running

from tests.servers import (
    KAFKA_BOOTSTRAP,
    Spotter,
    TansuBroker,
    consume,
    first_deliveries,
    make_alert,
    minio_conf,
    pipeline_conf,
    remove_bucket,
    require_kafka,
    require_s3,
    unique_name,
)
from tests.waiting import wait_for


class OldAlertRow(msgspec.Struct, forbid_unknown_fields=False):
    """The old system's alert row (gorm model ``alerts``) as its Go consumers decode a record: every field there, of
    the row's type (``id`` a ``uint``, ``inference_time_ms`` an int, ``result`` a string); unknown fields ignored."""

    id: Annotated[int, msgspec.Meta(ge=0)]
    task_id: str
    task_type: str
    image_path: str
    image_url: str
    algorithm_id: str
    algorithm_name: str
    result: str
    confidence: float
    detection_count: int
    inference_time_ms: int
    created_at: str
    updated_at: str


_OLD_ROW = msgspec.json.Decoder(OldAlertRow)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def rfc3339_ms(text: str) -> int:
    assert _RFC3339.fullmatch(text), text
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def read_as_old_rows(values: Sequence[bytes]) -> list[OldAlertRow]:
    """What a consumer of the old system makes of these record values; fails on any type it would not accept."""
    rows = [_OLD_ROW.decode(v) for v in values]
    for row in rows:
        assert row.id <= MAX_SAFE_INTEGER
        assert abs(issued_ms(row.id) - rfc3339_ms(row.created_at)) < 1000  # drawn when the alert was made
        assert rfc3339_ms(row.updated_at) >= rfc3339_ms(row.created_at)
        result = json.loads(row.result)
        assert result["total_count"] == row.detection_count
        scores = [d["confidence"] for d in result["detections"]]
        assert row.confidence == max(scores, default=0.0)
        assert all({"class", "confidence", "bbox"} <= set(d) and len(d["bbox"]) == 4 for d in result["detections"])
    return rows


def distinct_values(records: list) -> list[bytes]:  # type: ignore[type-arg]
    """Record values in topic order, a redelivery (byte-identical, checked by ``first_deliveries``) once."""
    first_deliveries(records)
    return list(dict.fromkeys(r.value for r in records))


def assert_ids_increase_per_camera(rows: Sequence[OldAlertRow]) -> None:
    """In the order written (topic order per key, file order): unique, increasing per camera."""
    assert len({r.id for r in rows}) == len(rows)
    for cam in {r.task_id for r in rows}:
        ids = [r.id for r in rows if r.task_id == cam]
        assert ids == sorted(ids), (cam, ids)


# --- the numeric id --------------------------------------------------------------------------------------------------


class Clock:
    """A wall clock in ms that the test sets."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_ids_are_milliseconds_times_1000_plus_a_sequence_and_a_burst_borrows_from_the_next_millisecond() -> None:
    clock = Clock(5_000)
    ids = AlertIds(clock)
    burst = [ids.next() for _ in range(2 * PER_MS + 500)]
    assert burst == list(range(5_000 * PER_MS, 5_002 * PER_MS + 500))
    clock.ms = 5_001  # still behind the burst: the ids go on from it
    assert ids.next() == 5_002 * PER_MS + 500
    clock.ms = 5_010
    assert ids.next() == 5_010 * PER_MS


def test_a_clock_stepped_back_never_repeats_an_id() -> None:
    clock = Clock(1_000)
    ids = AlertIds(clock)
    before = [ids.next(), ids.next()]
    clock.ms = 990  # an NTP correction of 10 ms backwards
    after = [ids.next(), ids.next()]
    assert before + after == sorted(set(before + after))
    clock.ms = 1_001  # the clock passes the last id again: ids follow it
    assert ids.next() == 1_001 * PER_MS


def test_ids_drawn_from_many_threads_are_unique_and_increasing_on_each_thread() -> None:
    ids = AlertIds()
    drawn: list[list[int]] = [[] for _ in range(8)]

    def draw(mine: list[int]) -> None:
        for _ in range(5_000):
            mine.append(ids.next())

    threads = [threading.Thread(target=draw, args=(mine,)) for mine in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(mine == sorted(mine) for mine in drawn)
    assert len({i for mine in drawn for i in mine}) == 8 * 5_000


def test_a_restarted_process_issues_ids_above_the_previous_run_unless_the_clock_went_back_further_than_the_gap() -> None:
    previous = AlertIds(Clock(1_000))
    last_run = [previous.next() for _ in range(10)]
    assert AlertIds(Clock(1_001)).next() > max(last_run)  # restarted 1 ms later
    # The documented limit: restarted with the clock set back by more than the time it was down.
    assert AlertIds(Clock(1_000)).next() in last_run


def test_ids_stay_exact_in_javascript_until_2255() -> None:
    def first_id_at(year: int) -> int:
        return AlertIds(Clock(int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000))).next()

    assert AlertIds().next() < 2**53
    assert first_id_at(2255) + PER_MS - 1 <= MAX_SAFE_INTEGER < first_id_at(2256)


# --- the record ------------------------------------------------------------------------------------------------------


def frame(task_id: str = "cam-01", seq: int = 7) -> Frame:
    return Frame(task_id=task_id, task_type="人数统计", seq=seq, captured_at=1_795_932_000.25, captured_mono=0.0,
                 image=None)


def test_a_local_detector_alert_is_a_full_old_row_with_an_equivalent_result() -> None:
    alert = make_alert("cam-01", 3)
    (row,) = read_as_old_rows([encode_alert(alert)])
    assert json.loads(row.result) == {"total_count": 1, "detections": [
        {"class": "person", "confidence": 0.875, "bbox": [10, 20, 110, 220]}]}
    assert (row.id, row.task_id, row.task_type) == (alert.id, "cam-01", "people_counting")
    assert row.image_path == alert.image_key and row.image_url == ""
    assert row.algorithm_id == row.algorithm_name == alert.backend == "ssdlite"
    assert (row.confidence, row.detection_count, row.inference_time_ms) == (0.875, 1, 42)
    assert row.created_at == row.updated_at
    record = json.loads(encode_alert(alert))
    assert record["schema"] == 3 and record["uid"] == alert.uid and len(alert.uid) == 32
    assert list(record)[:13] == list(OldAlertRow.__struct_fields__)  # the old row first, in its order


def test_a_count_without_detections_gives_that_count_and_confidence_zero() -> None:
    decision = Decision(alert=True, rule="count>0", counts={"count": 3}, detections=[])
    alert = slot_make_alert(frame(), decision, image_key="alerts/x/cam-01/a.jpg", inference_ms=120.4,
                            backend="remote:counter")
    (row,) = read_as_old_rows([encode_alert(alert)])
    assert (row.detection_count, row.confidence, row.inference_time_ms) == (3, 0.0, 120)
    assert json.loads(row.result) == {"total_count": 3, "detections": []}


def test_with_regions_the_local_result_names_each_detections_region_and_adds_region_results() -> None:
    people = [Detection(label="person", score=0.8, box=(100, 150, 140, 300)),
              Detection(label="person", score=0.9, box=(600, 150, 640, 300))]
    decision = Decision(alert=True, rule="people_count>=1", counts={"person": 2, "region_003": 1}, detections=people,
                        regions=[RegionResult(region_id="region_003", region_name="大厅", count=1, alert=True)],
                        detection_regions=["region_003", ""])
    alert = slot_make_alert(frame(), decision, image_key=None, inference_ms=30.0, backend="ssdlite")
    (row,) = read_as_old_rows([encode_alert(alert)])
    result = json.loads(row.result)
    assert [(d.get("region_id"), d.get("region_name")) for d in result["detections"]] == [("region_003", "大厅"),
                                                                                            (None, None)]
    assert result["region_results"] == [{"region_id": "region_003", "region_name": "大厅", "count": 1, "alert": True}]
    assert (row.detection_count, row.confidence, row.image_path) == (2, 0.9, "")  # no image: an empty path


def test_a_service_result_goes_into_the_record_as_it_came_json_encoded_as_a_string() -> None:
    raw = {"total_count": 0, "detections": [], "region_results": [
        {"region_id": "region_001", "crossed": True, "direction": "in", "alert": True}]}
    decision = Decision(alert=True, rule="count>0", counts={"count": 0}, detections=[])
    alert = slot_make_alert(frame(), decision, image_key="k.jpg", inference_ms=9.0, backend="remote:Tripwire",
                            algorithm_id="svc-7", algorithm_name="Tripwire", result=raw)
    (row,) = read_as_old_rows([encode_alert(alert)])
    assert json.loads(row.result) == raw
    assert (row.algorithm_id, row.algorithm_name) == ("svc-7", "Tripwire")


def test_the_strict_consumer_refuses_what_schema_1_sent() -> None:
    v1 = b'{"id": "9f0c2a", "task_id": "cam", "task_type": "t", "time": "2026-11-29T06:25:54.384Z", "schema": 1}'
    with pytest.raises(msgspec.ValidationError, match="Expected `int`"):
        _OLD_ROW.decode(v1)


# --- from a running framewatch ---------------------------------------------------------------------------------------


def spotting() -> threading.Event:
    on = threading.Event()
    on.set()
    return on


@pytest.fixture
def bucket_conf():  # type: ignore[no-untyped-def]
    require_s3()
    conf = minio_conf(base_path="fw")
    yield conf
    remove_bucket(conf.bucket)


def test_every_kafka_record_reads_as_an_old_row_whose_image_url_opens_the_alert_image(tmp_path, bucket_conf):
    require_kafka()
    topic = unique_name("fw-alerts")
    on = spotting()
    loaded = decode_config(pipeline_conf(tmp_path, minio=bucket_conf, kafka=(KAFKA_BOOTSTRAP, topic)))
    with Running(loaded, detector_factory=lambda: Spotter(on)) as fw:
        wait_for(lambda: all(c.alerts >= 8 for c in fw.snapshot().cameras.values()), 60, "8 alerts per camera")
    final = fw.final
    assert final is not None and final.alerts.written == final.alerts.emitted and final.totals.store_failed == 0

    records = consume(KAFKA_BOOTSTRAP, topic, final.alerts.emitted)
    alerts = first_deliveries(records)
    assert len(alerts) == final.alerts.emitted
    rows = read_as_old_rows(distinct_values(records))
    assert_ids_increase_per_camera(rows)
    for row, alert in zip(rows, alerts, strict=True):
        assert (row.algorithm_id, row.algorithm_name, row.detection_count) == ("spotter", "spotter", 1)
        assert row.image_path == alert.image_key and alert.image_stored and row.image_url.startswith("http://")
    newest = rows[-1]  # retention keeps the newest alert images
    with urllib.request.urlopen(newest.image_url, timeout=10) as resp:  # presigned: no credentials
        assert resp.status == 200 and resp.read(2) == b"\xff\xd8"  # the JPEG


def test_alerts_jsonl_lines_are_the_same_records(tmp_path: Path) -> None:
    on = spotting()
    with Running(decode_config(pipeline_conf(tmp_path)), detector_factory=lambda: Spotter(on)) as fw:
        wait_for(lambda: all(c.alerts >= 5 for c in fw.snapshot().cameras.values()), 60, "5 alerts per camera")
    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert fw.final is not None and len(lines) == fw.final.alerts.emitted
    rows = read_as_old_rows(lines)
    assert_ids_increase_per_camera(rows)
    assert {r.image_url for r in rows} == {""}  # local storage: no URL to give
    assert [encode_alert(msgspec.json.decode(line, type=Alert)) for line in lines] == lines


def spooled_lines(spool_dir: Path) -> list[bytes]:
    """Every line of the spool's segments, oldest first (all of them undelivered when nothing was ever sent)."""
    return [line for seg in sorted(spool_dir.glob("*.seg")) for line in seg.read_bytes().splitlines()]


def test_alerts_spooled_while_kafka_was_down_arrive_after_a_restart_with_the_same_ids_and_bytes(tmp_path: Path) -> None:
    broker = TansuBroker()  # not started: Kafka is down during the first run
    topic = unique_name("fw-alerts")
    on = spotting()
    text = pipeline_conf(tmp_path, cams=("cam-a",), kafka=(broker.bootstrap, topic))
    with Running(decode_config(text), detector_factory=lambda: Spotter(on)) as fw:
        wait_for(lambda: fw.snapshot().alerts.spooled >= 5, 60, "alerts spooled")
    first = fw.final
    assert first is not None and first.alerts.dropped == 0 and first.alerts.spooled == first.alerts.emitted
    spooled = spooled_lines(tmp_path / "spool")
    assert len(spooled) == first.alerts.spooled

    broker.start()
    try:
        with Running(decode_config(text), detector_factory=lambda: Spotter(on)) as fw:
            wait_for(lambda: fw.snapshot().alerts.written >= len(spooled) + 5, 60, "the replay and new alerts")
        second = fw.final
        assert second is not None and second.alerts.spooled == 0
        records = consume(broker.bootstrap, topic, len(spooled) + second.alerts.emitted)
    finally:
        broker.stop()
    assert [r.value for r in records[: len(spooled)]] == spooled  # the previous run's alerts, byte for byte, first
    rows = read_as_old_rows(distinct_values(records))
    assert_ids_increase_per_camera(rows)  # the restarted run's ids are above the previous run's
    assert len(rows) == len(first_deliveries(records)) == len(spooled) + second.alerts.emitted
