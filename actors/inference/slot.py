"""Inference actor: one slot of the pool. Owns one backend: the local detector, or a connection to a remote service.

Messages: ``Frame`` (from the pool). For each frame: ask the backend what it finds (the local backend runs the
detector its task's route names; the remote one calls an algorithm service, see ``inference.remote``), count the
result, free the slot, hand the frame to the writer if plain frames are stored, and send it with its detections to
the camera's analytics actor (``analytics.actor``: tracking, events, alerts). Storage, tracking and alert delivery
happen off this thread, so a slow disk or broker never slows inference.

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
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec
import pykka

from ..core.messages import Analyse, Detection, Frame, StoreFrame
from ..core.metrics import Metrics
from ..core.supervision import ChildActor, Link
from ..inference.detectors import Detector
from ..inference.pool import InferencePool
from ..inference.registry import Health
from ..storage.store import frame_key

log = logging.getLogger(__name__)


class TaskRoute:
    """What inference needs to know about a task: which local detector serves it, its conf, where its frames and
    alert images go, and its analytics (where every inferred frame goes next)."""

    __slots__ = ("detector", "frame_prefix", "alert_prefix", "algo_config", "algo_config_url", "save_alert_image",
                 "analytics")

    def __init__(self, detector: str | None, frame_prefix: str | None, alert_prefix: str,
                 algo_config: Mapping[str, Any] | None = None, *, save_alert_image: bool = True,
                 analytics: Link | None = None) -> None:
        self.detector = detector  # the local detector kind serving the task ("person", "coco"), None: services only
        self.save_alert_image = save_alert_image  # False: this task's alerts go out without an image
        self.frame_prefix = frame_prefix  # None: do not store plain frames (save_only_with_detection)
        self.alert_prefix = alert_prefix
        self.algo_config = dict(algo_config or {})  # sent unchanged to remote services
        # Where a remote service can fetch algo_config, called per request (a presigned URL is signed afresh); set
        # once storage is connected (``System.connect``, ``remote.publish_algo_config``). "" until then.
        self.algo_config_url: Callable[[], str] = lambda: ""
        self.analytics = analytics  # the camera's analytics actor (tracking, events, alerts); None: none (tests)

    def frame_key(self, frame: Frame) -> str | None:
        return frame_key(self.frame_prefix, frame.captured_at, frame.seq) if self.frame_prefix else None


class Inferred(msgspec.Struct, frozen=True):
    """A backend's answer for one frame: what it found, not yet an alert (the camera's analytics decides that)."""

    detections: list[Detection]
    detected: bool  # anything found at all (the ``with_detections`` counter): a box, or a count above 0
    count: int = 0  # a service's count (``total_count``...), for services that report one without boxes
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
        """Detect in ``frame``; raises ``BackendUnavailable``, or anything else for a bug (the actor crashes)."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """The in-process detectors, one per kind the tasks need (the person detector, the 80-class one); each task's
    route names its kind."""

    def __init__(self, detectors: Mapping[str, Detector]) -> None:
        self._detectors = dict(detectors)
        names = sorted({d.name for d in self._detectors.values()})
        self.name = self.algorithm_id = self.algorithm_name = "+".join(names) or "none"

    def infer(self, frame: Frame, route: TaskRoute) -> Inferred:
        detector = self._detectors.get(route.detector) if route.detector is not None else None
        if detector is None:
            raise BackendUnavailable(f"no built-in detector serves task type {frame.task_type}")
        detections = detector.detect(frame.image)
        return Inferred(detections=detections, detected=bool(detections))

    def detector_name(self, route: TaskRoute) -> str:
        detector = self._detectors.get(route.detector) if route.detector is not None else None
        return detector.name if detector is not None else self.name

    def close(self) -> None:
        for detector in self._detectors.values():
            detector.close()
        self._detectors.clear()


def local_backend(detector_factories: Mapping[str, Callable[[], Detector]]) -> Callable[[], Backend]:
    """A factory of local backends holding one detector of each kind (created on the slot's thread; a detector that
    cannot load fails the slot's start). A detector created before another one failed is closed."""

    def backend() -> Backend:
        made: dict[str, Detector] = {}
        try:
            for kind, factory in detector_factories.items():
                made[kind] = factory()
        except BaseException:
            for detector in made.values():
                detector.close()
            raise
        return LocalBackend(made)

    return backend


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
        backend = self._backend
        name = backend.detector_name(route) if isinstance(backend, LocalBackend) else backend.name
        key = route.frame_key(frame)
        if key is not None and not result.frame_stored:
            self._writer.tell(StoreFrame(frame=frame, frame_key=key, jpeg=result.jpeg))
        if route.analytics is None:
            return
        try:
            route.analytics.tell(Analyse(
                frame=frame, detections=result.detections, count=result.count, backend=name,
                algorithm_id=name if isinstance(backend, LocalBackend) else backend.algorithm_id,
                algorithm_name=name if isinstance(backend, LocalBackend) else backend.algorithm_name,
                inference_ms=elapsed_ms, result=result.result,
            ))
        except pykka.ActorDeadError:
            pass  # the camera's analytics was given up (reported): its frames are inferred without events

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
