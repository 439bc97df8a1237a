"""The Supervisor actor: owns the supervision tree, grants frames (backpressure), writes the stats; and ``main()``.

Messages: ``Start`` (ask: connect the store, build the tree, start every child in order, each one ready before the
next; a child that cannot start raises ``StartError`` to the caller), ``Tick`` (timer, every ``backpressure.tick_ms``:
restart crashed children within their budgets, reconcile remote services' slots, grant frames), ``Grant`` (a slot
freed: grant now), ``StatsTick`` (timer: write the stats snapshot), ``GetSnapshot`` (ask), ``Shutdown`` (ask: stop
everything in order).

Thread: ``supervisor``. The tree (``actors.core.supervision.Tree``), in start order::

    timers -> alerts -> retention -> writer -> http -> inference slots (local, then services') -> extractors

Stopping goes the other way: sources first (no new frames), inference drains, the HTTP API (remote services fetch
in-flight frames until then), the writer stores what it holds, retention deletes what is due, alerts flush, timers.
Each step is request, wait with the spec's timeout, force (logged). Restart budgets come from ``[supervision]``. Given
up: an extractor's camera stops and is reported; the last inference slot, the writer, retention, the alert actor or
the timer thread escalates: ``main()`` stops everything in order and exits with code 3, naming it. If the supervisor
itself crashes, its ``on_failure`` stops its tree and escalates.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # `python supervisor.py CONF` in a checkout: this directory is the `framewatch` package (setup.cfg installs it
    # under that one name), so make it importable as such and run this file as `framewatch.supervisor`.
    import os as _os
    import sys as _sys
    import types as _types

    _package = _types.ModuleType("framewatch")
    _package.__path__ = [_os.path.dirname(_os.path.abspath(__file__))]
    _sys.modules.setdefault("framewatch", _package)
    from framewatch.supervisor import main as _main

    _sys.exit(_main())

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psutil
import pykka

from .actors.api.status import status_text
from .actors.core.messages import (AddBounds, ApplyTasks, Flush, GetSnapshot, Grant, Retired, Shutdown, Start,
                                   StatsTick, Sweep, Tick)
from .actors.core.metrics import BackpressureStats, Snapshot, process_stats, write_snapshot
from .actors.core.supervision import Tree
from .actors.inference.registry import Health, ServiceInfo
from .actors.inference.services import ServiceSlots
from .actors.ingest.backpressure import Controller, ControllerState

if TYPE_CHECKING:
    from .actors.system import System

log = logging.getLogger("framewatch")

#: How long start-up waits for one child to be ready (a model load, a listening socket, a storage listing).
READY_TIMEOUT_SEC = 60.0

_SHUTDOWN_STEPS = {
    "sources": "stopping sources",
    "inference": "draining inference",
    "api": "stopping the http api",
    "analytics": "ending open events",
    "writer": "storing frames",
    "retention": "retention deletes what is due",
    "alerts": "flushing alerts",
    "timers": "stopping timers",
}


class Supervisor(pykka.ThreadingActor):
    def __init__(self, system: System, *, escalate: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.system = system
        cfg = self.cfg = system.cfg
        self._escalate = escalate or (lambda reason: None)
        self.tree = Tree(self._escalate)
        self.services = ServiceSlots(system.registry, system.pool, self.tree, self._service_slot_spec,
                                     max_concurrent_infer=cfg.ai_analysis.max_concurrent_infer)
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
        self._up = False  # the start completed: a stop after a failed start is quiet (the caller reports why)
        self._retiring: dict[str, threading.Thread] = {}  # stopping the children of cameras changed at run time
        self._to_start: dict[str, Any] = {}  # tasks to start once their previous incarnation has stopped

    # --- pykka hooks ---

    def on_start(self) -> None:
        threading.current_thread().name = "supervisor"

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        log.critical("supervisor crashed (%s: %s); stopping its tree", exc_type.__name__, exc)
        self._stop_tree()
        self._escalate(f"supervisor crashed: {exc_type.__name__}: {exc}")

    def on_receive(self, message: Any) -> Any:
        match message:
            case Tick():
                if not self._stopping:
                    self.tree.check()
                    self.services.sync()
                    self._report_waiting()
                    self._grant()
            case Grant():
                self.system.pool.signal_seen()
                if not self._stopping:
                    self._grant()
            case StatsTick():
                if not self._stopping:
                    self._write_stats(self._snapshot())
            case GetSnapshot(fresh=fresh, window=window):
                if fresh or self._last is None:  # before the first stats tick, a look that resets nobody's window
                    return self._snapshot(window if fresh else "peek")
                return self._last
            case Start():
                return self._start()
            case Shutdown():
                return self._shutdown()
            case ApplyTasks(config=config):
                return self._apply_tasks(config)
            case Retired(task_id=task_id):
                self._retiring.pop(task_id, None)
                if not self._stopping:
                    self._start_cameras()
            case _:
                log.warning("supervisor: unexpected message %r", type(message).__name__)
        return None

    # --- start ---

    def _start(self) -> str:
        """Build the tree and start it; returns the HTTP API's URL ("" when disabled)."""
        system, cfg = self.system, self.cfg
        for notice in system.notices:
            log.warning("conf: %s", notice)
        system.connect()
        for spec in (system.timers_spec(), system.alerts_spec(), system.retention_spec(), system.writer_spec()):
            self.tree.add(spec)
        if cfg.http.enable:
            self.tree.add(system.http_spec(self._ask_snapshot, self._ask_apply))
        for camera in system.cameras.values():
            self.tree.add(system.analytics_spec(camera))
        for spec in system.local_slot_specs(self._slot_given_up):
            self.tree.add(spec)
        for camera in system.cameras.values():
            self.tree.add(system.extractor_spec(camera))
        self.tree.start_all(READY_TIMEOUT_SEC)
        system.pool.on_free(self._signal_grant)
        timers = system.timers
        timers.send_every(cfg.backpressure.tick_ms / 1000, self.actor_ref, Tick())
        timers.send_every(cfg.stats.interval_sec, self.actor_ref, StatsTick())
        timers.send_every(1.0, system.retention, Sweep())
        timers.send_every(cfg.ai_analysis.alert_batch_interval_sec, system.alerts, Flush())
        self._report_waiting()
        assert system.store is not None
        self._up = True
        log.info("framewatch started: %d tasks, %d inference slots (%s), store %s, sink %s, policy %s",
                 len(system.cameras), system.pool.live_slots(), cfg.detector.backend, system.store.name,
                 cfg.ai_analysis.mq_type, cfg.backpressure.policy)
        return system.http.url if system.http is not None else ""

    # --- tasks changed at run time ---

    def _apply_tasks(self, cfg: Any) -> dict[str, list[str]]:
        """Run the enabled tasks of ``cfg``: stop the cameras no longer wanted and those whose task changed (their
        children stop on a thread of their own, so grants to the others never wait on a source's read), start the
        new ones at once and the changed ones once their old children have stopped (``Retired``). The other cameras
        are not touched. Returns the ids stopped and started (or to be started)."""
        if self._stopping:
            raise RuntimeError("framewatch is stopping")
        system = self.system
        wanted = {t.id: t for t in cfg.enabled_tasks()}
        listed = {t.id for t in cfg.frame_extractor.tasks}
        stale = [c for c in system.cameras.values() if wanted.get(c.id) != c.conf]
        for camera in stale:
            self._retire(camera.id, removed=camera.id not in listed)
        for task_id in [i for i in system.retired if i not in listed and i not in self._retiring]:
            system.metrics.source_state(task_id, "removed")  # stopped earlier, now deleted from the conf
        system.cfg = cfg
        self._to_start = {i: t for i, t in wanted.items() if i not in system.cameras}
        started = list(self._to_start)
        self._start_cameras()
        stopped = [c.id for c in stale]
        if stopped or started:
            log.info("tasks changed: stopped %s, started %s", stopped or "none", started or "none")
        return {"stopped": stopped, "started": started}

    def _start_cameras(self) -> None:
        """Start the cameras waiting to, except those whose previous incarnation is still stopping."""
        system = self.system
        for task_id, task in list(self._to_start.items()):
            if task_id in self._retiring:
                continue
            del self._to_start[task_id]
            camera = system.add_camera(task)
            system.publish_algo_config(camera)
            system.retention.tell(AddBounds(tuple(camera.bounds)))  # before any of its frames can be stored
            for spec in (system.analytics_spec(camera), system.extractor_spec(camera)):
                child = self.tree.add(spec)
                try:
                    self.tree.start(child)
                except Exception as exc:  # counted as a crash: the next tick restarts it within its budget
                    log.error("%s: start failed: %s", spec.id, exc)
        self._report_waiting()
        self._grant()

    def _retire(self, task_id: str, *, removed: bool) -> None:
        system = self.system
        camera = system.retire_camera(task_id)
        extractor, analytics = self.tree.remove(camera.child_id), self.tree.remove(f"analytics:{task_id}")
        timeout = self.cfg.ai_analysis.request_timeout_sec + self.cfg.supervision.shutdown_timeout_sec

        def drain() -> None:
            """Sources first, then the frames in flight, then its analytics (which ends the open events)."""
            if extractor is not None:
                Tree.stop_child(extractor)
            deadline = time.monotonic() + timeout
            while system.metrics.in_flight(task_id) > 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a counter: frames in flight have no completion event per camera
            if analytics is not None:
                Tree.stop_child(analytics)
            system.metrics.source_state(task_id, "removed" if removed else "stopped")
            try:
                self.actor_ref.tell(Retired(task_id))
            except pykka.ActorDeadError:
                pass  # the supervisor stopped meanwhile: nothing to start

        thread = threading.Thread(target=drain, name=f"retire:{task_id}")
        self._retiring[task_id] = thread
        thread.start()

    def _service_slot_spec(self, slot: str, types: frozenset[str], health: Health, info: ServiceInfo) -> Any:
        return self.system.slot_spec(slot, types, health, self.system.remote_backend(info), self._slot_given_up,
                                     endpoint=info.endpoint)

    def _slot_given_up(self, slot: str, reason: str) -> None:
        pool = self.system.pool
        pool.remove_slot(slot)
        if pool.live_slots() == 0:
            log.critical("escalating: every inference slot was given up")
            self._escalate("every inference slot was given up")

    def _signal_grant(self) -> None:
        """From an inference thread: a slot is free; grant on the supervisor's thread as soon as it can."""
        try:
            self.actor_ref.tell(Grant())
        except pykka.ActorDeadError:
            pass  # shutting down: nothing to grant

    def _ask_snapshot(self, window: str) -> Snapshot:
        """For the HTTP API's threads: a fresh snapshot, made on the supervisor's thread (``window``: whose rates)."""
        return self.actor_ref.ask(GetSnapshot(fresh=True, window=window), timeout=5)

    def _ask_apply(self, config: Any) -> Any:
        """For the HTTP API's threads: run a changed conf's tasks, on the supervisor's thread."""
        return self.actor_ref.ask(ApplyTasks(config), timeout=30)

    # --- backpressure ---

    def _grant(self) -> None:
        pool = self.system.pool
        valves = [c.valve for c in self.system.cameras.values() if pool.serves(c.conf.task_type, c.id)]
        self._bp_state = self._controller.tick(
            valves, load=pool.load(), slots=pool.capacity(self.system.wanted_types), now=time.monotonic()
        )

    def _report_waiting(self) -> None:
        """Say, per camera and once per change, why its samples are skipped whatever the load."""
        pool = self.system.pool
        for camera in self.system.cameras.values():
            task_type = camera.conf.task_type
            if pool.serves(task_type, camera.id, now_only=False):
                reason = ""
            elif (pinned := pool.pinned(camera.id)) is not None:
                reason = f"waiting for preferred service {pinned}"
            else:
                reason = f"no backend serves task type {task_type}"
            if reason != camera.waiting:
                camera.waiting = reason
                self.system.metrics.waiting(camera.id, reason)
                log.log(logging.WARNING if reason else logging.INFO, "task %s: %s", camera.id,
                        f"samples skipped: {reason}" if reason else "a backend serves it again")

    # --- stats ---

    def _components(self) -> dict[str, str]:
        """What is not simply running: children restarting, given up or stopped, storage, the sink, the API."""
        system = self.system
        components = {c.spec.id: c.state for c in self.tree.children() if c.state != "running"}
        if system.http is not None and "http" not in components:
            http = system.http.statistics()
            load = "" if http is None else (f", {http.open_connections} connections, {http.busy} being answered, "
                                             f"{http.head_timeouts + http.closed_over_cap + http.refused_busy} "
                                             "refused or timed out")
            components["http"] = f"up ({system.http.url}{load})"
        if system.store is not None:
            health = system.store.health()
            components["storage"] = f"up ({system.store.name})" if health == "up" else health
            reserve = system.objects.reserve if system.objects is not None else None
            if reserve is not None and reserve.state:
                components["storage"] = reserve.state
        stats = system.alert_board.stats
        components["sink"] = "up" if stats.sink_ok else f"down: {stats.sink_error}"
        if system.history is not None:
            history = system.history
            components["history"] = (f"down: {history.error}" if not history.enabled else
                                      "up" if stats.history_ok else f"down: {stats.history_error}")
        return components

    def _snapshot(self, window: str = "stats", *, final: bool = False) -> Snapshot:
        system = self.system
        pool = system.pool
        alert_stats = system.alert_board.stats
        mailboxes = pool.mailboxes()
        for link in (system.writer, system.retention, system.alerts):
            mailboxes[link.name] = link.qsize()
        st = self._bp_state
        groups = pool.by_group()
        services = system.registry.statistics(
            outstanding={g: o for g, (_, o) in groups.items()}, slots={g: n for g, (n, _) in groups.items()}
        )
        # After the stop the slots are gone: the final snapshot reports those the system ran with.
        slots = self._last.inference.slots if final and self._last is not None else \
            max(pool.capacity(system.wanted_types), 1)
        return system.metrics.snapshot(
            started_mono=self._started,
            slots=slots,
            mailboxes=mailboxes,
            backpressure=BackpressureStats(policy=self.cfg.backpressure.policy, paused=st.paused, level=st.level,
                                           high=st.high, low=st.low, peak_load=pool.peak_load),
            alert_queue=alert_stats.batch_queue,
            spooled=alert_stats.spooled,
            process=process_stats(self._proc),
            components=self._components(),
            restarts={c.spec.id: c.restarts for c in self.tree.children() if c.restarts},
            services=services,
            window=window,
            keep_rates=final,
        )

    def _write_stats(self, snap: Snapshot) -> Snapshot:
        self._last = snap
        write_snapshot(self.cfg.stats.path, snap)
        if self.cfg.stats.log:
            log.info("stats: %s", status_text(snap))
        return snap

    # --- shutdown ---

    def _stop_tree(self) -> None:
        for camera in self.system.cameras.values():
            camera.valve.close()
        for thread in list(self._retiring.values()):
            thread.join()

        def step(stage: str) -> None:
            extra = f" ({self.system.pool.load()} frames in flight)" if stage == "inference" else ""
            log.log(logging.INFO if self._up else logging.DEBUG, "shutdown: %s%s", _SHUTDOWN_STEPS[stage], extra)

        self.tree.stop_all(on_stage=step)
        self.system.close()

    def _shutdown(self) -> Snapshot:
        self._stopping = True
        self._stop_tree()
        if not self._up:
            return self._snapshot(final=True)
        snap = self._write_stats(self._snapshot(final=True))
        log.info("shutdown: done; %s", status_text(snap))
        return snap


def main(argv: Sequence[str] | None = None) -> int:
    """The ``framewatch`` command (``actors.cli``): run, check, algo serve, bench."""
    from .actors.cli import main as cli_main  # the CLI starts a Running, whose module imports this one

    return cli_main(argv)


if __name__ == "__main__":  # python -m framewatch.supervisor
    raise SystemExit(main())
