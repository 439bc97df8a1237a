"""Every message that crosses an actor boundary, as frozen msgspec Structs.

One Union per receiving actor (``ExtractorMsg``, ``InferenceMsg``...). Handlers match on the type and count anything
else as unexpected. Frames travel by reference: ``Frame.image`` is the decoded BGR array itself, never a copy or an
encoding of it.

``Detection`` and ``Alert`` also leave the process (JSON Lines, Kafka), so they are the wire schema too; changing
their fields means bumping ``ALERT_SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any

import msgspec

ALERT_SCHEMA_VERSION = 1


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


class Alert(msgspec.Struct, frozen=True):
    """An alert as written to the sink. ``image_stored`` is False when its image could not be stored."""

    id: str
    task_id: str
    task_type: str
    time: str  # UTC, ISO 8601 with milliseconds
    rule: str
    detections: list[Detection]
    counts: dict[str, int]
    image_key: str | None
    image_stored: bool
    inference_ms: float
    backend: str
    frame_seq: int
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


WriterMsg = StoreFrame


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


RetentionMsg = Stored | Sweep | RetentionStatsRequest


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


SupervisorMsg = Start | Tick | Grant | StatsTick | GetSnapshot | Shutdown
