"""Regions and detection filters of the old system's ``algo_config`` (version "1.0"), and the geometry on them.

The old web console draws regions on a preview image of the camera and saves, per task::

    {"config_version": "1.0", "task_id": ..., "task_type": ...,
     "regions": [{"id": "region_001", "name": "大厅", "type": "polygon", "enabled": true,
                  "points": [[100, 150], [500, 150], [500, 450]], "properties": {"max_count": 50}}, ...],
     "algorithm_params": {"confidence_threshold": 0.7, "min_detection_size": 50, "max_detection_size": 500,
                          "custom_params": {...}}}

Coordinates are pixels of the camera image, origin top-left; framewatch infers on frames of that size, so they are
used as they are. A point outside the frame is allowed: foot points are kept inside the frame (``foot_point``), so a
region reaching past the border acts as if clipped to it.

- ``polygon``: three or more points, closed implicitly, even-odd rule (a self-crossing outline is allowed).
- ``rectangle``: exactly two points, top-left then bottom-right (x and y both strictly increasing).
- ``line``: exactly two distinct points, ``properties.direction`` ``in`` / ``out`` / ``bidirectional`` (default:
  ``bidirectional``, counting both ways). Lines are for tripwire counting, which is not built in: they are validated
  here and ignored by the built-in rules.

A region's inside includes its boundary: a foot point exactly on an edge or a corner is inside.

The console writes more than framewatch reads (``color``, ``thickness``, ``alert_type``, ``iou_threshold``,
``custom_params``...) and services may read keys framewatch never heard of, so these Structs accept unknown keys;
the task's ``algo_config`` dict goes to remote services as the user wrote it, and the typed form decoded here serves
the built-in rules only. What the Structs do check is what would make a region mean nothing: its type, its points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ..core.messages import Detection

#: Keys of the old format's top level. An ``algo_config`` with any of them is in the old format, whose unknown keys
#: are kept; without any, it is in framewatch's own form, whose unknown keys are typos (errors).
OLD_FORMAT_KEYS = frozenset({"config_version", "task_id", "task_type", "created_at", "updated_at", "regions",
                             "algorithm_params"})

#: A coordinate far outside any camera image is a mistake (and this bound also refuses TOML's ``inf`` and ``nan``).
MAX_COORDINATE = 100_000.0

Coordinate = Annotated[float, Meta(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Point = tuple[Coordinate, Coordinate]


class _Open(msgspec.Struct, frozen=True, kw_only=True):  # kw_only is per class: every subclass repeats it
    """Unknown keys are accepted (and ignored here): they stay in the task's ``algo_config`` for services."""


class AreaProperties(_Open, kw_only=True):
    max_count: Annotated[int, Meta(ge=0)] | None = None
    """People counting: the region alerts when more people than this stand in it (``count > max_count``)."""


class LineProperties(_Open, kw_only=True):
    direction: Literal["in", "out", "bidirectional"] = "bidirectional"
    """``in``: crossing from the line's left to its right walking from the first point to the second."""


class Corners(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A rectangle's ``points``: ``[[left, top], [right, bottom]]``."""

    top_left: Point
    bottom_right: Point

    def __post_init__(self) -> None:
        (x1, y1), (x2, y2) = self.top_left, self.bottom_right
        if not (x1 < x2 and y1 < y2):
            raise ValueError(
                f"a rectangle is [top-left, bottom-right] with x and y increasing, got {_xy(self.top_left)} "
                f"then {_xy(self.bottom_right)}"
            )


class Segment(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A line's ``points``: ``[[x1, y1], [x2, y2]]``, two distinct points."""

    start: Point
    end: Point

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError(f"a line needs two distinct points, got {_xy(self.start)} twice")


def _xy(point: Point) -> str:
    return f"[{point[0]:g}, {point[1]:g}]"


class _Region(_Open, kw_only=True, tag_field="type"):
    id: Annotated[str, Meta(min_length=1)]
    """Names the region in ``Decision.counts`` and ``Decision.regions``; unique within the task."""
    name: str = ""
    enabled: bool = True
    """``false``: the region is ignored, as if it were not there."""


class PolygonRegion(_Region, kw_only=True, tag="polygon"):
    points: Annotated[tuple[Point, ...], Meta(min_length=3)]
    properties: AreaProperties = AreaProperties()

    def contains(self, x: float, y: float) -> bool:
        return point_in_polygon(x, y, self.points)


class RectangleRegion(_Region, kw_only=True, tag="rectangle"):
    points: Corners
    properties: AreaProperties = AreaProperties()

    def contains(self, x: float, y: float) -> bool:
        (x1, y1), (x2, y2) = self.points.top_left, self.points.bottom_right
        return x1 <= x <= x2 and y1 <= y <= y2


class LineRegion(_Region, kw_only=True, tag="line"):
    points: Segment
    properties: LineProperties = LineProperties()


Region = PolygonRegion | RectangleRegion | LineRegion
Area = PolygonRegion | RectangleRegion


class AlgorithmParams(_Open, kw_only=True):
    """The detection filters of ``algorithm_params``; unset, nothing is filtered out."""

    confidence_threshold: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.0
    """Detections scoring below this are ignored. (The local detector already drops what scores below
    ``detector.threshold``: a lower value here changes nothing for it.)"""
    min_detection_size: Annotated[float, Meta(ge=0)] = 0
    """Pixels. A detection whose box's larger side is shorter than this is ignored."""
    max_detection_size: Annotated[float, Meta(ge=0)] = 0
    """Pixels. A detection whose box's larger side is longer than this is ignored; 0 means no upper limit (the old
    system's convention for its bounds)."""

    def __post_init__(self) -> None:
        if self.max_detection_size and self.min_detection_size > self.max_detection_size:
            raise ValueError(
                f"min_detection_size ({self.min_detection_size:g}) must not exceed max_detection_size "
                f"({self.max_detection_size:g})"
            )

    def keeps(self, detection: Detection) -> bool:
        """Whether ``detection`` passes the confidence threshold and the size limits (bounds included).

        Size is the larger side of the box: a person's height standing, their length lying down, so one bound
        works whatever the pose (the old documentation says "detection size" and nothing more)."""
        x1, y1, x2, y2 = detection.box
        size = max(x2 - x1, y2 - y1)
        return (detection.score >= self.confidence_threshold and size >= self.min_detection_size
                and (not self.max_detection_size or size <= self.max_detection_size))


class RegionConfig(_Open, kw_only=True):
    """The old format as every task type shares it; other keys (``task_id``, ``config_version``...) are kept."""

    regions: list[Region] = []
    algorithm_params: AlgorithmParams = AlgorithmParams()

    def __post_init__(self) -> None:
        # Decoded at the root of ``algo_config``, so the path written here is the whole path inside it.
        first: dict[str, int] = {}
        for i, region in enumerate(self.regions):
            if region.id in first:
                raise ValueError(f"duplicate region id {region.id!r} (also at $.regions[{first[region.id]}]) "
                                 f"- at `$.regions[{i}].id`")
            first[region.id] = i

    def has_areas(self) -> bool:
        """Whether any polygon or rectangle is listed, enabled or not (lines are not areas)."""
        return any(not isinstance(r, LineRegion) for r in self.regions)

    def enabled_areas(self) -> list[Area]:
        return [r for r in self.regions if r.enabled and not isinstance(r, LineRegion)]


# --- geometry (pixels) --------------------------------------------------------------------------------------------


def foot_point(box: tuple[int, int, int, int], width: int, height: int) -> tuple[float, float]:
    """Where a person stands: the bottom centre of the box, moved into the frame.

    A service may return a box reaching past the image, while the console draws regions on the image: a region drawn
    down to the bottom edge must still catch a person whose feet are cut off there."""
    x1, _, x2, y2 = box
    return min(max((x1 + x2) / 2, 0.0), float(width)), min(max(float(y2), 0.0), float(height))


def point_in_polygon(x: float, y: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Inside or on the boundary; even-odd rule (ray casting), so concave and self-crossing outlines work."""
    inside = False
    for i in range(len(polygon)):
        (xi, yi), (xj, yj) = polygon[i], polygon[i - 1]
        if _on_segment(x, y, xi, yi, xj, yj):
            return True
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
    return inside


def _on_segment(x: float, y: float, x1: float, y1: float, x2: float, y2: float) -> bool:
    """Exactly on the segment: collinear (zero cross product) and within its bounding box."""
    return ((x2 - x1) * (y - y1) == (y2 - y1) * (x - x1)
            and min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2))


def areas_holding(people: Sequence[Detection], areas: Sequence[Area], width: int, height: int) -> list[list[str]]:
    """For each of ``people``, the ids of the ``areas`` (in their order) that hold its foot point."""
    feet = [foot_point(d.box, width, height) for d in people]
    return [[a.id for a in areas if a.contains(x, y)] for x, y in feet]


def side_of_line(x: float, y: float, start: tuple[float, float], end: tuple[float, float]) -> float:
    """Signed distance (pixels) of a point to the infinite line through ``start`` and ``end`` (distinct points).

    Positive on the line's right walking from ``start`` to ``end``, as the image shows it (y grows downward): below a
    left-to-right horizontal line, left of a top-to-bottom vertical one. The old console's ``in`` direction goes from
    the negative side to the positive one."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    return (dx * (y - y1) - dy * (x - x1)) / math.hypot(dx, dy)


def along_segment(x: float, y: float, start: tuple[float, float], end: tuple[float, float]) -> float:
    """Where the point projects on the segment: 0.0 at ``start``, 1.0 at ``end``, outside [0, 1] beyond its ends."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    return (dx * (x - x1) + dy * (y - y1)) / (dx * dx + dy * dy)


def distance_to_box(x: float, y: float, box: tuple[float, float, float, float]) -> float:
    """Distance (pixels) from a point to a box ``(x1, y1, x2, y2)``: 0.0 inside it or on its edge."""
    x1, y1, x2, y2 = box
    return math.hypot(max(x1 - x, 0.0, x - x2), max(y1 - y, 0.0, y - y2))
