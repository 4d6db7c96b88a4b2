"""An interlaced camera (an analog camera behind an encoder, a broadcast feed) is deinterlaced live."""

from __future__ import annotations

import threading

import av
import numpy as np

from streamer.live.rtsp_source import LiveSource
from tests.media import comb, video_frames, write_interlaced


def test_an_interlaced_camera_is_deinterlaced(tmp_path, rtsp_server_factory, publisher_factory):
    clip = str(tmp_path / "interlaced.mp4")
    write_interlaced(clip)
    server = rtsp_server_factory()
    publisher_factory(clip, server.publish_url("cam"))
    stop = threading.Event()
    source = LiveSource(server.play_url("cam"), stop, transport="udp", connect_timeout=10, stall_seconds=5)
    frames = []
    for frame in source:
        frames.append(frame.image)
        if len(frames) == 15:
            stop.set()
    with av.open(server.play_url("cam"), options={"rtsp_transport": "udp"}, timeout=(10, 5)) as c:
        assert next(c.decode(video=0)).interlaced_frame  # the camera really sends interlaced frames
    combs_in = np.mean([comb(image) for image in video_frames(clip)])
    combs_live = np.mean([comb(image) for image in frames])
    assert combs_live < 0.3 * combs_in, (combs_in, combs_live)  # taken as they came, they kept their combs
