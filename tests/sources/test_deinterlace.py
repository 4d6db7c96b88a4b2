"""Interlaced input comes out deinterlaced: no comb teeth on moving things, same frames, same times."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamer.pipeline import anonymize_file
from tests.conftest import fast_config
from tests.media import INTERLACED_FRAMES as FRAMES
from tests.media import comb, video_frames, video_times, write_interlaced

def interlaced_flags(path: str) -> list[bool]:
    with av.open(path) as c:
        return [frame.interlaced_frame for frame in c.decode(video=0)]


@pytest.mark.parametrize("name", ["interlaced.mp4", "interlaced.avi"])  # AVI: frames timed by decode times
def test_interlaced_input_is_deinterlaced(tmp_path, name):
    src, out = str(tmp_path / name), str(tmp_path / "out.mp4")
    write_interlaced(src)
    assert all(interlaced_flags(src))  # the input really is coded interlaced
    stats = anonymize_file(src, out, fast_config(), progress=False)

    assert stats.frames_out == FRAMES
    # evenly spaced from where FFmpeg puts the first frame (an AVI's B-frames delay it by the decoder's depth)
    assert np.allclose(np.diff(video_times(out)), 1 / 25)
    assert video_times(out)[0] == pytest.approx(video_times(src)[0], abs=1e-3)
    assert not any(interlaced_flags(out))
    combs_in = np.mean([comb(image) for image in video_frames(src)])
    combs_out = np.mean([comb(image) for image in video_frames(out)])
    # kept as it was, the output showed the same comb teeth in a stream players take as progressive
    assert combs_out < 0.3 * combs_in, (combs_in, combs_out)


def test_progressive_input_is_left_as_it_is(small_clip, tmp_path):
    out = str(tmp_path / "out.mp4")
    anonymize_file(small_clip.path, out, fast_config(), progress=False)
    assert not any(interlaced_flags(small_clip.path)) and not any(interlaced_flags(out))
    # the background (no face there) is the input's up to encoding noise: no filter touched it
    first_in, first_out = video_frames(small_clip.path, 1)[0], video_frames(out, 1)[0]
    assert abs(comb(first_in) - comb(first_out)) < 0.5
