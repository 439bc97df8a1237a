"""Supervision: crashed actors are restarted within a budget; past it they are given up and reported."""

from __future__ import annotations

import itertools
import logging
import threading

from framewatch.actors import cli
from framewatch.actors.alerts.sinks import JsonlSink
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.supervision import Backoff, RestartBudget
from framewatch.actors.inference.detectors import EmulatedDetector
from framewatch.actors.ingest.sources import SyntheticSource
from framewatch.actors.storage.store import LocalStore
from framewatch.actors.system import Running

from tests.servers import PIPELINE_TASK_TYPE, Spotter, pipeline_conf, read_alerts
from tests.waiting import assert_conserved, wait_for


def conf(tmp_path, *, actors: int, intensity: int, extra_tasks: str = "") -> str:
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
[[frame_extractor.tasks]]
id = "cam-1"
task_type = "人数统计"
rtsp_url = "synthetic://cam-1?width=160&height=120&fps=20"
interval_ms = 50
[[frame_extractor.tasks]]
id = "cam-2"
task_type = "人数统计"
rtsp_url = "synthetic://cam-2?width=160&height=120&fps=20"
interval_ms = 50
{extra_tasks}
[detector]
backend = "emulated"
actors = {actors}
[supervision]
restart_intensity = {intensity}
restart_period_sec = 60
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
"""


class EveryThirdFrameFails:
    """Raises on every 3rd frame (counted across instances) until it has raised ``limit`` times."""

    def __init__(self, limit: int) -> None:
        self.calls = itertools.count(1)
        self.raised = 0
        self.limit = limit
        self.lock = threading.Lock()

    def factory(self):
        outer = self

        class Flaky(EmulatedDetector):
            def detect(self, image):
                with outer.lock:
                    n = next(outer.calls)
                    fail = n % 3 == 0 and outer.raised < outer.limit
                    outer.raised += fail
                if fail:
                    raise RuntimeError(f"frame {n}")
                return super().detect(image)

        return Flaky(latency_ms=5)


def test_a_detector_failing_every_third_frame_is_restarted_and_the_rest_keeps_going(tmp_path):
    flaky = EveryThirdFrameFails(limit=6)
    with Running(decode_config(conf(tmp_path, actors=2, intensity=100)), detector_factory=flaky.factory) as fw:
        snap = wait_for(
            lambda: (s := fw.snapshot()).inference.failures_by_reason.get("detector error: RuntimeError") == 6
            and sum(s.restarts.values()) == 6 and s,
            30, "six detector errors, six restarts",
        )
        assert_conserved(snap)
        before = snap.totals.inferred
        wait_for(lambda: fw.snapshot().totals.inferred > before + 20, 30, "inference going on after the restarts")
    final = fw.final
    assert final.inference.failures_by_reason["detector error: RuntimeError"] == 6
    assert sum(final.restarts.values()) == 6
    assert set(final.restarts) <= {"inference:local-0", "inference:local-1"}
    # Frames queued behind a crash are counted failed too, so nothing is unaccounted for.
    crashed = final.inference.failures_by_reason.get("inference actor crashed", 0)
    assert final.totals.failed == 6 + crashed
    assert final.totals.in_flight == 0
    assert_conserved(final)
    assert not fw.escalated.is_set()


def test_past_the_restart_budget_the_last_inference_slot_is_given_up_and_escalated(tmp_path):
    class AlwaysFails(EmulatedDetector):
        def detect(self, image):
            raise RuntimeError("broken model")

    with Running(decode_config(conf(tmp_path, actors=1, intensity=3)),
                 detector_factory=lambda: AlwaysFails(latency_ms=0)) as fw:
        wait_for(fw.escalated.is_set, 30, "escalation")
        snap = fw.snapshot()
    assert fw.escalation == "every inference slot was given up"
    assert snap.restarts == {"inference:local-0": 3}
    assert snap.components["inference:local-0"] == "given up: crashed more than 3 times in 60 s"
    assert_conserved(fw.final, at_rest=True)


class CrashingSource(SyntheticSource):
    """A source whose grab raises what no source should: a bug, so the extractor crashes."""

    def grab(self) -> float:
        raise RuntimeError("decoder bug")


def test_a_crashing_extractor_is_given_up_and_the_other_cameras_run_on(tmp_path):
    bad = """
[[frame_extractor.tasks]]
id = "bad"
task_type = "人数统计"
rtsp_url = "synthetic://bad"
"""

    def sources(task):
        cls = CrashingSource if task.id == "bad" else SyntheticSource
        return cls(task.rtsp_url)

    with Running(decode_config(conf(tmp_path, actors=1, intensity=2, extra_tasks=bad)), source_factory=sources) as fw:
        snap = wait_for(lambda: (s := fw.snapshot()).cameras["bad"].state == "given up" and s, 30, "bad given up")
        assert snap.restarts["extractor:bad"] == 2
        before = snap.cameras["cam-1"].inferred
        wait_for(lambda: fw.snapshot().cameras["cam-1"].inferred > before + 10, 30, "cam-1 inferred")
    assert not fw.escalated.is_set()


def test_the_restart_budget_allows_intensity_restarts_per_period():
    budget = RestartBudget(intensity=3, period_sec=10)
    assert [budget.allow(t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert budget.allow(10.5) is True  # the restart at t=0 has left the window


def test_backoff_doubles_to_the_maximum_and_resets_after_a_quiet_period():
    backoff = Backoff(initial_sec=1, maximum_sec=30, reset_after_sec=60)
    assert [backoff.next_delay(t) for t in (0, 1, 3, 7, 15, 31, 61)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(200) == 1


# --- the writer, retention and the alert actor are supervised children like the others -----------------------------


class Faults:
    """Raises ``RuntimeError`` (a bug, not a storage or sink error) on every ``every``-th call, ``limit`` times."""

    def __init__(self, every: int, limit: int) -> None:
        self.every = every
        self.limit = limit
        self.calls = 0
        self.raised = 0
        self.lock = threading.Lock()

    def maybe_raise(self, what: str) -> None:
        with self.lock:
            self.calls += 1
            fail = self.calls % self.every == 0 and self.raised < self.limit
            self.raised += fail
        if fail:
            raise RuntimeError(f"{what} bug {self.raised}")


def crash_conf(tmp_path, *, intensity: int, max_frame_count: int = 50) -> str:
    return pipeline_conf(tmp_path, max_frame_count=max_frame_count, batch_size=5, batch_interval_sec=0.2) + (
        f"[supervision]\nrestart_intensity = {intensity}\nrestart_period_sec = 60\n"
    )


def spotter():
    on = threading.Event()
    on.set()
    return lambda: Spotter(on)


def assert_every_alert_delivered_once(fw, tmp_path) -> None:
    final = fw.final
    alerts = read_alerts(tmp_path / "alerts.jsonl")
    assert final.alerts.emitted > 0 and final.alerts.dropped == 0
    assert len(alerts) == final.alerts.written == final.alerts.emitted
    assert len({a.id for a in alerts}) == len(alerts)
    assert_conserved(final, at_rest=True)


def test_a_crashing_frame_writer_is_restarted_and_no_alert_is_lost(tmp_path):
    faults = Faults(every=4, limit=3)

    class BuggyStore(LocalStore):
        def put(self, key, data, content_type="image/jpeg"):
            if key.startswith("alerts/"):  # an alert's image: the crash must not lose its alert
                faults.maybe_raise("store")
            super().put(key, data, content_type)

    with Running(decode_config(crash_conf(tmp_path, intensity=5)), detector_factory=spotter(),
                 store_factory=lambda cfg: BuggyStore(cfg.frame_extractor.output_dir)) as fw:
        wait_for(lambda: fw.snapshot().restarts.get("writer") == 3, 30, "three writer restarts")
        before = fw.snapshot().alerts.written
        wait_for(lambda: fw.snapshot().alerts.written > before + 5, 30, "alerts written after the restarts")
    assert fw.final.restarts == {"writer": 3}
    assert not fw.escalated.is_set()
    assert_every_alert_delivered_once(fw, tmp_path)
    alerts = read_alerts(tmp_path / "alerts.jsonl")
    assert sum(not a.image_stored for a in alerts) >= 3  # the frames being written at each crash, sent unstored


def test_a_crashing_retention_actor_is_restarted_and_storage_stays_bounded(tmp_path):
    faults = Faults(every=1, limit=2)

    class BuggyStore(LocalStore):
        def delete_many(self, keys):
            faults.maybe_raise("delete")
            return super().delete_many(keys)

    with Running(decode_config(crash_conf(tmp_path, intensity=5, max_frame_count=5)), detector_factory=spotter(),
                 store_factory=lambda cfg: BuggyStore(cfg.frame_extractor.output_dir)) as fw:
        wait_for(lambda: fw.snapshot().restarts.get("retention") == 2, 30, "two retention restarts")
        wait_for(lambda: fw.snapshot().totals.inferred > 40, 30, "frames stored after the restarts")
    assert fw.final.restarts == {"retention": 2}
    for cam in ("cam-a", "cam-b"):
        frames = list((tmp_path / "frames" / PIPELINE_TASK_TYPE / cam).glob("*.jpg"))
        assert 0 < len(frames) <= 5, cam  # the restarted actor re-indexed (one listing) and trimmed
    assert_every_alert_delivered_once(fw, tmp_path)


class BuggySink(JsonlSink):
    faults: Faults

    def write(self, alerts):
        self.faults.maybe_raise("sink")
        super().write(alerts)


def buggy_sink(tmp_path, faults):
    def factory():
        sink = BuggySink(tmp_path / "alerts.jsonl")
        sink.faults = faults
        return sink

    return factory


def test_a_crashing_alert_actor_is_restarted_and_delivers_every_alert_once(tmp_path):
    faults = Faults(every=2, limit=3)
    with Running(decode_config(crash_conf(tmp_path, intensity=5)), detector_factory=spotter(),
                 sink_factory=buggy_sink(tmp_path, faults)) as fw:
        wait_for(lambda: fw.snapshot().restarts.get("alerts") == 3, 30, "three alert actor restarts")
        before = fw.snapshot().alerts.written
        wait_for(lambda: fw.snapshot().alerts.written > before + 5, 30, "alerts written after the restarts")
    assert fw.final.restarts == {"alerts": 3}
    assert_every_alert_delivered_once(fw, tmp_path)


def test_an_alert_actor_past_its_budget_escalates_and_framewatch_stops_in_order_with_exit_3(tmp_path, caplog):
    faults = Faults(every=1, limit=1_000_000)
    loaded = decode_config(crash_conf(tmp_path, intensity=2))
    with caplog.at_level(logging.INFO, logger="framewatch"):
        code = cli.run(loaded, 60, detector_factory=spotter(), sink_factory=buggy_sink(tmp_path, faults))
    assert code == 3
    assert "stopped after escalation: alerts given up: crashed more than 2 times in 60 s" in caplog.text
    steps = [caplog.text.index(f"shutdown: {s}") for s in ("stopping sources", "draining inference",
                                                          "storing frames", "retention deletes", "flushing alerts",
                                                          "done")]
    assert steps == sorted(steps)
    assert faults.raised == 3  # the first crash and two restarts: exactly the budget


def test_a_second_stop_of_a_retired_inference_slot_is_answered(tmp_path):
    from framewatch.actors.core.supervision import ActorHandle

    with Running(decode_config(conf(tmp_path, actors=2, intensity=5))) as fw:
        wait_for(lambda: fw.snapshot().totals.inferred > 5, 30, "frames inferred")
        handle = fw.ref.proxy().tree.get(timeout=5).get("inference:local-1").handle
        assert isinstance(handle, ActorHandle)
        first = handle.ref.stop(block=False)  # retired: queued behind its frames
        second = handle.ref.stop(block=False)  # and stopped again, as the shutdown does
        first.get(timeout=10)
        second.get(timeout=10)  # answered: the slot's mailbox drain keeps pykka's envelopes
    assert_conserved(fw.final, at_rest=True)


def test_the_conservation_check_catches_a_frame_counted_failed_twice():
    from framewatch.actors.core.metrics import BackpressureStats, Metrics, ProcessStats, conservation_errors

    metrics = Metrics(["cam"])
    for _ in range(3):
        metrics.sampled("cam", sent=True)
    metrics.sampled("cam", sent=False)
    metrics.inferred("cam", detections=True, latency_ms=5, age_ms=5)
    metrics.failed("cam", "decode error")

    def snap():
        return metrics.snapshot(started_mono=0.0, slots=1, mailboxes={},
                                backpressure=BackpressureStats("fair", False, 0, 0, 0, 0), alert_queue=0, spooled=0,
                                process=ProcessStats(0, 0, 0, 0), components={}, restarts={})

    assert conservation_errors(snap()) == []
    assert conservation_errors(snap(), at_rest=True) == ["cam: 1 frames still in flight after the stop",
                                                         "totals: 1 frames still in flight after the stop"]
    metrics.failed("cam", "decode error")  # the in-flight frame fails...
    metrics.failed("cam", "decode error")  # ...and is counted failed twice
    assert conservation_errors(snap()) == ["cam: negative in_flight=-1", "totals: negative in_flight=-1"]
