"""Remote algorithm services: the registry, and the health of each backend group (latency EWMA, circuit breaker).

Not an actor. The registry is written by the HTTP API's threads (register, heartbeat, unregister) and read by the
supervisor's tick, which evicts services whose last heartbeat is older than ``heartbeat_timeout_sec`` and turns each
change (``generation`` moved) into inference slots added to or retired from the pool. Every method takes one lock.

As in the old system: registering an endpoint already registered under another id replaces that entry (the same
endpoint is the same service, restarted under a new id); registering again under the same id replaces it too (times
and heartbeat stats start again; its slots are rebuilt only when what it registered changed). A heartbeat may carry
the old stats body (``HeartbeatStats``), shown in the listing.

Bounds: ``register`` may be given ``max_services`` (the HTTP API passes ``[http] max_services``): one service more is
refused with ``RegistryFull``; a heartbeat keeps only the four known stats numbers; a backend's last error is cut to
``MAX_ERROR_CHARS``; the health of evicted services (kept so counters survive a restart under the same id) is kept for
at most ``KEPT_EVICTED`` ids, the oldest dropped first. Endpoints are shown (listing, stats, logs) with any
``user:password@`` replaced by ``***@`` (the API refuses such endpoints; services built in code may still have one).

A ``Health`` is shared by every slot of one backend group (one remote service, or the local detector): the pool
reads it to route (expected wait = (outstanding + 1) x latency EWMA) and to skip a service whose circuit is open; the
inference actors of the group record each call's outcome in it. Circuit breaker: one failed or timed-out call opens
the circuit for ``circuit_open_sec``; then it is half-open and admits a single trial frame: success closes it, failure
opens it again. An evicted service's health says "evicted", so frames still queued for its slots move elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from ..core.metrics import ServiceStats
from ..core.urls import redact_url

log = logging.getLogger(__name__)

#: Latency assumed for a backend before its first call, so a new service neither floods nor starves.
PRIOR_LATENCY_MS = 100.0
EWMA_ALPHA = 0.2

CLOSED, OPEN, HALF_OPEN, EVICTED = "closed", "open", "half-open", "evicted"
#: A backend's last error (an exception's text, possibly quoting what the service answered) is cut to this length.
MAX_ERROR_CHARS = 300
#: Evicted or unregistered services whose health (counters) is kept, the oldest dropped first.
KEPT_EVICTED = 256


class RegistryFull(Exception):
    """``register`` would add one service more than ``max_services``; the message says the limit and the fix."""


class Health:
    """Routing weight and circuit breaker of one backend group. Thread-safe."""

    def __init__(self, name: str, open_sec: float = 5.0, *, breaker: bool = True) -> None:
        self.name = name
        self._open_sec = open_sec
        self._breaker = breaker
        self._lock = threading.Lock()
        self.ewma_ms = PRIOR_LATENCY_MS
        self._state = CLOSED
        self._opened_at = 0.0
        self._trial_out = False
        self.completed = self.failures = self.retries = 0
        self.last_error = ""

    def state(self, now: float | None = None) -> str:
        with self._lock:
            return self._state_locked(time.monotonic() if now is None else now)

    def _state_locked(self, now: float) -> str:
        if self._state == OPEN and now - self._opened_at >= self._open_sec:
            self._state, self._trial_out = HALF_OPEN, False
        return self._state

    def can_take(self, now: float) -> bool:
        """May the pool route a new frame here? (Half-open: only while its single trial frame is not out.)"""
        with self._lock:
            state = self._state_locked(now)
            return state == CLOSED or (state == HALF_OPEN and not self._trial_out)

    def taken(self, now: float) -> None:
        """The pool routed a frame here: in half-open state, that frame is the trial."""
        with self._lock:
            if self._state_locked(now) == HALF_OPEN:
                self._trial_out = True

    def usable(self, now: float) -> bool:
        """Should a frame already queued here be sent to the backend? Not while open or evicted."""
        with self._lock:
            return self._state_locked(now) in (CLOSED, HALF_OPEN)

    def succeeded(self, latency_ms: float) -> None:
        with self._lock:
            self.completed += 1
            self.ewma_ms += EWMA_ALPHA * (latency_ms - self.ewma_ms)
            if self._state == HALF_OPEN:
                self._state = CLOSED

    def failed(self, reason: str, latency_ms: float, now: float) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = reason if len(reason) <= MAX_ERROR_CHARS else reason[:MAX_ERROR_CHARS - 3] + "..."
            self.ewma_ms += EWMA_ALPHA * (latency_ms - self.ewma_ms)
            if self._breaker and self._state != EVICTED:
                self._state, self._opened_at = OPEN, now

    def counters(self) -> tuple[int, int, int, float, str]:
        """completed, failures, retries, latency EWMA (ms), last error."""
        with self._lock:
            return self.completed, self.failures, self.retries, self.ewma_ms, self.last_error

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def evict(self) -> None:
        with self._lock:
            self._state = EVICTED

    def revive(self) -> None:
        with self._lock:
            if self._state == EVICTED:
                self._state = CLOSED


class ServiceInfo(msgspec.Struct, frozen=True):
    """What a service registered; a re-registration that changes it rebuilds the service's slots."""

    service_id: str
    name: str
    task_types: tuple[str, ...]
    endpoint: str
    version: str
    max_concurrency: int
    mode: str  # "url": JSON with image_url (the old protocol); "inline": JPEG in the body


NonNegativeMs = Annotated[float, Meta(ge=0)]


class HeartbeatStats(msgspec.Struct, frozen=True):
    """The old heartbeat's optional body. Only these four numbers are kept (other fields are dropped when decoding),
    so whatever a client sends, a service's stats take the same few bytes. Absent fields are 0, as in the old server,
    which replaced the four at each heartbeat that carried a body."""

    total_requests: Annotated[int, Meta(ge=0, le=2**63 - 1)] = 0
    avg_inference_time_ms: NonNegativeMs = 0.0
    last_inference_time_ms: NonNegativeMs = 0.0
    last_total_time_ms: NonNegativeMs = 0.0


class _Service:
    __slots__ = ("info", "health", "last_heartbeat", "registered_wall", "beat_wall", "stats")

    def __init__(self, info: ServiceInfo, health: Health, now: float) -> None:
        self.info = info
        self.health = health
        self.last_heartbeat = now  # monotonic: eviction
        self.registered_wall = self.beat_wall = time.time()  # Unix time: the listing's register_at, last_heartbeat
        self.stats = HeartbeatStats()

    def beat(self, now: float) -> None:
        self.last_heartbeat = now
        self.beat_wall = time.time()

    def entry(self, now: float) -> dict[str, Any]:
        """This service in ``GET /services``: the old server's fields first, then framewatch's own."""
        info = self.info
        circuit = self.health.state(now)
        completed, failures, retries, ewma, last_error = self.health.counters()
        return {
            "service_id": info.service_id, "name": info.name, "task_types": list(info.task_types),
            "endpoint": redact_url(info.endpoint), "version": info.version, "register_at": int(self.registered_wall),
            "last_heartbeat": int(self.beat_wall), **msgspec.structs.asdict(self.stats),
            "status": "healthy" if circuit == CLOSED else "unhealthy",
            "call_count": completed + failures,  # not in the spec; the old web console shows it
            "max_concurrency": info.max_concurrency, "mode": info.mode, "circuit": circuit,
            "heartbeat_age_sec": round(now - self.last_heartbeat, 2), "avg_latency_ms": round(ewma, 2),
            "completed": completed, "failures": failures, "retries": retries, "last_error": last_error,
        }


class Registry:
    """Registered services by id. ``generation`` changes whenever the set of services or their shape does."""

    def __init__(self, *, heartbeat_timeout_sec: float, circuit_open_sec: float) -> None:
        self.heartbeat_timeout_sec = heartbeat_timeout_sec
        self._open_sec = circuit_open_sec
        self._lock = threading.Lock()
        self._services: dict[str, _Service] = {}
        self._health: dict[str, Health] = {}  # kept across evictions, so counters survive a restart of a service
        self.generation = 0

    def register(self, info: ServiceInfo, now: float | None = None, *, max_services: int | None = None) -> str:
        """Add or replace a service; an empty ``service_id`` gets a new one. Returns the id. Raises ``RegistryFull``
        when it is a new service (neither its id nor its endpoint is registered) and ``max_services`` are."""
        now = time.monotonic() if now is None else now
        if not info.service_id:
            info = msgspec.structs.replace(info, service_id=uuid.uuid4().hex[:12])
        sid = info.service_id
        with self._lock:
            replaced = [other for other, s in self._services.items()
                        if other != sid and s.info.endpoint == info.endpoint]
            new = sid not in self._services and not replaced
            if new and max_services is not None and len(self._services) >= max_services:
                raise RegistryFull(f"service limit reached: {len(self._services)} services are registered "
                                   f"([http] max_services = {max_services}); unregister one first, or raise the limit")
            for other in replaced:
                self._remove_locked(other)
            health = self._health.get(sid)
            if health is None:
                health = self._health[sid] = Health(sid, self._open_sec)
            health.revive()
            current = self._services.get(sid)
            self._services[sid] = _Service(info, health, now)
            if current is None or current.info != info:
                self.generation += 1
        for other in replaced:
            log.info("algorithm service %s replaced by %s: same endpoint %s", other, sid, redact_url(info.endpoint))
        if current is None or current.info != info:
            log.info("algorithm service %s (%s) registered: %s, types %s, max_concurrency %d, mode %s", sid,
                     info.name, redact_url(info.endpoint), ",".join(info.task_types), info.max_concurrency, info.mode)
        return sid

    def heartbeat(self, service_id: str, stats: HeartbeatStats | None = None, now: float | None = None) -> bool:
        """False when the service is unknown (evicted or never registered): it should register again. ``stats``
        replace the last ones; a heartbeat without a body keeps them."""
        with self._lock:
            service = self._services.get(service_id)
            if service is None:
                return False
            service.beat(time.monotonic() if now is None else now)
            if stats is not None:
                service.stats = stats
            return True

    def unregister(self, service_id: str) -> bool:
        removed = self._remove(service_id)
        if removed:
            log.info("algorithm service %s unregistered", service_id)
        return removed

    def evict_stale(self, now: float | None = None) -> list[str]:
        """Evict every service whose last heartbeat is older than the timeout; returns their ids."""
        now = time.monotonic() if now is None else now
        with self._lock:
            stale = [sid for sid, s in self._services.items() if now - s.last_heartbeat > self.heartbeat_timeout_sec]
        for sid in stale:
            if self._remove(sid):
                log.warning("algorithm service %s evicted: no heartbeat for more than %g s", sid,
                            self.heartbeat_timeout_sec)
        return stale

    def _remove(self, service_id: str) -> bool:
        with self._lock:
            return self._remove_locked(service_id)

    def _remove_locked(self, service_id: str) -> bool:
        service = self._services.pop(service_id, None)
        if service is None:
            return False
        service.health.evict()
        self.generation += 1
        evicted = [sid for sid in self._health if sid not in self._services]
        for sid in evicted[:max(0, len(evicted) - KEPT_EVICTED)]:  # dicts keep insertion order: oldest first
            del self._health[sid]
        return True

    def services(self) -> dict[str, tuple[ServiceInfo, Health]]:
        with self._lock:
            return {sid: (s.info, s.health) for sid, s in self._services.items()}

    def listing(self, now: float | None = None) -> list[dict[str, Any]]:
        """``GET /api/v1/ai_analysis/services``: one entry per service (``_Service.entry``), in registration order."""
        now = time.monotonic() if now is None else now
        with self._lock:
            services = list(self._services.values())
        return [s.entry(now) for s in services]

    def statistics(self, outstanding: dict[str, int], slots: dict[str, int]) -> dict[str, ServiceStats]:
        """Per-service stats; ``outstanding`` and ``slots`` by service id come from the pool."""
        now = time.monotonic()
        with self._lock:
            known = {sid: (s.info, s.last_heartbeat) for sid, s in self._services.items()}
            healths = dict(self._health)
        out: dict[str, ServiceStats] = {}
        for sid, health in healths.items():
            info, beat = known.get(sid, (None, None))
            completed, failures, retries, ewma, last_error = health.counters()
            out[sid] = ServiceStats(
                name=info.name if info else "", endpoint=redact_url(info.endpoint) if info else "",
                mode=info.mode if info else "", task_types=list(info.task_types) if info else [],
                slots=slots.get(sid, 0), outstanding=outstanding.get(sid, 0), completed=completed,
                failures=failures, retries=retries, circuit=health.state(now),
                avg_latency_ms=round(ewma, 2), heartbeat_age_sec=round(now - beat, 2) if beat is not None else -1.0,
                last_error=last_error,
            )
        return out
