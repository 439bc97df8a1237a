"""The live status line on a terminal: what it says (``render_status``) and who may write on it (``StatusLine``).

``render_status`` picks the figures that fit the terminal, most important first, so an 80-column terminal still
shows what a user watches (cameras, inference rate, frames skipped and in flight, alerts, busy, p95) and a wide one
shows the rest. ``StatusLine`` owns the terminal's last line: log records go above it (``StatusLineHandler`` clears
it, writes the record, redraws it), so a log line never glues onto the status text.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TextIO

from ..core.metrics import Snapshot

ERASE_LINE = "\x1b[K"  # erase from the cursor to the end of the line
CLEAR_LINE = "\r" + ERASE_LINE

# Room left free at the end of the line for the terminal's "^C" echo: a status that filled every column would make
# the echo wrap onto a new line, and "\r" would then only clear that one, leaving the old status above it.
ECHO_MARGIN = len("^C")


def _uptime(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _count(n: int) -> str:
    """Exact below 10 000, then 12.3k, 130k, 4.6M: the line keeps its length as the counters grow over a long run
    (stats.json has the exact figures)."""
    if n < 10_000:
        return str(n)
    for scale, unit in ((10**3, "k"), (10**6, "M"), (10**9, "G")):
        value = n / scale
        if round(value) < 1000 or unit == "G":  # 999999 is 1.0M, not 1000k
            break
    return f"{value:.1f}{unit}" if round(value, 1) < 100 else f"{value:.0f}{unit}"


def status_fields(s: Snapshot) -> list[str]:
    """Every figure of the status line, most important first (``render_status`` drops them from the end).

    The first seven fit an 80-column terminal (less ``ECHO_MARGIN``) with typical figures, hence the short labels.
    """
    t, inference, process = s.totals, s.inference, s.process
    return [
        f"cams={len(s.cameras)}",
        f"infer={t.inferred_per_s:.1f}/s",
        f"skip={_count(t.skipped)}",
        f"in_flight={_count(t.in_flight)}",
        f"alerts={_count(s.alerts.written)}/{_count(s.alerts.emitted)}",
        f"busy={inference.busy:.0%}",
        f"p95={inference.p95_ms:.0f}ms",
        # Shown on wider terminals:
        f"failed={_count(t.failed)}",
        f"inferred={_count(t.inferred)}",
        f"sampled={_count(t.sampled)}",
        f"extract={t.extracted_per_s:.1f}/s",
        f"stored={_count(t.stored)}",
        f"age95={inference.frame_age_p95_ms:.0f}ms",
        f"rss={process.rss_mb:.0f}MB",
        f"threads={process.threads}",
        f"up={_uptime(s.uptime_sec)}",
    ]


def fit(fields: Sequence[str], width: int) -> str:
    """The longest prefix of ``fields``, space-separated, within ``width`` columns.

    A prefix, not a best packing: a figure never shows while a more important one is hidden. When not even the first
    field fits, it is cut to ``width``.
    """
    line = ""
    for field in fields:
        candidate = f"{line} {field}" if line else field
        if len(candidate) > width:
            break
        line = candidate
    if not line and fields:
        return fields[0][:max(width, 0)]
    return line


def render_status(snapshot: Snapshot, width: int) -> str:
    """The status line for a terminal ``width`` columns wide; never longer than ``width``."""
    return fit(status_fields(snapshot), width)


def status_text(snapshot: Snapshot) -> str:
    """Every figure, whatever the width: for a log line."""
    return " ".join(status_fields(snapshot))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class StatusLine:
    """The terminal's last line, rewritten in place; thread-safe.

    ``show`` rewrites it; ``cleared()`` takes it away while something else writes to the stream (a log record) and
    redraws it after; ``close`` leaves the last status on its own line. On a stream that is not a terminal (``live``
    false) every method does nothing: the periodic ``stats:`` log line tells the same.
    """

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = _isatty(stream) if live is None else live
        self._text = ""
        # Reentrant: code writing inside ``cleared()`` may log, and StatusLineHandler takes the lock again.
        self._lock = threading.RLock()

    @property
    def text(self) -> str:
        """The status shown now ("" when none)."""
        return self._text

    def columns(self) -> int:
        """The stream's terminal width when it has one (stdout may be redirected while stderr is a terminal), else
        ``shutil``'s answer ($COLUMNS, stdout's terminal, or 80)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return shutil.get_terminal_size(fallback=(80, 24)).columns

    def width(self) -> int:
        """The columns a status may use: the terminal's, less room for the ``^C`` echo (``ECHO_MARGIN``)."""
        return max(self.columns() - ECHO_MARGIN, 1)

    def _write(self, data: str) -> None:
        self.stream.write(data)
        self.stream.flush()

    def show(self, text: str) -> None:
        """Rewrite the line with ``text`` (nothing written when it is already shown)."""
        with self._lock:
            if not self.live or text == self._text:
                return
            self._text = text
            self._write("\r" + text + ERASE_LINE)

    def interrupted(self) -> None:
        """After SIGINT: the terminal echoed ``^C`` at the cursor; erase it and redraw the status, so what is
        written next starts at the beginning of a clean line."""
        with self._lock:
            if self.live:
                self._write(CLEAR_LINE + (self._text + ERASE_LINE if self._text else ""))

    @contextmanager
    def cleared(self) -> Iterator[None]:
        """Clear the line, let the caller write whole lines to the stream, redraw the status."""
        with self._lock:
            shown = self.live and bool(self._text)
            if shown:
                self._write(CLEAR_LINE)
            try:
                yield
            finally:
                if shown:
                    self._write(self._text + ERASE_LINE)

    def close(self) -> None:
        """Leave the last status on its own line, followed by a newline; later writes go below it."""
        with self._lock:
            if self.live and self._text:
                self._write("\r" + self._text + ERASE_LINE + "\n")
            self._text = ""

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class StatusLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing each record above a status line on the same stream: clear, write, redraw."""

    def __init__(self, status: StatusLine) -> None:
        super().__init__(status.stream)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        with self.status.cleared():
            super().emit(record)
