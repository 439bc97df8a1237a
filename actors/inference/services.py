"""Remote algorithm services as inference slots: turns the registry's changes into slots added to or retired from the
pool and the supervision tree.

Not an actor: the supervisor calls ``sync`` on its tick, on its own thread. A registered service gets one slot per unit
of its ``max_concurrency`` (within ``ai_analysis.max_concurrent_infer``), each a child of the tree (stage
``inference``), named ``<service id>-<k>`` (``.<epoch>`` after a re-registration, so names stay unique). A service
that is evicted, unregisters or registers again with other settings has its slots retired: no new frame goes to them,
each actor stops once its mailbox is empty (frames queued there move to another slot, see ``actors.inference.slot``),
and the tree forgets it once it has stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..core.supervision import ActorHandle, ChildSpec, Tree
from .pool import InferencePool
from .registry import Health, Registry, ServiceInfo

log = logging.getLogger(__name__)

#: Builds the child spec of one slot: (slot name, task types, health, service) -> spec.
SlotSpec = Callable[[str, frozenset[str], Health, ServiceInfo], ChildSpec]


class ServiceSlots:
    def __init__(self, registry: Registry, pool: InferencePool, tree: Tree, slot_spec: SlotSpec, *,
                 max_concurrent_infer: int) -> None:
        self._registry = registry
        self._pool = pool
        self._tree = tree
        self._slot_spec = slot_spec
        self._max = max_concurrent_infer
        self._seen = 0  # the registry generation last reconciled
        self._services: dict[str, tuple[ServiceInfo, list[str]]] = {}  # service id -> what it registered, its slots
        self._epochs: dict[str, int] = {}

    def sync(self) -> None:
        """Evict silent services; reconcile the slots with the registry when it changed; forget stopped slots."""
        self._registry.evict_stale()
        self._forget_stopped()
        if self._registry.generation == self._seen:
            return
        self._seen = self._registry.generation
        wanted = self._registry.services()
        for sid, (info, _) in list(self._services.items()):
            if sid not in wanted or wanted[sid][0] != info:
                self._retire(sid)
        for sid, (info, health) in wanted.items():
            if sid not in self._services:
                self._add(info, health)

    def _add(self, info: ServiceInfo, health: Health) -> None:
        free = self._max - len(self._pool.outstanding())
        n = max(min(info.max_concurrency, free), 0)
        if n < info.max_concurrency:
            log.warning("service %s: %d of its %d slots fit within max_concurrent_infer = %d", info.service_id,
                        n, info.max_concurrency, self._max)
        epoch = self._epochs.get(info.service_id, 0)
        self._epochs[info.service_id] = epoch + 1
        slots = []
        for k in range(n):
            slot = f"{info.service_id}-{k}" + (f".{epoch}" if epoch else "")
            child = self._tree.add(self._slot_spec(slot, frozenset(info.task_types), health, info))
            self._tree.start(child)
            slots.append(slot)
        self._services[info.service_id] = (info, slots)

    def _retire(self, sid: str) -> None:
        _, slots = self._services.pop(sid)
        for slot in slots:
            self._pool.remove_slot(slot)
            child = self._tree.get(f"inference:{slot}")
            if child is None:
                continue
            child.state = "retiring"  # not restarted; stopped (again, and answered) at shutdown if still draining
            if isinstance(child.handle, ActorHandle) and child.handle.is_alive():
                child.handle.ref.stop(block=False)

    def _forget_stopped(self) -> None:
        for child in self._tree.children():
            if child.state == "retiring" and (child.handle is None or not child.handle.is_alive()):
                self._tree.remove(child.spec.id)
