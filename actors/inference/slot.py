"""Inference actor: one slot of the pool. Owns one backend: the local detector, or a connection to a remote service.

Messages: ``Frame`` (from the pool). For each frame: ask the backend for a decision (the local backend runs the
detector and applies the task type's rule; the remote one calls an algorithm service, see ``actors.algo_client``),
count the result, free the slot, then hand the frame to the writer (to store it, and with the alert if the rule
fired). Storage and alert delivery happen off this thread, so a slow disk or broker never slows inference.

Thread: all hooks run on the actor's own thread, ``inference:<slot>``; the backend is created in ``setup`` on that
thread (a detector that cannot load fails the slot's start: ``StartError`` naming ``detector.model``) and closed in
``on_stop``/``on_failure``.

Failures:

- A local detector that raises fails the frame (counted, with the reason) and then crashes the actor, so the
  supervisor restarts it with a fresh detector within the restart budget. Frames still queued in the crashed actor's
  mailbox are counted failed ("inference actor crashed"), so the conservation equation holds through crashes.
- A remote call that fails or times out (``BackendUnavailable``) opens the service's circuit (``Health``) and the
  frame is retried once on another slot (another service, or the local detector if it serves the type); a frame that
  was already retried, or that finds no other slot, is counted failed. Frames still queued here while the circuit is
  open or the service is evicted are moved the same way, without calling it. The actor itself lives on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from ..analytics.rules import Decision, Rule
from ..core.ids import next_alert_id
from ..core.messages import Alert, Frame, StoreFrame
from ..core.metrics import Metrics
from ..core.supervision import ChildActor, Link
from ..inference.detectors import Detector
from ..inference.pool import InferencePool
from ..inference.registry import Health
from ..storage.store import frame_key

log = logging.getLogger(__name__)


class TaskRoute:
    """What inference needs to know about a task: its rule, its conf, and where its frames and alert images go."""

    __slots__ = ("rule", "frame_prefix", "alert_prefix", "algo_config", "algo_config_url", "save_alert_image")

    def __init__(self, rule: Rule | None, frame_prefix: str | None, alert_prefix: str,
                 algo_config: Mapping[str, Any] | None = None, *, save_alert_image: bool = True) -> None:
        self.rule = rule
        self.save_alert_image = save_alert_image  # False: this task's alerts go out without an image
        self.frame_prefix = frame_prefix  # None: do not store plain frames (save_only_with_detection)
        self.alert_prefix = alert_prefix
        self.algo_config = dict(algo_config or {})  # sent unchanged to remote services
        # Where a remote service can fetch algo_config, called per request (a presigned URL is signed afresh); set
        # once storage is connected (``System.connect``, ``remote.publish_algo_config``). "" until then.
        self.algo_config_url: Callable[[], str] = lambda: ""

    def frame_key(self, frame: Frame) -> str | None:
        return frame_key(self.frame_prefix, frame.captured_at, frame.seq) if self.frame_prefix else None


class Inferred(msgspec.Struct, frozen=True):
    """A backend's answer for one frame."""

    decision: Decision
    detected: bool  # anything detected at all (the ``with_detections`` counter), whether or not it alerts
    jpeg: bytes | None = None  # the frame as encoded for a remote service: the writer stores these bytes
    result: Any = None  # a remote service's ``result`` object as it answered (the alert record carries it)
    frame_stored: bool = False  # the frame is already stored under its key (and indexed): a presigned URL points at it


class BackendUnavailable(Exception):
    """The backend could not answer for this frame (connection refused, timeout, HTTP error, ``success: false``):
    the frame may be retried on another slot, and the backend's circuit opens."""


class Backend(Protocol):
    name: str  # reported in alerts (``backend``)
    algorithm_id: str  # the old record's ``algorithm_id`` / ``algorithm_name``: the detector, or the service
    algorithm_name: str

    def infer(self, frame: Frame, route: TaskRoute) -> Inferred:
        """Decide on ``frame``; raises ``BackendUnavailable``, or anything else for a bug (the actor crashes)."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """The in-process detector plus the task type's built-in rule."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self.name = self.algorithm_id = self.algorithm_name = detector.name

    def infer(self, frame: Frame, route: TaskRoute) -> Inferred:
        if route.rule is None:
            raise BackendUnavailable(f"no built-in rule for task type {frame.task_type}")
        detections = self._detector.detect(frame.image)
        h, w = frame.image.shape[:2]
        return Inferred(decision=route.rule.evaluate(detections, w, h), detected=bool(detections))

    def close(self) -> None:
        self._detector.close()


def local_backend(detector_factory: Callable[[], Detector]) -> Callable[[], Backend]:
    return lambda: LocalBackend(detector_factory())


def utc_iso(wall: float) -> str:
    """``wall`` (seconds since the epoch) as RFC 3339 in UTC with milliseconds: ``2026-11-29T06:25:54.384Z``."""
    ms = round(wall * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _local_result(decision: Decision, count: int) -> dict[str, Any]:
    """What an old algorithm service would have answered for this decision (its ``result`` object): ``total_count``,
    ``detections`` as ``{class, confidence, bbox}`` and, with regions, each detection's ``region_id``/``region_name``
    and the ``region_results``."""
    names = {r.region_id: r.region_name for r in decision.regions}
    items = []
    for i, d in enumerate(decision.detections):
        item: dict[str, Any] = {"class": d.label, "confidence": d.score, "bbox": d.box}
        region = decision.detection_regions[i] if i < len(decision.detection_regions) else ""
        if region:
            item.update(region_id=region, region_name=names.get(region, ""))
        items.append(item)
    result: dict[str, Any] = {"total_count": count, "detections": items}
    if decision.regions:
        result["region_results"] = decision.regions
    return result


def make_alert(frame: Frame, decision: Decision, *, image_key: str | None, inference_ms: float, backend: str,
               algorithm_id: str = "", algorithm_name: str = "", result: Any = None) -> Alert:
    """The alert for ``frame``, with its numeric id drawn now (once: a redelivery replays this struct).

    ``image_key`` None: the alert has no image. ``algorithm_id``/``algorithm_name`` default to ``backend``. ``result``
    is a remote service's result object, put in the record as it came; ``None`` builds the local equivalent."""
    detections = decision.detections
    # A service may report only a count (``total_count`` without a detection list): the decision's count then.
    count = len(detections) or max(decision.counts.values(), default=0)
    made = utc_iso(time.time())
    return Alert(
        id=next_alert_id(),
        task_id=frame.task_id,
        task_type=frame.task_type,
        image_path=image_key or "",
        algorithm_id=algorithm_id or backend,
        algorithm_name=algorithm_name or backend,
        result=msgspec.json.encode(_local_result(decision, count) if result is None else result).decode(),
        confidence=max((d.score for d in detections), default=0.0),
        detection_count=count,
        inference_time_ms=round(inference_ms),
        created_at=made,
        updated_at=made,
        uid=uuid.uuid4().hex,
        time=utc_iso(frame.captured_at),
        rule=decision.rule,
        detections=detections,
        counts=decision.counts,
        image_key=image_key,
        image_stored=False,  # the writer sets it, and image_url, once the image is stored
        backend=backend,
        frame_seq=frame.seq,
    )


class InferenceActor(ChildActor):
    def __init__(
        self,
        *,
        slot: str,
        backend_factory: Callable[[], Backend],
        health: Health,
        routes: Mapping[str, TaskRoute],
        pool: InferencePool,
        writer: Link,
        metrics: Metrics,
        **child: Any,
    ) -> None:
        super().__init__(**child)
        self.thread_name = f"inference:{slot}"
        self.slot = slot
        self._backend_factory = backend_factory
        self._health = health
        self._routes = routes
        self._pool = pool
        self._writer = writer
        self._metrics = metrics
        self._backend: Backend | None = None

    def setup(self) -> None:
        self._backend = self._backend_factory()

    def on_stop(self) -> None:
        self._close_backend()
        # stop() is queued behind the frames sent before it; a frame retried here after it would be dropped.
        self._account_unprocessed("inference actor stopped")

    def on_crash(self, exc: BaseException) -> None:
        self._close_backend()
        self._account_unprocessed("inference actor crashed")

    def _account_unprocessed(self, reason: str) -> None:
        """pykka drops what is left in a stopping actor's mailbox silently: count each frame failed instead (pykka's
        own envelopes stay, so a second ``stop()`` is answered)."""
        lost = self.unread(lambda m: isinstance(m, Frame))
        for frame in lost:
            self._metrics.failed(frame.task_id, reason)
        self._pool.done(self.slot, len(lost))

    def on_receive(self, message: Any) -> None:
        match message:
            case Frame():
                self._infer(message)
            case _:
                log.warning("inference %s: unexpected message %r", self.slot, type(message).__name__)

    def _close_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _infer(self, frame: Frame) -> None:
        route = self._routes.get(frame.task_id)
        if route is None or self._backend is None:
            self._pool.done(self.slot)
            self._metrics.failed(frame.task_id, f"no backend serves task type {frame.task_type}")
            return
        t0 = time.monotonic()
        if not self._health.usable(t0):
            self._move(frame, f"{self._health.name} {self._health.state(t0)}", 0.0)
            return
        try:
            result = self._backend.infer(frame, route)
        except BackendUnavailable as exc:
            end = time.monotonic()
            self._health.failed(str(exc), (end - t0) * 1000, end)
            self._move(frame, f"{self._health.name}: {exc}", (end - t0) * 1000)
            return
        except Exception as exc:
            elapsed_ms = (time.monotonic() - t0) * 1000
            self._pool.done(self.slot)
            self._metrics.failed(frame.task_id, f"detector error: {type(exc).__name__}", elapsed_ms)
            raise
        end = time.monotonic()
        elapsed_ms = (end - t0) * 1000
        self._health.succeeded(elapsed_ms)
        self._metrics.inferred(
            frame.task_id, detections=result.detected, latency_ms=elapsed_ms,
            age_ms=(t0 - frame.captured_mono) * 1000,  # how old the frame was when inference began
        )
        self._pool.done(self.slot)
        alert = None
        decision = result.decision
        if decision.alert:
            backend = self._backend
            alert = make_alert(
                frame, decision,
                image_key=frame_key(route.alert_prefix, frame.captured_at, frame.seq) if route.save_alert_image
                else None,
                inference_ms=elapsed_ms, backend=backend.name, algorithm_id=backend.algorithm_id,
                algorithm_name=backend.algorithm_name, result=result.result,
            )
            self._metrics.alert_emitted(frame.task_id)
        key = route.frame_key(frame)
        if alert is not None or (key is not None and not result.frame_stored):
            self._writer.tell(StoreFrame(frame=frame, frame_key=key, alert=alert, jpeg=result.jpeg,
                                         frame_stored=result.frame_stored))

    def _move(self, frame: Frame, reason: str, elapsed_ms: float) -> None:
        """This backend could not infer ``frame``: retry it once on another group's slot, else count it failed."""
        self._pool.done(self.slot)
        if frame.retry_of:
            self._metrics.failed(frame.task_id, "failed after a retry", elapsed_ms)
            return
        log.debug("inference %s: retrying frame %s/%d elsewhere: %s", self.slot, frame.task_id, frame.seq, reason)
        self._metrics.busy(elapsed_ms)
        if self._pool.submit(msgspec.structs.replace(frame, retry_of=self._health.name)):
            self._health.retried()
