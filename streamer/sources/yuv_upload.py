"""CPU decode, GPU colour conversion: PyAV decodes, the YUV planes go to the GPU and become RGB there.

Where frames are anonymized on a GPU but NVDEC is not available (no
PyNvVideoCodec, or a codec NVDEC does not take), the CPU still decodes, but
the conversion to RGB moves to the GPU (1080p H.264 on the 2-core CI
machine: 1.44 ms to decode, 1.52 ms with the YUV planes, 2.49 ms with
FFmpeg's RGB conversion; ``benchmarks/decode_rgb_cost.py``, 2026-11-26), and
half the bytes cross the bus (YUV 4:2:0 is 1.5 bytes a pixel, RGB 3).

:class:`YuvUploadSource` is a :class:`~streamer.sources.video_file.VideoFileSource`
(same containers, pass-through, damaged-file handling and timestamps) whose
frames arrive with ``device_image`` set and ``image`` None, like NVDEC's.
Frames it cannot take this way (not 8-bit 4:2:0, odd sizes) are converted on
the CPU as usual.
"""

from __future__ import annotations

import av

from streamer.colour import ColourInfo
from streamer.sources.video_file import VideoFileSource

#: Pixel formats converted on the GPU (8-bit planar 4:2:0; yuvj420p is its full-range twin).
GPU_CONVERTED_PIX_FMTS = ("yuv420p", "yuvj420p")


class YuvUploadSource(VideoFileSource):
    """Decodes with PyAV on the CPU and converts each frame to RGB on ``device``.

    Args:
        path: input file.
        device: torch device the frames go to (``cuda``; ``cpu`` in tests).
        container: an already opened PyAV container of ``path``.
        info: ``info`` of another source of the same file.
    """

    def __init__(self, path: str, device, container=None, info=None) -> None:
        import torch

        super().__init__(path, container=container, info=info)
        self.device = torch.device(device)

    def _pixels(self, vf: av.VideoFrame) -> tuple:
        """The picture on the device only (None on the host), converted there; on the host as usual
        when it is not even-sized 8-bit 4:2:0."""
        if vf.format.name not in GPU_CONVERTED_PIX_FMTS or vf.width % 2 or vf.height % 2:
            return super()._pixels(vf)
        from streamer.stages import frame_ops

        planes = frame_ops.upload(vf.to_ndarray(), self.device)  # (H*3/2, W): Y, then U, then V
        return None, frame_ops.nhwc(frame_ops.yuv420p_to_rgb(planes, ColourInfo.of(vf))[0])
