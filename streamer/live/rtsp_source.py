"""A live input that never gives up: RTSP/RTMP via PyAV with timeouts, reconnect and backoff.

Iterating a :class:`LiveSource` yields :class:`LiveFrame` objects until ``stop``
is set. A failed connect, a read error, the end of the stream or a stall (no
packet for ``stall_seconds``, enforced by PyAV's read timeout) closes the
connection and reconnects after an exponential backoff with jitter.
Timestamps are rebased onto one timeline (``TIME_BASE``) that keeps
increasing across reconnects: the outage's wall-clock length is added, so a
recording shows the gap where it happened.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator

import av

from streamer.colour import ColourInfo, video_frame_to_rgb
from streamer.detections import Frame
from streamer.errors import InputError
from streamer.live.audio import CameraAudio
from streamer.sources.deinterlace import Deinterlacer
from streamer.sources.video_file import open_input

log = logging.getLogger(__name__)

#: Time base of every live frame's pts (90 kHz, the RTP video clock).
TIME_BASE = Fraction(1, 90000)


@dataclass
class LiveFrame(Frame):
    """A decoded live frame.

    Attributes:
        arrival: ``time.monotonic()`` seconds when the frame left the decoder.
        fps: the input's nominal frame rate (frames per second).
        colour: the camera's YUV matrix, range and tags (outputs encode with them).
    """

    arrival: float = 0.0
    fps: float = 25.0
    colour: ColourInfo = field(default_factory=ColourInfo)


def audio_codec_name(stream) -> str:
    """The codec of a PyAV input audio stream, for messages ("unknown codec" when FFmpeg has no decoder)."""
    decoder = stream.codec_context
    return decoder.name if decoder is not None and decoder.name else "unknown codec"


def low_latency_decoding(stream) -> None:
    """Decode ``stream`` (a PyAV input video stream) without holding frames back: slice threads only.

    FFmpeg's frame threading (PyAV's ``AUTO``) decodes one frame per thread in
    parallel and hands out each picture only once the threads after it have
    started, so it holds back as many frames as it has threads beyond the
    first: one per CPU core (16 frames, 0.53 s at 30 fps, on a 16-core
    server; 2 on a 2-core one). A camera's picture is then that much later
    everywhere downstream. Slice threading returns each picture from its own
    packet; a 1080p H.264 frame decodes in 1-2 ms on one core
    (``benchmarks/results/decode-rgb-cost-cpu-2026-11-26.md``), and many
    cameras use the cores in parallel anyway.
    """
    stream.thread_type = "SLICE"


class Backoff:
    """Exponential backoff with full jitter.

    Args:
        initial: first delay ceiling in seconds.
        maximum: largest delay ceiling in seconds.
        rng: random source (tests pass a seeded one).

    Example:
        >>> b = Backoff(0.5, 4.0, random.Random(0))
        >>> all(0.25 <= b.next() <= 4.0 for _ in range(10))
        True
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt, in seconds (ceiling doubles per failure)."""
        ceiling = min(self.maximum, self.initial * 2 ** self.failures)
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Call after a successful connection."""
        self.failures = 0


class LiveSource:
    """Reconnecting decoder of a live stream's first video stream (and its first audio stream, with ``on_audio``).

    Args:
        url: rtsp://, rtmp://, ... URL.
        stop: set to end the iteration (checked between packets and during backoff).
        transport: RTSP lower transport, "tcp" or "udp".
        connect_timeout: seconds allowed to open the stream.
        stall_seconds: seconds without any packet before reconnecting.
        backoff: reconnect delays.
        on_state: called with (state, detail) on every state change:
            "connecting", "streaming", "reconnecting" (detail: the reason), "stopped".
        name: the camera's name, added to its log records (``camera`` field).
        on_audio: carry the camera's sound: called with (start on the frames' timeline in
            seconds, frame in :attr:`audio`'s format) for each decoded audio frame
            (:class:`~streamer.live.audio.CameraAudio`). None: the sound is not decoded.

    Attributes:
        reconnects: successful connections after the first one.
        failures: failed connection attempts and broken sessions.
        last_error: the latest failure, one line ("" if none).
        audio: the sound decoder with ``on_audio`` (its ``spec``: the sound format, once a
            session had sound), else None.
    """

    def __init__(self, url: str, stop: threading.Event, transport: str = "tcp", connect_timeout: float = 5.0,
                 stall_seconds: float = 5.0, backoff: Backoff | None = None,
                 on_state: Callable[[str, str], None] | None = None, name: str = "",
                 on_audio: Callable[[float, av.AudioFrame], None] | None = None) -> None:
        self.url = url
        self.log_fields = {"camera": name, "url": url} if name else {"url": url}
        self.stop = stop
        self.transport = transport
        self.connect_timeout = connect_timeout
        self.stall_seconds = stall_seconds
        self.backoff = backoff or Backoff(0.5, 30.0)
        self.on_state = on_state or (lambda state, detail: None)
        self.on_audio = on_audio
        self.audio = CameraAudio() if on_audio else None
        self.reconnects = 0
        self.failures = 0
        self.last_error = ""
        self._connected_once = False
        self._last_time = -1.0      # seconds on the output timeline of the last frame
        self._lost_at = 0.0         # monotonic time the previous session ended
        self._index = 0

    def _options(self) -> dict:
        if self.url.startswith(("rtsp://", "rtsps://")):
            return {"rtsp_transport": self.transport, "fflags": "nobuffer", "max_delay": "500000"}
        return {"fflags": "nobuffer"}

    def _open(self):
        self.on_state("connecting", self.url)
        container = open_input(self.url, self._options(), timeout=(self.connect_timeout, self.stall_seconds))
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.url}: has no video stream")
        return container

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def __iter__(self) -> Iterator[LiveFrame]:
        """Yield frames forever (until ``stop``), reconnecting as needed."""
        while not self.stop.is_set():
            try:
                container = self._open()
            except InputError as exc:
                self._failed(str(exc))
                continue
            try:
                yield from self._session(container)
                reason = "stream ended"
            except (av.FFmpegError, OSError, ValueError) as exc:
                reason = f"read failed or stalled for {self.stall_seconds:g} s ({str(exc).split(';')[0]})"
            finally:
                container.close()
            if not self.stop.is_set():
                self._failed(f"{self.url}: {reason}")
        self.on_state("stopped", "")

    def _failed(self, message: str) -> None:
        self.failures += 1
        self.last_error = message
        if self._lost_at == 0.0:
            self._lost_at = time.monotonic()
        delay = self.backoff.next()
        log.warning("%s; retrying in %.1f s", message, delay,
                    extra={**self.log_fields, "event": "input_retry", "delay_s": round(delay, 2)})
        self.on_state("reconnecting", message)
        self._sleep(delay)

    def _session(self, container) -> Iterator[LiveFrame]:
        stream = container.streams.video[0]
        low_latency_decoding(stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate and 1 <= float(rate) <= 240 else 25.0
        first_pts: int | None = None
        # Where this session starts on the output timeline: after the last frame plus the outage.
        gap = time.monotonic() - self._lost_at if self._lost_at else 0.0
        base = self._last_time + max(gap, 1.0 / fps) if self._last_time >= 0 else 0.0
        started = False
        deinterlace = Deinterlacer()  # an interlaced camera's frames, deinterlaced (a frame's delay)
        sound = container.streams.audio[0] if container.streams.audio else None  # decoded only when carried
        if sound is not None and (self.audio is None or not self.audio.start_session(sound)):
            if not self._connected_once:
                why = ("is not carried: the anonymized stream and recordings are video only (the camera's "
                       "'audio: true' carries it; voices are not anonymized)" if self.audio is None else
                       "cannot be decoded here: the outputs are video only")
                log.warning("%s: the camera's audio (%s) %s", self.url, audio_codec_name(sound), why,
                            extra={**self.log_fields, "event": "audio_not_carried"})
            sound = None
        origin: float | None = None  # the input's time (seconds) of this session's first picture
        for packet in container.demux(*[s for s in (stream, sound) if s is not None]):
            if self.stop.is_set():
                return
            if packet.stream.index != stream.index:
                if origin is not None:
                    for start, af in self.audio.decode(packet, origin, base):
                        self.on_audio(start, af)
                continue
            for vf in deinterlace(packet.decode()):
                if not started:
                    started = True
                    self.backoff.reset()
                    if self._connected_once:
                        self.reconnects += 1
                        log.info("%s: reconnected (reconnect %d)", self.url, self.reconnects,
                                 extra={**self.log_fields, "event": "input_reconnected",
                                        "reconnects": self.reconnects})
                    self._connected_once = True
                    self._lost_at = 0.0
                    self.on_state("streaming", "")
                if vf.pts is None or vf.time_base is None:
                    t = self._last_time + 1.0 / fps if self._last_time >= 0 else base
                else:
                    if first_pts is None:
                        first_pts, origin = vf.pts, float(vf.pts * vf.time_base)
                    t = base + float((vf.pts - first_pts) * vf.time_base)
                if t <= self._last_time:  # never go backwards (B-frames, camera clock resets)
                    t = self._last_time + 1e-3
                self._last_time = t
                frame = LiveFrame(index=self._index, pts=int(round(t / TIME_BASE)), time_base=TIME_BASE,
                                  image=video_frame_to_rgb(vf), arrival=time.monotonic(), fps=fps,
                                  colour=ColourInfo.of(vf))
                self._index += 1
                yield frame
        self._lost_at = time.monotonic()
