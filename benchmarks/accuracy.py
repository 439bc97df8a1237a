"""The accuracy harness: scripted scenes with known ground truth through the analytics, scored per task type.

``python -m framewatch.benchmarks.accuracy [--quick] [--out DIR] [--seeds N] [--strict] [--no-progress]``

What runs. Every scene of ``scenes.build_scenes()`` (at least one per built-in task type), for each detector noise
profile (``PROFILES``), sampling schedule (``regular``, ``irregular``), sampling rate (``RATES``: 10 fps down to 0.5,
i.e. down to each type's floor and below it) and seed: an emulated detector (``EmulatedDetector``) turns the scene's
true boxes into detections at each sample time, and ``CameraAnalytics.step(detections, t, w, h)`` (the analytics'
pure core, as the camera's analytics actor drives it) turns them into event records. Nothing of the analytics is
changed or tuned here: each scene's ``algo_config`` is the old format an operator would write, decoded by
``tasktypes.decode_task_params``; the type's defaults apply to whatever it does not set.

The emulated detector. Each object in view is detected with probability ``1 - miss`` (times ``1 -`` the object's
own extra miss, e.g. a cigarette seen only now and then); an object with less than ``min_visible`` of its box in the
frame is not detected. Its box is the true box with independent Gaussian jitter of ``jitter_px`` (standard
deviation) on each coordinate, clipped to the frame. False positives come as short episodes (a Poisson process of
``fp_per_sec``, each lasting ``fp_duration_sec`` at one random spot, with a person-like or bag-like box of one of the
scene's ``fp_labels``), seen in each sample of the episode with probability ``fp_detect``. Profiles: ``noisy`` (10%
missed, 5 px jitter: the issue's condition, on which the targets are judged), ``noisy+fp`` (the same with 0.1 false
positive episodes per second) and ``clean`` (the true boxes: what remains is the analytics' and the sampling's own
error; ``CLEAN_SEEDS`` seeds, only the schedule's phase varies). Seeded: a run is reproducible from (scene, profile,
schedule, rate, seed).

Schedules, as backpressure gives them. ``regular``: every ``1 / fps`` s from a random phase. ``irregular``: gaps of
``1 / fps`` times U(0.4, 1.6), and about every ``HOLE_EVERY_SEC`` s a hole of 1-2 s more (a backlog); its actual mean
rate is lower than the nominal one and is reported.

Scores, per run, summed per (profile, scene or task type, schedule, rate):

- alerts: the records with ``event_state`` ``start`` or ``instant`` of the scene's rules (what reaches the alert
  sink as a new alert; ``update`` records are counted apart, ``count_report`` instants are dashboard records);
- identity: an alert's detection (the record's first detection, at its time) is the scene object of that label whose
  true box overlaps it most (IoU >= 0.3); ``?`` when none does (a false positive, or a track that jumped to the
  wrong place), unknown when the record has no detection (its track was coasting, or the event is region-wide);
- matching (``match_alerts``): an alert matches an incident of the same rule (and region; direction for crossings;
  object, unless the alert's is unknown) when its start falls in ``[incident.start - tol, incident.end + tol]``,
  ``tol = max(1 s, one nominal sample interval)`` (a start cannot be placed finer than the samples). Each incident
  and each alert is matched at most once, greedily: each alert in time order to the compatible open incident whose
  window ends first (the largest matching for intervals). precision = matched / alerts, recall = matched /
  incidents, alerts per incident = alerts / incidents. An unmatched alert inside a compatible incident's window is a
  *duplicate* (a second alert for one incident); outside every window it is *spurious*. An incident has *exactly
  one* alert when it is matched and has no duplicate. latency: matched alert's start - incident.start;
- count error: tripwire, per direction ``sum |counted - true| / sum true`` over runs (and on the total of both
  directions; a scene where nobody crosses shows ``+n``, the crossings counted); people counting, the
  ``count_report`` records' count of the region against the true count at their time, ``sum |reported - true| /
  sum true``;
- cost: the time spent in ``step`` alone (``time.perf_counter_ns``), mean per step; and separately
  (``measure_cost``) for every task type on 20 people wandering (``scenes.crowd_scene``) at 5 fps.

The report: a table on stdout per profile (scene x rate, regular and irregular side by side, grouped by task type),
the issue's targets with their figures (``evaluate_targets``), and ``report.json`` + ``table.txt`` in ``--out``
(default ``benchmarks/out/accuracy/``, git-ignored; overwritten by each run). ``--quick``: one seed, profiles
``noisy`` and ``noisy+fp``, a 20 s cost scene (about 20 s in all); the full run: ``DEFAULT_SEEDS`` seeds, three
profiles (a few minutes). Exit code 0 after a run; with ``--strict``, 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec

from framewatch.actors.analytics.engine import CameraAnalytics
from framewatch.actors.analytics.events import EventRecord
from framewatch.actors.analytics.tasktypes import TASK_TYPES, decode_task_params
from framewatch.actors.core.messages import Detection

from .scenes import (BAG_LABELS, Incident, Scene, bag_size, build_scenes, count_in_region, crowd_scene, person_size,
                     region_contains)

__all__ = [
    "CLEAN", "DEFAULT_OUT", "NOISY", "NOISY_FP", "PROFILES", "RATES", "Alert", "EmulatedDetector", "Match",
    "NoiseProfile", "RunResult", "Schedule", "Tally", "alerts_of", "build_report", "evaluate_targets", "identify_in",
    "main", "match_alerts", "measure_cost", "render_table", "run", "run_scene", "score_run",
]

RATES = (10.0, 5.0, 3.0, 2.0, 1.0, 0.5)
"""Sampling rates (fps): from what a camera gets on an idle box down to each type's floor and below."""

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "accuracy"
DEFAULT_SEEDS = 8
DEFAULT_TOLERANCE_SEC = 1.0

HOLE_EVERY_SEC = 15.0
HOLE_SEC = (1.0, 2.0)
IRREGULAR_SPREAD = (0.4, 1.6)

#: The types the issue sets "exactly one event per incident, precision and recall >= 0.95 at the floor" for.
EVENT_TARGET_TYPES = ("intrusion", "loitering", "off_post", "abandoned_object", "fall")

Kind = Literal["regular", "irregular"]


# --- the emulated detector -----------------------------------------------------------------------------------------


class NoiseProfile(msgspec.Struct, frozen=True, kw_only=True):
    """How far the emulated detector is from the truth."""

    name: str
    jitter_px: float = 5.0
    """Standard deviation of the Gaussian noise on each box coordinate, pixels."""
    miss: float = 0.10
    """Probability that an object in view is not detected in a sample."""
    fp_per_sec: float = 0.1
    """False-positive episodes per second of scene."""
    fp_duration_sec: tuple[float, float] = (0.1, 0.6)
    """Each episode lasts U(lo, hi) seconds at one spot."""
    fp_detect: float = 0.8
    """Probability that an episode shows in a sample taken during it."""
    min_visible: float = 0.3
    """Objects with less than this fraction of their box in the frame are not detected."""


NOISY = NoiseProfile(name="noisy", fp_per_sec=0.0)
"""The issue's condition for its targets: 10% missed detections, 5 px jitter."""
NOISY_FP = NoiseProfile(name="noisy+fp")
"""The same with short-lived false positives."""
CLEAN = NoiseProfile(name="clean", jitter_px=0.0, miss=0.0, fp_per_sec=0.0)
"""The true boxes: what is left is the analytics' own error (and the sampling's)."""
PROFILES = (NOISY, NOISY_FP, CLEAN)
CLEAN_SEEDS = 2
"""A noiseless profile varies only in the schedule's phase: fewer seeds do."""


class _FalsePositive(NamedTuple):
    start: float
    end: float
    label: str
    box: tuple[float, float, float, float]


class EmulatedDetector:
    """The scene's true boxes at a sample time, with the profile's jitter, misses and false positives."""

    def __init__(self, scene: Scene, profile: NoiseProfile, rng: random.Random) -> None:
        self._scene = scene
        self._profile = profile
        self._rng = rng
        self.false_positives = self._draw_false_positives()

    def _draw_false_positives(self) -> list[_FalsePositive]:
        p, rng, scene = self._profile, self._rng, self._scene
        out: list[_FalsePositive] = []
        if p.fp_per_sec <= 0 or not scene.fp_labels:
            return out
        t = 0.0
        while True:
            t += rng.expovariate(p.fp_per_sec)
            if t >= scene.duration_sec:
                return out
            label = rng.choice(scene.fp_labels)
            x, y = rng.uniform(40, scene.width - 40), rng.uniform(0.35 * scene.height, scene.height)
            w, h = bag_size(y) if label in BAG_LABELS else person_size(y)
            out.append(_FalsePositive(t, t + rng.uniform(*p.fp_duration_sec), label, (x - w / 2, y - h, x + w / 2, y)))

    def detect(self, t: float) -> list[Detection]:
        p, rng, scene = self._profile, self._rng, self._scene
        detections: list[Detection] = []
        for obj in scene.objects:
            box = obj.box_at(t)
            if box is None or _visible(box, scene.width, scene.height) < p.min_visible:
                continue
            if rng.random() < 1.0 - (1.0 - p.miss) * (1.0 - obj.miss):
                continue
            detection = self._noisy(obj.label_at(t), box, rng.uniform(0.55, 0.95))
            if detection is not None:
                detections.append(detection)
        for fp in self.false_positives:
            if fp.start <= t <= fp.end and rng.random() < p.fp_detect:
                detection = self._noisy(fp.label, fp.box, rng.uniform(0.5, 0.8))
                if detection is not None:
                    detections.append(detection)
        rng.shuffle(detections)  # a detector's output order says nothing about identity
        return detections

    def _noisy(self, label: str, box: tuple[float, float, float, float], score: float) -> Detection | None:
        j, rng, w, h = self._profile.jitter_px, self._rng, self._scene.width, self._scene.height
        x1, y1, x2, y2 = ((c + rng.gauss(0.0, j)) for c in box) if j > 0 else box
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        bx = (round(min(max(x1, 0.0), w)), round(min(max(y1, 0.0), h)),
              round(min(max(x2, 0.0), w)), round(min(max(y2, 0.0), h)))
        if bx[2] - bx[0] < 2 or bx[3] - bx[1] < 2:
            return None
        return Detection(label, round(score, 3), bx)


def _visible(box: tuple[float, float, float, float], width: int, height: int) -> float:
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    if area <= 0:
        return 0.0
    return (max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))) / area


# --- sampling schedules --------------------------------------------------------------------------------------------


class Schedule(msgspec.Struct, frozen=True):
    kind: Kind
    fps: float

    def times(self, duration: float, rng: random.Random) -> list[float]:
        """Sample (capture) times in ``[0, duration)``, ascending."""
        interval = 1.0 / self.fps
        t = rng.uniform(0.0, interval)
        out: list[float] = []
        while t < duration:
            out.append(round(t, 6))
            if self.kind == "regular":
                t += interval
                continue
            t += interval * rng.uniform(*IRREGULAR_SPREAD)
            if rng.random() < min(1.0, interval / HOLE_EVERY_SEC):
                t += rng.uniform(*HOLE_SEC)
        return out


# --- scoring -------------------------------------------------------------------------------------------------------


class Alert(NamedTuple):
    """A record that reaches the alert sink as a new alert: the start of an event, or an instant."""

    at: float
    rule: str
    region_id: str = ""
    direction: str = ""
    event_id: str = ""
    subject: str = ""
    """The scene object its detection is (``SceneObject.name``); ``"?"`` when its detection is no object (a false
    positive); ``""`` when it has no detection (its track was coasting, or a region-wide event)."""


def alerts_of(records: Iterable[EventRecord], rules: Iterable[str],
              identify: Callable[[EventRecord], str] | None = None) -> list[Alert]:
    wanted = frozenset(rules)
    return [Alert(r.started_at, r.rule, r.region_id, r.direction, r.event_id,
                  identify(r) if identify is not None and r.subject else "")
            for r in records if r.event_state in ("start", "instant") and r.rule in wanted]


def identify_in(scene: Scene, last_seen: dict[str, tuple[float, Detection]] | None = None,
                min_iou: float = 0.3) -> Callable[[EventRecord], str]:
    """Which scene object a record is about: the object of its (first) detection's label whose true box overlaps
    that detection most at the record's time, with IoU at least ``min_iou``. A record without a detection (its
    track was coasting) is identified by ``last_seen[event_id]``: the track's last matched detection and its time,
    when the caller kept it; otherwise it is unknown (``""``)."""

    def identify(record: EventRecord) -> str:
        if record.detections:
            at, det = record.at, record.detections[0]
        elif last_seen is not None and record.event_id in last_seen:
            at, det = last_seen[record.event_id]
        else:
            return ""
        best, best_iou = "?", min_iou
        for obj in scene.objects:
            if obj.label_at(at) != det.label:
                continue
            box = obj.box_at(at)
            if box is not None and (iou := _iou(det.box, box)) >= best_iou:
                best, best_iou = obj.name, iou
        return best

    return identify


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Match(NamedTuple):
    pairs: list[tuple[int, int]]
    """(alert index, incident index), in the order of the alerts' times."""
    duplicates: dict[int, int]
    """Unmatched alert index -> the incident (index) whose window it fell in: a second alert for one incident."""
    spurious: list[int]
    """Unmatched alerts outside every compatible incident's window."""
    missed: list[int]
    """Incidents no alert matched."""

    @property
    def exactly_one(self) -> list[int]:
        """Incidents matched and without a duplicate."""
        dup = set(self.duplicates.values())
        return [i for _, i in self.pairs if i not in dup]


def _compatible(alert: Alert, incident: Incident, tolerance: float) -> bool:
    return (alert.rule == incident.rule
            and (incident.region_id is None or alert.region_id == incident.region_id)
            and (incident.subject is None or not alert.subject or alert.subject == incident.subject)
            and (not incident.direction or alert.direction == incident.direction)
            and incident.start - tolerance <= alert.at <= incident.end + tolerance)


def match_alerts(alerts: Sequence[Alert], incidents: Sequence[Incident],
                 tolerance_sec: float = DEFAULT_TOLERANCE_SEC) -> Match:
    """Alerts against incidents (see the module docstring: matching)."""
    order = sorted(range(len(alerts)), key=lambda i: alerts[i].at)
    free = set(range(len(incidents)))
    pairs: list[tuple[int, int]] = []
    unmatched: list[int] = []
    for a in order:
        candidates = [i for i in free if _compatible(alerts[a], incidents[i], tolerance_sec)]
        if not candidates:
            unmatched.append(a)
            continue
        best = min(candidates, key=lambda i: (incidents[i].end, incidents[i].start, i))
        free.discard(best)
        pairs.append((a, best))
    duplicates: dict[int, int] = {}
    spurious: list[int] = []
    for a in unmatched:
        windows = [i for i in range(len(incidents)) if _compatible(alerts[a], incidents[i], tolerance_sec)]
        if not windows:
            spurious.append(a)
            continue
        before = [i for i in windows if incidents[i].start <= alerts[a].at]
        duplicates[a] = (max(before, key=lambda i: incidents[i].start) if before
                         else min(windows, key=lambda i: incidents[i].start))
    return Match(pairs, duplicates, spurious, sorted(free))


class Tally(msgspec.Struct, kw_only=True):
    """Sums over runs; ``summary()`` turns them into rates. Mutable: ``add`` merges another tally into this one."""

    runs: int = 0
    steps: int = 0
    scene_sec: float = 0.0
    incidents: int = 0
    alerts: int = 0
    matched: int = 0
    exactly_one: int = 0
    duplicates: int = 0
    spurious: int = 0
    updates: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    tripwire: bool = False
    true_in: int = 0
    true_out: int = 0
    counted_in: int = 0
    counted_out: int = 0
    err_in: int = 0
    err_out: int = 0
    err_total: int = 0
    reports: int = 0
    report_true: int = 0
    report_err: int = 0
    step_ns: int = 0

    def add(self, other: Tally) -> Tally:
        for field in self.__struct_fields__:
            mine, theirs = getattr(self, field), getattr(other, field)
            if field == "latency_max":
                setattr(self, field, max(mine, theirs))
            elif field == "tripwire":
                setattr(self, field, mine or theirs)
            else:
                setattr(self, field, mine + theirs)
        return self

    def summary(self) -> dict[str, Any]:
        count_error: dict[str, float | None] | float | None = None
        if self.tripwire:
            true_total = self.true_in + self.true_out
            count_error = {"in": _div(self.err_in, self.true_in), "out": _div(self.err_out, self.true_out),
                           "total": _div(self.err_total, true_total)}
        elif self.reports:
            count_error = _div(self.report_err, self.report_true)
        return {
            "runs": self.runs, "incidents": self.incidents, "alerts": self.alerts, "matched": self.matched,
            "precision": _div(self.matched, self.alerts), "recall": _div(self.matched, self.incidents),
            "alerts_per_incident": _div(self.alerts, self.incidents),
            "exactly_one": _div(self.exactly_one, self.incidents),
            "duplicates": self.duplicates, "spurious": self.spurious, "missed": self.incidents - self.matched,
            "updates_per_incident": _div(self.updates, self.incidents),
            "latency_mean_sec": _div(self.latency_sum, self.matched),
            "latency_max_sec": round(self.latency_max, 3) if self.matched else None,
            "count_error": count_error,
            "counted": {"in": self.counted_in, "out": self.counted_out, "true_in": self.true_in,
                        "true_out": self.true_out} if self.tripwire else None,
            "count_reports": self.reports or None,
            "effective_fps": _div(self.steps, self.scene_sec),
            "step_us_mean": _div(self.step_ns / 1000, self.steps, 1),
        }

    def worst_count_error(self) -> float | None:
        summary = self.summary()["count_error"]
        if isinstance(summary, dict):
            values = [v for v in summary.values() if v is not None]
            return max(values) if values else None
        return summary


def _div(a: float, b: float, nd: int = 4) -> float | None:
    return round(a / b, nd) if b else None


class RunResult(NamedTuple):
    tally: Tally
    details: dict[str, Any]


def score_run(scene: Scene, records: Sequence[EventRecord], *, steps: int = 0, step_ns: int = 0,
              tolerance_sec: float = DEFAULT_TOLERANCE_SEC,
              last_seen: dict[str, tuple[float, Detection]] | None = None) -> RunResult:
    """One run's records against the scene's truth (``last_seen``: see ``identify_in``)."""
    alerts = alerts_of(records, scene.rules, identify_in(scene, last_seen))
    incidents = scene.incidents
    m = match_alerts(alerts, incidents, tolerance_sec)
    latencies = [alerts[a].at - incidents[i].start for a, i in m.pairs]
    tally = Tally(runs=1, steps=steps, scene_sec=scene.duration_sec, incidents=len(incidents), alerts=len(alerts),
                  matched=len(m.pairs), exactly_one=len(m.exactly_one), duplicates=len(m.duplicates),
                  spurious=len(m.spurious),
                  updates=sum(r.event_state == "update" and r.rule in scene.rules for r in records),
                  latency_sum=sum(latencies), latency_max=max(latencies, default=0.0), step_ns=step_ns)
    if scene.true_counts is not None:
        c_in = sum(a.direction == "in" for a in alerts)
        c_out = sum(a.direction == "out" for a in alerts)
        t_in, t_out = scene.true_counts.get("in", 0), scene.true_counts.get("out", 0)
        tally.tripwire = True
        tally.true_in, tally.true_out, tally.counted_in, tally.counted_out = t_in, t_out, c_in, c_out
        tally.err_in, tally.err_out = abs(c_in - t_in), abs(c_out - t_out)
        tally.err_total = abs(c_in + c_out - t_in - t_out)
    report_rows: list[tuple[float, int, int]] = []
    if scene.count_region is not None:
        region = next(r for r in scene.algo_config["regions"] if r["id"] == scene.count_region)
        contains = region_contains(region)
        for r in records:
            if r.rule == "count_report" and scene.count_region in r.counts:
                truth = count_in_region(scene.objects, contains, r.at)
                report_rows.append((r.at, r.counts[scene.count_region], truth))
        tally.reports = len(report_rows)
        tally.report_true = sum(row[2] for row in report_rows)
        tally.report_err = sum(abs(row[1] - row[2]) for row in report_rows)
    details = {
        "missed": [incidents[i].what for i in m.missed],
        "duplicates": [[round(alerts[a].at, 2), incidents[i].what] for a, i in sorted(m.duplicates.items())],
        "spurious": [[round(alerts[a].at, 2), alerts[a].rule, alerts[a].region_id, alerts[a].direction,
                      alerts[a].subject] for a in m.spurious],
    }
    if report_rows:
        details["count_reports"] = [[round(t, 2), got, truth] for t, got, truth in report_rows]
    return RunResult(tally, details)


# --- running -------------------------------------------------------------------------------------------------------


def _rng(*parts: object) -> random.Random:
    return random.Random("|".join(map(str, parts)))  # str seeds hash deterministically (sha512), across runs


def run_scene(scene: Scene, profile: NoiseProfile, schedule: Schedule, seed: int,
              tolerance_sec: float = DEFAULT_TOLERANCE_SEC) -> RunResult:
    """Feed one scene through the emulated detector and ``CameraAnalytics.step``; score its records."""
    tolerance_sec = max(tolerance_sec, 1.0 / schedule.fps)  # a start cannot be placed finer than a sample apart
    key = (scene.name, profile.name, schedule.kind, schedule.fps, seed)
    detector = EmulatedDetector(scene, profile, _rng("detector", *key))
    times = schedule.times(scene.duration_sec, _rng("schedule", *key))
    params = decode_task_params(scene.task_type, scene.algo_config)
    camera = CameraAnalytics(scene.name, scene.task_type, params, id_prefix=scene.name)
    records: list[EventRecord] = []
    matched: dict[int, tuple[float, Detection]] = {}  # track id -> its last matched box, to identify coasting starts
    last_seen: dict[str, tuple[float, Detection]] = {}
    step_ns = 0
    clock = time.perf_counter_ns
    for t in times:
        detections = detector.detect(t)
        started = clock()
        step = camera.step(detections, t, scene.width, scene.height)
        step_ns += clock() - started
        for track in step.tracks:
            if track.matched:
                matched[track.id] = (t, Detection(track.label, track.score, tuple(round(v) for v in track.box)))
        for r in step.records:
            if r.event_state in ("start", "instant") and not r.detections and r.subject.isdigit():
                seen = matched.get(int(r.subject))
                if seen is not None:
                    last_seen[r.event_id] = seen
        records.extend(step.records)
    records.extend(camera.close(scene.duration_sec))
    return score_run(scene, records, steps=len(times), step_ns=step_ns, tolerance_sec=tolerance_sec,
                     last_seen=last_seen)


def _type_key(task_type: str) -> str:
    return TASK_TYPES[task_type].key


def _floor(task_type: str) -> float:
    return TASK_TYPES[task_type].default_min_fps


def run(scenes: Sequence[Scene], *, profiles: Sequence[NoiseProfile] = (NOISY,), rates: Sequence[float] = RATES,
        kinds: Sequence[Kind] = ("regular", "irregular"), seeds: int = 1,
        tolerance_sec: float = DEFAULT_TOLERANCE_SEC,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the matrix; returns ``{"by_type": [...], "by_scene": [...], "runs": [...]}`` (rows with their keys and
    ``Tally.summary()`` figures)."""
    by_type: dict[tuple[str, str, str, float], Tally] = {}
    by_scene: dict[tuple[str, str, str, float], Tally] = {}
    runs: list[dict[str, Any]] = []
    for profile in profiles:
        n_seeds = min(seeds, CLEAN_SEEDS) if _noiseless(profile) else seeds
        for scene in scenes:
            began = time.monotonic()
            for kind in kinds:
                for fps in rates:
                    for seed in range(n_seeds):
                        result = run_scene(scene, profile, Schedule(kind, fps), seed, tolerance_sec)
                        type_key = (profile.name, _type_key(scene.task_type), kind, fps)
                        by_type.setdefault(type_key, Tally()).add(result.tally)
                        by_scene.setdefault((profile.name, scene.name, kind, fps), Tally()).add(result.tally)
                        summary = result.tally.summary()
                        runs.append({"profile": profile.name, "scene": scene.name, "schedule": kind, "fps": fps,
                                     "seed": seed, "effective_fps": summary["effective_fps"],
                                     "alerts": summary["alerts"], "incidents": summary["incidents"],
                                     "matched": summary["matched"], "counted": summary["counted"],
                                     **{k: v for k, v in result.details.items() if v}})
            if progress is not None:
                progress(f"{profile.name:8} {scene.name:20} {time.monotonic() - began:5.1f} s")

    def rows(table: dict[tuple[str, str, str, float], Tally], name: str) -> list[dict[str, Any]]:
        return [{"profile": p, name: n, "schedule": k, "fps": f, **t.summary(),
                 "worst_count_error": t.worst_count_error()} for (p, n, k, f), t in table.items()]

    return {"by_type": rows(by_type, "type"), "by_scene": rows(by_scene, "scene"), "runs": runs}


def _noiseless(profile: NoiseProfile) -> bool:
    return not (profile.jitter_px or profile.miss or profile.fp_per_sec)


def measure_cost(task_types: Iterable[str] = tuple(TASK_TYPES), *, people: int = 20, duration_sec: float = 60.0,
                 fps: float = 5.0, profile: NoiseProfile = NOISY, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Analytics cost per step (``CameraAnalytics.step`` alone) on ``people`` wandering, per task type."""
    out: dict[str, dict[str, Any]] = {}
    clock = time.perf_counter_ns
    for task_type in task_types:
        scene = crowd_scene(task_type, n=people, duration=duration_sec)
        params = decode_task_params(task_type, scene.algo_config)
        detector = EmulatedDetector(scene, profile, _rng("cost-detector", task_type, seed))
        times = Schedule("regular", fps).times(duration_sec, _rng("cost-schedule", task_type, seed))
        samples = [(t, detector.detect(t)) for t in times]
        warm = CameraAnalytics("warm-up", task_type, params, id_prefix="warm")
        for t, detections in samples[:20]:
            warm.step(detections, t, scene.width, scene.height)
        camera = CameraAnalytics(scene.name, task_type, params, id_prefix=scene.name)
        costs: list[int] = []
        tracks: list[int] = []
        for t, detections in samples:
            started = clock()
            step = camera.step(detections, t, scene.width, scene.height)
            costs.append(clock() - started)
            tracks.append(len(step.tracks))
        costs.sort()
        out[TASK_TYPES[task_type].key] = {
            "task_type": task_type, "steps": len(costs), "fps": fps,
            "mean_us": round(sum(costs) / len(costs) / 1000, 1),
            "p50_us": round(costs[len(costs) // 2] / 1000, 1),
            "p95_us": round(costs[min(len(costs) - 1, int(0.95 * len(costs)))] / 1000, 1),
            "max_us": round(costs[-1] / 1000, 1),
            "mean_tracks": round(sum(tracks) / len(tracks), 1), "max_tracks": max(tracks),
            "mean_detections": round(sum(len(d) for _, d in samples) / len(samples), 1),
        }
    return out


# --- targets -------------------------------------------------------------------------------------------------------


def _row(rows: list[dict[str, Any]], name_key: str, name: str, profile: str, kind: str,
         fps: float) -> dict[str, Any] | None:
    for row in rows:
        if (row[name_key], row["profile"], row["schedule"], row["fps"]) == (name, profile, kind, fps):
            return row
    return None


def evaluate_targets(result: dict[str, Any], cost: dict[str, dict[str, Any]], rates: Sequence[float] = RATES,
                     profile: str = NOISY.name, also: Sequence[str] = (NOISY_FP.name,)) -> list[dict[str, Any]]:
    """The issue's targets, each ``{"target", "ok", "figure", ...}``: judged on ``profile`` (the issue's
    condition), with the figures of the ``also`` profiles beside them (``figure_<profile>``)."""
    by_type, by_scene = result["by_type"], result["by_scene"]
    present = {row["profile"] for row in by_type}
    targets: list[dict[str, Any]] = []

    crossing_scenes = [s["scene"] for s in by_scene if s["counted"] is not None
                       and s["counted"]["true_in"] + s["counted"]["true_out"] > 0]

    def tripwire_count(prof: str, kind: str) -> tuple[float, float, str] | None:
        """The worst count error of the scenes with crossings, at >= 3 fps: (error, fps, direction)."""
        worst: tuple[float, float, str] | None = None
        for fps in (f for f in rates if f >= 3.0):
            for scene in dict.fromkeys(crossing_scenes):
                row = _row(by_scene, "scene", scene, prof, kind, fps)
                if row is None or row["count_error"] is None:
                    continue
                for direction, value in row["count_error"].items():
                    if value is not None and (worst is None or value > worst[0]):
                        worst = (value, fps, direction)
        return worst

    def tripwire_figure(prof: str) -> str:
        parts = []
        for kind in ("regular", "irregular"):
            w = tripwire_count(prof, kind)
            if w is not None:
                parts.append(f"{kind}: worst {w[0]:.1%} ({w[2]}, {w[1]:g} fps)")
        return "; ".join(parts) or "not run"

    reg = tripwire_count(profile, "regular")
    if reg is not None:
        targets.append({"target": "tripwire count error <= 2% at >= 3 fps, 10% missed, 5 px jitter",
                        "ok": reg[0] <= 0.02, "figure": tripwire_figure(profile),
                        **{f"figure_{p}": tripwire_figure(p) for p in also if p in present}})

    def standing(prof: str) -> tuple[bool, str]:
        ok, counted_at = True, []
        for kind in ("regular", "irregular"):
            for fps in rates:
                row = _row(by_scene, "scene", "tripwire_standing", prof, kind, fps)
                if row is None:
                    continue
                counted = row["counted"]["in"] + row["counted"]["out"]
                if counted and fps >= _floor("绊线人数统计"):
                    ok = False
                if counted:
                    counted_at.append(f"{counted} in {row['runs']} runs at {fps:g} fps {kind}")
        return ok, "counted 0 at every rate" if not counted_at else "counted " + "; ".join(counted_at)

    if any(r["scene"] == "tripwire_standing" for r in by_scene):
        ok, figure = standing(profile)
        targets.append({"target": "no count from people standing on, or walking along, the line (rates >= 3 fps)",
                        "ok": ok, "figure": figure,
                        **{f"figure_{p}": standing(p)[1] for p in also if p in present}})

    for key in EVENT_TARGET_TYPES:
        task_type = next(name for name, spec in TASK_TYPES.items() if spec.key == key)
        floor = _floor(task_type)
        row = _row(by_type, "type", key, profile, "regular", floor)
        if row is None:
            continue

        def event_figure(prof: str) -> str:
            parts = []
            for kind in ("regular", "irregular"):
                r = _row(by_type, "type", key, prof, kind, floor)
                if r is not None:
                    parts.append(f"{kind}: P {_f(r['precision'])} R {_f(r['recall'])} exactly-one "
                                 f"{_f(r['exactly_one'])} alerts/incident {_f(r['alerts_per_incident'])} "
                                 f"({r['incidents']} incidents, {r['duplicates']} duplicate, {r['spurious']} "
                                 f"spurious, {r['missed']} missed)")
            return "; ".join(parts)

        p, r, one = row["precision"], row["recall"], row["exactly_one"]
        ok = p is not None and r is not None and p >= 0.95 and r >= 0.95 and one == 1.0
        scenes = [s for s in by_scene if s["profile"] == profile and s["schedule"] == "regular"
                  and s["fps"] == floor and s["scene"] in _scenes_of_type(result, key)]
        targets.append({"target": f"{key}: exactly one event per incident at the floor ({floor:g} fps), "
                                  "precision and recall >= 0.95", "ok": ok, "figure": event_figure(profile),
                        **{f"figure_{q}": event_figure(q) for q in also if q in present},
                        "scenes": {s["scene"]: {"precision": s["precision"], "recall": s["recall"],
                                                "exactly_one": s["exactly_one"], "duplicates": s["duplicates"],
                                                "spurious": s["spurious"], "missed": s["missed"]} for s in scenes}})

    if cost:
        worst_key = max(cost, key=lambda k: cost[k]["mean_us"])
        c = cost[worst_key]
        targets.append({"target": "analytics cost per inferred frame < 1 ms for 20 tracks",
                        "ok": all(v["mean_us"] < 1000 for v in cost.values()),
                        "figure": f"worst {worst_key}: mean {c['mean_us']:.0f} us, p95 {c['p95_us']:.0f} us "
                                  f"({c['mean_tracks']:g} tracks on average)"})
    return targets


def _scenes_of_type(result: dict[str, Any], key: str) -> set[str]:
    return set(result.get("scene_types", {}).get(key, []))


def _f(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


# --- the table -----------------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _cnt(row: dict[str, Any]) -> str:
    """The count error; for a tripwire scene where nobody crosses, ``+n``: the crossings counted."""
    counted = row.get("counted")
    if counted is not None and counted["true_in"] + counted["true_out"] == 0:
        return f"+{counted['in'] + counted['out']}"
    return _pct(row["worst_count_error"])


def render_table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    conf = report["config"]
    by_scene = report["result"]["by_scene"]
    types = [spec.key for spec in TASK_TYPES.values()]
    for profile in conf["profiles"]:
        name = profile["name"]
        if profile["fp_per_sec"] or profile["miss"] or profile["jitter_px"]:
            noise = f"box jitter sd {profile['jitter_px']:g} px, {profile['miss']:.0%} missed, "
            noise += (f"false positives {profile['fp_per_sec']:g}/s lasting {profile['fp_duration_sec'][0]:g}-"
                      f"{profile['fp_duration_sec'][1]:g} s" if profile["fp_per_sec"] else "no false positives")
        else:
            noise = "true boxes, nothing missed, no false positives"
        seeds = min(conf["seeds"], CLEAN_SEEDS) if not (profile["fp_per_sec"] or profile["miss"]
                                                        or profile["jitter_px"]) else conf["seeds"]
        lines.append(f"profile {name}: {noise}; {seeds} seed(s), tolerance max({conf['tolerance_sec']:g} s, "
                     "1 sample interval)")
        lines.append("  P precision  R recall  cnt count error (tripwire: worst direction, +n: counted where nobody "
                     "crosses; counting: count reports)")
        lines.append("  a/i alerts per incident")
        lines[-1] += ("  1x incidents with exactly one alert  lat mean delay after the incident's start (s)  "
                      "fps: * floor, < below")
        head = (f"  {'scene':18} {'fps':>5} | {'P':>5} {'R':>5} {'cnt':>6} {'a/i':>5} {'1x':>5} {'lat':>5} | "
                f"{'(fps)':>6} {'P':>5} {'R':>5} {'cnt':>6} {'a/i':>5} {'1x':>5}")
        lines.append(f"  {'':18} {'':5} | {'regular':<38}| irregular (actual mean fps)")
        lines.append(head)
        lines.append("  " + "-" * (len(head) - 2))
        for key in types:
            task_type = next(n for n, s in TASK_TYPES.items() if s.key == key)
            floor = _floor(task_type)
            names = [sc["name"] for sc in report["scenes"] if sc["type"] == key]
            if not any(r["profile"] == name and r["scene"] in names for r in by_scene):
                continue
            lines.append(f"  {key} ({task_type}), floor {floor:g} fps")
            for scene in names:
                for fps in conf["rates"]:
                    reg = _row(by_scene, "scene", scene, name, "regular", fps)
                    irr = _row(by_scene, "scene", scene, name, "irregular", fps)
                    mark = "*" if fps == floor else "<" if fps < floor else " "
                    cells = [f"  {scene:18} {fps:>4g}{mark}"]  # width 5, as "fps" above
                    for row, with_lat in ((reg, True), (irr, False)):
                        if row is None:
                            cells.append(" " * (38 if with_lat else 40))
                            continue
                        prefix = "" if with_lat else f"({row['effective_fps']:>4.1f})"
                        cell = (f"{prefix}{_f(row['precision']):>5} {_f(row['recall']):>5} "
                                f"{_cnt(row):>6} {_f(row['alerts_per_incident']):>5} "
                                f"{_f(row['exactly_one']):>5}")
                        if with_lat:
                            cell += f" {_f(row['latency_mean_sec'], 1):>5}"
                        cells.append(cell)
                    lines.append(" | ".join(cells))
            lines.append("")
    cost = report.get("cost") or {}
    if cost:
        lines.append(f"analytics cost per step, {next(iter(cost.values()))['steps']} steps of "
                     f"{report['config']['cost_people']} people at {next(iter(cost.values()))['fps']:g} fps "
                     "(noisy detector):")
        lines.append(f"  {'type':17} {'mean us':>8} {'p95 us':>8} {'max us':>8} {'tracks':>7}")
        for key, c in cost.items():
            lines.append(f"  {key:17} {c['mean_us']:>8.0f} {c['p95_us']:>8.0f} {c['max_us']:>8.0f} "
                         f"{c['mean_tracks']:>7.1f}")
        lines.append("")
    lines.append(f"targets (judged on profile {NOISY.name}; {NOISY_FP.name} beside):")
    for target in report["targets"]:
        lines.append(f"  [{'ok' if target['ok'] else 'MISS':4}] {target['target']}")
        lines.append(f"         {NOISY.name}: {target['figure']}")
        for key, value in target.items():
            if key.startswith("figure_"):
                lines.append(f"         {key[len('figure_'):]}: {value}")
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------------------------------


def build_report(*, quick: bool, seeds: int, tolerance_sec: float = DEFAULT_TOLERANCE_SEC,
                 scenes: Sequence[Scene] | None = None, rates: Sequence[float] = RATES,
                 profiles: Sequence[NoiseProfile] | None = None, cost_sec: float | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Everything ``main`` writes, as a dict (``report.json``)."""
    scenes = build_scenes() if scenes is None else list(scenes)
    if profiles is None:
        profiles = (NOISY, NOISY_FP) if quick else PROFILES
    started = time.monotonic()
    result = run(scenes, profiles=profiles, rates=rates, seeds=seeds, tolerance_sec=tolerance_sec,
                 progress=progress)
    scene_types: dict[str, list[str]] = {}
    for scene in scenes:
        scene_types.setdefault(_type_key(scene.task_type), []).append(scene.name)
    result["scene_types"] = scene_types
    cost_people = 20
    cost = measure_cost(people=cost_people, duration_sec=cost_sec if cost_sec else 20.0 if quick else 60.0)
    report = {
        "schema": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "quick": quick, "seeds": seeds, "rates": list(rates), "schedules": ["regular", "irregular"],
            "tolerance_sec": tolerance_sec, "profiles": [msgspec.to_builtins(p) for p in profiles],
            "irregular": {"spread": list(IRREGULAR_SPREAD), "hole_every_sec": HOLE_EVERY_SEC,
                          "hole_sec": list(HOLE_SEC)},
            "cost_people": cost_people,
            "floors": {spec.key: spec.default_min_fps for spec in TASK_TYPES.values()},
        },
        "scenes": [{"name": s.name, "task_type": s.task_type, "type": _type_key(s.task_type),
                    "description": s.description, "duration_sec": s.duration_sec, "objects": len(s.objects),
                    "incidents": [msgspec.to_builtins(i) for i in s.incidents], "true_counts": s.true_counts,
                    "algo_config": s.algo_config} for s in scenes],
        "result": result,
        "cost": cost,
    }
    report["targets"] = evaluate_targets(result, cost, rates)
    report["elapsed_sec"] = round(time.monotonic() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m framewatch.benchmarks.accuracy",
        description="Accuracy of the analytics (tracking, rules, events) on scripted scenes with ground truth, "
                    "through an emulated detector at the sampling rates backpressure gives.")
    parser.add_argument("--quick", action="store_true",
                        help="one seed, profiles noisy and noisy+fp, a short cost scene (about 20 s)")
    parser.add_argument("--out", help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--seeds", type=int, help=f"seeds per scene x schedule x rate (default {DEFAULT_SEEDS}; "
                                                  "--quick: 1)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    seeds = args.seeds if args.seeds else 1 if args.quick else DEFAULT_SEEDS
    if seeds < 1:
        parser.error("--seeds must be at least 1")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = build_report(quick=args.quick, seeds=seeds, progress=None if args.no_progress else progress)
    table = render_table(report)
    out_dir = Path(args.out) if args.out else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out_dir / "table.txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"report: {json_path} ({report['elapsed_sec']:g} s)")
    return 1 if args.strict and not all(t["ok"] for t in report["targets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
