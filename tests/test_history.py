"""The alert history (``alerts.history``): rows are the alerts the sink took, the bound holds, the old query API's
filters and pages agree with a direct SQL query on the same file, a bad or locked file is set aside; the query API
(``api.alerts_api``); the alert actor writing what the JSON Lines sink wrote."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import msgspec
import pytest
from framewatch.actors.alerts import history as history_module
from framewatch.actors.alerts.actor import AlertActor, MemorySpool
from framewatch.actors.alerts.history import AlertQuery, History, HistoryError, time_ms
from framewatch.actors.alerts.records import utc_iso
from framewatch.actors.alerts.sinks import JsonlSink, encode_alert
from framewatch.actors.api.alerts_api import AlertsApi
from framewatch.actors.api.http import HttpError
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.messages import Alert, AlertStatsRequest, Flush
from framewatch.actors.core.metrics import Metrics
from framewatch.actors.system import Running

from tests.servers import Spotter, make_alert, pipeline_conf
from tests.waiting import wait_for

T0_MS = 1_795_932_000_000  # 2026-11-28T...Z


def alerts(n: int, *, seed: int = 7, first_id: int = 1) -> list[Alert]:
    """``n`` alerts of 5 cameras of 2 task types, 0-6 detections, made over ~3 hours in shuffled order (so the id
    order is not the time order), some of them at the same millisecond (the id breaks the tie)."""
    rng = random.Random(seed)
    made = [T0_MS + rng.randrange(0, 10_000) * 1000 for _ in range(n)]
    made[1::7] = made[0::7][: len(made[1::7])]  # ties
    out = []
    for i, ms in enumerate(made):
        cam = rng.randrange(5)
        out.append(msgspec.structs.replace(
            make_alert(f"cam-{cam}", i), id=first_id + i, task_type=("人数统计", "区域入侵")[cam % 2],
            detection_count=rng.randrange(7), created_at=utc_iso(ms / 1000), updated_at=utc_iso(ms / 1000)))
    return out


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM alerts").fetchone()[0]


@pytest.fixture
def history(tmp_path: Path):  # type: ignore[no-untyped-def]
    h = History.open(tmp_path / "alerts.db", max_rows=0)
    yield h
    h.close()


# --- rows and the bound ---------------------------------------------------------------------------------------------


def test_every_alert_added_is_one_row_holding_the_record_the_sink_writes(history: History) -> None:
    batch = alerts(120)
    assert history.add(batch[:50]) == 50 and history.add(batch[50:]) == 70
    assert history.rows == count_rows(history.path) == 120
    assert all(history.get(a.id) == encode_alert(a) for a in batch)
    assert history.add(batch[10:20]) == 0  # a redelivery (same ids) adds nothing
    assert count_rows(history.path) == 120 and history.get(10**9) is None


def test_max_alerts_in_db_holds_after_every_batch_and_keeps_the_newest(tmp_path: Path) -> None:
    history = History.open(tmp_path / "alerts.db", max_rows=250)
    batch = alerts(40 * 17)
    for i in range(0, len(batch), 17):
        history.add(batch[i:i + 17])
        assert count_rows(history.path) == history.rows == min(i + 17, 250)
    newest = sorted(batch, key=lambda a: (time_ms(a.created_at), a.id))[-250:]
    with sqlite3.connect(history.path) as conn:
        assert {i for (i,) in conn.execute("SELECT id FROM alerts")} == {a.id for a in newest}
    history.close()


def test_a_lowered_bound_is_applied_at_open_in_chunks_and_the_rows_survive_a_reopen(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    history = History.open(tmp_path / "alerts.db", max_rows=0)
    history.add(alerts(500))
    history.close()
    monkeypatch.setattr(history_module, "TRIM_CHUNK", 60)
    reopened = History.open(tmp_path / "alerts.db", max_rows=130)
    assert reopened.rows == count_rows(reopened.path) == 130 and not reopened.set_aside
    reopened.close()


# --- queries --------------------------------------------------------------------------------------------------------


def direct(path: Path, q: AlertQuery) -> tuple[list[bytes], int]:
    """The same query written against the records themselves (json_extract, RFC 3339 strings sort as times)."""
    terms, params = [], []
    for expr, op, value in (("json_extract(record, '$.task_id')", "=", q.task_id),
                            ("json_extract(record, '$.task_type')", "=", q.task_type),
                            ("json_extract(record, '$.detection_count')", ">=", q.min_detections),
                            ("json_extract(record, '$.detection_count')", "<=", q.max_detections),
                            ("json_extract(record, '$.created_at')", ">=",
                             None if q.start_ms is None else utc_iso(q.start_ms / 1000)),
                            ("json_extract(record, '$.created_at')", "<=",
                             None if q.end_ms is None else utc_iso(q.end_ms / 1000))):
        if value is not None:
            terms.append(f"{expr} {op} ?")
            params.append(value)
    where = (" WHERE " + " AND ".join(terms)) if terms else ""
    with sqlite3.connect(path) as conn:
        rows = [r for (r,) in conn.execute(
            f"SELECT record FROM alerts{where} ORDER BY json_extract(record, '$.created_at') DESC, "
            f"json_extract(record, '$.id') DESC", params)]
    start = (q.page - 1) * q.page_size
    return rows[start:start + q.page_size], len(rows)


def test_filters_and_pages_match_a_direct_sql_query_on_the_same_file(history: History) -> None:
    history.add(alerts(600))
    rng = random.Random(3)
    hour = 3_600_000
    queries = [AlertQuery(), AlertQuery(page=2, page_size=7), AlertQuery(page=99), AlertQuery(task_id="cam-3"),
               AlertQuery(task_type="区域入侵", min_detections=2), AlertQuery(max_detections=0),
               AlertQuery(min_detections=3, max_detections=4, page=3, page_size=5),
               AlertQuery(start_ms=T0_MS + hour, end_ms=T0_MS + 2 * hour, page_size=1000),
               AlertQuery(task_id="cam-1", start_ms=T0_MS + 5_000_000, page=2, page_size=9)]
    for _ in range(30):
        queries.append(AlertQuery(
            task_id=rng.choice([None, "cam-0", "cam-4", "nobody"]), task_type=rng.choice([None, "人数统计"]),
            min_detections=rng.choice([None, 1, 5]), max_detections=rng.choice([None, 2, 6]),
            start_ms=rng.choice([None, T0_MS + rng.randrange(10_000) * 1000]),
            end_ms=rng.choice([None, T0_MS + rng.randrange(10_000) * 1000]),
            page=rng.randrange(1, 4), page_size=rng.choice([1, 10, 50])))
    for q in queries:
        page = history.query(q)
        assert (page.records, page.total) == direct(history.path, q), q
    assert history.query(AlertQuery()).total == 600 and len(history.query(AlertQuery()).records) == 20


def test_task_ids_are_the_tasks_with_rows_sorted(history: History) -> None:
    assert history.task_ids() == []
    history.add(alerts(60))
    assert history.task_ids() == [f"cam-{i}" for i in range(5)]


# --- bad files ------------------------------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_set_aside_and_a_fresh_history_starts(tmp_path: Path, caplog) -> None:
    path = tmp_path / "alerts.db"
    path.write_bytes(b"not a database " * 500)
    with caplog.at_level(logging.ERROR, logger=history_module.__name__):
        history = History.open(path, max_rows=100)
    assert history.enabled and history.rows == 0 and history.add(alerts(3)) == 3
    [aside] = history.set_aside
    assert aside.name.startswith("alerts.db.corrupt-") and aside.read_bytes() == b"not a database " * 500
    [line] = [r.getMessage() for r in caplog.records]
    assert "file is not a database" in line and f"set aside as {aside.name}" in line
    history.close()


def test_damaged_pages_behind_an_intact_header_are_found_at_open_and_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    history = History.open(path, max_rows=0)
    history.add(alerts(300))
    history.close()  # checkpoints: everything is in the file, no -wal
    data = bytearray(path.read_bytes())
    data[4096:] = bytes(random.Random(1).randrange(256) for _ in range(len(data) - 4096))  # page 1 kept
    path.write_bytes(bytes(data))
    reopened = History.open(path, max_rows=0)
    assert reopened.enabled and reopened.rows == 0 and len(reopened.set_aside) == 1
    assert reopened.set_aside[0].read_bytes() == bytes(data)
    reopened.close()


def test_damage_found_by_a_write_sets_the_file_aside_and_the_batch_goes_into_a_fresh_one(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    history = History.open(path, max_rows=0)
    history.add(alerts(300))
    with sqlite3.connect(path) as conn:  # everything into the file, so the damage is what the next write reads
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))
    batch = alerts(10, first_id=10_000)
    assert history.add(batch) == 10
    assert len(history.set_aside) == 1 and history.rows == count_rows(path) == 10
    assert history.get(batch[0].id) == encode_alert(batch[0])
    history.close()


def test_a_history_of_another_schema_version_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 7")
    history = History.open(path, max_rows=0)
    assert history.enabled and history.set_aside[0].name.startswith("alerts.db.corrupt-")
    history.close()


def test_a_file_another_process_keeps_locked_is_set_aside(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "alerts.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "c.execute('CREATE TABLE t (x)'); c.execute('BEGIN EXCLUSIVE'); c.execute('INSERT INTO t VALUES (1)')\n"
         "print('locked', flush=True); sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setattr(history_module, "OPEN_TIMEOUT_SEC", 0.2)
        history = History.open(path, max_rows=0)
        assert history.enabled and history.add(alerts(2)) == 2
        assert [p.name.split("-")[0] for p in history.set_aside] == ["alerts.db.locked"]
        history.close()
    finally:
        holder.communicate("", timeout=10)


def test_a_history_that_cannot_start_is_disabled_says_why_and_refuses_calls(tmp_path: Path, caplog) -> None:
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.ERROR, logger=history_module.__name__):
        history = History.open(tmp_path / "file" / "alerts.db", max_rows=10)
    assert not history.enabled and "cannot make the directory" in history.error
    assert len(caplog.records) == 1 and "disabled" in caplog.records[0].getMessage()
    with pytest.raises(HistoryError, match="disabled: cannot make the directory"):
        history.add(alerts(1))
    with pytest.raises(HistoryError, match="disabled"):
        history.query(AlertQuery())


# --- times ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-29T06:25:54Z", 1_795_933_554_000),
    ("2026-11-29T06:25:54.384Z", 1_795_933_554_384),
    ("2026-11-29T14:25:54.384+08:00", 1_795_933_554_384),
    ("2026-11-29T14:25:54 08:00", 1_795_933_554_000),  # "+08:00" unencoded in a query string
    ("1795933554", 1_795_933_554_000),
    ("1795933554384", 1_795_933_554_384),
    ("2026-11-29 06:25:54", int(datetime(2026, 11, 29, 6, 25, 54).timestamp() * 1000)),  # local time
    ("2026-11-29", int(datetime(2026, 11, 29).timestamp() * 1000)),
])
def test_times_are_read_as_rfc_3339_local_times_or_unix_seconds_or_ms(text: str, expected: int) -> None:
    assert time_ms(text) == expected


# --- the query API --------------------------------------------------------------------------------------------------


@pytest.fixture
def api(history: History) -> AlertsApi:
    history.add(alerts(45))
    return AlertsApi(history)


def call(api: AlertsApi, method: str, path: str, query: str = "") -> tuple[int, object]:
    answer = api.handle(method, path, query, b"")
    assert answer is not None
    status, body, kind = answer
    assert kind == "application/json"
    return status, json.loads(body)


def error(api: AlertsApi, method: str, path: str, query: str = "") -> tuple[int, str]:
    with pytest.raises(HttpError) as caught:
        api.handle(method, path, query, b"")
    return caught.value.status, str(caught.value)


def test_the_list_answers_items_and_total_newest_first_with_empty_parameters_ignored(api: AlertsApi) -> None:
    assert api.history is not None
    status, body = call(api, "GET", "/api/v1/alerts", "task_id=&task_type=&min_detections=&page=&page_size=10")
    expected = api.history.query(AlertQuery(page_size=10))
    assert status == 200 and body == {"items": [json.loads(r) for r in expected.records], "total": 45}
    created = [(time_ms(i["created_at"]), i["id"]) for i in body["items"]]  # type: ignore[index]
    assert created == sorted(created, reverse=True)
    status, body = call(api, "GET", "/api/v1/alerts", "task_id=cam-2&min_detections=1&page=1&page_size=1000"
                        "&start_time=2026-11-28T00:00:00Z&end_time=2026-12-01T00:00:00%2B08:00&extra=1")
    expected_total = api.history.query(AlertQuery(task_id="cam-2", min_detections=1)).total
    assert body["total"] == expected_total > 0  # type: ignore[index]


@pytest.mark.parametrize(("query", "named"), [
    ("page=0", "page must be an integer from 1"), ("page=x", "page must be"),
    ("page_size=1001", "page_size must be an integer from 1 to 1,000, got '1001'"), ("page_size=0", "page_size"),
    ("min_detections=-1", "min_detections must be"), ("max_detections=two", "max_detections must be"),
    ("start_time=yesterday", "start_time is not a time: 'yesterday'"), ("end_time=2026-13-01", "end_time is not"),
    ("min_detections=5&max_detections=2", "min_detections (5) is above max_detections (2)"),
    ("start_time=2026-11-29&end_time=2026-11-28", "start_time (2026-11-29) is after end_time (2026-11-28)"),
])
def test_a_bad_parameter_is_a_400_naming_it(api: AlertsApi, query: str, named: str) -> None:
    status, reason = error(api, "GET", "/api/v1/alerts", query)
    assert status == 400 and named in reason, reason


def test_one_alert_is_got_by_its_id_and_deleted_with_ok_true(api: AlertsApi) -> None:
    assert api.history is not None
    alert_id = json.loads(api.history.query(AlertQuery(page_size=1)).records[0])["id"]
    status, body = call(api, "GET", f"/api/v1/alerts/{alert_id}")
    assert status == 200 and body == {"alert": json.loads(api.history.get(alert_id) or b"")}
    assert call(api, "DELETE", f"/api/v1/alerts/{alert_id}") == (200, {"ok": True})
    assert error(api, "GET", f"/api/v1/alerts/{alert_id}") == (404, f"no alert {alert_id}")
    assert error(api, "DELETE", f"/api/v1/alerts/{alert_id}") == (404, f"no alert {alert_id}")
    assert api.history.rows == count_rows(api.history.path) == 44
    assert error(api, "GET", "/api/v1/alerts/12x") == (400, "id must be an alert's numeric id, got '12x'")


def test_task_ids_routing_verbs_and_writes(api: AlertsApi) -> None:
    assert call(api, "GET", "/api/v1/alerts/task_ids") == (200, {"task_ids": [f"cam-{i}" for i in range(5)]})
    assert error(api, "POST", "/api/v1/alerts") == (405, "use GET for /api/v1/alerts")
    assert error(api, "PUT", "/api/v1/alerts/5") == (405, "use GET or DELETE for /api/v1/alerts/5")
    assert error(api, "GET", "/api/v1/alerts/5/image")[0] == 404
    assert api.handle("GET", "/api/v1/alertsx", "", b"") is None and api.handle("GET", "/metrics", "", b"") is None
    assert AlertsApi.is_write("DELETE", "/api/v1/alerts/5") and not AlertsApi.is_write("GET", "/api/v1/alerts/5")
    assert not AlertsApi.is_write("DELETE", "/api/v1/ai_analysis/unregister/x")


def test_without_a_history_every_call_is_a_503_saying_why() -> None:
    api = AlertsApi(None)
    assert error(api, "GET", "/api/v1/alerts") == (503, "the alert history is off: alerts.history_path is empty")
    assert error(api, "GET", "/api/v1/alerts/task_ids")[0] == 503


# --- the alert actor ------------------------------------------------------------------------------------------------


def run_actor(tmp_path: Path, history: History, batch: list[Alert]):  # type: ignore[no-untyped-def]
    """Deliver ``batch`` through an AlertActor to a JSON Lines sink (batches of 7); its stats once all is written."""
    actor = AlertActor.start(sink_factory=lambda: JsonlSink(tmp_path / "alerts.jsonl"), spool=MemorySpool(),
                             metrics=Metrics(["cam-0"]), batch_size=7, history=history)
    for alert in batch:
        actor.tell(alert)
    actor.tell(Flush())
    stats = actor.ask(AlertStatsRequest(), timeout=30)  # answered after the Flush
    actor.stop()
    return stats


def test_the_alert_actor_writes_every_line_of_alerts_jsonl_as_a_row(tmp_path: Path) -> None:
    history = History.open(tmp_path / "alerts.db", max_rows=0)
    stats = run_actor(tmp_path, history, alerts(50))
    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert len(lines) == 50 and stats.history_ok and stats.history_missed == 0
    with sqlite3.connect(history.path) as conn:
        assert sorted(r for (r,) in conn.execute("SELECT record FROM alerts")) == sorted(lines)
    history.close()


def test_a_failing_history_never_stops_delivery_and_is_counted_and_logged_once(tmp_path: Path, caplog) -> None:
    (tmp_path / "file").write_text("")
    history = History.open(tmp_path / "file" / "alerts.db", max_rows=0)  # disabled: its directory is a file
    with caplog.at_level(logging.ERROR, logger="framewatch.actors.alerts.actor"):
        stats = run_actor(tmp_path, history, alerts(50))
    assert len((tmp_path / "alerts.jsonl").read_bytes().splitlines()) == 50
    assert not stats.history_ok and stats.history_missed == 50 and "cannot make the directory" in stats.history_error
    assert [r.getMessage() for r in caplog.records if r.name == "framewatch.actors.alerts.actor"] == [
        f"alerts: history: down: {stats.history_error}"]


def test_a_running_framewatch_keeps_its_history_next_to_alerts_jsonl(tmp_path: Path) -> None:
    seeing = threading.Event()
    seeing.set()
    loaded = decode_config(pipeline_conf(tmp_path, cams=("cam-a",)))
    with Running(loaded, detector_factory=lambda: Spotter(seeing)) as fw:
        wait_for(lambda: fw.snapshot().alerts.written >= 3, 60, "3 alerts written")
    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    with sqlite3.connect(tmp_path / "alerts.db") as conn:
        assert sorted(r for (r,) in conn.execute("SELECT record FROM alerts")) == sorted(lines)
    assert len(lines) >= 3
