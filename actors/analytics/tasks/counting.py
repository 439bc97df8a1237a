"""人数统计 (people counting): people per zone, an event while a zone is over its limit, periodic count reports.

People are the tracks of ``label`` (default ``person``) matched in at least ``CONFIRMED_HITS`` samples, coasting
ones included (a person the detector misses for a sample is still there); each counts in every zone holding its foot
point. Zones: the enabled polygons/rectangles, or the whole frame without any area listed.

A zone is over its limit, as in the old system and in framewatch's per-frame rule (``..rules``), when:

- its ``properties.max_count`` is set and more people than that stand in it (``count > max_count``: "max" is the
  most people allowed, so ``max_count`` people is still fine);
- otherwise, when at least ``count_threshold`` people do (top-level key of framewatch's form, default 1).

While over, the zone has one region-wide event (rule ``people_count``, subject ``""``, ``counts`` = ``{label: n}``).

Every ``custom_params.count_interval_sec`` seconds (default 60; 0: never) an ``instant`` record (rule
``count_report``, region ``""``) gives ``counts`` = ``{label: people in the frame, <area id>: people in it, ...}``,
the shape of the per-frame rule's ``Decision.counts``. (``custom_params.count_mode``, named in the old
documentation without a meaning, is accepted and not used.) Reports fall on a grid started at the first sample: the first
sample at or after each multiple of the interval reports, and a long gap gives one report, not a burst.
"""

from __future__ import annotations

import math
from typing import Annotated, NamedTuple

from msgspec import Meta

from ..events import Condition, Instant
from .base import (CONFIRMED_HITS, TIME_EPS_SEC, CustomParams, Outcome, Scene, Seconds, TaskParams, condition_about,
                   detection_of, foot)

__all__ = ["CountingCustom", "CountingParams", "CountingState", "count_people"]

#: A count name of the per-frame intrusion rule (``..rules.IN_ROI``), refused as a region id there too: one conf may
#: serve both rules while they coexist. (Not imported: ``..rules`` may come to import the task types.)
_IN_ROI = "in_roi"


class CountingCustom(CustomParams, kw_only=True):
    count_interval_sec: Seconds = 60.0
    """Seconds between count reports; 0: no reports."""


class CountingParams(TaskParams[CountingCustom], kw_only=True):
    count_threshold: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    """People at which a zone without ``max_count`` is over its limit (``count >= count_threshold``); unset: 1."""

    DEFAULT_MIN_FPS = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, region in enumerate(self.regions):  # area ids are keys of the reports' counts, beside the label
            if region.id in (self.label, _IN_ROI):
                raise ValueError(f"region id {region.id!r} is also a count name of the rule; rename the region "
                                 f"- at `$.regions[{i}].id`")

    @property
    def threshold(self) -> int:
        return 1 if self.count_threshold is None else self.count_threshold


class CountingState(NamedTuple):
    next_report_at: float | None = None
    """Capture time of the next count report; ``None`` before the first sample."""


def initial_state() -> CountingState:
    return CountingState()


def count_people(params: CountingParams, state: CountingState, scene: Scene) -> Outcome[CountingState]:
    people = [tr for tr in scene.tracks if tr.label == params.label and tr.hits >= CONFIRMED_HITS]
    feet = [foot(tr, scene) for tr in people]
    limits = {a.id: a.properties.max_count for a in params.enabled_areas()}
    counts: dict[str, int] = {params.label: len(people)}
    conditions: list[Condition] = []
    for zone in params.zones(scene.width, scene.height):
        inside = [tr for tr, point in zip(people, feet, strict=True) if zone.holds(point)]
        if zone.id:
            counts[zone.id] = len(inside)
        limit = limits.get(zone.id)
        if (len(inside) > limit) if limit is not None else (len(inside) >= params.threshold):
            conditions.append(condition_about("people_count", zone, inside, counts={params.label: len(inside)}))

    instants: list[Instant] = []
    interval = params.custom.count_interval_sec
    next_at = state.next_report_at
    if interval > 0 and (next_at is None or scene.t >= next_at - TIME_EPS_SEC):
        detections = tuple(d for d in map(detection_of, people) if d is not None)
        instants.append(Instant(rule="count_report", track_ids=tuple(tr.id for tr in people), detections=detections,
                                score=max((d.score for d in detections), default=0.0), counts=counts))
        if next_at is None:
            next_at = scene.t
        next_at += interval * (math.floor((scene.t - next_at + TIME_EPS_SEC) / interval) + 1)
    return Outcome(CountingState(next_at), conditions, instants)
