"""``streamer bench`` runs on a CPU-only machine and reports every variant."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def test_bench_reports_every_variant(tmp_path, monkeypatch):
    for name in ("STREAMER_STAGE_THREADS", "STREAMER_DETECT_AHEAD", "STREAMER_STAGE_STREAMS", "STREAMER_CUDNN_BENCHMARK"):
        monkeypatch.delenv(name, raising=False)  # the defaults, whatever the shell running the tests set
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = run_cli("bench", "--seconds", "1", "--size", "640x360", "--fps", "25", "--faces", "2",
                   "--modes", "blur,pixelate", "--streams", "2", "--streams-encode", "--device", "cpu",
                   "--json", str(out_json), "--png", str(out_png))
    assert proc.returncode == 0, proc.stderr
    rows = {r["variant"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert {"decode", "transcode", "null-blur", "full-blur", "null-pixelate", "full-pixelate", "deface",
            "2 streams null-blur", "2 streams full-blur"} <= set(rows)
    for name in ("decode", "transcode", "null-blur", "full-blur"):
        assert rows[name]["frames"] == 25 and rows[name]["fps"] > 0, rows[name]
        assert rows[name]["steady_fps"] is None  # 25 frames: too short to leave a warm-up out
        assert 0 < rows[name]["first_frame_s"] < rows[name]["seconds"], rows[name]  # the start-up, seconds
    assert rows["full-blur"]["faces_per_frame"] >= 1.5  # two faces on screen
    assert {"decode", "detect", "anonymize", "encode"} <= set(rows["full-blur"]["stages_ms"])
    for name in ("2 streams null-blur", "2 streams full-blur"):
        assert rows[name]["per_stream_frames"] == [25, 25], rows[name]
        assert rows[name]["first_frame_s"] > 0, rows[name]  # the shared models' start-up, seconds
        assert rows[name]["decoding"] == "slice threads, as live cameras"  # as the live server decodes
    assert rows["deface"].get("fps", 0) > 0, rows["deface"]
    assert out_png.stat().st_size > 1000
    assert "| full-blur |" in proc.stdout
    meta = json.loads(out_json.read_text())["meta"]
    assert meta["frames_per_batch"] == 1  # auto, on the CPU
    # the settings it ran with, defaults filled in, so two bench records say what differed
    assert meta["settings"] == {"STREAMER_STAGE_THREADS": "1", "STREAMER_DETECT_AHEAD": "0",
                                "STREAMER_STAGE_STREAMS": "0", "STREAMER_CUDNN_BENCHMARK": "1"}
    assert "settings: STREAMER_STAGE_THREADS=1 STREAMER_DETECT_AHEAD=0" in proc.stdout


def test_bench_times_gan_mode_with_random_weights(tmp_path):
    """Before any training, gan mode can be timed: random weights cost what trained ones cost."""
    out_json = tmp_path / "bench.json"
    proc = run_cli("bench", "--seconds", "0.4", "--size", "640x360", "--fps", "25", "--faces", "2",
                   "--modes", "gan", "--generator-weights", "random", "--streams", "2", "--no-deface",
                   "--device", "cpu", "--batch-size", "4",  # 10 frames: batches of 4, 4 and 2
                   "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out_json.read_text())
    assert result["meta"]["generator"].startswith("random weights")
    assert result["meta"]["frames_per_batch"] == 4
    rows = {r["variant"]: r for r in result["rows"]}
    for name in ("null-gan", "full-gan"):
        assert rows[name]["frames"] == 10 and rows[name]["faces_per_frame"] >= 1.5, rows[name]
        assert "anonymize" in rows[name]["stages_ms"]
        assert rows[name]["anonymized"].get("gan", 0) >= 15, rows[name]["anonymized"]  # not all fallback
    streams = rows["2 streams null-gan"]  # one generator shared by both streams
    assert streams["per_stream_frames"] == [10, 10] and streams["mean_generator_batch"] >= 1.5, streams
    assert "gan rows: generator random weights" in proc.stdout


def test_streams_only_without_streams_is_a_one_line_error():
    proc = run_cli("bench", "--streams-only", "--no-deface", "--device", "cpu")
    assert proc.returncode != 0
    assert "--streams-only needs --streams" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_rejects_missing_generator_weights(tmp_path):
    proc = run_cli("bench", "--seconds", "0.2", "--size", "320x180", "--modes", "gan", "--no-deface",
                   "--generator-weights", str(tmp_path / "nope.safetensors"), "--device", "cpu")
    assert proc.returncode != 0
    assert "generator weights not found" in proc.stderr and "Traceback" not in proc.stderr


def test_streams_share_one_gpu_compositor_like_live_cameras(tmp_path):
    """With the GPU (torch) compositor, here on the CPU, the streams share one compositor and hand it one
    frame at a time, as the live server's cameras do; ``--streams-only`` runs those rows alone."""
    config = tmp_path / "torch.yaml"
    config.write_text("detector: {input_width: 640}\npipeline: {compositor: torch}\n")
    out_json = tmp_path / "bench.json"
    proc = run_cli("bench", "--config", str(config), "--seconds", "0.4", "--size", "640x360", "--fps", "25",
                   "--faces", "2", "--modes", "blur", "--streams", "2", "--streams-only", "--no-deface",
                   "--device", "cpu", "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    rows = {r["variant"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert set(rows) == {"2 streams null-blur"}, set(rows)
    streams = rows["2 streams null-blur"]
    assert streams["per_stream_frames"] == [10, 10], streams
    assert streams["steady_total_fps"] == pytest.approx(sum(streams["per_stream_fps"]), abs=0.02), streams
    assert streams["steady_total_fps"] > 0, streams
    assert streams["mean_compositor_batch"] >= 1.0 and streams["mean_detector_batch"] >= 1.0, streams
    assert "mean batch: detector" in proc.stdout and "compositor" in proc.stdout


def test_streams_that_stop_and_frames_blacked_out_are_named_in_the_table(tmp_path, monkeypatch):
    """16 encoded streams on an H100 (2026-11-26): 15 stopped on CUDA errors and the table said "per stream
    12.33-12.33", the one stream that finished. The row now says how many stopped and why, and a row whose
    frames a failing stage blacked out says how many."""
    import benchmarks.cli as bench
    from streamer.config import apply_overrides, load_config
    from streamer.pipeline import RunStats
    from streamer.sample import make_sample_clip

    clip = make_sample_clip(str(tmp_path / "clip.mp4"), seconds=0.2, fps=25, width=320, height=180, faces=1)
    config = apply_overrides(load_config("benchmark"), {"pipeline.device": "cpu", "anonymizer.mode": "blur"})
    real = bench.run_variant

    def second_stream_fails(path, config, sink_path, anonymize, **stages):
        if sink_path.endswith("stream-1.mp4"):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real(path, config, sink_path, anonymize, **stages)

    monkeypatch.setattr(bench, "run_variant", second_stream_fails)
    row = bench._streams(clip.path, config, 2, 25.0, encode_dir=str(tmp_path))
    assert row["per_stream_frames"] == [5, 0] and row["failed_streams"] == 1 and not row["all_real_time"], row
    masked = bench._row("full-gan", RunStats(frames_in=5, frames_out=5, frames_masked=3), 5)
    table = bench.format_table([row, masked])
    assert "(**1 of 2 streams stopped: stream 1: CUDA out of memory. Tried to allocate 20.00 MiB**)" in table
    assert "| full-gan (**3 frames masked on error**) |" in table
    # on a GPU: what PyTorch held besides what it allocated (the H100's 71.5 GiB cache went unseen)
    assert "| 5955 / 78201 |" in bench.format_table([{**masked, "gpu_mb": 5955.2, "gpu_reserved_mb": 78201.0}])
