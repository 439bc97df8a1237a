"""Counters every actor updates, and the frozen stats snapshot built from them.

All counters live behind one lock, and a snapshot copies them under it, so the conservation equations hold in every
snapshot, not just at rest::

    sampled  = skipped + inferred + failed + in_flight      (per camera and in totals)
    inferred = with_detections + without_detections

``in_flight`` is derived (frames handed to inference minus those finished), never counted separately, so it cannot
drift. Rates are measured over a real window (counter deltas between two snapshots divided by the monotonic time
between them), not derived from latencies as the old system did.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import msgspec


class _Camera:
    """Mutable per-camera counters; only touched under ``Metrics._lock``."""

    __slots__ = (
        "sampled", "skipped", "sent", "inferred", "failed", "with_detections", "without_detections",
        "alerts", "stored", "store_failed", "opens", "open_failures", "stalls", "state", "last_error",
        "last_frame_mono",
    )

    def __init__(self) -> None:
        self.sampled = self.skipped = self.sent = self.inferred = self.failed = 0
        self.with_detections = self.without_detections = self.alerts = 0
        self.stored = self.store_failed = 0
        self.opens = self.open_failures = self.stalls = 0
        self.state = "starting"
        self.last_error = ""
        self.last_frame_mono = 0.0


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """The counters a camera and the totals share; see the module docstring for the equations they satisfy."""

    sampled: int
    skipped: int
    inferred: int
    failed: int
    in_flight: int
    with_detections: int
    without_detections: int
    alerts: int = 0
    stored: int = 0  # frames and alert images in storage now (retention's index)
    store_failed: int = 0
    sampled_per_s: float = 0.0
    extracted_per_s: float = 0.0  # frames converted and handed to inference
    inferred_per_s: float = 0.0


class CameraStats(Counts, frozen=True, kw_only=True):
    state: str = ""
    opens: int = 0
    open_failures: int = 0
    stalls: int = 0
    last_error: str = ""
    last_frame_sec: float | None = None  # seconds since its source last delivered a frame (progress, not liveness)
    share: float = 0.0  # this camera's fraction of the frames inferred in the window


class Totals(Counts, frozen=True, kw_only=True):
    success_rate: float


class InferenceStats(msgspec.Struct, frozen=True):
    avg_ms: float
    p95_ms: float
    max_ms: float
    frame_age_p50_ms: float
    frame_age_p95_ms: float
    busy: float  # fraction of the window the inference slots spent inferring (1.0 = every slot always busy)
    slots: int
    failures_by_reason: dict[str, int]


class AlertStats(msgspec.Struct, frozen=True):
    emitted: int
    written: int
    dropped: int
    batch_queue: int
    spooled: int


class ProcessStats(msgspec.Struct, frozen=True):
    rss_mb: float
    threads: int
    open_fds: int
    cpu_percent: float


class BackpressureStats(msgspec.Struct, frozen=True):
    policy: str
    paused: bool
    level: int  # frames queued or in inference, plus credits granted and not yet spent
    high: int
    low: int
    peak_load: int  # most frames ever queued or in inference at once


class ServiceStats(msgspec.Struct, frozen=True):
    """One registered remote algorithm service (``actors.algorithms``)."""

    name: str
    endpoint: str
    mode: str  # "url" | "inline"
    task_types: list[str]
    slots: int  # inference slots it holds in the pool (its max_concurrency, within max_concurrent_infer)
    outstanding: int  # frames queued for or being inferred by it now
    completed: int
    failures: int  # calls that failed or timed out
    retries: int  # frames it failed (or could not take) that were sent to another slot
    circuit: str  # "closed" | "open" | "half-open" | "evicted"
    avg_latency_ms: float  # EWMA of its round trips, as routing sees it
    heartbeat_age_sec: float
    last_error: str = ""


class Snapshot(msgspec.Struct, frozen=True):
    time: str
    uptime_sec: float
    window_sec: float
    cameras: dict[str, CameraStats]
    totals: Totals
    inference: InferenceStats
    mailboxes: dict[str, int]
    backpressure: BackpressureStats
    alerts: AlertStats
    process: ProcessStats
    components: dict[str, str]  # name -> "up" | "down: reason" | "given up: reason"
    restarts: dict[str, int]
    services: dict[str, ServiceStats] = {}  # remote algorithm services by service id


class _Window:
    """Where one reader's previous snapshot left the counters: rates are deltas since then."""

    __slots__ = ("start", "busy", "counts")

    def __init__(self, start: float) -> None:
        self.start = start
        self.busy = 0.0
        self.counts: dict[str, tuple[int, int, int]] = {}  # task -> (sampled, sent, inferred)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Metrics:
    """Thread-safe counters for the whole process. Cheap: each update is one lock and a few integer adds."""

    def __init__(self, task_ids: list[str] = ()) -> None:  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._cams: dict[str, _Camera] = {t: _Camera() for t in task_ids}
        self._latency_ms: deque[float] = deque(maxlen=2048)
        self._age_ms: deque[float] = deque(maxlen=2048)
        self._max_ms = 0.0
        self._busy_sec = 0.0
        self._failure_reasons: dict[str, int] = {}
        self.alerts_emitted = self.alerts_written = self.alerts_dropped = 0
        # Rate windows by reader ("stats" for the periodic snapshot, "http", "caller"...): each reader measures rates
        # since its own previous snapshot, so scraping /metrics does not shorten the stats line's window.
        self._windows: dict[str, _Window] = {}
        self._created = time.monotonic()

    def _window(self, name: str) -> _Window:
        """A reader's window; a new reader's first rates cover the time since the counters started."""
        w = self._windows.get(name)
        if w is None:
            w = self._windows[name] = _Window(self._created)
        return w

    def _cam(self, task_id: str) -> _Camera:
        cam = self._cams.get(task_id)
        if cam is None:
            cam = self._cams[task_id] = _Camera()
        return cam

    # --- extractor side ---

    def sampled(self, task_id: str, *, sent: bool) -> None:
        """One sample was due: ``sent`` if it went to inference, else it was skipped."""
        with self._lock:
            cam = self._cam(task_id)
            cam.sampled += 1
            if sent:
                cam.sent += 1
            else:
                cam.skipped += 1
            cam.last_frame_mono = time.monotonic()

    def source_state(self, task_id: str, state: str, error: str = "", *, opened: bool = False,
                     open_failed: bool = False, stalled: bool = False) -> None:
        with self._lock:
            cam = self._cam(task_id)
            cam.state = state
            if error:
                cam.last_error = error
            cam.opens += opened
            cam.open_failures += open_failed
            cam.stalls += stalled

    def frame_progress(self, task_id: str) -> None:
        with self._lock:
            self._cam(task_id).last_frame_mono = time.monotonic()

    # --- inference side ---

    def inferred(self, task_id: str, *, detections: bool, latency_ms: float, age_ms: float) -> None:
        with self._lock:
            cam = self._cam(task_id)
            cam.inferred += 1
            if detections:
                cam.with_detections += 1
            else:
                cam.without_detections += 1
            self._latency_ms.append(latency_ms)
            self._age_ms.append(age_ms)
            self._max_ms = max(self._max_ms, latency_ms)
            self._busy_sec += latency_ms / 1000

    def failed(self, task_id: str, reason: str, latency_ms: float = 0.0) -> None:
        with self._lock:
            self._cam(task_id).failed += 1
            self._failure_reasons[reason] = self._failure_reasons.get(reason, 0) + 1
            self._busy_sec += latency_ms / 1000

    def busy(self, latency_ms: float) -> None:
        """Time a slot spent on a frame that moved to another slot (neither inferred nor failed yet)."""
        with self._lock:
            self._busy_sec += latency_ms / 1000

    def in_flight(self) -> int:
        with self._lock:
            return sum(c.sent - c.inferred - c.failed for c in self._cams.values())

    # --- storage and alerts ---

    def stored(self, task_id: str, count: int) -> None:
        """Retention reports how many objects it indexes for the task right now."""
        with self._lock:
            self._cam(task_id).stored = count

    def store_failed(self, task_id: str) -> None:
        with self._lock:
            self._cam(task_id).store_failed += 1

    def alert_emitted(self, task_id: str) -> None:
        with self._lock:
            self._cam(task_id).alerts += 1
            self.alerts_emitted += 1

    def alerts_delivered(self, n: int) -> None:
        with self._lock:
            self.alerts_written += n

    def alerts_lost(self, n: int) -> None:
        with self._lock:
            self.alerts_dropped += n

    # --- snapshot ---

    def snapshot(
        self,
        *,
        started_mono: float,
        slots: int,
        mailboxes: dict[str, int],
        backpressure: BackpressureStats,
        alert_queue: int,
        spooled: int,
        process: ProcessStats,
        components: dict[str, str],
        restarts: dict[str, int],
        services: dict[str, ServiceStats] | None = None,
        window: str = "stats",
    ) -> Snapshot:
        """Copy every counter under the lock; rates cover the time since this ``window``'s previous snapshot."""
        now = time.monotonic()
        with self._lock:
            w = self._window(window)
            elapsed = max(now - w.start, 1e-9)
            busy = (self._busy_sec - w.busy) / elapsed / max(slots, 1)
            cameras: dict[str, CameraStats] = {}
            window_inferred = {t: c.inferred - w.counts.get(t, (0, 0, 0))[2] for t, c in self._cams.items()}
            total_window_inferred = sum(window_inferred.values())
            for task_id, c in self._cams.items():
                prev = w.counts.get(task_id, (0, 0, 0))
                cameras[task_id] = CameraStats(
                    sampled=c.sampled, skipped=c.skipped, inferred=c.inferred, failed=c.failed,
                    in_flight=c.sent - c.inferred - c.failed, with_detections=c.with_detections,
                    without_detections=c.without_detections, alerts=c.alerts, stored=c.stored,
                    store_failed=c.store_failed, state=c.state, opens=c.opens, open_failures=c.open_failures,
                    stalls=c.stalls, last_error=c.last_error,
                    last_frame_sec=round(now - c.last_frame_mono, 2) if c.last_frame_mono else None,
                    sampled_per_s=round((c.sampled - prev[0]) / elapsed, 2),
                    extracted_per_s=round((c.sent - prev[1]) / elapsed, 2),
                    inferred_per_s=round((c.inferred - prev[2]) / elapsed, 2),
                    share=round(window_inferred[task_id] / total_window_inferred, 4) if total_window_inferred else 0.0,
                )
                w.counts[task_id] = (c.sampled, c.sent, c.inferred)
            latencies = list(self._latency_ms)
            ages = list(self._age_ms)
            inference = InferenceStats(
                avg_ms=round(sum(latencies) / len(latencies), 2) if latencies else 0.0,
                p95_ms=round(_percentile(latencies, 0.95), 2),
                max_ms=round(self._max_ms, 2),
                frame_age_p50_ms=round(_percentile(ages, 0.5), 2),
                frame_age_p95_ms=round(_percentile(ages, 0.95), 2),
                busy=round(min(busy, 1.0), 4),
                slots=slots,
                failures_by_reason=dict(self._failure_reasons),
            )
            alerts = AlertStats(
                emitted=self.alerts_emitted, written=self.alerts_written, dropped=self.alerts_dropped,
                batch_queue=alert_queue, spooled=spooled,
            )
            w.start = now
            w.busy = self._busy_sec
        cams = cameras.values()
        finished = sum(c.inferred + c.failed for c in cams)
        totals = Totals(
            sampled=sum(c.sampled for c in cams), skipped=sum(c.skipped for c in cams),
            inferred=sum(c.inferred for c in cams), failed=sum(c.failed for c in cams),
            in_flight=sum(c.in_flight for c in cams), with_detections=sum(c.with_detections for c in cams),
            without_detections=sum(c.without_detections for c in cams), alerts=sum(c.alerts for c in cams),
            stored=sum(c.stored for c in cams), store_failed=sum(c.store_failed for c in cams),
            sampled_per_s=round(sum(c.sampled_per_s for c in cams), 2),
            extracted_per_s=round(sum(c.extracted_per_s for c in cams), 2),
            inferred_per_s=round(sum(c.inferred_per_s for c in cams), 2),
            success_rate=round(sum(c.inferred for c in cams) / finished, 4) if finished else 1.0,
        )
        return Snapshot(
            time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            uptime_sec=round(now - started_mono, 1),
            window_sec=round(elapsed, 3),
            cameras=cameras,
            totals=totals,
            inference=inference,
            mailboxes=mailboxes,
            backpressure=backpressure,
            alerts=alerts,
            process=process,
            components=components,
            restarts=restarts,
            services=services or {},
        )
