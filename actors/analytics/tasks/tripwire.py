"""绊线人数统计 (tripwire counting): tracked people crossing each enabled line, per direction, with running totals.

Sides. A point's side of a line is its signed distance to it (``..regions.side_of_line``): positive on the line's
right walking from its first point to its second, as the image shows it. The old console's ``in`` is a crossing from
the left to the right, i.e. top to bottom for a line drawn left to right; ``out`` the other way.

Hysteresis. A track (its foot point, matched samples only: a coasting box is a prediction) is *armed* on a side once
it stands at least the margin from the line on that side. It crosses when it then reaches the margin on the other
side; it is re-armed there, so jitter around the line, a person standing on it, or one stepping onto it and back,
never counts, and each real crossing counts once. A track first seen inside the band is armed only once it leaves
it: where it came from is unknown, so it does not count. The margin is ``max(custom_params.cross_margin_px,
custom_params.cross_margin_ratio x the box's height)`` (defaults 15 px and 0.15), taken at each sample: a detector's
box edges wobble in proportion to the object's size, so a fixed number of pixels that is ample for a far person is
within the jitter of a near one (a 144 px person's foot jitters by ~5 px, and 15 px is 3 of those: a person standing
on the line for a minute at 10 fps would be counted now and then).

Extent. The crossing counts only if the track passed the line within the segment: where the path between two
consecutive matched samples crosses the line's infinite extension, that point must project inside the segment (the
last such change of side before reaching the margin is the one that counts). Walking round an end of the line
counts nothing.

Direction. ``properties.direction``: ``in`` counts only ``in`` crossings, ``out`` only ``out``, ``bidirectional``
both (the default). Each counted crossing is one ``instant`` record (rule ``line_crossing``, region = the line,
``direction`` ``in`` / ``out``, subject = the track) whose ``counts`` are the line's running totals
``{"in": n, "out": m}`` since the analytics started (a restart starts them at 0 again).

Without enabled lines nothing is counted.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from msgspec import Meta

from ..events import Instant
from ..regions import LineRegion, along_segment, side_of_line
from .base import CustomParams, Outcome, Scene, TaskParams, detection_of, foot

__all__ = ["TripwireCustom", "TripwireParams", "TripwireState", "count_crossings"]


class TripwireCustom(CustomParams, kw_only=True):
    cross_margin_px: Annotated[float, Meta(ge=0, le=10_000)] = 15.0
    """Pixels past the line (each side) a track must reach for a crossing to count, at least; 0 (and
    ``cross_margin_ratio`` 0): no hysteresis."""
    cross_margin_ratio: Annotated[float, Meta(ge=0, le=1)] = 0.15
    """The margin as a fraction of the track's box height, when that is more than ``cross_margin_px``."""


class TripwireParams(TaskParams[TripwireCustom], kw_only=True):
    DEFAULT_MIN_FPS = 3.0

    def lines(self) -> list[LineRegion]:
        return [r for r in self.regions if r.enabled and isinstance(r, LineRegion)]


class _Side(NamedTuple):
    """One track against one line, at its last matched sample."""

    armed: int
    """-1 (left) or +1 (right): the side it last stood on at least the margin away; 0 not yet."""
    distance: float
    point: tuple[float, float]
    within: bool
    """Its last change of side of the (infinite) line happened within the segment."""


class TripwireState(NamedTuple):
    sides: dict[tuple[int, str], _Side]
    """Per (track id, line id); a lost track's entries go."""
    totals: dict[str, tuple[int, int]]
    """Per line id: crossings counted (in, out)."""


def initial_state() -> TripwireState:
    return TripwireState({}, {})


def count_crossings(params: TripwireParams, state: TripwireState, scene: Scene) -> Outcome[TripwireState]:
    lines = params.lines()
    custom = params.custom
    sides: dict[tuple[int, str], _Side] = {}
    totals = dict(state.totals)
    instants: list[Instant] = []
    for track in scene.tracks:
        if track.label != params.label:
            continue
        point = foot(track, scene) if track.matched else None
        _, y1, _, y2 = track.box
        margin = max(custom.cross_margin_px, custom.cross_margin_ratio * (y2 - y1))
        for line in lines:
            key = (track.id, line.id)
            prev = state.sides.get(key)
            if point is None:
                if prev is not None:
                    sides[key] = prev
                continue
            start, end = line.points.start, line.points.end
            distance = side_of_line(*point, start, end)
            armed, within = (0, False) if prev is None else (prev.armed, prev.within)
            if prev is not None and (prev.distance < 0) != (distance < 0):
                k = prev.distance / (prev.distance - distance)  # where the path meets the line, 0..1 along it
                (px, py), (x, y) = prev.point, point
                within = 0.0 <= along_segment(px + k * (x - px), py + k * (y - py), start, end) <= 1.0
            if abs(distance) >= margin:
                side = -1 if distance < 0 else 1
                if armed == -side and within:
                    direction = "in" if side > 0 else "out"
                    if line.properties.direction in (direction, "bidirectional"):
                        n_in, n_out = totals.get(line.id, (0, 0))
                        totals[line.id] = (n_in + 1, n_out) if side > 0 else (n_in, n_out + 1)
                        detection = detection_of(track)
                        instants.append(Instant(
                            rule="line_crossing", region_id=line.id, region_name=line.name, subject=str(track.id),
                            direction=direction, track_ids=(track.id,),
                            detections=() if detection is None else (detection,), score=track.score,
                            counts=dict(zip(("in", "out"), totals[line.id], strict=True)),
                        ))
                armed = side
            sides[key] = _Side(armed, distance, point, within)
    return Outcome(TripwireState(sides, totals), [], instants)
