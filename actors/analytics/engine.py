"""One camera's analytics as plain state: detections in, event records out. No actor, no I/O, no clock.

``CameraAnalytics`` owns, for one camera (task): the tracker (``tracker.Tracker``), the task type's rule state
(``tasktypes``) and the event book (``events.EventBook``). Its owner, the camera's analytics actor, feeds it each
inferred sample in capture order and forwards the records; it is not thread-safe.

One ``step``:

1. keeps the detections of the labels the type needs (``TaskParams.labels``) that pass ``algorithm_params``'
   confidence and size filters (``regions.AlgorithmParams.keeps``); the others are not tracked at all;
2. updates the tracker at the sample's capture time ``t`` (monotonic seconds; ``t`` must not go back: reorder
   first);
3. runs the rule on the live tracks, keeps its new state;
4. lets the book turn the rule's conditions and instants into records; tracks gone from the tracker end the events
   bound to them.

The tracker's conf, unless given: ``TrackerConf`` with ``max_age_sec`` = the params' ``track_max_age_sec`` (by
default ``max(2 + 1.25 / min_fps, 2.5 / min_fps)``: neither one missed sample at the type's floor rate nor a 2 s
backlog ends a track), and ``label_max_age_sec`` = the params' ``track_max_age_by_label()`` (the still objects of
物品遗留 live longer than people).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from ..core.messages import Detection
from .events import DEFAULT_MAX_OPEN, BookStats, EventBook, EventRecord
from .tasks.base import Scene, TaskParams
from .tasktypes import TASK_TYPES
from .track import Track
from .tracker import Tracker, TrackerConf

__all__ = ["AnalyticsStats", "CameraAnalytics", "StepResult"]


class StepResult(NamedTuple):
    records: list[EventRecord]
    improved: list[str]
    """Ids of the events (and instants) whose best shot is this sample: keep its image for them."""
    tracks: list[Track]
    """Every live track after this sample (of the labels the type needs), ordered by id."""


class AnalyticsStats(msgspec.Struct, frozen=True):
    steps: int
    tracks: int
    """Live tracks after the last step."""
    events: BookStats


class CameraAnalytics:
    """Tracking, rule and events of one camera (see the module docstring)."""

    def __init__(self, task_id: str, task_type: str, params: TaskParams[Any],
                 tracker_conf: TrackerConf | None = None, *, max_open: int = DEFAULT_MAX_OPEN,
                 id_prefix: str | None = None) -> None:
        spec = TASK_TYPES.get(task_type)
        if spec is None:
            raise KeyError(f"no built-in rule for task type {task_type!r}; built in: {', '.join(TASK_TYPES)}")
        if not isinstance(params, spec.params_type):
            raise TypeError(f"{task_type} takes {spec.params_type.__name__} (tasktypes.decode_task_params), "
                            f"got {type(params).__name__}")
        self.task_id = task_id
        self.task_type = task_type
        self.params = params
        self._spec = spec
        self._labels = params.labels()
        self._filters = params.algorithm_params
        self._tracker = Tracker(TrackerConf(max_age_sec=params.track_max_age_sec,
                                            label_max_age_sec=params.track_max_age_by_label())
                                if tracker_conf is None else tracker_conf)
        self._state = spec.initial_state()
        custom = params.custom
        self._book = EventBook(task_id, task_type, alert_interval_sec=custom.alert_interval,
                               end_grace_sec=custom.end_grace_sec, max_open=max_open, id_prefix=id_prefix)
        self._steps = 0
        self._tracks = 0

    @property
    def min_fps(self) -> float:
        """The sampling floor the task asks for."""
        return self.params.min_fps

    @property
    def labels(self) -> frozenset[str]:
        return self._labels

    def step(self, detections: Sequence[Detection], t: float, width: int, height: int,
             sample: object = None) -> StepResult:
        """Feed one inferred sample: its detections, capture time ``t`` (monotonic s), frame size, and the
        caller's token for it (kept as the best shot's ``sample``). Raises ``ValueError`` if ``t`` goes back."""
        keeps, labels = self._filters.keeps, self._labels
        kept = [d for d in detections if d.label in labels and keeps(d)]
        tracks = self._tracker.update(kept, t).tracks
        outcome = self._spec.rule(self.params, self._state, Scene(tracks, t, width, height))
        self._state = outcome.state
        book = self._book.step(t, outcome.conditions, outcome.instants,
                               live_tracks={track.id for track in tracks}, sample=sample)
        self._steps += 1
        self._tracks = len(tracks)
        return StepResult(book.records, book.improved, list(tracks))

    def reset(self, t: float) -> list[EventRecord]:
        """Forget every track and the rule's state (after a reconnect); the open events end now."""
        self._tracker.reset()
        self._state = self._spec.initial_state()
        self._tracks = 0
        return self._book.close(t)

    def close(self, t: float) -> list[EventRecord]:
        """The camera stops: every open event ends now (one ``end`` record each)."""
        return self._book.close(t)

    def best_sample(self, event_id: str) -> object:
        return self._book.best_sample(event_id)

    def statistics(self) -> AnalyticsStats:
        return AnalyticsStats(steps=self._steps, tracks=self._tracks, events=self._book.statistics())
