"""The stats snapshot in the Prometheus text exposition format (version 0.0.4), for ``GET /metrics``.

Written by hand from the ``Snapshot``: the same counters as ``/api/v1/status``, per camera and per service, so the two
always agree; no client library is needed for a few dozen series.
"""

from __future__ import annotations

from ..core.metrics import Snapshot

_CAMERA_SERIES = (  # (metric, type, CameraStats field, help)
    ("framewatch_frames_sampled_total", "counter", "sampled", "Samples due, per camera."),
    ("framewatch_frames_skipped_total", "counter", "skipped", "Samples skipped by backpressure, per camera."),
    ("framewatch_frames_inferred_total", "counter", "inferred", "Frames inferred, per camera."),
    ("framewatch_frames_failed_total", "counter", "failed", "Frames that could not be inferred, per camera."),
    ("framewatch_frames_in_flight", "gauge", "in_flight", "Frames queued for or in inference, per camera."),
    ("framewatch_frames_with_detections_total", "counter", "with_detections", "Inferred frames with detections."),
    ("framewatch_alerts_total", "counter", "alerts", "Alerts emitted, per camera."),
    ("framewatch_frames_stored", "gauge", "stored", "Frames and alert images in storage, per camera."),
    ("framewatch_frames_decoded_total", "counter", "decoded", "Frames its source decoded, per camera."),
    ("framewatch_frames_late_total", "counter", "late", "Frames inferred too late for tracking, per camera."),
    ("framewatch_camera_min_fps", "gauge", "min_fps", "Sampling floor its task type needs for tracking."),
)
_SERVICE_SERIES = (
    ("framewatch_service_slots", "gauge", "slots", "Inference slots a remote service holds."),
    ("framewatch_service_outstanding", "gauge", "outstanding", "Frames queued for or at a remote service."),
    ("framewatch_service_completed_total", "counter", "completed", "Frames a remote service inferred."),
    ("framewatch_service_failures_total", "counter", "failures", "Calls to a remote service that failed."),
    ("framewatch_service_retries_total", "counter", "retries", "Frames moved from a remote service to another slot."),
    ("framewatch_service_latency_ms", "gauge", "avg_latency_ms", "Remote service round trip, EWMA (ms)."),
)
_CIRCUITS = ("closed", "half-open", "open", "evicted")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series(lines: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
                 for labels, value in samples)


def exposition(snap: Snapshot) -> str:
    """The snapshot's counters in the Prometheus text format (version 0.0.4), per camera and per service."""
    lines: list[str] = []
    cams = sorted(snap.cameras.items())
    for name, kind, field, help_text in _CAMERA_SERIES:
        _series(lines, name, kind, help_text,
                [(f'{{camera="{_label(cam)}"}}', getattr(c, field)) for cam, c in cams])
    _series(lines, "framewatch_camera_degraded", "gauge",
            "1 while a camera is inferred below its sampling floor (its stats say why).",
            [(f'{{camera="{_label(cam)}"}}', int(bool(c.degraded))) for cam, c in cams])
    services = sorted(snap.services.items())
    for name, kind, field, help_text in _SERVICE_SERIES:
        _series(lines, name, kind, help_text,
                [(f'{{service="{_label(sid)}"}}', getattr(s, field)) for sid, s in services])
    _series(lines, "framewatch_service_circuit", "gauge", "1 for the circuit state a remote service is in.",
            [(f'{{service="{_label(sid)}",state="{state}"}}', int(s.circuit == state))
             for sid, s in services for state in _CIRCUITS])
    inf = snap.inference
    for name, help_text, value in (
        ("framewatch_inference_busy_ratio", "Fraction of the slots' time spent inferring, last window.", inf.busy),
        ("framewatch_inference_slots", "Inference slots (local and remote).", inf.slots),
        ("framewatch_frame_age_p95_ms", "95th percentile of frame age at inference (ms).", inf.frame_age_p95_ms),
        ("framewatch_inference_p95_ms", "95th percentile of inference latency (ms).", inf.p95_ms),
        ("framewatch_backpressure_level", "Frames queued or in inference plus unspent credits.",
         snap.backpressure.level),
    ):
        _series(lines, name, "gauge", help_text, [("", value)])
    a = snap.alerts
    _series(lines, "framewatch_alerts_written_total", "counter", "Alerts written to the sink.", [("", a.written)])
    _series(lines, "framewatch_alerts_dropped_total", "counter", "Alerts lost (counted, logged).", [("", a.dropped)])
    _series(lines, "framewatch_failures_total", "counter", "Failed frames by reason.",
            [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(inf.failures_by_reason.items())])
    return "\n".join(lines) + "\n"
