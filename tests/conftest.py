"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest
from framewatch.benchmarks.rtsp_camera import RtspServer, make_h264_clip, rtsp_unavailable

# --- RTSP camera (benchmarks/rtsp_camera.py, benchmarks/rtsp_server.py) ------------------------------------------

@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory):
    """The vtest clip as raw H.264 with access-unit delimiters, made once per session.

    Skips without the Debian packages of .ci/apt-packages.txt, except on CI (``CI`` set), where it fails.
    """
    reason = rtsp_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return make_h264_clip(tmp_path_factory.mktemp("rtsp"))


@pytest.fixture
def rtsp_server(h264_clip):
    """A started RTSP camera looping the vtest clip at 10 fps; stopped and reaped after the test, whatever it did."""
    server = RtspServer(h264_clip)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- actors ---------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def stop_every_actor():
    """Whatever a test did, no actor outlives it."""
    import pykka

    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=30)
