"""Fixtures: a real RTSP server (npm rtsp-streaming-server on node), a looping H.264 publisher.

The server binary comes from .ci/install-rtsp-server.sh; tests skip with the reason when absent.
Everything listens on 127.0.0.1, on free ports; servers are killed at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import av
import pytest

from streamer.sample import make_sample_clip

HERE = Path(__file__).resolve().parent
MODULES = os.environ.get("RTSP_SERVER_MODULES", "/opt/rtsp-server/node_modules")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout} s")


class RtspServer:
    """One rtsp-streaming-server process: publish on ``publish_port``, play on ``play_port``."""

    def __init__(self) -> None:
        self.publish_port, self.play_port = free_port(), free_port()
        self.rtp_port = 20000 + (os.getpid() * 7 + self.publish_port) % 20000 // 2 * 2
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RtspServer":
        self.proc = subprocess.Popen(
            ["node", str(HERE / "rtsp_server.js"), str(self.publish_port), str(self.play_port), str(self.rtp_port)],
            env={**os.environ, "RTSP_SERVER_MODULES": MODULES}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.publish_port)
        wait_port(self.play_port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def publish_url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.publish_port}/{path}"

    def play_url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.play_port}/{path}"


@pytest.fixture
def rtsp_server_factory():
    """Start RTSP servers on demand; all are killed at teardown."""
    if shutil.which("node") is None or not Path(MODULES, "rtsp-streaming-server").is_dir():
        pytest.skip("RTSP server absent: run .ci/install-rtsp-server.sh (npm rtsp-streaming-server + node)")
    servers: list[RtspServer] = []

    def start() -> RtspServer:
        servers.append(RtspServer().start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory):
    """A 4 s 640x360 25 fps H.264 clip with the real astronaut face moving (ground truth boxes)."""
    path = tmp_path_factory.mktemp("clip") / "faces.mp4"
    return make_sample_clip(str(path), seconds=4.0, fps=25, width=640, height=360, faces=1, audio=False)


@pytest.fixture(scope="session")
def sounding_face_clip(tmp_path_factory):
    """``face_clip`` with a 440 Hz stereo AAC tone."""
    path = tmp_path_factory.mktemp("clip") / "faces-sound.mp4"
    return make_sample_clip(str(path), seconds=4.0, fps=25, width=640, height=360, faces=1, audio=True)


class LoopPublisher:
    """Publishes ``clip`` to ``url`` in a loop at real-time pace (packets remuxed, not re-encoded);
    its video, and with ``audio`` its first audio stream too.

    Reconnects every 0.3 s while the server is down. Stop with ``close()``.
    """

    def __init__(self, clip_path: str, url: str, audio: bool = False) -> None:
        self.clip_path, self.url, self.audio = clip_path, url, audio
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._session()
            except (av.FFmpegError, OSError, ValueError):
                self.stop.wait(0.3)

    def _session(self) -> None:
        out = av.open(self.url, "w", format="rtsp", options={"rtsp_transport": "udp"}, timeout=(3, 3))
        try:
            outs, offset, start = None, 0.0, time.monotonic()  # offset: seconds the current loop starts at
            while not self.stop.is_set():
                with av.open(self.clip_path) as src:  # fresh packets each loop: mux() rescales them in place
                    vin = src.streams.video[0]
                    ins = [vin, *src.streams.audio[:1]] if self.audio else [vin]
                    outs = outs or {s.index: out.add_stream_from_template(s) for s in ins}
                    last = 0.0
                    for p in src.demux(*ins):
                        if not p.size:
                            continue
                        shift = round(offset / p.time_base)
                        last = max(last, float(p.pts * p.time_base))
                        p.pts += shift
                        p.dts += shift
                        delay = start + float(p.pts * p.time_base) - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        p.stream = outs[p.stream.index]
                        out.mux(p)
                        self.sent += p.stream.type == "video"
                        if self.stop.is_set():
                            return
                    offset += last + 2 / float(vin.average_rate)
        finally:
            out.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def publisher_factory():
    pubs: list[LoopPublisher] = []

    def start(clip_path: str, url: str, audio: bool = False) -> LoopPublisher:
        pubs.append(LoopPublisher(clip_path, url, audio))
        return pubs[-1]

    yield start
    for pub in pubs:
        pub.close()


# --- GStreamer RTSP server: RTSP over TCP only (.ci/install-gst-rtsp-server.sh) -------------------

GST_PYTHON = os.environ.get("GST_PYTHON", "/usr/bin/python3")  # the system Python that has python3-gi


def _gst_missing() -> str:
    """Why the GStreamer RTSP server cannot run here ("" when it can)."""
    if not Path(GST_PYTHON).exists():
        return f"{GST_PYTHON} not found"
    try:
        r = subprocess.run([GST_PYTHON, str(HERE / "gst_rtsp_server.py"), "--check"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if r.returncode == 0 else (r.stdout + r.stderr).strip().splitlines()[-1]


class GstRtspServer:
    """One tests/live/gst_rtsp_server.py process (TCP-only RTSP) on a free port.

    Attributes:
        setups: the ``SETUP <path> <Transport header>`` lines the server printed, in order.
    """

    def __init__(self, play: dict[str, str], record: dict[str, str], play_sound: dict[str, str] | None = None) -> None:
        self.port = free_port()
        args = [GST_PYTHON, str(HERE / "gst_rtsp_server.py"), str(self.port)]
        args += [a for name, path in play.items() for a in ("--play", f"{name}={path}")]
        args += [a for name, path in (play_sound or {}).items() for a in ("--play-sound", f"{name}={path}")]
        args += [a for name, path in record.items() for a in ("--record", f"{name}={path}")]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise AssertionError("GStreamer RTSP server did not start:\n" + "\n".join(self.lines)) from None

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def setups(self) -> list[str]:
        return [line for line in self.lines if line.startswith("SETUP ")]

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def gst_rtsp_server_factory():
    """Start TCP-only GStreamer RTSP servers: ``start(play={name: mp4}, record={name: h264_out},
    play_sound={name: mov with a mu-law track})``."""
    missing = _gst_missing()
    if missing:
        pytest.skip(f"GStreamer RTSP server absent ({missing}): run .ci/install-gst-rtsp-server.sh")
    servers: list[GstRtspServer] = []

    def start(play: dict[str, str] | None = None, record: dict[str, str] | None = None,
              play_sound: dict[str, str] | None = None) -> GstRtspServer:
        servers.append(GstRtspServer(play or {}, record or {}, play_sound))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def long_face_clip(tmp_path_factory, face_clip):
    """``face_clip`` repeated 10 times (40 s, remuxed, not re-encoded): a server that plays a file
    from its start for each client then never runs dry during a test."""
    path = tmp_path_factory.mktemp("clip") / "faces-40s.mp4"
    with av.open(face_clip.path) as src, av.open(str(path), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        step = int(round(1 / (float(vin.average_rate) * vin.time_base)))
        packets = [p for p in src.demux(vin) if p.size]
        span = len(packets) * step  # constant frame rate: the next copy starts one frame after the last
        for i in range(10):
            for p in packets:
                copy = av.Packet(bytes(p))
                copy.pts, copy.dts, copy.time_base = p.pts + i * span, p.dts + i * span, vin.time_base
                copy.is_keyframe = p.is_keyframe
                copy.stream = vout
                out.mux(copy)
    return str(path)
