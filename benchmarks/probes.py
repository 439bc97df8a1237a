"""Measurements of the parts alone, in the same invocation as the runs, for the limit ratios.

- ``decode_probe``: the scenario's sources without framewatch, unpaced (as fast as they decode): first one source
  on one thread (cost of ``grab`` and ``retrieve`` per frame), then every camera's source at once, one thread each
  (the box's raw decode throughput for these sources).
- ``stream_decode_probe``: every camera's stream at once with PyAV in one mode (full decode, keyframes only, demux
  only), measuring the process's CPU: what decoding these cameras costs, and what a decoder that decodes only the
  frames it needs would cost.
- ``capacity_probe``: the inference backend without framewatch: ``slots`` threads, each with its own detector (made
  on that thread, as inference actors do), on frames from the first source; also its process CPU per frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import av
import av.error
import numpy as np
from framewatch.actors.core.config import ASSET_PREFIX, Config, resolve_asset
from framewatch.actors.inference.detectors import Detector
from framewatch.actors.ingest.sources import SourceError, open_source

from .scenario import DecodeMode


def _source(cfg: Config, url: str):  # type: ignore[no-untyped-def]
    """A source that decodes every frame it grabs (OpenCV's): the probes time and keep every frame."""
    fe = cfg.frame_extractor
    return open_source(url, open_timeout_ms=fe.open_timeout_ms, read_timeout_ms=fe.read_timeout_ms, loop=True,
                       realtime=False, decoder="opencv")


def sample_frames(cfg: Config, n: int) -> list[np.ndarray]:
    """``n`` decoded frames from the first enabled task's source (fewer if it fails)."""
    tasks = cfg.enabled_tasks()
    if not tasks or n <= 0:
        return []
    src = _source(cfg, tasks[0].rtsp_url)
    frames: list[np.ndarray] = []
    try:
        src.open()
        while len(frames) < n:
            src.grab()
            frames.append(src.retrieve())
    except SourceError:
        pass
    finally:
        src.close()
    return frames


def decode_probe(cfg: Config, seconds: float, stop: threading.Event | None = None) -> dict[str, Any]:
    tasks = cfg.enabled_tasks()
    out: dict[str, Any] = {"seconds": seconds, "url": tasks[0].rtsp_url if tasks else None, "error": None}
    if not tasks or seconds <= 0:
        out["error"] = "skipped"
        return out
    # One source alone.
    src = _source(cfg, tasks[0].rtsp_url)
    grab_s = retrieve_s = 0.0
    n = 0
    try:
        src.open()
        deadline = time.monotonic() + seconds / 2
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            src.grab()
            t1 = time.perf_counter()
            image = src.retrieve()
            t2 = time.perf_counter()
            grab_s += t1 - t0
            retrieve_s += t2 - t1
            n += 1
        out["frame_shape"] = list(image.shape) if n else None
    except SourceError as exc:
        out["error"] = str(exc)
    finally:
        src.close()
    out["frames_one_source"] = n
    out["grab_ms"] = round(grab_s / n * 1000, 3) if n else None
    out["retrieve_ms"] = round(retrieve_s / n * 1000, 3) if n else None
    out["decode_ms_per_frame"] = round((grab_s + retrieve_s) / n * 1000, 3) if n else None
    out["one_source_fps"] = round(n / (grab_s + retrieve_s), 1) if n and grab_s + retrieve_s > 0 else None

    # Every camera's source at once.
    counts = [0] * len(tasks)
    errors: list[str] = []
    t_end = time.monotonic() + seconds / 2

    def worker(k: int, url: str) -> None:
        s = _source(cfg, url)
        try:
            s.open()
            while time.monotonic() < t_end and not (stop and stop.is_set()):
                s.grab()
                s.retrieve()
                counts[k] += 1
        except SourceError as exc:
            errors.append(str(exc))
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(k, t.rtsp_url), name=f"probe:decode:{k}") for k, t in enumerate(tasks)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(time.monotonic() - t0, 1e-9)
    out["sources_at_once"] = len(tasks)
    out["raw_decode_fps_all_sources"] = round(sum(counts) / elapsed, 1)
    if errors and not out["error"]:
        out["error"] = errors[0]
    return out


_LIVE_OPTIONS = {"rtsp_transport": "tcp", "probesize": "32768"}  # as framewatch's PyAV source opens cameras
_SETTLE_S = 1.0  # after every stream opened, before the window: the burst of packets buffered while opening


def _stream_url(url: str) -> str | None:
    """What PyAV can open for a task URL (a camera, a file, an asset), None for synthetic sources."""
    if url.startswith("synthetic://"):
        return None
    return resolve_asset(url) if url.startswith(ASSET_PREFIX) else url


def stream_decode_probe(cfg: Config, mode: DecodeMode, seconds: float) -> dict[str, Any]:
    """Every camera's stream at once, one thread each, read with PyAV (``av``) in ``mode``, for ``seconds``:

    - ``full``: every packet decoded (what OpenCV's ``grab`` costs);
    - ``keyframes``: ``codec_context.skip_frame = "NONKEY"``: only keyframes decoded, every packet still demuxed
      (the least a decoder serving every camera must spend);
    - ``demux``: packets read and counted, nothing decoded.

    Cost is the process's CPU time (every thread, FFmpeg's included) over the window, which starts once every stream
    is open and has settled; the RTSP test camera is another process and is not counted. One decoder thread per
    stream, like framewatch's PyAV source. Files loop; they are read as fast as they decode.
    """
    tasks = cfg.enabled_tasks()
    urls = [_stream_url(t.rtsp_url) for t in tasks]
    out: dict[str, Any] = {"mode": mode, "sources": len(tasks), "seconds": seconds, "opened": 0, "packets_per_s": None,
                           "keyframes_per_s": None, "decoded_per_s": None, "cpu_sec": None, "cores": None,
                           "cpu_ms_per_decoded": None, "error": None}
    if not tasks or seconds <= 0 or any(u is None for u in urls):
        out["error"] = "skipped" if not tasks or seconds <= 0 else "skipped: synthetic sources have no stream"
        return out
    fe = cfg.frame_extractor
    timeout = (fe.open_timeout_ms / 1000, fe.read_timeout_ms / 1000)
    n = len(urls)
    packets, keyframes, decoded = [0] * n, [0] * n, [0] * n
    opened = [threading.Event() for _ in urls]
    ok = [False] * n
    stop = threading.Event()
    errors: list[str] = []

    def worker(k: int, url: str) -> None:
        live = "://" in url
        try:
            container = av.open(url, options=dict(_LIVE_OPTIONS) if live else {}, timeout=timeout)
        except (av.error.FFmpegError, OSError) as exc:
            errors.append(f"cannot open {url}: {exc}")
            opened[k].set()
            return
        try:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            ctx.thread_count = 1
            if mode == "keyframes":
                ctx.skip_frame = "NONKEY"
            ok[k] = True
            opened[k].set()
            while not stop.is_set():
                for packet in container.demux(stream):
                    if stop.is_set():
                        break
                    if packet.size == 0:  # the flush packet at the end of a file
                        continue
                    packets[k] += 1
                    keyframes[k] += packet.is_keyframe
                    if mode != "demux":
                        decoded[k] += len(ctx.decode(packet))
                else:
                    if live:
                        raise EOFError(f"{url} ended")
                    container.seek(0)
        except (av.error.FFmpegError, OSError, EOFError, IndexError) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            opened[k].set()
            container.close()

    threads = [threading.Thread(target=worker, args=(k, u), name=f"probe:stream:{k}", daemon=True)
               for k, u in enumerate(urls)]
    for t in threads:
        t.start()
    for ev in opened:
        ev.wait(timeout[0] + 5)
    time.sleep(_SETTLE_S)
    c0, t0 = time.process_time(), time.monotonic()
    p0, k0, d0 = sum(packets), sum(keyframes), sum(decoded)
    time.sleep(seconds)
    cpu, elapsed = time.process_time() - c0, max(time.monotonic() - t0, 1e-9)
    p1, k1, d1 = sum(packets), sum(keyframes), sum(decoded)
    stop.set()
    for t in threads:
        t.join(timeout[1] + 5)
    out.update(
        opened=sum(ok), packets_per_s=round((p1 - p0) / elapsed, 1), keyframes_per_s=round((k1 - k0) / elapsed, 2),
        decoded_per_s=round((d1 - d0) / elapsed, 1), cpu_sec=round(cpu, 3), cores=round(cpu / elapsed, 3),
        cpu_ms_per_decoded=round(cpu * 1000 / (d1 - d0), 3) if d1 > d0 else None,
        error=errors[0] if errors else None,
    )
    return out


def capacity_probe(factory: Callable[[], Detector], frames: list[np.ndarray], n_frames: int, n_slots: int,
                   name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": name, "frames": 0, "slots": n_slots, "fps": None, "mean_ms": None,
                           "cpu_sec": None, "cpu_ms_per_frame": None, "cores": None, "error": None}
    if not frames or n_frames <= 0:
        out["error"] = "skipped"
        return out
    per = [n_frames // n_slots + (1 if k < n_frames % n_slots else 0) for k in range(n_slots)]
    lat: list[float] = []
    errors: list[str] = []
    ready = threading.Barrier(n_slots + 1)

    def worker(k: int) -> None:
        try:
            det = factory()
        except Exception as exc:  # a missing model file...
            errors.append(f"{type(exc).__name__}: {exc}")
            ready.wait()
            return
        ready.wait()
        try:
            for j in range(per[k]):
                t0 = time.perf_counter()
                det.detect(frames[(k + j * n_slots) % len(frames)])
                lat.append(time.perf_counter() - t0)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            det.close()

    threads = [threading.Thread(target=worker, args=(k,), name=f"probe:infer:{k}") for k in range(n_slots)]
    for t in threads:
        t.start()
    ready.wait()
    t0, c0 = time.monotonic(), time.process_time()
    for t in threads:
        t.join()
    elapsed = max(time.monotonic() - t0, 1e-9)
    cpu = time.process_time() - c0
    out["cpu_sec"] = round(cpu, 3)
    out["cpu_ms_per_frame"] = round(cpu * 1000 / len(lat), 2) if lat else None
    out["cores"] = round(cpu / elapsed, 3)
    out["frames"] = len(lat)
    out["fps"] = round(len(lat) / elapsed, 2) if lat else None
    out["mean_ms"] = round(sum(lat) / len(lat) * 1000, 2) if lat else None
    out["error"] = errors[0] if errors else None
    return out
