"""Chaos: kill -9 during an alert storm, a full disk. Nothing counted emitted may be lost.

CI runs every test here at its default size (20 kills with JSON Lines, 10 with Kafka); ``pytest -m chaos`` with
``FRAMEWATCH_CHAOS_KILLS=100`` (say) is the long run.

The kill test's bookkeeping, per run k of the framewatch process (``tests/chaos_runner.py``, 8 cameras, two alerts a
second each, batches of 100 every second, so a kill lands in the middle of a batch almost always):

- just before the kill, ``E_k`` = the run's ``alerts.emitted`` read over HTTP (alerts counted emitted so far);
- just after it, what survives: the sink's records and the journal's entries (read from the directory the dead
  process left). The alerts of run k among them (ids are issued from the wall clock: ``core.ids``) must number at
  least ``E_k``: an alert counted emitted is on disk or in the sink, never only in memory;
- after the last run (stopped with SIGTERM), every alert that survived any kill is in the sink, each id always with
  the same bytes, and every line of the JSON Lines file is a whole record.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from framewatch.actors.alerts.spool import Spool
from framewatch.actors.core.ids import PER_MS
from framewatch.actors.core.metrics import Snapshot
from tests.servers import (KAFKA_BOOTSTRAP, Spotter, free_port, pipeline_conf, require_kafka, unique_name)
from tests.waiting import assert_conserved, wait_for

pytestmark = pytest.mark.chaos  # `pytest -m chaos` runs these alone; FRAMEWATCH_CHAOS_KILLS makes them longer

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("FRAMEWATCH_CHAOS_KILLS", "20"))
CAMS = tuple(f"storm-{i}" for i in range(8))


def storm_conf(tmp_path: Path, port: int, kafka: tuple[str, str] | None = None) -> Path:
    text = pipeline_conf(tmp_path, cams=CAMS, kafka=kafka, batch_size=100, batch_interval_sec=1.0,
                         spool_max_bytes=64 << 20)
    text = text.replace("interval_ms = 200", "interval_ms = 100")
    text += f"[http]\nenable = true\nport = {port}\n"
    path = tmp_path / "storm.toml"
    path.write_text(text, encoding="utf-8")
    return path


def status(port: int) -> dict[str, Any] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status", timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def journal(tmp_path: Path) -> dict[int, bytes]:
    """The journal the dead process left, as its next start reads it."""
    from framewatch.actors.alerts.sinks import encode_alert

    spool = Spool(tmp_path / "spool", max_bytes=64 << 20)
    try:
        return {a.id: encode_alert(a) for a in spool.peek(len(spool))}
    finally:
        spool.close()


def jsonl_records(path: Path, *, whole: bool) -> list[bytes]:
    """The file's records; ``whole``: every line must be one (else a torn last line is left out)."""
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    tail = lines.pop()  # "" after the final newline, or a torn last line
    assert not (whole and tail), f"a torn last line: {tail[:80]!r}"
    for line in lines:
        json.loads(line)  # raises on a merged or half line
    return lines


def kafka_records(topic: str, at_least: int) -> list[bytes]:
    from tests.servers import consume

    return [r.value for r in consume(KAFKA_BOOTSTRAP, topic, at_least, timeout=60)]


class Storm:
    """Runs the chaos runner again and again on one conf, killing it; keeps the bookkeeping of the module docstring."""

    def __init__(self, tmp_path: Path, conf: Path, port: int) -> None:
        self.tmp_path = tmp_path
        self.conf = conf
        self.port = port
        self.survived: dict[int, bytes] = {}  # id -> bytes, every alert that outlived a kill
        self.shortfalls: list[str] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / "runner.log", "ab")  # noqa: SIM115 - closed by the child's exit
        return subprocess.Popen([sys.executable, "-m", "tests.chaos_runner", str(self.conf)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)

    def emitted(self) -> int:
        snap = status(self.port)
        return snap["alerts"]["emitted"] if snap else -1

    def kill_once(self, rng: random.Random, sink_records: Any) -> None:
        started_ms = time.time_ns() // 1_000_000
        proc = self.start()
        try:
            wait_for(lambda: self.emitted() > 0, 60, "the storm's first alert")
            time.sleep(rng.uniform(0.2, 2.5))  # the random moment of the kill: chaos, not a wait for a condition
            counted = self.emitted()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        killed_ms = time.time_ns() // 1_000_000
        after = {**{json.loads(r)["id"]: r for r in sink_records()}, **journal(self.tmp_path)}
        mine = [i for i in after if started_ms * PER_MS <= i < (killed_ms + 1) * PER_MS]
        if len(mine) < counted:
            self.shortfalls.append(f"run counted {counted} emitted, {len(mine)} survived the kill")
        for alert_id, data in after.items():
            assert self.survived.setdefault(alert_id, data) == data, f"alert {alert_id} changed bytes"

    def check_delivered(self, records: list[bytes]) -> dict[int, bytes]:
        """The sink's records after the last run: each id always the same bytes, every survivor of a kill there, and
        every run's survivors at least what it counted emitted. Returns them by id."""
        delivered: dict[int, bytes] = {}
        for record in records:
            alert_id = json.loads(record)["id"]
            assert delivered.setdefault(alert_id, record) == record, f"duplicate {alert_id} with other bytes"
        missing = set(self.survived) - set(delivered)
        assert not missing, f"{len(missing)} alerts that survived a kill never reached the sink"
        assert not self.shortfalls, self.shortfalls
        return delivered

    def final_run(self) -> None:
        proc = self.start()
        try:
            wait_for(lambda: (s := status(self.port)) is not None and s["alerts"]["spooled"] == 0
                     and s["alerts"]["written"] > 0, 60, "the journal to be delivered")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        # The final snapshot is in stats.json: the conservation equations hold at rest.
        snap = msgspec.json.decode((self.tmp_path / "stats.json").read_bytes(), type=Snapshot)
        assert_conserved(snap, at_rest=True)
        assert snap.alerts.dropped == 0


def test_kill_9_during_an_alert_storm_loses_nothing_jsonl(tmp_path: Path) -> None:
    port = free_port()
    storm = Storm(tmp_path, storm_conf(tmp_path, port), port)
    sink = tmp_path / "alerts.jsonl"
    rng = random.Random(13)
    for _ in range(KILLS):
        storm.kill_once(rng, lambda: jsonl_records(sink, whole=False))
    storm.final_run()
    delivered = storm.check_delivered(jsonl_records(sink, whole=True))  # whole lines: a torn one was cut, not merged
    assert len(delivered) > KILLS * 5  # a storm: alerts in every run


def test_kill_9_during_an_alert_storm_loses_nothing_kafka(tmp_path: Path) -> None:
    require_kafka()
    topic = unique_name("fw-chaos")
    port = free_port()
    storm = Storm(tmp_path, storm_conf(tmp_path, port, kafka=(KAFKA_BOOTSTRAP, topic)), port)
    rng = random.Random(31)
    kills = max(3, KILLS // 2)  # a consumer per kill costs seconds: half as many as with JSON Lines
    for _ in range(kills):
        storm.kill_once(rng, lambda: kafka_records_now(topic))
    storm.final_run()
    storm.check_delivered(kafka_records(topic, len(storm.survived)))


def kafka_records_now(topic: str) -> list[bytes]:
    """Every record in the topic now (an unknown number): read until a poll brings nothing new."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=KAFKA_BOOTSTRAP, group_id=unique_name("fw-chaos-group"),
                             auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
                             heartbeat_interval_ms=1000, request_timeout_ms=10000)
    records: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            polled = consumer.poll(timeout_ms=500)
            got = [r.value for batch in polled.values() for r in batch]
            records.extend(got)
            quiet = quiet + 1 if not got and consumer.assignment() else 0
    finally:
        consumer.close()
    return records


def test_a_full_disk_stops_frames_first_and_alerts_keep_flowing(tmp_path: Path) -> None:
    """An 8 MB tmpfs holds the data directory: frames fill it to the reserve, then stop; alerts go on."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the disk-full test needs root (mount -t tmpfs) and CI runs as root")
        pytest.skip("needs root to mount a tmpfs")
    volume = tmp_path / "volume"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(volume)], check=True)
    try:
        full_disk_case(volume)
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def full_disk_case(volume: Path) -> None:
    import threading

    from framewatch.actors.core.config import decode_config
    from framewatch.actors.system import Running

    text = pipeline_conf(volume, cams=("disk-a", "disk-b"), max_frame_count=100_000, image_max_count=100_000,
                         batch_size=5, batch_interval_sec=0.3)
    text = text.replace("[frame_extractor]\n", "[frame_extractor]\nreserve_free_mb = 3\nreserve_free_percent = 0\n"
                        "jpeg_quality = 100\n")
    text = text.replace("width=320&height=240", "width=640&height=480")
    seeing = threading.Event()
    seeing.set()
    with Running(decode_config(text), detector_factory=lambda: Spotter(seeing)) as fw:
        storage = lambda: fw.snapshot().components.get("storage", "")  # noqa: E731
        wait_for(lambda: storage().startswith("paused"), 120, "storing to pause at the reserve")
        paused = fw.snapshot()
        wait_for(lambda: fw.snapshot().alerts.written > paused.alerts.written + 4, 30,
                 "alerts to keep flowing while frames are not stored")
        later = fw.snapshot()
        assert later.totals.store_failed > paused.totals.store_failed  # frames not stored are counted
        assert later.alerts.dropped == 0
        # Space comes back: storing resumes.
        for path in sorted((volume / "frames").rglob("*.jpg"))[: 400]:
            path.unlink()
        wait_for(lambda: storage().startswith("up"), 30, "storing to resume")
        resumed = fw.snapshot().totals.stored
        wait_for(lambda: fw.snapshot().totals.stored != resumed or storage().startswith("paused"), 30,
                 "frames to be stored again")
    assert fw.final is not None
    assert_conserved(fw.final, at_rest=True)
    assert fw.final.alerts.dropped == 0
    assert fw.final.alerts.emitted == fw.final.alerts.written
    jsonl_records(volume / "alerts.jsonl", whole=True)
    assert not list(volume.rglob("*.tmp")) and not list(volume.rglob(".tmp-*"))


def test_s3_kafka_and_a_service_frozen_then_killed_lose_no_alert(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    """SIGSTOP of the S3 server, the Kafka broker and an algorithm service for 8 s, then SIGKILL and a restart of
    each: every alert counted emitted reaches Kafka, the equations hold, threads come back to what they were."""
    import logging
    import threading

    from framewatch.actors.core.config import decode_config
    from framewatch.actors.system import Running
    from tests.servers import SeaweedServer, TansuBroker, consume, minio_conf

    broker = TansuBroker()
    s3 = SeaweedServer(tmp_path / "s3")
    broker.start()
    s3.start()
    service: subprocess.Popen[bytes] | None = None
    threads_before = {t.name for t in threading.enumerate()}
    try:
        topic = unique_name("fw-freeze")
        text = pipeline_conf(tmp_path, cams=("frz-a", "frz-b"), minio=minio_conf(endpoint=s3.endpoint, timeout_sec=2.0),
                             kafka=(broker.bootstrap, topic), batch_size=5, batch_interval_sec=0.3)
        text += ('[[frame_extractor.tasks]]\nid = "frz-helmet"\ntask_type = "安全帽检测"\n'
                 'rtsp_url = "synthetic://frz-helmet?width=320&height=240&fps=10"\n')
        text = text.replace("[ai_analysis]\n", "[ai_analysis]\nmq_timeout_sec = 2\nrequest_timeout_sec = 2\n"
                            "heartbeat_timeout_sec = 30\ncircuit_open_sec = 1\n")
        text += "[http]\nenable = true\nport = 0\n"
        seeing = threading.Event()
        seeing.set()
        with Running(decode_config(text), detector_factory=lambda: Spotter(seeing)) as fw:
            service = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "old_protocol_service.py"), "--easydarwin", fw.http_url,
                 "--record", str(tmp_path / "received.jsonl"), "--service-id", "frz-svc", "--task-types", "安全帽检测",
                 "--heartbeat-interval", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: fw.snapshot().cameras["frz-helmet"].inferred > 2, 30, "the service to infer")
            wait_for(lambda: fw.snapshot().alerts.written > 5, 30, "alerts in Kafka")
            caplog.clear()
            procs = [broker._proc, s3._proc, service]
            for proc in procs:
                assert proc is not None
                proc.send_signal(signal.SIGSTOP)
            frozen = fw.snapshot()
            wait_for(lambda: fw.snapshot().alerts.emitted > frozen.alerts.emitted + 10, 30,
                     "alerts to go on being made (journaled) while everything is frozen")
            down = fw.snapshot()
            assert down.alerts.dropped == 0
            for proc in procs:
                proc.send_signal(signal.SIGCONT)
            wait_for(lambda: (s := fw.snapshot()).alerts.spooled == 0 and s.alerts.written > down.alerts.written,
                     60, "the journal to reach Kafka after the thaw")
            # Now killed outright and started again (Tansu's memory storage: the broker comes back empty).
            service.kill()
            service.wait()
            s3.kill()
            broker.kill()
            killed = fw.snapshot()
            wait_for(lambda: fw.snapshot().alerts.emitted > killed.alerts.emitted + 10, 30,
                     "alerts journaled while the servers are dead")
            s3.start()
            broker.start()
            wait_for(lambda: (s := fw.snapshot()).alerts.spooled == 0 and s.alerts.written > killed.alerts.written,
                     90, "the journal to reach the restarted broker")
            assert_conserved(fw.snapshot())
        final = fw.final
        assert final is not None
        assert_conserved(final, at_rest=True)
        assert final.alerts.dropped == 0 and final.alerts.emitted == final.alerts.written
        records = consume(broker.bootstrap, topic, 1, timeout=30)  # the restarted (empty) broker's share
        assert records
        framewatch_lines = [r for r in caplog.records if r.name.startswith("framewatch")
                            and r.levelno >= logging.WARNING]
        assert len(framewatch_lines) < 60, [r.getMessage()[:120] for r in framewatch_lines]
        # A registered service that stops answering flips its circuit open and half-open every second: that is not
        # "no backend serves" news each time (it was, every 5 s, in the soak).
        flaps = [r for r in caplog.records if "no backend serves" in r.getMessage()]
        assert len(flaps) <= 1, [r.getMessage() for r in flaps]
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    finally:
        if service is not None and service.poll() is None:
            service.kill()
            service.wait()
        s3.stop()
        broker.stop()
    wait_for(lambda: {t.name for t in threading.enumerate()} <= threads_before, 10, "framewatch's threads to end")


FUZZ_PATHS = ["/api/v1/ai_analysis/register", "/api/v1/ai_analysis/heartbeat/fz", "/api/v1/ai_analysis/unregister/fz",
              "/api/v1/frame_extractor/tasks", "/api/v1/frame_extractor/tasks/fz-a/config",
              "/api/v1/frame_extractor/tasks/fz-a/interval", "/api/v1/frame_extractor/config",
              "/api/v1/frame_extractor/tasks/batch/stop", "/api/v1/alerts", "/api/v1/status", "/metrics", "/"]
FUZZ_BODIES = [
    b'{"service_id": "fz", "name": "n", "task_types": ["\xe7\xbb\x8a\xe7\xba\xbf\xe4\xba\xba\xe6\x95\xb0\xe7\xbb\x9f'
    b'\xe8\xae\xa1"], "endpoint": "http://127.0.0.1:9/infer"}',
    b'{"interval_ms": 500}', b'{"task_ids": ["fz-a"]}', b'{"regions": [{"id": "l", "type": "line", "points": '
    b'[[0, 150], [320, 150]]}]}', b'{"frame_extractor": {"tasks": []}}', b'{"queue_size": 1, "processed": 2}',
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)  # a random byte (often invalid UTF-8)
        elif kind == 1:
            out[at:at] = rng.choice([b"\xff", b"\xc3", b"\x00", b'"', b"{", b"]", b"\\u", b"\xed\xa0\x80"])
        elif kind == 2:
            del out[at:]
        elif kind == 3:
            out[at:at] = out[: rng.randrange(len(out) + 1)]
        else:
            out = bytearray(rng.choice(FUZZ_BODIES))
    return bytes(out)


def raw_request(host: str, port: int, method: str, path: bytes, body: bytes) -> int:
    """One request as raw bytes (a path no HTTP client library would send); the answer's status code."""
    import socket

    head = b"%s %s HTTP/1.1\r\nHost: fuzz\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
        method.encode(), path, len(body))
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_500_fuzzed_requests_get_4xx_answers_no_traceback_and_leave_nothing_behind(tmp_path: Path,
                                                                                 caplog: pytest.LogCaptureFixture
                                                                                 ) -> None:
    import logging
    import threading

    import psutil

    from framewatch.actors.core.config import load_config
    from framewatch.actors.system import Running

    conf = tmp_path / "fuzz.toml"
    conf.write_text(pipeline_conf(tmp_path, cams=("fz-a",)) + "[http]\nenable = true\nport = 0\n", encoding="utf-8")
    rng = random.Random(2026)
    proc = psutil.Process()
    threads_before = {t.name for t in threading.enumerate()}
    fds_before = proc.num_fds()
    seeing = threading.Event()
    seeing.set()
    statuses: dict[int, int] = {}
    caplog.set_level(logging.INFO)
    with Running(load_config(conf), detector_factory=lambda: Spotter(seeing)) as fw:
        host, port = fw.http_url.removeprefix("http://").split(":")
        for _ in range(500):
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
            path = rng.choice(FUZZ_PATHS) + rng.choice(["", "", "/x", "%00", "/%2e%2e", "?page=\xff", "/\u00e9"])
            body = mutate(rng, rng.choice(FUZZ_BODIES))
            status = raw_request(host, int(port), method, path.encode("utf-8"), body)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500 or status in (501, 503), (method, path, body[:80], status)
        assert fw.snapshot().cameras["fz-a"].sampled > 0  # the pipeline ran on through all of it
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert sum(statuses.values()) == 500 and len(statuses) >= 4, statuses  # 200s, 400s, 404s, 405s...
    wait_for(lambda: {t.name for t in threading.enumerate()} <= threads_before, 10, "the http threads to end")
    assert proc.num_fds() <= fds_before + 2  # pytest's own log capture may hold a file or two
    # Mutated writes were refused (nothing written) or were valid changes: the conf still loads.
    load_config(conf)
