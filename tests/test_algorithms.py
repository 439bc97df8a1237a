"""Remote algorithm services, with real processes: registration over HTTP, load-aware routing, a killed service's
frames retried elsewhere and the service evicted, bad payloads answered with a 4xx, and /metrics agreeing with
/api/v1/status. The old system's own clients against framewatch: ``test_old_contract.py``."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.inference import service as algo_service
from framewatch.actors.system import Running
from prometheus_client.parser import text_string_to_metric_families

from tests.waiting import assert_conserved, wait_for

ROOT = Path(__file__).resolve().parent.parent
SMOKING = "吸烟检测"  # no built-in rule: only remote services serve it
TOKEN = "s3cret-token"


def conf(tmp_path: Path, *, cameras: int, task_type: str = SMOKING, interval_ms: int = 100, extra: str = "",
         source: str = "synthetic://{cam}?width=320&height=240&fps=25") -> str:
    tasks = "".join(f"""
[[frame_extractor.tasks]]
id = "cam-{i}"
task_type = "{task_type}"
rtsp_url = "{source.format(cam=f'cam-{i}')}"
interval_ms = {interval_ms}
[frame_extractor.tasks.algo_config]
{f"sensitivity = {i}" if task_type == SMOKING else "count_threshold = 1"}
""" for i in range(cameras))
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
max_frame_count = 20
{tasks}
[ai_analysis]
heartbeat_timeout_sec = 2
circuit_open_sec = 1
request_timeout_sec = 3
[detector]
backend = "noop"
actors = 1
[http]
enable = true
port = 0
token = "{TOKEN}"
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
{extra}
"""


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Services:
    """Reference services as subprocesses; every one is killed and reaped after the test."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, sid: str, register: str, *, latency_ms: float, mode: str = "url") -> None:
        argv = algo_service.command(register, service_id=sid, task_types=[SMOKING], name=sid, detector="noop",
                                    latency_ms=latency_ms, mode=mode, token=TOKEN, log_level="warning")
        self.procs[sid] = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def services():
    s = Services()
    try:
        yield s
    finally:
        s.stop_all()


def test_the_slow_service_gets_fewer_frames_and_a_killed_one_is_retried_elsewhere_then_evicted(tmp_path, services):
    with Running(decode_config(conf(tmp_path, cameras=4))) as fw:
        services.start("fast-a", fw.http_url, latency_ms=40)
        services.start("fast-b", fw.http_url, latency_ms=40, mode="inline")
        services.start("slow", fw.http_url, latency_ms=200)
        wait_for(lambda: len(fw.snapshot().services) == 3, 30, "three services registered")
        start = wait_for(lambda: (s := fw.snapshot()).totals.inferred >= 30 and s, 30, "frames inferred remotely")
        wait_for(lambda: fw.snapshot().totals.inferred >= start.totals.inferred + 150, 30, "150 more frames")
        mid = fw.snapshot()
        done = {sid: mid.services[sid].completed - start.services[sid].completed for sid in mid.services}
        # Expected wait = (outstanding + 1) x latency: a service 5x slower gets far fewer frames.
        assert done["slow"] < 0.5 * min(done["fast-a"], done["fast-b"]), done
        assert min(done["fast-a"], done["fast-b"]) > 0.5 * max(done["fast-a"], done["fast-b"]), done

        services.procs["fast-a"].send_signal(signal.SIGKILL)
        gone = wait_for(lambda: (s := fw.snapshot()).services["fast-a"].circuit == "evicted" and s, 20,
                        "fast-a evicted after the heartbeat timeout")
        assert gone.services["fast-a"].failures >= 1
        assert gone.services["fast-a"].retries >= 1  # its frames in flight went to the others
        assert (gone.services["fast-a"].slots, gone.services["fast-a"].outstanding) == (0, 0)
        assert_conserved(gone)
        after = gone.totals.inferred
        wait_for(lambda: fw.snapshot().totals.inferred > after + 50, 30, "inference going on without fast-a")
        assert fw.snapshot().inference.slots == 2  # fast-b + slow; local-0 serves no camera's task type
    final = fw.final
    assert_conserved(final)
    assert final.totals.in_flight == 0
    # Nothing unaccounted and nothing lost: every frame fast-a failed was inferred by another slot.
    assert final.totals.failed == 0, final.inference.failures_by_reason
    assert final.services["fast-b"].failures == final.services["slow"].failures == 0


BAD = [  # (method, path, body, headers, status, words in the reason)
    ("POST", "/api/v1/ai_analysis/register", b"{not json", AUTH, 400, "not valid JSON"),
    ("POST", "/api/v1/ai_analysis/register", b"", AUTH, 400, "empty body"),
    ("POST", "/api/v1/ai_analysis/register", b'{"task_types": ["\xe5\x90\xb8\xe7\x83\x9f\xe6\xa3\x80\xe6\xb5\x8b"], '
     b'"endpoint": "http://x/"}', AUTH, 400, "Object missing required field `name`"),
    ("POST", "/api/v1/ai_analysis/register", b'{"name": "n", "task_types": "all", "endpoint": "http://x/"}', AUTH,
     400, "Expected `array`, got `str` - at `$.task_types`"),
    ("POST", "/api/v1/ai_analysis/register", b'{"name": "n", "task_types": ["juggling"], "endpoint": "http://x/"}',
     AUTH, 422, "unknown task types ['juggling']"),
    ("POST", "/api/v1/ai_analysis/register", b'{"name": "n", "task_types": ["\xe5\x90\xb8\xe7\x83\x9f\xe6\xa3\x80'
     b'\xe6\xb5\x8b"], "endpoint": "ftp://x/"}', AUTH, 422, "endpoint must be an http:// or https:// URL"),
    ("POST", "/api/v1/ai_analysis/register", b'{"name": "n", "task_types": ["x"], "endpoint": "http://x/", '
     b'"max_concurrency": 0}', AUTH, 400, "Expected `int` >= 1 - at `$.max_concurrency`"),
    ("POST", "/api/v1/ai_analysis/register", b"{" + b" " * 5000 + b"}", AUTH, 413, "larger than max_body_bytes"),
    ("POST", "/api/v1/ai_analysis/register", b'{"name": "n"}', {}, 401, "missing or wrong token"),
    ("POST", "/api/v1/ai_analysis/register", b'{"name": "n"}', {"Authorization": "Bearer nope"}, 401, "wrong token"),
    ("POST", "/api/v1/ai_analysis/register", b'{"service_id": "", "name": "n", "task_types": ["x"], '
     b'"endpoint": "http://x/"}', AUTH, 400, "Expected `str` of length >= 1 - at `$.service_id`"),
    ("POST", "/api/v1/ai_analysis/heartbeat/ghost", b"", AUTH, 400, "unknown service_id 'ghost'"),
    ("POST", "/api/v1/ai_analysis/heartbeat/ghost", b"[1, 2]", AUTH, 400, "Expected `object`, got `array`"),
    ("POST", "/api/v1/ai_analysis/heartbeat/ghost", b'{"total_requests": 1.5}', AUTH, 400,
     "Expected `int`, got `float` - at `$.total_requests`"),
    ("POST", "/api/v1/ai_analysis/unregister/ghost", b"", AUTH, 400, "unknown service_id 'ghost'"),
    ("DELETE", "/api/v1/ai_analysis/unregister/ghost", None, AUTH, 400, "unknown service_id 'ghost'"),
    ("DELETE", "/api/v1/ai_analysis/unregister/ghost", None, {}, 401, "missing or wrong token"),
    ("POST", "/api/v1/ai_analysis/services", b"", AUTH, 404, "no such endpoint"),
    ("GET", "/api/v1/ai_analysis/register", None, {}, 405, "use POST"),
    ("DELETE", "/api/v1/ai_analysis/heartbeat/ghost", None, AUTH, 405, "use POST"),
    ("GET", "/api/v1/ai_analysis/algo_config/no-such-task", None, {}, 404, "no task 'no-such-task'"),
    ("POST", "/api/v1/status", b"{}", {}, 405, "no such endpoint"),
    ("GET", "/frames/0123456789abcdef.jpg", None, {}, 404, "no such frame in flight"),
    ("GET", "/nowhere", None, {}, 404, "no such endpoint"),
]


def test_every_endpoint_answers_bad_payloads_with_a_4xx_and_a_reason_and_the_pipeline_runs_on(tmp_path):
    text = conf(tmp_path, cameras=2, task_type="人数统计").replace("token =", "max_body_bytes = 4096\ntoken =")
    threads_before = set(threading.enumerate())
    with Running(decode_config(text)) as fw:
        before = wait_for(lambda: (s := fw.snapshot()).totals.inferred >= 10 and s, 30, "frames inferred")
        for method, path, body, headers, status, reason in BAD:
            got, answer = call(fw.http_url + path, method, body, headers)
            assert (got, reason in json.loads(answer)["error"]) == (status, True), (path, answer)
        status, listing = call(fw.http_url + "/api/v1/ai_analysis/services")
        assert (status, json.loads(listing)) == (200, {"services": [], "total": 0})
        wait_for(lambda: fw.snapshot().totals.inferred >= before.totals.inferred + 20, 30, "inference going on")
    final = fw.final
    assert_conserved(final)
    assert final.totals.failed == 0 and final.services == {}
    assert fw.final.components["http"] == "stopped"  # the final snapshot tells the state after the stop
    # The server and its connection threads are owned and stopped with the rest.
    wait_for(lambda: set(threading.enumerate()) <= threads_before, 5, "the http threads to end")


def test_metrics_parse_as_prometheus_text_and_agree_with_status(tmp_path):
    text = conf(tmp_path, cameras=2, task_type="人数统计", source="asset:vtest_5s.mp4")
    text = text.replace('interval_ms = 100\n', 'interval_ms = 100\nloop = false\nrealtime = false\n')
    with Running(decode_config(text)) as fw:
        reg = {"service_id": "idle-svc", "name": "idle", "task_types": ["安全帽检测"], "endpoint": "http://127.0.0.1:9/",
               "max_concurrency": 2}
        assert call(fw.http_url + "/api/v1/ai_analysis/register", "POST", json.dumps(reg).encode(), AUTH)[0] == 200
        wait_for(lambda: (s := fw.snapshot()).services.get("idle-svc") and s.services["idle-svc"].slots == 2
                 and all(c.state == "ended" for c in s.cameras.values()) and s.totals.in_flight == 0,
                 30, "both clips played to the end")
        status, body = call(fw.http_url + "/api/v1/status")
        assert status == 200
        snap = json.loads(body)
        status, metrics_text = call(fw.http_url + "/metrics")
        assert status == 200
    samples = {}
    for family in text_string_to_metric_families(metrics_text.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    for cam, c in snap["cameras"].items():
        for field in ("sampled", "skipped", "inferred", "failed", "with_detections", "alerts"):
            assert samples[(f"framewatch_frames_{field}_total" if field not in ("alerts",) else
                            "framewatch_alerts_total", (("camera", cam),))] == c[field], (cam, field)
        assert samples[("framewatch_frames_in_flight", (("camera", cam),))] == c["in_flight"] == 0
        assert c["sampled"] > 0
    svc = snap["services"]["idle-svc"]
    key = (("service", "idle-svc"),)
    assert (samples[("framewatch_service_slots", key)], samples[("framewatch_service_completed_total", key)],
            samples[("framewatch_service_failures_total", key)]) == (svc["slots"], svc["completed"], svc["failures"])
    assert samples[("framewatch_service_circuit", (("service", "idle-svc"), ("state", "closed")))] == 1
    assert samples[("framewatch_inference_slots", ())] == snap["inference"]["slots"] == 1  # idle-svc serves no camera
