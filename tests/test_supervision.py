"""Supervision: crashed actors are restarted within a budget; past it they are given up and reported."""

from __future__ import annotations

import itertools
import threading

from framewatch.actors.core.config import decode_config
from framewatch.actors.inference.detectors import EmulatedDetector
from framewatch.actors.core.supervision import Backoff, RestartBudget
from framewatch.supervisor import Running
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
    assert snap.components["inference:local-0"] == "given up: more than 3 in 60 s restarts"
    assert_conserved(fw.final)


def test_a_crashing_extractor_is_given_up_and_the_other_cameras_run_on(tmp_path):
    bad = """
[[frame_extractor.tasks]]
id = "bad"
task_type = "人数统计"
rtsp_url = "synthetic://bad?fps=many"
"""
    with Running(decode_config(conf(tmp_path, actors=1, intensity=2, extra_tasks=bad))) as fw:
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
