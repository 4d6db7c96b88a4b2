"""What a re-encoded file keeps besides pictures and sound: pixel shape, tags, track flags."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from streamer.pipeline import anonymize_file
from tests.conftest import fast_config

#: A DVR's PAL clip: 720x576 shown at 4:3, so each pixel is 16/15 as wide as high.
PAL_SAR = Fraction(16, 15)
TAGS = {"creation_time": "2026-01-02T03:04:05.000000Z", "title": "camera 3, car park"}


def _dvr_clip(path: str) -> None:
    """10 frames of 720x576 H.264 with a 16:15 pixel aspect ratio, container tags, and a German
    commentary audio track flagged default."""
    with av.open(path, mode="w") as c:
        c.metadata.update(TAGS)
        video = c.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 720, 576, "yuv420p"
        video.codec_context.sample_aspect_ratio = PAL_SAR
        audio = c.add_stream("aac", rate=44100, layout="stereo")
        audio.metadata.update({"language": "deu", "title": "Kommentar"})
        audio.disposition = av.stream.Disposition.default
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((576, 720, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                c.mux(packet)
        sound = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        sound.sample_rate, sound.pts = 44100, 0
        for stream, last in ((audio, sound), (audio, None), (video, None)):
            for packet in stream.encode(last):
                c.mux(packet)


def _described(path: str) -> dict:
    with av.open(path) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        return {"sar": video.codec_context.sample_aspect_ratio, "tags": dict(c.metadata),
                "audio": dict(audio.metadata), "audio_flags": audio.disposition, "format": c.format.name}


@pytest.mark.parametrize("extension", ["mp4", "mkv"])
def test_pixel_shape_tags_and_track_flags_are_kept(tmp_path, extension):
    src, out = str(tmp_path / f"dvr.{extension}"), str(tmp_path / f"out.{extension}")
    _dvr_clip(src)
    anonymize_file(src, out, fast_config(), progress=False)
    before, after = _described(src), _described(out)
    assert after["sar"] == PAL_SAR  # plays at 4:3, not squeezed to 5:4
    for key, value in TAGS.items():  # Matroska upper-cases tag names
        assert after["tags"].get(key, after["tags"].get(key.upper())) == value
    assert {k: v for k, v in after["audio"].items() if k.lower() in ("language", "title")} == \
        {k: v for k, v in before["audio"].items() if k.lower() in ("language", "title")}
    assert after["audio_flags"] == before["audio_flags"] == av.stream.Disposition.default


def test_copy_metadata_false_writes_no_tags(tmp_path):
    src, out = str(tmp_path / "dvr.mp4"), str(tmp_path / "out.mp4")
    _dvr_clip(src)
    anonymize_file(src, out, fast_config(**{"encoder.copy_metadata": False}), progress=False)
    after = _described(out)
    assert not set(after["tags"]) & set(TAGS)
    assert after["audio"].get("language", "und") == "und" and "title" not in after["audio"]  # mp4 writes und
    assert after["sar"] == PAL_SAR  # the picture's shape is not metadata


def _clip_with_data(path: str, kind: str) -> None:
    """10 frames of H.264 plus a data stream: a QuickTime timecode track ("timecode", MOV/MP4) or
    KLV metadata packets ("klv", MPEG-TS, as drones and surveillance cameras write)."""
    with av.open(path, mode="w") as c:
        video = c.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        if kind == "timecode":
            video.metadata["timecode"] = "01:00:00:00"  # the muxer writes a tmcd track from it
        data = c.add_data_stream("klv") if kind == "klv" else None
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                c.mux(packet)
            if data is not None:
                packet = av.Packet(bytes(24))
                packet.stream, packet.pts, packet.dts, packet.time_base = data, i * 3600, i * 3600, Fraction(1, 90000)
                c.mux(packet)
        for packet in video.encode(None):
            c.mux(packet)


@pytest.mark.parametrize("extension", ["mov", "mp4"])
def test_a_clip_with_a_timecode_track_is_written_with_its_timecode(tmp_path, extension):
    """Cameras and editors put a timecode track in MOV/MP4; copying it as it is makes the muxer fail at
    the very end (it has no frame rate), so the output used to be lost."""
    src, out = str(tmp_path / f"tc.{extension}"), str(tmp_path / f"out.{extension}")
    _clip_with_data(src, "timecode")
    with av.open(src) as c:
        assert [s.type for s in c.streams] == ["video", "data"]
    stats = anonymize_file(src, out, fast_config(), progress=False)
    assert stats.frames_out == 10
    with av.open(out) as c:
        assert c.streams.video[0].metadata.get("timecode") == "01:00:00:00"
        assert [s.type for s in c.streams] == ["video", "data"]  # a new timecode track


@pytest.mark.parametrize("out_name, copy_location, kept, why", [
    ("out.ts", True, True, ""),
    ("out.mp4", True, False, "data stream 1 (klv) left out: the mp4 container cannot take it"),
    # by default: KLV (MISB 0601) carries the platform's and the target's position
    ("out.ts", False, False, "data stream 1 (klv) left out: it tracks where the camera is"),
])
def test_klv_data_is_copied_where_the_container_takes_it_if_location_is_kept(tmp_path, caplog, out_name,
                                                                             copy_location, kept, why):
    src, out = str(tmp_path / "klv.ts"), str(tmp_path / out_name)
    _clip_with_data(src, "klv")
    with caplog.at_level("WARNING", logger="streamer"):
        stats = anonymize_file(src, out, fast_config(**{"encoder.copy_location": copy_location}), progress=False)
    assert stats.frames_out == 10
    with av.open(out) as c:
        assert [s.type for s in c.streams] == (["video", "data"] if kept else ["video"])
    assert why in caplog.text
    assert stats.packets_copied == (10 if kept else 0)


@pytest.mark.parametrize("copy_location", [False, True])
def test_where_and_with_what_a_phone_filmed_is_left_out_unless_asked(tmp_path, copy_location):
    """A phone's MOV carries its GPS position and model: gone from the output by default (the output
    is meant to identify no one), the position kept with encoder.copy_location; the creation time stays."""
    src, out = str(tmp_path / "phone.mov"), str(tmp_path / "out.mov")
    with av.open(src, mode="w", options={"movflags": "use_metadata_tags"}) as c:
        c.metadata.update({"location": "+48.8582+002.2945/", "com.apple.quicktime.model": "iPhone 15",
                           "creation_time": TAGS["creation_time"]})
        video = c.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                c.mux(packet)
        for packet in video.encode(None):
            c.mux(packet)
    with av.open(src) as c:
        assert {"location", "com.apple.quicktime.model"} <= set(c.metadata)
    anonymize_file(src, out, fast_config(**{"encoder.copy_location": copy_location}), progress=False)
    with av.open(out) as c:
        tags = {key.lower(): value for key, value in c.metadata.items()}
    assert tags["creation_time"] == TAGS["creation_time"]
    assert ("location" in tags or "location-eng" in tags) is copy_location
    if not copy_location:  # (kept or not, FFmpeg's MOV muxer writes Apple's own keys only when asked)
        assert not any("model" in key for key in tags)


def test_place_and_device_tag_names():
    from streamer.sinks.video_file import is_place_or_device_tag

    private = ["location", "location-eng", "com.apple.quicktime.location.ISO6709", "com.android.model",
               "com.apple.quicktime.make", "com.apple.quicktime.software", "LOCATION", "gps_latitude"]
    kept = ["creation_time", "title", "language", "handler_name", "timecode", "comment", "com.android.version"]
    assert all(is_place_or_device_tag(k) for k in private)
    assert not any(is_place_or_device_tag(k) for k in kept)
