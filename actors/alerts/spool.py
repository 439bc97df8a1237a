"""The alert spool: a bounded on-disk FIFO of alerts waiting for the sink.

The alert actor appends a batch the sink refused (and, while the sink is down, every batch, untried); it replays the
spool oldest first with ``peek``, and ``drop``s a chunk only once the sink confirmed it, so an alert the sink has not
taken is on disk (invariant 6). After a crash, a new ``Spool`` on the same directory finds the alerts that were not
confirmed, oldest first; delivery is at-least-once (consumers dedupe on ``Alert.id``).

Layout of the directory:

- ``<16 digits>.seg``: append-only segment files, one JSON-encoded ``Alert`` per line, numbered in order. Appends go to
  the last segment and are fsynced; a segment past ``segment_bytes`` is closed and a new one begun.
- ``HEAD``: ``<segment> <offset>``, where the oldest undelivered alert starts. Replaced atomically (write, fsync,
  rename) on every ``drop``. Segments wholly before the head are deleted.

Crash safety: a torn last line (a crash in the middle of an append) is cut off when the spool is opened; a line that
does not decode as an ``Alert`` is skipped and counted in ``corrupt_skipped``. A crash between the sink's
confirmation and ``drop`` means those alerts are delivered again.

Bound: the undelivered alerts never take more than ``max_bytes``; ``append`` drops the oldest to make room and returns
how many it dropped (the caller counts and logs them). Disk use may exceed ``max_bytes`` by up to one segment until
the head leaves that segment.

Not thread-safe: owned by the alert actor and called from its thread only.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec

from ..alerts.sinks import encode_alert
from ..core.atomic import write_atomic
from ..core.messages import Alert

_SUFFIX = ".seg"
_HEAD = "HEAD"
_decoder = msgspec.json.Decoder(Alert)


class _Entry(NamedTuple):
    segment: int
    offset: int
    length: int  # including the newline


class SpoolStats(msgspec.Struct, frozen=True):
    entries: int
    bytes: int
    max_bytes: int
    segments: int
    dropped_total: int
    """Alerts dropped because the spool was full, since this Spool was opened."""
    corrupt_skipped: int
    """Lines that did not decode when the spool was opened (skipped)."""


class Spool:
    """A bounded FIFO of alerts on disk (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 64 << 20, segment_bytes: int | None = None) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or min(max(max_bytes // 8, 64 << 10), 8 << 20)
        self._entries: deque[_Entry] = deque()
        self._bytes = 0
        self._tail_id = 0
        self._tail_size = 0
        self._tail = None  # the open tail segment, or None until the next append
        self.dropped_total = 0
        self.corrupt_skipped = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # --- public API ------------------------------------------------------------------------------------------------

    def append(self, alerts: Sequence[Alert]) -> int:
        """Add alerts at the end (durable when this returns). Returns how many alerts were dropped to stay within
        ``max_bytes``: the oldest ones already spooled, then, if the batch alone is too big, its own oldest."""
        lines = [encode_alert(a) + b"\n" for a in alerts]
        dropped = 0
        # A batch larger than the bound keeps only its newest alerts.
        total = sum(len(x) for x in lines)
        while lines and total > self.max_bytes:
            total -= len(lines[0])
            del lines[0]
            dropped += 1
        # Make room by dropping the oldest spooled alerts.
        evict = 0
        room = self._bytes
        while room + total > self.max_bytes and evict < len(self._entries):
            room -= self._entries[evict].length
            evict += 1
        if evict:
            self.drop(evict)
            dropped += evict
        if lines:
            self._write(lines)
        self.dropped_total += dropped
        return dropped

    def peek(self, n: int) -> list[Alert]:
        """The ``n`` oldest alerts (fewer if the spool holds fewer), oldest first; they stay in the spool."""
        out: list[Alert] = []
        handle = None
        current = -1
        try:
            for i in range(min(n, len(self._entries))):
                entry = self._entries[i]
                if entry.segment != current:
                    if handle is not None:
                        handle.close()
                    self._flush_tail()
                    handle = open(self._segment_path(entry.segment), "rb")  # noqa: SIM115 - closed below
                    current = entry.segment
                handle.seek(entry.offset)
                out.append(_decoder.decode(handle.read(entry.length)))
        finally:
            if handle is not None:
                handle.close()
        return out

    def drop(self, n: int) -> None:
        """Remove the ``n`` oldest alerts (after the sink confirmed them)."""
        n = min(n, len(self._entries))
        if n <= 0:
            return
        for _ in range(n):
            self._bytes -= self._entries.popleft().length
        if self._entries:
            head = self._entries[0]
            self._write_head(head.segment, head.offset)
        else:
            # Empty: start the next append in a fresh segment, so every old segment can go.
            self._close_tail()
            self._tail_id += 1
            self._tail_size = 0
            self._write_head(self._tail_id, 0)
        self._delete_segments_before(self._entries[0].segment if self._entries else self._tail_id)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Encoded size of the alerts in the spool."""
        return self._bytes

    def statistics(self) -> SpoolStats:
        return SpoolStats(
            entries=len(self._entries),
            bytes=self._bytes,
            max_bytes=self.max_bytes,
            segments=len(self._segment_ids()),
            dropped_total=self.dropped_total,
            corrupt_skipped=self.corrupt_skipped,
        )

    def close(self) -> None:
        self._close_tail()

    # --- disk ------------------------------------------------------------------------------------------------------

    def _write(self, lines: list[bytes]) -> None:
        for line in lines:
            if self._tail_size and self._tail_size + len(line) > self.segment_bytes:
                self._close_tail()
                self._tail_id += 1
                self._tail_size = 0
            tail = self._open_tail()
            tail.write(line)
            self._entries.append(_Entry(self._tail_id, self._tail_size, len(line)))
            self._tail_size += len(line)
            self._bytes += len(line)
        self._flush_tail(sync=True)

    def _open_tail(self):  # type: ignore[no-untyped-def]
        if self._tail is None:
            path = self._segment_path(self._tail_id)
            new = not path.exists()
            self._tail = open(path, "ab")  # noqa: SIM115 - held open across appends, closed in _close_tail()
            if new:
                _fsync_dir(self.directory)
        return self._tail

    def _flush_tail(self, sync: bool = False) -> None:
        if self._tail is not None:
            self._tail.flush()
            if sync:
                os.fsync(self._tail.fileno())

    def _close_tail(self) -> None:
        if self._tail is not None:
            self._flush_tail(sync=True)
            self._tail.close()
            self._tail = None

    def _write_head(self, segment: int, offset: int) -> None:
        write_atomic(self.directory / _HEAD, f"{segment} {offset}\n".encode())

    def _read_head(self) -> tuple[int, int] | None:
        try:
            seg, off = (self.directory / _HEAD).read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return None

    def _segment_path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}{_SUFFIX}"

    def _segment_ids(self) -> list[int]:
        ids = []
        for path in self.directory.iterdir():
            if path.suffix == _SUFFIX and path.stem.isdigit():
                ids.append(int(path.stem))
        return sorted(ids)

    def _delete_segments_before(self, segment: int) -> None:
        removed = False
        for seg in self._segment_ids():
            if seg < segment:
                self._segment_path(seg).unlink(missing_ok=True)
                removed = True
        if removed:
            _fsync_dir(self.directory)

    def _recover(self) -> None:
        ids = self._segment_ids()
        head = self._read_head()
        head_seg, head_off = head if head is not None else (ids[0] if ids else 0, 0)
        for seg in ids:
            if seg < head_seg:
                continue
            data = self._segment_path(seg).read_bytes()
            start = head_off if seg == head_seg else 0
            end = data.rfind(b"\n") + 1
            if end < len(data):
                # A torn last line (crash during an append): cut it so the next append starts on a clean line.
                with open(self._segment_path(seg), "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
            pos = start
            while pos < end:
                nl = data.index(b"\n", pos)
                line = data[pos : nl + 1]
                try:
                    _decoder.decode(line)
                except msgspec.DecodeError:
                    self.corrupt_skipped += 1
                else:
                    self._entries.append(_Entry(seg, pos, len(line)))
                    self._bytes += len(line)
                pos = nl + 1
        self._delete_segments_before(head_seg)
        if ids:
            self._tail_id = max(ids[-1], head_seg)
            tail = self._segment_path(self._tail_id)
            self._tail_size = tail.stat().st_size if tail.exists() else 0
        else:
            self._tail_id, self._tail_size = head_seg, 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
