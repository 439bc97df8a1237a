"""Counters every actor updates, and the frozen stats snapshot built from them.

All counters live behind one lock, and a snapshot copies them under it, so the conservation equations hold in every
snapshot, not just at rest::

    sampled  = skipped + inferred + failed + in_flight      (per camera and in totals)
    inferred = with_detections + without_detections

Each term is its own counter: a sample is counted once (sent or skipped), ``in_flight`` goes up when a sample is sent
and down when its frame is inferred or failed. So the equations are a check, not an identity: a frame counted failed
twice leaves ``in_flight`` at -1, and ``conservation_errors`` (every counter non-negative, both equations, nothing in
flight once stopped) says so. Rates are measured over a real window (counter deltas between two snapshots divided by the monotonic time
between them), not derived from latencies as the old system did.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

import msgspec
import psutil

from .atomic import write_atomic

log = logging.getLogger(__name__)


class _Camera:
    """Mutable per-camera counters; only touched under ``Metrics._lock``."""

    __slots__ = (
        "sampled", "skipped", "sent", "in_flight", "inferred", "failed", "with_detections", "without_detections",
        "alerts", "stored", "store_failed", "opens", "open_failures", "stalls", "state", "last_error",
        "last_frame_mono", "waiting", "decode_mode", "decoded", "late", "min_fps", "wanted_fps",
    )

    def __init__(self) -> None:
        self.sampled = self.skipped = self.sent = self.in_flight = self.inferred = self.failed = 0
        self.with_detections = self.without_detections = self.alerts = 0
        self.stored = self.store_failed = 0
        self.opens = self.open_failures = self.stalls = 0
        self.state = "starting"
        self.last_error = ""
        self.last_frame_mono = 0.0
        self.waiting = ""
        self.decode_mode = ""
        self.decoded = 0
        self.late = 0
        self.min_fps = 0.0
        self.wanted_fps = 0.0


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
    waiting: str = ""  # why its samples are skipped whatever the load (no backend serves it, its pinned service away)
    decode_mode: str = ""  # how its source decodes now: "keyframes" | "gop" | "full" (PyAV), "opencv", "synthetic"
    decoded: int = 0  # frames its sources decoded (every open counted): decoded / inferred is the decoding overhead
    late: int = 0  # frames inferred too late for tracking (a later one was analysed already): not tracked
    min_fps: float = 0.0  # the sampling floor its task type needs for tracking (0: none)
    degraded: str = ""  # "got X fps, needs Y": inferred below its floor over the last window while it wanted more


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

    __slots__ = ("start", "busy", "counts", "rates", "busy_rate", "elapsed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.busy = 0.0
        self.counts: dict[str, tuple[int, int, int]] = {}  # task -> (sampled, sent, inferred)
        self.rates: dict[str, tuple[float, float, float, float]] = {}  # the last window's rates and share per task
        self.busy_rate = 0.0
        self.elapsed = 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Metrics:
    """Thread-safe counters for the whole process. Cheap: each update is one lock and a few integer adds."""

    def __init__(self, task_ids: list[str] = ()) -> None:  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._observers: list[Callable[[str, float, float], None]] = []
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
                cam.in_flight += 1
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

    def waiting(self, task_id: str, reason: str) -> None:
        """Why no frame of this camera can be inferred now ("" once one can)."""
        with self._lock:
            self._cam(task_id).waiting = reason

    def frame_progress(self, task_id: str) -> None:
        with self._lock:
            self._cam(task_id).last_frame_mono = time.monotonic()

    def decoding(self, task_id: str, mode: str, decoded: int) -> None:
        """Its source decodes in ``mode`` and decoded ``decoded`` more frames since the last report."""
        with self._lock:
            cam = self._cam(task_id)
            cam.decode_mode = mode
            cam.decoded += decoded

    # --- inference side ---

    def observe_inferred(self, callback: Callable[[str, float, float], None]) -> None:
        """Call ``callback(task_id, age_ms, latency_ms)`` after each frame is counted inferred, on the inference
        thread (the benchmarks record every frame's age this way); keep it cheap."""
        self._observers.append(callback)

    def inferred(self, task_id: str, *, detections: bool, latency_ms: float, age_ms: float) -> None:
        with self._lock:
            cam = self._cam(task_id)
            cam.inferred += 1
            cam.in_flight -= 1
            if detections:
                cam.with_detections += 1
            else:
                cam.without_detections += 1
            self._latency_ms.append(latency_ms)
            self._age_ms.append(age_ms)
            self._max_ms = max(self._max_ms, latency_ms)
            self._busy_sec += latency_ms / 1000
        for observe in self._observers:
            observe(task_id, age_ms, latency_ms)

    def failed(self, task_id: str, reason: str, latency_ms: float = 0.0) -> None:
        with self._lock:
            cam = self._cam(task_id)
            cam.failed += 1
            cam.in_flight -= 1
            self._failure_reasons[reason] = self._failure_reasons.get(reason, 0) + 1
            self._busy_sec += latency_ms / 1000

    def busy(self, latency_ms: float) -> None:
        """Time a slot spent on a frame that moved to another slot (neither inferred nor failed yet)."""
        with self._lock:
            self._busy_sec += latency_ms / 1000

    def in_flight(self, task_id: str | None = None) -> int:
        """Frames sent to inference and not inferred or failed yet: of one camera, or of all."""
        with self._lock:
            if task_id is not None:
                cam = self._cams.get(task_id)
                return cam.in_flight if cam is not None else 0
            return sum(c.in_flight for c in self._cams.values())

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

    def sampling_floor(self, task_id: str, min_fps: float, wanted_fps: float) -> None:
        """Its task type needs ``min_fps`` inferred frames per second for tracking; its conf samples ``wanted_fps``."""
        with self._lock:
            cam = self._cam(task_id)
            cam.min_fps, cam.wanted_fps = min_fps, wanted_fps

    def analytics_late(self, task_id: str) -> None:
        with self._lock:
            self._cam(task_id).late += 1

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
        keep_rates: bool = False,
    ) -> Snapshot:
        """Copy every counter under the lock; rates cover the time since this ``window``'s previous snapshot.

        ``keep_rates``: repeat the rates of that window's previous snapshot instead (the final snapshot after a stop
        shows what the system did while running, not the zeros of the last half second)."""
        now = time.monotonic()
        with self._lock:
            w = self._window(window)
            if keep_rates:
                elapsed, busy = w.elapsed or 1e-9, w.busy_rate
            else:
                elapsed = max(now - w.start, 1e-9)
                busy = (self._busy_sec - w.busy) / elapsed / max(slots, 1)
            cameras: dict[str, CameraStats] = {}
            window_inferred = {t: c.inferred - w.counts.get(t, (0, 0, 0))[2] for t, c in self._cams.items()}
            total_window_inferred = sum(window_inferred.values())
            for task_id, c in self._cams.items():
                prev = w.counts.get(task_id, (0, 0, 0))
                if keep_rates:
                    rates = w.rates.get(task_id, (0.0, 0.0, 0.0, 0.0))
                else:
                    rates = (
                        round((c.sampled - prev[0]) / elapsed, 2), round((c.sent - prev[1]) / elapsed, 2),
                        round((c.inferred - prev[2]) / elapsed, 2),
                        round(window_inferred[task_id] / total_window_inferred, 4) if total_window_inferred else 0.0,
                    )
                    w.rates[task_id] = rates
                cameras[task_id] = CameraStats(
                    sampled=c.sampled, skipped=c.skipped, inferred=c.inferred, failed=c.failed,
                    in_flight=c.in_flight, with_detections=c.with_detections,
                    without_detections=c.without_detections, alerts=c.alerts, stored=c.stored,
                    store_failed=c.store_failed, state=c.state, opens=c.opens, open_failures=c.open_failures,
                    stalls=c.stalls, last_error=c.last_error, waiting=c.waiting,
                    decode_mode=c.decode_mode, decoded=c.decoded, late=c.late, min_fps=c.min_fps,
                    degraded=_degraded(c, rates[2]),
                    last_frame_sec=round(now - c.last_frame_mono, 2) if c.last_frame_mono else None,
                    sampled_per_s=rates[0], extracted_per_s=rates[1], inferred_per_s=rates[2], share=rates[3],
                )
                if not keep_rates:
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
            if not keep_rates:
                w.start, w.busy, w.busy_rate, w.elapsed = now, self._busy_sec, busy, elapsed
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


def conservation_errors(snap: Snapshot, *, at_rest: bool = False) -> list[str]:
    """What breaks the equations in ``snap`` (empty when they hold), per camera and in the totals.

    Checks, each against counters kept independently: every counter is non-negative; ``sampled = skipped + inferred +
    failed + in_flight``; ``inferred = with_detections + without_detections``; the totals are the cameras' sums; and
    ``at_rest`` (after a stop) nothing is in flight."""
    errors: list[str] = []
    fields = ("sampled", "skipped", "inferred", "failed", "in_flight", "with_detections", "without_detections")
    for name, c in [*snap.cameras.items(), ("totals", snap.totals)]:
        values = {f: getattr(c, f) for f in fields}
        negative = [f"{f}={v}" for f, v in values.items() if v < 0]
        if negative:
            errors.append(f"{name}: negative {', '.join(negative)}")
        if c.sampled != c.skipped + c.inferred + c.failed + c.in_flight:
            errors.append(f"{name}: sampled {c.sampled} != skipped {c.skipped} + inferred {c.inferred} + failed "
                          f"{c.failed} + in_flight {c.in_flight}")
        if c.inferred != c.with_detections + c.without_detections:
            errors.append(f"{name}: inferred {c.inferred} != with {c.with_detections} + without "
                          f"{c.without_detections}")
        if at_rest and c.in_flight != 0:
            errors.append(f"{name}: {c.in_flight} frames still in flight after the stop")
    for f in fields:
        total = sum(getattr(c, f) for c in snap.cameras.values())
        if total != getattr(snap.totals, f):
            errors.append(f"totals: {f} {getattr(snap.totals, f)} != the cameras' sum {total}")
    return errors


def process_stats(proc: psutil.Process) -> ProcessStats:
    with proc.oneshot():
        return ProcessStats(
            rss_mb=round(proc.memory_info().rss / 2**20, 1),
            threads=proc.num_threads(),
            open_fds=proc.num_fds(),
            cpu_percent=proc.cpu_percent(None),
        )


def write_snapshot(path: str | os.PathLike[str], snap: Snapshot) -> bool:
    """Replace the stats file atomically (``core.atomic``; no fsync: it is rewritten every few seconds); False
    (logged) if the disk refuses, with no temp file left behind."""
    try:
        write_atomic(path, msgspec.json.format(msgspec.json.encode(snap), indent=2), durable=False)
    except OSError as exc:
        log.warning("cannot write stats to %s: %s", os.fspath(path), exc.strerror)
        return False
    return True


def _degraded(c: _Camera, inferred_per_s: float) -> str:
    """``"got X fps, needs Y"`` when a running camera whose conf asks for at least its floor was inferred below it
    (with 10 % slack for the window's granularity); else ""."""
    floor = min(c.min_fps, c.wanted_fps)
    if floor <= 0 or c.state != "running" or inferred_per_s >= 0.9 * floor:
        return ""
    return f"got {inferred_per_s:.2f} fps, needs {floor:g}"
