"""Live outputs keep their keyframe interval in seconds when frames are dropped upstream."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from streamer.config import EncoderConfig
from streamer.detections import Frame
from streamer.live.outputs import SegmentRecorder
from streamer.live.rtsp_source import TIME_BASE


def _keyframe_times(paths) -> list[float]:
    """Presentation times (seconds since the first segment's start) of every keyframe, in order."""
    times, offset = [], 0.0
    for path in paths:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            last = 0.0
            for packet in c.demux(stream):
                if packet.pts is None:
                    continue
                t = float(packet.pts * stream.time_base)
                last = max(last, t)
                if packet.is_keyframe:
                    times.append(offset + t)
            offset += last + 0.25
    return times


def test_recording_of_a_slow_camera_still_gets_a_keyframe_every_second(tmp_path):
    """A 30 fps camera of which only 4 fps get through: keyframes (and segments) stay ~1 s apart.

    A keyframe interval counted in frames (30) would put them 7.5 s apart here, so a
    1-s segment would grow to 7.5 s and a crash would lose that much.
    """
    recorder = SegmentRecorder(str(tmp_path), "cam", EncoderConfig(preset="ultrafast"), fps=30.0,
                               segment_seconds=1.0)
    rng = np.random.default_rng(0)
    step = int(Fraction(1, 4) / TIME_BASE)  # 0.25 s between frames that reach the output
    for i in range(32):  # 8 s
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        recorder.write(Frame(index=i, pts=i * step, time_base=TIME_BASE, image=image))
    recorder.close()
    segments = recorder.segments()
    keys = _keyframe_times(segments)
    assert len(segments) >= 6, [p.name for p in segments]
    assert len(keys) >= 7, keys
    assert max(np.diff(keys)) <= 1.01, keys
