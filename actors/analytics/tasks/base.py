"""What every task type shares: its parameters' frame, the zones it watches, and the shape of its rule.

Parameters come from the task's ``algo_config`` in the old format (``regions`` + ``algorithm_params``, see
``..regions``); a task type's own knobs live in ``algorithm_params.custom_params``, as the old console writes them.
The old format is open: unknown keys are accepted everywhere (they stay in ``algo_config`` for remote services).
Every type's ``custom_params`` accepts these (``CustomParams``):

- ``alert_interval`` (s, default 0): seconds between ``update`` records of a long event; 0: start and end only.
- ``end_grace_sec`` (s, default 1.0): how long a condition may lapse before its event ends (a person stepping out of
  a zone and back within it continues the same event). Events bound to a track end at once when it is lost.
- ``min_fps`` (samples/s): the sampling floor the type asks backpressure for; default per type (``DEFAULT_MIN_FPS``).
- ``track_max_age_sec`` (s, framewatch's): how long the tracker keeps a track it does not see; default
  ``max(BACKLOG_HOLE_SEC + 1.25 / min_fps, 2.5 / min_fps)`` (``BACKLOG_HOLE_SEC``: 2 s): a track survives one
  missed sample at the floor rate, and a backlog holding the samples back for 2 s on top of an interval. Longer
  would keep ghosts: a coasting track holds its events (a person gone for 3.5 s at 1 fps is a new event when back)
  and may take someone else's detection. A type may give the tracks of some labels a lifetime of their own
  (``TaskParams.track_max_age_by_label``: 物品遗留's objects, which stand still).
- ``track_enabled``, ``track_max_age`` (the old system's, frames): accepted and not used. Every rule here works on
  tracks, so tracking cannot be turned off; and a frame count means no fixed time when samples arrive at the rate
  backpressure grants, so the tracker ages tracks in seconds (``track_max_age_sec``).

A rule is a pure function ``rule(params, state, scene) -> Outcome``: the previous state (never modified), the
sample's tracks and capture time, and out come the new state, the conditions holding now (``..events.Condition``)
and the instants that happened (``..events.Instant``); the event book makes events of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, ClassVar, Generic, NamedTuple, TypeVar

import msgspec
from msgspec import Meta

from ...core.messages import Detection
from ..events import TIME_EPS_SEC, Condition, Instant
from ..regions import AlgorithmParams, RegionConfig, foot_point
from ..track import Track

__all__ = [
    "BACKLOG_HOLE_SEC", "CONFIRMED_HITS", "TIME_EPS_SEC", "AlgorithmParamsOf", "CustomParams", "Labels", "Outcome",
    "Rule", "Scene", "Seconds", "TaskParams", "Zone", "condition_about", "detection_of", "foot",
]

#: A pause in the samples a camera gets that is not its rate's doing: inference busy with other cameras (a backlog)
#: delays a camera's samples by a second or two now and then. The default track lifetime covers one on top of a miss.
BACKLOG_HOLE_SEC = 2.0

#: Samples a track must have been matched in before the rules that count people trust it (off-post, counting): one
#: false detection in one sample must not end an absence or make a crowd.
CONFIRMED_HITS = 2

Seconds = Annotated[float, Meta(ge=0, le=86_400)]
"""A duration in seconds of capture time, at most a day (which also refuses TOML's ``inf`` and ``nan``)."""

Labels = Annotated[tuple[Annotated[str, Meta(min_length=1)], ...], Meta(min_length=1)]

C = TypeVar("C", bound="CustomParams")
S = TypeVar("S")


class _Open(msgspec.Struct, frozen=True, kw_only=True):
    """Unknown keys are accepted and ignored (the old format is open)."""


class CustomParams(_Open, kw_only=True):
    """``algorithm_params.custom_params`` as every task type reads it (see the module docstring)."""

    alert_interval: Seconds = 0.0
    end_grace_sec: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    min_fps: Annotated[float, Meta(ge=0.01, le=60)] | None = None
    track_max_age_sec: Annotated[float, Meta(gt=0, le=3600)] | None = None
    track_enabled: bool = True
    track_max_age: Annotated[int, Meta(ge=0)] | None = None


class AlgorithmParamsOf(AlgorithmParams, Generic[C], kw_only=True):
    """``algorithm_params``: the detection filters, and the type's ``custom_params``."""

    custom_params: C


class TaskParams(RegionConfig, Generic[C], kw_only=True):
    """A task type's decoded ``algo_config``. Built by ``..tasktypes.decode_task_params`` (which fills in a missing
    ``algorithm_params`` / ``custom_params`` with their defaults), then trusted."""

    algorithm_params: AlgorithmParamsOf[C]
    label: str = "person"
    """The label of the people the rule looks at."""

    DEFAULT_MIN_FPS: ClassVar[float] = 1.0

    @property
    def custom(self) -> C:
        return self.algorithm_params.custom_params

    @property
    def min_fps(self) -> float:
        """The sampling floor: ``custom_params.min_fps``, else the type's default."""
        value = self.custom.min_fps
        return self.DEFAULT_MIN_FPS if value is None else value

    @property
    def track_max_age_sec(self) -> float:
        value = self.custom.track_max_age_sec
        return max(BACKLOG_HOLE_SEC + 1.25 / self.min_fps, 2.5 / self.min_fps) if value is None else value

    def track_max_age_by_label(self) -> dict[str, float]:
        """Lifetimes of the labels whose tracks live other than ``track_max_age_sec`` (the tracker's
        ``label_max_age_sec``); none here, a type with things that stand still has its own."""
        return {}

    def labels(self) -> frozenset[str]:
        """The detection labels the rule needs tracked; detections of other labels are not tracked at all."""
        return frozenset({self.label})

    def zones(self, width: int, height: int) -> list[Zone]:
        """The enabled polygons and rectangles; without any area listed, the whole frame (region id ``""``).

        Areas listed but all disabled give no zone: the operator switched them off, and falling back to the whole
        frame would alert on what they turned off."""
        if not self.has_areas():
            return [Zone("", "", None)]
        return [Zone(a.id, a.name, a.contains) for a in self.enabled_areas()]


class Zone(NamedTuple):
    """A place a rule watches: an enabled area, or the whole frame."""

    id: str
    name: str
    contains: Callable[[float, float], bool] | None
    """Whether a point (pixels) is in the zone; ``None``: the whole frame holds every point."""

    def holds(self, point: tuple[float, float]) -> bool:
        return self.contains is None or self.contains(*point)


class Scene(NamedTuple):
    """One sample as the rules see it."""

    tracks: Sequence[Track]
    """Every live track of the labels the type needs (matched in this sample, or coasting)."""
    t: float
    """Capture time, monotonic seconds."""
    width: int
    height: int


class Outcome(NamedTuple, Generic[S]):
    state: S
    conditions: list[Condition]
    instants: list[Instant]


Rule = Callable[[TaskParams, S, Scene], Outcome[S]]


def foot(track: Track, scene: Scene) -> tuple[float, float]:
    """Where a track stands (bottom centre of its box), kept inside the frame (``..regions.foot_point``)."""
    return foot_point(track.box, scene.width, scene.height)  # type: ignore[arg-type]  # float boxes work alike


def detection_of(track: Track) -> Detection | None:
    """The track's detection in this sample, or ``None`` while it coasts (its box is then only a prediction)."""
    if not track.matched:
        return None
    x1, y1, x2, y2 = track.box
    return Detection(track.label, track.score, (round(x1), round(y1), round(x2), round(y2)))


def condition_about(rule: str, zone: Zone, tracks: Sequence[Track], *, subject: str = "",
                    counts: dict[str, int] | None = None) -> Condition:
    """A condition about ``tracks`` in ``zone``, with their detections in this sample and the best score."""
    detections = tuple(d for d in map(detection_of, tracks) if d is not None)
    return Condition(rule=rule, region_id=zone.id, region_name=zone.name, subject=subject,
                     track_ids=tuple(tr.id for tr in tracks), detections=detections,
                     score=max((d.score for d in detections), default=0.0), counts=counts or {})
