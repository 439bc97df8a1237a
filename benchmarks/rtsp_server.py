"""A looping RTSP camera on loopback, for tests and benchmarks.

Run with Debian's Python (it needs python3-gi and GStreamer's RTSP server, which a venv does not see)::

    /usr/bin/python3 benchmarks/rtsp_server.py --port 8554 --mount /cam [--mount /cam2 ...] --h264 clip.h264 [--fps 10]

The input is a raw H.264 byte stream with access-unit delimiters (``ffmpeg ... -bsf:v h264_metadata=aud=insert
-f h264``). It is split into access units once, at start-up; a live ``appsrc`` is fed one access unit per
``need-data`` with continuous timestamps, looping over the file forever. All clients share one pipeline
(``appsrc ! h264parse ! rtph264pay``), as they would share a real camera; each ``--mount`` is another such camera
(its own pipeline) showing the same clip.

Prints ``READY rtsp://127.0.0.1:PORT/MOUNT [rtsp://127.0.0.1:PORT/MOUNT2 ...]`` on stdout once the socket listens
(``--port 0`` picks a free port and the line names it). Exits with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

_AUD_NAL_TYPE = 9
_CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


def split_access_units(data: bytes) -> list[bytes]:
    """Cut an Annex-B stream before every access-unit delimiter NAL (start code included)."""
    cuts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        if i + 3 < len(data) and data[i + 3] & 0x1F == _AUD_NAL_TYPE:
            # A four-byte start code belongs to the unit it opens.
            cuts.append(i - 1 if i > 0 and data[i - 1] == 0 else i)
        i = data.find(b"\x00\x00\x01", i + 3)
    if not cuts:
        raise ValueError("no access-unit delimiters found: encode with -bsf:v h264_metadata=aud=insert")
    if cuts[0] != 0:
        cuts[0] = 0  # anything before the first delimiter (never seen from ffmpeg) rides with the first unit
    cuts.append(len(data))
    return [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


class _Feeder:
    """Feeds one media's appsrc: the next access unit on each need-data, PTS continuing across loops."""

    def __init__(self, units: list[bytes], fps: float) -> None:
        self._units = units
        self._duration = int(Gst.SECOND / fps)
        self._n = 0

    def on_need_data(self, appsrc: Gst.Element, _length: int) -> None:
        unit = self._units[self._n % len(self._units)]
        buf = Gst.Buffer.new_wrapped(unit)
        buf.pts = buf.dts = self._n * self._duration
        buf.duration = self._duration
        self._n += 1
        appsrc.emit("push-buffer", buf)


class _LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, units: list[bytes], fps: float) -> None:
        super().__init__()
        self._units = units
        self._fps = fps
        self.set_shared(True)
        self.set_launch(
            f'( appsrc name=src is-live=true format=time do-timestamp=false caps="{_CAPS}" '
            "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory, media: GstRtspServer.RTSPMedia) -> None:
        # A shared media lives while it has clients; a later client gets a new media and a new feeder.
        appsrc = media.get_element().get_by_name("src")
        feeder = _Feeder(self._units, self._fps)
        appsrc.connect("need-data", feeder.on_need_data)
        media._feeder = feeder  # keep it alive as long as the media


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--mount", action="append", help="path of a camera, repeatable (default /cam)")
    parser.add_argument("--h264", required=True, help="raw H.264 (Annex B) with access-unit delimiters")
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args(argv)
    mounts = args.mount or ["/cam"]
    if not all(m.startswith("/") for m in mounts):
        parser.error("--mount must start with /")

    Gst.init(None)
    with open(args.h264, "rb") as f:
        units = split_access_units(f.read())

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    for mount in mounts:
        server.get_mount_points().add_factory(mount, _LoopingFactory(units, args.fps))
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    base = f"rtsp://{args.host}:{server.get_bound_port()}"
    print("READY " + " ".join(base + m for m in mounts), flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
