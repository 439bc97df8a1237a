"""The old system's own clients, unchanged, against framewatch: the registry's wire format (exact answers and status
codes), a service written to the old contract only (``tests/old_protocol_service.py``: stdlib, single-threaded
HTTP/1.0, heartbeats with stats, DELETE to unregister) as a real process, inference requests carrying a fetchable
``algo_config_url`` (framewatch's HTTP API, or the old ``algo_config.json`` object in MinIO), and responses read the
way the old system read them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from framewatch.actors.api.http import HttpApi
from framewatch.actors.core.config import HttpConf, MinioConf, decode_config
from framewatch.actors.core.messages import Detection, Frame, RetentionStatsRequest
from framewatch.actors.inference.registry import Registry, ServiceInfo
from framewatch.actors.inference.remote import InflightImages, RemoteBackend, publish_algo_config
from framewatch.actors.inference.slot import TaskRoute
from framewatch.actors.system import Running

from tests.servers import minio_conf, minio_store, object_names, raw_minio, remove_bucket, require_s3  # noqa: F401
from tests.test_algorithms import call
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
FALL = "客流分析"  # a site's own task type (not one of the nine): only its service infers it, its count decides
SID = "old_fall_detector"
API = "/api/v1/ai_analysis/"
#: The old system's algo_config, version 1.0 (SEED_PROTOCOL.md), as the web console wrote it.
ALGO_CONFIG: dict[str, Any] = {
    "task_id": "cam-0", "task_type": FALL, "config_version": "1.0",
    "created_at": "2025-10-20T10:00:00+08:00", "updated_at": "2025-10-20T10:05:00+08:00",
    "regions": [
        {"id": "region_003", "name": "大厅", "type": "polygon", "enabled": True,
         "points": [[100, 150], [500, 150], [500, 450], [100, 450]], "properties": {"max_count": 50}},
        {"id": "region_002", "name": "禁止区域", "type": "rectangle", "enabled": False,
         "points": [[700, 150], [900, 350]], "properties": {"alert_type": "intrusion"}},
    ],
    "algorithm_params": {"confidence_threshold": 0.7, "iou_threshold": 0.5, "frame_skip": 0,
                         "custom_params": {"fall_duration_threshold": 2, "alert_interval": 5}},
}
#: What the old server put in each ``/services`` entry (framewatch adds its own fields beside them).
OLD_ENTRY_FIELDS = {"service_id", "name", "task_types", "endpoint", "version", "register_at", "last_heartbeat",
                    "total_requests", "avg_inference_time_ms", "last_inference_time_ms", "last_total_time_ms",
                    "status"}
REQUEST_FIELDS = {"image_url", "task_id", "task_type", "image_path", "algo_config", "algo_config_url"}
PERSON = {"label": "person", "score": 0.95, "box": [10, 20, 110, 220]}


def toml(value: Any) -> str:
    """A JSON-like value as a TOML inline value (the conf's algo_config)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()


def conf(tmp_path: Path, *, minio: MinioConf | None = None, max_frame_count: int = 20) -> str:
    storage = ""
    if minio is not None:
        storage = (f'store = "minio"\n[frame_extractor.minio]\nendpoint = "{minio.endpoint}"\n'
                   f'bucket = "{minio.bucket}"\naccess_key = "{minio.access_key}"\n'
                   f'secret_key = "{minio.secret_key}"\nbase_path = "{minio.base_path}"\n')
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
max_frame_count = {max_frame_count}
task_types = ["人数统计", "{FALL}"]
{storage}
[[frame_extractor.tasks]]
id = "cam-0"
task_type = "{FALL}"
rtsp_url = "synthetic://cam-0?width=320&height=240&fps=25"
interval_ms = 100
algo_config = {toml(ALGO_CONFIG)}
[ai_analysis]
heartbeat_timeout_sec = 60
request_timeout_sec = 5
[detector]
backend = "noop"
actors = 1
[http]
enable = true
port = 0
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
"""


class OldService:
    """``tests/old_protocol_service.py`` as a subprocess, and what it recorded; killed and reaped at the end."""

    def __init__(self, framewatch: str, record: Path, heartbeat_sec: float = 0.5) -> None:
        self.record = record
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "old_protocol_service.py"), "--easydarwin", framewatch,
             "--record", str(record), "--service-id", SID, "--task-types", FALL,
             "--heartbeat-interval", str(heartbeat_sec)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def events(self, kind: str) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == kind]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def old_service(tmp_path: Path) -> Iterator[Any]:
    started: list[OldService] = []

    def start(framewatch: str) -> OldService:
        started.append(OldService(framewatch, tmp_path / "received.jsonl"))
        return started[-1]

    yield start
    for service in started:
        service.close()


def get_json(url: str) -> tuple[int, Any]:
    status, body = call(url)
    return status, json.loads(body)


def listing(fw_url: str) -> dict[str, Any]:
    status, body = get_json(fw_url + API + "services")
    assert status == 200
    return body


def test_an_old_contract_service_registers_gets_frames_with_a_fetchable_algo_config_and_its_detections_alert(
        tmp_path, old_service):
    with Running(decode_config(conf(tmp_path))) as fw:
        svc = old_service(fw.http_url)
        [registered] = wait_for(lambda: svc.events("registered"), 20, "the service's registration")
        assert registered == {"event": "registered", "status": 200,
                              "answer": {"ok": True, "service_id": SID, "heartbeat_timeout_sec": 60.0}}
        infers = wait_for(lambda: len(e := svc.events("infer")) >= 8 and e, 30, "eight frames inferred")
        config_url = f"{fw.http_url}{API}algo_config/cam-0"
        for e in infers:
            request = e["request"]
            assert set(request) == REQUEST_FIELDS
            assert (request["task_id"], request["task_type"]) == ("cam-0", FALL)
            assert request["algo_config"] == ALGO_CONFIG and request["algo_config_url"] == config_url
            assert e["algo_config_fetched"] == ALGO_CONFIG  # the URL answers the same object
            assert e["image_ok"] and e["protocol"] == "HTTP/1.0"
        # Without MinIO nothing but frames goes to the store: the config is served, not stored.
        assert not list((tmp_path / "frames").rglob("algo_config.json"))

        # Heartbeats every 0.5 s with the four stats fields, shown in /services as the service last reported them.
        def beat_shown() -> dict[str, Any] | None:
            sent = [b["sent"] for b in svc.events("heartbeat") if b["sent"]["total_requests"] > 0]
            entries = listing(fw.http_url)["services"]
            if not sent or not entries:
                return None
            return entries[0] if {k: entries[0][k] for k in sent[-1]} == sent[-1] else None

        entry = wait_for(beat_shown, 20, "a heartbeat's stats in /services")
        assert all(b["status"] == 200 and b["answer"] == {"ok": True} for b in svc.events("heartbeat"))
        assert OLD_ENTRY_FIELDS <= set(entry)
        assert (entry["service_id"], entry["name"], entry["task_types"], entry["version"], entry["status"]) == \
            (SID, "old-contract person detector", [FALL], "1.0.0", "healthy")
        assert entry["endpoint"].startswith("http://127.0.0.1:") and entry["endpoint"].endswith("/infer")
        assert isinstance(entry["register_at"], int) and isinstance(entry["last_heartbeat"], int)
        assert entry["register_at"] <= entry["last_heartbeat"] <= time.time() + 1
        assert listing(fw.http_url)["total"] == 1

        # One slot, one connection closed by the server after every answer: no call failed for it.
        snap = fw.snapshot()
        assert snap.services[SID].failures == 0 and snap.totals.failed == 0
        assert snap.services[SID].completed >= len(infers) - 1  # the service records a call before answering it

        assert svc.terminate() == 0  # SIGTERM: DELETE unregister, then the server stops
        assert [(u["status"], u["answer"]) for u in svc.events("unregistered")] == [(200, {"ok": True})]
        assert listing(fw.http_url) == {"services": [], "total": 0}
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    # The service saw the person in every frame: one event (the old rule, count > 0), not one alert per frame; it
    # ends when framewatch stops.
    assert [a["event_state"] for a in alerts] == ["start", "end"]
    assert len({a["event_id"] for a in alerts}) == 1
    assert alerts[0]["detections"] == [PERSON]  # class -> label, confidence -> score, bbox (pixels) -> box
    for alert in alerts:
        assert alert["task_id"] == "cam-0" and alert["backend"] == "remote:old-contract person detector"
        assert alert["rule"] == "count>0" and alert["counts"] == {"count": 1}
        # The old row's fields: the service as the algorithm, its result object as it answered (a JSON string).
        assert (alert["algorithm_id"], alert["algorithm_name"]) == (SID, "old-contract person detector")
        assert json.loads(alert["result"])["total_count"] == 1 and alert["detection_count"] == 1
        assert isinstance(alert["id"], int) and isinstance(alert["inference_time_ms"], int)


def test_with_minio_the_algo_config_url_is_a_presigned_url_of_the_old_object_which_retention_never_touches(
        tmp_path, old_service):
    require_s3()
    bucket = minio_conf(base_path="fw")
    try:
        with Running(decode_config(conf(tmp_path, minio=bucket, max_frame_count=3))) as fw:
            svc = old_service(fw.http_url)
            wait_for(lambda: len(svc.events("infer")) >= 10, 60, "ten frames inferred")
            stats = fw.system.retention.ask(RetentionStatsRequest(), timeout=10)
        for e in svc.events("infer"):
            url = urlsplit(e["request"]["algo_config_url"])
            assert unquote(url.path) == f"/{bucket.bucket}/fw/{FALL}/cam-0/algo_config.json"
            assert parse_qs(url.query)["X-Amz-Expires"] == ["86400"]  # 24 h, as the old system's
            assert e["algo_config_fetched"] == ALGO_CONFIG
        stored = raw_minio().get_object(bucket.bucket, f"fw/{FALL}/cam-0/algo_config.json")
        try:
            assert json.loads(stored.read()) == ALGO_CONFIG
        finally:
            stored.close()
            stored.release_conn()
        # Retention trimmed the frames to 3 and neither counted nor deleted the config beside them (it was put
        # before retention's start-up listing, which found it).
        assert stats.indexed[f"{FALL}/cam-0"] == 3
        names = [n.rsplit("/", 1)[-1] for n in object_names(bucket.bucket, f"fw/{FALL}/cam-0")]
        assert names.count("algo_config.json") == 1 and len(names) == 1 + 3
    finally:
        remove_bucket(bucket.bucket)


def test_an_empty_algo_config_never_overwrites_the_object_the_old_console_stored(minio_store):
    key = f"{FALL}/cam-0/algo_config.json"
    drawn = json.dumps(ALGO_CONFIG).encode()
    minio_store.put(key, drawn, "application/json")
    images = InflightImages()
    url = publish_algo_config(minio_store, images, FALL, "cam-0", {})
    assert minio_store.get(key) == drawn
    images.base_url = "http://framewatch:8089"
    assert url() == f"http://framewatch:8089{API}algo_config/cam-0"  # serving {}, as the request's algo_config
    assert images.config("cam-0") == b"{}"


# --- the registry's answers, exactly --------------------------------------------------------------------------------


@pytest.fixture
def bare_api() -> Iterator[tuple[str, Registry, InflightImages]]:
    """framewatch's HTTP API alone, over a registry and served documents of the test's own."""
    registry = Registry(heartbeat_timeout_sec=60, circuit_open_sec=5)
    images = InflightImages()
    api = HttpApi(HttpConf(enable=True, port=0), registry=registry, images=images,
                  snapshot=lambda: None, task_types=[FALL])  # type: ignore[arg-type,return-value]
    url = api.start()
    try:
        yield url + API, registry, images
    finally:
        api.stop()


def send(url: str, method: str = "POST", body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    status, answer = call(url, method, data, {"Content-Type": "application/json"})
    return status, json.loads(answer)


def registration(sid: str = SID, endpoint: str = "http://127.0.0.1:9/infer", **extra: Any) -> dict[str, Any]:
    return {"service_id": sid, "name": "fall", "task_types": [FALL], "endpoint": endpoint, "version": "1.0.0",
            **extra}


def test_register_answers_ok_and_the_id_and_refuses_an_empty_id_or_endpoint_with_400(bare_api):
    api, registry, _ = bare_api
    assert send(api + "register", body=registration()) == \
        (200, {"ok": True, "service_id": SID, "heartbeat_timeout_sec": 60.0})
    assert send(api + "register", body=registration(sid="")) == \
        (400, {"error": "Expected `str` of length >= 1 - at `$.service_id`"})
    assert send(api + "register", body=registration(endpoint="")) == \
        (400, {"error": "Expected `str` of length >= 1 - at `$.endpoint`"})
    assert send(api + "register", body={**registration(), "task_types": []}) == \
        (400, {"error": "Expected `array` of length >= 1 - at `$.task_types`"})
    assert send(api + "register", raw=b"{not json") == \
        (400, {"error": "not valid JSON: JSON is malformed: object keys must be strings (byte 1)"})
    assert send(api + "register", body=registration(endpoint="ftp://x/")) == \
        (422, {"error": "endpoint must be an http:// or https:// URL with a host - at `$.endpoint`"})
    # Left out (framewatch's extension; the old server required it): an id is generated.
    generated = {k: v for k, v in registration(endpoint="http://127.0.0.1:10/infer").items() if k != "service_id"}
    status, answer = send(api + "register", body=generated)
    assert status == 200 and answer["ok"] is True and len(answer["service_id"]) == 12
    assert sorted(registry.services()) == sorted([SID, answer["service_id"]])


def test_registering_an_endpoint_known_under_another_id_replaces_the_old_entry(bare_api):
    api, registry, _ = bare_api
    assert send(api + "register", body=registration(sid="before-restart"))[0] == 200
    assert send(api + "register", body=registration(sid="after-restart")) == \
        (200, {"ok": True, "service_id": "after-restart", "heartbeat_timeout_sec": 60.0})
    assert list(registry.services()) == ["after-restart"]
    assert send(api + "heartbeat/before-restart") == \
        (400, {"error": "unknown service_id 'before-restart' (evicted or never registered): register again"})


def test_heartbeat_answers_ok_keeps_only_the_four_stats_fields_and_refuses_an_unknown_id_with_400(bare_api):
    api, _, _ = bare_api
    send(api + "register", body=registration())
    assert send(api + "heartbeat/" + SID) == (200, {"ok": True})  # empty: a plain heartbeat
    stats = {"total_requests": 7, "avg_inference_time_ms": 41.5, "last_inference_time_ms": 39,
             "last_total_time_ms": 60.25}
    hostile = {**stats, "junk": "x" * 100_000, "nested": {"deep": list(range(1000))}}
    assert send(api + "heartbeat/" + SID, body=hostile) == (200, {"ok": True})
    [entry] = send(api + "services", "GET")[1]["services"]
    assert {k: entry[k] for k in stats} == {**stats, "last_inference_time_ms": 39.0}
    assert "junk" not in entry and "nested" not in entry and len(json.dumps(entry)) < 1000
    assert send(api + "heartbeat/" + SID) == (200, {"ok": True})  # without a body the last stats stay
    assert {k: send(api + "services", "GET")[1]["services"][0][k] for k in stats}["total_requests"] == 7
    assert send(api + "heartbeat/" + SID, body={"total_requests": "many"}) == \
        (400, {"error": "Expected `int`, got `str` - at `$.total_requests`"})
    assert send(api + "heartbeat/" + SID, body={"avg_inference_time_ms": -1}) == \
        (400, {"error": "Expected `float` >= 0.0 - at `$.avg_inference_time_ms`"})
    assert send(api + "heartbeat/ghost") == \
        (400, {"error": "unknown service_id 'ghost' (evicted or never registered): register again"})


def test_unregister_answers_ok_to_delete_and_to_post_and_400_for_an_unknown_id(bare_api):
    api, registry, _ = bare_api
    send(api + "register", body=registration())
    assert send(api + "unregister/" + SID, "DELETE") == (200, {"ok": True})
    assert send(api + "unregister/" + SID, "DELETE") == (400, {"error": f"unknown service_id '{SID}'"})
    send(api + "register", body=registration())
    assert send(api + "unregister/" + SID, "POST") == (200, {"ok": True})
    assert registry.services() == {}
    assert send(api + "unregister/" + SID, "GET") == (405, {"error": f"use DELETE or POST for {API}unregister/{SID}"})
    assert send(api + "register", "DELETE") == (405, {"error": f"use POST for {API}register"})


def test_services_lists_the_old_fields_beside_framewatchs_own_and_a_total(bare_api):
    api, _, _ = bare_api
    assert send(api + "services", "GET") == (200, {"services": [], "total": 0})
    before = int(time.time())
    send(api + "register", body=registration())
    status, body = send(api + "services", "GET")
    assert status == 200 and body["total"] == 1
    [entry] = body["services"]
    assert before <= entry["register_at"] == entry["last_heartbeat"] <= time.time()
    assert entry == {
        "service_id": SID, "name": "fall", "task_types": [FALL], "endpoint": "http://127.0.0.1:9/infer",
        "version": "1.0.0", "register_at": entry["register_at"], "last_heartbeat": entry["last_heartbeat"],
        "total_requests": 0, "avg_inference_time_ms": 0.0, "last_inference_time_ms": 0.0, "last_total_time_ms": 0.0,
        "status": "healthy", "call_count": 0,
        # framewatch's own
        "max_concurrency": 1, "mode": "url", "circuit": "closed", "heartbeat_age_sec": entry["heartbeat_age_sec"],
        "avg_latency_ms": 100.0, "completed": 0, "failures": 0, "retries": 0, "last_error": "",
    }


def test_algo_config_is_served_per_task_and_an_unknown_task_is_a_404(bare_api):
    api, _, images = bare_api
    url = images.serve_config("cam 1/é", json.dumps(ALGO_CONFIG).encode())()
    assert urlsplit(url).path == f"{API}algo_config/cam%201%2F%C3%A9"
    status, body = get_json(url)
    assert (status, body) == (200, ALGO_CONFIG)
    assert get_json(api + "algo_config/nope") == (404, {"error": "no task 'nope'"})


# --- responses read as the old system read them, from a single-threaded HTTP/1.0 server ----------------------------


class OldServer:
    """A stdlib ``HTTPServer`` with the default handler protocol (HTTP/1.0: closes after each answer, no
    Content-Length), answering the queued bodies in turn and keeping the requests it got."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        owner = self
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                owner.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(owner.answers[(len(owner.requests) - 1) % len(owner.answers)]).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="old-server")
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/infer"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


def detection(**extra: Any) -> dict[str, Any]:
    return {"class": "person", "confidence": 0.95, "bbox": [10, 20, 110, 220], **extra}


OLD_ANSWERS = [
    {"success": True, "result": {"total_count": 1, "detections": [detection()]}, "confidence": 0.95,
     "inference_time_ms": 45},  # an int, as in the old example algorithm_service.py
    {"success": True, "result": {"total_count": 1, "detections": [detection(region_id="region_003",
                                                                          region_name="大厅")],
                                 "region_results": [{"region_id": "region_003", "region_name": "大厅", "count": 1,
                                                     "alert": True},
                                                    {"region_id": "line_1", "crossed": True, "direction": "in",
                                                     "alert": True}],
                                 "message": "检测到1人"},
     "confidence": 0.95, "inference_time_ms": 45.123},
    {"success": True, "result": {"detections": [detection(bbox=[10.4, 20.6, 110.0, 220.9])]}, "confidence": 1,
     "inference_time_ms": 0.5, "error": ""},
]


def test_old_responses_decode_with_int_or_float_times_pixel_bboxes_and_region_extras_over_http_1_0_without_failures():
    server = OldServer(OLD_ANSWERS)
    info = ServiceInfo(service_id="old", name="old", task_types=(FALL,), endpoint=server.endpoint, version="1",
                       max_concurrency=1, mode="url")
    images = InflightImages()
    images.base_url = "http://127.0.0.1:9"  # never fetched by this server
    route = TaskRoute(None, None, "alerts/x", ALGO_CONFIG)
    route.algo_config_url = lambda: "http://config.example/cam-0"
    backend = RemoteBackend(info, images, connect_timeout_sec=2, timeout_sec=5)
    image = np.zeros((240, 320, 3), np.uint8)
    try:
        for seq in range(30):  # each call on a connection the server closed after the previous answer
            frame = Frame(task_id="cam-0", task_type=FALL, seq=seq, captured_at=time.time(),
                          captured_mono=time.monotonic(), image=image)
            found = backend.infer(frame, route)
            assert (found.detected, found.count) == (True, 1), seq
            assert found.detections == [Detection(label="person", score=0.95, box=(10, 20, 110, 220))], seq
    finally:
        backend.close()
        server.close()
    assert len(server.requests) == 30
    assert {(r["algo_config_url"], r["task_id"]) for r in server.requests} == {("http://config.example/cam-0", "cam-0")}
    assert all(set(r) == REQUEST_FIELDS and r["algo_config"] == ALGO_CONFIG for r in server.requests)
