"""Live outputs keep their keyframe interval in seconds when frames are dropped upstream; recordings
keep to their retention settings."""

from __future__ import annotations

import os
import time
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


def _record(recorder: SegmentRecorder, seconds: float, start: int = 0) -> None:
    """Write ``seconds`` of a 10 fps 128x96 noise camera to ``recorder`` (frames ``start``...)."""
    rng = np.random.default_rng(start)
    step = int(Fraction(1, 10) / TIME_BASE)
    for i in range(start, start + int(seconds * 10)):
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        recorder.write(Frame(index=i, pts=i * step, time_base=TIME_BASE, image=image))


def test_retention_deletes_this_camera_s_oldest_finished_segments_only(tmp_path):
    """keep_seconds: segments older than it go, newer ones and the one being written stay; another
    camera's segments (a name that starts like this one's) and other files in the folder are never
    touched. keep_bytes: the oldest go until the camera's recording fits."""
    other = tmp_path / "door-2-20200101-000000-00000.mp4"   # camera "door-2" records in the same folder
    notes = tmp_path / "door-notes.mp4"
    for path in (other, notes):
        path.write_bytes(b"not ours")
        os.utime(path, (0, 0))                                # very old
    recorder = SegmentRecorder(str(tmp_path), "door", EncoderConfig(preset="ultrafast"), fps=10.0,
                               segment_seconds=1.0, keep_seconds=3600)
    _record(recorder, 5.0)
    segments = recorder.segments()
    assert len(segments) >= 4 and other not in segments and notes not in segments
    for path in segments[:2]:                                 # two finished segments from two hours ago
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert recorder.prune() == segments[:2] and recorder.segments_deleted == 2
    assert recorder.segments() == segments[2:] and other.exists() and notes.exists()

    kept = recorder.segments()
    sizes = [p.stat().st_size for p in kept]
    recorder.keep_seconds, recorder.keep_bytes = 0, sum(sizes[-2:])  # room for the two newest only
    assert recorder.prune() == kept[:-2]
    recorder.keep_bytes = 1                                    # nothing fits: the one being written stays
    assert recorder.prune() == kept[-2:-1] and recorder.segments() == kept[-1:]
    recorder.close()
    assert other.exists() and notes.exists()


def test_retention_runs_while_recording(tmp_path):
    """With keep_bytes set, a long recording stays within it as it grows (a pass per segment length)."""
    recorder = SegmentRecorder(str(tmp_path), "cam", EncoderConfig(preset="ultrafast"), fps=10.0,
                               segment_seconds=1.0, keep_bytes=1)
    recorder._prune_at = float("inf")                          # no pass while the first segments are written
    _record(recorder, 3.0)
    assert len(recorder.segments()) >= 3
    recorder._prune_at = 0.0
    _record(recorder, 0.1, start=30)                           # one frame: the pass is due
    assert recorder.segments_deleted >= 2 and len(recorder.segments()) == 1
    recorder.close()
    assert all(_keyframe_times([p]) for p in recorder.segments())  # what is left plays
