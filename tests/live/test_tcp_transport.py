"""RTSP over TCP (RTP interleaved in the RTSP connection), input and publishing, against a real
GStreamer RTSP server that refuses UDP (tests/live/gst_rtsp_server.py).

The npm server of test_live.py only carries RTP over UDP; this one only carries it over TCP, so
a camera with ``transport: tcp`` and an output with ``output_transport: tcp`` are exercised
for real, and a silent fallback to UDP would fail the SETUP.
"""

from __future__ import annotations

import signal
import time

import av
import pytest

from streamer.config import load_config
from test_live import _decode_count, _health, _wait, frames_out, start_serve


def _faces(detector, frames) -> list[int]:
    return [len(d[d.scores > 0.5]) for d in detector(frames)]


def _count(path) -> int:
    """Decodable frames in ``path``; 0 while it is missing or unreadable."""
    try:
        return _decode_count(path)
    except (av.FFmpegError, OSError):
        return 0


def _frames(path, n: int, stride: int = 1) -> list:
    with av.open(str(path)) as c:
        frames = [vf.to_ndarray(format="rgb24") for vf in c.decode(video=0)]
    return frames[::stride][:n]


def test_rtsp_over_tcp_input_and_publish(tmp_path, face_clip, long_face_clip, gst_rtsp_server_factory):
    from streamer.factory import build_detector

    published = tmp_path / "published.h264"
    server = gst_rtsp_server_factory(play={"cam": long_face_clip}, record={"anon": str(published)})

    # the server really is TCP-only: a UDP client is refused at SETUP
    with pytest.raises((av.FFmpegError, OSError)):
        av.open(server.url("cam"), options={"rtsp_transport": "udp"}, timeout=(5, 5)).close()
    _wait(lambda: any("RTP/AVP/UDP" in s for s in server.setups), 5, "the refused UDP SETUP in the server log")

    rec = tmp_path / "rec"
    udp_setups = len(server.setups)
    proc, metrics_port = start_serve(tmp_path, [
        {"name": "gate", "input": server.url("cam"), "transport": "tcp",
         "output": server.url("anon"), "output_transport": "tcp",
         "record": {"dir": str(rec), "segment_seconds": 2}},
    ], stall_seconds=3, connect_timeout=5, backoff_initial=0.3, backoff_max=1.0)
    try:
        _wait(lambda: frames_out(proc, metrics_port, "gate") > 10, 60, "anonymized frames")
        first = _health(metrics_port)["gate"]
        time.sleep(4)
        gate = _health(metrics_port)["gate"]
        assert gate["state"] == "streaming" and gate["reconnects"] == 0, gate
        assert gate["frames_out"] >= first["frames_out"] + 25, (first, gate)  # keeps flowing over TCP
        # the streamer itself saw a face in (nearly) every frame it got over TCP: an intact stream
        assert gate["faces"] >= 0.8 * gate["frames_out"], gate
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err

    # both sessions were set up interleaved over the RTSP connection, none over UDP
    setups = server.setups[udp_setups:]
    play = [s for s in setups if s.startswith("SETUP /cam/")]
    record = [s for s in setups if s.startswith("SETUP /anon/")]
    assert len(play) == 1 and "RTP/AVP/TCP" in play[0] and "interleaved=" in play[0], server.lines
    assert len(record) == 1 and "RTP/AVP/TCP" in record[0] and "mode=record" in record[0], server.lines
    assert not any("UDP" in s for s in setups), server.lines

    detector = build_detector(load_config(None))
    faces_in = _faces(detector, _frames(face_clip.path, 20, stride=5))
    assert sum(faces_in) >= 16, f"the input clip must show faces: {faces_in}"

    # the recording: every segment decodes, and no face is left in it
    segments = sorted(rec.glob("gate-*.mp4"))
    counts = [_decode_count(p) for p in segments]
    assert len(segments) >= 2 and all(n > 0 for n in counts), dict(zip(segments, counts))
    assert sum(counts) >= gate["frames_out"]
    faces_rec = _faces(detector, [f for p in segments for f in _frames(p, 10, stride=5)])
    assert sum(faces_rec) <= 1, f"faces still recognizable in the recording: {faces_rec}"

    # what the server received over TCP: the anonymized stream, decodable, faces gone
    # (the server writes the file asynchronously, up to the publisher's TEARDOWN)
    _wait(lambda: (n := _count(published)) >= gate["frames_out"] - 25 and n, 10,
          f"the server's copy of the published stream to hold ~{gate['frames_out']} frames")
    faces_pub = _faces(detector, _frames(published, 20, stride=5))
    assert sum(faces_pub) <= 1, f"faces still recognizable in the published stream: {faces_pub}"
