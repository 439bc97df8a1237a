"""物品遗留 (abandoned object): an object left still in a zone, with nobody near it, for long enough.

Objects are the tracks of ``custom_params.object_labels`` (default backpack, handbag, suitcase: COCO names, which
the 80-class detector gives). An object is *still* while its box centre stays within ``max(stationary_px,
stationary_ratio x its size)`` of where it came to rest (size: the box's longer side; defaults 15 px and 0.25); moving
farther re-anchors it and starts over. It is *unattended* while it is in a zone (its foot point, the bottom centre)
and no person (a track of ``label``, coasting or not) is within reach: the distance from the object's box centre to
the person's box (0 when the centre is inside it) is at most ``owner_distance_px``, or, unset, ``owner_distance_ratio
x the object's size`` (default 2: a bag 40 px tall, 80 px). A still object unattended for
``custom_params.abandon_sec`` (default 30 s) is an event (rule ``abandoned_object``, subject = the object's track),
in the first zone (conf order) holding it. It ends when the object is removed (its track lost: at once) or someone is
within reach again (after ``end_grace_sec``); anyone coming close restarts the clock, passers-by included: the rule
cannot tell an owner from a stranger.

A coasting object (the detector misses still objects often) keeps its state; how long it may go unseen before it
counts as removed is the tracker's ``track_max_age_sec``. ``algorithm_params`` size filters apply to objects too.
"""

from __future__ import annotations

import math
from typing import Annotated, NamedTuple

from msgspec import Meta

from ..events import Condition
from ..regions import distance_to_box
from .base import TIME_EPS_SEC, CustomParams, Labels, Outcome, Scene, Seconds, TaskParams, condition_about, foot

__all__ = ["AbandonedCustom", "AbandonedParams", "AbandonedState", "watch_objects"]

Pixels = Annotated[float, Meta(ge=0, le=100_000)]


class AbandonedCustom(CustomParams, kw_only=True):
    object_labels: Labels = ("backpack", "handbag", "suitcase")
    abandon_sec: Seconds = 30.0
    stationary_px: Pixels = 15.0
    stationary_ratio: Annotated[float, Meta(ge=0, le=100)] = 0.25
    owner_distance_px: Pixels | None = None
    owner_distance_ratio: Annotated[float, Meta(ge=0, le=100)] = 2.0


class AbandonedParams(TaskParams[AbandonedCustom], kw_only=True):
    DEFAULT_MIN_FPS = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label in self.custom.object_labels:
            raise ValueError(f"{self.label!r} is the people's label, it cannot also be an object label "
                             "- at `$.algorithm_params.custom_params.object_labels`")

    def labels(self) -> frozenset[str]:
        return frozenset({self.label, *self.custom.object_labels})


class _Still(NamedTuple):
    anchor: tuple[float, float]
    """Box centre where it came to rest."""
    unattended_since: float | None


class AbandonedState(NamedTuple):
    objects: dict[int, _Still]
    """Per object track id."""


def initial_state() -> AbandonedState:
    return AbandonedState({})


def watch_objects(params: AbandonedParams, state: AbandonedState, scene: Scene) -> Outcome[AbandonedState]:
    custom = params.custom
    object_labels = frozenset(custom.object_labels)
    people = [tr.box for tr in scene.tracks if tr.label == params.label]
    zones = params.zones(scene.width, scene.height)
    objects: dict[int, _Still] = {}
    conditions: list[Condition] = []
    for track in scene.tracks:
        if track.label not in object_labels:
            continue
        x1, y1, x2, y2 = track.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        size = max(x2 - x1, y2 - y1)
        still = state.objects.get(track.id)
        if still is None or (track.matched and math.hypot(cx - still.anchor[0], cy - still.anchor[1])
                             > max(custom.stationary_px, custom.stationary_ratio * size)):
            still = _Still((cx, cy), None)
        point = foot(track, scene)
        zone = next((z for z in zones if z.holds(point)), None)
        reach = custom.owner_distance_ratio * size if custom.owner_distance_px is None else custom.owner_distance_px
        if zone is None or any(distance_to_box(cx, cy, box) <= reach for box in people):
            objects[track.id] = still._replace(unattended_since=None)
            continue
        since = scene.t if still.unattended_since is None else still.unattended_since
        objects[track.id] = still._replace(unattended_since=since)
        if scene.t - since >= custom.abandon_sec - TIME_EPS_SEC:
            conditions.append(condition_about("abandoned_object", zone, [track], subject=str(track.id)))
    return Outcome(AbandonedState(objects), conditions, [])
