"""RTMP publishing: a camera read over RTSP comes out anonymized at a real RTMP server.

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
import yaml

from conftest import free_port
from streamer.config import load_config
from test_live import _health, _wait

RECEIVER = Path(__file__).with_name("rtmp_receiver.py")


def test_rtmp_output_is_anonymized(tmp_path, face_clip, rtsp_server_factory, publisher_factory):
    from streamer.factory import build_detector

    source = rtsp_server_factory()
    publisher_factory(face_clip.path, source.publish_url("cam"))
    rtmp_port, metrics_port = free_port(), free_port()
    received = tmp_path / "received.flv"
    receiver = subprocess.Popen([sys.executable, str(RECEIVER), f"rtmp://127.0.0.1:{rtmp_port}/live/anon",
                                 str(received)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # no port probe: FFmpeg's one-client server would take the probe for the publisher. The
    # streamer needs seconds to start and its publisher retries, so "listening" is enough.
    assert receiver.stdout.readline().strip() == "listening"
    config = {
        "detector": {"input_width": 640}, "encoder": {"preset": "ultrafast", "crf": 28},
        "pipeline": {"threads": 1},
        "server": {"metrics_port": metrics_port, "stall_seconds": 3, "connect_timeout": 5, "queue_size": 2},
        "cameras": [{"name": "lobby", "input": source.play_url("cam"), "transport": "udp",
                     "output": f"rtmp://127.0.0.1:{rtmp_port}/live/anon"}],
    }
    cfg_path = tmp_path / "rtmp.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "serve", "--config", str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sent = _wait(lambda: (_health(metrics_port)["lobby"]["frames_out"] if proc.poll() is None else
                              pytest_fail(proc)) >= 30 and _health(metrics_port)["lobby"]["frames_out"],
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
    with av.open(face_clip.path) as c:
        raw = [vf.to_ndarray(format="rgb24") for _, vf in zip(range(len(faces)), c.decode(video=0))]
    assert sum(len(d[d.scores > 0.5]) for d in detector(raw)) >= len(faces)  # the input shows faces
    assert sum(faces) <= 1, f"faces still recognizable in the RTMP output: {faces}"


def pytest_fail(proc: subprocess.Popen):
    """Fail the test with the streamer's stderr (it exited early)."""
    import pytest

    pytest.fail(proc.communicate()[1])
