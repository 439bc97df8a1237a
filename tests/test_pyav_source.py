"""PyavSource on the clip file and on a real RTSP camera (benchmarks/rtsp_server.py looping the clip at 10 fps,
768x576, a keyframe every 10 frames, B-frames): what it decodes for a given demand, that no frame it hands out is
corrupt, its timestamps, and what a frozen or killed camera does to it; then the whole pipeline on the camera.

The demand comes from ``Sampler``, which samples like the extractor (a sample every ``interval``, pending until a
retrievable frame takes a credit) from a valve that grants like the supervisor with room to spare (up to ``cap``
credits once the sample is due within a tick). "Not corrupt" is checked on pixels: FFmpeg conceals a missing
reference silently (only a debug line, "Frame num gap"), so every retrieved frame must equal the same frame of a full
decode of the clip. Each test waits on conditions with deadlines and prints what it measured (``pytest -s``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.metrics import Snapshot
from framewatch.actors.ingest.pyav import GopPolicy, PyavSource
from framewatch.actors.ingest.sources import SourceError, SourceStalled, open_source
from framewatch.actors.system import Running
from framewatch.benchmarks.rtsp_camera import CLIP_MP4

from tests.waiting import assert_conserved

FPS = 10.0
KEY_INTERVAL_S = 1.0  # the clip and the camera: a keyframe every 10 frames at 10 fps
SIZE = (576, 768, 3)
OPEN_TIMEOUT_MS = 3000
READ_TIMEOUT_MS = 1000
HORIZON_S = 0.04  # the supervisor's: a tick plus 30 ms


class Sampler:
    """Drives a source as the extractor does, with a valve granting up to ``cap`` credits when a sample is due soon."""

    def __init__(self, source: PyavSource, interval: float, *, cap: int = 2) -> None:
        self.source, self.interval, self.cap = source, interval, cap
        self.next_due = 0.0
        self.pending = False
        self.credits = 0
        self.ready = 0.0  # when the source said it can serve the next sample (what the valve is told)
        self.keyframes = self.retrieved = 0
        self.images: list[np.ndarray] = []
        self.stamps: list[float] = []

    def step(self) -> float:
        source = self.source
        ts = source.grab()
        self.stamps.append(ts)
        self.keyframes += source._at_key  # what was demuxed, to compare with what was decoded
        if self.ready <= time.monotonic() + HORIZON_S:
            self.credits = self.cap
        if ts >= self.next_due:
            self.pending = True
            self.next_due = self.next_due + self.interval if ts - self.next_due < self.interval else ts + self.interval
        if self.pending and source.retrievable() and self.credits > 0:
            self.credits -= 1
            self.pending = False
            self.images.append(source.retrieve())
            self.retrieved += 1
        due, until = (ts, self.next_due) if self.pending else (self.next_due, self.next_due + self.interval)
        self.ready = source.want(due, until, self.credits)
        return ts

    def run_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}: mode {self.source.decode_mode}, "
                            f"{self.keyframes} keyframes, {self.retrieved} retrieved, {self.source.decoded} decoded")
            self.step()

    def run_keyframes(self, n: int, timeout: float) -> None:
        target = self.keyframes + n
        self.run_until(lambda: self.keyframes >= target, timeout, f"{n} keyframes")


def _decode_all(path: Path | str) -> list[tuple[int | None, np.ndarray]]:
    """Every frame of a file, fully decoded, with its PTS: the reference a retrieved frame must equal."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return [(frame.pts, frame.to_ndarray(format="bgr24")) for frame in container.decode(stream)]


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def clip_frames() -> dict[int, np.ndarray]:
    frames = dict(_decode_all(CLIP_MP4))
    assert len(frames) == 50
    return frames  # type: ignore[return-value]


@pytest.fixture(scope="module")
def camera_digests(h264_clip) -> set[str]:
    """The camera's clip, every frame fully decoded: each frame retrieved from the camera must be one of them."""
    return {_digest(image) for _, image in _decode_all(h264_clip)}


@contextmanager
def ffmpeg_log() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's warnings and errors meanwhile (PyAV forwards none by default)."""
    before = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(before)


def _decoder_errors(logs: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    return [entry for entry in logs if entry[0] <= av.logging.ERROR]


def _open(url: str, **kw: object) -> PyavSource:
    source = open_source(url, decoder="pyav", **kw)  # type: ignore[arg-type]
    assert isinstance(source, PyavSource)
    source.open()
    return source


# --- the decision alone, on a made-up timeline -----------------------------------------------------------------------


def _simulate(policy: GopPolicy, *, seconds: float, start: float, fps: float, gop: int, interval: float,
              granted: Callable[[float], int], state: dict[str, float]) -> tuple[int, int]:
    """Frames every 1/fps s, a keyframe every ``gop`` frames, samples every ``interval``, ``granted(t)`` credits held
    when the sample is due within a tick (0: none), used as ``PyavSource`` uses the policy; returns (frames taken,
    frames decoded: a keyframe once, a frame after it the ones of its GOP not decoded yet, and itself)."""
    taken = decoded = 0
    fed = -1  # the last frame of the current GOP decoded (index from its keyframe)
    n0 = round(start * fps)
    for n in range(n0, n0 + round(seconds * fps)):
        t, index = n / fps, n % gop
        late = False
        if index == 0:
            policy.keyframe(t)
            fed = -1
            if policy.waiting_at_key:  # decoded as it arrives
                decoded, fed = decoded + 1, 0
            ok = True
        else:
            ok = policy.offer(t)
            late = not ok and policy.key_serves(t)
        if state["ready"] <= t + HORIZON_S:
            state["credits"] = max(state["credits"], granted(t))
        if t >= state["next_due"]:
            state["pending"] = True
            nd = state["next_due"]
            state["next_due"] = nd + interval if t - nd < interval else t + interval
        if state["pending"] and (ok or late) and state["credits"]:
            state["credits"] -= 1
            state["pending"] = False
            wanted = 0 if index == 0 or late else index
            if wanted > fed:
                decoded, fed = decoded + wanted - fed, wanted
            taken += 1
            policy.retrieved(key=index == 0 or late, late=late)
        due = t if state["pending"] else state["next_due"]
        until = state["next_due"] if state["pending"] else state["next_due"] + interval
        state["ready"] = policy.want(due, until, int(state["credits"]), t)
    return taken, decoded


def test_the_decision_goes_from_keyframes_to_whole_gops_when_credits_abound_and_back_when_they_are_scarce():
    fps, gop, interval = 25.0, 50, 0.2  # a keyframe every 2 s, a sample every 200 ms
    policy = GopPolicy(1 / fps)
    state = {"ready": 0.0, "credits": 0, "pending": False, "next_due": 0.0}
    last = [-10.0]

    def scarce(t: float) -> int:
        """Saturated: grants in bursts every 250 ms, and this camera's share is 0.4 frames/s (keyframes: 0.5/s)."""
        if t % 0.25 < 0.05 and t - last[0] >= 2.5:
            last[0] = t
            return 1
        return 0

    def abound(t: float) -> int:
        """Room for two at a time, as with spare capacity and two credits per camera."""
        return 2

    taken, decoded = _simulate(policy, seconds=40, start=0, fps=fps, gop=gop, interval=interval, granted=scarce,
                               state=state)
    assert policy.mode == "keyframes"
    scarce_cost = decoded / taken
    taken, decoded = _simulate(policy, seconds=20, start=40, fps=fps, gop=gop, interval=interval,
                               granted=abound, state=state)
    assert policy.mode == "full"
    assert taken >= 0.7 * 20 / interval  # nearly every sample once there
    taken, _ = _simulate(policy, seconds=40, start=60, fps=fps, gop=gop, interval=interval, granted=scarce,
                         state=state)
    assert policy.mode == "keyframes"
    print(f"\nscarce credits: {scarce_cost:.2f} decodes per frame taken; grace now {policy.grace * 1000:.0f} ms")
    assert scarce_cost <= 4.0


# --- the clip file ---------------------------------------------------------------------------------------------------


def test_on_the_clip_file_a_camera_sampled_slower_than_its_keyframes_decodes_only_the_keyframes_it_takes(clip_frames):
    source = _open(str(CLIP_MP4))
    try:
        sampler = Sampler(source, interval=2.0)
        with ffmpeg_log() as logs:
            sampler.run_keyframes(7, timeout=15)
        assert source.decode_mode == "keyframes"
        assert source.retrieved_pts is not None
    finally:
        source.close()
    print(f"\n{sampler.keyframes} keyframes demuxed, {sampler.retrieved} frames retrieved, {source.decoded} decoded")
    # One decode per frame taken, each a keyframe (a sample waits for the next keyframe instead of a mid-GOP frame).
    assert 3 <= sampler.retrieved <= sampler.keyframes
    assert source.decoded == sampler.retrieved
    assert not _decoder_errors(logs)


def test_on_the_clip_file_rising_demand_switches_to_full_decoding_without_a_corrupt_frame(clip_frames):
    source = _open(str(CLIP_MP4))
    try:
        sampler = Sampler(source, interval=2.0)
        with ffmpeg_log() as logs:
            sampler.run_keyframes(3, timeout=10)
            assert source.decode_mode == "keyframes"
            before = (sampler.keyframes, sampler.retrieved, source.decoded)
            # Demand rises: a sample every frame, credits for each (inference has room).
            sampler.interval = 1 / FPS
            retrieved: list[tuple[int, np.ndarray]] = []
            original = source.retrieve

            def retrieve() -> np.ndarray:
                image = original()
                retrieved.append((source.retrieved_pts, image))  # type: ignore[arg-type]
                return image

            source.retrieve = retrieve  # type: ignore[method-assign]
            sampler.run_until(lambda: source.decode_mode == "full", timeout=15, what="full decoding")
            sampler.run_keyframes(2, timeout=5)  # and it stays there, through a loop of the file
            sampler.run_until(lambda: len(retrieved) >= 60, timeout=10, what="60 frames retrieved at full rate")
    finally:
        source.close()
    keyframes, taken, decoded = (sampler.keyframes - before[0], sampler.retrieved - before[1],
                                 source.decoded - before[2])
    print(f"\nafter the demand rose: {keyframes} keyframes, {taken} retrieved, {decoded} decoded "
          f"({decoded / taken:.2f} per frame taken)")
    for pts, image in retrieved:
        assert image.shape == SIZE
        assert np.array_equal(image, clip_frames[pts]), f"frame at pts {pts} differs from the full decode"
    assert len({pts for pts, _ in retrieved}) >= 45  # distinct frames: every one the decoder showed, not a few again
    # The whole GOPs are decoded, and a keyframe at most twice (a reordering decoder: once alone, once in its GOP).
    assert taken <= decoded <= taken + 2 * keyframes
    assert not _decoder_errors(logs)


def test_file_timestamps_follow_the_stream_at_its_frame_period_also_across_the_loop():
    source = _open(str(CLIP_MP4))
    try:
        sampler = Sampler(source, interval=0.5)
        sampler.run_until(lambda: len(sampler.stamps) >= 75, timeout=15, what="75 frames (the clip has 50)")
    finally:
        source.close()
    gaps = np.diff(sampler.stamps)
    print(f"\nframe spacing: median {np.median(gaps) * 1000:.1f} ms, min {gaps.min() * 1000:.1f}, "
          f"max {gaps.max() * 1000:.1f}")
    # The stream's period, across the loop too; longer only where the pacer resynchronised after this process was
    # held up (a loaded box), never shorter: no burst.
    assert np.all(gaps > 1 / FPS - 0.01)
    assert np.mean(np.isclose(gaps, 1 / FPS, atol=0.01)) >= 0.9
    # Paced at the native rate: the stamps are the frames' release times on the monotonic clock.
    assert abs(sampler.stamps[-1] - time.monotonic()) < 0.5


# --- the RTSP camera -------------------------------------------------------------------------------------------------


def test_on_the_rtsp_camera_keyframes_only_mode_decodes_only_keyframes(rtsp_server, camera_digests):
    source = _open(rtsp_server.url, read_timeout_ms=READ_TIMEOUT_MS)
    try:
        sampler = Sampler(source, interval=2.0)
        with ffmpeg_log() as logs:
            sampler.run_keyframes(7, timeout=15)
        assert source.decode_mode == "keyframes"
    finally:
        source.close()
    print(f"\n{sampler.keyframes} keyframes demuxed, {sampler.retrieved} retrieved, {source.decoded} decoded")
    assert 3 <= sampler.retrieved <= sampler.keyframes
    assert source.decoded == sampler.retrieved
    for image in sampler.images:
        assert image.shape == SIZE and _digest(image) in camera_digests
    assert not _decoder_errors(logs)


def test_on_the_rtsp_camera_rising_demand_switches_to_full_decoding_without_a_corrupt_frame(
        rtsp_server, camera_digests):
    source = _open(rtsp_server.url, read_timeout_ms=READ_TIMEOUT_MS)
    try:
        sampler = Sampler(source, interval=2.0)
        with ffmpeg_log() as logs:
            sampler.run_keyframes(3, timeout=10)
            assert source.decode_mode == "keyframes"
            first = len(sampler.images)
            sampler.interval = 1 / FPS
            sampler.run_until(lambda: source.decode_mode == "full", timeout=15, what="full decoding")
            sampler.run_until(lambda: len(sampler.images) >= first + 40, timeout=10, what="40 frames at full rate")
    finally:
        source.close()
    later = sampler.images[first:]
    print(f"\n{len(later)} frames retrieved after the demand rose; {source.decoded} decoded in all")
    for image in later:
        assert image.shape == SIZE
        assert _digest(image) in camera_digests, "a retrieved frame is not a frame of the clip: decoded corrupt"
    assert len({_digest(image) for image in later}) >= 30  # the picture moves: frames, not one frame repeated
    assert not _decoder_errors(logs)


def test_rtsp_timestamps_are_the_streams_spaced_by_its_frame_period(rtsp_server):
    source = _open(rtsp_server.url, read_timeout_ms=READ_TIMEOUT_MS)
    try:
        sampler = Sampler(source, interval=2.0)
        sampler.run_until(lambda: len(sampler.stamps) >= 45, timeout=10, what="45 frames")
        now = time.monotonic()
    finally:
        source.close()
    gaps = np.diff(sampler.stamps[5:])  # past the first packets, which carry no DTS yet
    print(f"\nframe spacing: median {np.median(gaps) * 1000:.1f} ms, min {gaps.min() * 1000:.1f}, "
          f"max {gaps.max() * 1000:.1f}; last frame {(now - sampler.stamps[-1]) * 1000:.0f} ms old")
    # The stream's clock, not arrival jitter: every gap is the frame period.
    assert np.allclose(gaps, 1 / FPS, atol=0.005)
    assert 0 <= now - sampler.stamps[-1] < 0.5  # never in the future, and fresh (the reorder delay: 2 frames)


def _grab_until_error(source: PyavSource, deadline_s: float) -> tuple[SourceError, float, int]:
    started = time.monotonic()
    grabbed = 0
    while time.monotonic() - started < deadline_s:
        try:
            source.grab()
        except SourceError as exc:
            return exc, time.monotonic() - started, grabbed
        grabbed += 1
    pytest.fail(f"grab() kept succeeding for {deadline_s} s ({grabbed} frames)")


def _open_when_up(url: str, deadline_s: float) -> PyavSource:
    started = time.monotonic()
    while True:
        try:
            return _open(url)
        except SourceError:
            if time.monotonic() - started > deadline_s:
                raise


def test_a_frozen_rtsp_camera_is_stalled_within_the_read_timeout_and_reads_again_after_reopen(rtsp_server):
    url = rtsp_server.url
    source = _open(url, open_timeout_ms=OPEN_TIMEOUT_MS, read_timeout_ms=READ_TIMEOUT_MS)
    try:
        for _ in range(5):
            source.grab()
        rtsp_server.freeze()
        error, detected_s, drained = _grab_until_error(source, deadline_s=READ_TIMEOUT_MS / 1000 * 4)
    finally:
        source.close()
    print(f"\nfreeze detected in {detected_s:.2f} s (read timeout {READ_TIMEOUT_MS} ms, {drained} packets buffered)")
    assert isinstance(error, SourceStalled)
    assert str(error) == f"no new frame from {url} within {READ_TIMEOUT_MS} ms (stream frozen)"
    # One timed-out read, not the two FFmpeg's RTSP reader stretches it to (see PyavSource._read).
    assert READ_TIMEOUT_MS / 1000 <= detected_s < READ_TIMEOUT_MS / 1000 + 0.5

    rtsp_server.thaw()
    source = _open(url)
    try:
        sampler = Sampler(source, interval=0.1)
        sampler.run_until(lambda: sampler.retrieved >= 1, timeout=5, what="a frame after the thaw")
        assert sampler.images[0].shape == SIZE
    finally:
        source.close()


def test_a_killed_rtsp_camera_fails_grab_at_once_and_reopens_after_it_restarts(rtsp_server):
    url = rtsp_server.url
    source = _open(url)
    try:
        for _ in range(5):
            source.grab()
        rtsp_server.kill()
        error, detected_s, drained = _grab_until_error(source, deadline_s=READ_TIMEOUT_MS / 1000)
    finally:
        source.close()
    assert not isinstance(error, SourceStalled)
    assert str(error) == f"read failed on {url}"

    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot open"):
        _open(url)
    refused_s = time.monotonic() - started
    assert refused_s < 0.5

    rtsp_server.restart()
    started = time.monotonic()
    source = _open_when_up(url, deadline_s=5.0)
    try:
        reopened_s = time.monotonic() - started
        sampler = Sampler(source, interval=0.1)
        sampler.run_until(lambda: sampler.retrieved >= 1, timeout=5, what="a frame after the restart")
        assert sampler.images[0].shape == SIZE
    finally:
        source.close()
    print(f"\nkill detected in {detected_s * 1000:.0f} ms (after {drained} packets); open while down failed in "
          f"{refused_s * 1000:.1f} ms; reopen after restart {reopened_s * 1000:.0f} ms")


def test_opening_a_frozen_rtsp_camera_fails_after_the_open_timeout(rtsp_server):
    rtsp_server.freeze()
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot open"):
        _open(rtsp_server.url, open_timeout_ms=1000)
    failed_s = time.monotonic() - started
    assert 1.0 <= failed_s < 2.0


# --- the pipeline ----------------------------------------------------------------------------------------------------


def _pipeline_conf(tmp_path: Path, url: str, interval_ms: int) -> str:
    return f"""
[frame_extractor]
output_dir = "{tmp_path / 'frames'}"
read_timeout_ms = {READ_TIMEOUT_MS}
decoder = "pyav"

[[frame_extractor.tasks]]
id = "cam"
task_type = "人数统计"
rtsp_url = "{url}"
interval_ms = {interval_ms}
[frame_extractor.tasks.algo_config]
count_threshold = 1

[detector]
backend = "emulated"
emulated_latency_ms = 20
actors = 1

[alerts]
jsonl_path = "{tmp_path / 'alerts.jsonl'}"
spool_dir = "{tmp_path / 'spool'}"

[stats]
interval_sec = 0.5
path = "{tmp_path / 'stats.json'}"
log = false
"""


def test_through_the_pipeline_a_camera_sampled_slower_than_its_keyframes_decodes_about_one_frame_per_inferred(
        rtsp_server, tmp_path):
    cfg = decode_config(_pipeline_conf(tmp_path, rtsp_server.url, interval_ms=2000))
    with Running(cfg) as fw:  # the conf's default decoder: pyav
        started = time.monotonic()
        while True:
            snap: Snapshot = fw.snapshot()
            assert_conserved(snap)
            cam = snap.cameras["cam"]
            if cam.inferred >= 10:
                break
            if time.monotonic() - started > 45:
                pytest.fail(f"timed out waiting for 10 frames inferred: {cam}")
            time.sleep(0.1)
        assert cam.state == "running" and cam.decode_mode == "keyframes"
        assert cam.decoded / cam.inferred <= 1.5, cam
        assert cam.failed == 0
    final = fw.final
    assert final is not None
    assert_conserved(final, at_rest=True)
    cam = final.cameras["cam"]
    print(f"\n{cam.inferred} inferred, {cam.decoded} decoded ({cam.decoded / cam.inferred:.2f} per inferred), "
          f"{cam.sampled} sampled, {cam.skipped} skipped, mode {cam.decode_mode}")
    assert cam.decoded / cam.inferred <= 1.5
