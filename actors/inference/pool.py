"""The inference pool: routes each frame to the least loaded inference slot that serves its task type.

Not an actor: ``submit`` runs on the extractor's thread and costs one lock plus one ``tell``, so routing adds no hop
and no thread. A slot is an inference actor; its ``outstanding`` count (frames told and not yet finished: its mailbox
plus the one being inferred) is the load the supervisor's backpressure reads. The supervisor installs a new actor ref
in a slot when it restarts one, and removes the slot when it gives the actor up or its remote service goes away.

Slots belong to a backend group (``local`` or a remote service id) sharing one ``Health``. Least loaded means the
shortest expected wait, ``(outstanding + 1) x`` the group's latency EWMA, so a slow service gets proportionally fewer
frames; a group whose circuit is open is skipped, and a retried frame avoids the group that failed it.

A task pinned to a service (``preferred_algorithm_endpoint``: the old system's way of keeping a camera's per-camera
state in one service) is routed only to slots of the service registered with that endpoint, never elsewhere, not
even on a retry; while that service is absent, ``serves`` says no for it and its samples are skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from ..core.messages import Frame
from ..core.metrics import Metrics
from ..inference.registry import Health


def normalize_endpoint(url: str) -> str:
    """Endpoints compare without a trailing slash (``http://h:9100/infer/`` is ``http://h:9100/infer``)."""
    return url.rstrip("/")


class _Slot:
    __slots__ = ("name", "ref", "task_types", "health", "endpoint", "outstanding", "served")

    def __init__(self, name: str, task_types: frozenset[str], health: Health, endpoint: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.ref: pykka.ActorRef[Any] | None = None
        self.task_types = task_types
        self.health = health
        self.outstanding = 0
        self.served = 0

    def expected_wait(self) -> float:
        return (self.outstanding + 1) * max(self.health.ewma_ms, 0.1)


class InferencePool:
    def __init__(self, metrics: Metrics, pins: Mapping[str, str] | None = None) -> None:
        """``pins``: task id -> the endpoint of the only service that may infer its frames."""
        self._metrics = metrics
        self._pins = {task: normalize_endpoint(url) for task, url in (pins or {}).items()}
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._load = 0
        self.peak_load = 0  # most frames ever queued or in inference at once
        self._on_free: Callable[[], None] | None = None
        self._free_signalled = False  # one pending signal at a time, however many frames finish meanwhile

    # --- supervisor side ---

    def pin(self, task_id: str, endpoint: str | None) -> None:
        """Pin a task to the service registered with ``endpoint`` (None: any service of its type), from now on."""
        with self._lock:
            if endpoint:
                self._pins[task_id] = normalize_endpoint(endpoint)
            else:
                self._pins.pop(task_id, None)

    def add_slot(self, name: str, task_types: frozenset[str], health: Health, endpoint: str = "") -> None:
        """A slot of the local detector (``endpoint`` empty) or of the service registered with ``endpoint``."""
        with self._lock:
            self._slots[name] = _Slot(name, task_types, health, normalize_endpoint(endpoint))

    def install(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """A (re)started actor takes over the slot; frames lost with the old one were already counted failed."""
        with self._lock:
            slot = self._slots[name]
            slot.ref = ref
            self._load -= slot.outstanding
            slot.outstanding = 0

    def remove_slot(self, name: str) -> None:
        with self._lock:
            slot = self._slots.pop(name, None)
            if slot is not None:
                self._load -= slot.outstanding

    def live_slots(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.ref is not None and s.ref.is_alive())

    def serves(self, task_type: str, task_id: str = "", *, now_only: bool = True) -> bool:
        """Some slot would take a frame of ``task_type`` (of task ``task_id``, if it is pinned) now (installed,
        circuit not open). ``now_only=False``: some slot is there for it, its circuit open or not (a service that
        stopped answering but is still registered: why samples are skipped is then its circuit, not a missing
        backend; reporting that on every open/half-open flip would log a line every few seconds)."""
        now = time.monotonic()
        pinned = self._pins.get(task_id)
        with self._lock:
            return any(task_type in s.task_types and s.ref is not None and (not now_only or s.health.can_take(now))
                       and (pinned is None or s.endpoint == pinned) for s in self._slots.values())

    def pinned(self, task_id: str) -> str | None:
        """The endpoint ``task_id`` is pinned to, if any."""
        return self._pins.get(task_id)

    def capacity(self, wanted: frozenset[str]) -> int:
        """Live slots that take frames now and serve a ``wanted`` task type: what the watermarks scale with.
        A slot that serves no camera's task type is no capacity for them."""
        now = time.monotonic()
        with self._lock:
            slots = [s for s in self._slots.values()
                     if s.ref is not None and s.health.can_take(now) and not s.task_types.isdisjoint(wanted)]
        return sum(1 for s in slots if s.ref.is_alive())  # type: ignore[union-attr]

    def by_group(self) -> dict[str, tuple[int, int]]:
        """Slots and outstanding frames per backend group."""
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            for s in self._slots.values():
                slots, outstanding = out.get(s.health.name, (0, 0))
                out[s.health.name] = (slots + 1, outstanding + s.outstanding)
        return out

    def load(self) -> int:
        """Frames queued or being inferred, over every slot."""
        with self._lock:
            return self._load

    def outstanding(self) -> dict[str, int]:
        with self._lock:
            return {name: s.outstanding for name, s in self._slots.items()}

    def mailboxes(self) -> dict[str, int]:
        with self._lock:
            refs = [(name, s.ref) for name, s in self._slots.items()]
        return {name: (ref.actor_inbox.qsize() if ref is not None else 0) for name, ref in refs}

    # --- extractor side ---

    def submit(self, frame: Frame) -> bool:
        """Route ``frame``; False (and the frame counted failed) when no live slot serves its task type."""
        now = time.monotonic()
        pinned = self._pins.get(frame.task_id)
        with self._lock:
            best: _Slot | None = None
            for slot in self._slots.values():
                if (frame.task_type not in slot.task_types or slot.ref is None or slot.health.name == frame.retry_of
                        or not slot.health.can_take(now) or (pinned is not None and slot.endpoint != pinned)):
                    continue
                if best is None or (slot.expected_wait(), slot.served) < (best.expected_wait(), best.served):
                    best = slot
            if best is not None:
                best.health.taken(now)
                best.outstanding += 1
                best.served += 1
                self._load += 1
                self.peak_load = max(self.peak_load, self._load)
                ref = best.ref
        if best is None:
            reason = f"waiting for preferred service {pinned}" if pinned is not None else \
                f"no backend serves task type {frame.task_type}"
            self._metrics.failed(frame.task_id, "retry found no other backend" if frame.retry_of else reason)
            return False
        try:
            ref.tell(frame)  # type: ignore[union-attr]
        except pykka.ActorDeadError:
            self.done(best.name)
            self._metrics.failed(frame.task_id, "inference actor died")
            return False
        return True

    # --- inference side ---

    def on_free(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, until ``signal_seen``) when a slot finishes a frame: the supervisor grants then."""
        self._on_free = callback

    def signal_seen(self) -> None:
        with self._lock:
            self._free_signalled = False

    def done(self, name: str, n: int = 1) -> None:
        signal = None
        with self._lock:
            slot = self._slots.get(name)
            if slot is not None:
                n = min(n, slot.outstanding)
                slot.outstanding -= n
                self._load -= n
            if n and not self._free_signalled and self._on_free is not None:
                self._free_signalled = True
                signal = self._on_free
        if signal is not None:
            signal()
