"""A track staying in a zone long enough: 区域入侵 (intrusion), 徘徊检测 (loitering), 吸烟检测 (smoking), 安全帽检测
(helmet). One rule, four parameter sets: which labels are watched and how long a stay must last.

A track of a watched label whose foot point (bottom centre of its box) is in a zone starts a *stay*. The stay
becomes a condition, i.e. an event, once it has lasted the type's persistence (capture time since the first sample
inside) **and** has been seen inside in ``custom_params.min_samples`` matched samples (default 2), so a single
sample, however long the gap after it, never makes an event. One event per (track, zone): a person in two
overlapping zones has two. The event ends when the track has been out of the zone for ``end_grace_sec`` (default
1 s; a stay that lapses less than that continues, time outside included) or at once when the track is lost.
A track coasting through a missed detection keeps the state of its last match (its box is only a prediction),
and its stay does not grow while it coasts: a stay lasts from its first to its last *matched* sample inside. Were
time coasting counted, a false detection seen in two samples would become an event once its track had coasted for
the persistence (吸烟检测: 3 s, shorter than a track lives at 1 fps).

Zones: the enabled polygons/rectangles, or the whole frame without any area listed (region id ``""``); intrusion
also takes framewatch's ``roi`` (polygon in fractions of the frame, region id ``"roi"``), not combinable with areas.

Per type:

- 区域入侵, people (``label``), persistence ``custom_params.min_inside_sec`` (default 0.5 s): the short inertia that
  keeps a flicker from being an intrusion. Rule ``intrusion``.
- 徘徊检测, people, ``custom_params.min_dwell_time`` (default 10 s; the old documentation's example sets 3).
  Rule ``loitering``. Seconds of capture time, not samples: the event comes at the same time at any sampling rate,
  give or take one sample interval.
- 吸烟检测, the detections of ``custom_params.violation_labels`` (default ``["smoking"]``) that an algorithm service
  returns, ``custom_params.smoking_duration_threshold`` (default 3 s). Rule ``smoking``.
- 安全帽检测, ``violation_labels`` (default ``["no_helmet"]``), ``custom_params.alert_delay`` (default 2 s).
  Rule ``no_helmet``.

For the service-served labels the zone test uses the bottom centre of the box too, whatever the service boxes (a
person, a head): draw zones where those points fall.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, NamedTuple, TypeVar

from msgspec import Meta

from ..events import Condition
from ..regions import point_in_polygon
from .base import TIME_EPS_SEC, CustomParams, Labels, Outcome, Scene, Seconds, TaskParams, Zone, condition_about, foot

__all__ = [
    "HelmetCustom", "HelmetParams", "IntrusionCustom", "IntrusionParams", "LoiteringCustom", "LoiteringParams",
    "PresenceCustom", "PresenceParams", "PresenceState", "SmokingCustom", "SmokingParams", "stay_in_zone",
]

Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]


class PresenceCustom(CustomParams, kw_only=True):
    min_samples: Annotated[int, Meta(ge=1, le=1000)] = 2
    """Matched samples inside before a stay can become an event."""


class IntrusionCustom(PresenceCustom, kw_only=True):
    min_inside_sec: Seconds = 0.5


class LoiteringCustom(PresenceCustom, kw_only=True):
    min_dwell_time: Seconds = 10.0


class SmokingCustom(PresenceCustom, kw_only=True):
    violation_labels: Labels = ("smoking",)
    smoking_duration_threshold: Seconds = 3.0


class HelmetCustom(PresenceCustom, kw_only=True):
    violation_labels: Labels = ("no_helmet",)
    alert_delay: Seconds = 2.0


P = TypeVar("P", bound=PresenceCustom)


class PresenceParams(TaskParams[P], kw_only=True):
    """What ``stay_in_zone`` needs of a type: the rule's name and the stay's persistence."""

    RULE: ClassVar[str] = ""
    DEFAULT_MIN_FPS = 2.0

    @property
    def persistence_sec(self) -> float:
        raise NotImplementedError


class IntrusionParams(PresenceParams[IntrusionCustom], kw_only=True):
    roi: Annotated[tuple[tuple[Fraction, Fraction], ...], Meta(min_length=3)] | None = None
    """framewatch's form: polygon vertices as (x, y) fractions of the frame, for a conf without areas."""

    RULE = "intrusion"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.roi is not None and self.has_areas():
            raise ValueError("roi (fractions of the frame) and polygon/rectangle regions (pixels) cannot be combined; "
                             "keep one - at `$.roi`")

    @property
    def persistence_sec(self) -> float:
        return self.custom.min_inside_sec

    def zones(self, width: int, height: int) -> list[Zone]:
        roi = self.roi
        if roi is None:
            return super().zones(width, height)
        return [Zone("roi", "", lambda x, y: point_in_polygon(x / width, y / height, roi))]


class LoiteringParams(PresenceParams[LoiteringCustom], kw_only=True):
    RULE = "loitering"

    @property
    def persistence_sec(self) -> float:
        return self.custom.min_dwell_time


class SmokingParams(PresenceParams[SmokingCustom], kw_only=True):
    RULE = "smoking"
    DEFAULT_MIN_FPS = 1.0

    @property
    def persistence_sec(self) -> float:
        return self.custom.smoking_duration_threshold

    def labels(self) -> frozenset[str]:
        return frozenset(self.custom.violation_labels)


class HelmetParams(PresenceParams[HelmetCustom], kw_only=True):
    RULE = "no_helmet"
    DEFAULT_MIN_FPS = 1.0

    @property
    def persistence_sec(self) -> float:
        return self.custom.alert_delay

    def labels(self) -> frozenset[str]:
        return frozenset(self.custom.violation_labels)


class _Stay(NamedTuple):
    since: float
    """Capture time of its first sample inside."""
    seen_until: float
    """Capture time of its last matched sample inside: the stay has lasted ``seen_until - since``."""
    samples: int
    """Matched samples inside."""
    inside: bool
    """At its last matched sample."""
    out_since: float | None
    """First sample outside since it was last inside; None while inside."""


class PresenceState(NamedTuple):
    stays: dict[tuple[int, str], _Stay]
    """Per (track id, zone id)."""


def initial_state() -> PresenceState:
    return PresenceState({})


def stay_in_zone(params: PresenceParams[PresenceCustom], state: PresenceState,
                 scene: Scene) -> Outcome[PresenceState]:
    labels = params.labels()
    zones = params.zones(scene.width, scene.height)
    t, need = scene.t, params.persistence_sec
    custom = params.custom
    stays: dict[tuple[int, str], _Stay] = {}
    conditions: list[Condition] = []
    for track in scene.tracks:
        if track.label not in labels:
            continue
        point = foot(track, scene) if track.matched else None
        for zone in zones:
            key = (track.id, zone.id)
            stay = state.stays.get(key)
            if point is None:
                pass  # coasting: as at its last match
            elif zone.holds(point):
                stay = (_Stay(t, t, 1, True, None) if stay is None
                        else _Stay(stay.since, t, stay.samples + 1, True, None))
            elif stay is not None:
                out_since = t if stay.out_since is None else stay.out_since
                lapsed = t - out_since >= custom.end_grace_sec - TIME_EPS_SEC
                stay = None if lapsed else stay._replace(inside=False, out_since=out_since)
            if stay is None:
                continue
            stays[key] = stay
            lasted = stay.seen_until - stay.since  # not to t: time coasting is no proof of a stay
            if stay.inside and stay.samples >= custom.min_samples and lasted >= need - TIME_EPS_SEC:
                conditions.append(condition_about(params.RULE, zone, [track], subject=str(track.id)))
    return Outcome(PresenceState(stays), conditions, [])
