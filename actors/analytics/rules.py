"""Task types: what a task type makes of a frame's detections.

A rule is pure: detections in, an alert decision out; no I/O, no clock. Each built-in task type declares the
``algo_config`` it accepts as a Struct, so a typo in a task's conf fails at start with the key path.

Built in:

- ``人数统计`` (people counting): alert when the number of people reaches ``count_threshold``.
- ``区域入侵`` (area intrusion): alert when a person's foot point (bottom centre of the box) lies inside the polygon
  ``roi``, given as ``[[x, y], ...]`` in fractions of the frame width and height (so it survives a resolution change).

The other task types of the old system are accepted and routed; when no backend serves them, frames of those tasks are
reported as failed with "no backend serves task type X" rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

import msgspec
from msgspec import Meta

from ..core.messages import Detection

PEOPLE_COUNTING = "人数统计"
AREA_INTRUSION = "区域入侵"

#: The old system's task types, accepted by default in ``frame_extractor.task_types``.
OLD_TASK_TYPES = (
    "人数统计",
    "绊线人数统计",
    "人员跌倒",
    "人员离岗",
    "吸烟检测",
    "区域入侵",
    "徘徊检测",
    "物品遗留",
    "安全帽检测",
)

Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]


class PeopleCountingConf(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    count_threshold: Annotated[int, Meta(ge=1, le=10_000)] = 1
    """Alert when at least this many people are in the frame."""
    label: str = "person"


class IntrusionConf(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    roi: Annotated[list[tuple[Fraction, Fraction]], Meta(min_length=3)] = msgspec.field(
        default_factory=lambda: [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    )
    """Polygon vertices as (x, y) fractions of the frame size; default: the whole frame."""
    label: str = "person"


class Decision(msgspec.Struct, frozen=True):
    """What a rule concluded. ``alert`` False means the frame was inferred without an alert."""

    alert: bool
    rule: str
    counts: dict[str, int]
    detections: list[Detection]


class Rule(Protocol):
    task_type: str

    def evaluate(self, detections: Sequence[Detection], width: int, height: int) -> Decision: ...


class PeopleCounting:
    task_type = PEOPLE_COUNTING

    def __init__(self, conf: PeopleCountingConf) -> None:
        self._conf = conf

    def evaluate(self, detections: Sequence[Detection], width: int, height: int) -> Decision:
        people = [d for d in detections if d.label == self._conf.label]
        n = len(people)
        return Decision(
            alert=n >= self._conf.count_threshold,
            rule=f"people_count>={self._conf.count_threshold}",
            counts={self._conf.label: n},
            detections=people,
        )


def point_in_polygon(x: float, y: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting; points exactly on an edge may fall either way."""
    inside = False
    n = len(polygon)
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


class AreaIntrusion:
    task_type = AREA_INTRUSION

    def __init__(self, conf: IntrusionConf) -> None:
        self._conf = conf

    def evaluate(self, detections: Sequence[Detection], width: int, height: int) -> Decision:
        intruders = []
        for d in detections:
            if d.label != self._conf.label:
                continue
            x1, _, x2, y2 = d.box
            foot_x, foot_y = (x1 + x2) / 2 / width, y2 / height
            if point_in_polygon(foot_x, foot_y, self._conf.roi):
                intruders.append(d)
        return Decision(
            alert=bool(intruders),
            rule="foot_point_in_roi",
            counts={self._conf.label: len([d for d in detections if d.label == self._conf.label]),
                    "in_roi": len(intruders)},
            detections=intruders,
        )


_RULES: dict[str, tuple[type[msgspec.Struct], Any]] = {
    PEOPLE_COUNTING: (PeopleCountingConf, PeopleCounting),
    AREA_INTRUSION: (IntrusionConf, AreaIntrusion),
}


def has_builtin_rule(task_type: str) -> bool:
    return task_type in _RULES


def decode_algo_config(task_type: str, algo_config: dict[str, Any]) -> msgspec.Struct | None:
    """Validate a task's ``algo_config`` for a built-in task type; ``None`` for other types (passed through as is).

    Raises ``msgspec.ValidationError`` whose path is relative to ``algo_config``.
    """
    entry = _RULES.get(task_type)
    if entry is None:
        return None
    return msgspec.convert(algo_config, entry[0])


def build_rule(task_type: str, algo_config: dict[str, Any]) -> Rule | None:
    """The rule for a built-in task type, or ``None`` when no built-in rule exists."""
    entry = _RULES.get(task_type)
    if entry is None:
        return None
    conf_type, rule_type = entry
    return rule_type(msgspec.convert(algo_config, conf_type))
