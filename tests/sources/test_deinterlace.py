"""Interlaced input comes out deinterlaced: no comb teeth on moving things, same frames, same times."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from streamer.pipeline import anonymize_file
from tests.conftest import fast_config
from tests.media import video_frames, video_times

WIDTH, HEIGHT, FRAMES = 320, 240, 20


def field_image(t: int) -> np.ndarray:
    """A white bar at x = 12 t pixels (t counts fields) on a dark grey background, RGB."""
    image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    x = 12 * t % (WIDTH - 40)
    image[60:180, x:x + 40] = 230
    return image


def write_interlaced(path: str) -> None:
    """An H.264 clip coded interlaced, top field first: each frame's even rows show the bar at field
    time 2 i, its odd rows 1/50 s later, as an interlaced camera takes them."""
    with av.open(path, mode="w") as container:
        video = container.add_stream("libx264", rate=25, options={"x264-params": "interlaced=1:tff=1"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        graph = av.filter.Graph()  # setfield marks the frames interlaced, as x264 needs
        source = graph.add_buffer(width=WIDTH, height=HEIGHT, format="yuv420p", time_base=Fraction(1, 25))
        mark, sink = graph.add("setfield", "tff"), graph.add("buffersink")
        source.link_to(mark)
        mark.link_to(sink)
        graph.configure()
        for i in range(FRAMES):
            woven = field_image(2 * i)
            woven[1::2] = field_image(2 * i + 1)[1::2]
            frame = av.VideoFrame.from_ndarray(woven, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            graph.push(frame)
            container.mux(video.encode(graph.pull()))
        container.mux(video.encode(None))


def comb(image: np.ndarray) -> float:
    """Mean distance (grey levels) of each row from the mean of the rows above and below it: comb teeth
    (rows alternating between two pictures) make it large, a progressive picture small."""
    grey = image.astype(np.float32).mean(axis=2)
    return float(np.abs(grey[1:-1] - (grey[:-2] + grey[2:]) / 2).mean())


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
