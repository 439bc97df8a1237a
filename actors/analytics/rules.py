"""Task types: what a task type makes of a frame's detections.

A rule is pure: detections in, an alert decision out; no I/O, no clock. Each built-in task type declares the
``algo_config`` it accepts as a Struct, decoded once when the conf is read, so a mistake fails at start with its key
path.

Two forms of ``algo_config`` are accepted, and may be mixed:

- framewatch's own: ``count_threshold``, ``roi`` (fractions of the frame), ``label``. Without any key of the old
  format, an unknown key is a typo and an error.
- the old system's, version "1.0" (``regions`` in pixels, ``algorithm_params``; see ``regions``). With any of its
  top-level keys (``regions``, ``algorithm_params``, ``config_version``, ``task_id``...), unknown keys anywhere are
  accepted and kept for remote services (the console writes keys framewatch does not read).

Built in:

- ``人数统计`` (people counting). Without polygon/rectangle regions: alert when the number of people in the frame
  reaches ``count_threshold`` (default 1). With regions: each enabled area counts the people whose foot point (bottom
  centre of the box) lies in it, and alerts when the count exceeds its ``properties.max_count`` ("max" is the most
  people allowed, so ``max_count`` people is still fine), or, for an area without ``max_count``, reaches
  ``count_threshold``.
- ``区域入侵`` (area intrusion): alert when a person's foot point lies inside an enabled polygon/rectangle region
  (pixels) or, without regions, inside the polygon ``roi`` given as ``[[x, y], ...]`` in fractions of the frame width
  and height (default: the whole frame). ``roi`` and area regions together are refused (two scales, one meaning).

With regions, the areas are the *enabled* polygons and rectangles: when every area is disabled, neither rule alerts
(the operator switched the zone off; falling back to the whole frame would alert on what they turned off). Lines are
validated and ignored (tripwire counting is not built in). ``algorithm_params`` filters detections before either rule
looks at them (``AlgorithmParams.keeps``).

The other task types of the old system are accepted and routed; their ``algo_config`` is checked for the old
format's shape only (``RegionConfig``). When no backend serves them, frames of those tasks are reported as failed
with "no backend serves task type X" rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, NamedTuple, Protocol

import msgspec
from msgspec import Meta

from ..core.messages import Detection
from .regions import OLD_FORMAT_KEYS, Area, RegionConfig, areas_holding, foot_point, point_in_polygon

__all__ = [
    "AREA_INTRUSION", "OLD_TASK_TYPES", "PEOPLE_COUNTING", "AreaIntrusion", "Decision", "IntrusionConf",
    "PeopleCounting", "PeopleCountingConf", "RegionResult", "Rule", "build_rule", "decode_algo_config",
    "error_path", "has_builtin_rule", "point_in_polygon",
]

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

#: ``Decision.counts`` keys besides the label; a region id may not take one of them.
IN_ROI = "in_roi"

Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]


class _RuleConf(RegionConfig, kw_only=True):
    label: str = "person"
    """The detection label the rule looks at."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, region in enumerate(self.regions):
            if region.id in (self.label, IN_ROI):
                raise ValueError(f"region id {region.id!r} is also a count name of the rule; rename the region "
                                 f"- at `$.regions[{i}].id`")

    def people(self, detections: Sequence[Detection]) -> list[Detection]:
        """The detections the rule looks at: the label, then ``algorithm_params``' filters."""
        params = self.algorithm_params
        return [d for d in detections if d.label == self.label and params.keeps(d)]


class PeopleCountingConf(_RuleConf, kw_only=True):
    count_threshold: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    """Alert when at least this many people are in the frame (or in an area without ``max_count``); unset: 1."""

    @property
    def threshold(self) -> int:
        return 1 if self.count_threshold is None else self.count_threshold


class IntrusionConf(_RuleConf, kw_only=True):
    roi: Annotated[list[tuple[Fraction, Fraction]], Meta(min_length=3)] | None = None
    """Polygon vertices as (x, y) fractions of the frame size, for a conf without regions; unset: the whole frame."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.roi is not None and self.has_areas():
            raise ValueError("roi (fractions of the frame) and polygon/rectangle regions (pixels) cannot be combined; "
                             "keep one - at `$.roi`")


# framewatch's own form: the same fields, unknown keys refused (a typo in ``count_threshold`` must not pass).
class _StrictPeopleCountingConf(PeopleCountingConf, forbid_unknown_fields=True):
    pass


class _StrictIntrusionConf(IntrusionConf, forbid_unknown_fields=True):
    pass


class RegionResult(msgspec.Struct, frozen=True):
    """One enabled area's outcome; encodes as an item of the old services' ``region_results``."""

    region_id: str
    region_name: str
    count: int
    """People whose foot point lies in the area (after ``algorithm_params``' filters)."""
    alert: bool


class Decision(msgspec.Struct, frozen=True):
    """What a rule concluded. ``alert`` False means the frame was inferred without an alert."""

    alert: bool
    rule: str
    counts: dict[str, int]
    """The label's count in the frame; intrusion adds ``in_roi``; with regions, one entry per enabled area id."""
    detections: list[Detection]
    """The detections that matter: everyone counted (people counting), the intruders (intrusion)."""
    regions: list[RegionResult] = []
    """With regions: one per enabled polygon/rectangle, in the conf's order. Empty without regions."""
    detection_regions: list[str] = []
    """With regions: for each of ``detections``, the id of the first enabled area (conf order) holding its foot point
    (the old services' per-detection ``region_id``). Empty without regions."""


class Rule(Protocol):
    task_type: str

    def evaluate(self, detections: Sequence[Detection], width: int, height: int) -> Decision: ...


class _Located(NamedTuple):
    """People placed in the enabled areas."""

    people: list[Detection]
    """Those whose foot point lies in at least one area, in detection order."""
    first_area: list[str]
    """For each of ``people``, the first area (conf order) holding it."""
    counts: dict[str, int]
    """Per area id: the people it holds (a person in two overlapping areas counts in both)."""
    results: list[RegionResult]


def _locate(people: Sequence[Detection], areas: Sequence[Area], width: int, height: int,
            alerts: Callable[[Area, int], bool]) -> _Located:
    """Place ``people`` in ``areas``; ``alerts(area, count)`` says whether an area alerts."""
    holding = areas_holding(people, areas, width, height)
    matched = [(d, ids[0]) for d, ids in zip(people, holding, strict=True) if ids]
    counts = {a.id: sum(a.id in ids for ids in holding) for a in areas}
    results = [RegionResult(a.id, a.name, counts[a.id], alerts(a, counts[a.id])) for a in areas]
    return _Located([d for d, _ in matched], [i for _, i in matched], counts, results)


def _areas_of(conf: RegionConfig) -> list[Area] | None:
    """The enabled areas, or ``None`` when the conf lists no area at all (then the rule works on the whole frame)."""
    return conf.enabled_areas() if conf.has_areas() else None


class PeopleCounting:
    task_type = PEOPLE_COUNTING

    def __init__(self, conf: PeopleCountingConf) -> None:
        self._conf = conf
        self._areas = _areas_of(conf)

    def evaluate(self, detections: Sequence[Detection], width: int, height: int) -> Decision:
        conf = self._conf
        people = conf.people(detections)
        if self._areas is None:
            return Decision(alert=len(people) >= conf.threshold, rule=f"people_count>={conf.threshold}",
                            counts={conf.label: len(people)}, detections=people)
        located = _locate(people, self._areas, width, height, self._over)
        return Decision(alert=any(r.alert for r in located.results), rule="people_count_per_region",
                        counts={conf.label: len(people), **located.counts}, detections=located.people,
                        regions=located.results, detection_regions=located.first_area)

    def _over(self, area: Area, count: int) -> bool:
        max_count = area.properties.max_count
        return count >= self._conf.threshold if max_count is None else count > max_count


class AreaIntrusion:
    task_type = AREA_INTRUSION

    def __init__(self, conf: IntrusionConf) -> None:
        self._conf = conf
        self._areas = _areas_of(conf)

    def evaluate(self, detections: Sequence[Detection], width: int, height: int) -> Decision:
        conf = self._conf
        people = conf.people(detections)
        if self._areas is None:
            intruders = [d for d in people if self._in_roi(d, width, height)]
            return Decision(alert=bool(intruders), rule="foot_point_in_roi",
                            counts={conf.label: len(people), IN_ROI: len(intruders)}, detections=intruders)
        located = _locate(people, self._areas, width, height, lambda _, count: count > 0)
        return Decision(alert=bool(located.people), rule="foot_point_in_region",
                        counts={conf.label: len(people), IN_ROI: len(located.people), **located.counts},
                        detections=located.people, regions=located.results, detection_regions=located.first_area)

    def _in_roi(self, d: Detection, width: int, height: int) -> bool:
        if self._conf.roi is None:  # the whole frame holds every foot point (``foot_point`` keeps it inside)
            return True
        x, y = foot_point(d.box, width, height)
        return point_in_polygon(x / width, y / height, self._conf.roi)


class _BuiltIn(NamedTuple):
    conf: type[_RuleConf]
    strict_conf: type[_RuleConf]
    rule: Callable[[Any], Rule]


_RULES: dict[str, _BuiltIn] = {
    PEOPLE_COUNTING: _BuiltIn(PeopleCountingConf, _StrictPeopleCountingConf, PeopleCounting),
    AREA_INTRUSION: _BuiltIn(IntrusionConf, _StrictIntrusionConf, AreaIntrusion),
}


def has_builtin_rule(task_type: str) -> bool:
    return task_type in _RULES


def decode_algo_config(task_type: str, algo_config: dict[str, Any]) -> RegionConfig:
    """Validate a task's ``algo_config``; the typed form, for the built-in rules only (services get the dict).

    Built-in task types decode into their rule's conf; the other types into ``RegionConfig`` (the old format's shape:
    regions and their points, ``algorithm_params``), everything else passed through unchecked. Raises
    ``msgspec.ValidationError`` whose path is relative to ``algo_config`` (``error_path`` splits it)."""
    entry = _RULES.get(task_type)
    if entry is None:
        return msgspec.convert(algo_config, RegionConfig)
    old_format = isinstance(algo_config, dict) and not OLD_FORMAT_KEYS.isdisjoint(algo_config)
    return msgspec.convert(algo_config, entry.conf if old_format else entry.strict_conf)


def error_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``(reason, path)`` of a ``decode_algo_config`` error; ``path`` is ``$`` for ``algo_config`` as a whole.

    ``Expected `int`, got `str` - at `$.regions[0].points[1][0]` `` gives the reason and ``$.regions[0].points[1][0]``,
    to be re-rooted where the conf came from (``$.frame_extractor.tasks[2].algo_config...``, a file, the store)."""
    reason, sep, path = str(exc).rpartition(" - at `$")
    if not sep:
        return str(exc), "$"
    return reason, "$" + path.removesuffix("`")


def build_rule(task_type: str, algo_config: dict[str, Any]) -> Rule | None:
    """The rule for a built-in task type, or ``None`` when no built-in rule exists."""
    entry = _RULES.get(task_type)
    if entry is None:
        return None
    return entry.rule(decode_algo_config(task_type, algo_config))
