"""Encoder choice: NVENC is detected by opening it; without it ``auto`` and NVENC names fall back to
the software encoder with a logged reason, or fail in one line when fallback is off."""

from __future__ import annotations

import logging

import av
import pytest

from streamer.config import EncoderConfig
from streamer.detections import Frame
from streamer.sinks.video_file import VideoFileSink, encoder_open_error, resolve_video_codec
from streamer.sources.video_file import VideoFileSource
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error

NVENC_OPENS = encoder_open_error("h264_nvenc", 640, 360) is None


def _encode(clip_path: str, out: str, config: EncoderConfig, frames: int = 3) -> str:
    """Write the first frames of a clip with a VideoFileSink; returns the output's video encoder name."""
    source = VideoFileSource(clip_path)
    sink = VideoFileSink(out, source.info, [], config)
    try:
        for item in source:
            if isinstance(item, Frame):
                sink.write_frame(item)
                frames -= 1
                if not frames:
                    break
    finally:
        sink.close()
        source.close()
    with av.open(out) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
    return sink.video.codec_context.name


@pytest.mark.skipif(NVENC_OPENS, reason="NVENC opens here: auto picks h264_nvenc")
def test_auto_falls_back_to_libx264_and_says_why(small_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="streamer")
    assert _encode(small_clip.path, str(tmp_path / "auto.mp4"), EncoderConfig(codec="auto")) == "libx264"
    assert "encoder: libx264 (encoder auto: h264_nvenc cannot be opened here:" in caplog.text


@pytest.mark.skipif(NVENC_OPENS, reason="NVENC opens here")
def test_unavailable_nvenc_falls_back_with_a_warning(small_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="streamer")
    assert _encode(small_clip.path, str(tmp_path / "hevc.mkv"), EncoderConfig(codec="hevc_nvenc")) == "libx265"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("hevc_nvenc cannot be opened here" in w and "using libx265" in w for w in warnings), warnings


@pytest.mark.skipif(NVENC_OPENS, reason="NVENC opens here")
def test_unavailable_nvenc_without_fallback_is_a_one_line_output_error(small_clip, tmp_path):
    cfg = tmp_path / "nvenc.yaml"
    cfg.write_text("encoder:\n  codec: h264_nvenc\n  fallback: false\n")
    proc = run_cli("anonymize", small_clip.path, str(tmp_path / "o.mp4"), "-c", str(cfg), "-q")
    assert_one_line_error(proc, "cannot open video encoder 'h264_nvenc'", 4)
    assert not (tmp_path / "o.mp4").exists()


def test_software_encoders_are_used_as_named():
    assert resolve_video_codec(EncoderConfig(codec="libx264"), 640, 360) == "libx264"
    assert resolve_video_codec(EncoderConfig(codec="mpeg4", fallback=False), 640, 360) == "mpeg4"


@pytest.mark.skipif(not NVENC_OPENS, reason="no NVENC here (the H100 has none)")
def test_nvenc_is_used_where_it_opens(small_clip, tmp_path):
    assert _encode(small_clip.path, str(tmp_path / "nvenc.mp4"), EncoderConfig(codec="auto")) == "h264_nvenc"


@pytest.mark.parametrize("extension, tag", [("mp4", "hvc1"), ("mov", "hvc1"), ("mkv", None)])
def test_hevc_in_mp4_is_tagged_for_apple_players(small_clip, tmp_path, extension, tag):
    """QuickTime, Safari and iOS play HEVC in MP4/MOV only under the 'hvc1' tag (FFmpeg writes 'hev1')."""
    out = str(tmp_path / f"hevc.{extension}")
    assert _encode(small_clip.path, out, EncoderConfig(codec="libx265", preset="ultrafast")) == "libx265"
    with av.open(out) as c:
        written = c.streams.video[0].codec_context.codec_tag
    assert written == tag if tag else written != "hvc1"
