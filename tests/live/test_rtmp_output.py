"""RTMP publishing: a camera read over RTSP comes out anonymized at a real RTMP server, with its sound.

The RTMP server is FFmpeg's own (``listen`` mode of its RTMP protocol, run in a
separate process by ``rtmp_receiver.py``); it saves the received FLV stream,
which the test decodes and checks for faces.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from conftest import free_port
from streamer.config import load_config
from test_live import _wait, frames_out, start_serve
from tests.media import TONE_HZ, dominant_hz, sound

RECEIVER = Path(__file__).with_name("rtmp_receiver.py")


def test_rtmp_output_is_anonymized_and_carries_the_sound(tmp_path, sounding_face_clip, rtsp_server_factory,
                                                         publisher_factory):
    from streamer.factory import build_detector

    source = rtsp_server_factory()
    publisher_factory(sounding_face_clip.path, source.publish_url("cam"), audio=True)
    rtmp_port = free_port()
    received = tmp_path / "received.flv"
    receiver = subprocess.Popen([sys.executable, str(RECEIVER), f"rtmp://127.0.0.1:{rtmp_port}/live/anon",
                                 str(received)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # no port probe: FFmpeg's one-client server would take the probe for the publisher. The
    # streamer needs seconds to start and its publisher retries, so "listening" is enough.
    assert receiver.stdout.readline().strip() == "listening"
    proc, metrics_port = start_serve(tmp_path, [
        {"name": "lobby", "input": source.play_url("cam"), "transport": "udp", "audio": True,
         "output": f"rtmp://127.0.0.1:{rtmp_port}/live/anon"},
    ], stall_seconds=3, connect_timeout=5)
    try:
        sent = _wait(lambda: (n := frames_out(proc, metrics_port, "lobby")) >= 30 and n,
                     60, "30 frames published over RTMP")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        receiver_out, receiver_err = receiver.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "received" in receiver_out, receiver_err

    with av.open(str(received)) as c:
        frames = [vf.to_ndarray(format="rgb24") for vf in c.decode(video=0)]
    assert len(frames) >= sent, (len(frames), sent)
    detector = build_detector(load_config(None))
    faces = [len(d[d.scores > 0.5]) for d in detector(frames[::3])]
    with av.open(sounding_face_clip.path) as c:
        raw = [vf.to_ndarray(format="rgb24") for _, vf in zip(range(len(faces)), c.decode(video=0))]
    assert sum(len(d[d.scores > 0.5]) for d in detector(raw)) >= len(faces)  # the input shows faces
    assert sum(faces) <= 1, f"faces still recognizable in the RTMP output: {faces}"
    codec, heard, rate = sound(str(received))
    assert codec == "aac" and dominant_hz(heard, rate) == pytest.approx(TONE_HZ, abs=5)

