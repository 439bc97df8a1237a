"""The Supervisor actor (builds the system, applies backpressure, restarts children, stops it all) and ``main()``.

Messages: ``Start`` (ask: build everything; errors reach the caller), ``Tick`` (timer, every ``backpressure.tick_ms``:
restart crashed children within their budget, grant frames), ``StatsTick`` (timer: write the stats snapshot and the
status line), ``GetSnapshot`` (ask), ``Shutdown`` (ask: stop everything in order).

Thread: ``supervisor``. Children are declared as ``ChildSpec`` data: inference actors start first, then extractors;
they stop in reverse. A child that crashes more than ``restart_intensity`` times within ``restart_period_sec`` is
given up: an extractor's task stops and is reported; when no inference slot is left, the supervisor escalates to
``main()``, which shuts down and exits with code 3.

Shutdown, top to bottom: extractors stop (no new frames), inference drains its mailboxes (pykka's stop is queued
behind them), the writer stores what it holds, retention deletes what is due, alerts flush to the sink (or the spool),
the final snapshot is written, the timer thread stops. Each step is: request, wait with a timeout, log if forced.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # `python supervisor.py CONF` in a checkout: this directory is the `framewatch` package (setup.cfg installs it
    # under that one name), so make it importable as such and run this file as `framewatch.supervisor`.
    import importlib.util as _util
    import os as _os
    import sys as _sys

    _spec = _util.spec_from_file_location(
        "framewatch", _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "__init__.py"),
        submodule_search_locations=[_os.path.dirname(_os.path.abspath(__file__))])
    _sys.modules.setdefault("framewatch", _util.module_from_spec(_spec))  # type: ignore[arg-type]
    from framewatch.supervisor import main as _main

    _sys.exit(_main())

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pykka

from .actors.inference import service as algo_service
from .actors.inference.remote import ImageLinks, InflightImages, PresignedImages, RemoteBackend
from .actors.inference.registry import Health, Registry, ServiceInfo
from .actors.alerts.actor import AlertActor, AlertBoard, AlertSpool, MemorySpool
from .actors.ingest.backpressure import Controller, ControllerState, Valve
from .actors.core.config import Config, ConfigError, Loaded, TaskConf, default_config_path, load_config
from .actors.inference.detectors import Detector, build_detector
from .actors.ingest.extractor import ExtractorActor
from .actors.storage.writer import FrameWriterActor
from .actors.api.http import HttpApi
from .actors.inference.slot import Backend, InferenceActor, TaskRoute, local_backend
from .actors.core.messages import Flush, GetSnapshot, Grant, Shutdown, StatsTick, Start, Sweep, Tick
from .actors.core.metrics import BackpressureStats, Metrics, ProcessStats, Snapshot
from .actors.core.native_memory import bound_native_memory
from .actors.inference.pool import InferencePool
from .actors.storage.retention import Bound, RetentionActor
from .actors.analytics.rules import build_rule, has_builtin_rule
from .actors.alerts.sinks import JsonlSink, Sink
from .actors.ingest.sources import open_source
from .actors.storage.store import LocalStore, Store, StoreUnavailable, join_key, task_dir
from .actors.core.supervision import Backoff, ChildSpec, RestartBudget
from .actors.core.timers import Timers

log = logging.getLogger("framewatch")

EXIT_OK, EXIT_CONFIG, EXIT_ESCALATED = 0, 2, 3


class _Child:
    __slots__ = ("spec", "ref", "budget", "restarts", "given_up")

    def __init__(self, spec: ChildSpec, budget: RestartBudget) -> None:
        self.spec = spec
        self.ref: pykka.ActorRef[Any] | None = None
        self.budget = budget
        self.restarts = 0
        self.given_up = ""


def build_store(cfg: Config) -> Store:
    """The configured store, connected. A wrong setting raises StoreError naming it (framewatch cannot start: it will
    not fix itself); an unreachable server does not: framewatch runs without storage and the store reconnects."""
    fe = cfg.frame_extractor
    if fe.store == "minio":
        from .actors.storage.minio import MinioStore  # imported only when configured

        store = MinioStore(fe.minio)
        try:
            store.connect()
        except StoreUnavailable as exc:
            log.error("storage down at start: %s; running without it (frames counted as not stored)", exc)
        return store
    return LocalStore(fe.output_dir)


def build_sink(cfg: Config) -> tuple[Callable[[], Sink], AlertSpool]:
    ai = cfg.ai_analysis
    if ai.mq_type == "kafka":
        from .actors.alerts.kafka import KafkaSink
        from .actors.alerts.spool import Spool

        def kafka() -> Sink:
            return KafkaSink(ai.mq_address, ai.mq_topic, batch_size=ai.alert_batch_size,
                             interval_sec=ai.alert_batch_interval_sec, timeout_sec=ai.mq_timeout_sec)

        return kafka, Spool(cfg.alerts.spool_dir, max_bytes=cfg.alerts.spool_max_bytes)
    a = cfg.alerts

    def jsonl() -> Sink:
        return JsonlSink(a.jsonl_path, rotate_bytes=a.rotate_bytes, keep_files=a.keep_files)

    return jsonl, MemorySpool()


def _process_stats(proc: psutil.Process) -> ProcessStats:
    with proc.oneshot():
        return ProcessStats(
            rss_mb=round(proc.memory_info().rss / 2**20, 1),
            threads=proc.num_threads(),
            open_fds=proc.num_fds(),
            cpu_percent=proc.cpu_percent(None),
        )


def status_line(s: Snapshot) -> str:
    t = s.totals
    return (
        f"cams={len(s.cameras)} sampled={t.sampled} skipped={t.skipped} inferred={t.inferred} failed={t.failed} "
        f"in_flight={t.in_flight} alerts={s.alerts.written}/{s.alerts.emitted} stored={t.stored} | "
        f"extract {t.extracted_per_s}/s infer {t.inferred_per_s}/s busy {s.inference.busy:.0%} "
        f"p95 {s.inference.p95_ms:.0f} ms age95 {s.inference.frame_age_p95_ms:.0f} ms | "
        f"rss {s.process.rss_mb:.0f} MB threads {s.process.threads}"
    )


class Supervisor(pykka.ThreadingActor):
    def __init__(
        self,
        loaded: Loaded,
        *,
        detector_factory: Callable[[], Detector] | None = None,
        sink_factory: Callable[[], Sink] | None = None,
        escalate: Callable[[str], None] | None = None,
        timers: Timers | None = None,
    ) -> None:
        super().__init__()
        self.cfg = loaded.config
        self._notices = loaded.notices
        cfg = self.cfg
        self._detector_factory = detector_factory or (lambda: build_detector(cfg.detector))
        self._sink_factory = sink_factory
        self._escalate = escalate or (lambda reason: None)
        self._tasks = cfg.enabled_tasks()
        self.metrics = Metrics([t.id for t in self._tasks])
        self.pool = InferencePool(self.metrics)
        ai = cfg.ai_analysis
        self.registry = Registry(heartbeat_timeout_sec=ai.heartbeat_timeout_sec, circuit_open_sec=ai.circuit_open_sec)
        self._registry_seen = 0
        self._services: dict[str, tuple[ServiceInfo, list[str]]] = {}  # service id -> what it registered, its slots
        self._epochs: dict[str, int] = {}  # slot names stay unique across re-registrations
        self._retiring: list[tuple[str, pykka.ActorRef[Any]]] = []  # slots of services gone, draining
        self._routes: dict[str, TaskRoute] = {}
        self.images = InflightImages()
        self._links: ImageLinks = self.images
        self.http: HttpApi | None = None
        self.timers = timers or Timers("timers")
        self.store: Store | None = None
        self.retention: pykka.ActorRef[Any] | None = None
        self.alerts: pykka.ActorRef[Any] | None = None
        self.writer: pykka.ActorRef[Any] | None = None
        self._children: dict[str, _Child] = {}
        self._valves: dict[str, Valve] = {}
        self._types: dict[str, str] = {t.id: t.task_type for t in self._tasks}
        self._wanted = frozenset(self._types.values())  # task types some enabled camera has
        bp = cfg.backpressure
        self._controller = Controller(
            high_per_slot=bp.high_watermark, low_per_slot=bp.low_watermark,
            max_queue=cfg.ai_analysis.max_queue_size, weighted=bp.policy == "weighted",
            horizon_sec=bp.tick_ms / 1000 + 0.03,
        )
        self._bp_state = ControllerState(paused=False, level=0, high=0, low=0, granted=0)
        self._started = time.monotonic()
        self._proc = psutil.Process()
        self._last: Snapshot | None = None
        self._stopping = False
        self._components: dict[str, str] = {}
        self._alert_board = AlertBoard()  # the alert actor's stats, read without asking it (it may be blocked)

    # --- pykka hooks ---

    def on_start(self) -> None:
        threading.current_thread().name = "supervisor"

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._escalate(f"supervisor crashed: {exc_type.__name__}: {exc}")

    def on_receive(self, message: Any) -> Any:
        match message:
            case Tick():
                if not self._stopping:
                    self._check_children()
                    self._sync_services()
                    self._grant()
            case Grant():
                self.pool.signal_seen()
                if not self._stopping:
                    self._grant()
            case StatsTick():
                if not self._stopping:
                    self._write_stats()
            case GetSnapshot(fresh=fresh, window=window):
                if fresh or self._last is None:  # before the first stats tick, a look that resets nobody's window
                    return self._snapshot(window if fresh else "peek")
                return self._last
            case Start():
                return self._start()
            case Shutdown():
                return self._shutdown()
            case _:
                log.warning("supervisor: unexpected message %r", type(message).__name__)
        return None

    # --- building ---

    def _start(self) -> str:
        """Build and start everything; returns the HTTP API's URL ("" when disabled)."""
        cfg = self.cfg
        for notice in self._notices:
            log.warning("conf: %s", notice)
        self.store = build_store(cfg)
        frame_prefixes, alert_prefixes, bounds, routes = self._layout()
        self._routes = routes
        if hasattr(self.store, "presigned_url"):
            self._links = PresignedImages(self.store, self.images)
        self.retention = RetentionActor.start(store=self.store, bounds=bounds, metrics=self.metrics)
        sink_factory, spool = build_sink(cfg)
        self.alerts = AlertActor.start(
            sink_factory=self._sink_factory or sink_factory, spool=spool, metrics=self.metrics,
            batch_size=cfg.ai_analysis.alert_batch_size, batching=cfg.ai_analysis.alert_batch_enabled,
            board=self._alert_board,
        )
        self.writer = FrameWriterActor.start(
            store=self.store, retention=self.retention, alerts=self.alerts, metrics=self.metrics,
            frame_prefixes=frame_prefixes, alert_prefixes=alert_prefixes,
            jpeg_quality=cfg.frame_extractor.jpeg_quality, max_backlog=cfg.frame_extractor.store_queue_size,
        )
        sup = cfg.supervision
        local_types = frozenset(t.task_type for t in self._tasks if has_builtin_rule(t.task_type))
        slots = min(cfg.detector.actors, cfg.ai_analysis.max_concurrent_infer)
        local = Health("local", breaker=False)
        for k in range(slots):
            self._add_child(self._inference_spec(f"local-{k}", local_types, local, local_backend(self._detector_factory)))
        for task in self._tasks:
            self._add_child(self._extractor_spec(task))
        for child in self._children.values():
            self._start_child(child)
        self.pool.on_free(self._signal_grant)
        self.timers.send_every(cfg.backpressure.tick_ms / 1000, self.actor_ref, Tick())
        self.timers.send_every(cfg.stats.interval_sec, self.actor_ref, StatsTick())
        self.timers.send_every(1.0, self.retention, Sweep())
        self.timers.send_every(cfg.ai_analysis.alert_batch_interval_sec, self.alerts, Flush())
        if cfg.http.enable:
            self.http = HttpApi(cfg.http, registry=self.registry, images=self.images, snapshot=self._ask_snapshot,
                                task_types=cfg.frame_extractor.task_types)
            self._components["http"] = f"up ({self.http.start()})"
        for task in self._tasks:
            if not self.pool.serves(task.task_type):
                log.warning("task %s: no backend serves task type %s; its frames are skipped until an algorithm "
                            "service registers for it", task.id, task.task_type)
                self.metrics.source_state(task.id, "idle", f"no backend serves task type {task.task_type}")
        log.info(
            "framewatch started: %d tasks, %d inference slots (%s), store %s, sink %s, policy %s",
            len(self._tasks), slots, cfg.detector.backend, self.store.name, cfg.ai_analysis.mq_type,
            cfg.backpressure.policy,
        )
        self._restart_budget_note = f"{sup.restart_intensity} in {sup.restart_period_sec:g} s"
        return self.http.url if self.http is not None else ""

    def _signal_grant(self) -> None:
        """From an inference thread: a slot is free; grant on the supervisor's thread as soon as it can."""
        try:
            self.actor_ref.tell(Grant())
        except pykka.ActorDeadError:
            pass  # shutting down: nothing to grant

    def _ask_snapshot(self) -> Snapshot:
        """For the HTTP API's threads: a fresh snapshot, made on the supervisor's thread."""
        return self.actor_ref.ask(GetSnapshot(fresh=True, window="http"), timeout=5)

    def _layout(self) -> tuple[dict[str, str | None], dict[str, str], list[Bound], dict[str, TaskRoute]]:
        cfg = self.cfg
        ai = cfg.ai_analysis
        frame_prefixes: dict[str, str | None] = {}
        alert_prefixes: dict[str, str] = {}
        bounds: list[Bound] = []
        routes: dict[str, TaskRoute] = {}
        for task in self._tasks:
            tdir = task_dir(task.task_type, task.id, task.output_path)
            # Keys are relative to the store's root (MinioStore adds minio.base_path itself).
            alert_prefix = join_key(ai.alert_base_path, task_dir(task.task_type, task.id, None))
            frame_prefix = None if ai.save_only_with_detection else tdir
            frame_prefixes[task.id] = frame_prefix
            alert_prefixes[task.id] = alert_prefix
            bounds.append(Bound(task_id=task.id, prefix=alert_prefix, max_count=cfg.alerts.image_max_count,
                                max_age_sec=cfg.alerts.image_max_age_sec))
            if frame_prefix is not None:
                bounds.append(Bound(task_id=task.id, prefix=frame_prefix, max_count=cfg.task_max_frame_count(task),
                                    max_age_sec=task.max_age_sec))
            routes[task.id] = TaskRoute(build_rule(task.task_type, task.algo_config), frame_prefix, alert_prefix,
                                        task.algo_config)
        return frame_prefixes, alert_prefixes, bounds, routes

    def _inference_spec(self, slot: str, types: frozenset[str], health: Health,
                        backend_factory: Callable[[], Backend]) -> ChildSpec:
        self.pool.add_slot(slot, types, health)

        def start() -> pykka.ActorRef[Any]:
            return InferenceActor.start(
                slot=slot, backend_factory=backend_factory, health=health, routes=self._routes, pool=self.pool,
                writer=self.writer, metrics=self.metrics,
            )

        return ChildSpec(id=f"inference:{slot}", start=start, kind="inference",
                         shutdown_timeout_sec=self.cfg.supervision.shutdown_timeout_sec,
                         on_started=lambda ref: self.pool.install(slot, ref))

    def _extractor_spec(self, task: TaskConf) -> ChildSpec:
        cfg = self.cfg
        fe = cfg.frame_extractor
        interval = cfg.task_interval_ms(task) / 1000
        valve = Valve(task.id, weight=task.weight, interval_sec=interval,
                      unbounded=cfg.backpressure.policy == "unbounded")
        self._valves[task.id] = valve

        def source():  # type: ignore[no-untyped-def]
            return open_source(task.rtsp_url, open_timeout_ms=fe.open_timeout_ms, read_timeout_ms=fe.read_timeout_ms,
                               loop=task.loop, realtime=task.realtime)

        def start() -> pykka.ActorRef[Any]:
            return ExtractorActor.start(
                task_id=task.id, task_type=task.task_type, interval_sec=interval, source_factory=source,
                valve=valve, pool=self.pool, metrics=self.metrics, timers=self.timers,
                backoff=Backoff(fe.backoff_initial_sec, fe.backoff_max_sec, fe.backoff_reset_sec),
                stall_timeout_sec=fe.stall_timeout_sec,
            )

        return ChildSpec(id=f"extractor:{task.id}", start=start, kind="extractor",
                         shutdown_timeout_sec=cfg.supervision.shutdown_timeout_sec)

    def _add_child(self, spec: ChildSpec) -> None:
        sup = self.cfg.supervision
        self._children[spec.id] = _Child(spec, RestartBudget(sup.restart_intensity, sup.restart_period_sec))

    def _start_child(self, child: _Child) -> None:
        child.ref = child.spec.start()
        if child.spec.on_started is not None:
            child.spec.on_started(child.ref)

    # --- supervision ---

    def _check_children(self) -> None:
        now = time.monotonic()
        for child in self._children.values():
            if child.given_up or child.ref is None or child.ref.is_alive():
                continue
            if child.budget.allow(now):
                child.restarts += 1
                log.warning("%s crashed; restart %d (budget %s)", child.spec.id, child.restarts,
                            self._restart_budget_note)
                self._start_child(child)
                continue
            child.given_up = f"more than {self._restart_budget_note} restarts"
            log.error("%s crashed again: given up (%s)", child.spec.id, child.given_up)
            self._give_up(child)

    def _give_up(self, child: _Child) -> None:
        self._components[child.spec.id] = f"given up: {child.given_up}"
        if child.spec.kind == "extractor":
            task_id = child.spec.id.split(":", 1)[1]
            self._valves[task_id].close()
            self.metrics.source_state(task_id, "given up", child.given_up)
            return
        if child.spec.kind == "inference":
            self.pool.remove_slot(child.spec.id.split(":", 1)[1])
            if self.pool.live_slots() == 0:
                reason = "every inference slot was given up"
                log.critical("escalating: %s", reason)
                self._escalate(reason)

    def _grant(self) -> None:
        valves = []
        for task_id, valve in self._valves.items():
            if self.pool.serves(self._types[task_id]):
                valves.append(valve)
        self._bp_state = self._controller.tick(
            valves, load=self.pool.load(), slots=self.pool.capacity(self._wanted), now=time.monotonic()
        )

    # --- remote algorithm services ---

    def _sync_services(self) -> None:
        """Evict silent services; turn registry changes into slots added to or retired from the pool."""
        self.registry.evict_stale()
        if self.registry.generation == self._registry_seen:
            return
        self._registry_seen = self.registry.generation
        wanted = self.registry.services()
        for sid, (info, _) in list(self._services.items()):
            if sid not in wanted or wanted[sid][0] != info:
                self._retire_service(sid)
        for sid, (info, health) in wanted.items():
            if sid not in self._services:
                self._add_service(info, health)

    def _add_service(self, info: ServiceInfo, health: Health) -> None:
        ai = self.cfg.ai_analysis
        free = ai.max_concurrent_infer - len(self.pool.outstanding())
        n = min(info.max_concurrency, free)
        if n < info.max_concurrency:
            log.warning("service %s: %d of its %d slots fit within max_concurrent_infer = %d", info.service_id,
                        max(n, 0), info.max_concurrency, ai.max_concurrent_infer)
        epoch = self._epochs.get(info.service_id, 0)
        self._epochs[info.service_id] = epoch + 1
        links, quality = self._links, self.cfg.frame_extractor.jpeg_quality

        def backend() -> Backend:
            return RemoteBackend(info, links, connect_timeout_sec=ai.connect_timeout_sec,
                                 timeout_sec=ai.request_timeout_sec, jpeg_quality=quality)

        slots = []
        for k in range(max(n, 0)):
            slot = f"{info.service_id}-{k}" + (f".{epoch}" if epoch else "")
            spec = self._inference_spec(slot, frozenset(info.task_types), health, backend)
            self._add_child(spec)
            self._start_child(self._children[spec.id])
            slots.append(slot)
        self._services[info.service_id] = (info, slots)

    def _retire_service(self, sid: str) -> None:
        """No new frame goes to its slots; frames queued there move elsewhere (its health says evicted) or are
        inferred by it if it was only updated; each actor stops once its mailbox is empty."""
        _, slots = self._services.pop(sid)
        for slot in slots:
            self.pool.remove_slot(slot)
            child = self._children.pop(f"inference:{slot}", None)
            if child is not None and child.ref is not None:
                child.ref.stop(block=False)
                self._retiring.append((child.spec.id, child.ref))
        self._retiring = [(name, ref) for name, ref in self._retiring if ref.is_alive()]

    # --- stats ---

    def _snapshot(self, window: str = "stats") -> Snapshot:
        alert_stats = self._alert_board.stats
        mailboxes = self.pool.mailboxes()
        for name, ref in (("writer", self.writer), ("retention", self.retention), ("alerts", self.alerts)):
            if ref is not None:
                mailboxes[name] = ref.actor_inbox.qsize()
        st = self._bp_state
        components = dict(self._components)
        if self.store is not None:
            health = self.store.health()
            components["storage"] = f"up ({self.store.name})" if health == "up" else health
        if self.alerts is not None:
            components["sink"] = "up" if alert_stats.sink_ok else f"down: {alert_stats.sink_error}"
        groups = self.pool.by_group()
        services = self.registry.statistics(
            outstanding={g: o for g, (_, o) in groups.items()}, slots={g: n for g, (n, _) in groups.items()}
        )
        return self.metrics.snapshot(
            started_mono=self._started,
            slots=max(self.pool.capacity(self._wanted), 1),
            mailboxes=mailboxes,
            backpressure=BackpressureStats(policy=self.cfg.backpressure.policy, paused=st.paused, level=st.level,
                                           high=st.high, low=st.low, peak_load=self.pool.peak_load),
            alert_queue=alert_stats.batch_queue,
            spooled=alert_stats.spooled,
            process=_process_stats(self._proc),
            components=components,
            restarts={c.spec.id: c.restarts for c in self._children.values() if c.restarts},
            services=services,
            window=window,
        )

    def _write_stats(self) -> Snapshot:
        snap = self._snapshot()
        self._last = snap
        path = Path(self.cfg.stats.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(msgspec.json.format(msgspec.json.encode(snap), indent=2))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write stats to %s: %s", path, exc.strerror)
        if self.cfg.stats.log:
            log.info("stats: %s", status_line(snap))
        return snap

    # --- shutdown ---

    def _stop_refs(self, refs: Sequence[tuple[str, pykka.ActorRef[Any] | None]], timeout: float) -> None:
        futures = []
        for name, ref in refs:
            if ref is not None and ref.is_alive():
                futures.append((name, ref.stop(block=False)))
        deadline = time.monotonic() + timeout
        for name, fut in futures:
            try:
                fut.get(timeout=max(0.01, deadline - time.monotonic()))
            except pykka.Timeout:
                log.error("shutdown: %s did not stop within %.1f s; leaving it", name, timeout)

    def _shutdown(self) -> Snapshot:
        self._stopping = True
        timeout = self.cfg.supervision.shutdown_timeout_sec
        log.info("shutdown: stopping sources")
        for valve in self._valves.values():
            valve.close()
        kids = list(self._children.values())
        self._stop_refs([(c.spec.id, c.ref) for c in reversed(kids) if c.spec.kind == "extractor"], timeout)
        log.info("shutdown: draining inference (%d frames in flight)", self.pool.load())
        self._stop_refs([(c.spec.id, c.ref) for c in reversed(kids) if c.spec.kind != "extractor"]
                        + self._retiring, timeout)
        if self.http is not None:
            log.info("shutdown: stopping the http api")
            self.http.stop(timeout)
        log.info("shutdown: storing, retention, flushing alerts")
        for name, ref in (("writer", self.writer), ("retention", self.retention), ("alerts", self.alerts)):
            self._stop_refs([(name, ref)], timeout)
        snap = self._write_stats()
        self.timers.stop(timeout)
        if self.store is not None:
            self.store.close()
        log.info("shutdown: done; %s", status_line(snap))
        return snap


# --- running ------------------------------------------------------------------------------------------------------


class Running:
    """A started system, for ``main()`` and for tests: ``with Running(loaded) as fw: fw.snapshot()``.

    It owns the supervisor and the timer thread, so even a crashed supervisor leaves nothing running after ``stop``.
    """

    def __init__(self, loaded: Loaded, **overrides: Any) -> None:
        self.loaded = loaded
        self.escalated = threading.Event()
        self.escalation = ""
        self.timers = Timers("timers")
        self.timers.start()
        self.ref = Supervisor.start(loaded, escalate=self._on_escalate, timers=self.timers, **overrides)
        self.final: Snapshot | None = None
        self.http_url = ""
        try:
            self.http_url = self.ref.ask(Start(), timeout=120)
        except BaseException:
            self.stop()
            raise

    def _on_escalate(self, reason: str) -> None:
        self.escalation = reason
        self.escalated.set()

    def snapshot(self, fresh: bool = True) -> Snapshot:
        return self.ref.ask(GetSnapshot(fresh=fresh), timeout=10)

    def proxy_metrics(self) -> Metrics:
        return self.ref.proxy().metrics.get(timeout=5)

    def stop(self, timeout: float = 120) -> Snapshot | None:
        try:
            if self.ref.is_alive():
                try:
                    self.final = self.ref.ask(Shutdown(), timeout=timeout)
                finally:
                    self.ref.stop(block=True, timeout=timeout)
            else:  # the supervisor crashed: its children have no owner left but us
                log.critical("supervisor is dead; stopping every actor")
                pykka.ActorRegistry.stop_all(block=True, timeout=timeout)
        finally:
            self.timers.stop()
        return self.final

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s [%(threadName)s] %(message)s",
        stream=sys.stderr,
    )


def _load_or_exit(path: str | None) -> Loaded:
    conf = Path(path) if path else default_config_path()
    try:
        return load_config(conf)
    except ConfigError as exc:
        print(f"framewatch: bad configuration {conf}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _show_status(fw: Running, shown: str) -> str:
    """Rewrite the terminal's last line with the newest snapshot's status line."""
    try:
        snap = fw.snapshot(fresh=False)
    except (pykka.ActorDeadError, pykka.Timeout):
        return shown
    if snap.time != shown:
        sys.stderr.write("\r\x1b[K" + status_line(snap))
        sys.stderr.flush()
    return snap.time


def run(loaded: Loaded, duration: float | None = None) -> int:
    """Run until SIGINT/SIGTERM, ``duration`` seconds, or an escalation; returns the exit code.

    On a terminal the stats appear as one live status line instead of a log line per snapshot.
    """
    stop = threading.Event()
    live_status = sys.stderr.isatty()
    if live_status:
        loaded = msgspec.structs.replace(
            loaded, config=msgspec.structs.replace(
                loaded.config, stats=msgspec.structs.replace(loaded.config.stats, log=False)))

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            fw = Running(loaded)
        except Exception as exc:  # storage unreachable at start, bad model file...
            log.critical("cannot start: %s", exc)
            return 1
        deadline = time.monotonic() + duration if duration else None
        shown = ""
        while not stop.is_set() and not fw.escalated.is_set() and fw.ref.is_alive():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            stop.wait(0.5 if remaining is None else min(0.5, remaining))
            if live_status:
                shown = _show_status(fw, shown)
        if live_status:
            sys.stderr.write("\n")
        fw.stop()
        if fw.escalated.is_set():
            log.critical("stopped after escalation: %s", fw.escalation)
            return EXIT_ESCALATED
        return EXIT_OK
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    bound_native_memory()  # before any thread exists
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="framewatch", description="Edge video analytics on actors: cameras in, "
                                     "alerts out, extraction never outpacing inference.")
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run the pipeline (default: the embedded conf/default.toml)")
    p_run.add_argument("conf", nargs="?", help="configuration file (TOML)")
    p_run.add_argument("--duration", type=float, help="stop after this many seconds")
    p_run.add_argument("--log-level", default="info")
    p_check = sub.add_parser("check", help="validate a configuration and exit (code 2 if it is bad)")
    p_check.add_argument("conf")
    p_algo = sub.add_parser("algo", help="algorithm services")
    algo_sub = p_algo.add_subparsers(dest="algo_command", required=True)
    p_serve = algo_sub.add_parser("serve", help="run the reference algorithm service (the built-in detector), "
                                  "registered with a framewatch")
    algo_service.add_arguments(p_serve)
    p_serve.add_argument("--log-level", default="info")
    sub.add_parser("bench", help="run a benchmark scenario side by side with the old system's behaviour "
                   "(`framewatch bench -h`)", add_help=False)
    if not argv or (argv[0] not in sub.choices and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]  # `framewatch`, `framewatch --duration 9`, `python supervisor.py CONF` all run
    if argv[0] == "bench":  # the harness parses its own arguments
        from framewatch.benchmarks.cli import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "algo":
        _setup_logging(args.log_level)
        return algo_service.serve(args)
    if args.command == "check":
        loaded = _load_or_exit(args.conf)
        for notice in loaded.notices:
            print(f"notice: {notice}")
        print(f"{args.conf}: OK ({len(loaded.config.enabled_tasks())} tasks enabled)")
        return EXIT_OK
    _setup_logging(args.log_level)
    loaded = _load_or_exit(args.conf)
    return run(loaded, args.duration)


if __name__ == "__main__":
    sys.exit(main())
