"""Alert records: what one record of an event says, in the old system's row and framewatch's fields.

``make_alert`` is the only place an ``Alert`` is made: the camera's analytics actor calls it for each record of an
event (``analytics.events.EventRecord``: start, update, end, instant), giving the frame of the sample the record was
made in, what the record is about (``Decision``: the rule, the counts, the objects) and the event's fields. The numeric
``id`` is drawn here, once: a redelivery replays this struct.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from ..analytics.rules import Decision
from ..core.ids import next_alert_id
from ..core.messages import Alert, Frame


class EventFields(msgspec.Struct, frozen=True, kw_only=True):
    """The event a record belongs to (``Alert.event_id`` ... ``ended_at``); times are wall clock (epoch seconds)."""

    event_id: str
    event_state: str
    region_id: str = ""
    region_name: str = ""
    track_ids: tuple[int, ...] = ()
    started_at: float
    ended_at: float | None = None


def utc_iso(wall: float) -> str:
    """``wall`` (seconds since the epoch) as RFC 3339 in UTC with milliseconds: ``2026-11-29T06:25:54.384Z``."""
    ms = round(wall * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _local_result(decision: Decision, count: int) -> dict[str, Any]:
    """What an old algorithm service would have answered for this decision (its ``result`` object): ``total_count``,
    ``detections`` as ``{class, confidence, bbox}`` and, with regions, each detection's ``region_id``/``region_name``
    and the ``region_results``."""
    names = {r.region_id: r.region_name for r in decision.regions}
    items = []
    for i, d in enumerate(decision.detections):
        item: dict[str, Any] = {"class": d.label, "confidence": d.score, "bbox": d.box}
        region = decision.detection_regions[i] if i < len(decision.detection_regions) else ""
        if region:
            item.update(region_id=region, region_name=names.get(region, ""))
        items.append(item)
    result: dict[str, Any] = {"total_count": count, "detections": items}
    if decision.regions:
        result["region_results"] = decision.regions
    return result


def make_alert(frame: Frame, decision: Decision, *, image_key: str | None, inference_ms: float, backend: str,
               algorithm_id: str = "", algorithm_name: str = "", result: Any = None,
               event: EventFields | None = None) -> Alert:
    """The alert for ``frame``, with its numeric id drawn now (once: a redelivery replays this struct).

    ``image_key`` None: the alert has no image. ``algorithm_id``/``algorithm_name`` default to ``backend``. ``result``
    is a remote service's result object, put in the record as it came; ``None`` builds the local equivalent."""
    detections = decision.detections
    # A service may report only a count (``total_count`` without a detection list): the decision's count then.
    count = len(detections) or max(decision.counts.values(), default=0)
    made = utc_iso(time.time())
    return Alert(
        id=next_alert_id(),
        task_id=frame.task_id,
        task_type=frame.task_type,
        image_path=image_key or "",
        algorithm_id=algorithm_id or backend,
        algorithm_name=algorithm_name or backend,
        result=msgspec.json.encode(_local_result(decision, count) if result is None else result).decode(),
        confidence=max((d.score for d in detections), default=0.0),
        detection_count=count,
        inference_time_ms=round(inference_ms),
        created_at=made,
        updated_at=made,
        uid=uuid.uuid4().hex,
        time=utc_iso(frame.captured_at),
        rule=decision.rule,
        detections=detections,
        counts=decision.counts,
        image_key=image_key,
        image_stored=False,  # the writer sets it, and image_url, once the image is stored
        backend=backend,
        frame_seq=frame.seq,
        **({} if event is None else _event_fields(event)),
    )


def _event_fields(event: EventFields) -> dict[str, Any]:
    return {
        "event_id": event.event_id, "event_state": event.event_state, "region_id": event.region_id,
        "region_name": event.region_name, "track_ids": list(event.track_ids), "started_at": utc_iso(event.started_at),
        "ended_at": "" if event.ended_at is None else utc_iso(event.ended_at),
    }
