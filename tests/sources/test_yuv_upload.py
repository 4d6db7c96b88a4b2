"""CPU decode with the colour conversion on the torch device: the same frames, times and packets as
the plain CPU source (here the device is the CPU, the code is the GPU's)."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import torch

from streamer.detections import Frame
from streamer.factory import build_source
from streamer.sample import make_sample_clip
from streamer.sources.video_file import VideoFileSource
from streamer.sources.yuv_upload import YuvUploadSource
from tests.conftest import fast_config
from tests.media import joined_ts


def _split(source) -> tuple[list[Frame], list]:
    items = list(source)
    source.close()
    return [i for i in items if isinstance(i, Frame)], [i for i in items if not isinstance(i, Frame)]


def test_frames_times_and_packets_equal_the_cpu_source(small_clip):
    frames, packets = _split(YuvUploadSource(small_clip.path, "cpu"))
    expected, expected_packets = _split(VideoFileSource(small_clip.path))
    assert [f.pts for f in frames] == [f.pts for f in expected] and len(frames) == 25
    assert len(packets) == len(expected_packets) > 0  # audio passes through as before
    for got, want in zip(frames, expected):
        assert got.image is None and got.device_image is not None  # only on the device, like NVDEC frames
        d = np.abs(got.device_image.numpy().astype(int) - want.image.astype(int))
        # swscale's fast path truncates where the torch code rounds (tests/stages/test_frame_ops.py)
        assert d.max() <= 3 and d.mean() < 1.2, (d.max(), d.mean())


def test_odd_sized_frames_are_converted_on_the_cpu(tmp_path):
    clip = make_sample_clip(str(tmp_path / "odd.mkv"), seconds=0.2, fps=25, width=641, height=361, audio=False,
                            codec="ffv1")  # 4:2:0 with odd sizes does not split into 2x2 blocks
    frames, _ = _split(YuvUploadSource(clip.path, "cpu"))
    with av.open(clip.path) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert len(frames) == 5 and all(f.image is not None and f.image.shape == (361, 641, 3) for f in frames)


def test_chosen_where_the_gpu_compositor_works(small_clip, caplog):
    caplog.set_level(logging.INFO, logger="streamer.factory")
    # decoder cpu: where NVDEC works it is chosen before this path (tests/sources/test_nvdec.py)
    source = build_source(small_clip.path, fast_config(**{"pipeline.compositor": "torch", "pipeline.decoder": "cpu"}))
    source.close()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert isinstance(source, YuvUploadSource) and f"YUV to RGB on the {device}" in caplog.text
    plain = build_source(small_clip.path, fast_config(**{"pipeline.compositor": "numpy", "pipeline.decoder": "cpu"}))
    plain.close()
    assert type(plain) is VideoFileSource


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))])
def test_frames_of_another_size_are_scaled_on_the_device(tmp_path, device):
    """A size change mid-stream: the larger frames are scaled to the first size where they are."""
    frames, _ = _split(YuvUploadSource(joined_ts(tmp_path), device))
    assert len(frames) == 20
    for frame in frames:
        picture = frame.device_image
        assert picture.device.type == device and tuple(picture.shape) == (240, 320, 3)
        assert picture[:, :150].float().mean() > 200 and picture[:, 170:].float().mean() < 50
