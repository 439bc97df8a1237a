"""Wiring: the system a conf describes (one record per camera, the shared parts, every child's spec), and ``Running``.

``System`` is built once from a ``Loaded`` conf, on the caller's thread, without I/O: cameras (``Camera``: the task's
conf, its route, its valve, its retention bounds), the metrics, the pool, the registry, the links through which actors
reach each other across restarts, and methods that return each child's ``ChildSpec``. The ``Supervisor``
(``supervisor.py``) puts the specs in its tree, starts them in order and owns them from then on; ``System.close``
releases what the children share (the store, the alert spool) once the tree has stopped.

``Running`` is a started system, for ``main()`` and for tests: ``with Running(loaded) as fw: fw.snapshot()``. A child
that cannot start raises ``StartError`` from the constructor, after everything started so far was stopped.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka

from ..supervisor import Supervisor
from .alerts.actor import AlertActor, AlertBoard, AlertSpool
from .alerts.history import History
from .alerts.sinks import JsonlSink, Sink
from .analytics.actor import AnalyticsActor
from .analytics.rules import has_builtin_rule
from .analytics.tasks.base import TaskParams
from .analytics.tasktypes import decode_task_params
from .api.http import LOCAL_SLOTS, HttpApi
from .api.alerts_api import AlertsApi
from .api.tasks_api import TasksApi
from .core.conffile import ConfFile
from .core.config import Config, Loaded, TaskConf
from .core.messages import GetSnapshot, Shutdown, Start
from .core.metrics import Metrics, Snapshot
from .core.supervision import Backoff, ChildSpec, Handle, Link, StartError, start_actor
from .core.timers import Timers
from .inference.detectors import Detector, build_coco_detector, build_detector
from .inference.pool import InferencePool
from .inference.registry import Health, Registry, ServiceInfo
from .inference.remote import ImageLinks, InflightImages, PresignedImages, RemoteBackend, publish_algo_config
from .inference.slot import Backend, InferenceActor, TaskRoute, local_backend
from .ingest.backpressure import Valve
from .ingest.extractor import ExtractorActor
from .ingest.preview import Preview
from .ingest.sources import FrameSource, source_for_task, unpaced
from .storage.reserve import DiskReserve
from .storage.retention import Bound, RetentionActor
from .storage.store import LocalStore, Store, StoreError, StoreUnavailable, join_key, task_dir
from .storage.writer import FrameWriterActor, ObjectWriter

log = logging.getLogger("framewatch")


class Camera:
    """Everything framewatch keeps about one task (camera), built once from its conf."""

    __slots__ = ("conf", "interval_sec", "params", "route", "valve", "bounds", "waiting", "analytics", "seqs",
                 "preview")

    def __init__(self, cfg: Config, task: TaskConf, *, seqs: Iterator[int] | None = None,
                 preview: Preview | None = None) -> None:
        """``seqs``, ``preview``: the camera's frame numbers and latest frame, kept across a reconfiguration (a
        camera changed at run time is a new ``Camera`` of the same id: its seq goes on increasing)."""
        ai = cfg.ai_analysis
        self.conf = task
        self.interval_sec = cfg.task_interval_ms(task) / 1000
        # The task type's tracking rule and its parameters (the conf was validated: this decodes).
        self.params: TaskParams[Any] | None = (decode_task_params(task.task_type, task.algo_config)
                                               if has_builtin_rule(task.task_type) else None)
        # Keys are relative to the store's root (MinioStore adds minio.base_path itself).
        alert_prefix = join_key(ai.alert_base_path, task_dir(task.task_type, task.id, None))
        frame_prefix = None if ai.save_only_with_detection else task_dir(task.task_type, task.id, task.output_path)
        # Frames (with their images) wait here while its analytics restarts: a few, not thousands.
        self.analytics = Link(f"analytics:{task.id}", max_pending=ANALYTICS_PENDING)
        self.route = TaskRoute(local_detector_kind(cfg, task.task_type, self.params), frame_prefix, alert_prefix,
                               task.algo_config, save_alert_image=cfg.task_save_alert_image(task),
                               analytics=self.analytics)
        min_fps = self.params.min_fps if self.params is not None else 0.0
        self.valve = Valve(task.id, weight=task.weight, interval_sec=self.interval_sec, min_fps=min_fps,
                           unbounded=cfg.backpressure.policy == "unbounded", ahead=cfg.backpressure.credits_ahead,
                           waits=unpaced(task))
        self.seqs = seqs if seqs is not None else itertools.count(1)  # frame numbers, across restarts of its extractor
        self.preview = preview if preview is not None else Preview(quality=cfg.frame_extractor.jpeg_quality)
        self.waiting = ""  # why its samples are skipped whatever the load, as last reported (supervisor thread)
        self.bounds = [Bound(task_id=task.id, prefix=alert_prefix, max_count=cfg.alerts.image_max_count,
                             max_age_sec=cfg.alerts.image_max_age_sec)]
        if frame_prefix is not None:
            self.bounds.append(Bound(task_id=task.id, prefix=frame_prefix, max_count=cfg.task_max_frame_count(task),
                                     max_age_sec=task.max_age_sec))

    @property
    def id(self) -> str:
        return self.conf.id

    @property
    def child_id(self) -> str:
        return f"extractor:{self.conf.id}"


#: Frames held for a camera's analytics between its crash and its restart (the oldest dropped past it, counted).
ANALYTICS_PENDING = 64

#: Local detector kinds: the built-in person detector, and the 80-class COCO one.
PERSON, COCO = "person", "coco"


def local_detector_kind(cfg: Config, task_type: str, params: TaskParams[Any] | None) -> str | None:
    """Which local detector serves a task type: none when ``detector.task_types`` leaves it out; COCO for
    ``detector.coco_task_types`` (and any type tracking labels the person detector lacks but COCO has), the person
    detector for types that track people only, else none (the type's labels, ``smoking`` / ``no_helmet``, come from
    algorithm services)."""
    served = cfg.detector.task_types
    if params is None or (served is not None and task_type not in served):
        return None
    from .inference.nanodet import COCO_LABELS

    labels = params.labels()
    if task_type in cfg.detector.coco_task_types:
        return COCO if labels <= set(COCO_LABELS) else None
    if labels <= {"person"}:
        return PERSON
    return COCO if labels <= set(COCO_LABELS) else None


def served_locally(cfg: Config, task: TaskConf) -> bool:
    """Whether a local detector serves the task's type (else only algorithm services do)."""
    params = decode_task_params(task.task_type, task.algo_config) if has_builtin_rule(task.task_type) else None
    return local_detector_kind(cfg, task.task_type, params) is not None


def build_store(cfg: Config) -> Store:
    """The configured store, connected. A wrong setting raises StartError (it will not fix itself); an unreachable
    server does not: framewatch runs without storage and the store reconnects."""
    fe = cfg.frame_extractor
    if fe.store == "minio":
        from .storage.minio import MinioStore  # imported only when configured

        store = MinioStore(fe.minio)
        try:
            store.connect()
        except StoreUnavailable:
            pass  # the store reported its outage (once); framewatch runs without it, frames counted as not stored
        except StoreError as exc:
            raise StartError("frame_extractor.minio", str(exc)) from None
        return store
    return LocalStore(fe.output_dir)


def build_sink_factory(cfg: Config) -> Callable[[], Sink]:
    ai = cfg.ai_analysis
    if ai.mq_type == "kafka":
        from .alerts.kafka import KafkaSink

        def kafka() -> Sink:
            return KafkaSink(ai.mq_address, ai.mq_topic, batch_size=ai.alert_batch_size,
                             interval_sec=ai.alert_batch_interval_sec, timeout_sec=ai.mq_timeout_sec)

        return kafka
    a = cfg.alerts

    def jsonl() -> Sink:
        return JsonlSink(a.jsonl_path, rotate_bytes=a.rotate_bytes, keep_files=a.keep_files)

    return jsonl


def open_spool(cfg: Config) -> AlertSpool:
    """The alert journal, on disk for every sink: an alert counted emitted survives a kill -9 (``alerts.actor``)."""
    from .alerts.spool import Spool

    try:
        return Spool(cfg.alerts.spool_dir, max_bytes=cfg.alerts.spool_max_bytes)
    except OSError as exc:
        raise StartError("alerts.spool_dir", f"cannot use {cfg.alerts.spool_dir!r}: {exc.strerror or exc}") from None


def open_history(cfg: Config) -> History | None:
    """The alert history (``alerts.history_path``), None when it is off. Never fails the start: an unusable file is
    set aside, or the history disabled, and logged (``History.open``); the alerts go out either way."""
    path = cfg.alert_history_path()
    return History.open(path, max_rows=cfg.ai_analysis.max_alerts_in_db) if path else None


class System:
    """The parts of one framewatch, wired; the supervisor starts and owns its children."""

    def __init__(self, loaded: Loaded, *, detector_factory: Callable[[], Detector] | None = None,
                 sink_factory: Callable[[], Sink] | None = None,
                 source_factory: Callable[[TaskConf], FrameSource] | None = None,
                 store_factory: Callable[[Config], Store] | None = None) -> None:
        """The factories replace the conf's choice (tests crash components on purpose; benchmarks emulate)."""
        cfg = self.cfg = loaded.config
        self.notices = loaded.notices
        self.retired: dict[str, Camera] = {}  # cameras stopped or removed at run time, by id
        self.conf_file = ConfFile(loaded.path)
        self.cameras: dict[str, Camera] = {}
        # The data path's view: a camera's route stays after it is removed (its frames in flight still need it).
        self.routes: dict[str, TaskRoute] = {}
        self.metrics = Metrics([t.id for t in cfg.enabled_tasks()])
        self.pool = InferencePool(self.metrics)
        # Every prefix retention bounds, also of removed cameras (their files stay bounded).
        self.bounds: list[Bound] = []
        for task in cfg.enabled_tasks():
            self.add_camera(task)
        ai = cfg.ai_analysis
        self.registry = Registry(heartbeat_timeout_sec=ai.heartbeat_timeout_sec, circuit_open_sec=ai.circuit_open_sec)
        self.images = InflightImages()
        self.timers = Timers("timers")
        self.alerts = Link("alerts")
        self.retention = Link("retention")
        self.writer = Link("writer")
        self.alert_board = AlertBoard()  # the alert actor's stats, read without asking it (it may be blocked)
        self.store: Store | None = None  # connected by ``connect`` (I/O), on the supervisor's thread
        self.objects: ObjectWriter | None = None
        self.links: ImageLinks = self.images
        self.spool: AlertSpool | None = None
        self.history: History | None = None  # opened by ``connect``
        self.http: HttpApi | None = None
        self._detector_factory = detector_factory  # replaces every local detector kind (tests, benchmarks)
        self._sink_factory = sink_factory or build_sink_factory(cfg)
        self._source_factory = source_factory or self._conf_source
        self._store_factory = store_factory or build_store
        sup = cfg.supervision
        self._budget = {"intensity": sup.restart_intensity, "period_sec": sup.restart_period_sec,
                        "shutdown_timeout_sec": sup.shutdown_timeout_sec}
        self.wanted_types = frozenset(c.conf.task_type for c in self.cameras.values())

    # --- cameras (also at run time, on the supervisor's thread) ---

    def add_camera(self, task: TaskConf) -> Camera:
        """Build a camera (or the new incarnation of one) and register it with the data path; its children are
        added by the caller (``analytics_spec``, ``extractor_spec``)."""
        old = self.retired.pop(task.id, None) or self.cameras.get(task.id)
        camera = Camera(self.cfg, task, seqs=old.seqs if old else None, preview=old.preview if old else None)
        self.cameras[task.id] = camera
        self.routes[task.id] = camera.route
        self.metrics.sampling_floor(camera.id, camera.valve.min_fps, 1 / camera.interval_sec)
        self.pool.pin(camera.id, task.preferred_algorithm_endpoint)
        known = {b.prefix for b in self.bounds}
        self.bounds.extend(b for b in camera.bounds if b.prefix not in known)
        self.wanted_types = frozenset(c.conf.task_type for c in self.cameras.values())
        return camera

    def alert_image(self, key: str) -> bytes | None:
        """A stored alert image by its key (the alert history's ``image_path``); None when it cannot be read."""
        if self.store is None:
            return None
        try:
            return self.store.get(key)
        except StoreError:
            return None

    def preview_of(self, task_id: str) -> Preview | None:
        """The latest-frame holder of a camera running or retired (None: it never ran)."""
        camera = self.cameras.get(task_id) or self.retired.get(task_id)
        return camera.preview if camera is not None else None

    def retire_camera(self, task_id: str) -> Camera:
        """Take a camera out of the running set (its children are stopped by the caller). Its counters stay in the
        metrics, so the conservation equation keeps holding; its route stays for its frames still in flight."""
        camera = self.cameras.pop(task_id)
        camera.valve.close()
        self.retired[task_id] = camera
        self.wanted_types = frozenset(c.conf.task_type for c in self.cameras.values())
        return camera

    # --- resources the children share ---

    def connect(self) -> None:
        """Open the store and the spool (raises StartError naming the setting)."""
        self.store = self._store_factory(self.cfg)
        fe = self.cfg.frame_extractor
        reserve = (DiskReserve(fe.output_dir, free_mb=fe.reserve_free_mb, free_percent=fe.reserve_free_percent)
                   if isinstance(self.store, LocalStore) else None)
        self.objects = ObjectWriter(self.store, self.retention, self.metrics, reserve)
        if hasattr(self.store, "presigned_url"):
            self.links = PresignedImages(self.objects, self.images)
        for camera in self.cameras.values():
            self.publish_algo_config(camera)
        self.spool = open_spool(self.cfg)
        self.history = open_history(self.cfg)  # outlives the alert actor's incarnations, like the spool

    def publish_algo_config(self, camera: Camera) -> None:
        """Give the task's route its ``algo_config_url``: the old system's ``algo_config.json`` object in MinIO,
        presigned per request, else framewatch's HTTP API (``remote.publish_algo_config``)."""
        assert self.store is not None
        camera.route.algo_config_url = publish_algo_config(self.store, self.images, camera.conf.task_type, camera.id,
                                                           camera.route.algo_config)

    def close(self) -> None:
        """After the tree has stopped: release the store and the spool."""
        if self.history is not None:
            self.history.close()
        if self.spool is not None and hasattr(self.spool, "close"):
            self.spool.close()
        if self.store is not None:
            self.store.close()

    # --- child specs, in start order ---

    def timers_spec(self) -> ChildSpec:
        return ChildSpec(id="timers", stage="timers", start=self.timers.start, restart="temporary", essential=True,
                         **self._budget)

    def alerts_spec(self) -> ChildSpec:
        ai = self.cfg.ai_analysis

        def start() -> Handle:
            return start_actor(AlertActor, self.alerts, sink_factory=self._sink_factory, spool=self.spool,
                               metrics=self.metrics, batch_size=ai.alert_batch_size,
                               batching=ai.alert_batch_enabled, board=self.alert_board, history=self.history)

        setting = "ai_analysis.mq_address" if ai.mq_type == "kafka" else "alerts.jsonl_path"
        return ChildSpec(id="alerts", stage="alerts", start=start, essential=True, setting=setting,
                         on_given_up=lambda reason: self.alerts.close(), **self._budget)

    def retention_spec(self) -> ChildSpec:
        def start() -> Handle:  # every incarnation bounds the prefixes known then (cameras added at run time too)
            return start_actor(RetentionActor, self.retention, store=self.store, bounds=list(self.bounds),
                               metrics=self.metrics)

        return ChildSpec(id="retention", stage="retention", start=start, essential=True,
                         on_given_up=lambda reason: self.retention.close(), **self._budget)

    def writer_spec(self) -> ChildSpec:
        fe = self.cfg.frame_extractor

        def start() -> Handle:
            return start_actor(FrameWriterActor, self.writer, objects=self.objects, alerts=self.alerts,
                               metrics=self.metrics, routes=self.routes, jpeg_quality=fe.jpeg_quality,
                               max_backlog=fe.store_queue_size)

        return ChildSpec(id="writer", stage="writer", start=start, essential=True,
                         on_given_up=lambda reason: self.writer.close(), **self._budget)

    def http_spec(self, snapshot: Callable[[str], Snapshot], apply_tasks: Callable[[Config], Any]) -> ChildSpec:
        """``snapshot(window)``: a fresh stats snapshot from the supervisor; ``apply_tasks``: have it run a conf's
        tasks (``ApplyTasks``)."""
        cfg = self.cfg
        tasks = TasksApi(cfg, conf_file=self.conf_file, apply=apply_tasks, snapshot=lambda: snapshot("tasks"),
                         preview=self.preview_of)

        def start() -> Handle:
            self.http = HttpApi(cfg.http, registry=self.registry, images=self.images,
                                snapshot=lambda: snapshot("http"), task_types=cfg.frame_extractor.task_types,
                                routes=[tasks, AlertsApi(self.history, images=self.alert_image)])
            self.http.start()
            return self.http

        return ChildSpec(id="http", stage="api", start=start, setting="http.port", **self._budget)

    def local_slot_specs(self, on_given_up: Callable[[str, str], None]) -> list[ChildSpec]:
        """The built-in detectors' slots: ``detector.actors`` (within ``max_concurrent_infer``), each holding one
        detector of every kind the enabled tasks need."""
        kinds = {c.route.detector for c in self.cameras.values()} - {None}
        types = self.local_types(kinds)
        n = min(self.cfg.detector.actors, self.cfg.ai_analysis.max_concurrent_infer)
        det = self.cfg.detector
        made: dict[str, Callable[[], Detector]] = {PERSON: lambda: build_detector(det),
                                                   COCO: lambda: build_coco_detector(det)}
        factories = {k: self._detector_factory or made[k] for k in sorted(kinds)}  # type: ignore[index]
        health = Health("local", breaker=False)
        backend = local_backend(factories)
        setting = "detector.coco_model" if kinds == {COCO} else "detector.model"
        return [self.slot_spec(f"{LOCAL_SLOTS}-{k}", types, health, backend, on_given_up, setting=setting)
                for k in range(n)]

    def local_types(self, kinds: set[str | None]) -> frozenset[str]:
        """The task types the local detectors of ``kinds`` serve: those of the enabled cameras, and every other type
        of ``frame_extractor.task_types`` served by one of these kinds with its default parameters, so a camera of
        such a type added at run time is served at once. (A camera needing a kind not loaded waits, reported, until
        a restart loads it.)"""
        types = {c.conf.task_type for c in self.cameras.values() if c.route.detector is not None}
        for task_type in self.cfg.frame_extractor.task_types:
            if has_builtin_rule(task_type):
                params = decode_task_params(task_type, {})
                if local_detector_kind(self.cfg, task_type, params) in kinds:
                    types.add(task_type)
        return frozenset(types)

    def remote_backend(self, info: ServiceInfo) -> Callable[[], Backend]:
        ai = self.cfg.ai_analysis
        quality = self.cfg.frame_extractor.jpeg_quality

        def backend() -> Backend:
            return RemoteBackend(info, self.links, connect_timeout_sec=ai.connect_timeout_sec,
                                 timeout_sec=ai.request_timeout_sec, jpeg_quality=quality)

        return backend

    def slot_spec(self, slot: str, types: frozenset[str], health: Health, backend: Callable[[], Backend],
                  on_given_up: Callable[[str, str], None], setting: str = "", endpoint: str = "") -> ChildSpec:
        """One inference slot (of the service registered with ``endpoint``, or local): in the pool from now on; its
        actor is installed there at every (re)start."""
        self.pool.add_slot(slot, types, health, endpoint)

        def start() -> Handle:
            return start_actor(InferenceActor, slot=slot, backend_factory=backend, health=health, routes=self.routes,
                               pool=self.pool, writer=self.writer, metrics=self.metrics)

        def installed(handle: Handle) -> None:
            self.pool.install(slot, handle.ref)  # type: ignore[attr-defined]

        return ChildSpec(id=f"inference:{slot}", stage="inference", start=start, setting=setting,
                         on_started=installed, on_given_up=lambda reason: on_given_up(slot, reason), **self._budget)

    def analytics_spec(self, camera: Camera) -> ChildSpec:
        """The camera's analytics (tracking, events, alert records), between inference and the writer."""

        def start() -> Handle:
            return start_actor(AnalyticsActor, camera.analytics, task_id=camera.id, task_type=camera.conf.task_type,
                               params=camera.params, route=camera.route, writer=self.writer, metrics=self.metrics,
                               timers=self.timers)

        return ChildSpec(id=f"analytics:{camera.id}", stage="analytics", start=start,
                         on_given_up=lambda reason: camera.analytics.close(), **self._budget)

    def _conf_source(self, task: TaskConf) -> FrameSource:
        return source_for_task(self.cfg, task)

    def extractor_spec(self, camera: Camera) -> ChildSpec:
        fe = self.cfg.frame_extractor
        task = camera.conf

        def start() -> Handle:
            return start_actor(ExtractorActor, task_id=task.id, task_type=task.task_type,
                               interval_sec=camera.interval_sec, source_factory=lambda: self._source_factory(task),
                               valve=camera.valve, seqs=camera.seqs, preview=camera.preview,
                               pool=self.pool, metrics=self.metrics, timers=self.timers,
                               backoff=Backoff(fe.backoff_initial_sec, fe.backoff_max_sec, fe.backoff_reset_sec),
                               stall_timeout_sec=fe.stall_timeout_sec)

        def given_up(reason: str) -> None:
            camera.valve.close()
            self.metrics.source_state(task.id, "given up", reason)

        return ChildSpec(id=camera.child_id, stage="sources", start=start, on_given_up=given_up, **self._budget)


class Running:
    """A started system: the supervisor and its tree; ``stop`` (or leaving the ``with``) stops it all in order."""

    def __init__(self, loaded: Loaded, **overrides: Any) -> None:
        self.loaded = loaded
        self.escalated = threading.Event()
        self.escalation = ""
        self.system = System(loaded, **overrides)
        self.ref = Supervisor.start(self.system, escalate=self._on_escalate)
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

    def stop(self, timeout: float = 120) -> Snapshot | None:
        """Stop everything in order; returns the final snapshot (None if the supervisor had crashed: its
        ``on_failure`` already stopped its tree)."""
        if self.ref.is_alive():
            try:
                self.final = self.ref.ask(Shutdown(), timeout=timeout)
            except pykka.ActorDeadError:
                pass
            finally:
                self.ref.stop(block=True, timeout=timeout)
        return self.final

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
