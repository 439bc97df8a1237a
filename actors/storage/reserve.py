"""Free space kept for what matters most: below the reserve, frames and alert images stop being stored locally.

On a full disk the alert journal must keep working (an alert is durable before it counts as emitted), so frames,
the bulk of what framewatch writes, give way first: ``ObjectWriter`` asks ``allows()`` before each put into the
local store; below ``reserve_free_mb`` (or ``reserve_free_percent`` of the volume, whichever is smaller, so a small
SD card still stores frames) the put is skipped and counted as not stored (``store_failed``), the alert goes out
without its image (``image_stored: false``), and ``state`` says why (shown in ``components``). One log line when
storing pauses and one when it resumes (``StateLog``). The free space is read at most once per ``check_sec``: a
``statvfs`` per frame would cost more than it saves. A volume that cannot be read is not a reason to stop storing.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

from ..core.logstate import StateLog

__all__ = ["DiskReserve"]

log = logging.getLogger(__name__)
_MB = 1024 * 1024


class DiskReserve:
    """The reserve of the volume holding ``path`` (thread-safe: the writer and HTTP threads may ask)."""

    def __init__(self, path: str | os.PathLike[str], *, free_mb: float, free_percent: float,
                 check_sec: float = 1.0) -> None:
        self.path = os.fspath(path)
        self._free_mb = free_mb
        self._free_percent = free_percent
        self._check_sec = check_sec
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._ok = True
        self.state = ""  # why storing is paused; "" while it is not
        self._log = StateLog(log, "storage: free-space reserve (frames and alert images not stored)",
                             level=logging.WARNING)

    def reserve_bytes(self, total: int) -> int:
        limits = [self._free_mb * _MB] if self._free_mb > 0 else []
        if self._free_percent > 0:
            limits.append(total * self._free_percent / 100)
        return int(min(limits)) if limits else 0

    def allows(self) -> bool:
        """Whether there is room to store a frame now."""
        now = time.monotonic()
        if now - self._checked < self._check_sec:
            return self._ok
        with self._lock:
            if now - self._checked < self._check_sec:
                return self._ok
            self._checked = now
            try:
                usage = shutil.disk_usage(self._existing(self.path))
            except OSError:
                return self._ok
            reserve = self.reserve_bytes(usage.total)
            self._ok = usage.free >= reserve
            if self._ok:
                self.state = ""
                self._log.up(f"{usage.free / _MB:.0f} MB free")
            else:
                self.state = (f"paused: {usage.free / _MB:.1f} MB free on {self.path}, below the reserve of "
                              f"{reserve / _MB:.1f} MB kept for alerts")
                self._log.down(self.state, kind="below reserve")
            return self._ok

    @staticmethod
    def _existing(path: str) -> str:
        """The nearest directory that exists (the store's root may not be made yet)."""
        while path and not os.path.exists(path):
            parent = os.path.dirname(path.rstrip("/"))
            if parent == path:
                break
            path = parent
        return path or "."
