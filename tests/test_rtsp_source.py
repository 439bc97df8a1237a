"""CaptureSource against a real RTSP camera on loopback (benchmarks/rtsp_server.py looping vtest at 10 fps, 768x576).

What a camera can do to us: deliver frames, lose power (SIGKILL: connections reset), hang (SIGSTOP: connections stay
open, nothing arrives, new connections get no answer). Each test waits on conditions with deadlines, and prints what
it measured (``pytest -s`` or ``-rP`` shows it).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from framewatch.actors.ingest.sources import CaptureSource, SourceError, open_source

OPEN_TIMEOUT_MS = 3000
READ_TIMEOUT_MS = 2000
FPS = 10.0


def _open(url: str, **timeouts: int) -> CaptureSource:
    source = open_source(url, decoder="opencv", **timeouts)
    assert isinstance(source, CaptureSource) and source.live
    source.open()
    return source


def _grab_until_error(source: CaptureSource, deadline_s: float) -> tuple[SourceError, float, int]:
    """Grab until SourceError; return it, the seconds it took and the frames grabbed meanwhile. Fails at the deadline."""
    started = time.monotonic()
    grabbed = 0
    while time.monotonic() - started < deadline_s:
        try:
            source.grab()
        except SourceError as exc:
            return exc, time.monotonic() - started, grabbed
        grabbed += 1
    pytest.fail(f"grab() kept succeeding for {deadline_s} s ({grabbed} frames)")


def _open_when_up(url: str, deadline_s: float) -> CaptureSource:
    started = time.monotonic()
    while True:
        try:
            return _open(url)
        except SourceError:
            if time.monotonic() - started > deadline_s:
                raise


def test_frames_arrive_as_768x576_bgr_arrays_with_increasing_timestamps(rtsp_server):
    started = time.monotonic()
    source = _open(rtsp_server.url)
    opened_s = time.monotonic() - started
    try:
        stamps, images = [], []
        for _ in range(15):
            stamps.append(source.grab())
            images.append(source.retrieve())
    finally:
        source.close()
    print(f"\nRTSP open {opened_s * 1000:.0f} ms; 15 frames in {stamps[-1] - started:.2f} s after open began")

    assert opened_s < 2.0
    for image in images:
        assert image.shape == (576, 768, 3) and image.dtype == np.uint8
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert not np.array_equal(images[0], images[-1]), "the picture should move"
    # Live pacing: the server sends 10 frames/s, so the last 10 frames span about 1 s (not a burst, not a stall).
    assert 0.6 < stamps[-1] - stamps[-11] < 1.6


def test_a_killed_camera_fails_grab_at_once_and_reopens_fail_fast_until_it_restarts(rtsp_server):
    url = rtsp_server.url
    source = _open(url)
    try:
        for _ in range(5):
            source.grab()
        rtsp_server.kill()
        # The decoder may still hand out the frames it held back for reordering, then the read fails.
        error, detected_s, drained = _grab_until_error(source, deadline_s=1.0)
    finally:
        source.close()
    assert str(error) == f"read failed on {url}"

    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot open"):
        _open(url)
    refused_s = time.monotonic() - started
    assert refused_s < 0.5

    rtsp_server.restart()
    assert rtsp_server.url == url
    started = time.monotonic()
    source = _open_when_up(url, deadline_s=5.0)
    try:
        reopened_s = time.monotonic() - started
        source.grab()
        assert source.retrieve().shape == (576, 768, 3)
    finally:
        source.close()
    print(f"\nkill detected in {detected_s * 1000:.0f} ms (after {drained} drained frames); "
          f"open while down failed in {refused_s * 1000:.1f} ms; reopen after restart {reopened_s * 1000:.0f} ms")


def test_a_frozen_camera_fails_grab_within_the_read_timeout_and_reads_again_after_reopen(rtsp_server):
    url = rtsp_server.url
    source = _open(url, open_timeout_ms=OPEN_TIMEOUT_MS, read_timeout_ms=READ_TIMEOUT_MS)
    try:
        for _ in range(5):
            source.grab()
        rtsp_server.freeze()
        error, detected_s, drained = _grab_until_error(source, deadline_s=READ_TIMEOUT_MS / 1000 * 3)
    finally:
        source.close()
    print(f"\nfreeze detected in {detected_s:.2f} s (read timeout {READ_TIMEOUT_MS} ms, {drained} frames buffered)")
    assert str(error) == f"no new frame from {url} within {READ_TIMEOUT_MS} ms (stream frozen)"
    # One timed-out read, not the two or three the decoder could stretch it to (see CaptureSource.grab).
    assert READ_TIMEOUT_MS / 1000 <= detected_s < READ_TIMEOUT_MS / 1000 + 1.0

    rtsp_server.thaw()
    source = _open(url)
    try:
        source.grab()
        assert source.retrieve().shape == (576, 768, 3)
    finally:
        source.close()


def test_opening_a_frozen_camera_fails_after_the_open_timeout(rtsp_server):
    open_timeout_ms = 1000
    rtsp_server.freeze()
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot open"):
        _open(rtsp_server.url, open_timeout_ms=open_timeout_ms)
    failed_s = time.monotonic() - started
    print(f"\nopen of a frozen camera failed after {failed_s:.2f} s (open timeout {open_timeout_ms} ms)")
    # The kernel still accepts the TCP connection; only the open timeout ends the wait for an RTSP answer.
    assert open_timeout_ms / 1000 <= failed_s < open_timeout_ms / 1000 + 1.0


def test_two_clients_read_the_same_camera_at_once(rtsp_server):
    first, second = _open(rtsp_server.url), _open(rtsp_server.url)
    try:
        for _ in range(3):
            first.grab()
            second.grab()
        assert first.retrieve().shape == second.retrieve().shape == (576, 768, 3)
    finally:
        first.close()
        second.close()
