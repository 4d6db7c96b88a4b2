"""Videos stored sideways with a display rotation (phones filming in portrait): faces are looked for
upright, and the output is stored and tagged like the input, so it plays the same."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamer.orientation import quarter_turns, read_orientation, stored, upright
from streamer.pipeline import anonymize_file
from streamer.sample import make_sample_clip, turned_copy
from tests.conftest import SHARED_VIDEOS, fast_config
from tests.media import audio_digest, box_difference, outside_mask, video_frames, video_times


def _stored_size_and_rotation(path: str) -> tuple[int, int, int]:
    with av.open(path) as c:
        picture = next(c.decode(video=0))
        return picture.width, picture.height, picture.rotation


@pytest.mark.parametrize("rotation, compositor", [(-90, "numpy"), (90, "numpy"), (180, "numpy"),
                                                  (-90, "torch")])
def test_a_portrait_phone_clip_plays_like_the_input_with_its_face_replaced(tmp_path, rotation, compositor):
    if compositor == "torch":
        pytest.importorskip("torch")
    clip = make_sample_clip(str(tmp_path / "phone.mp4"), seconds=1.0, fps=25, width=360, height=640,
                            rotation=rotation)
    out = str(tmp_path / "out.mp4")
    stats = anonymize_file(clip.path, out, fast_config(**{"anonymizer.mode": "mask",
                                                          "pipeline.compositor": compositor}), progress=False)
    assert stats.frames_out == stats.frames_in == len(clip.pts) and stats.frames_dropped == 0
    assert _stored_size_and_rotation(out) == _stored_size_and_rotation(clip.path)  # same layout, same tag
    assert video_times(out) == pytest.approx(video_times(clip.path), abs=1e-3)
    assert audio_digest(out)[2] == audio_digest(clip.path)[2]
    turns = quarter_turns(rotation)
    # what a player shows: the face gone, the rest of the picture where it was
    for before, after, boxes in zip(video_frames(clip.path), video_frames(out), clip.face_boxes):
        before, after = upright(before, turns), upright(after, turns)
        assert before.shape == (640, 360, 3)
        for box in boxes:
            assert box_difference(before, after, box) > 25
        outside = outside_mask(before.shape, boxes, grow=1.6)
        assert np.abs(before.astype(int) - after.astype(int))[outside].mean() < 3


def test_read_orientation():
    """The display matrix of a file, none for a plain one; quarter turns of the usual angles."""
    assert [quarter_turns(r) for r in (0, 90, -90, 180, -180, 270, 45)] == [0, 1, 3, 2, 2, 3, 0]
    picture = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    for turns in range(4):
        assert np.array_equal(stored(upright(picture, turns), turns), picture)
    assert np.array_equal(upright(picture, 1)[:, :, 0], np.rot90(picture[:, :, 0]))
    assert read_orientation("rtsp://camera/stream").matrix is None
    assert read_orientation("/no/such/file.mp4").matrix is None


@pytest.mark.skipif(not SHARED_VIDEOS.is_dir(), reason="../shared/data/videos not present")
def test_faces_in_a_sideways_stored_real_clip_are_found_as_in_the_upright_one(tmp_path):
    """On the stored (sideways) pictures CenterFace finds about a quarter of these faces
    (``benchmarks/sideways_faces.py``); turned upright, as many as in the upright copy."""
    src = str(SHARED_VIDEOS / "face_recognition_short_hamilton_clip.mp4")
    found = {}
    for rotation in (0, -90):
        copy = str(tmp_path / f"copy{rotation}.mp4")
        turned_copy(src, copy, rotation=rotation, max_frames=30)
        config = fast_config(**{"anonymizer.mode": "mask", "tracker.enabled": False})
        found[rotation] = anonymize_file(copy, str(tmp_path / f"out{rotation}.mp4"), config,
                                         progress=False).faces_detected
    assert found[0] > 60  # several performers on stage
    assert found[-90] >= 0.9 * found[0], found
