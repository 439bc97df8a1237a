"""Scripted scenes with known ground truth, for the accuracy harness (``benchmarks.accuracy``).

A scene is a camera's view for a minute or a few: its frame size, the objects in it with their trajectories (boxes in
pixels over time), the task's ``algo_config`` as the old console writes it (``regions`` in pixels,
``algorithm_params.custom_params``), and the incidents a correct system reports. Nothing here knows how framewatch
decides: the truth is computed from the scripted geometry with the task type's documented meaning (a foot point in a
zone, a post empty, a bag still with nobody near it), and each scene uses the type's default parameters unless its
``algo_config`` sets them, as an operator would.

Objects. ``SceneObject.keys`` are keyframes ``(t, x, y, w, h)``: the foot point (bottom centre of the box) and the
box size, linearly interpolated in between; an object exists from its first keyframe to its last, and is seen only
where its box is in the frame (people walk in and out at the edges). A person's box is about 60 x 160 px at three
quarters of the frame's height and smaller farther up (``person_size``), walkers move at 40-120 px/s, and a walking
person's box breathes with the gait (width +- 6 % at the step rate). Labels can change over time (a worker taking a
helmet off: ``helmet`` then ``no_helmet``). ``Walker`` and ``Prop`` script them.

Incidents. ``Incident.start`` is the moment a correct system has enough to report (the condition has held for the
type's persistence: ``min_inside_sec`` after entering, ``min_dwell_time`` after entering, ``absence_sec`` after the
post emptied...), ``end`` when the condition stops; a tripwire crossing's window is ``[t, t + CROSS_WINDOW_SEC]``
from the moment the foot crossed. The harness matches an alert to an incident when the alert's start falls in the
window, give or take a tolerance. Every scene is clear-cut: a stay, absence or violation lasts either well beyond the
persistence or well below it (``AMBIGUITY_SEC`` either side), and a builder refuses a scene that is not
(``AmbiguousScene``), so no score depends on which side of a threshold a borderline case falls.

``SCENES`` (built by ``build_scenes()``) has at least one scene per built-in task type; ``crowd_scene`` builds the
20-person scene the harness times the analytics on.
"""

from __future__ import annotations

import bisect
import math
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

import msgspec

__all__ = [
    "AMBIGUITY_SEC", "BAG_LABELS", "CROSS_TRUTH_PX", "CROSS_WINDOW_SEC", "H", "W", "AmbiguousScene", "Incident",
    "Key", "Prop", "Scene", "SceneObject", "Walker", "bag_size", "build_scenes", "count_in_region", "crowd_scene",
    "person_size", "region_contains", "scenes_by_type",
]

W, H = 1280, 720
"""Frame size of every scene (pixels)."""

BAG_LABELS = frozenset({"backpack", "handbag", "suitcase"})

AMBIGUITY_SEC = 1.5
"""A stay, absence or violation must last at least this much more than the persistence to be an incident, or this
much less not to be one; in between the scene is refused."""

CROSS_TRUTH_PX = 30.0
"""A tripwire crossing, in truth: the foot goes from this far on one side of the line to this far on the other.
(Twice the rule's default ``cross_margin_px``; no scripted person stops between the two.)"""

CROSS_WINDOW_SEC = 3.0
"""How long after the foot crossed a count may come and still match the crossing."""

GRID_SEC = 0.05
"""Time step of the truth computations."""

VISIBLE_FRACTION = 0.5
"""In truth, an object is in view while at least this fraction of its box is in the frame."""

Box = tuple[float, float, float, float]


class AmbiguousScene(ValueError):
    """A scene whose truth would depend on which side of a threshold a borderline case falls."""


def person_size(y: float) -> tuple[float, float]:
    """Box (w, h) of a standing person whose feet are at row ``y``: 60 x 160 px at 3/4 of the frame height."""
    s = min(max(0.55 + 0.6 * y / H, 0.5), 1.2)
    return 60.0 * s, 160.0 * s


def bag_size(y: float, w: float = 40.0, h: float = 50.0) -> tuple[float, float]:
    """Box (w, h) of a bag on the floor at row ``y`` (``w`` x ``h`` px at 3/4 of the frame height)."""
    s = min(max(0.55 + 0.6 * y / H, 0.5), 1.2)
    return w * s, h * s


# --- the data ------------------------------------------------------------------------------------------------------


class Key(msgspec.Struct, frozen=True, array_like=True):
    """A keyframe: at ``t`` (s) the foot point is ``(x, y)`` and the box ``w`` x ``h`` (pixels)."""

    t: float
    x: float
    y: float
    w: float
    h: float


class SceneObject(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    keys: tuple[Key, ...]
    """Ascending in ``t``; the object exists from the first to the last."""
    labels: tuple[tuple[float, str], ...]
    """``(from_t, label)``, ascending: the label from that time on."""
    miss: float = 0.0
    """Extra probability that the detector misses it in a sample (a cigarette seen only now and then)."""
    gait: bool = True
    """Its box breathes while it walks (people); props keep their shape."""

    @property
    def start(self) -> float:
        return self.keys[0].t

    @property
    def end(self) -> float:
        return self.keys[-1].t

    def label_at(self, t: float) -> str:
        label = self.labels[0][1]
        for since, name in self.labels:
            if since <= t:
                label = name
        return label

    def box_at(self, t: float) -> Box | None:
        """The true box at ``t`` (pixels, may reach outside the frame), or None outside the object's life."""
        keys = self.keys
        if t < keys[0].t or t > keys[-1].t:
            return None
        i = bisect.bisect_right(keys, t, key=attrgetter("t"))
        if i >= len(keys):
            k = keys[-1]
            x, y, w, h, moving = k.x, k.y, k.w, k.h, False
        else:
            a, b = keys[i - 1], keys[i]
            span = b.t - a.t
            f = (t - a.t) / span if span > 0 else 1.0
            x, y = a.x + f * (b.x - a.x), a.y + f * (b.y - a.y)
            w, h = a.w + f * (b.w - a.w), a.h + f * (b.h - a.h)
            moving = span > 0 and math.hypot(b.x - a.x, b.y - a.y) / span > 15.0
        if moving and self.gait:
            phase = (zlib.crc32(self.name.encode()) % 1000) / 1000 * 2 * math.pi
            w *= 1.0 + 0.06 * math.sin(2 * math.pi * 1.8 * t + phase)
        return (x - w / 2, y - h, x + w / 2, y)

    def foot_at(self, t: float) -> tuple[float, float] | None:
        box = self.box_at(t)
        return None if box is None else ((box[0] + box[2]) / 2, box[3])

    def still_at(self, t: float) -> bool:
        """Whether it is not moving at ``t`` (its keyframes around ``t`` hold the same spot)."""
        keys = self.keys
        if t < keys[0].t or t > keys[-1].t:
            return False
        i = bisect.bisect_right(keys, t, key=attrgetter("t"))
        if i >= len(keys):
            return True
        a, b = keys[i - 1], keys[i]
        return a.x == b.x and a.y == b.y


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """Something a correct system reports once: an alert whose start falls in ``[start, end]`` (give or take the
    harness's tolerance) with the same ``rule`` (and ``region_id``, ``direction`` when set) matches it."""

    rule: str
    start: float
    """When a correct system has what it needs to report it (seconds of scene time)."""
    end: float
    """When the condition stops holding (or the scene ends)."""
    region_id: str | None = None
    """None: any region."""
    direction: str = ""
    """Tripwire crossings: ``in`` or ``out``."""
    subject: str | None = None
    """The scene object it is about (``SceneObject.name``); None for a region-wide incident (an empty post, a
    crowd). An alert whose detection is another object's does not match it."""
    what: str = ""


class Scene(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    task_type: str
    description: str
    duration_sec: float
    objects: tuple[SceneObject, ...]
    algo_config: dict[str, Any]
    """The old format, as the console writes it."""
    rules: tuple[str, ...]
    """The rules whose records are scored (``count_report`` instants are dashboard records, not alerts)."""
    incidents: tuple[Incident, ...]
    width: int = W
    height: int = H
    true_counts: dict[str, int] | None = None
    """Tripwire: crossings per direction, ``{"in": n, "out": m}``."""
    count_region: str | None = None
    """People counting: the region whose count reports are compared with the true count."""
    fp_labels: tuple[str, ...] = ("person",)
    """Labels of the emulated detector's false positives (what this detector or service gets wrong)."""


# --- scripting -----------------------------------------------------------------------------------------------------


class Walker:
    """Scripts one person (or anything that walks): ``Walker("p1", t=3, x=-40, y=500).walk(600, 520, 80).wait(5)``.

    Each call appends keyframes from the current time; sizes follow ``size(y)`` (perspective) unless ``shape`` set
    one (a fall, a bend), until ``natural``. ``mark(name)`` remembers the current time (``marks[name]``)."""

    def __init__(self, name: str, *, t: float, x: float, y: float, label: str = "person",
                 size: Callable[[float], tuple[float, float]] = person_size) -> None:
        self.name = name
        self.t, self.x, self.y = float(t), float(x), float(y)
        self._size = size
        self._shape: tuple[float, float] | None = None
        self._keys: list[Key] = []
        self._labels: list[tuple[float, str]] = [(self.t, label)]
        self._rng = random.Random(f"walker:{name}")
        self.marks: dict[str, list[float]] = {}
        self._key()

    def _key(self) -> None:
        w, h = self._shape or self._size(self.y)
        key = Key(round(self.t, 4), round(self.x, 2), round(self.y, 2), round(w, 2), round(h, 2))
        if self._keys and self._keys[-1].t == key.t:
            self._keys[-1] = key
        else:
            self._keys.append(key)

    def walk(self, x: float, y: float, speed: float) -> Walker:
        """Walk in a straight line to foot point ``(x, y)`` at ``speed`` px/s."""
        distance = math.hypot(x - self.x, y - self.y)
        self.t += distance / speed
        self.x, self.y = float(x), float(y)
        self._key()
        return self

    def route(self, points: Iterable[tuple[float, float]], speed: float) -> Walker:
        for x, y in points:
            self.walk(x, y, speed)
        return self

    def wait(self, sec: float, sway_px: float = 3.0) -> Walker:
        """Stand for ``sec`` seconds, shifting weight within ``sway_px`` of the spot; back on it at the end."""
        ax, ay, end = self.x, self.y, self.t + sec
        while end - self.t > 1.5 and sway_px > 0:
            self.t += min(self._rng.uniform(0.8, 1.6), end - self.t - 0.5)
            self.x = ax + self._rng.uniform(-sway_px, sway_px)
            self.y = ay + self._rng.uniform(-sway_px, sway_px) / 2
            self._key()
        self.t, self.x, self.y = end, ax, ay
        self._key()
        return self

    def hold(self, sec: float) -> Walker:
        """Stay exactly still (a prop, someone lying)."""
        self.t += sec
        self._key()
        return self

    def until(self, t: float) -> Walker:
        return self.hold(max(0.0, t - self.t))

    def shape(self, w: float, h: float, sec: float, dx: float = 0.0) -> Walker:
        """Change the box to ``w`` x ``h`` over ``sec`` seconds (its foot moving ``dx``), and keep it."""
        self.t += sec
        self.x += dx
        self._shape = (float(w), float(h))
        self._key()
        return self

    def natural(self, sec: float, dx: float = 0.0) -> Walker:
        """Back to the perspective size over ``sec`` seconds (standing up)."""
        self.t += sec
        self.x += dx
        self._shape = None
        self._key()
        return self

    def label(self, label: str) -> Walker:
        """From now on the detector (or service) labels it ``label``."""
        self._labels.append((self.t, label))
        return self

    def mark(self, name: str) -> Walker:
        self.marks.setdefault(name, []).append(self.t)
        return self

    def build(self, *, miss: float = 0.0, gait: bool = True) -> SceneObject:
        return SceneObject(name=self.name, keys=tuple(self._keys), labels=tuple(self._labels), miss=miss, gait=gait)


class Prop:
    """Scripts a bag: carried by someone (following their foot point), put down, left, picked up."""

    def __init__(self, name: str, label: str, w: float, h: float) -> None:
        self.name, self.label, self.w, self.h = name, label, w, h
        self._keys: list[Key] = []

    def _add(self, t: float, x: float, y: float) -> None:
        w, h = bag_size(y, self.w, self.h)
        key = Key(round(t, 4), round(x, 2), round(y, 2), round(w, 2), round(h, 2))
        if self._keys and self._keys[-1].t >= key.t:
            self._keys[-1] = key
        else:
            self._keys.append(key)

    def carry(self, owner: SceneObject, t0: float, t1: float, dx: float, lift: float) -> Prop:
        """Carried from ``t0`` to ``t1``: ``dx`` px beside the owner's foot point, ``lift`` px above the floor."""
        times = [t0, *(k.t for k in owner.keys if t0 < k.t < t1), t1]
        for t in times:
            foot = owner.foot_at(t)
            if foot is None:
                raise ValueError(f"{self.name}: {owner.name} does not exist at {t:.2f} s")
            self._add(t, foot[0] + dx, foot[1] - lift)
        return self

    def put(self, x: float, y: float, t0: float, sec: float = 0.6) -> Prop:
        """Put down at foot point ``(x, y)``, from ``t0`` over ``sec`` seconds; still from then on."""
        last = self._keys[-1]
        if last.t < t0:
            self._add(t0, last.x, last.y)
        self._add(t0 + sec, x, y)
        return self

    def stay(self, until: float) -> Prop:
        last = self._keys[-1]
        self._add(until, last.x, last.y)
        return self

    def at(self, t: float, x: float, y: float) -> Prop:
        self._add(t, x, y)
        return self

    def build(self) -> SceneObject:
        return SceneObject(name=self.name, keys=tuple(self._keys), labels=((self._keys[0].t, self.label),),
                           gait=False)


# --- geometry and truth --------------------------------------------------------------------------------------------


def region_contains(region: dict[str, Any]) -> Callable[[float, float], bool]:
    """A polygon or rectangle region of the old format as a point test (boundary included)."""
    points = [tuple(map(float, p)) for p in region["points"]]
    if region["type"] == "rectangle":
        (x1, y1), (x2, y2) = points
        return lambda x, y: x1 <= x <= x2 and y1 <= y <= y2
    if region["type"] != "polygon":
        raise ValueError(f"region {region['id']!r} is a {region['type']}, not an area")

    def inside(x: float, y: float) -> bool:
        hit = False
        for i in range(len(points)):
            (xi, yi), (xj, yj) = points[i], points[i - 1]
            if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
                hit = not hit
        return hit

    return inside


def _visible_fraction(box: Box, width: int = W, height: int = H) -> float:
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    if area <= 0:
        return 0.0
    cw = max(0.0, min(x2, width) - max(x1, 0.0))
    ch = max(0.0, min(y2, height) - max(y1, 0.0))
    return cw * ch / area


def _in_view(obj: SceneObject, t: float) -> bool:
    box = obj.box_at(t)
    return box is not None and _visible_fraction(box) >= VISIBLE_FRACTION


def _grid(t0: float, t1: float) -> list[float]:
    n = int(math.floor((t1 - t0) / GRID_SEC + 1e-9))
    return [round(t0 + i * GRID_SEC, 6) for i in range(n + 1)]


def _intervals(holds: Callable[[float], bool], t0: float, t1: float) -> list[tuple[float, float]]:
    """Maximal intervals of the grid over ``[t0, t1]`` where ``holds``: (first time it holds, first time it does not
    again, or ``t1``)."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for t in _grid(t0, t1):
        if holds(t):
            if since is None:
                since = t
        elif since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, t1))
    return out


def _is_incident(duration: float, need: float, what: str) -> bool:
    if duration >= need + AMBIGUITY_SEC:
        return True
    if duration <= need - AMBIGUITY_SEC:
        return False
    raise AmbiguousScene(f"{what} lasts {duration:.2f} s against a persistence of {need:g} s: make it clear-cut "
                         f"(at least {AMBIGUITY_SEC:g} s either side)")


def _stays(objects: Iterable[SceneObject], holds: Callable[[SceneObject, float], bool], need: float, rule: str,
           region_id: str | None, duration: float, what: str, min_gap: float = 3.0) -> list[Incident]:
    """One incident per interval in which ``holds(obj, t)`` for ``need`` seconds (plus the ambiguity margin)."""
    incidents: list[Incident] = []
    for obj in objects:
        spans = _intervals(lambda t, o=obj: holds(o, t), 0.0, duration)
        for (_, end_a), (start_b, _) in zip(spans, spans[1:]):
            if start_b - end_a < min_gap:
                raise AmbiguousScene(f"{obj.name} {what}: out for only {start_b - end_a:.2f} s at {end_a:.2f} s "
                                     f"(is it one {rule} or two?)")
        for start, end in spans:
            if _is_incident(end - start, need, f"{obj.name} {what} at {start:.2f} s"):
                incidents.append(Incident(rule=rule, start=round(start + need, 3), end=round(end, 3),
                                          region_id=region_id, subject=obj.name,
                                          what=f"{obj.name} {what} {start:.1f}-{end:.1f} s"))
    return sorted(incidents, key=attrgetter("start"))


def _region_wide(holds: Callable[[float], bool], need: float, rule: str, region_id: str | None, duration: float,
                 what: str, min_gap: float = 3.0) -> list[Incident]:
    spans = _intervals(holds, 0.0, duration)
    for (_, end_a), (start_b, _) in zip(spans, spans[1:]):
        if start_b - end_a < min_gap:
            raise AmbiguousScene(f"{what}: interrupted for only {start_b - end_a:.2f} s at {end_a:.2f} s")
    return [Incident(rule=rule, start=round(start + need, 3), end=round(end, 3), region_id=region_id,
                     what=f"{what} {start:.1f}-{end:.1f} s")
            for start, end in spans if _is_incident(end - start, need, f"{what} at {start:.2f} s")]


def count_in_region(objects: Iterable[SceneObject], contains: Callable[[float, float], bool], t: float,
                    label: str = "person") -> int:
    """True number of ``label`` objects in view whose foot point is in the region at ``t``."""
    n = 0
    for obj in objects:
        foot = obj.foot_at(t)
        if foot is not None and obj.label_at(t) == label and _in_view(obj, t) and contains(*foot):
            n += 1
    return n


def _side(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Signed distance to the line a->b: positive on its right as the image shows it (the old console's ``in``)."""
    (x1, y1), (x2, y2) = a, b
    return ((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) / math.hypot(x2 - x1, y2 - y1)


def _crossings(obj: SceneObject, a: tuple[float, float], b: tuple[float, float],
               line_id: str) -> list[Incident]:
    """The true crossings of one walker: from ``CROSS_TRUTH_PX`` on one side to as far on the other, within the
    segment; the crossing's time is when the foot passed the line."""
    incidents: list[Incident] = []
    armed = 0
    crossed_at: float | None = None
    prev: tuple[float, float, float] | None = None  # t, side distance, along
    for t in _grid(obj.start, obj.end):
        foot = obj.foot_at(t)
        if foot is None or not _in_view(obj, t):
            prev = None
            continue
        d = _side(*foot, a, b)
        (x1, y1), (x2, y2) = a, b
        along = ((x2 - x1) * (foot[0] - x1) + (y2 - y1) * (foot[1] - y1)) / ((x2 - x1) ** 2 + (y2 - y1) ** 2)
        if prev is not None and (prev[1] < 0) != (d < 0):
            k = prev[1] / (prev[1] - d)
            crossed_at = prev[0] + k * (t - prev[0]) if 0.0 <= prev[2] + k * (along - prev[2]) <= 1.0 else None
        if abs(d) >= CROSS_TRUTH_PX:
            side = 1 if d > 0 else -1
            if armed == -side and crossed_at is not None:
                direction = "in" if side > 0 else "out"
                incidents.append(Incident(rule="line_crossing", start=round(crossed_at, 3),
                                          end=round(crossed_at + CROSS_WINDOW_SEC, 3), region_id=line_id,
                                          direction=direction, subject=obj.name,
                                          what=f"{obj.name} {direction} at {crossed_at:.1f} s"))
            armed = side
        prev = (t, d, along)
    return incidents


def _old_format(task_id: str, task_type: str, regions: Sequence[dict[str, Any]],
                **custom_params: Any) -> dict[str, Any]:
    return {"config_version": "1.0", "task_id": task_id, "task_type": task_type, "regions": list(regions),
            "algorithm_params": {"confidence_threshold": 0.5, "custom_params": custom_params}}


# --- the scenes ----------------------------------------------------------------------------------------------------

TRIPWIRE, INTRUSION, LOITERING, OFF_POST = "绊线人数统计", "区域入侵", "徘徊检测", "人员离岗"
ABANDONED, FALL, COUNTING, HELMET, SMOKING = "物品遗留", "人员跌倒", "人数统计", "安全帽检测", "吸烟检测"

GATE_A, GATE_B = (80.0, 420.0), (1200.0, 420.0)
GATE = {"id": "gate", "name": "入口检测线", "type": "line", "enabled": True,
        "points": [list(GATE_A), list(GATE_B)], "properties": {"direction": "bidirectional", "thickness": 5}}


def _tripwire_scene(name: str, description: str, duration: float, people: list[SceneObject]) -> Scene:
    crossings = sorted((i for p in people for i in _crossings(p, GATE_A, GATE_B, "gate")), key=attrgetter("start"))
    counts = {"in": sum(i.direction == "in" for i in crossings), "out": sum(i.direction == "out" for i in crossings)}
    return Scene(name=name, task_type=TRIPWIRE, description=description, duration_sec=duration,
                 objects=tuple(people), algo_config=_old_format(f"cam-{name}", TRIPWIRE, [GATE]),
                 rules=("line_crossing",), incidents=tuple(crossings), true_counts=counts)


def tripwire_crossings() -> Scene:
    """People crossing a door's line both ways: singles, a pair passing each other on the line, three abreast, one
    who turns back, one crossing diagonally."""
    people: list[SceneObject] = []
    # (start, x at the top, x at the bottom, speed px/s, going down = "in")
    singles = [(1.0, 300, 360, 80, True), (4.0, 900, 820, 110, False), (7.5, 620, 700, 45, True),
               (9.0, 1050, 1000, 60, False), (13.0, 200, 260, 120, True), (16.0, 700, 640, 95, False),
               (20.0, 450, 520, 70, True), (23.0, 1120, 1080, 55, False), (52.0, 820, 760, 100, True),
               (56.0, 350, 300, 85, False)]
    for i, (t0, xt, xb, speed, down) in enumerate(singles):
        w = Walker(f"p{i + 1}", t=t0, x=xt if down else xb, y=140 if down else 900)
        people.append(w.walk(xb if down else xt, 900 if down else 140, speed).build())
    # A pair passing each other on the line at t = 35 s, 100 px apart.
    down_speed, up_speed = 70, 75
    people.append(Walker("pair-down", t=35 - 280 / down_speed, x=560, y=140).walk(580, 900, down_speed).build())
    people.append(Walker("pair-up", t=35 - 480 / up_speed, x=680, y=900).walk(660, 140, up_speed).build())
    # Three abreast, walking down.
    for j, x in enumerate((400, 470, 540)):
        people.append(Walker(f"abreast-{j + 1}", t=42.0, x=x, y=140).walk(x + 30, 900, 65).build())
    # Walks in, thinks better of it 140 px past the line, walks back out.
    people.append(Walker("turns-back", t=60.0, x=1000, y=140).walk(990, 560, 60).wait(2.0).walk(1010, 140, 70)
                  .build())
    # Diagonal, across most of the frame.
    people.append(Walker("diagonal", t=64.0, x=100, y=250).walk(1180, 640, 100).walk(1360, 700, 100).build())
    return _tripwire_scene("tripwire_crossings", "people crossing the line both ways", 90.0, people)


def tripwire_standing() -> Scene:
    """Nobody crosses: one stands on the line, one walks along it 6 px past it, two wait just short of it."""
    people = [
        Walker("on-line", t=2.0, x=640, y=140).walk(640, 420, 60).wait(20.0, sway_px=4.0).walk(640, 140, 60).build(),
        Walker("along-line", t=5.0, x=-40, y=426).walk(1320, 426, 70).build(),
        Walker("waits-short", t=10.0, x=1320, y=300).walk(900, 410, 80).wait(15.0).walk(1320, 405, 80).build(),
        Walker("waits-above", t=30.0, x=300, y=140).walk(300, 412, 60).wait(10.0).walk(320, 140, 60).build(),
    ]
    return _tripwire_scene("tripwire_standing", "a person standing on the line, one walking along it, two waiting "
                           "at it: no crossing", 60.0, people)


def _zone_scene(name: str, task_type: str, description: str, duration: float, region: dict[str, Any],
                people: list[SceneObject], rule: str, need: float, what: str, labels: frozenset[str] = frozenset(
                    {"person"}), **custom: Any) -> Scene:
    contains = region_contains(region)

    def holds(obj: SceneObject, t: float) -> bool:
        foot = obj.foot_at(t)
        return foot is not None and obj.label_at(t) in labels and _in_view(obj, t) and contains(*foot)

    incidents = _stays(people, holds, need, rule, region["id"], duration, what)
    return Scene(name=name, task_type=task_type, description=description, duration_sec=duration,
                 objects=tuple(people), algo_config=_old_format(f"cam-{name}", task_type, [region], **custom),
                 rules=(rule,), incidents=tuple(incidents))


def intrusion() -> Scene:
    """People walking through a restricted area (one incident per person-entry), passers-by outside it."""
    zone = {"id": "platform_edge", "name": "站台边缘", "type": "polygon", "enabled": True,
            "points": [[380, 380], [900, 380], [1010, 660], [270, 660]], "properties": {"alert_type": "intrusion"}}
    people = [
        Walker("across", t=1.0, x=-40, y=520).walk(1320, 560, 90).build(),
        Walker("down-through", t=4.0, x=600, y=250).walk(560, 900, 70).build(),
        Walker("passer-above", t=8.0, x=1320, y=330).walk(-40, 300, 100).build(),
        Walker("stands-inside", t=12.0, x=1320, y=600).walk(760, 560, 60).wait(6.0).walk(1320, 600, 60).build(),
        Walker("re-enters", t=20.0, x=-40, y=450).walk(500, 450, 80).walk(150, 450, 80).wait(5.0)
        .walk(700, 470, 80).walk(700, 900, 80).build(),
        Walker("pair-upper", t=35.0, x=1320, y=500).walk(-40, 500, 75).build(),
        Walker("pair-lower", t=35.5, x=1320, y=570).walk(-40, 570, 75).build(),
        Walker("passer-below", t=45.0, x=-40, y=700).walk(1320, 705, 110).build(),
        Walker("diagonal", t=50.0, x=1100, y=250).walk(118, 900, 100).build(),
        Walker("slow-up", t=60.0, x=640, y=900).walk(660, 300, 45).walk(670, 250, 45).build(),
        Walker("passer-above-2", t=62.0, x=-40, y=340).walk(1320, 350, 85).build(),
        Walker("on-phone", t=70.0, x=1320, y=420).walk(850, 450, 80).wait(12.0).walk(1320, 440, 80).build(),
    ]
    return _zone_scene("intrusion", INTRUSION, "people entering a restricted area; passers-by outside it", 95.0,
                       zone, people, "intrusion", 0.5, "inside")  # min_inside_sec: the default


def loitering() -> Scene:
    """Three people dwelling in a zone beyond min_dwell_time (default 10 s); eight crossing it in under 7 s."""
    zone = {"id": "atm", "name": "ATM区域", "type": "rectangle", "enabled": True, "points": [[380, 320], [940, 650]]}
    people = [
        Walker("loiter-1", t=3.0, x=-40, y=500).walk(450, 500, 70).walk(600, 420, 50).wait(6.0).walk(800, 560, 40)
        .wait(8.0).walk(520, 600, 40).wait(5.0).walk(700, 450, 40).wait(4.0).walk(1320, 450, 80).build(),
        Walker("loiter-2", t=40.0, x=1320, y=620).walk(880, 600, 60).wait(12.0).walk(700, 380, 30).wait(10.0)
        .walk(1320, 300, 70).build(),
        Walker("loiter-3", t=75.0, x=600, y=250).walk(620, 500, 50).wait(25.0, sway_px=6.0).walk(620, 900, 60)
        .build(),
        Walker("pass-1", t=6.0, x=1320, y=400).walk(-40, 420, 110).build(),
        Walker("pass-2", t=15.0, x=650, y=250).walk(680, 900, 80).build(),
        Walker("pass-3", t=25.0, x=-40, y=600).walk(1320, 580, 100).build(),
        Walker("pass-4", t=33.0, x=500, y=900).walk(520, 250, 70).build(),
        Walker("pass-5", t=50.0, x=1320, y=350).walk(-40, 360, 90).build(),
        Walker("pass-6-phone", t=60.0, x=-40, y=450).walk(560, 460, 90).wait(2.0).walk(560, 900, 90).build(),
        Walker("pass-7", t=90.0, x=1320, y=630).walk(-40, 640, 120).build(),
        Walker("pass-8", t=100.0, x=900, y=250).walk(860, 900, 100).build(),
    ]
    # The operator asks for a repeat every 30 s of a long stay (updates are not alerts of new incidents).
    return _zone_scene("loitering", LOITERING, "three people dwelling, eight passing through", 125.0, zone, people,
                       "loitering", 10.0, "dwelling", alert_interval=30)  # min_dwell_time: the default


def off_post() -> Scene:
    """A guard leaving the post twice for about 50 s (> absence_sec, default 30) and once for 12 s; passers-by
    near the post meanwhile."""
    post = {"id": "guard_post", "name": "岗亭", "type": "rectangle", "enabled": True,
            "points": [[520, 400], [760, 640]]}
    guard = (Walker("guard", t=0.0, x=640, y=560).wait(20.0, sway_px=5.0)
             .walk(1360, 540, 80).wait(46.0, sway_px=0).walk(640, 560, 80)  # out of view, then back
             .wait(10.0, sway_px=5.0).walk(-40, 560, 90).wait(0.5, sway_px=0).walk(640, 560, 90)
             .wait(18.0, sway_px=5.0).walk(1360, 540, 80).wait(40.0, sway_px=0).walk(640, 560, 80)
             .wait(30.0, sway_px=5.0))
    duration = min(210.0, guard.t)
    people = [
        guard.build(),
        Walker("passer-behind", t=35.0, x=-40, y=360).walk(1320, 350, 100).build(),
        Walker("passer-front", t=60.0, x=1320, y=690).walk(-40, 690, 90).build(),
        Walker("passer-behind-2", t=160.0, x=1320, y=370).walk(-40, 365, 70).build(),
    ]
    contains = region_contains(post)
    incidents = _region_wide(lambda t: count_in_region(people, contains, t) < 1, 30.0, "off_post", "guard_post",
                             duration, "post empty")  # absence_sec, min_people: the defaults
    return Scene(name="off_post", task_type=OFF_POST, description="a guard leaving the post twice for ~50 s and "
                 "once for 12 s", duration_sec=duration, objects=tuple(people),
                 algo_config=_old_format("cam-off_post", OFF_POST, [post]), rules=("off_post",),
                 incidents=tuple(incidents))


HALL = {"id": "hall", "name": "候车大厅", "type": "polygon", "enabled": True,
        "points": [[80, 330], [1200, 330], [1240, 700], [40, 700]]}


def _abandoned_scene(name: str, description: str, duration: float, objects: list[SceneObject],
                     owners: dict[str, str]) -> Scene:
    """Truth: a bag is abandoned while it is still, in the hall, and its owner (``owners[bag]``) is not near it
    (within twice the bag's size, the default ``owner_distance_ratio``). Strangers walking by do not attend it."""
    contains = region_contains(HALL)
    by_name = {o.name: o for o in objects}

    def unattended(bag: SceneObject, t: float) -> bool:
        box = bag.box_at(t)
        if box is None or not bag.still_at(t) or not contains((box[0] + box[2]) / 2, box[3]):
            return False
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        reach = 2.0 * max(box[2] - box[0], box[3] - box[1])
        owner = by_name[owners[bag.name]]
        p = owner.box_at(t)
        return not (p is not None and _in_view(owner, t)
                    and math.hypot(max(p[0] - cx, 0.0, cx - p[2]), max(p[1] - cy, 0.0, cy - p[3])) <= reach)

    bags = [o for o in objects if o.labels[0][1] in BAG_LABELS]
    incidents = _stays(bags, unattended, 30.0, "abandoned_object", "hall", duration, "left unattended")
    return Scene(name=name, task_type=ABANDONED, description=description, duration_sec=duration,
                 objects=tuple(objects), algo_config=_old_format(f"cam-{name}", ABANDONED, [HALL]),
                 rules=("abandoned_object",), incidents=tuple(incidents), fp_labels=("person", "backpack"))


def abandoned_bags() -> Scene:
    """A backpack dropped and left (its owner comes back for it after a minute), a handbag left on a bench, a
    suitcase rolled through, a suitcase put down beside its owner who stays with it. Nobody else comes near a bag."""
    owner1 = (Walker("owner-1", t=2.0, x=-40, y=560).walk(480, 560, 75).mark("arrive").wait(2.0, sway_px=0)
              .walk(1360, 520, 85).wait(67.0, sway_px=0).walk(500, 562, 85).mark("back").wait(1.5, sway_px=0)
              .walk(1360, 600, 80))
    o1 = owner1.build()
    arrive1, back1 = owner1.marks["arrive"][0], owner1.marks["back"][0]
    backpack = (Prop("backpack", "backpack", 40, 50).carry(o1, o1.start, arrive1 + 0.5, dx=32, lift=45)
                .put(520, 568, arrive1 + 0.5).stay(back1 + 0.8).carry(o1, back1 + 1.4, o1.end, dx=32, lift=45)
                .build())
    o2 = Walker("traveller-2", t=20.0, x=1360, y=405).walk(-40, 405, 70).build()
    roller = Prop("suitcase-2", "suitcase", 45, 65).carry(o2, o2.start, o2.end, dx=45, lift=0).build()
    traveller3 = (Walker("traveller-3", t=30.0, x=1360, y=600).walk(1000, 600, 80).mark("arrive")
                  .wait(40.0, sway_px=5.0).walk(1360, 610, 80))
    o3 = traveller3.build()
    arrive3 = traveller3.marks["arrive"][0]
    suitcase3 = (Prop("suitcase-3", "suitcase", 45, 65).carry(o3, o3.start, arrive3, dx=-40, lift=0)
                 .put(955, 602, arrive3).stay(arrive3 + 39.0).carry(o3, arrive3 + 40.0, o3.end, dx=-40, lift=0)
                 .build())
    owner4 = (Walker("owner-4", t=35.0, x=1360, y=385).walk(330, 392, 80).mark("arrive").wait(1.5, sway_px=0)
              .walk(-40, 380, 85))
    o4 = owner4.build()
    arrive4 = owner4.marks["arrive"][0]
    handbag = (Prop("handbag", "handbag", 35, 30).carry(o4, o4.start, arrive4, dx=-28, lift=40)
               .put(300, 395, arrive4 + 0.3).stay(125.0).build())
    objects = [o1, backpack, o2, roller, o3, suitcase3, o4, handbag]
    owners = {"backpack": "owner-1", "suitcase-2": "traveller-2", "suitcase-3": "traveller-3", "handbag": "owner-4"}
    return _abandoned_scene("abandoned_bags", "a backpack left (owner back after a minute), a handbag left on a "
                            "bench, a suitcase rolled through, one kept beside its owner", 125.0, objects, owners)


def abandoned_passerby() -> Scene:
    """A suitcase left for good; a stranger walks right past it after a minute, another passes farther off. The bag
    stays abandoned throughout: one incident."""
    owner = (Walker("owner", t=1.0, x=1360, y=600).walk(700, 600, 80).mark("arrive").wait(1.5, sway_px=0)
             .walk(1360, 640, 90))
    o = owner.build()
    arrive = owner.marks["arrive"][0]
    suitcase = (Prop("suitcase", "suitcase", 45, 65).carry(o, o.start, arrive, dx=-40, lift=0)
                .put(660, 602, arrive + 0.2).stay(130.0).build())
    stranger = Walker("stranger-near", t=60.0, x=-40, y=610).walk(1360, 615, 90).build()
    far = Walker("stranger-far", t=85.0, x=1360, y=380).walk(-40, 370, 90).build()
    return _abandoned_scene("abandoned_passerby", "a suitcase left for good; a stranger walks past it (the bag is "
                            "still abandoned)", 130.0, [o, suitcase, stranger, far], {"suitcase": "owner"})


def fall() -> Scene:
    """Four people falling (upright box turning to lying for 5-20 s), two bending down briefly, one crouching to tie
    a shoe, one sitting down on a bench, one walking by."""
    w = Walker
    f1 = (w("fall-1", t=1.0, x=-40, y=560).walk(500, 560, 70).shape(165, 58, 0.8, dx=50).mark("down")
          .wait(10.0, sway_px=2.0).mark("up").shape(95, 110, 1.0).natural(1.0).wait(2.0).walk(1360, 560, 60))
    b1 = (w("bend-1", t=10.0, x=1360, y=480).walk(800, 470, 80).shape(110, 100, 0.5).shape(125, 92, 0.4)
          .hold(0.6).shape(100, 110, 0.4).natural(0.5).walk(-40, 470, 80))
    c1 = w("crouch", t=25.0, x=900, y=900).walk(900, 600, 50).shape(80, 100, 0.8).hold(5.0).natural(0.8) \
        .walk(1360, 600, 70)
    f2 = (w("fall-2", t=30.0, x=1360, y=400).walk(700, 420, 90).shape(150, 50, 0.7, dx=-40).mark("down")
          .wait(20.0, sway_px=2.0).mark("up").shape(85, 100, 1.5).natural(1.0).walk(1360, 420, 60))
    s1 = w("sits", t=40.0, x=-40, y=640).walk(300, 640, 60).shape(70, 115, 1.0).hold(12.0).natural(1.0) \
        .walk(-40, 640, 60)
    b2 = (w("bend-2", t=55.0, x=-40, y=520).walk(600, 520, 75).shape(105, 105, 0.5).shape(128, 95, 0.4)
          .hold(0.5).shape(100, 112, 0.4).natural(0.5).walk(1360, 520, 75))
    f3 = (w("fall-3", t=62.0, x=1360, y=650).walk(950, 640, 75).shape(175, 62, 0.9, dx=-60).mark("down")
          .wait(6.0, sway_px=2.0).mark("up").shape(100, 120, 1.5).natural(1.0).walk(1360, 650, 60))
    f4 = (w("fall-4-running", t=75.0, x=-40, y=300).walk(500, 300, 120).shape(125, 44, 0.5, dx=40).mark("down")
          .wait(5.0, sway_px=2.0).mark("up").shape(70, 85, 1.2).natural(0.8).walk(1360, 300, 80))
    walker = w("walks-by", t=80.0, x=1360, y=250).walk(-40, 240, 90)
    scripted = [f1, b1, c1, f2, s1, b2, f3, f4, walker]
    duration = 105.0
    incidents = [Incident(rule="fall", start=round(p.marks["down"][0] + 2.0, 3), end=round(p.marks["up"][0], 3),
                          subject=p.name, what=f"{p.name} lying {p.marks['down'][0]:.1f}-{p.marks['up'][0]:.1f} s")
                 for p in scripted if "down" in p.marks]  # fall_duration_threshold 2 s
    for p in scripted:
        if "down" in p.marks:
            _is_incident(p.marks["up"][0] - p.marks["down"][0], 2.0, f"{p.name} lying")
    return Scene(name="fall", task_type=FALL, description="four falls, two brief bends, a crouch, a sitter",
                 duration_sec=duration, objects=tuple(p.build() for p in scripted),
                 algo_config=_old_format("cam-fall", FALL, [], fall_duration_threshold=2, aspect_ratio_threshold=1.2),
                 rules=("fall",), incidents=tuple(sorted(incidents, key=attrgetter("start"))))


def people_counting() -> Scene:
    """A queue area with max_count 5: four people waiting, a crowd of eight for half a minute, then six for 17 s."""
    queue = {"id": "queue", "name": "排队区", "type": "polygon", "enabled": True,
             "points": [[260, 330], [1020, 330], [1120, 700], [160, 700]], "properties": {"max_count": 5}}
    w = Walker
    people = [
        # Phase A: four people arrive and wait.
        w("a1", t=2.0, x=-40, y=450).walk(400, 450, 80).wait(58.0, sway_px=4.0).walk(-40, 440, 80),
        w("a2", t=6.0, x=550, y=900).walk(550, 600, 70).wait(56.0, sway_px=4.0).walk(550, 900, 70),
        w("a3", t=10.0, x=1320, y=420).walk(700, 420, 90).wait(100.0, sway_px=4.0).walk(1320, 420, 90),
        w("a4", t=15.0, x=1320, y=560).walk(850, 560, 100).wait(95.0, sway_px=4.0).walk(1320, 560, 100),
        # Phase B: four more join, a crowd of eight; four leave from 60 s on.
        w("b1", t=28.0, x=-40, y=520).walk(480, 520, 90).wait(40.0, sway_px=4.0).walk(-40, 530, 90),
        w("b2", t=31.0, x=620, y=900).walk(620, 480, 80).wait(80.0, sway_px=4.0).walk(620, 900, 80),
        w("b3", t=34.0, x=780, y=900).walk(780, 650, 60).wait(75.0, sway_px=4.0).walk(780, 900, 60),
        w("b4", t=37.0, x=1320, y=450).walk(960, 450, 90).wait(35.0, sway_px=4.0).walk(1320, 460, 90),
        # Phase C: two more join the four left: six, over the limit again, until one leaves.
        w("c1", t=95.0, x=-40, y=600).walk(350, 600, 80).wait(25.0, sway_px=4.0).walk(-40, 600, 80),
        w("c2", t=98.0, x=-40, y=380).walk(450, 380, 80).wait(20.0, sway_px=4.0).walk(-40, 380, 80),
    ]
    objects = [p.build() for p in people]
    contains = region_contains(queue)
    duration = 135.0
    incidents = _region_wide(lambda t: count_in_region(objects, contains, t) > 5, 0.0, "people_count", "queue",
                             duration, "over max_count")
    return Scene(name="people_counting", task_type=COUNTING, description="a queue of 4, a crowd of 8 (max_count 5) "
                 "for ~30 s, then 6 for ~17 s", duration_sec=duration, objects=tuple(objects),
                 algo_config=_old_format("cam-people_counting", COUNTING, [queue], count_interval_sec=10),
                 rules=("people_count",), incidents=tuple(incidents), count_region="queue")


def _violation_scene(name: str, task_type: str, description: str, duration: float, people: list[SceneObject],
                     regions: list[dict[str, Any]], rule: str, label: str, need: float, **custom: Any) -> Scene:
    contains = region_contains(regions[0]) if regions else (lambda x, y: True)
    region_id = regions[0]["id"] if regions else ""

    def holds(obj: SceneObject, t: float) -> bool:
        foot = obj.foot_at(t)
        return foot is not None and obj.label_at(t) == label and _in_view(obj, t) and contains(*foot)

    incidents = _stays(people, holds, need, rule, region_id, duration, label)
    return Scene(name=name, task_type=task_type, description=description, duration_sec=duration,
                 objects=tuple(people), algo_config=_old_format(f"cam-{name}", task_type, regions, **custom),
                 rules=(rule,), incidents=tuple(incidents), fp_labels=(label,))


def helmet() -> Scene:
    """A service returning ``helmet`` / ``no_helmet`` boxes: two workers without a helmet, one taking it off for
    20 s, two with helmets, one misclassified for 0.4 s."""
    w = Walker
    people = [
        w("no-helmet-1", t=3.0, x=-40, y=500, label="no_helmet").walk(400, 520, 70).wait(8.0).walk(700, 600, 50)
        .wait(10.0).walk(1360, 580, 80).build(),
        w("helmet-2", t=0.0, x=900, y=400, label="helmet").wait(15.0).walk(1000, 500, 40).wait(20.0)
        .walk(850, 380, 40).wait(30.0).walk(1360, 400, 60).build(),
        w("helmet-3", t=10.0, x=1360, y=650, label="helmet").walk(200, 640, 60).wait(15.0).walk(-40, 600, 60)
        .build(),
        w("takes-off", t=30.0, x=-40, y=420, label="helmet").walk(600, 420, 80).wait(12.0).label("no_helmet")
        .wait(20.0).label("helmet").wait(10.0).walk(1360, 400, 80).build(),
        w("flicker", t=60.0, x=1360, y=550, label="helmet").walk(700, 555, 70).label("no_helmet").walk(672, 555, 70)
        .label("helmet").walk(-40, 560, 70).build(),
        w("no-helmet-fast", t=85.0, x=1360, y=350, label="no_helmet").walk(-40, 340, 120).build(),
    ]
    return _violation_scene("helmet", HELMET, "workers without helmets (service detections), one taking it off, "
                            "one misclassified briefly", 105.0, people, [], "no_helmet", "no_helmet", 2.0,
                            alert_delay=2)


def smoking() -> Scene:
    """A service returning ``smoking`` boxes, intermittently (the cigarette is not always visible): three smokers in
    the no-smoking zone, one outside it, one drinking from a bottle flagged for a second."""
    zone = {"id": "no_smoking", "name": "禁烟区", "type": "rectangle", "enabled": True,
            "points": [[150, 250], [1130, 700]]}
    w = Walker
    people = [
        w("smoker-1", t=2.0, x=-40, y=560).walk(420, 560, 70).wait(2.0).label("smoking").wait(30.0, sway_px=4.0)
        .label("person").wait(3.0).walk(-40, 560, 70).build(miss=0.3),
        w("smoker-walking", t=40.0, x=1360, y=450, label="smoking").walk(-40, 470, 45).build(miss=0.3),
        w("drinks", t=20.0, x=1360, y=620).walk(800, 620, 80).label("smoking").wait(1.0, sway_px=0)
        .label("person").walk(-40, 630, 80).build(),
        w("smoker-outside", t=55.0, x=1360, y=220).walk(1200, 220, 60).label("smoking").wait(20.0).label("person")
        .walk(1360, 215, 60).build(miss=0.3),
        w("smoker-3", t=70.0, x=640, y=900).walk(640, 480, 60).label("smoking").wait(15.0).label("person")
        .walk(640, 900, 60).build(miss=0.3),
    ]
    return _violation_scene("smoking", SMOKING, "three smokers in the zone (seen intermittently), one outside it, "
                            "one flagged for a second", 100.0, people, [zone], "smoking", "smoking", 3.0,
                            smoking_duration_threshold=3)


def build_scenes() -> list[Scene]:
    """Every scene, the first of each task type first (the quick test runs those)."""
    return [tripwire_crossings(), intrusion(), loitering(), off_post(), abandoned_bags(), fall(), people_counting(),
            helmet(), smoking(), tripwire_standing(), abandoned_passerby()]


def scenes_by_type(scenes: Iterable[Scene]) -> dict[str, list[Scene]]:
    out: dict[str, list[Scene]] = {}
    for scene in scenes:
        out.setdefault(scene.task_type, []).append(scene)
    return out


# --- the crowd the analytics are timed on ---------------------------------------------------------------------------


def crowd_scene(task_type: str, n: int = 20, duration: float = 60.0, seed: int = 1) -> Scene:
    """``n`` people wandering the whole frame for ``duration`` seconds (random waypoints at 40-120 px/s, pauses),
    under a config of ``task_type`` whose region covers the middle of the frame; no incidents (it is timed, not
    scored). Service-served types get their violation label; 物品遗留 also gets three bags left on the floor."""
    rng = random.Random(f"crowd:{task_type}:{seed}")
    label = {HELMET: "no_helmet", SMOKING: "smoking"}.get(task_type, "person")
    objects: list[SceneObject] = []
    for i in range(n):
        walker = Walker(f"c{i}", t=0.0, x=rng.uniform(60, 1220), y=rng.uniform(260, 700), label=label)
        while walker.t < duration:
            walker.walk(rng.uniform(60, 1220), rng.uniform(260, 700), rng.uniform(40, 120))
            if rng.random() < 0.3:
                walker.wait(rng.uniform(1, 4))
        objects.append(walker.build())
    if task_type == ABANDONED:
        for j, (x, y) in enumerate(((300, 500), (700, 620), (1000, 420))):
            objects.append(Prop(f"bag{j}", "backpack", 40, 50).at(0.0, x, y).stay(duration + 60).build())
    area = {"id": "middle", "type": "rectangle", "points": [[160, 200], [1120, 700]], "properties": {"max_count": 10}}
    regions = [GATE] if task_type == TRIPWIRE else [] if task_type in (FALL, HELMET) else [area]
    return Scene(name=f"crowd-{n}", task_type=task_type, description=f"{n} people wandering", duration_sec=duration,
                 objects=tuple(objects), algo_config=_old_format(f"cam-crowd-{n}", task_type, regions),
                 rules=(), incidents=(), fp_labels=(label,))
