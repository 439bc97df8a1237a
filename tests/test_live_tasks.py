"""Tasks changed at run time through the old task-management API: live, persisted, checked, guarded.

A real framewatch (synthetic cameras, the walking ``Spotter`` detector, local storage, JSON Lines alerts) with its
HTTP API on a free port; every call goes over a socket with urllib, the conf is a real file read back with
``load_config`` and compared as text.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from framewatch.actors.core.conffile import ConfFile, ConfFileError, algo_config_file_name
from framewatch.actors.core.config import load_config
from framewatch.actors.system import Running
from tests.servers import PIPELINE_TASK_TYPE, Spotter, pipeline_conf
from tests.waiting import assert_conserved, wait_for

TOKEN = "live-token"
API = "/api/v1/frame_extractor"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAMS = ("cam-a", "cam-b", "cam-c", "cam-d")
HEADER = "# the operator's own comment, kept\n"


def call(base: str, path: str, method: str = "GET", body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, kind = resp.read(), resp.headers.get("Content-Type", "")
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, kind, status = exc.read(), exc.headers.get("Content-Type", ""), exc.code
    return status, json.loads(raw) if kind.startswith("application/json") else raw


def synthetic(cam: str) -> str:
    return f"synthetic://{cam}?width=320&height=240&fps=10"


@pytest.fixture
def conf_path(tmp_path: Path) -> Path:
    text = pipeline_conf(tmp_path, cams=CAMS) + f'[http]\nenable = true\nport = 0\ntoken = "{TOKEN}"\n'
    path = tmp_path / "framewatch.toml"
    path.write_text(HEADER + text, encoding="utf-8")
    return path


def start(conf_path: Path) -> Running:
    seeing = threading.Event()
    seeing.set()
    return Running(load_config(conf_path), detector_factory=lambda: Spotter(seeing))


def sampled(base: str) -> dict[str, int]:
    status, body = call(base, "/api/v1/status")
    assert status == 200
    return {cam: stats["sampled"] for cam, stats in body["cameras"].items()}


def outside_tasks(text: str) -> dict[str, str]:
    """Every top-level table as written, and frame_extractor's own keys: what a task change must leave alone."""
    document = tomlkit.parse(text)
    parts = {name: document[name].as_string() for name in document if name != "frame_extractor"}
    fe = document["frame_extractor"]
    parts["frame_extractor keys"] = repr({k: v for k, v in fe.items() if k != "tasks"})
    parts["header"] = text[:text.index("[")]
    return parts


def thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_add_a_camera_while_four_run_then_delete_it(conf_path: Path) -> None:
    before_text = conf_path.read_text(encoding="utf-8")
    new_task = {"id": "cam-e", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("cam-e"), "interval_ms": 200}
    with start(conf_path) as fw:
        base = fw.http_url
        wait_for(lambda: all(n > 0 for n in sampled(base).values()), 10, "the four cameras to sample")
        # The others' counters, read every 0.1 s from before the add until after it: none may stall.
        readings: list[tuple[float, dict[str, int]]] = []
        stop_reading = threading.Event()

        def read() -> None:
            while not stop_reading.is_set():
                readings.append((time.monotonic(), sampled(base)))
                stop_reading.wait(0.1)

        reader = threading.Thread(target=read)
        reader.start()
        wait_for(lambda: len(readings) >= 5, 5, "readings before the add")
        added_at = time.monotonic()
        status, body = call(base, f"{API}/tasks", "POST", new_task, AUTH)
        assert status == 200, body
        assert body["task"]["id"] == "cam-e" and body["task"]["running"] is True
        wait_for(lambda: sampled(base).get("cam-e", 0) > 0, 5, "the added camera to sample")
        first_sample_sec = time.monotonic() - added_at
        wait_for(lambda: readings[-1][0] > added_at + 2, 10, "two seconds of readings after the add")
        stop_reading.set()
        reader.join()
        assert first_sample_sec < 1.0, f"the added camera sampled first after {first_sample_sec:.2f} s"
        for cam in CAMS:
            # At 5 samples/s, any 0.6 s window without a new sample would be a pause.
            series = [(t, r[cam]) for t, r in readings]
            for (t0, n0), (t1, n1) in zip(series, series[5:]):
                assert n1 > n0, f"{cam} did not sample between {t0 - added_at:+.2f} s and {t1 - added_at:+.2f} s"

        # Persisted: the file holds it, everything else as it was.
        after_text = conf_path.read_text(encoding="utf-8")
        assert outside_tasks(after_text) == outside_tasks(before_text)
        assert after_text.startswith(HEADER)
        assert [t.id for t in load_config(conf_path).config.frame_extractor.tasks] == [*CAMS, "cam-e"]

        status, listing = call(base, f"{API}/tasks")
        assert status == 200 and listing["total"] == 5
        assert {t["id"]: t["running"] for t in listing["tasks"]} == {c: True for c in (*CAMS, "cam-e")}

    # A restart brings it back.
    with start(conf_path) as fw:
        base = fw.http_url
        wait_for(lambda: sampled(base).get("cam-e", 0) > 0, 10, "cam-e to sample after the restart")
        status, body = call(base, f"{API}/tasks/cam-e", "DELETE", None, AUTH)
        assert status == 200 and body == {"ok": True}
        wait_for(lambda: not any(n.endswith(":cam-e") for n in thread_names()), 10, "cam-e's threads to end")
        assert not any(n.startswith("retire:") for n in thread_names())
        status, body = call(base, "/api/v1/status")
        assert body["cameras"]["cam-e"]["state"] == "removed"  # its counters stay: the equation still holds
        assert_conserved(fw.snapshot())
        assert call(base, f"{API}/tasks/cam-e")[0] == 404
        assert [t.id for t in load_config(conf_path).config.frame_extractor.tasks] == list(CAMS)
    assert fw.final is not None
    assert_conserved(fw.final, at_rest=True)
    assert fw.final.cameras["cam-e"].sampled > 0


def rate(base: str, cam: str, seconds: float) -> float:
    n0, t0 = sampled(base)[cam], time.monotonic()
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    return (sampled(base)[cam] - n0) / (time.monotonic() - t0)


def test_interval_stop_and_start_take_effect(conf_path: Path) -> None:
    with start(conf_path) as fw:
        base = fw.http_url
        wait_for(lambda: sampled(base)["cam-a"] > 3, 10, "cam-a to sample")
        fast = rate(base, "cam-a", 2.0)
        status, body = call(base, f"{API}/tasks/cam-a/interval", "PUT", {"interval_ms": 1000}, AUTH)
        assert status == 200 and body["task"]["interval_ms"] == 1000, body
        slow = rate(base, "cam-a", 3.0)
        assert fast > 3.5 and slow < 1.7, (fast, slow)  # 5/s, then 1/s

        status, body = call(base, f"{API}/tasks/cam-b/stop", "POST", None, AUTH)
        assert status == 200 and body["task"]["running"] is False
        wait_for(lambda: call(base, "/api/v1/status")[1]["cameras"]["cam-b"]["state"] == "stopped", 10,
                 "cam-b to stop")
        stopped_at = sampled(base)["cam-b"]
        assert rate(base, "cam-b", 1.0) == 0 and sampled(base)["cam-b"] == stopped_at
        status, body = call(base, f"{API}/tasks/cam-b/start", "POST", None, AUTH)
        assert status == 200 and body["task"]["running"] is True
        wait_for(lambda: sampled(base)["cam-b"] > stopped_at, 5, "cam-b to sample again")

        status, body = call(base, f"{API}/tasks/batch/stop", "POST", {"task_ids": ["cam-c", "cam-d", "nope"]}, AUTH)
        assert status == 200 and body["results"] == {"cam-c": "ok", "cam-d": "ok", "nope": "no task 'nope'"}
        tasks = {t.id: t for t in load_config(conf_path).config.frame_extractor.tasks}
        assert tasks["cam-a"].interval_ms == 1000 and tasks["cam-b"].enabled
        assert not tasks["cam-c"].enabled and not tasks["cam-d"].enabled
        assert_conserved(fw.snapshot())


def test_algo_config_round_trip_and_preview(conf_path: Path) -> None:
    algo = {"task_id": "cam-a", "task_type": PIPELINE_TASK_TYPE, "config_version": "1.0",
            "regions": [{"id": "line-2", "name": "gate", "type": "line", "enabled": True,
                         "points": [[10, 150], [310, 150]], "properties": {"direction": "in", "color": "#4ECDC4"}}],
            "algorithm_params": {"confidence_threshold": 0.5}}
    with start(conf_path) as fw:
        base = fw.http_url
        status, body = call(base, f"{API}/tasks/cam-a/config", "POST", algo, AUTH)
        assert status == 200, body
        assert call(base, f"{API}/tasks/cam-a/config") == (200, algo)
        task = next(t for t in load_config(conf_path).config.frame_extractor.tasks if t.id == "cam-a")
        assert task.algo_config == algo and task.config_status == "configured"
        assert Path(task.algo_config_path or "") == conf_path.parent / "algo_configs" / "cam-a.json"

        wait_for(lambda: call(base, f"{API}/tasks/cam-a/preview")[0] == 200, 10, "a preview of cam-a")
        # A burst of requests: at most one conversion per camera per second, whoever asks.
        holder = fw.system.preview_of("cam-a")
        assert holder is not None
        encodes, t0 = holder.encodes, time.monotonic()
        for _ in range(30):
            status, jpeg = call(base, f"{API}/tasks/cam-a/preview")
            assert status == 200 and jpeg[:2] == b"\xff\xd8"
        assert holder.encodes - encodes <= 1 + int(time.monotonic() - t0)
        assert call(base, f"/api/v1/frame_extractor/snapshots/cam-a")[0] == 200


BAD_TASKS = [
    ({"id": "cam-x", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": "gopher://nowhere"}, 422,
     "- at `$.frame_extractor.tasks[4].rtsp_url`"),
    ({"id": "cam-x", "task_type": "juggling", "rtsp_url": synthetic("x")}, 422,
     "- at `$.frame_extractor.tasks[4].task_type`"),
    ({"id": "cam-x", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("x"), "interval_ms": 0}, 400,
     "- at `$.interval_ms`"),
    ({"id": "cam-x", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("x"), "colour": "red"}, 400,
     "unknown field `colour`"),
    ({"id": "cam-a", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("x")}, 409, "task 'cam-a' exists"),
    ({"id": "cam-x", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("x"),
      "algo_config": {"regions": [{"id": "r", "type": "polygon", "points": [[0, 0], [1, 1]]}]}}, 422,
     "`$.frame_extractor.tasks[4].algo_config.regions[0].points`"),
]


def test_invalid_changes_are_refused_and_nothing_is_written(conf_path: Path) -> None:
    with start(conf_path) as fw:
        base = fw.http_url
        before = conf_path.read_bytes()
        for task, code, reason in BAD_TASKS:
            status, body = call(base, f"{API}/tasks", "POST", task, AUTH)
            assert status == code and reason in body["error"], (task, status, body)
        assert call(base, f"{API}/tasks", "POST", b"{\"id\": ", AUTH)[0] == 400
        assert call(base, f"{API}/tasks/cam-a/interval", "PUT", {"interval_ms": -5}, AUTH)[0] == 400
        status, body = call(base, f"{API}/tasks/cam-a/config", "POST", {"regions": [{"type": "line"}]}, AUTH)
        assert status == 422 and "`$.frame_extractor.tasks[0].algo_config.regions[0]" in body["error"], body
        status, body = call(base, f"{API}/config", "POST", {"frame_extractor": {"interval_ms": 5, "tasks": []}}, AUTH)
        assert status == 409 and "`$.frame_extractor.interval_ms`" in body["error"], body
        assert conf_path.read_bytes() == before
        assert not (conf_path.parent / "algo_configs").exists()
        assert {t["id"] for t in call(base, f"{API}/tasks")[1]["tasks"]} == set(CAMS)


WRITES = [
    ("POST", f"{API}/tasks", {"id": "cam-x", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("x")}),
    ("DELETE", f"{API}/tasks/cam-a", None),
    ("POST", f"{API}/tasks/cam-a/start", None),
    ("POST", f"{API}/tasks/cam-a/stop", None),
    ("PUT", f"{API}/tasks/cam-a/interval", {"interval_ms": 500}),
    ("PUT", f"{API}/tasks/cam-a/save_alert_image", {"save_alert_image": False}),
    ("POST", f"{API}/tasks/cam-a/config", {"regions": []}),
    ("POST", f"{API}/tasks/cam-a/start_with_config", {"regions": []}),
    ("POST", f"{API}/tasks/batch/start", {"task_ids": ["cam-a"]}),
    ("POST", f"{API}/tasks/batch/stop", {"task_ids": ["cam-a"]}),
    ("POST", f"{API}/config", {"frame_extractor": {"tasks": []}}),
    ("DELETE", "/api/v1/alerts/1", None),
    ("POST", "/api/v1/ai_analysis/register", {"name": "n", "task_types": [PIPELINE_TASK_TYPE],
                                              "endpoint": "http://127.0.0.1:9/"}),
]
TRAVERSALS = [
    f"{API}/tasks/..%2F..%2Fetc%2Fpasswd/preview",
    f"{API}/tasks/%2e%2e/config",
    f"{API}/snapshots/..%2Fframewatch.toml",
    "/console/..%2F..%2Fsetup.cfg",
    "/console/%2e%2e/http.py",
    "/console/../tasks_api.py",
    "/frames/..%2F..%2Fframewatch.toml.jpg",
    "/api/v1/alerts/..%2F..%2Fetc%2Fpasswd/image",
    "/api/v1/alerts/1/..%2F..%2Fimage",
]


def test_writes_need_the_token_and_paths_never_reach_the_filesystem(conf_path: Path) -> None:
    with start(conf_path) as fw:
        base = fw.http_url
        before = conf_path.read_bytes()
        for method, path, body in WRITES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                status, answer = call(base, path, method, body, headers)
                assert status == 401 and "token" in answer["error"], (method, path, headers, status, answer)
        assert conf_path.read_bytes() == before
        for path in TRAVERSALS:
            status, _ = call(base, path)
            assert 400 <= status < 500, (path, status)
        # An id that is not a file name is stored under a digest, inside algo_configs/.
        odd = {"id": "../../escape", "task_type": PIPELINE_TASK_TYPE, "rtsp_url": synthetic("odd"), "enabled": False,
               "algo_config": {"regions": []}}
        status, body = call(base, f"{API}/tasks", "POST", odd, AUTH)
        assert status == 200, body
        written = sorted(p.name for p in (conf_path.parent / "algo_configs").iterdir())
        assert written == [algo_config_file_name("../../escape")] and written[0].startswith("task-")
        assert not (conf_path.parent.parent / "escape.json").exists()


def test_conf_file_edits_only_task_entries(tmp_path: Path) -> None:
    """The old server's whole config.toml: a changed task is edited key by key, unchanged ones are not touched."""
    source = Path(__file__).with_name("data") / "old_media_server_config.toml"
    path = tmp_path / "config.toml"
    text = source.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    tasks = load_config(path).config.frame_extractor.tasks
    changed = [tasks[0].__class__(**{**{f: getattr(tasks[0], f) for f in tasks[0].__struct_fields__},
                                     "interval_ms": 750})] + list(tasks[1:])
    ConfFile(str(path)).save(tasks, changed)
    after = path.read_text(encoding="utf-8")
    assert outside_tasks(after) == outside_tasks(text)
    old_tables = tomlkit.parse(text)["frame_extractor"]["tasks"]
    new_tables = tomlkit.parse(after)["frame_extractor"]["tasks"]
    assert [t.as_string() for t in new_tables[1:]] == [t.as_string() for t in old_tables[1:]]
    edited = new_tables[0].as_string()
    assert "interval_ms = 750" in edited
    assert edited.replace("interval_ms = 750", "") == old_tables[0].as_string().replace("interval_ms = 500", "")
    # The file changed under framewatch: refused, nothing written.
    with pytest.raises(ConfFileError, match="changed by someone else"):
        ConfFile(str(path)).save(tasks[1:], tasks[1:])
    assert path.read_text(encoding="utf-8") == after
    assert not list(tmp_path.glob(".*.tmp"))
