"""物品遗留 (abandoned object): an object left still in a zone, with nobody near it, for long enough.

Objects are the tracks of ``custom_params.object_labels`` (default backpack, handbag, suitcase: COCO names, which
the 80-class detector gives). An object is *still* while its box centre stays within ``max(stationary_px,
stationary_ratio x its size)`` of where it came to rest (size: the box's longer side; defaults 15 px and 0.25); moving
farther re-anchors it and starts over. Where it came to rest is the mean of its matched centres since, not one
sample, and it has moved only when ``MOVED_SAMPLES`` (2) matched samples in a row lie beyond the radius: a box
jittering by 5 px strays 15 px from a single sample about once in a hundred samples, which at 10 fps would restart the
clock every few seconds and never let a bag be abandoned.

A person (a track of ``label``, coasting or not) is *within reach* of an object when the distance from the object's
box centre to the person's box (0 when the centre is inside it) is at most ``owner_distance_px``, or, unset,
``owner_distance_ratio x the object's size`` (default 2: a bag 40 px tall, 80 px). An object becomes *unattended*
(its clock starts) when it is in a zone (its foot point, the bottom centre) and nobody is within reach. It is
attended again (the clock stops) when it leaves the zones or someone within reach *stops* there: moves (the
tracker's velocity) slower than ``passing_sizes_per_sec`` of their own box sizes per second (default 0.2: 34 px/s
for a 170 px person; a slow stroll is twice that). So an owner walking off keeps the clock from starting until out
of reach, and a passer-by walking right past an abandoned bag does not restart it: in a busy hall someone passes
every bag every minute. A still object unattended for ``custom_params.abandon_sec`` (default 30 s) is an event
(rule ``abandoned_object``, subject = the object's track), in the first zone (conf order) holding it. It ends when
the object is removed (its track lost: at once) or someone stops within reach (after ``end_grace_sec``); a stranger
stopping by it counts as much as its owner: the rule cannot tell them apart.

A coasting object (the detector misses still objects often) keeps its state; how long it may go unseen before it
counts as removed is the tracker's ``track_max_age_sec``. ``algorithm_params`` size filters apply to objects too.
"""

from __future__ import annotations

import math
from typing import Annotated, NamedTuple

from msgspec import Meta

from ..events import Condition
from ..regions import distance_to_box
from ..track import Box, Track
from .base import (BACKLOG_HOLE_SEC, TIME_EPS_SEC, CustomParams, Labels, Outcome, Scene, Seconds, TaskParams,
                   condition_about, foot)

__all__ = ["AbandonedCustom", "AbandonedParams", "AbandonedState", "watch_objects"]

Pixels = Annotated[float, Meta(ge=0, le=100_000)]


class AbandonedCustom(CustomParams, kw_only=True):
    object_labels: Labels = ("backpack", "handbag", "suitcase")
    abandon_sec: Seconds = 30.0
    stationary_px: Pixels = 15.0
    stationary_ratio: Annotated[float, Meta(ge=0, le=100)] = 0.25
    owner_distance_px: Pixels | None = None
    owner_distance_ratio: Annotated[float, Meta(ge=0, le=100)] = 2.0
    passing_sizes_per_sec: Annotated[float, Meta(gt=0, le=100)] = 0.2
    """A person within reach moving faster than this (box sizes per second) is walking past: does not stop the clock
    of an object already unattended."""
    object_track_max_age_sec: Annotated[float, Meta(gt=0, le=3600)] | None = None
    """How long the tracker keeps an object's track it does not see (s); default ``OBJECT_TRACK_MAX_AGE`` at the
    floor rate. People's tracks keep ``track_max_age_sec``."""


class AbandonedParams(TaskParams[AbandonedCustom], kw_only=True):
    DEFAULT_MIN_FPS = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label in self.custom.object_labels:
            raise ValueError(f"{self.label!r} is the people's label, it cannot also be an object label "
                             "- at `$.algorithm_params.custom_params.object_labels`")

    def labels(self) -> frozenset[str]:
        return frozenset({self.label, *self.custom.object_labels})

    def track_max_age_by_label(self) -> dict[str, float]:
        value = self.custom.object_track_max_age_sec
        age = BACKLOG_HOLE_SEC + OBJECT_TRACK_MISSES / self.min_fps if value is None else value
        return dict.fromkeys(self.custom.object_labels, age)


#: Sample intervals at the floor rate an object's track outlives unseen, on top of a backlog (``BACKLOG_HOLE_SEC``):
#: 10 s at 0.5 fps, two missed samples in a row even when the intervals around them run long (up to 1.6 of the
#: nominal one at irregular rates). Objects stand still, so a long coast keeps a right prediction; at the people's
#: 5 s, a bag missed twice got a new track, its clock started over, and it was abandoned a second time.
OBJECT_TRACK_MISSES = 4.0

#: Matched samples in a row beyond the stillness radius that make an object moved (see the module docstring).
MOVED_SAMPLES = 2


class _Still(NamedTuple):
    anchor: tuple[float, float]
    """Box centre where it came to rest: the mean of the ``samples`` matched centres within the radius since."""
    samples: int
    strays: int
    """Matched samples in a row beyond the radius (not in the mean); ``MOVED_SAMPLES`` of them re-anchor it."""
    unattended_since: float | None


def _settle(still: _Still | None, track: Track, centre: tuple[float, float], radius: float) -> _Still:
    """The object's stillness after this sample: anchored anew, or the same rest (a coasting box changes nothing)."""
    if still is None:
        return _Still(centre, 1, 0, None)
    if not track.matched:
        return still
    (ax, ay), (cx, cy), n = still.anchor, centre, still.samples
    if math.hypot(cx - ax, cy - ay) > radius:
        if still.strays + 1 >= MOVED_SAMPLES:
            return _Still(centre, 1, 0, None)
        return still._replace(strays=still.strays + 1)
    return still._replace(anchor=((ax * n + cx) / (n + 1), (ay * n + cy) / (n + 1)), samples=n + 1, strays=0)


class AbandonedState(NamedTuple):
    objects: dict[int, _Still]
    """Per object track id."""


def initial_state() -> AbandonedState:
    return AbandonedState({})


def watch_objects(params: AbandonedParams, state: AbandonedState, scene: Scene) -> Outcome[AbandonedState]:
    custom = params.custom
    object_labels = frozenset(custom.object_labels)
    # (box, walking past), the box as the reach is measured to it.
    people = [(tr.box, math.hypot(*tr.velocity) > custom.passing_sizes_per_sec * _size(tr.box))
              for tr in scene.tracks if tr.label == params.label]
    zones = params.zones(scene.width, scene.height)
    objects: dict[int, _Still] = {}
    conditions: list[Condition] = []
    for track in scene.tracks:
        if track.label not in object_labels:
            continue
        x1, y1, x2, y2 = track.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        size = _size(track.box)
        radius = max(custom.stationary_px, custom.stationary_ratio * size)
        still = _settle(state.objects.get(track.id), track, (cx, cy), radius)
        point = foot(track, scene)
        zone = next((z for z in zones if z.holds(point)), None)
        reach = custom.owner_distance_ratio * size if custom.owner_distance_px is None else custom.owner_distance_px
        near = [passing for box, passing in people if distance_to_box(cx, cy, box) <= reach]
        if zone is None or (near and (still.unattended_since is None or not all(near))):
            objects[track.id] = still._replace(unattended_since=None)
            continue
        since = scene.t if still.unattended_since is None else still.unattended_since
        objects[track.id] = still._replace(unattended_since=since)
        if scene.t - since >= custom.abandon_sec - TIME_EPS_SEC:
            conditions.append(condition_about("abandoned_object", zone, [track], subject=str(track.id)))
    return Outcome(AbandonedState(objects), conditions, [])


def _size(box: Box) -> float:
    """The box's longer side, as the tracker measures sizes."""
    x1, y1, x2, y2 = box
    return max(x2 - x1, y2 - y1)
