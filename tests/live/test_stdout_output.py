"""``streamer anonymize rtsp://CAMERA -``: one camera's anonymized video as MPEG-TS on standard output
(``| ffplay -``), ending when the reader closes the pipe."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import av

from streamer.config import load_config


def test_a_camera_to_standard_output_plays_and_ends_with_its_reader(long_face_clip, gst_rtsp_server_factory):
    """(The quick form reads RTSP over TCP: the GStreamer server.)"""
    from streamer.factory import build_detector

    server = gst_rtsp_server_factory(play={"cam": long_face_clip})
    proc = subprocess.Popen([sys.executable, "-m", "streamer.cli", "anonymize", server.url("cam"), "-",
                             "--detector-width", "320"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = b""
    deadline = time.monotonic() + 90
    while len(data) < 400_000 and time.monotonic() < deadline:  # a few seconds of 640x360 video
        chunk = proc.stdout.read1(65536)
        if not chunk:
            break
        data += chunk
    proc.stdout.close()  # the viewer closes its window
    start = time.monotonic()
    stderr = proc.communicate(timeout=60)[1].decode()
    assert time.monotonic() - start < 30 and proc.returncode == 0, stderr  # it noticed, and stopped cleanly
    assert "standard output closed by its reader: stopping" in stderr and "Traceback" not in stderr
    assert data[:1] == b"\x47"  # MPEG-TS from the first byte: no message went to standard output
    with av.open(io.BytesIO(data), format="mpegts") as c:
        frames = [vf.to_ndarray(format="rgb24") for vf in c.decode(video=0)]
    assert len(frames) >= 25
    detector = build_detector(load_config(None))
    faces_out = [len(d[d.scores > 0.5]) for d in detector(frames[-25:])]
    assert sum(faces_out) <= 1, f"faces still recognizable on standard output: {faces_out}"


def test_several_cameras_cannot_share_standard_output(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "anonymize", "rtsp://127.0.0.1:9/a",
                           "rtsp://127.0.0.1:9/b", "-"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "only one camera can go to standard output" in proc.stderr
    assert proc.stdout == ""


def test_serve_refuses_a_terminal_as_a_cameras_standard_output(tmp_path):
    import os
    import pty

    import yaml

    cfg = tmp_path / "stdout.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"metrics_port": -1},
                                   "cameras": [{"input": "rtsp://127.0.0.1:9/a", "output": "-"}]}))
    main_end, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "streamer.cli", "serve", "--config", str(cfg)], stdout=terminal,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(main_end)
        os.close(terminal)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("streamer: error: standard output is a terminal: pipe it into a "
                                                     "player (| ffplay -) or give an output file")
