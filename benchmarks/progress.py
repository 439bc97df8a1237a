"""A one-line progress bar on stderr (no dependency). On a terminal it redraws in place; otherwise it prints a line
at every tenth of the way, so logs of CI runs stay short."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, width: int = 30, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._last_draw = 0.0

    def update(self, label: str, done: float, total: float, text: str = "") -> None:
        if not self.enabled:
            return
        frac = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and frac < 1.0:
                return
            self._last_draw = now
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r\x1b[2K{label:<24} [{bar}] {done:5.0f}/{total:.0f} s  {text}")
            self.stream.flush()
            return
        decile = int(frac * 10)
        if decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(f"{label:<24} {frac:4.0%} {done:5.0f}/{total:.0f} s  {text}\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        self.end()
        self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.enabled and self.tty and self._last_draw:
            self.stream.write("\n")
            self.stream.flush()
        self._last_draw = 0.0
        self._last_decile = -1
