"""Issue 3's figures against the real servers of ``.ci/servers.sh`` (SeaweedFS S3 on :9000, Tansu Kafka on :9092).

1. Retention cost per frame with 1,000 vs 100,000 objects already in the bucket. The bucket is filled with that many
   frames (parallel puts), a ``RetentionActor`` indexes it (one listing, timed separately: start-up cost), then
   ``--frames`` new frames are stored and told to it; the cost per frame is the wall time until retention has indexed
   them and deleted as many of the oldest (batched ``remove_objects``), divided by the frames. framewatch's figure
   should not grow with the objects (ratio ~1). For contrast, the old system listed the whole task prefix every 50
   uploads: its cost per frame is about one listing / 50, which grows with the objects.
2. Alerts/s delivered to Kafka through the ``AlertActor`` and ``KafkaSink``, batching on (``alert_batch_size``) vs off
   (one write per alert, what the old system did).

    .venv/bin/python benchmarks/storage_kafka.py [--objects 1000,100000] [--frames 2000] [--alerts 3000]

Filling 100,000 objects takes about 100 s on the reference 2-core box (~1,000 puts/s), emptying it ~45 s.
Each run uses buckets and topics of its own and removes the buckets afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402
import pykka  # noqa: E402
from framewatch.actors.alerts.actor import AlertActor, MemorySpool  # noqa: E402
from framewatch.actors.alerts.kafka import KafkaSink  # noqa: E402
from framewatch.actors.core.config import MinioConf  # noqa: E402
from framewatch.actors.analytics.rules import Decision  # noqa: E402
from framewatch.actors.core.messages import (  # noqa: E402
    Alert, AlertStatsRequest, Detection, Flush, Frame, RetentionStatsRequest, Stored)
from framewatch.actors.alerts.records import make_alert  # noqa: E402
from framewatch.actors.core.metrics import Metrics  # noqa: E402
from framewatch.actors.storage.minio import MinioStore  # noqa: E402
from framewatch.actors.storage.retention import Bound, RetentionActor  # noqa: E402
from framewatch.actors.storage.store import frame_key  # noqa: E402

PREFIX = "人数统计/bench-cam"
OLD_CLEANUP_EVERY = 50  # the old system listed the task prefix once per 50 uploads


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _store(endpoint: str) -> MinioStore:
    conf = MinioConf(endpoint=endpoint, bucket=_name("fw-bench"),
                     access_key=os.environ.get("FRAMEWATCH_MINIO_ACCESS_KEY") or "framewatch",
                     secret_key=os.environ.get("FRAMEWATCH_MINIO_SECRET_KEY") or "framewatch-secret")
    store = MinioStore(conf)
    store.connect()
    return store


def _put_all(store: MinioStore, keys: list[str], threads: int = 8) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: store.put(k, b"\xff\xd8 jpeg \xff\xd9"), keys, chunksize=64))
    return time.monotonic() - started


def _empty_and_remove(store: MinioStore) -> None:
    from minio import Minio

    conf = store.conf
    keys = list(store.list_keys(""))
    failed = store.delete_many(keys)
    client = Minio(conf.endpoint, access_key=conf.access_key, secret_key=conf.secret_key, secure=conf.use_ssl)
    if not failed:
        client.remove_bucket(conf.bucket)
    store.close()


def retention_cost(endpoint: str, objects: int, frames: int) -> dict[str, float]:
    """Seconds and ms per frame for one bucket holding ``objects`` frames before ``frames`` new ones arrive."""
    store = _store(endpoint)
    t0 = time.time() - 86_400
    try:
        existing = [frame_key(PREFIX, t0 + i * 0.01, i) for i in range(objects)]
        fill_sec = _put_all(store, existing)
        started = time.monotonic()
        retention = RetentionActor.start(store=store, bounds=[Bound("bench-cam", PREFIX, max_count=objects)],
                                         metrics=Metrics(["bench-cam"]))
        before = retention.ask(RetentionStatsRequest(), timeout=600)
        index_sec = time.monotonic() - started
        new = [frame_key(PREFIX, time.time() + i * 0.01, objects + i) for i in range(frames)]
        _put_all(store, new)  # stored before timing: storing is the writer's cost, not retention's

        started = time.monotonic()
        for key in new:
            retention.tell(Stored(task_id="bench-cam", prefix=PREFIX, key=key))
        after = retention.ask(RetentionStatsRequest(), timeout=600)  # answers once every delete was sent
        work_sec = time.monotonic() - started
        retention.stop()
        assert after.deleted - before.deleted == frames and after.delete_failures == 0, after
        assert after.listings == 1 and store.list_calls == 1
        listing_started = time.monotonic()  # what the old system paid every 50 uploads
        listed = sum(1 for _ in store.list_keys(PREFIX))
        listing_sec = time.monotonic() - listing_started
        assert listed == objects, (listed, objects)
    finally:
        _empty_and_remove(store)
    return {
        "objects": objects,
        "fill_sec": round(fill_sec, 1),
        "index_build_sec": round(index_sec, 2),
        "retention_ms_per_frame": round(work_sec * 1000 / frames, 3),
        "old_system_ms_per_frame": round(listing_sec * 1000 / OLD_CLEANUP_EVERY, 3),
    }


def _alert(i: int) -> Alert:
    """An alert as an inference slot makes it (``make_alert``: the record's numeric id and derived fields)."""
    cam = f"cam-{i % 4:02d}"
    frame = Frame(task_id=cam, task_type="人数统计", seq=i, captured_at=1_795_932_000 + i * 0.2, captured_mono=0.0,
                  image=None)
    decision = Decision(alert=True, rule="people_counting", counts={"person": 1},
                        detections=[Detection(label="person", score=0.9, box=(10, 20, 110, 220))])
    alert = make_alert(frame, decision, image_key=f"alerts/人数统计/{cam}/{i:09d}.jpg", inference_ms=41.0,
                       backend="ssdlite-person")
    return msgspec.structs.replace(alert, image_stored=True)


def kafka_rate(bootstrap: str, alerts: int, batching: bool, batch_size: int = 100) -> dict[str, float]:
    """Alerts/s from the first ``tell`` to the broker's confirmation of the last one."""
    topic = _name("fw-bench")
    sink = KafkaSink(bootstrap, topic, batch_size=batch_size)
    sink.write([_alert(-1)])  # producer and topic ready before timing
    metrics = Metrics()
    actor = AlertActor.start(sink_factory=lambda: sink, spool=MemorySpool(), metrics=metrics,
                             batch_size=batch_size, batching=batching)
    batch = [_alert(i) for i in range(alerts)]
    started = time.monotonic()
    for alert in batch:
        actor.tell(alert)
    actor.tell(Flush())
    stats = actor.ask(AlertStatsRequest(), timeout=600)  # answers after the Flush: every alert confirmed
    elapsed = time.monotonic() - started
    actor.stop()
    assert stats.spooled == 0 and metrics.alerts_written == alerts, (stats, metrics.alerts_written)
    return {"batching": batching, "alerts": alerts, "seconds": round(elapsed, 2),
            "alerts_per_s": round(alerts / elapsed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--s3", default="127.0.0.1:9000")
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--objects", default="1000,100000", help="objects already in the bucket, comma separated")
    parser.add_argument("--frames", type=int, default=2000, help="new frames per measurement")
    parser.add_argument("--alerts", type=int, default=10000, help="alerts with batching on (a fifth of it off)")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {"retention": [], "kafka": []}
    try:
        retention_cost(args.s3, 200, 200)  # warm-up: connections, first requests
        for n in (int(x) for x in args.objects.split(",")):
            row = retention_cost(args.s3, n, args.frames)
            results["retention"].append(row)
            print(f"retention, {n:>7} objects: {row['retention_ms_per_frame']:.3f} ms/frame "
                  f"(index built in {row['index_build_sec']} s; filling took {row['fill_sec']} s; "
                  f"old system ~{row['old_system_ms_per_frame']:.3f} ms/frame)", flush=True)
        rows = results["retention"]
        if len(rows) >= 2:
            ratio = rows[-1]["retention_ms_per_frame"] / rows[0]["retention_ms_per_frame"]
            old = rows[-1]["old_system_ms_per_frame"] / rows[0]["old_system_ms_per_frame"]
            print(f"retention ratio {rows[-1]['objects']}/{rows[0]['objects']} objects: {ratio:.2f} "
                  f"(old system: {old:.1f})")
        for batching in (True, False):
            row = kafka_rate(args.kafka, args.alerts if batching else max(args.alerts // 5, 100), batching)
            results["kafka"].append(row)
            print(f"kafka, batching {'on ' if batching else 'off'}: {row['alerts_per_s']} alerts/s "
                  f"({row['alerts']} alerts in {row['seconds']} s)", flush=True)
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)
    print(msgspec.json.encode(results).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
