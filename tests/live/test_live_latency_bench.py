"""The live benchmark runs several cameras through one server and reports every one of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_live_benchmark_reports_every_camera(tmp_path, rtsp_server_factory):
    # rtsp_server_factory: skips with the reason when the RTSP server is not installed
    out = tmp_path / "live.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "live_latency.py"), "--width", "320",
                           "--height", "192", "--fps", "10", "--seconds", "3", "--cameras", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["cameras"] == 2 and set(result["per_camera"]) == {"cam", "cam1"}
    for name, camera in result["per_camera"].items():
        assert camera["input_fps"] > 0 and camera["output_fps"] > 0, (name, camera)  # the replayed camera flows
        assert camera["startup_s"] > 0, (name, camera)  # measured after every camera's first frame out
        # what limits a camera: its stages' time per frame, the encoders' included
        assert {"detect", "anonymize", "encode"} <= set(camera["stage_ms_per_frame"]), (name, camera)
    assert result["cameras_never_out"] == [] and result["startup_wait_s"] >= result["startup_s"] - 1
    assert result["end_to_end_latency_s"]["frames"] > 0
    assert 0 <= result["cameras_real_time"] <= 2
    assert "Traceback" not in proc.stderr
