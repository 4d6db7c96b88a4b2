"""Frames that reach the file sink only on the GPU: converted to yuv420p there, on the sink's own CUDA
stream, after exactly the GPU work the compositor recorded for them."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from streamer.config import EncoderConfig
from streamer.detections import Frame
from streamer.orientation import Orientation, upright
from streamer.sinks.video_file import VideoFileSink
from streamer.sources.video_file import StreamInfo
from tests.media import video_frames

INFO = StreamInfo(width=64, height=48, fps=25.0, time_base=Fraction(1, 25), frames=0, codec="", duration=0.0)


def _write(tmp_path, frames: list[Frame], info: StreamInfo = INFO) -> list[np.ndarray]:
    path = str(tmp_path / "out.mkv")
    sink = VideoFileSink(path, info, [], EncoderConfig(codec="libx264", crf=0, preset="ultrafast"))
    for frame in frames:
        sink.write_frame(frame)
    sink.close()
    return video_frames(path)


def test_device_frames_on_the_cpu_are_written(tmp_path):
    image = torch.full((48, 64, 3), 180, dtype=torch.uint8)
    decoded = _write(tmp_path, [Frame(index=0, pts=0, time_base=INFO.time_base, image=None, device_image=image)])
    assert len(decoded) == 1 and abs(int(np.median(decoded[0])) - 180) <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_the_sink_waits_for_the_work_recorded_for_its_frame(tmp_path):
    """The pixels are written by GPU work queued behind a long kernel on the default stream; the sink,
    on its own stream, must still encode the finished pixels (a missing wait writes black)."""
    frames = []
    for i, value in enumerate((200, 90)):
        image = torch.zeros((48, 64, 3), dtype=torch.uint8, device="cuda")
        torch.cuda._sleep(20_000_000)  # tens of milliseconds of GPU time before the pixels are set
        image.fill_(value)
        ready = torch.cuda.Event()
        ready.record()
        frames.append(Frame(index=i, pts=i, time_base=INFO.time_base, image=None, device_image=image, ready=ready))
    decoded = _write(tmp_path, frames)
    medians = [int(np.median(f)) for f in decoded]  # yuv420p rounding: one grey level either way
    assert abs(medians[0] - 200) <= 1 and abs(medians[1] - 90) <= 1, medians


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))])
def test_an_upright_device_frame_is_stored_turned_back(tmp_path, device):
    """A stream stored a quarter turn away (display rotation -90): the sink turns the upright device
    frame back, on the GPU when it is there, after the frame's ready event."""
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :16] = 230  # a bright band on the stored picture's left edge
    info = StreamInfo(width=64, height=48, fps=25.0, time_base=Fraction(1, 25), frames=0, codec="",
                      duration=0.0, orientation=Orientation(rotation=-90))
    image = torch.from_numpy(upright(stored, info.orientation.turns)).to(device)
    ready = None
    if device == "cuda":
        ready = torch.cuda.Event()
        ready.record()
    decoded = _write(tmp_path, [Frame(index=0, pts=0, time_base=INFO.time_base, image=None, device_image=image,
                                      ready=ready)], info)
    assert decoded[0].shape == (48, 64, 3)
    assert decoded[0][:, :14].mean() > 200 and decoded[0][:, 18:].mean() < 30
