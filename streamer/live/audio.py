"""A camera's sound, carried beside its anonymized video when the camera's config says ``audio: true``.

Off by default: a voice identifies a person as well as a face does, and
nothing here anonymizes it. Where it is on:

* :class:`CameraAudio` (the camera's reader thread) decodes each audio packet,
  converts the samples to one format for the camera's whole run (planar float
  at the layout and sample rate of its first session, so a camera that comes
  back after an outage with other settings does not change the outputs'
  track), and puts them on the video's live timeline: the same origin (the
  session's first picture) and the same outage gaps, in seconds.
* :class:`AudioBuffer` holds the sound until the writer thread has written
  the pictures it plays with (the video comes later, by the anonymizer's
  latency); bounded in seconds, the oldest dropped and counted.
* :class:`AudioTrack` is an output's AAC track (RTSP, RTMP and MP4 all hold
  AAC): it encodes the frames and drains the encoder at the end.

Example:
    >>> buffer = AudioBuffer(seconds=1.0)
    >>> frame = av.AudioFrame(format="fltp", layout="mono", samples=800)
    >>> frame.sample_rate, frame.pts = 8000, 0   # 0.1 s at 8 kHz
    >>> buffer.put(5.0, frame)
    >>> [round(start, 2) for start, _ in buffer.take(before=5.05)], len(buffer)
    ([5.0], 0)
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av

from streamer.errors import describe_error
from streamer.sinks.reencode import audio_bit_rate, layout_name, pick_audio_encoder

log = logging.getLogger(__name__)

#: Encoder of every output's audio track (RTSP, RTMP/FLV and MP4 segments all hold it).
AUDIO_ENCODER = "aac"


@dataclass(frozen=True)
class AudioSpec:
    """The sound format of a camera's outputs.

    Attributes:
        rate: samples per second.
        layout: channel layout name (``mono``, ``stereo``, ...).
    """

    rate: int
    layout: str


class CameraAudio:
    """Decodes a camera's audio packets onto the live timeline of its video (reader thread).

    Call :meth:`start_session` for each connection, then :meth:`decode` for
    each audio packet once the session's first picture has fixed the origin.

    Attributes:
        spec: the format every frame is converted to (set by the first session with sound).
    """

    def __init__(self) -> None:
        self.spec: AudioSpec | None = None
        self._resampler: av.AudioResampler | None = None
        self._end = -1.0  # seconds on the live timeline where the last frame handed out ends

    def start_session(self, stream) -> bool:
        """Prepare for a new connection whose audio stream is ``stream`` (a PyAV input stream).

        Returns:
            False when the sound cannot be decoded here (no decoder for its codec, no sample rate):
            the session is then carried without it.
        """
        decoder = stream.codec_context
        if decoder is None or not decoder.sample_rate or not decoder.channels:
            return False
        if self.spec is None:
            self.spec = AudioSpec(rate=decoder.sample_rate, layout=layout_name(decoder.layout.name, decoder.channels))
        self._resampler = None
        return True

    def decode(self, packet: av.Packet, origin: float, base: float) -> list[tuple[float, av.AudioFrame]]:
        """The frames of one packet as (start on the live timeline in seconds, frame in :attr:`spec`).

        Args:
            packet: a packet of the session's audio stream.
            origin: the input's time (seconds) of the session's first picture.
            base: where that picture is on the live timeline (seconds).

        Sound from before the picture is left out; a frame that would start
        before the end of the previous one (a camera clock going back) starts
        at that end, so the track never goes backwards.
        """
        try:
            frames = packet.decode()
        except (av.FFmpegError, ValueError) as exc:  # a damaged packet: its few ms of sound are skipped
            log.debug("camera audio packet not decodable: %s", describe_error(exc))
            return []
        out = []
        for frame in frames:
            for converted in self._convert(frame):
                if converted.pts is None or converted.time_base is None:
                    start = self._end
                else:
                    start = base + float(converted.pts * converted.time_base) - origin
                if start < base - 1e-6:
                    continue
                start = max(start, self._end)
                self._end = start + converted.samples / converted.sample_rate
                converted.pts, converted.time_base = round(start * converted.sample_rate), \
                    Fraction(1, converted.sample_rate)
                out.append((start, converted))
        return out

    def _convert(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        if self._resampler is not None:
            try:
                return self._resampler.resample(frame)
            except ValueError:  # the camera changed its format mid-session: a converter for the new one
                pass
        self._resampler = av.AudioResampler(format="fltp", layout=self.spec.layout, rate=self.spec.rate)
        return self._resampler.resample(frame)


class AudioBuffer:
    """Decoded sound waiting for its pictures: filled by the reader thread, emptied by the writer.

    Args:
        seconds: most sound held; when more arrives the oldest is dropped (counted).

    Attributes:
        dropped_seconds: sound dropped because the pictures did not come in time.
    """

    def __init__(self, seconds: float = 10.0) -> None:
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.seconds = seconds
        self.dropped_seconds = 0.0
        self._items: deque[tuple[float, av.AudioFrame]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, start: float, frame: av.AudioFrame) -> None:
        """Add ``frame`` starting at ``start`` (seconds on the live timeline)."""
        with self._lock:
            self._items.append((start, frame))
            while self._items and start - self._items[0][0] > self.seconds:
                _, old = self._items.popleft()
                self.dropped_seconds += old.samples / old.sample_rate

    def take(self, before: float) -> list[tuple[float, av.AudioFrame]]:
        """Remove and return the frames that start before ``before`` (seconds), oldest first."""
        out = []
        with self._lock:
            while self._items and self._items[0][0] < before:
                out.append(self._items.popleft())
        return out


class AudioTrack:
    """An output's audio track: AAC in ``spec``'s layout, at its rate where AAC has it.

    Args:
        container: the output container (opened for writing, header not yet written).
        spec: the camera's sound format (frames passed to :meth:`encode` are in it).
    """

    def __init__(self, container, spec: AudioSpec) -> None:
        codec, rate = pick_audio_encoder("mp4", AUDIO_ENCODER, spec.layout, spec.rate)
        self.stream = container.add_stream(codec, rate=rate, layout=spec.layout)
        self.stream.bit_rate = audio_bit_rate(rate, len(self.stream.layout.channels))
        self._end = -1  # pts (1 / spec.rate) where the last frame encoded ends

    def encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        """The packets that encoding ``frame`` completes (none for a frame that overlaps the last one)."""
        if frame.pts < self._end - 1:  # a sample of rounding is not an overlap
            return []
        self._end = frame.pts + frame.samples
        return list(self.stream.encode(frame))

    def flush(self) -> list[av.Packet]:
        """Drain the encoder (end of the output)."""
        return list(self.stream.encode(None))
