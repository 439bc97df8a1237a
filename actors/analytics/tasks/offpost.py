"""人员离岗 (off-post): a post (zone) with fewer people than it needs, for long enough.

People are the tracks of ``label`` matched in at least ``CONFIRMED_HITS`` samples (coasting ones included: a guard
the detector misses for a sample has not left). A zone with fewer than ``custom_params.min_people`` (default 1) of
them in it (foot point) starts an absence; once the absence has lasted ``custom_params.absence_sec`` (default 30 s)
the zone has a region-wide event (rule ``off_post``, subject ``""``, ``counts`` = ``{label: people there}``). It
ends when enough people are back (after ``end_grace_sec``); a person counts from their second matched sample, so
one false detection neither ends an absence nor restarts its clock. An absence starts at the first sample that
shows it: at start-up an empty post alerts ``absence_sec`` after the first sample.

Zones: the enabled polygons/rectangles (each a post), or the whole frame without any area listed.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from msgspec import Meta

from ..events import Condition
from .base import CONFIRMED_HITS, TIME_EPS_SEC, CustomParams, Outcome, Scene, Seconds, TaskParams, condition_about, foot

__all__ = ["OffPostCustom", "OffPostParams", "OffPostState", "watch_posts"]


class OffPostCustom(CustomParams, kw_only=True):
    min_people: Annotated[int, Meta(ge=1, le=10_000)] = 1
    """People the post needs; fewer is an absence."""
    absence_sec: Seconds = 30.0


class OffPostParams(TaskParams[OffPostCustom], kw_only=True):
    DEFAULT_MIN_FPS = 0.5


class OffPostState(NamedTuple):
    absent_since: dict[str, float]
    """Per zone id with too few people: the first sample that showed it."""


def initial_state() -> OffPostState:
    return OffPostState({})


def watch_posts(params: OffPostParams, state: OffPostState, scene: Scene) -> Outcome[OffPostState]:
    custom = params.custom
    people = [tr for tr in scene.tracks if tr.label == params.label and tr.hits >= CONFIRMED_HITS]
    feet = [foot(tr, scene) for tr in people]
    absent_since: dict[str, float] = {}
    conditions: list[Condition] = []
    for zone in params.zones(scene.width, scene.height):
        there = [tr for tr, point in zip(people, feet, strict=True) if zone.holds(point)]
        if len(there) >= custom.min_people:
            continue
        since = absent_since[zone.id] = state.absent_since.get(zone.id, scene.t)
        if scene.t - since >= custom.absence_sec - TIME_EPS_SEC:
            conditions.append(condition_about("off_post", zone, there, counts={params.label: len(there)}))
    return Outcome(OffPostState(absent_since), conditions, [])
