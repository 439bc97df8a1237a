"""A real RTSP camera on loopback, for tests and benchmarks: the H.264 clip and a handle on ``rtsp_server.py`` (next
to this file, shipped in the package) running as a subprocess.

The server runs under Debian's Python (``/usr/bin/python3``) because it needs python3-gi and GStreamer's RTSP server;
the Debian packages are listed in ``.ci/apt-packages.txt`` (and in ``DEBIAN_PACKAGES``). ``rtsp_unavailable()`` says
what is missing, so tests can skip and the bench can refuse with a reason instead of failing obscurely.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
from framewatch.actors.core.config import ASSET_PREFIX, resolve_asset

SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CLIP_MP4 = Path(resolve_asset(ASSET_PREFIX + "vtest_5s.mp4"))  # 768x576, 10 fps, 5 s
DEBIAN_PACKAGES = ("python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-base",
                   "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad", "ffmpeg")
CLIP_FPS = 10.0
DEFAULT_GOP = 10

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class RtspServerError(RuntimeError):
    """The RTSP test camera did not start or misbehaved."""


def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    install = f"(Debian: apt-get install {' '.join(DEBIAN_PACKAGES)}; also in .ci/apt-packages.txt)"
    if shutil.which("ffmpeg") is None:
        return f"ffmpeg not installed {install}"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found {install}"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"GStreamer RTSP server for Debian's Python missing {install}: " + probe.stderr.strip()[-300:]
    return None


# The server's imports and elements: appsrc (plugins-base), h264parse (plugins-bad), rtph264pay (plugins-good).
_PROBE = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("appsrc", "h264parse", "rtph264pay") if Gst.ElementFactory.find(e) is None]
if missing:
    raise SystemExit("missing GStreamer elements: " + ", ".join(missing))
"""


class Clip(msgspec.Struct, frozen=True, kw_only=True):
    """How the RTSP test camera's H.264 clip is encoded from the bundled clip; the defaults make today's clip."""

    width: int | None = None
    """Scaled to this width (None: the source's, 768); with only one of width/height set the other keeps the aspect."""
    height: int | None = None
    fps: float | None = None
    """Re-timed to this rate (ffmpeg ``-r``: frames repeated or dropped) and served at it; None: the source's 10."""
    gop: int = DEFAULT_GOP
    """A keyframe every ``gop`` frames exactly (``-g``, ``-keyint_min``, no scene-cut keyframes)."""
    bframes: int | None = None
    """B-frames between references (``-bf``; 0: none); None: the encoder's default."""

    @property
    def served_fps(self) -> float:
        """The rate the server paces the clip at (``RtspServer(fps=...)``)."""
        return self.fps if self.fps is not None else CLIP_FPS

    def suffix(self) -> str:
        """File-name suffix naming the non-default settings ("" for the default clip)."""
        parts = []
        if self.width is not None or self.height is not None:
            parts.append(f"{self.width or 'auto'}x{self.height or 'auto'}")
        if self.fps is not None:
            parts.append(f"{self.fps:g}fps")
        if self.gop != DEFAULT_GOP:
            parts.append(f"g{self.gop}")
        if self.bframes is not None:
            parts.append(f"bf{self.bframes}")
        return "".join("-" + p for p in parts)

    def ffmpeg_args(self, source_sec: float) -> list[str]:
        """ffmpeg's output options (filters, rate, libx264 settings) for this clip of a ``source_sec`` source: cut to
        a whole number of GOPs, so the keyframes stay ``gop`` frames apart where the server loops it."""
        frames = round(source_sec * self.served_fps)
        args = ["-frames:v", str(frames // self.gop * self.gop)] if frames > self.gop and frames % self.gop else []
        if self.width is not None or self.height is not None:
            args += ["-vf", f"scale={self.width or -2}:{self.height or -2}"]
        if self.fps is not None:
            args += ["-r", f"{self.fps:g}"]
        args += ["-c:v", "libx264", "-g", str(self.gop), "-keyint_min", str(self.gop), "-sc_threshold", "0"]
        if self.bframes is not None:
            args += ["-bf", str(self.bframes)]
        return args


DEFAULT_CLIP = Clip()


def make_h264_clip(cache_dir: Path, source: Path = CLIP_MP4, clip: Clip = DEFAULT_CLIP) -> Path:
    """Raw H.264 (Annex B) with access-unit delimiters, encoded from ``source`` as ``clip`` says (default: the
    source's size and rate, a keyframe every 10 frames), made once per cache dir and clip."""
    out = Path(cache_dir) / (source.stem + clip.suffix() + ".h264")
    if out.exists() and out.stat().st_size > 0:
        return out
    tmp = out.with_suffix(".h264.part")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(source)],
                           check=True, capture_output=True, text=True, timeout=30)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *clip.ffmpeg_args(float(probe.stdout)),
         "-bsf:v", "h264_metadata=aud=insert", "-f", "h264", str(tmp)],
        check=True, capture_output=True, timeout=120,
    )
    tmp.replace(out)
    return out


class RtspServer:
    """``rtsp_server.py`` as a subprocess: start, stop, kill, freeze, thaw, restart on the same port.

    ``start()`` returns once the server printed its READY line (or raises after ``READY_TIMEOUT_S``). The first start
    takes any free port (``port=0``); restarts reuse it, so a client's URL stays valid. Every path reaps the process.
    ``mount`` may be several paths (one camera each, all looping the clip): ``urls`` has one URL per mount, ``url`` the
    first.
    """

    def __init__(self, h264: Path, *, port: int = 0, mount: str | Sequence[str] = "/cam", fps: float = CLIP_FPS) -> None:
        self.h264 = Path(h264)
        self.port = port
        self.mounts = [mount] if isinstance(mount, str) else list(mount)
        self.fps = fps
        self.url: str | None = None
        self.urls: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._frozen = False
        self._stderr = None

    # lifetime -----------------------------------------------------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        if self.running:
            raise RtspServerError("already running")
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--h264", str(self.h264),
               "--fps", str(self.fps)]
        for mount in self.mounts:
            cmd += ["--mount", mount]
        # stderr goes to a file, not a pipe nobody drains while the server runs (a full pipe would block it).
        self._stderr = tempfile.TemporaryFile("w+")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
                                text=True, bufsize=1)
        self._proc = proc
        try:
            line = self._read_ready_line(proc, self._stderr, timeout)
        except BaseException:
            self._reap(signal.SIGKILL)
            raise
        self.urls = line.split()[1:]
        self.url = self.urls[0]
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        return self.url

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (after SIGCONT if frozen), wait, SIGKILL if it lingers. Returns the exit status, None if not running."""
        return self._reap(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL, like a camera losing power: no RTSP teardown, connections reset."""
        return self._reap(signal.SIGKILL)

    def restart(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Stop if running, then start again on the same port."""
        self.stop()
        return self.start(timeout)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing arrives (and new connections get no answer)."""
        self._signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)
        self._frozen = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> RtspServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # internals ----------------------------------------------------------------------------------------------------

    def _signal(self, sig: int) -> None:
        if not self.running:
            raise RtspServerError("not running")
        self._proc.send_signal(sig)

    def _reap(self, sig: int, timeout: float = STOP_TIMEOUT_S) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                if self._frozen and sig != signal.SIGKILL:
                    proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            return proc.returncode
        finally:
            self._frozen = False
            if proc.stdout is not None:
                proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    @staticmethod
    def _read_ready_line(proc: subprocess.Popen[str], stderr, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    stderr.seek(0)
                    raise RtspServerError(f"no READY line within {timeout} s: {stderr.read().strip()[-500:]}")
                if not sel.select(remaining):
                    continue
                line = proc.stdout.readline()
                if line.startswith("READY "):
                    return line.strip()
                if line == "":  # EOF: the server exited
                    status = proc.wait(STOP_TIMEOUT_S)
                    stderr.seek(0)
                    err = stderr.read().strip()
                    raise RtspServerError(f"server exited with status {status} before READY: {err[-500:]}")
