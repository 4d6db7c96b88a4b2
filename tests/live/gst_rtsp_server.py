"""Test RTSP server that only speaks RTSP over TCP (RTP interleaved in the RTSP connection).

Runs under the *system* Python with GStreamer's RTSP server (Debian packages installed by
.ci/install-gst-rtsp-server.sh), not the project's Python:

    /usr/bin/python3 gst_rtsp_server.py PORT --play cam=clip.mp4 --record anon=out.h264
    /usr/bin/python3 gst_rtsp_server.py --check      # exit 0 if everything needed is installed

* ``--play NAME=FILE.mp4``: serves the H.264 track of FILE at rtsp://127.0.0.1:PORT/NAME, in
  real time, each client from the start of the file (non-shared media).
* ``--play-sound NAME=FILE.mov``: the same, plus FILE's G.711 mu-law 8 kHz mono track as PCMU,
  as IP cameras send their microphone.
* ``--record NAME=FILE.h264``: accepts ANNOUNCE/RECORD of an H.264 stream at /NAME and writes
  it to FILE as an Annex B byte stream.

Both mounts allow only the TCP lower transport: a client asking for RTP over UDP gets
"461 Unsupported Transport". Every SETUP is printed to stdout as
``SETUP <path> <Transport header>`` so tests can check what the client asked for.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay", "rtph264depay", "filesink", "capsfilter", "queue",
            "rtppcmupay")


def check() -> int:
    Gst.init(None)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        print("missing GStreamer elements: " + ", ".join(missing))
        return 1
    print("ok")
    return 0


def _mount(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {spec!r}")
    return name, path


def _quote(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _factory(launch: str, record: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)   # interleaved only: UDP SETUPs are refused
    if record:
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    else:
        factory.set_shared(False)
    return factory


def _on_setup(client, ctx):
    """Log the SETUP's Transport header; the server then accepts or refuses it as usual."""
    result, transport = ctx.request.get_header(GstRtsp.RTSPHeaderField.TRANSPORT, 0)
    path = ctx.uri.abspath if ctx.uri is not None else "?"
    print(f"SETUP {path} {transport if result == GstRtsp.RTSPResult.OK else '-'}", flush=True)
    return GstRtsp.RTSPStatusCode.OK


def _on_client(server, client) -> None:
    client.connect("pre-setup-request", _on_setup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("--play", type=_mount, action="append", default=[])
    parser.add_argument("--play-sound", type=_mount, action="append", default=[])
    parser.add_argument("--record", type=_mount, action="append", default=[])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.check:
        return check()
    if args.port is None:
        parser.error("PORT is required")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name, path in args.play:
        mounts.add_factory(f"/{name}", _factory(
            # SPS/PPS every second; config-interval=-1 (before every IDR) gave FFmpeg smeared frames
            f"( filesrc location={_quote(path)} ! qtdemux ! rtph264pay name=pay0 pt=96 config-interval=1 )",
            record=False))
    for name, path in args.play_sound:
        mounts.add_factory(f"/{name}", _factory(
            f"( filesrc location={_quote(path)} ! qtdemux name=d "
            f"d.video_0 ! queue ! rtph264pay name=pay0 pt=96 config-interval=1 "
            f"d.audio_0 ! queue ! rtppcmupay name=pay1 )", record=False))
    for name, path in args.record:
        mounts.add_factory(f"/{name}", _factory(
            f"( rtph264depay name=depay0 ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au "
            f"! filesink location={_quote(path)} )", record=True))
    server.connect("client-connected", _on_client)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: (loop.quit(), False)[1])
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
