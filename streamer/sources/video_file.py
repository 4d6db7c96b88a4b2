"""Video file source: demux with PyAV, decode the video stream, pass other streams through.

Iterating a :class:`VideoFileSource` yields, in demux order, either a
:class:`~streamer.detections.Frame` (a decoded video frame, RGB) or an
``av.Packet`` of another stream (audio, subtitles, data) to be copied to the
output untouched. Corrupt packets are skipped and counted; a truncated file
ends the iteration early with ``truncated`` set.

Example:
    >>> src = VideoFileSource("clip.mp4")              # doctest: +SKIP
    >>> src.info.width, src.info.fps                   # doctest: +SKIP
    (1920, 25.0)
"""

from __future__ import annotations

import itertools
import logging
import os
import statistics
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from streamer.colour import ColourInfo, video_frame_to_rgb
from streamer.detections import Frame
from streamer.errors import InputError, describe_error
from streamer.orientation import Orientation, read_orientation, upright
from streamer.sources.deinterlace import Deinterlacer
from streamer.sources.timestamps import TimestampRepair

log = logging.getLogger(__name__)

#: Containers whose timestamps run on a broadcast clock (MPEG-TS, MPEG-PS: cameras, DVRs, recorders) rather
#: than from the file's start: their outputs are moved to start at zero (``StreamInfo.start``).
CLOCK_FORMATS = ("mpegts", "mpeg")
#: Containers that store decode times only (their presentation times are guesses): frames are timed by those.
DECODE_ORDER_FORMATS = ("avi",)
#: The input name that reads standard input (a pipe: MPEG-TS, Matroska, fragmented MP4, raw H.264...).
STDIN = "-"

#: Stream types copied to the output, whatever their index in the container.
COPIED_STREAM_TYPES = ("audio", "subtitle", "data")


@dataclass
class StreamInfo:
    """What the pipeline needs to know about the input video stream.

    Attributes:
        width, height: frame size in pixels.
        fps: average frame rate in frames per second.
        time_base: seconds per timestamp tick.
        frames: number of frames if the container says so, else an estimate (0 if unknown).
        codec: decoder name.
        duration: stream duration in seconds (0 if unknown).
        colour: matrix, range and tags of the stream's YUV (the output gets the same).
        orientation: how players turn the stored pictures (frames are turned upright for
            the pipeline, and back for the output).
        sample_aspect_ratio: width / height of one pixel (None: square or unknown), e.g. 16/15
            for PAL 720x576 shown at 4:3; the output gets the same.
        metadata: the input container's tags (creation time, title, ...).
        video_metadata: the video stream's tags (language, handler name, ...).
        start: seconds the output's timestamps are moved back by: for an MPEG-TS/PS input (whose
            clock may stand hours in when the recording starts; an MP4 keeping that would open with
            hours of nothing) its first timestamp, as FFmpeg's command line does; 0 for file formats,
            whose times count from the file's start and are kept as they are.
        container_format: the input container's FFmpeg name ('avi', 'matroska,webm', ...; '' if none).
    """

    width: int
    height: int
    fps: float
    time_base: Fraction
    frames: int
    codec: str
    duration: float
    colour: ColourInfo = field(default_factory=ColourInfo)
    orientation: Orientation = field(default_factory=Orientation)
    sample_aspect_ratio: Fraction | None = None
    metadata: dict = field(default_factory=dict)
    video_metadata: dict = field(default_factory=dict)
    start: Fraction = Fraction(0)
    container_format: str = ""


def _decode_time_step(path: str, index: int, packets: int = 48) -> int:
    """The usual step between the decode times of stream ``index``'s first ``packets`` packets (time-base
    ticks; 0 if unknown), read from a second opening of file ``path`` (demuxing only; 0 for standard input,
    which can be read once)."""
    if path == STDIN:
        return 0
    try:
        with av.open(path) as container:
            stream = container.streams[index]
            times = [p.dts for p in itertools.islice(container.demux(stream), packets) if p.size and p.dts is not None]
    except (av.FFmpegError, OSError, ValueError):
        return 0
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return int(statistics.median(steps)) if steps else 0


def _non_square(ratio: Fraction | None) -> Fraction | None:
    """A pixel aspect ratio, None when square (1:1) or unknown (0, None)."""
    return ratio if ratio and ratio != 1 else None


def _video_stream_name(stream) -> str:
    """'stream 1 (h264 1280x720)', or '(cover picture)' for an attached picture: for messages."""
    if stream.disposition & av.stream.Disposition.attached_pic:
        return f"stream {stream.index} (cover picture)"
    ctx = stream.codec_context
    return f"stream {stream.index} ({ctx.name} {ctx.width}x{ctx.height})" if ctx else f"stream {stream.index}"


def open_input(url: str, options: dict | None = None, timeout: float | None = None):
    """Open a container with PyAV, turning failures into one-line InputErrors; :data:`STDIN` (``-``) reads
    standard input."""
    if url == STDIN:
        try:
            return av.open("pipe:0", mode="r", options=options or {})
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"standard input: not a video stream that can be read front to back "
                             f"({describe_error(exc)}); pipe MPEG-TS, Matroska or fragmented MP4 (an MP4/MOV "
                             f"with its index at the end needs to be given as a file)") from None
    is_file = "://" not in url
    if is_file:
        path = Path(url)
        if not path.exists():
            raise InputError(f"input not found: {url}")
        if path.is_dir():
            raise InputError(f"input is a folder, not a video file: {url}")
    try:
        return av.open(url, mode="r", options=options or {}, timeout=timeout)
    except PermissionError:
        raise InputError(f"cannot read {url}: permission denied") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        if is_file and _cut_before_its_index(url):
            raise InputError(f"{url}: an MP4/MOV cut off before its index (moov) was written, as when a camera "
                             f"loses power or its card is pulled mid-recording; nothing can read its frames "
                             f"without one (tools such as untrunc rebuild it from a good file of the same "
                             f"camera)") from None
        what = "not a readable video file" if is_file else "cannot connect"
        raise InputError(f"{url}: {what} ({describe_error(exc)})") from None


def _cut_before_its_index(path: str) -> bool:
    """Whether file ``path`` is an MP4/MOV (ISO boxes, 'ftyp' first) with media data ('mdat') but no
    index ('moov'): what a recording cut off before it was finalized leaves."""
    boxes = top_level_boxes(path)
    return bool(boxes) and boxes[0] == b"ftyp" and b"mdat" in boxes and b"moov" not in boxes


def top_level_boxes(path: str, limit: int = 64) -> list[bytes]:
    """The types of the first ``limit`` top-level boxes of an MP4/MOV file (b'ftyp', b'moov', b'mdat'...),
    read from their headers only; whatever the file holds, boxes or not (empty if unreadable)."""
    boxes = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            at = 0
            while at + 8 <= size and len(boxes) < limit:
                f.seek(at)
                length, kind = struct.unpack(">I4s", f.read(8))
                if length == 1:  # 64-bit size after the type
                    length = struct.unpack(">Q", f.read(8))[0]
                boxes.append(kind)
                if length < 8:  # 0: to the end of the file
                    break
                at += length
    except OSError:
        return []
    return boxes


class VideoFileSource:
    """Decodes the first video stream of a file (any container/codec FFmpeg reads).

    Cover pictures (attached pictures) are skipped when looking for it; other
    video streams (a dashcam's second camera) are left out of the output,
    with a warning naming them.

    Frames come out upright: a stream with a display rotation (phones filming
    in portrait) is turned as a player would turn it.

    Args:
        path: input file path (or any URL PyAV opens).
        threads: decoder threads (0 = FFmpeg's choice).
        container: ``path`` already opened with PyAV.
        info: ``info`` of another source of the same file (saves reading it again).

    Attributes:
        info: the video stream's properties.
        copy_streams: the streams passed through to the output.
        decode_errors: packets that could not be decoded (skipped).
        truncated: True when reading stopped at a damaged or cut-off end.
    """

    def __init__(self, path: str, threads: int = 0, container=None, info: StreamInfo | None = None) -> None:
        self.path = str(path)
        self.container = container or open_input(self.path)
        video_streams = [s for s in self.container.streams if s.type == "video"]
        if not video_streams:
            self.container.close()
            raise InputError(f"{self.path}: has no video stream")
        moving = [s for s in video_streams if not s.disposition & av.stream.Disposition.attached_pic]
        self.stream = (moving or video_streams)[0]
        left_out = [s for s in video_streams if s is not self.stream]
        if left_out and info is None:
            log.warning("%s: only video stream %d is anonymized; %s left out of the output", self.path,
                        self.stream.index, ", ".join(_video_stream_name(s) for s in left_out))
        ctx = self.stream.codec_context
        if ctx is None or not self.stream.codec_context.name:
            self.container.close()
            raise InputError(f"{self.path}: no decoder for the video codec")
        if not ctx.width or not ctx.height:
            self.container.close()
            raise InputError(f"{self.path}: video stream has no frame size (unknown codec or corrupt header)")
        self.stream.thread_type = "AUTO"
        if threads:
            self.stream.thread_count = threads
        self.copy_streams = [s for s in self.container.streams if s.type in COPIED_STREAM_TYPES]
        self.info = info or self._stream_info()
        if info is None and self.info.orientation.turns:
            log.info("%s: stored turned, with a display rotation of %d degrees: frames are turned upright, as "
                     "players show them", self.path, self.info.orientation.rotation)
        self.timestamps = TimestampRepair(round(1 / (self.info.fps * self.info.time_base)),
                                          decode_order=self.container.format.name in DECODE_ORDER_FORMATS)
        self.decode_errors = 0
        self.truncated = False
        self._warned_resize = False  # the size changed mid-stream and the user was told
        self._deinterlace = Deinterlacer()  # idle until an interlaced picture comes
        self._said_interlaced = False

    def _stream_info(self) -> StreamInfo:
        s = self.stream
        rate = s.average_rate or s.guessed_rate or s.base_rate or Fraction(25)
        # an AVI written with a finer time base than its frame rate (FFmpeg writes one from a 1/600 or
        # 1/1000 input) holds empty chunks between frames, which its average rate and frame count include
        # (the crowd clip in ../shared: 50 fps and 682 frames for 25 fps and 341)
        step = _decode_time_step(self.path, s.index) if self.container.format.name in DECODE_ORDER_FORMATS else 0
        padded = bool(step > 1 and s.time_base and rate * s.time_base * step > Fraction(101, 100))
        rate = 1 / (step * s.time_base) if padded else rate
        # FFmpeg estimates the average rate of a Matroska file without a default frame duration (remuxed
        # with a template, VFR recorders) from its first decode times, which it leaves unset for the first
        # B-frames: 2500 fps for 25, which the VP9 encoder refuses and the tracker and progress bar misread
        if not padded and s.guessed_rate and rate > 2 * s.guessed_rate:
            rate = s.guessed_rate
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        if not duration and self.container.duration:
            duration = self.container.duration / av.time_base
        frames = (0 if padded else int(s.frames or 0)) or int(round(duration * float(rate)))
        return StreamInfo(
            width=s.codec_context.width,
            height=s.codec_context.height,
            fps=float(rate),
            time_base=s.time_base or Fraction(1, 90000),
            frames=frames,
            codec=s.codec_context.name,
            duration=duration,
            colour=ColourInfo.of(s.codec_context),
            orientation=read_orientation(self.path),
            sample_aspect_ratio=_non_square(s.codec_context.sample_aspect_ratio or s.sample_aspect_ratio),
            metadata=dict(self.container.metadata),
            video_metadata=dict(s.metadata),
            start=(max(Fraction(self.container.start_time or 0, av.time_base), Fraction(0))
                   if self.container.format.name in CLOCK_FORMATS else Fraction(0)),
            container_format=self.container.format.name,
        )

    #: Exceptions of :meth:`_decode` that mean "this packet is undecodable" (skipped and counted).
    DECODE_ERRORS: tuple = (av.FFmpegError, ValueError)

    def __iter__(self) -> Iterator[Frame | av.Packet]:
        """Yield decoded frames and pass-through packets in demux order."""
        index = 0
        packets = 0  # video packets given to the decoder
        leading, seen_key = 0, False  # of them, those before the first keyframe; whether one came
        streams = [self.stream, *self.copy_streams]
        demuxer = self.container.demux(streams)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as exc:
                self.truncated = True
                log.warning("%s: input ends early or is damaged (%s); keeping the %d frames decoded so far",
                            self.path, describe_error(exc), index)
                break
            if packet.stream.type != "video":
                if packet.size:
                    yield packet
                continue
            if packet.size:
                packets += 1
                seen_key = seen_key or packet.is_keyframe
                leading += not seen_key
            try:
                decoded = self._decode(packet)
            except self.DECODE_ERRORS as exc:
                self._skipped(f"skipped an undecodable video packet ({describe_error(exc)})")
                continue
            for picture in self._progressive(decoded):
                yield self._to_frame(picture, index)
                index += 1
        if self.truncated:  # drain frames still buffered in the decoder
            try:
                for picture in self._progressive(self._flush()):
                    yield self._to_frame(picture, index)
                    index += 1
            except self.DECODE_ERRORS:
                pass
        for picture in self._deinterlace.flush():  # the picture the deinterlacer holds back
            yield self._to_frame(picture, index)
            index += 1
        # a file cut from a longer recording starts mid-GOP: decoders drop what precedes the first keyframe
        # without an error; count those packets, at most as many as produced no picture
        lost = min(leading, packets - index) if seen_key else 0
        if lost > 0:
            self.decode_errors += lost
            log.warning("%s: starts mid-stream: the %d frames before its first keyframe cannot be decoded and "
                        "are left out", self.path, lost)
        # only MP4/MOV sample tables count frames reliably (AVI headers may count twice)
        indexed = int(self.stream.frames or 0) if "mp4" in self.container.format.name else 0
        if not self.truncated and indexed and index < indexed:
            self.truncated = True
            log.warning("%s: input ends after %d of the %d frames its index lists (file cut off?); "
                        "the output holds the %d decodable frames", self.path, index, indexed, index)

    #: Undecodable packets named one by one in warnings; the rest are only counted.
    WARNED_DECODE_ERRORS = 5

    def _skipped(self, what: str) -> None:
        """Count an undecodable packet; warn about the first few."""
        self.decode_errors += 1
        if self.decode_errors <= self.WARNED_DECODE_ERRORS:
            log.warning("%s: %s%s", self.path, what, "; further ones are counted, not listed"
                        if self.decode_errors == self.WARNED_DECODE_ERRORS else "")

    def _decode(self, packet: av.Packet) -> list:
        """Decode one video packet (an empty one flushes the decoder) into pictures for :meth:`_to_frame`."""
        return packet.decode()

    def _flush(self) -> list:
        """The pictures still buffered in the decoder."""
        return self.stream.codec_context.decode(None)

    def _progressive(self, pictures: list) -> list:
        """``pictures`` deinterlaced once an interlaced one was seen (says so once)."""
        out = self._deinterlace(pictures)
        if self._deinterlace.active and not self._said_interlaced:
            self._said_interlaced = True
            log.info("%s: interlaced video: deinterlaced (bwdif, a frame per frame); the output is progressive",
                     self.path)
        return out

    def _timestamp(self, pts: int | None, dts: int | None) -> int:
        """The repaired presentation timestamp of the next frame in output order (warns once on repairs)."""
        repaired = self.timestamps.repaired
        out = self.timestamps(pts, dts)
        if self.timestamps.repaired and not repaired:
            log.warning("%s: the video's timestamps are out of order or missing (e.g. AVI); using decode "
                        "timestamps so every frame keeps its place", self.path)
        return out

    def _to_frame(self, vf: av.VideoFrame, index: int) -> Frame:
        image, device_image = self._pixels(vf)
        return self._frame(index, self._timestamp(vf.pts, vf.dts), vf.time_base or self.info.time_base,
                           image, device_image)

    def _frame(self, index: int, pts: int | None, time_base, image, device_image) -> Frame:
        """A Frame of decoded pixels (host and/or device) at the stream's size, turned upright."""
        turns = self.info.orientation.turns
        return Frame(index=index, pts=pts, time_base=time_base,
                     image=None if image is None else upright(self._fit(image, index), turns),
                     device_image=None if device_image is None else upright(self._fit(device_image, index), turns))

    def _fit(self, pixels, index: int):
        """``pixels`` ((H, W, 3) numpy array or torch tensor) scaled to the stream's first frame size if the
        size changed mid-stream (joined recordings, a camera switching profile), as FFmpeg does: every
        stage and the encoder work at one size. Warns once."""
        width, height = self.info.width, self.info.height
        if tuple(pixels.shape[:2]) == (height, width):
            return pixels
        if not self._warned_resize:
            self._warned_resize = True
            log.warning("%s: the frame size changes from %dx%d to %dx%d at frame %d; such frames are scaled to "
                        "%dx%d", self.path, width, height, pixels.shape[1], pixels.shape[0], index, width, height)
        if isinstance(pixels, np.ndarray):
            return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
        from streamer.stages import frame_ops

        scaled = frame_ops.resize_bilinear(frame_ops.nchw(pixels).float(), (width, height))
        return frame_ops.nhwc(frame_ops.to_uint8(scaled)).contiguous()

    def _pixels(self, vf: av.VideoFrame) -> tuple:
        """(host RGB image, device RGB image) of a decoded picture: here on the host only."""
        return video_frame_to_rgb(vf), None

    def close(self) -> None:
        """Close the container."""
        self.container.close()
