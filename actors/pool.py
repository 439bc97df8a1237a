"""The inference pool: routes each frame to the least loaded inference slot that serves its task type.

Not an actor: ``submit`` runs on the extractor's thread and costs one lock plus one ``tell``, so routing adds no hop
and no thread. A slot is an inference actor; its ``outstanding`` count (frames told and not yet finished: its mailbox
plus the one being inferred) is the load the supervisor's backpressure reads. The supervisor installs a new actor ref
in a slot when it restarts one, and removes the slot when it gives the actor up.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka

from .messages import Frame
from .metrics import Metrics


class _Slot:
    __slots__ = ("name", "ref", "task_types", "outstanding", "served")

    def __init__(self, name: str, task_types: frozenset[str]) -> None:
        self.name = name
        self.ref: pykka.ActorRef[Any] | None = None
        self.task_types = task_types
        self.outstanding = 0
        self.served = 0


class InferencePool:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._load = 0
        self.peak_load = 0  # most frames ever queued or in inference at once

    # --- supervisor side ---

    def add_slot(self, name: str, task_types: frozenset[str]) -> None:
        with self._lock:
            self._slots[name] = _Slot(name, task_types)

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

    def serves(self, task_type: str) -> bool:
        with self._lock:
            return any(task_type in s.task_types and s.ref is not None for s in self._slots.values())

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
        with self._lock:
            best: _Slot | None = None
            for slot in self._slots.values():
                if frame.task_type not in slot.task_types or slot.ref is None:
                    continue
                if best is None or (slot.outstanding, slot.served) < (best.outstanding, best.served):
                    best = slot
            if best is not None:
                best.outstanding += 1
                best.served += 1
                self._load += 1
                self.peak_load = max(self.peak_load, self._load)
                ref = best.ref
        if best is None:
            self._metrics.failed(frame.task_id, f"no backend serves task type {frame.task_type}")
            return False
        try:
            ref.tell(frame)  # type: ignore[union-attr]
        except pykka.ActorDeadError:
            self.done(best.name)
            self._metrics.failed(frame.task_id, "inference actor died")
            return False
        return True

    # --- inference side ---

    def done(self, name: str, n: int = 1) -> None:
        with self._lock:
            slot = self._slots.get(name)
            if slot is not None:
                n = min(n, slot.outstanding)
                slot.outstanding -= n
                self._load -= n
