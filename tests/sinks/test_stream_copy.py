"""Streams beside the video: copied where the output container holds them, else re-encoded (audio) or
left out with a warning (subtitles), never a refused job.

DVRs and IP cameras record G.711 (A-law) or PCM sound, which an MP4 cannot
hold; an MPEG-TS takes anything but writes unknown codecs as private data no
player reads as sound; a WebM takes only Opus/Vorbis. Each case is written
as a real file, anonymized, and the output's sound is decoded and compared
with the input's: same tone, same loudness, same length, same place
against the picture.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.pipeline import anonymize_file
from streamer.sample import make_sample_clip
from tests.conftest import fast_config
from tests.media import TONE_HZ, dominant_hz, sound, with_tone


def first_time(path: str, kind: str) -> float:
    """Time (seconds) of the first decoded frame of the first ``kind`` stream, reading from the start."""
    with av.open(path) as c:
        frame = next(c.decode(getattr(c.streams, kind)[0]))
        return float(frame.pts * frame.time_base)


def with_subtitles(video_path: str, srt_text: str, out_path: str) -> None:
    """Copy ``video_path`` into Matroska file ``out_path`` with a subtitle stream read from ``srt_text``.

    (A helper, so no PyAV object of a closed file outlives it: pytest's report of a failing test
    crashes formatting one.)"""
    srt = out_path + ".srt"
    with open(srt, "w") as f:
        f.write(srt_text)
    with av.open(video_path) as inp, av.open(srt) as text, av.open(out_path, mode="w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        copies["srt"] = out.add_stream_from_template(text.streams[0])
        for packet in [*inp.demux(), *text.demux()]:
            if packet.size:
                packet.stream = copies[packet.stream.index if packet.stream.container is inp else "srt"]
                out.mux(packet)


def subtitle_packets(path: str) -> list[bytes]:
    """The bytes of every packet of the first subtitle stream of ``path``."""
    with av.open(path) as c:
        return [bytes(p) for p in c.demux(subtitles=0) if p.size]


@pytest.fixture(scope="module")
def silent_video(tmp_path_factory):
    """A 1 s clip without sound in the container of the given extension (H.264 is stored differently
    in an AVI than in an MP4 or MKV, so packets are not copied between them)."""
    folder = tmp_path_factory.mktemp("reencode")

    def make(extension: str) -> str:
        path = folder / f"video{extension}"
        if not path.exists():
            make_sample_clip(str(path), seconds=1.0, fps=25, width=320, height=240, audio=False)
        return str(path)

    return make


@pytest.mark.parametrize("name, codec, rate, layout, delay, out_name, decoder", [
    ("dvr.avi", "pcm_alaw", 8000, "mono", 0.0, "out.mp4", "aac"),            # G.711 of a DVR into an MP4
    ("camera.mkv", "pcm_s16le", 16000, "mono", 0.2, "out.ts", "mp2"),         # an MPEG-TS writes it as data
    ("phone.mp4", "aac", 48000, "stereo", 0.2, "out.webm", "opus"),          # a WebM takes Opus/Vorbis only
    ("talk.mkv", "libopus", 48000, "stereo", 0.0, "out.avi", "mp3float"),    # an AVI takes no Opus (nor a
])                                                                          # late start: delay 0
def test_audio_the_container_cannot_hold_is_reencoded_in_sync(silent_video, tmp_path, caplog, name, codec,
                                                                rate, layout, delay, out_name, decoder):
    src, out = str(tmp_path / name), str(tmp_path / out_name)
    with_tone(silent_video(Path(name).suffix), src, codec, rate, layout, delay=delay)
    with caplog.at_level(logging.WARNING):
        # H.264 in an AVI reads back late in FFmpeg (README, known limits): MPEG-4 there, which is exact
        config = fast_config(**({"encoder.codec": "mpeg4"} if out_name.endswith(".avi") else {}))
        stats = anonymize_file(src, out, config, progress=False)
    assert stats.frames_out == 25
    assert f"audio stream 1 ({av.open(src).streams.audio[0].codec_context.name}) re-encoded as" in caplog.text

    name_out, heard, rate_out = sound(out)
    _, played, rate_in = sound(src)
    assert name_out == decoder
    assert dominant_hz(heard, rate_out) == pytest.approx(TONE_HZ, abs=5)
    loudness = np.sqrt(np.mean(heard ** 2)) / np.sqrt(np.mean(played ** 2))
    assert 0.8 < loudness < 1.25
    assert len(heard) / rate_out == pytest.approx(len(played) / rate_in, abs=0.15)  # an encoder frame or so
    lead_in = first_time(src, "audio") - first_time(src, "video")
    lead_out = first_time(out, "audio") - first_time(out, "video")
    # sound and picture as far apart as they were, within what no viewer notices (sound 45 ms early, ITU-R
    # BT.1359); an MPEG-TS keeps the encoder's start-up samples (MP2: 481) that an MP4 or WebM trims
    assert lead_out == pytest.approx(lead_in, abs=0.045)


def test_aac_into_mpegts_is_copied_not_refused(small_clip, tmp_path, caplog):
    """PyAV's list of the MPEG-TS muxer's codecs names only MPEG-2 ones: AAC was refused outright."""
    out = str(tmp_path / "out.ts")
    with caplog.at_level(logging.WARNING):
        stats = anonymize_file(small_clip.path, out, fast_config(), progress=False)
    assert "re-encoded" not in caplog.text and "left out" not in caplog.text
    with av.open(small_clip.path) as a, av.open(out) as b:
        packets_in = sum(1 for p in a.demux(a.streams.audio[0]) if p.size)
        packets_out = sum(1 for p in b.demux(b.streams.audio[0]) if p.size)
    assert stats.packets_copied == packets_in == packets_out
    assert sound(out)[0] == "aac"


@pytest.mark.parametrize("out_name", ["out.mkv", "out.mp4"])
def test_aac_of_a_camera_ts_is_copied_bit_for_bit(tmp_path, caplog, out_name):
    """MPEG-TS carries AAC with an ADTS header on every frame and no stored configuration; Matroska and
    MP4 store the frames without it. The .mkv output re-encoded the sound as AC-3 until 2026-11-27 (the
    copy was tried with a packet of zeros, which the Matroska muxer cannot convert)."""
    src = make_sample_clip(str(tmp_path / "camera.ts"), seconds=1.0, fps=25, width=320, height=240).path
    out = str(tmp_path / out_name)
    with caplog.at_level(logging.WARNING):
        stats = anonymize_file(src, out, fast_config(), progress=False)
    assert "re-encoded" not in caplog.text and "left out" not in caplog.text
    with av.open(src) as a, av.open(out) as b:
        frames_in = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        frames_out = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
    assert stats.packets_copied == len(frames_in) == len(frames_out) > 0
    assert all(f[:2] == b"\xff\xf1" for f in frames_in)  # ADTS, no CRC: 7-byte headers
    assert [f[7:] for f in frames_in] == frames_out  # the same AAC frames, headers moved to the container
    assert sound(out)[0] == "aac"


def subtitle_lines(path: str) -> list[tuple[float, float, list[bytes]]]:
    """(start s, duration s, text of each line) of every subtitle of the first subtitle stream of ``path``;
    styling ({\\i1}...) left out, as formats write it differently."""
    out = []
    with av.open(path) as c:
        stream = c.streams.subtitles[0]
        for packet in c.demux(stream):
            subtitles = stream.codec_context.decode2(packet) if packet.size else None
            if subtitles is not None:
                out.append((round(float(packet.pts * packet.time_base), 3),
                            round(float(packet.duration * packet.time_base), 3),
                            [re.sub(rb"{[^}]*}", b"", r.dialogue) for r in subtitles]))
    return out


@pytest.mark.parametrize("out_name, codec", [("out.mkv", "srt"), ("out.mp4", "mov_text"), ("out.webm", "webvtt"),
                                             ("out.ts", None)])
def test_subtitles_are_copied_else_converted_to_the_containers_text_format_else_left_out(
        small_clip, tmp_path, caplog, out_name, codec):
    """SRT subtitles (Matroska) are copied into an .mkv; an .mp4 takes text subtitles as mov_text, a .webm as
    WebVTT, so they are converted (same text, same times); an MPEG-TS has no text format: left out with a
    warning. The .mp4 used to refuse the whole file, then (a first fix) to leave them out."""
    src = str(tmp_path / "with-subtitles.mkv")
    with_subtitles(small_clip.path, "1\n00:00:00,100 --> 00:00:00,600\nhello\n\n2\n00:00:00,700 --> "
                                    "00:00:00,900\n<i>world</i>\n", src)
    assert [s.type for s in av.open(src).streams] == ["video", "audio", "subtitle"]
    out = str(tmp_path / out_name)
    with caplog.at_level(logging.WARNING):
        stats = anonymize_file(src, out, fast_config(), progress=False)
    assert stats.frames_out == len(small_clip.pts)
    with av.open(out) as c:
        types = [s.type for s in c.streams]
        written = c.streams.subtitles[0].codec_context.codec.name if c.streams.subtitles else None
    if codec is None:
        assert "subtitle stream 2 (srt) left out: the mpegts container cannot take it as it is" in caplog.text
        assert types == ["video", "audio"]
        return
    assert types == ["video", "audio", "subtitle"] and written == codec
    assert subtitle_lines(out) == subtitle_lines(src)
    if out_name == "out.mkv":  # copied packet for packet
        assert subtitle_packets(out) == subtitle_packets(src)
    else:
        assert f"subtitle stream 2 (srt) re-encoded as {codec}" in caplog.text


def test_audio_is_left_out_with_a_warning_where_the_container_holds_video_only(small_clip, tmp_path, caplog):
    """A raw H.264 stream (.h264) holds no sound: the job goes on without it and says so (the audio
    re-encoder found no encoder for it and refused the whole file)."""
    out = str(tmp_path / "out.h264")
    with caplog.at_level(logging.WARNING):
        stats = anonymize_file(small_clip.path, out, fast_config(), progress=False)
    assert stats.frames_out == len(small_clip.pts)
    assert "audio stream 1 (aac) left out: the h264 container cannot take it as it is" in caplog.text
    with av.open(out) as c:
        assert [s.type for s in c.streams] == ["video"]
