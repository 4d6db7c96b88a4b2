"""Where anonymized live frames go: an RTSP/RTMP server, and/or segmented MP4 recordings.

Both outputs encode with :func:`streamer.sinks.video_file.open_video_encoder`
(x264 tuned for low latency, no B-frames, a keyframe every ``gop_seconds``)
and only ever receive frames that went through the anonymizer. A camera that
carries its sound (``audio: true``) gives them an AAC track as well
(:class:`streamer.live.audio.AudioTrack`), written beside the pictures it plays with. Keyframes are
placed by time, not by frame count: when the anonymizer cannot keep up and
frames are dropped at the input, a viewer still starts within
``gop_seconds`` and a recording segment still ends on time.

* :class:`Publisher` pushes to ``rtsp://`` (ANNOUNCE/RECORD) or ``rtmp://`` (FLV).
  When the server goes away it drops frames (counted) and reconnects with backoff.
  Given ``-`` it writes MPEG-TS to standard output instead (``| ffplay -``); when
  the reader goes away it calls ``on_reader_gone`` (the server stops, as a pipe's writer does).
* :class:`SegmentRecorder` writes ``<dir>/<camera>-<start>-00000.mp4, ...`` with
  FFmpeg's segment muxer; each segment is a fragmented MP4 (a fragment per
  keyframe) closed at the next segment boundary, so a crash or power loss
  loses at most the fragment being written. When writing fails (a full
  disk, an unmounted share) it drops frames (counted) and starts new
  segments once writing works again; the camera and its other output go on.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable

import av

from streamer.colour import ColourInfo, rgb_to_video_frame
from streamer.config import EncoderConfig
from streamer.detections import Frame
from streamer.errors import OutputError, describe_error
from streamer.live.audio import AudioSpec, AudioTrack
from streamer.live.rtsp_source import TIME_BASE, Backoff
from streamer.sinks.video_file import STDOUT, open_video_encoder, output_name
from streamer.sources.video_file import StreamInfo

log = logging.getLogger(__name__)

#: Encoders whose ``forced-idr`` option makes a frame forced to type I an IDR frame.
FORCED_IDR_ENCODERS = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc")


def _info(frame: Frame, fps: float) -> StreamInfo:
    h, w = frame.image.shape[:2]
    return StreamInfo(width=w, height=h, fps=fps, time_base=TIME_BASE, frames=0, codec="", duration=0.0,
                      colour=getattr(frame, "colour", None) or ColourInfo())


class _EncodedOutput:
    """An encoder feeding one container; reopened when the frame size changes, and after a
    failure once a backoff delay has passed (frames meanwhile are dropped and counted).

    Args:
        encoder: codec settings.
        fps: nominal frame rate (frames per second), for the encoder's rate control.
        gop_seconds: keyframe interval in seconds.
        backoff: delays between attempts to reopen after a failure.
        audio: the camera's sound format, to add an audio track (None: video only).

    Attributes:
        frames_dropped: frames not written because the output was failing.
        reconnects: times the output worked again after a failure.
        last_error: the latest failure ("" if none).
        failing: the latest write failed and none has worked since.
    """

    name = "output"
    #: ``event`` of the log record of a failure.
    retry_event = "output_retry"

    def __init__(self, encoder: EncoderConfig, fps: float, gop_seconds: float = 1.0,
                 backoff: Backoff | None = None, audio: AudioSpec | None = None) -> None:
        self.encoder = encoder
        self.audio_spec = audio
        self.audio: AudioTrack | None = None
        self.fps = fps
        self.gop = max(1, int(round(fps * gop_seconds)))  # frames: the encoder's own backstop
        self.gop_ticks = max(1, int(gop_seconds / TIME_BASE))  # the interval that counts, in pts ticks
        self.backoff = backoff or Backoff(0.5, 10.0)
        self._last_key_pts: int | None = None
        self.container = None
        self.stream = None
        self.frames_written = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.last_error = ""
        self._last_pts = -1
        self._retry_at = 0.0
        self.failing = False
        self.log_fields: dict = {}

    def action(self) -> str:
        """What this output does, for messages ('publishing to rtsp://...')."""
        return f"writing {self.name}"

    def _open_container(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _open(self, frame: Frame) -> None:
        container = self._open_container()
        try:
            stream = open_video_encoder(container, _info(frame, self.fps), self.encoder)
            stream.codec_context.gop_size = self.gop
            stream.codec_context.max_b_frames = 0
            options = {}
            if stream.codec_context.name in FORCED_IDR_ENCODERS:  # a forced keyframe: an IDR a viewer starts at
                options["forced-idr"] = "1"
            if stream.codec_context.name in ("libx264", "libx265"):
                options["tune"] = "zerolatency"
            stream.codec_context.options = {**stream.codec_context.options, **options}
            audio = AudioTrack(container, self.audio_spec) if self.audio_spec else None
        except BaseException:
            container.close()
            raise
        self.container, self.stream, self.audio = container, stream, audio
        self.colour = _info(frame, self.fps).colour
        self._last_pts = -1
        self._last_key_pts = None

    def write(self, frame: Frame) -> None:
        """Encode and send one anonymized frame (its pts is in ``TIME_BASE`` units).

        While the output fails (server gone, disk full) the frame is dropped
        and counted; the output is reopened after a backoff delay.
        """
        if self.stream is None and time.monotonic() < self._retry_at:
            self.frames_dropped += 1
            return
        try:
            self._encode(frame)
        except (OutputError, av.FFmpegError, OSError) as exc:
            self.frames_dropped += 1
            self._failed(exc)
            return
        if self.failing and self.frames_written:
            self.failing = False
            self.reconnects += 1
            self.backoff.reset()

    def write_audio(self, frame: av.AudioFrame) -> None:
        """Encode and send one frame of the camera's sound (in the ``audio`` format given, its pts in
        samples). Left out while the output is closed or failing, or has no audio track."""
        if self.audio is None:
            return
        try:
            for packet in self.audio.encode(frame):
                self.container.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        """Close after a failed write and schedule the next attempt."""
        self.last_error = describe_error(exc)
        self.close()
        delay = self.backoff.next()
        self._retry_at = time.monotonic() + delay
        self.failing = True
        log.warning("%s failed (%s); retrying in %.1f s", self.action(), self.last_error, delay,
                    extra={**self.log_fields, "event": self.retry_event, "delay_s": round(delay, 2)})

    def _encode(self, frame: Frame) -> None:
        h, w = frame.image.shape[:2]
        if self.stream is not None and (self.stream.width, self.stream.height) != (w - w % 2, h - h % 2):
            self.close()
        if self.stream is None:
            self._open(frame)
        if frame.pts <= self._last_pts:
            return
        self._last_pts = frame.pts
        image = frame.image[: self.stream.height, : self.stream.width]
        vf = rgb_to_video_frame(image, self.colour, self.stream.pix_fmt)
        vf.pts, vf.time_base = frame.pts, TIME_BASE
        if self._last_key_pts is None or frame.pts - self._last_key_pts >= self.gop_ticks:
            vf.pict_type = av.video.frame.PictureType.I
            self._last_key_pts = frame.pts
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finalize the container (idempotent)."""
        container, stream, audio = self.container, self.stream, self.audio
        self.container = self.stream = self.audio = None
        if container is None:
            return
        try:
            for packet in [*stream.encode(None), *(audio.flush() if audio else ())]:
                container.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.warning("%s: flushing failed (%s)", self.name, exc)
        finally:
            try:
                container.close()
            except (av.FFmpegError, OSError, ValueError) as exc:
                log.warning("%s: closing failed (%s)", self.name, exc)


class Publisher(_EncodedOutput):
    """Publishes to an RTSP (ANNOUNCE/RECORD) or RTMP server, reconnecting on failure.

    Args:
        url: rtsp:// or rtmp:// target.
        transport: RTSP lower transport ("tcp" or "udp").
        connect_timeout: seconds allowed to connect.
        backoff: delays between reconnect attempts.

    ``frames_dropped`` counts the frames not published while the server was
    unreachable, ``reconnects`` the successful reconnections.

    ``on_reader_gone``: called once when ``url`` is ``-`` (standard output) and its reader closed it.
    """

    retry_event = "publish_retry"

    def __init__(self, url: str, encoder: EncoderConfig, fps: float, transport: str = "tcp",
                 connect_timeout: float = 5.0, backoff: Backoff | None = None, audio: AudioSpec | None = None,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        super().__init__(encoder, fps, backoff=backoff, audio=audio)
        self.url = url
        self.on_reader_gone = on_reader_gone
        self.name = output_name(url)
        self.transport = transport
        self.connect_timeout = connect_timeout
        self.log_fields = {"url": url}

    def action(self) -> str:
        return f"publishing to {self.name}"

    def _failed(self, exc: BaseException) -> None:
        if self.url == STDOUT and getattr(exc, "errno", None) == errno.EPIPE:  # the reader is gone
            self.close()
            self._retry_at = float("inf")  # nothing more is written
            log.info("standard output closed by its reader: stopping", extra={"event": "stdout_closed"})
            if self.on_reader_gone is not None:
                self.on_reader_gone()
            return
        super()._failed(exc)

    def _open_container(self):
        if self.url == STDOUT:
            return av.open("pipe:1", mode="w", format="mpegts")
        rtsp = self.url.startswith("rtsp://")
        options = {"rtsp_transport": self.transport} if rtsp else {}
        try:
            return av.open(self.url, mode="w", format="rtsp" if rtsp else "flv", options=options,
                           timeout=(self.connect_timeout, self.connect_timeout))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"{self.url}: cannot publish ({str(exc).split(';')[0]})") from None


def prepare_folder(folder: str) -> Path:
    """Create the recording folder ``folder`` if missing and check it can be written in.

    Raises:
        OutputError: it cannot be created (a file has its name, no permission) or written in.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create recording folder {folder}: {describe_error(exc)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot record in {folder}: permission denied")
    return path


class SegmentRecorder(_EncodedOutput):
    """Records to fixed-length fragmented-MP4 segments in a folder.

    Args:
        folder: where the segments go (created if missing).
        camera: file name prefix.
        segment_seconds: segment length in seconds (cut at the first keyframe after it).
        backoff: delays between attempts to record again after writing failed.
        keep_seconds: delete this camera's finished segments older than this (seconds since
            their last write; 0 = keep them all).
        keep_bytes: delete this camera's oldest finished segments while all of its segments
            together take more than this (bytes; 0 = no limit).

    ``frames_dropped`` counts the frames not recorded while writing failed
    (a full disk, a share gone); recording resumes in new segments. The
    folder is not created again: where a share was unmounted, that would
    fill the disk under its mount point.

    Retention (``keep_seconds``, ``keep_bytes``) is applied when recording
    starts and then once per segment length; only this camera's segments
    are touched (other files in the folder, other cameras' segments, never),
    and never the segment being written. ``segments_deleted`` counts them.
    """

    retry_event = "record_retry"

    def __init__(self, folder: str, camera: str, encoder: EncoderConfig, fps: float,
                 segment_seconds: float = 60.0, backoff: Backoff | None = None, audio: AudioSpec | None = None,
                 keep_seconds: float = 0.0, keep_bytes: int = 0) -> None:
        super().__init__(encoder, fps, gop_seconds=min(1.0, segment_seconds), backoff=backoff, audio=audio)
        if keep_seconds < 0 or keep_bytes < 0:
            raise ValueError(f"keep_seconds and keep_bytes must be >= 0, got {keep_seconds}, {keep_bytes}")
        self.folder = prepare_folder(folder)
        self.camera = self.name = camera
        self.segment_seconds = segment_seconds
        self.keep_seconds, self.keep_bytes = keep_seconds, keep_bytes
        self.segments_deleted = 0
        self._pattern = re.compile(rf"{re.escape(camera)}-\d{{8}}-\d{{6}}(-\d{{6}})?-\d{{5}}\.mp4")
        self._prune_at = 0.0  # monotonic time of the next retention pass
        self.log_fields = {"camera": camera}

    def action(self) -> str:
        return f"recording camera {self.camera} in {self.folder}"

    def _open_container(self):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if any(self.folder.glob(f"{self.camera}-{stamp}-*.mp4")):  # reopened within the second: keep those
            stamp += f"-{time.monotonic_ns() % 1_000_000:06d}"
        pattern = str(self.folder / f"{self.camera}-{stamp}-%05d.mp4")
        options = {"segment_time": f"{self.segment_seconds:g}", "segment_format": "mp4",
                   "reset_timestamps": "1",
                   # delay_moov: the header waits for the first fragment, so a track that starts later
                   # (the sound) keeps its start; without it each segment's first sound packet moved to 0
                   "segment_format_options": "movflags=+frag_keyframe+empty_moov+default_base_moof+delay_moov"}
        try:
            return av.open(pattern, mode="w", format="segment", options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"cannot record to {self.folder}: {describe_error(exc)}") from None

    def segments(self) -> list[Path]:
        """This camera's segment files in the folder, oldest first (names sort by start time)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return [self.folder / name for name in sorted(names) if self._pattern.fullmatch(name)]

    def write(self, frame: Frame) -> None:
        """Record one anonymized frame (see :meth:`_EncodedOutput.write`), then apply retention
        when a segment length has passed since the last pass."""
        super().write(frame)
        if (self.keep_seconds or self.keep_bytes) and time.monotonic() >= self._prune_at:
            self._prune_at = time.monotonic() + min(self.segment_seconds, 60.0)
            self.prune()

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete this camera's finished segments beyond ``keep_seconds`` of age or ``keep_bytes`` in all,
        oldest first; returns the files deleted.

        Args:
            now: the time to measure ages from (seconds since the epoch; default: now).
        """
        segments = self.segments()
        now = time.time() if now is None else now
        sizes, ages = {}, {}
        for path in segments:
            try:
                info = path.stat()
            except OSError:  # deleted meanwhile
                continue
            sizes[path], ages[path] = info.st_size, now - info.st_mtime
        total = sum(sizes.values())
        finished = segments[:-1] if self.container is not None else segments  # the newest is being written
        deleted = []
        for path in (p for p in finished if p in sizes):  # oldest first
            too_old = self.keep_seconds and ages[path] > self.keep_seconds
            too_much = self.keep_bytes and total > self.keep_bytes
            if not (too_old or too_much):
                break
            try:
                path.unlink()
            except OSError as exc:
                log.warning("recording of camera %s: cannot delete old segment %s (%s)", self.camera, path.name,
                            describe_error(exc), extra={**self.log_fields, "event": "retention_failed"})
                break
            total -= sizes[path]
            deleted.append(path)
        if deleted:
            self.segments_deleted += len(deleted)
            log.debug("camera %s: deleted %d old segments (%s ... %s)", self.camera, len(deleted), deleted[0].name,
                      deleted[-1].name, extra={**self.log_fields, "event": "retention"})
        return deleted
