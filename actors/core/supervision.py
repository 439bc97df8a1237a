"""Supervision as data: child specs, a tree that starts, restarts and stops them, readiness, links, backoff.

Erlang/OTP's idea. A child is a ``ChildSpec`` (id, how to start one incarnation, restart policy, restart intensity,
shutdown timeout, what its loss means). The ``Tree`` starts children in order of their ``stage`` (dependencies first)
and waits for each one to say it is ready, so a model that cannot load or a port in use fails the start with a
``StartError`` naming the setting, instead of a thread that dies later. It restarts a crashed child at most
``intensity`` times within ``period_sec``; one more and the child is given up: its ``on_given_up`` runs, and an
``essential`` child escalates (the system cannot run without it). Stopping goes in reverse stage order, each child
being asked to stop, waited for up to its ``shutdown_timeout_sec``, then forced (or left, logged).

Who talks to a child talks to its ``Link``, never to one incarnation's actor ref: a message sent while the child is
between a crash and its restart waits in the link and is delivered, in order, to the next incarnation; a crashed
actor hands its unread mailbox back to its link the same way (``ChildActor.requeue_unread``). So a restart loses no
message, only the one being handled when it crashed, which each actor accounts for itself.

A source that cannot be opened is not a crash: it is retried with ``Backoff``, never spinning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import msgspec
import pykka
from pykka import messages as pykka_messages

log = logging.getLogger(__name__)


class StartError(Exception):
    """A child could not start: ``setting`` is the conf key to fix (or the child's id), ``reason`` says why."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


# --- readiness --------------------------------------------------------------------------------------------------


class Ready:
    """Set once by a child's thread: ready, or the exception its start-up raised."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        self.error = error
        self._event.set()

    def wait(self, timeout: float, child: str, setting: str) -> None:
        """Return once ready; raise ``StartError`` if start-up failed or did not finish within ``timeout``."""
        if not self._event.wait(timeout):
            raise StartError(setting or child, f"{child} not ready after {timeout:g} s")
        if self.error is not None:
            if isinstance(self.error, StartError):
                raise self.error
            raise StartError(setting or child, f"{type(self.error).__name__}: {self.error}")


class Handle(Protocol):
    """One running incarnation of a child."""

    ready: Ready

    def is_alive(self) -> bool: ...

    def stop(self, timeout: float) -> bool:
        """Ask it to stop and wait up to ``timeout``; False if it had not stopped by then."""
        ...


class ChildActor(pykka.ThreadingActor):
    """Base of every supervised actor: names its thread, reports readiness, hands back its unread mailbox.

    Subclasses put their start-up in ``setup`` (not ``on_start``): it runs on the actor's thread; an exception there
    fails the child's start (``Ready``) and the actor stops, with ``on_failure`` called for cleanup (pykka itself
    would not call it).
    """

    thread_name = "actor"

    def __init__(self, *, ready: Ready | None = None, link: Link | None = None) -> None:
        super().__init__()
        self.ready = ready or Ready()
        self.link = link

    def setup(self) -> None:
        """Start-up on the actor's own thread; raise to fail the start."""

    def on_crash(self, exc: BaseException) -> None:
        """Cleanup after a crash (or a failed ``setup``), on the actor's thread: account for the message being handled,
        hand the unread ones back (``requeue_unread``), release resources."""

    def on_start(self) -> None:
        threading.current_thread().name = self.thread_name
        try:
            self.setup()
        except Exception as exc:
            log.debug("%s failed to start", self.thread_name, exc_info=True)
            self.ready.set(exc)
            self.on_crash(exc)
            raise
        self.ready.set()

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # pykka's own crash report (a traceback at ERROR) is silenced with its logger: one line here, the traceback at
        # DEBUG. The tree restarts the child on its next check.
        log.error("%s crashed: %s: %s", self.thread_name, exc_type.__name__, exc)
        log.debug("%s crash traceback", self.thread_name, exc_info=(exc_type, exc, tb))
        self.on_crash(exc)

    def unread(self, keep: Callable[[Any], bool]) -> list[Any]:
        """Take the messages ``keep`` selects out of the mailbox; the others (pykka's own stop envelopes, asks) are
        put back so that pykka answers them: a second ``stop()`` is never left waiting."""
        taken: list[Any] = []
        others = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get_nowait()
            if envelope.reply_to is None and not isinstance(envelope.message, pykka_messages._ActorStop) \
                    and keep(envelope.message):
                taken.append(envelope.message)
            else:
                others.append(envelope)
        for envelope in others:
            self.actor_inbox.put(envelope)
        return taken

    def requeue_unread(self) -> int:
        """After a crash: give the unread messages to the link, for the next incarnation."""
        if self.link is None:
            return 0
        messages = self.unread(lambda m: True)
        self.link.requeue(messages)
        return len(messages)


class ActorHandle:
    def __init__(self, ref: pykka.ActorRef[Any], ready: Ready) -> None:
        self.ref = ref
        self.ready = ready

    def is_alive(self) -> bool:
        return self.ref.is_alive()

    def stop(self, timeout: float) -> bool:
        if not self.ref.is_alive():
            return True
        try:
            self.ref.stop(block=False).get(timeout=timeout)
        except pykka.Timeout:
            return False
        except pykka.ActorDeadError:
            pass
        return True


def start_actor(cls: type[ChildActor], link: Link | None = None, **kwargs: Any) -> ActorHandle:
    """Start one incarnation of ``cls``; its link (if any) delivers to it from now on."""
    ready = Ready()
    ref = cls.start(ready=ready, link=link, **kwargs)
    if link is not None:
        link.attach(ref)
    return ActorHandle(ref, ready)


# --- links --------------------------------------------------------------------------------------------------------


class Link:
    """The address of a supervised actor across its restarts.

    ``tell`` delivers to the current incarnation; while there is none (crashed, not restarted yet) messages wait here,
    at most ``max_pending`` (then the oldest are dropped and counted in ``dropped``), and go first to the next one.
    A closed link (the child was given up or stopped for good) raises ``pykka.ActorDeadError`` like a dead ref.
    """

    def __init__(self, name: str, max_pending: int = 100_000) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._ref: pykka.ActorRef[Any] | None = None
        self._pending: deque[Any] = deque()
        self._max = max_pending
        self._closed = False
        self.dropped = 0

    def attach(self, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._ref = ref
            self._closed = False
            while self._pending:
                ref.tell(self._pending.popleft())

    def tell(self, message: Any) -> None:
        with self._lock:
            if self._closed:
                raise pykka.ActorDeadError(f"{self.name} is stopped")
            if self._ref is not None:
                try:
                    self._ref.tell(message)
                    return
                except pykka.ActorDeadError:
                    self._ref = None
            self._hold([message])

    def requeue(self, messages: Sequence[Any]) -> None:
        """Messages a crashed incarnation did not read: they go before anything sent since."""
        with self._lock:
            if self._ref is not None and not self._ref.is_alive():
                self._ref = None
            if self._ref is not None:  # already restarted: deliver now (rare: restart raced the hand-back)
                for m in messages:
                    self._ref.tell(m)
                return
            self._pending.extendleft(reversed(messages))
            self._trim()

    def ask(self, message: Any, timeout: float) -> Any:
        with self._lock:
            ref = self._ref
        if ref is None:
            raise pykka.ActorDeadError(f"{self.name} is not running")
        return ref.ask(message, timeout=timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ref = None

    def qsize(self) -> int:
        with self._lock:
            return (self._ref.actor_inbox.qsize() if self._ref is not None else 0) + len(self._pending)

    def _hold(self, messages: Sequence[Any]) -> None:
        self._pending.extend(messages)
        self._trim()

    def _trim(self) -> None:
        while len(self._pending) > self._max:
            self._pending.popleft()
            self.dropped += 1


# --- specs and the tree -------------------------------------------------------------------------------------------

#: Stages, in start order; stopping goes the other way, one stage after the other (the children of one stage stop in
#: parallel, so a child that sends to another must be in a later stage: the writer tells retention what it stored).
STAGES = ("timers", "alerts", "retention", "writer", "analytics", "api", "inference", "sources")
Stage = Literal["timers", "alerts", "retention", "writer", "analytics", "api", "inference", "sources"]


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # also the thread name, e.g. "extractor:cam-01"
    stage: Stage
    start: Callable[[], Handle]
    restart: Literal["permanent", "temporary"] = "permanent"
    """permanent: restarted when it dies; temporary: never restarted (its death is only reported)."""
    intensity: int = 5
    period_sec: float = 60.0
    shutdown_timeout_sec: float = 5.0
    essential: bool = False
    """Given up means the system cannot work: the supervisor escalates (ordered stop, exit 3)."""
    setting: str = ""
    """The conf key a start-up failure is reported against (e.g. ``detector.model``)."""
    on_started: Callable[[Handle], None] | None = None  # e.g. install the new incarnation in the pool
    on_given_up: Callable[[str], None] | None = None  # e.g. close the camera's valve; gets the reason


class RestartBudget:
    """At most ``intensity`` restarts within any ``period_sec`` window."""

    def __init__(self, intensity: int, period_sec: float) -> None:
        self.intensity = intensity
        self.period = period_sec
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a restart if the budget allows one now."""
        while self._times and now - self._times[0] > self.period:
            self._times.popleft()
        if len(self._times) >= self.intensity:
            return False
        self._times.append(now)
        return True


class Child:
    """A spec and its running state, owned by the tree."""

    __slots__ = ("spec", "handle", "budget", "restarts", "state")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.handle: Handle | None = None
        self.budget = RestartBudget(spec.intensity, spec.period_sec)
        self.restarts = 0
        self.state = "not started"  # "running" | "given up: ..." | "stopped" | "exited"


class Escalation(Exception):
    """An essential child was given up."""


class Tree:
    """The supervision tree: one_for_one restarts, ordered start with readiness, reverse ordered stop."""

    def __init__(self, escalate: Callable[[str], None]) -> None:
        self._children: list[Child] = []
        self._escalate = escalate

    def children(self) -> list[Child]:
        return list(self._children)

    def get(self, child_id: str) -> Child | None:
        return next((c for c in self._children if c.spec.id == child_id), None)

    def add(self, spec: ChildSpec) -> Child:
        """Add a child after the others of its stage (not started yet)."""
        if self.get(spec.id) is not None:
            raise ValueError(f"duplicate child id {spec.id!r}")
        child = Child(spec)
        rank = STAGES.index(spec.stage)
        at = next((i for i, c in enumerate(self._children) if STAGES.index(c.spec.stage) > rank), len(self._children))
        self._children.insert(at, child)
        return child

    def start(self, child: Child, ready_timeout: float | None = None) -> None:
        """Start one incarnation; with ``ready_timeout``, wait for it to be ready (raises ``StartError``)."""
        child.handle = child.spec.start()
        child.state = "running"
        if ready_timeout is not None:
            child.handle.ready.wait(ready_timeout, child.spec.id, child.spec.setting)
        if child.spec.on_started is not None:
            child.spec.on_started(child.handle)

    def start_all(self, ready_timeout: float) -> None:
        """Start every child not started yet, in stage order, each one ready before the next starts."""
        for child in list(self._children):
            if child.handle is None:
                self.start(child, ready_timeout)

    def check(self, now: float | None = None) -> None:
        """Restart the children that died, within their budgets; give up the others."""
        now = time.monotonic() if now is None else now
        for child in list(self._children):
            if child.handle is None or child.state != "running" or child.handle.is_alive():
                continue
            if child.spec.restart == "temporary":
                child.state = "exited"
                log.warning("%s exited; not restarted (temporary)", child.spec.id)
                continue
            if child.budget.allow(now):
                child.restarts += 1
                log.warning("%s crashed; restart %d (budget %d in %g s)", child.spec.id, child.restarts,
                            child.spec.intensity, child.spec.period_sec)
                try:
                    self.start(child)
                except Exception as exc:  # a start that raises at once counts as one more crash, next tick
                    log.error("%s: restart failed: %s", child.spec.id, exc)
                continue
            self.give_up(child, f"crashed more than {child.spec.intensity} times in {child.spec.period_sec:g} s")

    def give_up(self, child: Child, reason: str) -> None:
        child.state = f"given up: {reason}"
        log.error("%s given up: %s", child.spec.id, reason)
        if child.spec.on_given_up is not None:
            child.spec.on_given_up(reason)
        if child.spec.essential:
            self._escalate(f"{child.spec.id} given up: {reason}")

    def remove(self, child_id: str) -> Child | None:
        """Take a child out of the tree without stopping it (the caller stops or drains it)."""
        child = self.get(child_id)
        if child is not None:
            self._children.remove(child)
        return child

    def stop_all(self, on_stage: Callable[[str], None] | None = None) -> None:
        """Stop every child in reverse stage order; within a stage, all at once, each waited for up to its timeout."""
        stage = None
        batch: list[Child] = []
        for child in reversed(self._children):
            if child.spec.stage != stage:
                self._stop_batch(batch)
                batch = []
                stage = child.spec.stage
                if on_stage is not None:
                    on_stage(stage)
            batch.append(child)
        self._stop_batch(batch)

    def _stop_batch(self, batch: list[Child]) -> None:
        waiting = []
        for child in batch:
            if child.handle is not None and child.handle.is_alive():
                waiting.append(child)
            if child.state == "running":
                child.state = "stopped"
        # Request every stop first, so the children of one stage drain in parallel, then wait for each.
        stops = [(c, threading.Thread(target=self._stop_one, args=(c,), name=f"stop:{c.spec.id}")) for c in waiting]
        for _, t in stops:
            t.start()
        for _, t in stops:
            t.join()

    @staticmethod
    def stop_child(child: Child) -> None:
        """Stop one child taken out of the tree (``remove``), waiting up to its timeout (logged past it)."""
        if child.state == "running":
            child.state = "stopped"
        if child.handle is not None and child.handle.is_alive():
            Tree._stop_one(child)

    @staticmethod
    def _stop_one(child: Child) -> None:
        assert child.handle is not None
        if not child.handle.stop(child.spec.shutdown_timeout_sec):
            log.error("shutdown: %s did not stop within %.1f s; leaving it", child.spec.id,
                      child.spec.shutdown_timeout_sec)


# --- backoff -----------------------------------------------------------------------------------------------------


class Backoff:
    """Exponential delays: initial, doubling to ``maximum``; reset after ``reset_after_sec`` without a failure."""

    def __init__(self, initial_sec: float, maximum_sec: float, reset_after_sec: float) -> None:
        self.initial = initial_sec
        self.maximum = maximum_sec
        self.reset_after = reset_after_sec
        self.attempt = 0
        self._last_failure: float | None = None

    def next_delay(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if self._last_failure is not None and now - self._last_failure > self.reset_after:
            self.attempt = 0
        self._last_failure = now
        delay = min(self.initial * (2 ** self.attempt), self.maximum)
        self.attempt += 1
        return delay
