"""The built-in sample clip: faces move at a pace a tracker can follow, whatever the clip length."""

from __future__ import annotations

import numpy as np

from streamer.sample import make_sample_clip


def _max_step(boxes: list[np.ndarray]) -> float:
    """Largest per-frame move of any face centre, in pixels."""
    centres = np.stack([(b[:, :2] + b[:, 2:]) / 2 for b in boxes])
    return float(np.linalg.norm(np.diff(centres, axis=0), axis=2).max())


def test_short_clips_move_faces_as_slowly_as_long_ones(tmp_path):
    short = make_sample_clip(str(tmp_path / "short.mp4"), seconds=0.4, fps=25, width=640, height=360, faces=3,
                             audio=False)
    long = make_sample_clip(str(tmp_path / "long.mp4"), seconds=3.0, fps=25, width=640, height=360, faces=3,
                            audio=False)
    assert len(short.face_boxes) == 10 and len(long.face_boxes) == 75
    # a 0.4 s clip shows the start of the 3 s motion, frame for frame
    np.testing.assert_allclose(np.stack(short.face_boxes), np.stack(long.face_boxes[:10]), atol=1.0)
    assert _max_step(short.face_boxes) < 0.03 * 640
