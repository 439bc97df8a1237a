"""framewatch storing frames and alert images in MinIO (SeaweedFS from ``.ci/servers.sh``, or one of the test's own
that it kills and restarts); no mocks. Invariant 5 (bounded storage, no listing after start-up) and the start-up
rules: a wrong setting stops framewatch with the setting's name, an unreachable server does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.messages import RetentionStatsRequest
from framewatch.actors.storage.minio import MinioStore
from framewatch.actors.storage.store import frame_key
from framewatch.actors.system import Running

from tests.servers import (
    PIPELINE_TASK_TYPE,
    SECRET_KEY,
    SeaweedServer,
    Spotter,
    minio_conf,
    object_names,
    pipeline_conf,
    raw_minio,
    read_alerts,
    remove_bucket,
    require_s3,
)
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = PIPELINE_TASK_TYPE  # the task type of pipeline_conf: its prefixes


def name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def names_under(bucket: str, prefix: str, endpoint: str | None = None) -> list[str]:
    """The frame (JPEG) names under ``prefix``: the task's algo_config.json lives there too, for old services."""
    keys = object_names(bucket, prefix, endpoint) if endpoint else object_names(bucket, prefix)
    return [name(k) for k in keys if k.endswith(".jpg")]


def seeing() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@pytest.fixture
def bucket_conf():
    require_s3()
    conf = minio_conf(base_path="fw")
    yield conf
    remove_bucket(conf.bucket)


def test_frames_and_alert_images_land_under_their_keys_and_retention_keeps_exactly_the_newest(tmp_path, bucket_conf):
    on = seeing()
    loaded = decode_config(pipeline_conf(tmp_path, minio=bucket_conf, max_frame_count=5, image_max_count=3))
    with Running(loaded, detector_factory=lambda: Spotter(on)) as fw:
        wait_for(lambda: all(c.alerts >= 12 for c in fw.snapshot().cameras.values()), 60, "12 alerts per camera")
        store: MinioStore = fw.system.store
    final = fw.final
    assert final is not None and final.totals.store_failed == 0
    assert final.components["storage"] == "up (minio)"
    alerts = read_alerts(tmp_path / "alerts.jsonl")
    assert len(alerts) == final.alerts.emitted
    for cam in ("cam-a", "cam-b"):
        mine = sorted(name(a.image_key) for a in alerts if a.task_id == cam)
        assert all(a.image_stored for a in alerts)
        assert all(a.image_key.startswith(f"alerts/{PEOPLE}/{cam}/") for a in alerts if a.task_id == cam)
        # Every inferred frame is stored (5 kept), an alert's image under the same name as its frame (3 kept).
        frames = names_under(bucket_conf.bucket, f"fw/{PEOPLE}/{cam}")
        assert len(frames) == 5 and frames == sorted(frames) and frames[-1] >= mine[-1]
        assert names_under(bucket_conf.bucket, f"fw/alerts/{PEOPLE}/{cam}") == mine[-3:]
    jpeg = raw_minio().get_object(bucket_conf.bucket, f"fw/alerts/{PEOPLE}/cam-b/{mine[-1]}")
    try:
        assert jpeg.read(2) == b"\xff\xd8"
    finally:
        jpeg.close()
        jpeg.release_conn()
    assert store.list_calls == 4  # one listing per indexed prefix (2 cameras x frames, alert images), at start only


def test_a_restart_rebuilds_the_index_with_one_listing_and_removes_the_surplus_of_the_previous_run(tmp_path, bucket_conf):
    first = decode_config(pipeline_conf(tmp_path / "1", minio=bucket_conf, cams=("cam-a",), max_frame_count=20))
    with Running(first, detector_factory=lambda: Spotter(threading.Event())) as fw:
        wait_for(lambda: fw.snapshot().cameras["cam-a"].stored >= 12, 60, "12 frames stored")
    left = names_under(bucket_conf.bucket, f"fw/{PEOPLE}/cam-a")
    assert 12 <= len(left) <= 20
    # The same camera, now bounded to 5, and its stream gone: whatever changes in the bucket is the rebuild's doing.
    second = decode_config(pipeline_conf(tmp_path / "2", minio=bucket_conf, cams=("cam-a",), max_frame_count=5,
                                         source="rtsp://127.0.0.1:9/{cam}"))
    with Running(second, detector_factory=lambda: Spotter(threading.Event())) as fw:
        retention = fw.system.retention
        stats = retention.ask(RetentionStatsRequest(), timeout=30)
        store: MinioStore = fw.system.store
        assert stats.listings == 2 and stats.unlisted == 0
        assert stats.indexed[f"{PEOPLE}/cam-a"] == 5
        assert names_under(bucket_conf.bucket, f"fw/{PEOPLE}/cam-a") == left[-5:]
        assert fw.snapshot().cameras["cam-a"].stored == 5
    assert store.list_calls == 2


def test_alert_images_older_than_image_max_age_are_deleted_from_the_bucket(tmp_path, bucket_conf):
    seed = MinioStore(bucket_conf)
    seed.connect()
    prefix = f"alerts/{PEOPLE}/cam-a"
    now = time.time()
    old = [frame_key(prefix, now - 7200 + i, i) for i in range(10)]
    fresh = [frame_key(prefix, now - 10 + i, 100 + i) for i in range(3)]
    for key in old + fresh:
        seed.put(key, b"jpeg")
    seed.close()
    loaded = decode_config(pipeline_conf(tmp_path, minio=bucket_conf, cams=("cam-a",), image_max_count=0,
                                         image_max_age_sec=3600, source="rtsp://127.0.0.1:9/{cam}"))
    with Running(loaded, detector_factory=lambda: Spotter(threading.Event())):
        wait_for(lambda: names_under(bucket_conf.bucket, f"fw/{prefix}") == [name(k) for k in fresh], 30,
                 "alert images past their age deleted")


def test_storage_down_at_start_framewatch_runs_and_rebuilds_the_index_once_it_answers(tmp_path):
    server = SeaweedServer(tmp_path / "s3")
    server.start()
    conf = minio_conf(endpoint=server.endpoint)
    seed = MinioStore(conf)
    seed.connect()
    old = [frame_key(f"{PEOPLE}/cam-a", time.time() - 3600 + i, i) for i in range(30)]  # a previous run's surplus
    for key in old:
        seed.put(key, b"old")
    seed.close()
    server.kill()
    try:
        on = seeing()
        started = time.monotonic()
        loaded = decode_config(pipeline_conf(tmp_path, minio=conf, cams=("cam-a",), max_frame_count=5))
        with Running(loaded, detector_factory=lambda: Spotter(on)) as fw:
            assert time.monotonic() - started < 10
            down = wait_for(lambda: (s := fw.snapshot()).totals.inferred >= 3 and s.totals.store_failed >= 3
                            and s.totals.alerts >= 3 and s, 30, "frames inferred and counted as not stored")
            assert down.components["storage"].startswith(f"down: cannot reach the S3 endpoint http://{server.endpoint}")
            assert "frame_extractor.minio.endpoint" in down.components["storage"]
            assert down.totals.inferred >= 3 and down.totals.alerts >= 3  # inference and alerts go on

            server.start()
            retention = fw.system.retention
            wait_for(lambda: retention.ask(RetentionStatsRequest(), timeout=10).unlisted == 0, 30, "the listing")
            wait_for(lambda: fw.snapshot().components["storage"] == "up (minio)", 30, "storage up")
            frames = f"{PEOPLE}/cam-a"
            wait_for(lambda: not set(names_under(conf.bucket, frames, server.endpoint)) & {name(k) for k in old},
                     30, "the old surplus deleted")
            store: MinioStore = fw.system.store
            listed = store.list_calls
            inferred = fw.snapshot().totals.inferred
            wait_for(lambda: fw.snapshot().totals.inferred >= inferred + 10, 30, "two more seconds of frames")
        assert store.list_calls == listed  # no listing after the rebuild
        remaining = names_under(conf.bucket, frames, server.endpoint)
        stored = sorted(name(a.image_key) for a in read_alerts(tmp_path / "alerts.jsonl") if a.image_stored)
        assert len(remaining) == 5 and remaining[-1] >= stored[-1]  # the newest 5 frames, the last alert's among them
    finally:
        server.stop()


def test_s3_killed_mid_run_inference_goes_on_unstored_frames_are_counted_and_storing_resumes(tmp_path):
    server = SeaweedServer(tmp_path / "s3")
    server.start()
    conf = minio_conf(endpoint=server.endpoint)
    try:
        on = seeing()
        loaded = decode_config(pipeline_conf(tmp_path, minio=conf, cams=("cam-a",), max_frame_count=1000,
                                             image_max_count=1000))
        with Running(loaded, detector_factory=lambda: Spotter(on)) as fw:
            before = wait_for(lambda: (s := fw.snapshot()).totals.stored >= 6 and s, 30, "frames stored")
            assert before.totals.store_failed == 0
            server.kill()
            during = wait_for(lambda: (s := fw.snapshot()).totals.store_failed >= before.totals.store_failed + 6
                              and s.totals.inferred >= before.totals.inferred + 6
                              and s.totals.alerts >= before.totals.alerts + 4 and s, 30,
                              "frames inferred and counted as not stored")
            assert during.components["storage"].startswith("down: ")
            assert during.totals.inferred >= before.totals.inferred + 6  # inference did not wait for storage
            assert during.totals.alerts >= before.totals.alerts + 4  # crossings while storage is down
            server.start()
            wait_for(lambda: fw.snapshot().components["storage"] == "up (minio)", 30, "storage up again")
            after = wait_for(lambda: (s := fw.snapshot()).totals.stored >= during.totals.stored + 6 and s, 30,
                             "storing resumed")
        final = fw.final
        assert final is not None and final.alerts.written == final.alerts.emitted
        alerts = read_alerts(tmp_path / "alerts.jsonl")
        in_bucket = set(names_under(conf.bucket, f"alerts/{PEOPLE}/cam-a", server.endpoint))
        # Every alert went out; its flag tells whether its image is in the bucket.
        assert len(alerts) == final.alerts.emitted
        assert {name(a.image_key) for a in alerts if a.image_stored} == in_bucket
        missing = [a for a in alerts if not a.image_stored]
        assert 3 <= len(missing) <= final.totals.store_failed
        assert any(a.image_stored for a in alerts[alerts.index(missing[-1]):])  # stored again after the outage
        assert after.totals.store_failed == final.totals.store_failed
    finally:
        server.stop()


def _framewatch_run(tmp_path: Path, conf_text: str, *args: str, env: dict[str, str] | None = None,
                    timeout: float = 60) -> tuple[int, str, float]:
    conf = tmp_path / "conf.toml"
    conf.write_text(conf_text, encoding="utf-8")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "run", str(conf), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    ("setting", "overrides", "code_expected", "expected"),
    [
        # Only the server can tell wrong credentials: framewatch cannot start (1).
        ("credentials", dict(secret_key="wrong-secret-7d3a1f"), 1, "frame_extractor.minio.access_key/secret_key"),
        # A bucket name S3 refuses is known from the conf alone: a bad configuration (2).
        ("bucket", dict(bucket="Frames_Of_Cam1"), 2, "at `$.frame_extractor.minio.bucket`"),
    ],
)
def test_a_wrong_minio_setting_stops_framewatch_run_naming_the_setting(tmp_path, setting, overrides, code_expected,
                                                                      expected):
    require_s3()
    conf = minio_conf(**overrides)
    code, out, elapsed = _framewatch_run(tmp_path, pipeline_conf(tmp_path, minio=conf), "--duration", "30")
    assert code == code_expected, out
    assert expected in out
    assert ("cannot start:" in out) == (code == 1)
    assert "Traceback" not in out
    assert conf.secret_key not in out
    assert elapsed < 30


def test_secrets_from_the_environment_never_reach_the_logs_or_the_stats(tmp_path, bucket_conf):
    text = pipeline_conf(tmp_path, minio=bucket_conf).replace(f'secret_key = "{SECRET_KEY}"', 'secret_key = ""')
    assert SECRET_KEY not in text
    code, out, _ = _framewatch_run(tmp_path, text, "--duration", "4", "--log-level", "debug",
                                   env={"FRAMEWATCH_MINIO_SECRET_KEY": SECRET_KEY})
    assert code == 0, out
    stats = (tmp_path / "stats.json").read_text()
    assert json.loads(stats)["components"]["storage"] == "up (minio)"
    assert json.loads(stats)["totals"]["stored"] > 0
    assert SECRET_KEY not in out and SECRET_KEY not in stats
