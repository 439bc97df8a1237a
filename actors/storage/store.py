"""Where frames and alert images live: the key layout and the ``Store`` interface, with the local-directory backend.

Keys: ``<base>/<task dir>/<UTC time with milliseconds>-<seq>.jpg`` where the task dir is the task's ``output_path``
or ``<task_type>/<task_id>``, and alert images sit under ``alert_base_path`` with the same layout. The time is fixed
width, so the lexicographic order of keys is their chronological order: retention rebuilds its index from one sorted
listing, and two frames within the same second never collide (the old system's did).

A ``Store`` is used from several actor threads (writer, retention, HTTP); implementations are thread-safe. Only the
retention actor calls ``delete_many``; only start-up calls ``list_keys``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol


class StoreError(Exception):
    """A storage operation failed; the message names the backend setting or the key.

    Raised as such by ``connect()`` it means a setting is wrong (credentials, bucket name, endpoint syntax): it will
    not fix itself, so framewatch cannot start (exit code 1)."""


class StoreUnavailable(StoreError):
    """The storage server cannot be reached right now (refused, timed out, 5xx): transient. framewatch runs without
    storage (frames counted as not stored) and the store tries again by itself."""


class Store(Protocol):
    name: str

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        """Store ``data`` under ``key``; raises StoreError."""
        ...

    def get(self, key: str) -> bytes:
        """Read a stored object; raises StoreError."""
        ...

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete keys in one batch; returns the keys that could not be deleted (retried by retention)."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` in lexicographic order, streamed page by page (never all in memory at once)."""
        ...

    def health(self) -> str:
        """``"up"`` or ``"down: <reason>"`` (for the stats ``components``; never holds a secret)."""
        ...

    def close(self) -> None: ...


def utc_stamp(wall: float) -> str:
    """``20251118T172959.123Z``: fixed width, sorts chronologically."""
    ms = int(round(wall * 1000))
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def join_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def task_dir(task_type: str, task_id: str, output_path: str | None) -> str:
    return output_path.strip("/") if output_path else join_key(task_type, task_id)


def frame_key(prefix: str, wall: float, seq: int) -> str:
    """The key of one frame under a task's prefix (see the module docstring)."""
    return f"{prefix}/{utc_stamp(wall)}-{seq:09d}.jpg"


class LocalStore:
    """A directory on the local disk; writes are atomic (temp file, then rename)."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise StoreError(f"refusing key outside the storage root: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc.strerror}") from None

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        failed = []
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError:
                failed.append(key)
        return failed

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        yield from self._walk(base, prefix)

    def _walk(self, directory: Path, prefix: str) -> Iterator[str]:
        # Sorted directory by directory, so memory holds one directory's entries, not the whole tree.
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            key = join_key(prefix, entry.name)
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            elif not entry.name.startswith(".tmp-"):
                yield key

    def health(self) -> str:
        return "up"

    def close(self) -> None:
        pass
