"""Video file sink: encode anonymized frames, copy the other streams, keep timestamps.

The container comes from the output file's extension. The video is
re-encoded (H.264 by default) at the input's size with the input's
timestamps, frame by frame, so variable frame rate survives. Audio,
subtitle and data streams are copied packet for packet, matched by stream
type and order whatever their index in the input.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamer.config import EncoderConfig
from streamer.detections import Frame
from streamer.errors import OutputError
from streamer.sources.video_file import StreamInfo

log = logging.getLogger(__name__)

#: Encoder options for codecs that understand CRF/preset.
_CRF_CODECS = ("libx264", "libx265")


def check_output_path(path: str) -> None:
    """Raise OutputError if ``path`` cannot be created as a file."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"output is a folder: {path}")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied")


def open_video_encoder(container, codec: str, info: StreamInfo, config: EncoderConfig):
    """Add a video stream to ``container`` encoding ``info``-sized frames with ``codec``."""
    options = {"crf": str(config.crf), "preset": config.preset} if codec in _CRF_CODECS else {}
    try:
        stream = container.add_stream(codec, rate=Fraction(info.fps).limit_denominator(100000), options=options)
    except (av.FFmpegError, ValueError) as exc:
        raise OutputError(f"cannot open video encoder '{codec}' ({exc})") from None
    stream.width = info.width - info.width % 2
    stream.height = info.height - info.height % 2
    stream.pix_fmt = config.pix_fmt
    stream.time_base = info.time_base
    stream.codec_context.time_base = info.time_base
    return stream


class VideoFileSink:
    """Writes frames and pass-through packets to a new file.

    Args:
        path: output file; its extension picks the container.
        info: the input video stream's properties (size, rate, time base).
        copy_streams: input streams whose packets are copied.
        config: encoder settings.
    """

    def __init__(self, path: str, info: StreamInfo, copy_streams: list, config: EncoderConfig) -> None:
        check_output_path(path)
        self.path = path
        try:
            self.container = av.open(path, mode="w")
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise OutputError(f"cannot write {path}: {exc}") from None
        try:
            self.video = open_video_encoder(self.container, config.codec, info, config)
            self.copied = {}
            supported = self.container.supported_codecs
            for stream in copy_streams:
                name = stream.codec_context.name if stream.codec_context else None
                if name and supported and name not in supported:
                    raise OutputError(
                        f"the {Path(path).suffix or 'output'} container cannot hold the {stream.type} "
                        f"codec '{name}' of the input; choose another extension (.mkv holds nearly all)")
                self.copied[stream.index] = self.container.add_stream_from_template(stream)
        except Exception:
            self.container.close()
            _remove_quietly(path)
            raise
        self.frames_written = 0
        self.packets_copied = 0

    def write_frame(self, frame: Frame) -> None:
        """Encode one anonymized frame with its original timestamp."""
        image = frame.image
        if image.shape[1] != self.video.width or image.shape[0] != self.video.height:
            image = np.ascontiguousarray(image[: self.video.height, : self.video.width])
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        vf.pts = frame.pts
        vf.time_base = frame.time_base
        for packet in self.video.encode(vf):
            self.container.mux(packet)
        self.frames_written += 1

    def write_packet(self, packet: av.Packet) -> None:
        """Copy a packet of an audio/subtitle/data stream unchanged."""
        out = self.copied.get(packet.stream.index)
        if out is None or packet.dts is None and packet.pts is None:
            return
        packet.stream = out
        self.container.mux(packet)
        self.packets_copied += 1

    def discard(self) -> None:
        """Delete the output file (after a failure that makes it worthless)."""
        _remove_quietly(self.path)

    def close(self) -> None:
        """Flush the encoder and finalize the file (index, moov atom)."""
        try:
            for packet in self.video.encode(None):
                self.container.mux(packet)
        finally:
            self.container.close()


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
