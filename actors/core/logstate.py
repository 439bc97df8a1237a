"""Logging a component's health as state changes, not as one line per failed attempt.

framewatch runs unattended for months and retries everything that fails (storage, the alert sink, cameras), often
once a second. Logging each attempt fills the disk and buries the one line that matters, so a component that goes
down logs it once, says so again at most every ``remind_sec`` while it stays down (an operator reading the tail of a
log still learns it is down, and since when), and logs once when it is back. The attempts in between go to DEBUG.

``quiet_library_loggers()`` does the same for the libraries: kafka-python and urllib3 log every reconnect attempt,
FFmpeg and OpenCV print every failed open of a dead camera, and our own components already report each once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable

#: Distinct reason kinds logged per outage; past it, new kinds wait for the reminder (a bound, against a reason that
#: embeds something new each time, e.g. an address or an id).
MAX_KINDS = 8

_NUMBER = re.compile(r"\d+(?:\.\d+)?")

#: Levels of the libraries' loggers in normal runs (``debug=True`` restores them). Why each one:
#: - kafka (kafka-python): every connect attempt logs at ERROR/WARNING ("Connection failed", "Bootstrap ...
#:   failed", ~10 lines/s while the broker is down); the alert actor reports the sink down and back once.
#: - urllib3: each retried request logs "Retrying (Retry(...)) after connection broken" at WARNING; the MinIO store
#:   reports the server down and back once. ERROR still shows what urllib3 considers a real error.
#: - minio: logs little; WARNING keeps anything unusual it says.
#: - pykka: logs every actor crash at ERROR with a traceback; the supervisor logs crashes and restarts itself.
LIBRARY_LEVELS: dict[str, int] = {
    "kafka": logging.CRITICAL,
    "urllib3": logging.ERROR,
    "minio": logging.WARNING,
    "pykka": logging.CRITICAL,
}


#: FFmpeg and OpenCV write to stderr themselves, not through ``logging``: FFmpeg a line per failed connect of a dead
#: camera (``[tcp @ 0x...] Connection to tcp://... failed``) and per corrupt packet of a lossy stream, OpenCV a
#: warning per failed open; the extractor reports a camera down and back once. FFmpeg's level is AV_LOG_QUIET, read
#: from the environment when OpenCV first opens a stream with FFmpeg (once per process).
FFMPEG_LOG_ENV = ("OPENCV_FFMPEG_LOGLEVEL", "-8")


def quiet_library_loggers(debug: bool = False) -> None:
    """Set the libraries' loggers to ``LIBRARY_LEVELS``, FFmpeg to quiet and OpenCV to errors; with ``debug``
    (``--log-level debug``) reset the loggers instead, so they follow the root level and every reconnect attempt is
    visible, and leave FFmpeg and OpenCV at their defaults. Call it once, from the logging setup, before any camera
    opens. An operator's own ``OPENCV_FFMPEG_LOGLEVEL`` or ``OPENCV_LOG_LEVEL`` wins."""
    for name, level in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if debug else level)
    if debug:
        return
    os.environ.setdefault(*FFMPEG_LOG_ENV)
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2.utils.logging as cv_logging  # here, not at the top: only this needs cv2

        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)


def reason_kind(reason: str) -> str:
    """What a reason says without its numbers: ``retrying in 4.0 s`` and ``retrying in 8.0 s`` are the same kind of
    failure, ``Connection refused`` and ``timed out`` are not."""
    return _NUMBER.sub("#", reason)


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


class StateLog:
    """The up/down state of one component, logged when it changes.

    - ``down(reason)``: the first failure logs ``<component>: down: <reason>`` at ``level``; a reason of a new kind
      (``reason_kind``; at most ``MAX_KINDS`` per outage) logs once at WARNING; otherwise at most one ``still down
      since ... (N failures)`` line per ``remind_sec`` (at WARNING, or ``level`` if higher), on the first failure
      after it is due. Every other failure goes to DEBUG.
    - ``up()``: logs ``back up after X`` once, at INFO, if the outage was reported.
    - A component that flaps (down again within ``remind_sec`` of the last line) is not reported at each flap: its
      failures stay at DEBUG until the reminder is due, then ``down again`` says how often it came back meanwhile.

    So a component logs at most a few lines per state change and one per ``remind_sec`` after that, whatever its
    retry rate. ``level=logging.DEBUG`` leaves the changes to a component that already reports them and adds only the
    reminders. Thread-safe (one store is shared by several actors). ``clock`` is monotonic (intervals survive wall
    clock jumps); ``wall`` only prints the ``since``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        component: str,
        *,
        remind_sec: float = 300.0,
        level: int = logging.ERROR,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.component = component
        self.remind_sec = remind_sec
        self._log = logger
        self._level = level
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._down = False
        self._reason = ""
        self._since: float | None = None  # first failure of the current outage (or flapping period)
        self._failures = 0  # in the current outage
        self._flaps = 0  # times it came back (unreported) since the outage began
        self._kinds: set[str] = set()  # reason kinds logged in the current outage
        self._told = False  # the last line about this component said it is down
        self._last_line: float | None = None  # when the last change or reminder line was logged
        self._up_at: float | None = None

    @property
    def is_down(self) -> bool:
        return self._down

    @property
    def reason(self) -> str:
        """The last failure's reason ("" while up)."""
        return self._reason if self._down else ""

    @property
    def failures(self) -> int:
        return self._failures

    def down(self, reason: str, *, kind: str | None = None) -> None:
        """One failed attempt. Its ``kind`` (default: the reason; numbers ignored) decides whether the reason is news."""
        kind = reason_kind(reason if kind is None else kind)
        with self._lock:
            now = self._clock()
            if not self._down:
                if self._since is None or (self._up_at is not None and now - self._up_at >= self.remind_sec):
                    self._since, self._failures, self._flaps, self._kinds = now, 0, 0, set()
                else:
                    self._flaps += 1  # came back and failed again before anything was logged about it
            self._down = True
            self._failures += 1
            self._reason = reason
            due = self._last_line is None or now - self._last_line >= self.remind_sec
            if not self._told:
                if due:
                    self._tell_down(now, kind)
                    return
            elif kind not in self._kinds and len(self._kinds) < MAX_KINDS:
                self._kinds.add(kind)
                self._line(min(self._level, logging.WARNING), now, "%s: still down, now: %s", self.component, reason)
                return
            elif due:
                self._line(max(self._level, logging.WARNING), now, "%s: still down since %s (%d failures): %s",
                           self.component, self._since_text(now), self._failures, reason)
                return
            self._log.debug("%s: failure %d: %s", self.component, self._failures, reason)

    def up(self, detail: str = "") -> bool:
        """The component works (again); ``detail`` is appended to the ``back up`` line. True if it was down."""
        if not self._down:  # the common case, on every successful request: no lock
            return False
        with self._lock:
            if not self._down:
                return False
            now = self._clock()
            self._down = False
            self._up_at = now
            suffix = f"; {detail}" if detail else ""
            if self._told:
                assert self._since is not None
                self._told = False
                self._line(min(self._level, logging.INFO), now, "%s: back up after %s (%d failures)%s",
                           self.component, _span(now - self._since), self._failures, suffix)
                self._since = None
            else:
                self._log.debug("%s: up again (flapping, not reported)%s", self.component, suffix)
            return True

    # --- helpers (lock held) ---

    def _tell_down(self, now: float, kind: str) -> None:
        self._told = True
        self._kinds = {kind}
        if self._flaps:
            self._line(self._level, now, "%s: down again: %s (%d failures since %s, back up %d times in between)",
                       self.component, self._reason, self._failures, self._since_text(now), self._flaps)
        else:
            self._line(self._level, now, "%s: down: %s", self.component, self._reason)

    def _line(self, level: int, now: float, msg: str, *args: object) -> None:
        """A line about a change or a reminder (even at DEBUG: then another component reported the change, and the
        reminder is due ``remind_sec`` after it)."""
        self._log.log(level, msg, *args)
        self._last_line = now

    def _since_text(self, now: float) -> str:
        assert self._since is not None
        started = self._wall() - (now - self._since)
        return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))} ({_span(now - self._since)} ago)"
