"""GPU decode: PyAV demuxes, NVDEC decodes into CUDA memory, torch takes the frame through DLPack.

:class:`NvdecSource` is a :class:`~streamer.sources.video_file.VideoFileSource`
(same containers, audio/subtitle pass-through, damaged-file handling and
timestamp repair) whose video packets go to NVIDIA's hardware decoder via
PyNvVideoCodec (``pip install -e .[gpu]``) instead of FFmpeg's software
decoder:

* H.264 / HEVC packets are turned into Annex B by FFmpeg's
  ``h264_mp4toannexb`` / ``hevc_mp4toannexb`` bitstream filter (PyAV),
  the format NVDEC parses;
* NVDEC hands pictures back in display order, so each picture's pts is the
  smallest pts of the packets submitted and not yet given to a picture (the
  pts NVDEC reported back, a packet number submitted as the timestamp, gave
  frames times twice as far apart on an H100, 2026-11-26); with the dts of
  the packet whose submission let the picture out (FFmpeg's ``frame.dts``),
  timestamps go through exactly the repair the CPU source applies (AVI with
  B-frames included);
* pictures come back as NV12 in GPU memory; ``torch.from_dlpack`` wraps them
  without a copy and :func:`streamer.stages.frame_ops.nv12_to_rgb` converts
  them (with the stream's matrix and range, like PyAV on the CPU) into the
  frame's ``device_image``. ``Frame.image`` stays None: nothing crosses to the host.

:func:`select_decoder` decides between this and the CPU source and says why;
:func:`streamer.factory.build_source` applies it.
"""

from __future__ import annotations

import heapq
import importlib
import importlib.util
import logging

import av
import numpy as np

from engines.select import BackendChoice
from streamer.detections import Frame
from streamer.errors import BackendError
from streamer.sources.video_file import VideoFileSource

log = logging.getLogger(__name__)

#: PyAV codec name -> (PyNvVideoCodec ``cudaVideoCodec`` member, bitstream filter to Annex B).
NVDEC_CODECS = {"h264": ("H264", "h264_mp4toannexb"), "hevc": ("HEVC", "hevc_mp4toannexb")}
#: Pixel formats NVDEC decodes to NV12 here (8-bit 4:2:0).
NVDEC_PIX_FMTS = ("yuv420p", "yuvj420p", "nv12")


def pynvvideocodec_status() -> str | None:
    """None when PyNvVideoCodec imports, else why not (one line)."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return "PyNvVideoCodec not installed (pip install -e '.[gpu]')"
    try:
        importlib.import_module("PyNvVideoCodec")
    except Exception as exc:  # noqa: BLE001 - a broken install (driver libraries) counts as absent
        return f"PyNvVideoCodec fails to import ({type(exc).__name__}: {exc})"
    return None


def is_interlaced(codec_context) -> bool:
    """Whether a video stream's field order (as FFmpeg probed it) says interlaced: tt, bb, tb or bt."""
    order = getattr(codec_context, "field_order", None)
    return str(order).lower() not in ("none", "0", "1", "unknown", "progressive")


def select_decoder(requested: str, codec: str, pix_fmt: str | None, cuda: bool,
                   library_error: str | None, interlaced: bool = False) -> BackendChoice:
    """Choose NVDEC or PyAV on the CPU for a video stream, with the reason.

    Args:
        requested: ``pipeline.decoder``: auto, cpu or nvdec.
        codec: the stream's codec as PyAV names it (h264, hevc, vp9...).
        pix_fmt: the stream's pixel format (yuv420p...), None if unknown.
        cuda: the pipeline runs on a CUDA GPU.
        library_error: :func:`pynvvideocodec_status` (None: PyNvVideoCodec imports).
        interlaced: the stream is coded interlaced (:func:`is_interlaced`): it takes the CPU path, whose
            deinterlacing (bwdif) is tested; what NVDEC does with fields here has not been checked.

    Returns:
        ``nvdec`` or ``cpu``, and why.

    Raises:
        BackendError: ``nvdec`` was asked for and cannot be used.
    """
    if requested == "cpu":
        return BackendChoice("cpu", "PyAV on the CPU: pipeline.decoder is cpu")
    if not cuda:
        problem = "no CUDA GPU in use"
    elif library_error:
        problem = library_error
    elif codec not in NVDEC_CODECS:
        problem = f"the NVDEC path takes {', '.join(NVDEC_CODECS)}, this video is {codec}"
    elif pix_fmt not in NVDEC_PIX_FMTS:
        problem = f"the NVDEC path takes 8-bit 4:2:0 video, this one is {pix_fmt}"
    elif interlaced:
        problem = "the NVDEC path takes progressive video, this one is interlaced (deinterlaced on the CPU path)"
    else:
        return BackendChoice("nvdec", f"NVDEC into GPU memory: a CUDA GPU, PyNvVideoCodec and {codec} {pix_fmt}")
    if requested == "nvdec":
        raise BackendError(f"pipeline.decoder nvdec: {problem}; use decoder auto or cpu")
    return BackendChoice("cpu", f"PyAV on the CPU: {problem}")


class PyNvVideoCodecDecoder:
    """The NVDEC decoder behind :class:`NvdecSource` (PyNvVideoCodec's core ``CreateDecoder`` API).

    Args:
        codec: ``cudaVideoCodec`` member name (``H264``, ``HEVC``).
        gpu: CUDA device ordinal.
    """

    def __init__(self, codec: str, gpu: int = 0) -> None:
        import torch

        nvc = importlib.import_module("PyNvVideoCodec")
        self._nvc = nvc
        self.device = torch.device("cuda", gpu)
        stream = torch.cuda.current_stream(self.device).cuda_stream
        # the CUDA primary context (0) is the one torch uses; decode on torch's current stream
        self._decoder = nvc.CreateDecoder(gpuid=gpu, codec=getattr(nvc.cudaVideoCodec, codec), cudacontext=0,
                                          cudastream=stream, usedevicememory=True)
        self.errors: tuple = tuple(getattr(nvc, name) for name in ("PyNvVCExceptionDecode",) if hasattr(nvc, name))

    def decode(self, data: bytes | None) -> list:
        """Submit one Annex B access unit (None: end of stream, flush).

        Returns:
            The pictures ready, in display order: NV12 ``(H*3/2, W)`` uint8 CUDA tensors.
        """
        import torch

        packet = self._nvc.PacketData()
        buffer = np.frombuffer(data, np.uint8) if data else None
        if buffer is not None:
            packet.bsl_data = buffer.ctypes.data
            packet.bsl = buffer.size
        else:
            packet.bsl = 0  # an empty packet is NVDEC's end-of-stream: it returns what it still holds
        out = []
        for picture in self._decoder.Decode(packet):
            planes = torch.from_dlpack(picture)  # zero copy; synchronised with the decoder's stream
            out.append(planes.reshape(planes.shape[0], -1).clone())
        return out


class NvdecSource(VideoFileSource):
    """Decodes the first video stream with NVDEC; frames carry only ``device_image`` (CUDA, RGB).

    Args:
        path: input file (any container PyAV demuxes; H.264 or HEVC, 8-bit 4:2:0).
        gpu: CUDA device ordinal.
        container: an already opened PyAV container of ``path``.
        decoder: replaces the PyNvVideoCodec decoder (tests): an object with
            ``decode(data) -> [nv12_tensor, ...]`` (display order) and ``errors``.
        info: ``info`` of another source of the same file.
    """

    def __init__(self, path: str, gpu: int = 0, container=None, decoder=None, info=None) -> None:
        super().__init__(path, container=container, info=info)
        try:
            codec, bsf = NVDEC_CODECS[self.info.codec]
            self.bsf = av.BitStreamFilterContext(bsf, self.stream)
            self.decoder = decoder or PyNvVideoCodecDecoder(codec, gpu)
        except BaseException:
            self.container.close()
            raise
        self.DECODE_ERRORS = VideoFileSource.DECODE_ERRORS + tuple(getattr(self.decoder, "errors", ()))
        self._pending_pts: list[int] = []  # heap: pts of the packets submitted whose picture has not come out
        self._seen_keyframe = False

    def _decode(self, packet: av.Packet) -> list:
        if not packet.size:  # PyAV's end-of-stream packet: drain the filter and the decoder
            return self._flush()
        # read first: the bitstream filter takes the packet over
        self._seen_keyframe = self._seen_keyframe or packet.is_keyframe
        # a file cut mid-GOP: decoders drop what precedes the first keyframe, so those pts get no picture
        pts = packet.pts if self._seen_keyframe else None
        dts = packet.dts
        if pts is not None:
            heapq.heappush(self._pending_pts, pts)
        try:
            # like FFmpeg's frame.dts: the dts of the packet whose submission let the picture out
            return [(planes, dts) for unit in self.bsf.filter(packet) for planes in self.decoder.decode(bytes(unit))]
        except self.DECODE_ERRORS:
            if pts is not None:  # an undecodable packet gives no picture: its pts must not go to the next one
                self._pending_pts.remove(pts)
                heapq.heapify(self._pending_pts)
            raise

    def _flush(self) -> list:
        units = [bytes(unit) for unit in self.bsf.filter(None)]
        pictures = [p for unit in units for p in self.decoder.decode(unit)]
        return [(planes, None) for planes in pictures + self.decoder.decode(None)]

    def _to_frame(self, picture, index: int) -> Frame:
        from streamer.stages import frame_ops

        planes, dts = picture
        # display order: the earliest pts still waiting for its picture (None: the packets carried none)
        pts = heapq.heappop(self._pending_pts) if self._pending_pts else None
        # the decoder's surface may be taller than the picture (coded size): convert, then crop
        rgb = frame_ops.nhwc(frame_ops.nv12_to_rgb(planes[None], self.info.colour)[0])
        return self._frame(index, self._timestamp(pts, dts), self.info.time_base, None,
                           rgb[: self.info.height, : self.info.width])
