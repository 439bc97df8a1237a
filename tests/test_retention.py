"""Retention: the newest max_frame_count frames per task remain; the index is rebuilt once at start."""

from __future__ import annotations

import time

import pykka
from framewatch.actors.core.messages import RetentionStatsRequest, Stored, Sweep
from framewatch.actors.core.metrics import Metrics
from framewatch.actors.storage.retention import Bound, RetentionActor, key_time
from framewatch.actors.storage.store import LocalStore, frame_key

from tests.waiting import wait_for


class CountingStore(LocalStore):
    """The real local store, counting listings and delete calls."""

    def __init__(self, root):
        super().__init__(root)
        self.list_calls = 0
        self.delete_calls = 0

    def list_keys(self, prefix):
        self.list_calls += 1
        return super().list_keys(prefix)

    def delete_many(self, keys):
        self.delete_calls += 1
        return super().delete_many(keys)


def store_frames(store, retention, prefix: str, task_id: str, n: int, t0: float) -> list[str]:
    keys = []
    for i in range(n):
        key = frame_key(prefix, t0 + i * 0.001, i)  # 1 ms apart: same second, distinct keys
        store.put(key, b"jpeg")
        retention.tell(Stored(task_id=task_id, prefix=prefix, key=key))
        keys.append(key)
    return keys


def test_exactly_the_newest_frames_remain_per_task_and_deletes_are_batched(tmp_path):
    store = CountingStore(tmp_path)
    bounds = [Bound(task_id=t, prefix=f"人数统计/{t}", max_count=20) for t in ("cam-a", "cam-b")]
    retention = RetentionActor.start(store=store, bounds=bounds, metrics=Metrics())
    t0 = time.time()
    keys = {b.task_id: store_frames(store, retention, b.prefix, b.task_id, 500, t0) for b in bounds}
    stats = retention.ask(RetentionStatsRequest(), timeout=30)
    retention.stop()
    for b in bounds:
        remaining = sorted(store.list_keys(b.prefix))
        assert remaining == keys[b.task_id][-20:]
    assert stats.indexed == {b.prefix: 20 for b in bounds}
    assert stats.deleted == 2 * 480
    assert store.list_calls == 2 + 2  # one listing per prefix at start (+ the two checks above)
    assert store.delete_calls < 2 * 480 / 10  # batched, not one call per frame


def test_a_restart_rebuilds_the_index_from_disk_and_trims_the_surplus_left_behind(tmp_path):
    store = CountingStore(tmp_path)
    prefix = "区域入侵/door"
    # A previous run (or the old system with max_frame_count = 0) left 300 frames behind.
    t0 = time.time() - 3600
    old = [frame_key(prefix, t0 + i, i) for i in range(300)]
    for key in old:
        store.put(key, b"jpeg")
    retention = RetentionActor.start(store=store, bounds=[Bound(task_id="door", prefix=prefix, max_count=20)],
                                     metrics=Metrics())
    stats = retention.ask(RetentionStatsRequest(), timeout=30)
    assert stats.indexed == {prefix: 20} and stats.listings == 1
    assert sorted(store.list_keys(prefix)) == old[-20:]
    # New frames push the old ones out, oldest first, without listing again.
    new = store_frames(store, retention, prefix, "door", 5, time.time())
    retention.ask(RetentionStatsRequest(), timeout=30)
    retention.stop()
    assert sorted(store.list_keys(prefix)) == old[-15:] + new
    assert store.list_calls == 1 + 2


def test_age_bounds_delete_frames_older_than_max_age(tmp_path):
    store = LocalStore(tmp_path)
    prefix = "人数统计/cam"
    now = time.time()
    old = [frame_key(prefix, now - 7200 + i, i) for i in range(5)]
    fresh = [frame_key(prefix, now - 10 + i, 100 + i) for i in range(5)]
    for key in old + fresh:
        store.put(key, b"jpeg")
    retention = RetentionActor.start(
        store=store, bounds=[Bound(task_id="cam", prefix=prefix, max_count=0, max_age_sec=3600)], metrics=Metrics()
    )
    retention.tell(Sweep())
    wait_for(lambda: sorted(store.list_keys(prefix)) == fresh, 10, "old frames deleted")
    retention.stop()


def test_key_time_reads_the_utc_time_encoded_in_a_key():
    wall = 1763486999.123
    assert abs(key_time(frame_key("a/b", wall, 7)) - wall) < 0.001
    assert key_time("a/b/not-a-frame.jpg") is None
    # The old system's names (Go's 20060102-150405.000), so frames a migrated site left behind are bounded too.
    assert abs(key_time("人数统计/cam/20251118-172959.123.jpg") - 1763486999.123) < 0.001
    assert key_time("a/b/algo_config.json") is None


def test_a_failing_delete_is_retried_not_forgotten(tmp_path):
    class FlakyStore(LocalStore):
        fail = True

        def delete_many(self, keys):
            if self.fail:
                return list(keys)
            return super().delete_many(keys)

    store = FlakyStore(tmp_path)
    prefix = "人数统计/cam"
    retention = RetentionActor.start(store=store, bounds=[Bound(task_id="cam", prefix=prefix, max_count=3)],
                                     metrics=Metrics())
    keys = store_frames(store, retention, prefix, "cam", 10, time.time())
    stats = retention.ask(RetentionStatsRequest(), timeout=10)
    assert stats.delete_failures >= 7 and stats.deleted == 0
    store.fail = False
    retention.tell(Sweep())
    wait_for(lambda: sorted(store.list_keys(prefix)) == keys[-3:], 10, "retried deletes")
    assert retention.ask(RetentionStatsRequest(), timeout=10).deleted == 7
    retention.stop()
    assert not pykka.ActorRegistry.get_all()


def test_objects_that_are_not_frames_under_a_prefix_are_neither_indexed_counted_nor_deleted(tmp_path):
    store = LocalStore(tmp_path)
    prefix = "人员跌倒/cam"
    config = f"{prefix}/algo_config.json"  # the old system's configuration object, beside the task's frames
    store.put(config, b"{}", "application/json")
    now = time.time()
    old = [frame_key(prefix, now - 7200 + i, i) for i in range(5)]
    for key in old:
        store.put(key, b"jpeg")
    metrics = Metrics(["cam"])
    retention = RetentionActor.start(store=store, metrics=metrics,
                                     bounds=[Bound(task_id="cam", prefix=prefix, max_count=2, max_age_sec=3600)])
    assert retention.ask(RetentionStatsRequest(), timeout=10).indexed == {prefix: 2}  # frames only
    new = store_frames(store, retention, prefix, "cam", 3, now)
    retention.tell(Sweep())
    wait_for(lambda: sorted(store.list_keys(prefix)) == new[-2:] + [config], 10, "frames beyond the bounds deleted")
    assert retention.ask(RetentionStatsRequest(), timeout=10).indexed == {prefix: 2}
    retention.stop()
    assert store.get(config) == b"{}"
