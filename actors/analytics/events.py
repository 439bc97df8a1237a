"""The event book: what turns a rule's per-sample conditions into events with a start, updates and an end.

A rule does not alert. Each sample it reports the conditions that hold now (``Condition``: "track 7 is inside the
zone", "the post is empty"), each keyed by ``(rule, region_id, subject)``, and the instants that happened
(``Instant``: "track 7 crossed the line"). The book remembers which conditions were already open and emits
``EventRecord``s:

- ``start``: the first sample in which a key's condition holds. The event gets a new id.
- ``update``: while it holds, at most one every ``alert_interval_sec`` seconds after the previous record of the
  event (capture time); ``0`` means no updates, only start and end.
- ``end``: once, at the first sample in which the condition has been absent for ``end_grace_sec`` seconds (absent
  since the first sample that missed it: a condition that comes back within the grace continues the same event),
  or at once when the event is bound to tracks and every one of them is lost (below). ``ended_at`` is when the
  condition was first missed (or the sample of the loss, if it had not been missed before), ``at`` when the book
  concluded.
- ``instant``: an event without duration (a line crossing, a periodic count report): one record, a new id,
  ``started_at == at == ended_at``.

Subjects. ``subject`` names what the event is about inside its region: a track id (``"7"``) or ``""`` for a
region-wide condition (a crowd, an empty post). An event with a non-empty subject is *bound to its tracks*
(``track_ids`` of its last condition): when none of them is in ``live_tracks`` any more, the tracker has dropped them
and the event ends in that sample, without waiting for the grace. Region-wide events never end by loss: the people
they count come and go.

Event ids: ``f"{id_prefix}-{n}"``, ``n`` counting from 1 per book. The default prefix is ``f"{task_id}-{8 random hex
digits}"``, drawn once per book, so ids stay unique for the camera across restarts of its analytics (a restart makes
a new book, whose ``n`` starts at 1 again); an id is the same in every record of one event.

Best shot. Each condition carries the highest detection score of its objects in this sample (``score``). An event
remembers its best score, the capture time ``best_at`` and the caller's ``sample`` token (``best_sample``) of the
sample it came from. ``BookStep.improved`` lists the events whose best is the current sample: every event started in
it, every instant, and every open event whose score rose strictly. The caller keeps that sample's image for those
ids (one image per event, replaced while it improves).

Bound. At most ``max_open`` events are open at once. Past it, a condition whose key has no open event opens none:
it is refused (``BookStats.refused`` counts one per refused condition per sample) until an event ends; open events
are never evicted, so every ``start`` emitted gets its ``end``. Instants are not bounded (they hold nothing open).

Pure bookkeeping: no clock (every time is a capture time passed in), no I/O, not thread-safe (one owner).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from typing import Literal, NamedTuple

import msgspec

from ..core.messages import Detection

__all__ = [
    "DEFAULT_MAX_OPEN", "TIME_EPS_SEC", "BookStats", "BookStep", "Condition", "EventBook", "EventRecord", "EventState",
    "Instant",
]

EventState = Literal["start", "update", "end", "instant"]

#: Slack on every comparison of durations: capture times are sums of float intervals, and a grace of 1.0 s must be
#: over at 4.1 after 3.1 although 4.1 - 3.1 comes out as 0.9999999999999996.
TIME_EPS_SEC = 1e-9

#: ``EventBook.max_open`` unless told: far more than people in one camera's zones, small enough to bound memory.
DEFAULT_MAX_OPEN = 256


class Condition(msgspec.Struct, frozen=True, kw_only=True):
    """A condition holding in this sample, as a rule reports it; the book keys it by ``(rule, region_id, subject)``."""

    rule: str
    region_id: str = ""
    """``""``: the whole frame."""
    region_name: str = ""
    subject: str = ""
    """A track id as text, or ``""`` for a region-wide condition (see the module docstring: subjects)."""
    track_ids: tuple[int, ...] = ()
    detections: tuple[Detection, ...] = ()
    """The condition's objects as detected in this sample (tracks coasting through a miss have none)."""
    score: float = 0.0
    """The highest score among ``detections``; 0.0 without any."""
    counts: dict[str, int] = {}

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.region_id, self.subject)


class Instant(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened in this sample and has no duration (a line crossing, a count report)."""

    rule: str
    region_id: str = ""
    region_name: str = ""
    subject: str = ""
    direction: str = ""
    """Line crossings: ``"in"`` or ``"out"``; ``""`` otherwise."""
    track_ids: tuple[int, ...] = ()
    detections: tuple[Detection, ...] = ()
    score: float = 0.0
    counts: dict[str, int] = {}


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One record of an event, as it leaves the analytics (times are capture times, monotonic seconds).

    ``track_ids`` and ``detections`` are tuples (JSON arrays on the wire), so a record shares nothing mutable."""

    event_id: str
    """The same in every record of one event; see the module docstring for its form."""
    event_state: EventState
    task_id: str
    task_type: str
    rule: str
    region_id: str
    """``""``: the whole frame."""
    region_name: str
    subject: str
    """A track id as text, or ``""`` for a region-wide event."""
    direction: str = ""
    """Line crossings: ``"in"`` or ``"out"``."""
    track_ids: tuple[int, ...]
    started_at: float
    at: float
    """Capture time of the sample this record was made in."""
    ended_at: float | None
    """``end``: when the condition was first missed (see the module docstring); ``instant``: ``at``; else None."""
    counts: dict[str, int]
    """Rule-specific totals: people in the region, a line's running ``in`` / ``out`` totals..."""
    detections: tuple[Detection, ...]
    """The event's objects detected in this sample; empty in ``end`` records."""
    best_score: float
    best_at: float
    """Capture time of the sample with ``best_score`` (the event's best image)."""


class BookStep(NamedTuple):
    records: list[EventRecord]
    improved: list[str]
    """Ids of the events (and instants) whose best shot is this sample."""


class BookStats(msgspec.Struct, frozen=True):
    open: int
    started: int
    ended: int
    instants: int
    refused: int
    """Conditions that found the book full (``max_open``), one per condition per sample."""


class _Open:
    """An open event: mutable, private to the book."""

    __slots__ = ("best_at", "best_sample", "best_score", "cond", "event_id", "last_record_at", "missed_since",
                 "started_at")

    def __init__(self, event_id: str, cond: Condition, t: float, sample: object) -> None:
        self.event_id = event_id
        self.cond = cond  # the last condition seen: track ids, counts, names
        self.started_at = t
        self.last_record_at = t
        self.missed_since: float | None = None
        self.best_score = cond.score
        self.best_at = t
        self.best_sample = sample


class EventBook:
    """One camera's open events (see the module docstring)."""

    def __init__(self, task_id: str, task_type: str, *, alert_interval_sec: float = 0.0, end_grace_sec: float = 1.0,
                 max_open: int = DEFAULT_MAX_OPEN, id_prefix: str | None = None) -> None:
        if alert_interval_sec < 0 or end_grace_sec < 0 or max_open < 1:
            raise ValueError("alert_interval_sec and end_grace_sec must be >= 0 and max_open >= 1, got "
                             f"{alert_interval_sec!r}, {end_grace_sec!r}, {max_open!r}")
        self.task_id = task_id
        self.task_type = task_type
        self._interval = alert_interval_sec
        self._grace = end_grace_sec
        self._max_open = max_open
        self._prefix = f"{task_id}-{secrets.token_hex(4)}" if id_prefix is None else id_prefix
        self._n = 0
        self._open: dict[tuple[str, str, str], _Open] = {}
        self._started = self._ended = self._instants = self._refused = 0

    def step(self, t: float, conditions: Iterable[Condition], instants: Iterable[Instant] = (),
             live_tracks: Collection[int] | None = None, sample: object = None) -> BookStep:
        """Account for one sample captured at ``t``: the conditions holding in it and the instants that happened.

        ``live_tracks``: the ids of every track the tracker still has (matched or coasting); events bound to tracks
        none of which is in it end now. ``None``: nothing is known about losses, only the grace ends events.
        ``sample``: the caller's token for this sample, kept as ``best_sample`` of the events it improves.
        A key repeated in ``conditions``: the last one counts. Records come ends first, then starts and updates in
        the order of ``conditions``, then instants."""
        records: list[EventRecord] = []
        improved: list[str] = []
        holding = {cond.key: cond for cond in conditions}
        # Ends first: an event ending in this sample makes room for one starting in it.
        for key in [k for k in self._open if k not in holding]:
            event = self._open[key]
            if event.missed_since is None:
                event.missed_since = t
            cond = event.cond
            lost = (live_tracks is not None and cond.subject != ""
                    and not any(i in live_tracks for i in cond.track_ids))
            if lost or t - event.missed_since >= self._grace - TIME_EPS_SEC:
                del self._open[key]
                records.append(self._end(event, t))

        for key, cond in holding.items():
            event = self._open.get(key)
            if event is None:
                if len(self._open) >= self._max_open:
                    self._refused += 1
                    continue
                event = self._open[key] = _Open(self._new_id(), cond, t, sample)
                self._started += 1
                records.append(self._record(event, "start", t))
                improved.append(event.event_id)
                continue
            event.cond = cond
            event.missed_since = None
            if cond.score > event.best_score:
                event.best_score, event.best_at, event.best_sample = cond.score, t, sample
                improved.append(event.event_id)
            if self._interval > 0 and t - event.last_record_at >= self._interval - TIME_EPS_SEC:
                event.last_record_at = t
                records.append(self._record(event, "update", t))

        for instant in instants:
            self._instants += 1
            event_id = self._new_id()
            improved.append(event_id)
            records.append(EventRecord(
                event_id=event_id, event_state="instant", task_id=self.task_id, task_type=self.task_type,
                rule=instant.rule, region_id=instant.region_id, region_name=instant.region_name,
                subject=instant.subject, direction=instant.direction, track_ids=instant.track_ids, started_at=t,
                at=t, ended_at=t, counts=instant.counts, detections=instant.detections, best_score=instant.score,
                best_at=t,
            ))
        return BookStep(records, improved)

    def close(self, t: float) -> list[EventRecord]:
        """End every open event now (the camera stops, its tracker is reset): one ``end`` record each."""
        records = [self._end(event, t) for event in self._open.values()]
        self._open.clear()
        return records

    def best_sample(self, event_id: str) -> object:
        """The ``sample`` token of an open event's best shot; ``None`` when no open event has that id."""
        for event in self._open.values():
            if event.event_id == event_id:
                return event.best_sample
        return None

    def statistics(self) -> BookStats:
        return BookStats(open=len(self._open), started=self._started, ended=self._ended, instants=self._instants,
                         refused=self._refused)

    def _new_id(self) -> str:
        self._n += 1
        return f"{self._prefix}-{self._n}"

    def _end(self, event: _Open, t: float) -> EventRecord:
        self._ended += 1
        ended_at = t if event.missed_since is None else event.missed_since
        return self._record(event, "end", t, ended_at=ended_at, detections=())

    def _record(self, event: _Open, state: EventState, t: float, *, ended_at: float | None = None,
                detections: tuple[Detection, ...] | None = None) -> EventRecord:
        cond = event.cond
        return EventRecord(
            event_id=event.event_id, event_state=state, task_id=self.task_id, task_type=self.task_type,
            rule=cond.rule, region_id=cond.region_id, region_name=cond.region_name, subject=cond.subject,
            track_ids=cond.track_ids, started_at=event.started_at, at=t, ended_at=ended_at, counts=cond.counts,
            detections=cond.detections if detections is None else detections, best_score=event.best_score,
            best_at=event.best_at,
        )
