"""Logs an operator can keep for months: an outage is logged as state changes, not as a line per retry.

``StateLog`` with a fake clock, then the issue's test: framewatch with Kafka and MinIO down (nothing listens on their
ports) and a dead camera, for 60 s, logs at most a handful of lines per component, and still reports each outage."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from framewatch.actors.core.config import MinioConf
from framewatch.actors.core.logstate import FFMPEG_LOG_ENV, LIBRARY_LEVELS, StateLog, quiet_library_loggers
from framewatch.actors.core.messages import RetentionStatsRequest, Stored, Sweep
from framewatch.actors.core.metrics import Metrics
from framewatch.actors.storage.minio import MinioStore
from framewatch.actors.storage.retention import Bound, RetentionActor
from framewatch.actors.storage.store import LocalStore, StoreUnavailable, frame_key

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+)\s+\[(?P<thread>[^\]]+)\] (?P<message>.*)$")
# Periodic by design (stats) or once per run (start, shutdown): not what an outage adds.
EXPECTED = re.compile(r"^(stats: |framewatch started|shutdown: |received SIG)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> StateLog:
    return StateLog(logging.getLogger("test.logstate"), "thing", remind_sec=300, clock=clock, wall=lambda: 0.0)


def lines(caplog: pytest.LogCaptureFixture, at_least: int = logging.INFO) -> list[str]:
    out = [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= at_least]
    caplog.clear()
    return out


def test_the_first_failure_is_logged_the_repeats_are_not_and_a_reminder_comes_after_remind_sec(state, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="test.logstate")
    state.down("connection refused, retrying in 1.0 s")
    assert lines(caplog) == ["ERROR thing: down: connection refused, retrying in 1.0 s"]
    for i in range(1, 299):
        clock.now += 1
        state.down(f"connection refused, retrying in {i}.0 s")  # numbers differ: the same kind of failure
    assert lines(caplog) == []
    clock.now += 2
    state.down("connection refused, retrying in 30.0 s")
    [reminder] = lines(caplog)
    assert reminder.startswith("ERROR thing: still down since ") and "(300 failures): connection refused" in reminder
    clock.now += 10
    state.down("connection refused, retrying in 30.0 s")
    assert lines(caplog) == []
    assert state.is_down and state.failures == 301 and state.reason.startswith("connection refused")


def test_up_is_logged_once_after_an_outage_and_never_while_up(state, clock, caplog):
    caplog.set_level(logging.INFO, logger="test.logstate")
    assert state.up() is False
    state.down("refused")
    state.down("refused")
    clock.now += 42
    assert state.up("opened cam") is True
    assert state.up() is False
    assert lines(caplog) == ["ERROR thing: down: refused", "INFO thing: back up after 42.0 s (2 failures); opened cam"]
    assert not state.is_down and state.reason == ""


def test_a_new_kind_of_reason_is_logged_once_at_warning(state, clock, caplog):
    caplog.set_level(logging.INFO, logger="test.logstate")
    state.down("connection refused")
    state.down("timed out")
    state.down("connection refused")
    state.down("timed out")
    assert lines(caplog) == ["ERROR thing: down: connection refused", "WARNING thing: still down, now: timed out"]


def test_a_flapping_component_logs_at_most_two_lines_per_remind_sec(state, clock, caplog):
    caplog.set_level(logging.INFO, logger="test.logstate")
    state.down("stalled")
    clock.now += 3
    state.up()
    assert len(lines(caplog)) == 2
    for _ in range(7):  # reopens, stalls 10 s later, backs off 30 s: every 40 s
        clock.now += 10
        state.down("stalled")
        clock.now += 30
        state.up()
    assert lines(caplog) == []  # 280 s since the last line
    clock.now += 30
    state.down("stalled")
    [again] = lines(caplog)
    assert again.startswith("ERROR thing: down again: stalled (8 failures since ") and "back up 7 times" in again
    clock.now += 5
    state.up()
    assert len(lines(caplog)) == 1


def test_a_component_up_for_remind_sec_starts_a_fresh_outage(state, clock, caplog):
    caplog.set_level(logging.INFO, logger="test.logstate")
    state.down("refused")
    clock.now += 1
    state.up()
    clock.now += 10
    state.down("refused")  # quiet: a flap
    clock.now += 1
    state.up()
    clock.now += 3600
    lines(caplog)
    state.down("refused")
    assert lines(caplog) == ["ERROR thing: down: refused"]


def test_at_debug_level_only_the_reminders_are_logged(clock, caplog):
    """For a component whose caller already reports the changes (the Kafka sink under the alert actor)."""
    caplog.set_level(logging.INFO, logger="test.logstate")
    state = StateLog(logging.getLogger("test.logstate"), "kafka", level=logging.DEBUG, clock=clock, wall=lambda: 0.0)
    state.down("bootstrap failed")
    state.down("did not confirm 3 alerts")
    clock.now += 301
    state.down("bootstrap failed")
    state.up()
    assert [line.split(" since ")[0] for line in lines(caplog)] == ["WARNING kafka: still down"]


def test_quiet_library_loggers_and_debug_restores_them(monkeypatch):
    import cv2.utils.logging as cv_logging

    monkeypatch.delenv(FFMPEG_LOG_ENV[0], raising=False)  # restored after the test, like OpenCV's level below
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    cv_level = cv_logging.getLogLevel()
    try:
        quiet_library_loggers()
        assert logging.getLogger("kafka.conn").getEffectiveLevel() == logging.CRITICAL
        assert logging.getLogger("pykka").getEffectiveLevel() == logging.CRITICAL
        assert logging.getLogger("urllib3.connectionpool").getEffectiveLevel() > logging.WARNING  # "Retrying (...)"
        assert os.environ[FFMPEG_LOG_ENV[0]] == FFMPEG_LOG_ENV[1]
        assert cv_logging.getLogLevel() == cv_logging.LOG_LEVEL_ERROR
        quiet_library_loggers(debug=True)
        assert all(logging.getLogger(name).level == logging.NOTSET for name in LIBRARY_LEVELS)
    finally:
        for name in LIBRARY_LEVELS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        cv_logging.setLogLevel(cv_level)


# --- the components' use of it ----------------------------------------------------------------------------------


class FailingDeletes(LocalStore):
    """A local store whose deletes fail (as a MinIO store's do while the server is down) until ``working`` is set."""

    working = False

    def delete_many(self, keys):  # type: ignore[no-untyped-def]
        return super().delete_many(keys) if self.working else list(keys)


def test_retention_logs_failing_deletes_once_not_on_each_sweep(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="framewatch.actors.storage.retention")
    store = FailingDeletes(tmp_path)
    prefix = "人数统计/cam-a"
    retention = RetentionActor.start(store=store, bounds=[Bound(task_id="cam-a", prefix=prefix, max_count=2)],
                                     metrics=Metrics())
    for i in range(10):
        key = frame_key(prefix, time.time() + i * 0.001, i)
        store.put(key, b"jpeg")
        retention.tell(Stored(task_id="cam-a", prefix=prefix, key=key))
    for _ in range(60):  # a minute of sweeps with storage down
        retention.tell(Sweep())
    assert retention.ask(RetentionStatsRequest(), timeout=10).delete_failures >= 60 * 8
    store.working = True
    retention.tell(Sweep())
    stats = retention.ask(RetentionStatsRequest(), timeout=10)
    retention.stop()
    assert stats.pending_deletes == 0 and stats.deleted == 8
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2, logged
    assert logged[0].startswith("retention: deletes: down: 8 of 8 objects not deleted")
    assert logged[1].startswith("retention: deletes: back up after ")


def test_a_dead_minio_server_is_logged_once_however_many_requests_fail(caplog):
    caplog.set_level(logging.DEBUG, logger="framewatch.actors.storage.minio")
    store = MinioStore(MinioConf(endpoint=f"127.0.0.1:{free_port()}", access_key="a", secret_key="secret-key"),
                       retries=0, retry_sec=0.0)  # every call probes the server: the worst case
    with pytest.raises(StoreUnavailable):
        store.connect()
    for i in range(20):
        with pytest.raises(StoreUnavailable):
            store.put(f"k/{i}.jpg", b"jpeg")
    store.close()
    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage().split(":")[0] for r in logged] == ["storage (minio)"], [r.getMessage() for r in logged]
    assert "down: cannot reach the S3 endpoint" in logged[0].getMessage()
    assert store.health().startswith("down: ")


# --- the test: 60 s with Kafka and MinIO down -----------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on (bound, then released: connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outage_conf(tmp_path: Path) -> Path:
    cams = "".join(
        f'[[frame_extractor.tasks]]\nid = "{cam}"\ntask_type = "人数统计"\nrtsp_url = "{url}"\n'
        f"[frame_extractor.tasks.algo_config]\ncount_threshold = 1\n"
        for cam, url in (("cam-a", "asset:vtest_5s.mp4"), ("cam-b", "asset:vtest_5s.mp4"),
                         ("cam-dead", f"rtsp://127.0.0.1:{free_port()}/stream1"))
    )
    conf = tmp_path / "outage.toml"
    conf.write_text(f"""
[frame_extractor]
interval_ms = 500
output_dir = "{tmp_path}/frames"
store = "minio"
max_frame_count = 20
[frame_extractor.minio]
endpoint = "127.0.0.1:{free_port()}"
bucket = "images"
access_key = "framewatch"
secret_key = "framewatch-secret"
timeout_sec = 2.0
{cams}
[ai_analysis]
mq_type = "kafka"
mq_address = "127.0.0.1:{free_port()}"
mq_topic = "fw-alerts"
alert_batch_size = 10
alert_batch_interval_sec = 1.0
[detector]
backend = "ssdlite"
actors = 1
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
spool_dir = "{tmp_path}/spool"
[stats]
interval_sec = 5
path = "{tmp_path}/stats.json"
log = true
""", encoding="utf-8")
    return conf


def count_lines(log: str) -> tuple[Counter[str], list[str]]:
    """Lines per thread (a component: extractor:<task>, writer, retention, alerts, the Kafka client's threads...),
    without the expected ones; lines outside the log format (a traceback) count under ``(unformatted)``."""
    per: Counter[str] = Counter()
    kept = []
    for line in log.splitlines():
        m = LINE.match(line)
        if m is None:
            if line.strip():
                per["(unformatted)"] += 1
                kept.append(line)
            continue
        if EXPECTED.match(m["message"]):
            continue
        per[m["thread"]] += 1
        kept.append(line)
    return per, kept


def test_kafka_and_minio_down_for_60_s_log_a_few_lines_per_component(tmp_path):
    conf = outage_conf(tmp_path)
    command = [sys.executable, str(ROOT / "supervisor.py"), "run", str(conf), "--duration", "60"]
    run = subprocess.run(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=180, check=False)
    per, kept = count_lines(run.stdout)
    shown = "\n".join(line[:240] for line in kept)
    assert run.returncode == 0, shown
    assert all(n <= 5 for n in per.values()), f"{dict(per)}\n{shown}"
    assert sum(per.values()) < 40, f"{dict(per)}\n{shown}"
    assert any(re.search(r"storage.*down|down.*S3", line) for line in kept), shown
    assert any(re.search(r"(?i)(sink kafka|kafka).*(down|fail)", line) for line in kept), shown
    assert any("cam-dead" in line for line in kept), shown
