"""``streamer bench`` runs on a CPU-only machine and reports every variant."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_bench_reports_every_variant(tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = run_cli("bench", "--seconds", "1", "--size", "640x360", "--fps", "25", "--faces", "2",
                   "--modes", "blur,pixelate", "--streams", "2", "--device", "cpu",
                   "--json", str(out_json), "--png", str(out_png))
    assert proc.returncode == 0, proc.stderr
    rows = {r["variant"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert {"decode", "transcode", "null-blur", "full-blur", "null-pixelate", "full-pixelate", "deface",
            "2 streams null-blur"} <= set(rows)
    for name in ("decode", "transcode", "null-blur", "full-blur"):
        assert rows[name]["frames"] == 25 and rows[name]["fps"] > 0, rows[name]
    assert rows["full-blur"]["faces_per_frame"] >= 1.5  # two faces on screen
    assert {"decode", "detect", "anonymize", "encode"} <= set(rows["full-blur"]["stages_ms"])
    assert len(rows["2 streams null-blur"]["per_stream_fps"]) == 2
    assert rows["deface"].get("fps", 0) > 0, rows["deface"]
    assert out_png.stat().st_size > 1000
    assert "| full-blur |" in proc.stdout
