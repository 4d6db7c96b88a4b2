"""Video file sink: encode anonymized frames, copy the other streams, keep timestamps.

The container comes from the output file's extension. The video is
re-encoded (H.264 by default) at the input's size with the input's
timestamps, frame by frame, so variable frame rate survives. Frames arrive
upright and are stored as the input stored them, with its display matrix.
Audio, subtitle and data streams are copied packet for packet, matched by
stream type and order whatever their index in the input, with their track
flags; audio the container cannot hold as it is is re-encoded
(:mod:`streamer.sinks.reencode`), other streams it cannot hold are
left out with a warning. Pixel aspect ratio and (``encoder.copy_metadata``)
the container's and streams' tags are kept too, but for those that place
the recording or name the device, and the telemetry streams that track the
camera (``encoder.copy_location``).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamer.colour import ColourInfo, rgb_to_video_frame
from streamer.config import EncoderConfig
from streamer.detections import Frame
from streamer.errors import OutputError, describe_error
from streamer.orientation import stored
from streamer.sinks.reencode import AudioReencoder, SubtitleReencoder
from streamer.sources.video_file import DECODE_ORDER_FORMATS, StreamInfo

log = logging.getLogger(__name__)

#: Encoder options for codecs that understand CRF/preset.
_CRF_CODECS = ("libx264", "libx265")
#: libvpx encoders (WebM): constant quality through crf with a zero bit rate.
_VPX_CODECS = ("libvpx-vp9", "libvpx")
#: Hardware (NVENC) encoders and the software encoder of the same format used when one cannot be opened.
NVENC_FALLBACKS = {"h264_nvenc": "libx264", "hevc_nvenc": "libx265"}
#: What ``encoder.codec: auto`` tries first.
AUTO_CODEC = "h264_nvenc"
#: Tags the muxer writes itself, or that describe the input's encoding (stale after re-encoding):
#: never copied. Lower case; Matroska's ``_STATISTICS_*`` tags are matched by prefix.
_DERIVED_TAGS = ("encoder", "major_brand", "minor_version", "compatible_brands", "duration", "bps",
                 "number_of_frames", "number_of_bytes", "rotate", "vendor_id")
#: Parts of a metadata tag's name that place the recording (phones: ``location``, ``location-eng``,
#: ``com.apple.quicktime.location.ISO6709``; cameras: ``gps...``).
_PLACE_WORDS = ("location", "gps", "iso6709")
#: Muxers (ISO base media files) that can write the index at the front (``encoder.faststart``).
FASTSTART_FORMATS = ("mp4", "mov", "ipod", "3gp", "3g2")
#: Codec names, tags and handler names of data streams that carry the camera's position.
_TELEMETRY_WORDS = ("klv", "gpmd", "gopro met", "camm", "gps")
#: Last part of a tag's name that names the device (``com.apple.quicktime.model``, ``com.android.model``).
_DEVICE_TAG_NAMES = ("make", "model", "software", "serial", "serial_number", "manufacturer")
#: Still-image outputs (FFmpeg's image2 muxer), by extension: encoder and pixel format.
STILL_IMAGE_ENCODERS = {".jpg": ("mjpeg", "yuvj420p"), ".jpeg": ("mjpeg", "yuvj420p"), ".png": ("png", "rgb24"),
                        ".bmp": ("bmp", "bgr24"), ".tif": ("tiff", "rgb24"), ".tiff": ("tiff", "rgb24"),
                        ".webp": ("libwebp", "yuv420p")}
#: Animated-picture outputs, which hold no sound or other streams.
SILENT_EXTENSIONS = (".gif", ".apng")
#: JPEG's colour: BT.601 matrix, full range, whatever the input's was.
JPEG_COLOUR = ColourInfo(space=5, range=2)
#: MJPEG quantizer scale for still images (2: visually lossless; FFmpeg's -q:v).
JPEG_QSCALE = 2
#: FFmpeg's FF_QP2LAMBDA: a quantizer scale times this is a global_quality.
_QP2LAMBDA = 118
#: Containers written at one tick of their time base a frame (see :func:`open_video_encoder`).
FRAME_TICK_FORMATS = (*DECODE_ORDER_FORMATS, "yuv4mpegpipe", "ogg", "ogv")
#: Options that keep an encoder's own log off the terminal (x265 prints its settings at every open).
_QUIET_ENCODERS = {"libx265": {"x265-params": "log-level=error"}}
#: Encoders tried, after the container's default, where a container refuses the configured one.
_COMMON_ENCODERS = ("libx264", "libvpx-vp9", "libvpx", "mpeg4")
#: NVENC's presets (fastest p1 .. best p7); other preset names map to p4.
_NVENC_PRESETS = tuple(f"p{i}" for i in range(1, 8))


#: The output name that writes standard output, as MPEG-TS: a format written front to back (Matroska and MP4
#: go back to fill in their headers, which a pipe cannot: AAC copied from a camera's MPEG-TS failed at its
#: first packet) that every player and FFmpeg read from a pipe. Sound it cannot hold is re-encoded, as for
#: a .ts file.
STDOUT = "-"
STDOUT_FORMAT = "mpegts"


def output_name(path: str) -> str:
    """An output as messages name it: ``path``, or 'standard output' for :data:`STDOUT`."""
    return "standard output" if path == STDOUT else path


def check_output_path(path: str) -> None:
    """Raise OutputError if ``path`` cannot be created as a file (standard output, :data:`STDOUT`, can)."""
    if path == STDOUT:
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"output is a folder: {path}")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied")


def _encoder_options(codec: str, config: EncoderConfig) -> dict:
    if codec in _CRF_CODECS:
        return {"crf": str(config.crf), "preset": config.preset, **_QUIET_ENCODERS.get(codec, {})}
    if codec in NVENC_FALLBACKS:  # constant quality, NVENC's counterpart of CRF
        preset = config.preset if config.preset in _NVENC_PRESETS else "p4"
        return {"rc": "vbr", "cq": str(config.crf), "b": "0", "preset": preset}
    if codec in _VPX_CODECS:  # constant quality (b 0), not libvpx's default of a few hundred kb/s
        return {"crf": str(min(63, config.crf + 11)), "b": "0"}  # CRF 20 of x264 looks like ~31 of VP9
    return {}


def _add_video_stream(container, codec: str, config: EncoderConfig, rate: Fraction):
    """Add an encoder stream for ``codec``; where the container cannot hold it (libx264 in WebM, in
    Ogg, in GIF), its own default video codec instead, with a warning. Returns (stream, encoder name)."""
    format_name = container.format.name
    try:
        av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError) as exc:  # a misspelt encoder is the config's error, not the container's
        raise OutputError(f"cannot open video encoder '{codec}' ({describe_error(exc)})") from None
    supported = container.supported_codecs  # the codecs FFmpeg knows this muxer takes; others may work too

    def refused(name: str) -> str | None:
        if name in supported or container.format.no_file:  # segments, RTSP, pictures: no in-memory trial
            return None
        return video_codec_refused(format_name, name, config.pix_fmt)

    why = refused(codec)
    if why:
        encoder = next((name for name in _fallback_encoders(container.default_video_codec)
                        if name != codec and not refused(name)), None)
        if encoder is None:
            log.debug("%s refuses %s video: %s", format_name, codec, why)  # a sound format (.wav, .mp3) ...
            raise OutputError(f"the {format_name} format holds no video this machine can write; "
                              f"use .mp4, .mkv, .mov or .webm") from None
        log.warning("the %s container cannot hold %s video: encoding with %s", format_name, codec, encoder)
        codec = encoder
    try:
        return container.add_stream(codec, rate=rate, options=_encoder_options(codec, config)), codec
    except (av.FFmpegError, ValueError) as exc:
        raise OutputError(f"cannot open video encoder '{codec}' ({exc})") from None


def _fallback_encoders(default_codec: str | None) -> list[str]:
    """Encoders to try, in order, for a container that refuses the configured one: its default
    codec's encoder (vp9 -> libvpx-vp9; none where this FFmpeg lacks it, as Theora), then common ones."""
    names = []
    for name in (default_codec, *_COMMON_ENCODERS):
        try:
            names.append(av.codec.Codec(name, "w").name)
        except (av.FFmpegError, ValueError, TypeError):  # not built into this FFmpeg, or no default
            continue
    return list(dict.fromkeys(names))


def encoder_pix_fmt(codec: str, wanted: str) -> str:
    """``wanted`` where encoder ``codec`` takes that pixel format, else the encoder's first one."""
    formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    return wanted if not formats or wanted in formats else formats[0]


@functools.lru_cache(maxsize=32)
def video_codec_refused(format_name: str, codec: str, pix_fmt: str = "yuv420p") -> str | None:
    """Why a ``format_name`` container cannot hold video from encoder ``codec`` (None: it can).

    Many muxers refuse a codec only when writing its first packet (H.264 in
    an Ogg or a YUV4MPEG file), after every stream is added and too late to
    choose another encoder; and FFmpeg's list of the codecs a muxer takes
    is not complete (an MPEG-TS lists none of H.264, HEVC). So one black
    256 x 256 frame is encoded and muxed into a throwaway in-memory file
    (a few milliseconds). Cached per process. (Not for codecs the list
    names: one libx265 frame into an MP4 fails at random with FFmpeg 8.1.)
    """
    side = 256
    try:
        with av.open(io.BytesIO(), mode="w", format=format_name) as trial:
            stream = trial.add_stream(codec, rate=25, options=_QUIET_ENCODERS.get(codec, {}))
            stream.width = stream.height = side
            stream.pix_fmt = encoder_pix_fmt(codec, pix_fmt)
            frame = av.VideoFrame.from_ndarray(np.zeros((side * 3 // 2, side), np.uint8), format="yuv420p")
            frame = frame.reformat(format=stream.pix_fmt)
            frame.pts = 0
            for packet in (*stream.encode(frame), *stream.encode()):
                trial.mux(packet)
    except (av.FFmpegError, ValueError, OSError) as exc:
        return describe_error(exc)
    return None


@functools.lru_cache(maxsize=32)
def encoder_open_error(codec: str, width: int, height: int, pix_fmt: str = "yuv420p") -> str | None:
    """Try to open encoder ``codec`` for ``width`` x ``height`` frames; None if it opens, else why not.

    The only reliable NVENC test: the encoder is compiled into most FFmpeg
    builds, but opens only where a GPU with NVENC and its driver are present.
    Cached per process.
    """
    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height = max(2, width - width % 2), max(2, height - height % 2)
        ctx.pix_fmt = pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25)
        ctx.open()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def resolve_video_codec(config: EncoderConfig, width: int, height: int) -> str:
    """The encoder to use for ``config.codec`` on this machine, logged.

    ``auto`` is h264_nvenc when it opens, else libx264. An NVENC encoder that
    cannot be opened falls back to libx264 / libx265 with a warning, or is an
    error when ``config.fallback`` is false. Other names are used as given.

    Raises:
        OutputError: an NVENC encoder cannot be opened and fallback is off.
    """
    codec = config.codec
    if codec == "auto":
        error = encoder_open_error(AUTO_CODEC, width, height, config.pix_fmt)
        chosen = AUTO_CODEC if error is None else NVENC_FALLBACKS[AUTO_CODEC]
        log.info("encoder: %s (encoder auto: %s)", chosen,
                 "NVENC opened" if error is None else f"{AUTO_CODEC} cannot be opened here: {error}")
        return chosen
    if codec not in NVENC_FALLBACKS:
        return codec
    error = encoder_open_error(codec, width, height, config.pix_fmt)
    if error is None:
        log.info("encoder: %s (NVENC opened)", codec)
        return codec
    if not config.fallback:
        raise OutputError(f"cannot open video encoder '{codec}' ({error}); set encoder.fallback: true "
                          f"to use {NVENC_FALLBACKS[codec]} instead")
    log.warning("video encoder %s cannot be opened here (%s); using %s", codec, error, NVENC_FALLBACKS[codec])
    return NVENC_FALLBACKS[codec]


def copied_tags(tags: dict, config: EncoderConfig) -> dict:
    """The metadata tags of an input container or stream to write to the output, as ``config`` says
    (none without ``copy_metadata``; place and device tags only with ``copy_location``), never what the
    muxer writes itself or what describes the input's encoding (:data:`_DERIVED_TAGS`)."""
    if not config.copy_metadata:
        return {}
    return {key: value for key, value in tags.items()
            if key.lower() not in _DERIVED_TAGS and not key.lower().startswith("_statistics")
            and (config.copy_location or not is_place_or_device_tag(key))}


def is_place_or_device_tag(key: str) -> bool:
    """Whether a metadata tag says where a recording was made or with what device: ``location``,
    ``com.apple.quicktime.location.ISO6709``, ``com.android.model``, ``make``, ``gps...``."""
    name = key.lower()
    return any(word in name for word in _PLACE_WORDS) or name.rsplit(".", 1)[-1] in _DEVICE_TAG_NAMES


def is_telemetry_stream(stream) -> bool:
    """Whether a data stream tracks where the camera is: KLV (MISB 0601, drones and surveillance
    systems: the platform's and the target's latitude and longitude), GoPro's GPMF (GPS among its
    sensors), Google's CAMM (camera motion and GPS)."""
    if stream.type != "data":
        return False
    names = " ".join(str(v) for v in (getattr(stream, "name", None), getattr(stream, "codec_tag", None),
                                      stream.metadata.get("handler_name"))).lower()
    return any(word in names for word in _TELEMETRY_WORDS)


def open_video_encoder(container, info: StreamInfo, config: EncoderConfig):
    """Add a video stream to ``container`` encoding ``info``-sized frames (width, height in
    pixels) with ``config.codec`` (``auto`` and NVENC names resolved by :func:`resolve_video_codec`)."""
    codec = resolve_video_codec(config, info.width, info.height)
    rate = Fraction(info.fps).limit_denominator(100000)
    stream, codec = _add_video_stream(container, codec, config, rate)
    stream.width = info.width - info.width % 2
    stream.height = info.height - info.height % 2
    stream.pix_fmt = encoder_pix_fmt(codec, config.pix_fmt)
    info.colour.tag(stream.codec_context)  # the input's matrix, range, primaries and transfer
    if info.orientation.matrix is not None:  # players turn the output as they turned the input
        stream.set_display_matrix(list(info.orientation.matrix))
    elif info.orientation.rotation:
        stream.set_display_rotation(info.orientation.rotation)
    if info.sample_aspect_ratio:  # non-square pixels (PAL/NTSC DVRs, anamorphic): same display shape
        stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
    stream.metadata.update(copied_tags(info.video_metadata, config))
    # an AVI stores one chunk per tick of its time base and states that rate in its header: at a Matroska
    # input's 1/1000, players read 1000 fps and 39 empty chunks a frame. So it ticks at the frame rate,
    # as FFmpeg's command line writes it, unless the input is an AVI whose ticks it keeps (times exact).
    # A YUV4MPEG header states only a tick rate, and an Ogg times VP8 exactly at a tick a frame only
    frame_ticks = container.format.name in FRAME_TICK_FORMATS and not (
        container.format.name in DECODE_ORDER_FORMATS and info.container_format in DECODE_ORDER_FORMATS)
    time_base = 1 / rate if frame_ticks else info.time_base
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    if codec in ("libx265", "hevc_nvenc") and container.format.name in ("mp4", "mov"):
        stream.codec_context.codec_tag = "hvc1"  # Apple's players (QuickTime, Safari, iOS) refuse FFmpeg's hev1
    if codec == "mjpeg":  # a fixed quantizer, not the bit rate of a video
        stream.codec_context.qscale = True
        stream.codec_context.global_quality = JPEG_QSCALE * _QP2LAMBDA
    if container.format.name in DECODE_ORDER_FORMATS:
        # the file keeps no presentation times: reordered (B-) frames would come back mistimed
        stream.codec_context.max_b_frames = 0
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
        #: the output as messages name it
        self.name = name = output_name(path)
        info, config, options, keeps_streams = _picture_output(path, info, config)
        if not keeps_streams:
            if copy_streams:
                log.warning("%s holds pictures only: the input's %s left out", name,
                            ", ".join(sorted({s.type for s in copy_streams})))
            copy_streams = []
        try:
            if path == STDOUT:
                self.container = av.open("pipe:1", mode="w", format=STDOUT_FORMAT, options=options)
            else:
                self.container = av.open(path, mode="w", options=options)
        except (av.FFmpegError, ValueError, OSError) as exc:
            if "determine output format" in str(exc):
                raise OutputError(f"cannot write {name}: its extension names no video format; use .mp4, .mkv, "
                                  f".mov, .webm ...") from None
            raise OutputError(f"cannot write {name}: {exc}") from None
        if config.faststart and self.container.format.name in FASTSTART_FORMATS:
            self.container.options["movflags"] = "+faststart"  # read at the header, written at the end
        try:
            self.video = open_video_encoder(self.container, info, config)
            self.container.metadata.update(copied_tags(info.metadata, config))
            self.colour = info.colour
            self.start = info.start  # seconds taken off every timestamp: the output starts at zero
            self.turns = info.orientation.turns  # quarter turns from stored to upright pictures
            self._last_tick = -1  # the last frame's time in ticks of an AVI's frame rate (no two share one)
            self._stream = None  # CUDA stream of the device-side conversion (created on first use)
            self.copied = {}
            self.reencoded = {}  # input stream index -> its re-encoder, for streams the container cannot hold
            for stream in copy_streams:
                if not config.copy_location and is_telemetry_stream(stream):
                    log.warning("%s: data stream %d (%s) left out: it tracks where the camera is "
                                "(encoder.copy_location: true keeps it)", name, stream.index, _stream_label(stream))
                    continue
                refused = copy_refused(self.container.format.name, stream)
                reencoder = self._reencoder(stream) if refused else None
                if reencoder is not None:
                    log.warning("%s: %s stream %d (%s) re-encoded as %s: the %s container cannot hold it as it "
                                "is", name, stream.type, stream.index, _stream_label(stream), reencoder.codec,
                                self.container.format.name)
                    log.debug("%s stream %d refused: %s", stream.type, stream.index, refused)
                    reencoder.output.metadata.update(copied_tags(stream.metadata, config))
                    self.reencoded[stream.index] = reencoder
                    continue
                if refused:
                    # a timecode track: the video stream's timecode tag is kept, and MP4/MOV muxers
                    # write a new timecode track from it, as FFmpeg's command line does
                    kept = stream.type == "data" and config.copy_metadata and "timecode" in stream.metadata
                    log.log(logging.INFO if kept else logging.WARNING,
                            "%s: %s stream %d (%s) left out: the %s container cannot take it as it is%s",
                            name, stream.type, stream.index, _stream_label(stream), self.container.format.name,
                            "; its timecode is kept" if kept else " (.mkv holds nearly all)")
                    log.debug("%s stream %d refused: %s", stream.type, stream.index, refused)
                    continue
                copy = self.container.add_stream_from_template(stream)
                copy.disposition = stream.disposition  # default / forced / commentary track flags
                copy.metadata.update(copied_tags(stream.metadata, config))  # a track's language, title
                self.copied[stream.index] = copy
        except Exception:
            self.container.close()
            _remove_quietly(path)
            raise
        self.frames_written = 0
        self.packets_copied = 0
        self.write_failed = False  # set when writing the file failed: what is there is worthless

    def _reencoder(self, stream):
        """A re-encoder of ``stream`` into this container (audio; text subtitles), None where there is none
        (the stream is left out)."""
        kind = {"audio": AudioReencoder, "subtitle": SubtitleReencoder}.get(stream.type)
        try:
            return kind(self.container, stream) if kind else None
        except OutputError as exc:  # a video-only container (a raw .h264 stream), picture subtitles
            log.debug("%s stream %d not re-encoded: %s", stream.type, stream.index, exc)
            return None

    def write_frame(self, frame: Frame) -> None:
        """Encode one anonymized frame with its original timestamp.

        A frame only on the GPU (``Frame.image`` None) is converted to the
        encoder's yuv420p there and crosses to the host at half the size of RGB.
        """
        if frame.image is None and frame.device_image is not None and self.video.pix_fmt == "yuv420p":
            vf = av.VideoFrame.from_ndarray(self._device_yuv420p(frame), format="yuv420p")
            self.colour.tag(vf)
        else:
            image = stored(frame.to_host(), self.turns)
            if image.shape[1] != self.video.width or image.shape[0] != self.video.height:
                image = np.ascontiguousarray(image[: self.video.height, : self.video.width])
            vf = rgb_to_video_frame(image, self.colour, self.video.pix_fmt)
        vf.pts = None if frame.pts is None else frame.pts - self._ticks(frame.time_base)
        vf.time_base = frame.time_base
        if vf.pts is not None and self.video.time_base != frame.time_base:  # frame-rate ticks (FRAME_TICK_FORMATS)
            tick = max(round(vf.pts * frame.time_base / self.video.time_base), self._last_tick + 1)
            vf.pts, vf.time_base, self._last_tick = tick, self.video.time_base, tick
        self._mux(self.video.encode(vf))
        self.frames_written += 1

    def _device_yuv420p(self, frame: Frame) -> np.ndarray:
        """The frame's device image as yuv420p planes on the host, converted on the device.

        On CUDA, with ``frame.ready`` set, the conversion and download run on
        this sink's own stream after waiting for that event only: on the
        shared default stream the download would also wait for every batch
        the model stages queued after this frame's.
        """
        from streamer.stages import frame_ops

        image = frame.device_image

        def planes():
            rgb = frame_ops.nchw(stored(image, self.turns)[: self.video.height, : self.video.width])
            return frame_ops.rgb_to_yuv420p(rgb, self.colour)[0]

        if frame.ready is None or image.device.type != "cuda":
            return planes().cpu().numpy()
        import torch

        if self._stream is None:
            self._stream = torch.cuda.Stream(image.device)
        with torch.cuda.stream(self._stream):
            self._stream.wait_event(frame.ready)
            yuv = planes()
            image.record_stream(self._stream)  # its memory is not reused before this stream has read it
            return yuv.cpu().numpy()  # waits for this stream only

    def write_packet(self, packet: av.Packet) -> None:
        """Copy a packet of an audio/subtitle/data stream unchanged (or re-encode it, see ``reencoded``)."""
        index = packet.stream.index
        if packet.dts is None and packet.pts is None:
            return
        if index in self.reencoded:
            self._mux(self.reencoded[index].encode(packet, self._ticks(packet.time_base)))
            self.packets_copied += 1
            return
        out = self.copied.get(index)
        if out is None:
            return
        shift = self._ticks(packet.time_base)
        if shift:
            packet.pts = None if packet.pts is None else packet.pts - shift
            packet.dts = None if packet.dts is None else packet.dts - shift
        packet.stream = out
        self._mux([packet])
        self.packets_copied += 1

    def _ticks(self, time_base) -> int:
        """The output's start shift (``self.start`` seconds) in ticks of ``time_base``."""
        return round(self.start / time_base) if self.start and time_base else 0

    def _mux(self, packets) -> None:
        """Write packets to the file; a failure to write (disk full, file system gone) is an OutputError."""
        try:
            for packet in packets:
                self.container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            self.write_failed = True
            raise OutputError(f"cannot write {self.name}: {describe_error(exc)}") from None

    def discard(self) -> None:
        """Delete the output file (after a failure that makes it worthless); standard output is left as it is."""
        if self.path != STDOUT:
            _remove_quietly(self.path)

    def close(self) -> None:
        """Flush the encoder and finalize the file (index, moov atom).

        Raises:
            OutputError: the file could not be written (``write_failed`` is set).
        """
        try:
            self._mux(self.video.encode(None))
            for audio in self.reencoded.values():
                self._mux(audio.flush(self._ticks(audio.input.time_base)))
        finally:
            try:
                self.container.close()
            except (OSError, av.FFmpegError) as exc:
                self.write_failed = True
                raise OutputError(f"cannot write {self.name}: {describe_error(exc)}") from None


def copy_refused(format_name: str, stream) -> str | None:
    """Why a ``format_name`` container cannot take packets copied from ``stream`` (None: it can).

    Muxers accept or refuse a stream's codec only when writing it (PCM in an
    MP4 fails with its header, a timecode track without a frame rate at the
    very end of the file), and an MPEG-TS takes any codec but writes the ones
    it does not know as private data that no player reads back as sound. So
    the copy is tried on a throwaway in-memory file with one packet
    (:func:`_trial_packet`) and read back: refused if writing fails or the
    stream comes back as another type.
    """
    buffer = io.BytesIO()
    try:
        with av.open(buffer, mode="w", format=format_name) as trial:
            copy = trial.add_stream_from_template(stream)
            packet = av.Packet(_trial_packet(stream))
            packet.stream, packet.pts, packet.dts, packet.time_base = copy, 0, 0, stream.time_base
            trial.mux(packet)
    except (av.FFmpegError, ValueError, OSError) as exc:
        return describe_error(exc)
    try:
        buffer.seek(0)
        with av.open(buffer, format=format_name) as back:
            types = [s.type for s in back.streams]
    except (av.FFmpegError, ValueError, OSError):
        return None  # a packet of zeros may not read back; writing it worked
    if types and stream.type not in types:
        return f"written as a {types[0]} stream"
    return None


#: AAC sampling frequencies by their index in an ADTS header (ISO/IEC 14496-3).
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _trial_packet(stream) -> bytes:
    """The bytes of a packet to try ``stream``'s copy with: zeros (muxers do not read a copied packet's
    bytes), except for AAC carrying its configuration in ADTS headers (MPEG-TS: cameras, DVRs), where an
    ADTS header of the stream's rate and channels comes first: Matroska and MP4 muxers read it to convert
    the stream (FFmpeg's aac_adtstoasc), and refuse AAC without it or a stored configuration (until
    2026-11-27 every .ts camera file's sound was re-encoded as AC-3 in a .mkv output)."""
    ctx = stream.codec_context
    if ctx is None or ctx.name != "aac" or ctx.extradata or ctx.sample_rate not in _ADTS_RATES:
        return bytes(16)
    rate, channels, length = _ADTS_RATES.index(ctx.sample_rate), min(ctx.channels, 7), 7 + 9
    header = bytes([0xFF, 0xF1,  # sync word, MPEG-4, no CRC
                    (1 << 6) | (rate << 2) | (channels >> 2),  # profile AAC LC, rate index, channels (high bit)
                    ((channels & 3) << 6) | (length >> 11),  # channels (low bits), frame length (high bits)
                    (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])  # length, buffer fullness 0x7FF
    return header + bytes(length - 7)


def _stream_label(stream) -> str:
    """What an input stream is, for messages: a data track's name ('GoPro MET'), else its codec
    ('pcm_alaw', 'klv'; 'unnamed' when FFmpeg knows neither)."""
    if stream.type == "data" and stream.metadata.get("handler_name"):
        return stream.metadata["handler_name"]
    name = stream.codec_context.name if stream.codec_context else getattr(stream, "name", None)
    return name if name and name != "none" else "unnamed"


def _picture_output(path: str, info: StreamInfo, config: EncoderConfig) -> tuple:
    """(info, config, muxer options, keeps other streams) for writing ``path``.

    Unchanged for a video. Picture files keep no display rotation and no sound,
    so their pixels are written upright and other streams left out: an image
    (.jpg, .png, ...) also gets its own encoder, JPEG's colour and the muxer
    option to write one file; an animated picture (.gif) the container's own
    encoder (:func:`_add_video_stream`).

    Raises:
        OutputError: an image file is asked to hold more than one frame.
    """
    suffix = Path(path).suffix.lower()
    still = STILL_IMAGE_ENCODERS.get(suffix)
    if still is None and suffix not in SILENT_EXTENSIONS:
        return info, config, {}, True
    width, height = (info.height, info.width) if info.orientation.turns % 2 else (info.width, info.height)
    info = dataclasses.replace(info, width=width, height=height, orientation=type(info.orientation)())
    if still is None:
        return info, config, {}, False
    if info.frames > 1:
        raise OutputError(f"{path}: an image file holds one picture and the input has {info.frames} frames; "
                          f"write a video file (.mp4, .mkv)")
    codec, pix_fmt = still
    if codec == "mjpeg":
        info = dataclasses.replace(info, colour=JPEG_COLOUR)
    options = {} if suffix == ".webp" else {"update": "1"}  # a file, not a numbered sequence (image2)
    return info, dataclasses.replace(config, codec=codec, pix_fmt=pix_fmt), options, False


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
