"""Every message that crosses an actor boundary, as frozen msgspec Structs.

One Union per receiving actor (``ExtractorMsg``, ``InferenceMsg``...). Handlers match on the type and count anything
else as unexpected. Frames travel by reference: ``Frame.image`` is the decoded BGR array itself, never a copy or an
encoding of it.

``Detection`` and ``Alert`` also leave the process (JSON Lines, Kafka), so they are the wire schema too; changing
their fields means bumping ``ALERT_SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from .ids import MAX_SAFE_INTEGER

ALERT_SCHEMA_VERSION = 3
"""Version 2: the old system's alert row first (numeric ``id``...), the random id moved to ``uid``. Version 3: one
record per event state (``event_id``, ``event_state``), not one per frame."""


class Detection(msgspec.Struct, frozen=True):
    """One detected object; ``box`` is ``(x1, y1, x2, y2)`` in pixels of the inferred frame."""

    label: str
    score: float
    box: tuple[int, int, int, int]


class Frame(msgspec.Struct, frozen=True):
    """A sampled frame chosen for inference. ``image`` is a BGR ``numpy.ndarray`` (H, W, 3)."""

    task_id: str
    task_type: str
    seq: int
    captured_at: float  # wall clock, seconds since the epoch (leaves the process in alerts and keys)
    captured_mono: float  # time.monotonic() when sampled (frame age at inference)
    image: Any
    retry_of: str = ""  # set when the frame is retried: the backend group (service id) that failed it; never twice


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert, and its record on the wire: one Kafka record value, one ``alerts.jsonl`` line (schema in the README).

    The first fields are the old system's alert row with the old types, which its consumers decode strictly (a Go
    ``uint`` id, ``result`` a string); framewatch's own fields follow (extra fields are ignored by those consumers).
    Every field is set once, when the alert is made (``inference.slot.make_alert``), except ``image_stored`` and
    ``image_url``, set by the writer once it stored the image. The spool stores and replays the struct whole, so a
    redelivered alert has the same ``id`` and the same bytes.
    """

    # --- the old row -----------------------------------------------------------------------------------------------
    id: Annotated[int, Meta(ge=0, le=MAX_SAFE_INTEGER)]  # ``core.ids``: unique, increasing, exact in JavaScript
    task_id: str
    task_type: str
    image_path: str  # storage key of the alert image (relative to the store's base path), "" without an image
    image_url: str = ""  # presigned GET URL of the stored image (MinIO, valid 24 h), else ""
    algorithm_id: str  # the backend: the local detector's name or the remote service's id
    algorithm_name: str  # the local detector's name or the remote service's name
    result: str  # JSON text: the service's result object, or {"total_count", "detections"} from the local detector
    confidence: float  # highest detection score, 0.0 when none
    detection_count: int
    inference_time_ms: int  # the backend call as framewatch timed it (for a remote service: the round trip)
    created_at: str  # RFC 3339 (UTC, milliseconds): when the alert was made
    updated_at: str  # the same: an alert is not changed after it leaves
    # --- framewatch ------------------------------------------------------------------------------------------------
    uid: str  # a random hex id (schema 1's ``id``)
    time: str  # capture time of the frame, UTC, ISO 8601 with milliseconds
    rule: str
    detections: list[Detection]
    counts: dict[str, int]
    image_key: str | None
    image_stored: bool = False
    backend: str
    frame_seq: int
    event_id: str = ""  # the event this record belongs to: the same in its start, updates and end
    event_state: str = ""  # "start" | "update" | "end" | "instant" (an event without duration: a line crossing...)
    region_id: str = ""  # the event's region ("" for the whole frame)
    region_name: str = ""
    track_ids: list[int] = []  # the tracked objects the event is about (empty for a region-wide event)
    started_at: str = ""  # capture time of the event's first sample, as ``time``
    ended_at: str = ""  # ``end`` / ``instant``: when the condition was last seen holding, as ``time``; else ""
    schema: int = ALERT_SCHEMA_VERSION


# --- extractor ---------------------------------------------------------------------------------------------------


class Pump(msgspec.Struct, frozen=True):
    """Extractor to itself: read the next frame from the source."""


class Reopen(msgspec.Struct, frozen=True):
    """Timer to extractor: the backoff is over, open the source again."""

    attempt: int


ExtractorMsg = Pump | Reopen


# --- inference ---------------------------------------------------------------------------------------------------

InferenceMsg = Frame


# --- frame writer ------------------------------------------------------------------------------------------------


class StoreFrame(msgspec.Struct, frozen=True):
    """Encode ``frame`` once; store it under ``frame_key`` (if set) and under ``alert.image_key`` (if an alert),
    then forward the alert, marked with whether its image was stored."""

    frame: Frame
    frame_key: str | None
    alert: Alert | None = None
    jpeg: bytes | None = None  # already encoded (by a remote backend): not encoded again
    frame_stored: bool = False  # ``frame_key`` was already stored (a remote backend's presigned URL points at it)
    image_stored: bool = False  # ``alert.image_key`` was stored with an earlier record of its event: only presigned


WriterMsg = StoreFrame


# --- analytics ---------------------------------------------------------------------------------------------------


class Analyse(msgspec.Struct, frozen=True, kw_only=True):
    """Inference slot to its camera's analytics: a frame inferred, and what its backend found in it."""

    frame: Frame
    detections: list[Detection]
    count: int = 0  # a service's count when it reports one without boxes (``Inferred.count``)
    backend: str
    algorithm_id: str
    algorithm_name: str
    inference_ms: float
    result: Any = None  # a remote service's result object, carried into the alert records as it answered


class Release(msgspec.Struct, frozen=True):
    """Timer to analytics: frames held behind a gap may have waited long enough (``analytics.reorder``)."""


AnalyticsMsg = Analyse | Release


# --- retention ---------------------------------------------------------------------------------------------------


class Stored(msgspec.Struct, frozen=True):
    """Writer to retention: ``key`` now exists in storage, under the indexed ``prefix`` of ``task_id``."""

    task_id: str
    prefix: str
    key: str


class Sweep(msgspec.Struct, frozen=True):
    """Timer to retention: apply age bounds and retry failed deletes."""


class RetentionStatsRequest(msgspec.Struct, frozen=True):
    """Ask the retention actor for its statistics (``RetentionStats``)."""


class AddBounds(msgspec.Struct, frozen=True):
    """Supervisor to retention: bound these prefixes too (``storage.retention.Bound``s of a camera added at run
    time); a prefix already bounded keeps its bound."""

    bounds: tuple[Any, ...]


RetentionMsg = Stored | Sweep | RetentionStatsRequest | AddBounds


# --- alerts ------------------------------------------------------------------------------------------------------


class Flush(msgspec.Struct, frozen=True):
    """Timer to the alert actor: write whatever is batched."""


class AlertStatsRequest(msgspec.Struct, frozen=True):
    """Ask the alert actor for its statistics (``AlertStats``)."""


AlertMsg = Alert | Flush | AlertStatsRequest


# --- supervisor --------------------------------------------------------------------------------------------------


class Tick(msgspec.Struct, frozen=True):
    """Timer to supervisor: check children, apply backpressure."""


class Grant(msgspec.Struct, frozen=True):
    """Pool to supervisor: a slot finished a frame; grant the freed room now instead of at the next tick (with fast
    backends a 10 ms tick would otherwise cap throughput at high watermark x slots per tick)."""


class StatsTick(msgspec.Struct, frozen=True):
    """Timer to supervisor: write the stats snapshot."""


class Start(msgspec.Struct, frozen=True):
    """Ask the supervisor to build and start the system; errors (storage unreachable...) reach the caller."""


class GetSnapshot(msgspec.Struct, frozen=True):
    """Ask the supervisor for a stats snapshot: the last one written, or a new one when ``fresh``, whose rates cover
    the time since the previous fresh snapshot of the same ``window`` (each reader keeps its own)."""

    fresh: bool = False
    window: str = "caller"


class Shutdown(msgspec.Struct, frozen=True):
    """Ask the supervisor to stop everything in order: sources, inference, writer, retention, alerts."""


class ApplyTasks(msgspec.Struct, frozen=True):
    """Ask the supervisor to run the tasks of ``config`` (a ``core.config.Config`` already checked and persisted):
    it stops the cameras no longer enabled, restarts those whose task changed, starts the new ones; others go on."""

    config: Any


class Retired(msgspec.Struct, frozen=True):
    """To the supervisor, from the thread that stopped a camera's children: its new incarnation may start."""

    task_id: str


SupervisorMsg = Start | Tick | Grant | StatsTick | GetSnapshot | Shutdown | ApplyTasks | Retired
