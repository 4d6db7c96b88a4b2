"""Colour survives the pipeline: a BT.709 or full-range input comes out with the same YUV values
where nothing was anonymized, tagged as the input was (CPU path and the GPU path's torch code)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from streamer.colour import ColourInfo, rgb_to_video_frame, video_frame_to_rgb
from streamer.pipeline import anonymize_file
from streamer.sample import colour_bars as _bars
from streamer.stages import frame_ops
from tests.conftest import fast_config


def _tagged_clip(path: str, colour: ColourInfo, frames: int = 12) -> None:
    """A near-lossless H.264 clip of colour bars, encoded with ``colour``'s matrix and range and tagged so."""
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25), options={"crf": "4", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 192, 96, "yuv420p"
        colour.tag(stream.codec_context)
        for i in range(frames):
            frame = rgb_to_video_frame(_bars(), colour, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _yuv_and_colour(path: str) -> tuple[list[np.ndarray], ColourInfo]:
    with av.open(path) as container:
        colour = ColourInfo.of(container.streams.video[0].codec_context)
        return [f.to_ndarray() for f in container.decode(video=0)], colour


BT709 = ColourInfo(space=1, range=1, primaries=1, trc=1)
BT709_FULL = ColourInfo(space=1, range=2, primaries=1, trc=1)
BT2020 = ColourInfo(space=9, range=1, primaries=9, trc=14)


@pytest.mark.parametrize("compositor", ["numpy", "torch"])
@pytest.mark.parametrize("colour", [BT709, BT709_FULL, BT2020], ids=["bt709", "bt709-full", "bt2020"])
def test_yuv_values_and_tags_survive_the_pipeline(tmp_path, colour, compositor):
    src, out = str(tmp_path / "bars.mp4"), str(tmp_path / "out.mp4")
    _tagged_clip(src, colour)
    stats = anonymize_file(src, out, fast_config(**{"pipeline.compositor": compositor}), progress=False)
    assert stats.frames_out == 12 and stats.faces_detected == 0
    before, tags_in = _yuv_and_colour(src)
    after, tags_out = _yuv_and_colour(out)
    assert tags_in == colour and tags_out == colour  # the output is tagged as the input
    d = np.abs(np.stack(before).astype(int) - np.stack(after).astype(int))
    # an RGB round trip and a second encode: a level or two; a matrix or range mix-up: 4-20 levels
    assert d.mean() < 1.0 and np.percentile(d, 99) <= 3, (d.mean(), np.percentile(d, 99))


@pytest.mark.parametrize("colour", [None, BT709, BT709_FULL, BT2020], ids=["unspecified", "bt709", "bt709-full",
                                                                          "bt2020"])
def test_gpu_conversions_match_pyav(colour):
    """frame_ops' YUV <-> RGB (NVDEC frames, the GPU sink) use the same matrix and range as PyAV."""
    tags = colour or ColourInfo()
    frame = rgb_to_video_frame(_bars(), tags, "yuv420p")
    planes = torch.from_numpy(frame.to_ndarray())
    ours = frame_ops.nhwc(frame_ops.yuv420p_to_rgb(planes, colour)[0]).numpy()
    assert np.abs(ours.astype(int) - video_frame_to_rgb(frame).astype(int)).max() <= 2
    back = frame_ops.rgb_to_yuv420p(frame_ops.nchw(torch.from_numpy(_bars())), colour)[0].numpy()
    assert np.abs(back.astype(int) - frame.to_ndarray().astype(int)).max() <= 2
