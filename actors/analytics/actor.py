"""Analytics actor: one per camera. Inferred frames in, in capture order; tracks, events and alert records out.

Messages: ``Analyse`` (from any inference slot: a frame and what its backend found), ``Release`` (timer: frames held
behind a gap may go). For each frame, in ``seq`` order (``reorder.Reorder``: slots finish out of order; a frame that
never comes back is waited for at most ``REORDER_WAIT_SEC``):

1. ``engine.CameraAnalytics.step``: the task type's labels and ``algorithm_params`` filters, the tracker, the rule,
   the event book. A task type framewatch has no rule for, or a service that reports a count without boxes, gets
   the old system's rule instead: one region-wide event while the count is above 0 (``COUNT_RULE``).
2. Each event record becomes one alert (``alerts.records.make_alert``) with ``event_id`` / ``event_state``, sent
   through the writer (which stores its image, if it has a new one, and keeps one camera's records in order).

Images, one per event, two at most: a ``start`` record stores the frame that started the event; ``update`` records
point at it; the ``end`` record points at the event's best frame (the highest-scoring sample of its objects), stored
then under its own key if it is not the start frame. ``instant`` records (a line crossing) store their frame; count
reports carry none. The best frame of each open event is held by reference until the event ends (bounded by the
book's ``max_open``).

Thread: ``analytics:<task id>``. A crash loses the camera's tracks and open events (their ends are never sent; the
counted restart starts a new book, whose ids differ); unread frames are handed to the link, so the next incarnation
analyses them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pykka

from ..alerts.records import EventFields, make_alert
from ..core.messages import Analyse, AnalyticsMsg, Frame, Release, StoreFrame
from ..core.metrics import Metrics
from ..core.supervision import ChildActor, Link
from ..core.timers import Timers
from ..inference.slot import TaskRoute
from ..storage.store import frame_key
from .engine import CameraAnalytics
from .events import Condition, EventBook, EventRecord
from .reorder import Reorder
from .rules import Decision, RegionResult
from .tasks.base import TaskParams

log = logging.getLogger(__name__)

#: How long frames that finished behind a missing one wait for it (seconds): a slot's latency, with margin.
REORDER_WAIT_SEC = 1.0
#: Frames held behind a gap at most (with 2-8 slots, more means the missing one is not coming).
REORDER_MAX_HELD = 16
#: The old system's rule, for what framewatch cannot track: an event while the backend's count is above 0.
COUNT_RULE = "count>0"
#: Count reports (``tasks.counting``): records for dashboards, without an image.
_NO_IMAGE_RULES = frozenset({"count_report"})

__all__ = ["AnalyticsActor", "COUNT_RULE"]


class AnalyticsActor(ChildActor):
    def __init__(self, *, task_id: str, task_type: str, params: TaskParams[Any] | None, route: TaskRoute,
                 writer: Link, metrics: Metrics, timers: Timers, **child: Any) -> None:
        super().__init__(**child)
        self.thread_name = f"analytics:{task_id}"
        self.task_id = task_id
        self.task_type = task_type
        self._params = params
        self._route = route
        self._writer = writer
        self._metrics = metrics
        self._timers = timers
        self._engine: CameraAnalytics | None = None
        self._counts: EventBook | None = None
        self._reorder: Reorder[Analyse] = Reorder(max_wait_sec=REORDER_WAIT_SEC, max_held=REORDER_MAX_HELD)
        self._release_due = False
        self._last_t = float("-inf")
        self._last: Analyse | None = None  # the last frame analysed: the ``end`` records at stop are made with it
        self._images: dict[str, tuple[str | None, float]] = {}  # event id -> (its stored image key, that frame's t)
        self._best: dict[str, Analyse] = {}  # event id -> the sample of its best shot (held until the event ends)

    def setup(self) -> None:
        if self._params is not None:
            self._engine = CameraAnalytics(self.task_id, self.task_type, self._params)
            custom = self._params.custom
            self._counts = EventBook(self.task_id, self.task_type, alert_interval_sec=custom.alert_interval,
                                     end_grace_sec=custom.end_grace_sec)
        else:
            self._counts = EventBook(self.task_id, self.task_type)

    def on_receive(self, message: AnalyticsMsg | Any) -> None:
        match message:
            case Analyse():
                ready, late = self._reorder.push(message.frame.seq, message, time.monotonic())
                if late:
                    self._metrics.analytics_late(self.task_id)
                for item in ready:
                    self._analyse(item)
                self._schedule_release()
            case Release():
                self._release_due = False
                for item in self._reorder.release(time.monotonic()):
                    self._analyse(item)
                self._schedule_release()
            case _:
                log.warning("analytics %s: unexpected message %r", self.task_id, type(message).__name__)

    def on_stop(self) -> None:
        for item in self._reorder.flush():
            self._analyse(item)
        last = self._last
        if last is not None:
            t = self._last_t
            records = (self._engine.close(t) if self._engine is not None else []) + (
                self._counts.close(t) if self._counts is not None else [])
            for record in records:
                self._emit(record, last)

    def on_crash(self, exc: BaseException) -> None:
        self.requeue_unread()

    def _schedule_release(self) -> None:
        if self._reorder.held and not self._release_due:
            self._release_due = True
            self._timers.send_after(REORDER_WAIT_SEC / 4, self.actor_ref, Release())

    # --- one frame ---

    def _analyse(self, msg: Analyse) -> None:
        frame = msg.frame
        t = max(frame.captured_mono, self._last_t)  # reordered by seq; a source's clock never goes back, but be sure
        self._last_t, self._last = t, msg
        h, w = frame.image.shape[:2]
        records: list[EventRecord] = []
        improved: list[str] = []
        if self._engine is not None:
            step = self._engine.step(msg.detections, t, w, h)
            records += step.records
            improved += step.improved
        counted = self._count_only(msg, t)
        records += counted.records
        improved += counted.improved
        for event_id in improved:
            self._best[event_id] = msg
        for record in records:
            self._emit(record, msg)

    def _count_only(self, msg: Analyse, t: float) -> Any:
        """The old system's rule where tracking cannot apply: no built-in rule for the type, or a service that
        counted without boxes."""
        assert self._counts is not None
        active = msg.count > 0 and not msg.detections if self._engine is not None else (
            msg.count > 0 or bool(msg.detections))
        conditions = [Condition(rule=COUNT_RULE, counts={"count": msg.count or len(msg.detections)},
                                detections=tuple(msg.detections),
                                score=max((d.score for d in msg.detections), default=0.0))] if active else []
        return self._counts.step(t, conditions, sample=None)

    # --- one record ---

    def _emit(self, record: EventRecord, current: Analyse) -> None:
        """Make the record's alert and send it through the writer, with the image it needs stored (if any)."""
        state = record.event_state
        source, key, stored = current, None, False
        keeps_image = self._route.save_alert_image and record.rule not in _NO_IMAGE_RULES
        if state == "start" or state == "instant":
            key = self._image_key(current.frame) if keeps_image else None
            if state == "start":
                self._images[record.event_id] = (key, current.frame.captured_mono)
        else:  # update, end: the start image, or (end) the best frame when it is a later one
            key, shown_at = self._images.get(record.event_id, (None, 0.0))
            stored = key is not None
            best = self._best.get(record.event_id)
            if state == "end":
                self._images.pop(record.event_id, None)
                self._best.pop(record.event_id, None)
                if keeps_image and best is not None and best.frame.captured_mono > shown_at:
                    source, key, stored = best, self._image_key(best.frame), False
        if state == "instant":
            self._best.pop(record.event_id, None)
        alert = make_alert(
            source.frame, _decision(record), image_key=key, inference_ms=source.inference_ms, backend=source.backend,
            algorithm_id=source.algorithm_id, algorithm_name=source.algorithm_name, result=source.result,
            event=_event_fields(record, current.frame),
        )
        try:  # counted emitted once the alert actor has journaled it
            self._writer.tell(StoreFrame(frame=source.frame, frame_key=None, alert=alert, image_stored=stored))
        except pykka.ActorDeadError:
            self._metrics.alerts_lost(1)

    def _image_key(self, frame: Frame) -> str:
        return frame_key(self._route.alert_prefix, frame.captured_at, frame.seq)


def _decision(record: EventRecord) -> Decision:
    """What the alert reports: the record's rule, counts and objects (each in the record's region)."""
    detections = list(record.detections)
    if not record.region_id:
        return Decision(alert=True, rule=record.rule, counts=dict(record.counts), detections=detections)
    region = RegionResult(record.region_id, record.region_name, len(detections), True)
    return Decision(alert=True, rule=record.rule, counts=dict(record.counts), detections=detections,
                    regions=[region], detection_regions=[record.region_id] * len(detections))


def _event_fields(record: EventRecord, frame: Frame) -> EventFields:
    """The record's event, its capture times turned into wall clock through ``frame`` (a sample of the same camera)."""
    offset = frame.captured_at - frame.captured_mono
    return EventFields(
        event_id=record.event_id, event_state=record.event_state, region_id=record.region_id,
        region_name=record.region_name, track_ids=record.track_ids, started_at=record.started_at + offset,
        ended_at=None if record.ended_at is None else record.ended_at + offset,
    )
