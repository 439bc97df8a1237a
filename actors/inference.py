"""Inference actor: one slot of the pool. Owns one detector.

Messages: ``Frame`` (from the pool). For each frame: run the detector on the decoded array, apply the task type's
rule, count the result, free the slot, then hand the frame to the writer (to store it, and with the alert if the
rule fired). Storage and alert delivery happen off this thread, so a slow disk or broker never slows inference.

Thread: all hooks run on the actor's own thread, ``inference:<slot>``; the detector is created in ``on_start`` on that
thread and closed in ``on_stop``/``on_failure``.

Failures: a detector that raises fails the frame (counted, with the reason) and then crashes the actor, so the
supervisor restarts it with a fresh detector within the restart budget. Frames still queued in the crashed actor's
mailbox are counted failed ("inference actor crashed"), so the conservation equation holds through crashes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from .detectors import Detector
from .messages import Alert, Frame, StoreFrame
from .metrics import Metrics
from .pool import InferencePool
from .rules import Decision, Rule
from .storage import frame_key

log = logging.getLogger(__name__)


class TaskRoute:
    """What inference needs to know about a task: its rule and where its frames and alert images go."""

    __slots__ = ("rule", "frame_prefix", "alert_prefix")

    def __init__(self, rule: Rule | None, frame_prefix: str | None, alert_prefix: str) -> None:
        self.rule = rule
        self.frame_prefix = frame_prefix  # None: do not store plain frames (save_only_with_detection)
        self.alert_prefix = alert_prefix


def utc_iso(wall: float) -> str:
    ms = int(round(wall * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def make_alert(frame: Frame, decision: Decision, *, image_key: str, inference_ms: float, backend: str) -> Alert:
    return Alert(
        id=uuid.uuid4().hex,
        task_id=frame.task_id,
        task_type=frame.task_type,
        time=utc_iso(frame.captured_at),
        rule=decision.rule,
        detections=decision.detections,
        counts=decision.counts,
        image_key=image_key,
        image_stored=False,  # the writer sets it once the image is stored
        inference_ms=round(inference_ms, 2),
        backend=backend,
        frame_seq=frame.seq,
    )


class InferenceActor(pykka.ThreadingActor):
    def __init__(
        self,
        *,
        slot: str,
        detector_factory: Callable[[], Detector],
        routes: Mapping[str, TaskRoute],
        pool: InferencePool,
        writer: pykka.ActorRef[Any],
        metrics: Metrics,
    ) -> None:
        super().__init__()
        self.slot = slot
        self._detector_factory = detector_factory
        self._routes = routes
        self._pool = pool
        self._writer = writer
        self._metrics = metrics
        self._detector: Detector | None = None

    def on_start(self) -> None:
        threading.current_thread().name = f"inference:{self.slot}"
        self._detector = self._detector_factory()

    def on_stop(self) -> None:
        self._close_detector()

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._close_detector()
        lost = 0
        while not self.actor_inbox.empty():  # pykka would drop these silently: account for each one
            message = self.actor_inbox.get_nowait().message
            if isinstance(message, Frame):
                self._metrics.failed(message.task_id, "inference actor crashed")
                lost += 1
        self._pool.done(self.slot, lost)

    def on_receive(self, message: Any) -> None:
        match message:
            case Frame():
                self._infer(message)
            case _:
                log.warning("inference %s: unexpected message %r", self.slot, type(message).__name__)

    def _close_detector(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def _infer(self, frame: Frame) -> None:
        route = self._routes.get(frame.task_id)
        if route is None or route.rule is None or self._detector is None:
            self._pool.done(self.slot)
            self._metrics.failed(frame.task_id, f"no backend serves task type {frame.task_type}")
            return
        t0 = time.monotonic()
        try:
            detections = self._detector.detect(frame.image)
        except Exception as exc:
            elapsed_ms = (time.monotonic() - t0) * 1000
            self._pool.done(self.slot)
            self._metrics.failed(frame.task_id, f"detector error: {type(exc).__name__}", elapsed_ms)
            raise
        end = time.monotonic()
        elapsed_ms = (end - t0) * 1000
        h, w = frame.image.shape[:2]
        decision = route.rule.evaluate(detections, w, h)
        self._metrics.inferred(
            frame.task_id, detections=bool(detections), latency_ms=elapsed_ms,
            age_ms=(t0 - frame.captured_mono) * 1000,
        )
        self._pool.done(self.slot)
        alert = None
        if decision.alert:
            alert = make_alert(
                frame, decision,
                image_key=frame_key(route.alert_prefix, frame.captured_at, frame.seq),
                inference_ms=elapsed_ms, backend=self._detector.name,
            )
            self._metrics.alert_emitted(frame.task_id)
        key = frame_key(route.frame_prefix, frame.captured_at, frame.seq) if route.frame_prefix else None
        if alert is not None or key is not None:
            self._writer.tell(StoreFrame(frame=frame, frame_key=key, alert=alert))
