"""A camera's sound (``audio: true``): carried to its RTSP output and its recordings, in its place
against the pictures; left out by default."""

from __future__ import annotations

import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_live import _health, _wait, frames_out, record_with_quick_form, start_serve

from streamer.config import ConfigError, EncoderConfig, config_from_dict
from streamer.live.audio import AudioBuffer, AudioSpec, CameraAudio
from streamer.live.outputs import SegmentRecorder
from streamer.live.rtsp_source import TIME_BASE, LiveFrame
from streamer.live.settings import parse_live
from streamer.sample import make_sample_clip
from tests.media import TONE_HZ, dominant_hz, sound, with_tone


def _stream_types(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [s.type for s in c.streams]


def _seconds(path: Path, kind: str) -> float:
    """Seconds of ``kind`` the file holds: the sound's samples ("audio"), or the time from its start to
    the end of its last picture at 25 fps ("video"; pictures dropped when the anonymizer is behind
    leave gaps, not a shorter recording)."""
    with av.open(str(path)) as c:
        if kind == "video":
            return max(float(f.pts * f.time_base) for f in c.decode(video=0)) + 1 / 25
        return sum(f.samples / f.sample_rate for f in c.decode(audio=0))


def _heard_from(url: str, seconds: float) -> tuple[str, np.ndarray, int]:
    """(codec, mono samples, rate) of ``seconds`` of the first audio stream an RTSP client receives."""
    resampler = av.AudioResampler(format="flt", layout="mono")
    parts, rate = [], 0
    with av.open(url, options={"rtsp_transport": "udp"}, timeout=(20, 5)) as c:
        codec = c.streams.audio[0].codec_context.name
        for frame in c.decode(audio=0):
            for mono in resampler.resample(frame):
                parts.append(mono.to_ndarray().reshape(-1))
                rate = mono.sample_rate
            if sum(len(p) for p in parts) >= seconds * rate:
                break
    return codec, np.concatenate(parts), rate


def test_a_camera_with_audio_true_publishes_and_records_its_sound_and_one_without_does_not(
        tmp_path, sounding_face_clip, rtsp_server_factory, publisher_factory):
    source, sink = rtsp_server_factory(), rtsp_server_factory()
    publisher_factory(sounding_face_clip.path, source.publish_url("cam"), audio=True)
    loud, quiet = tmp_path / "loud", tmp_path / "quiet"
    proc, port = start_serve(tmp_path, [
        {"name": "loud", "input": source.play_url("cam"), "transport": "udp", "audio": True,
         "output": sink.publish_url("loud"), "output_transport": "udp",
         "record": {"dir": str(loud), "segment_seconds": 2}},
        {"name": "quiet", "input": source.play_url("cam"), "transport": "udp",
         "record": {"dir": str(quiet), "segment_seconds": 2}},
    ], stall_seconds=2, connect_timeout=3, backoff_initial=0.3, backoff_max=1.0)
    try:
        _wait(lambda: frames_out(proc, port, "loud") > 50 and frames_out(proc, port, "quiet") > 50, 90,
              "both cameras' frames")
        codec, heard, rate = _heard_from(sink.play_url("loud"), seconds=1.0)
        assert codec == "aac" and dominant_hz(heard, rate) == pytest.approx(TONE_HZ, abs=5)
        cameras = _health(port)
        assert cameras["loud"]["audio_s"] > 1.0 and cameras["quiet"]["audio_s"] == 0.0, cameras
        assert cameras["loud"]["audio_dropped_s"] == 0.0, cameras
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "the camera's audio (aac) is not carried" in err and "'audio: true' carries it" in err

    segments = sorted(loud.glob("loud-*.mp4"))
    assert len(segments) >= 2 and all(_stream_types(p) == ["video", "audio"] for p in segments), segments
    video = sum(_seconds(p, "video") for p in segments)
    audio = sum(_seconds(p, "audio") for p in segments)
    # the sound covers the recording: all of it but the stretch before the camera's first sound packet
    # arrived (RTP streams are synchronised by the first RTCP report) and a frame at each end. Pictures
    # dropped at the input (two cameras on two cores) just before a cut leave a gap that belongs to no
    # segment's span of pictures but has its sound: hence the 5 % over
    assert video - 0.6 < audio < 1.05 * video + 0.2, (video, audio)
    _, recorded, rate = sound(str(segments[1]))
    assert dominant_hz(recorded, rate) == pytest.approx(TONE_HZ, abs=5)
    assert all(_stream_types(p) == ["video"] for p in sorted(quiet.glob("quiet-*.mp4")))


def _frame(seconds: float, samples: int = 1024, rate: int = 44100) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.full((2, samples), 0.1, np.float32), format="fltp", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = rate, round(seconds * rate), Fraction(1, rate)
    return frame


def test_sound_that_starts_after_the_first_picture_keeps_its_place_in_every_segment(tmp_path):
    """The camera's sound begins 0.277 s after its first picture; 5 s recorded in 2 s segments. The
    recording's sound starts 0.277 s in (less the AAC encoder's 1024-sample lead-in) and, in later
    segments, where the cut fell. Before ``delay_moov`` each segment's first sound packet was moved
    to its start (the first segment's sound played 0.25 s early)."""
    recorder = SegmentRecorder(str(tmp_path), "c", EncoderConfig(preset="ultrafast"), 25, segment_seconds=2,
                               audio=AudioSpec(44100, "stereo"))
    sound_at, fed = 0.277, 0.0
    for i in range(125):
        image = np.full((64, 64, 3), 100, np.uint8)
        recorder.write(LiveFrame(index=i, pts=round(i / 25 / TIME_BASE), time_base=TIME_BASE, image=image, fps=25))
        while sound_at < (i + 1) / 25:
            recorder.write_audio(_frame(sound_at))
            sound_at += 1024 / 44100
            fed += 1024 / 44100
    recorder.close()
    segments = recorder.segments()
    assert len(segments) == 3
    starts = []
    for path in segments:
        with av.open(str(path)) as c:
            starts.append(next(float(p.pts * p.time_base) for p in c.demux(audio=0) if p.size))
    assert starts[0] == pytest.approx(0.277 - 1024 / 44100, abs=0.002), starts
    assert all(0 < s < 0.03 for s in starts[1:]), starts  # the packet under the cut, not moved to 0
    assert sum(_seconds(p, "audio") for p in segments) == pytest.approx(fed, abs=0.05)


def test_camera_sound_is_put_on_the_pictures_timeline_in_one_format(tmp_path):
    """Session 1 (AAC stereo 44.1 kHz): sound from before the first picture (at 1.0 s in the input)
    is left out, the rest lands at base + (time - 1.0). Session 2, after a reconnect, brings G.711
    mu-law mono at 8 kHz, as many cameras send: converted to session 1's format, never before the
    end of the sound already handed out."""
    first = str(tmp_path / "aac.mp4")
    make_sample_clip(first, seconds=2.0, fps=25, width=64, height=64, faces=0, audio=True)
    audio = CameraAudio()
    with av.open(first) as c:
        stream = c.streams.audio[0]
        audio.start_session(stream)
        out = [item for packet in c.demux(stream) for item in audio.decode(packet, origin=1.0, base=10.0)]
    starts = [start for start, _ in out]
    assert audio.spec == AudioSpec(44100, "stereo")
    assert 10.0 <= starts[0] < 10.03 and starts == sorted(starts)
    assert all(f.format.name == "fltp" and f.sample_rate == 44100 for _, f in out)
    assert all(f.pts == round(start * 44100) for start, f in out)
    end = starts[-1] + out[-1][1].samples / 44100

    second = str(tmp_path / "mulaw.mov")
    with_tone(first, second, "pcm_mulaw", 8000, "mono")
    with av.open(second) as c:
        stream = c.streams.audio[0]
        audio.start_session(stream)
        # base earlier than the sound already out (a camera clock reset): it continues from its end
        later = [item for packet in c.demux(stream) for item in audio.decode(packet, origin=0.0, base=end - 0.5)]
    assert later and later[0][0] == pytest.approx(end, abs=1e-6)
    assert all(f.layout.name == "stereo" and f.sample_rate == 44100 for _, f in later)
    heard = np.concatenate([f.to_ndarray()[0] for _, f in later])
    assert dominant_hz(heard, 44100) == pytest.approx(TONE_HZ, abs=5)


def test_the_sound_buffer_drops_the_oldest_beyond_its_length_and_counts_it():
    buffer = AudioBuffer(seconds=1.0)
    step = 1024 / 44100
    for i in range(100):  # 2.3 s of sound whose pictures never come
        buffer.put(i * step, _frame(i * step))
    kept = buffer.take(before=float("inf"))
    assert kept[-1][0] - kept[0][0] <= 1.0 < kept[-1][0] - kept[0][0] + 2 * step
    assert buffer.dropped_seconds == pytest.approx((100 - len(kept)) * step)
    with pytest.raises(ValueError, match="seconds must be > 0"):
        AudioBuffer(seconds=0)


def test_audio_must_be_true_or_false():
    camera = {"input": "rtsp://a/b", "record": "/tmp/x", "audio": "yes"}
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.audio: must be true or false, got 'yes'"):
        parse_live(config_from_dict({"cameras": [camera]}))
    _, (spec,) = parse_live(config_from_dict({"cameras": [{**camera, "audio": True}]}))
    assert spec.audio is True
    _, (spec,) = parse_live(config_from_dict({"cameras": [{k: v for k, v in camera.items() if k != "audio"}]}))
    assert spec.audio is False  # off unless asked: voices are not anonymized


def test_a_camera_that_brings_sound_after_a_reconnect_records_it_from_then_on(
        tmp_path, face_clip, sounding_face_clip, rtsp_server_factory, publisher_factory):
    """The camera connects without sound (its microphone off), then comes back with it: the segments
    before are video only, the ones after carry the sound (the outputs reopen with a sound track)."""
    source = rtsp_server_factory()
    silent = publisher_factory(face_clip.path, source.publish_url("cam"))
    rec = tmp_path / "rec"
    proc, port = start_serve(tmp_path, [
        {"name": "door", "input": source.play_url("cam"), "transport": "udp", "audio": True,
         "record": {"dir": str(rec), "segment_seconds": 1}},
    ], stall_seconds=1, connect_timeout=3, backoff_initial=0.3, backoff_max=1.0)
    try:
        _wait(lambda: frames_out(proc, port, "door") > 25, 60, "frames without sound")
        silent.close()
        publisher_factory(sounding_face_clip.path, source.publish_url("cam"), audio=True)
        _wait(lambda: _health(port)["door"]["audio_s"] > 2.0, 60, "sound after the reconnect")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    kinds = [_stream_types(p) for p in sorted(rec.glob("door-*.mp4"))]
    assert kinds[0] == ["video"] and kinds[-1] == ["video", "audio"], kinds
    with_sound = [p for p in sorted(rec.glob("door-*.mp4")) if _stream_types(p) == ["video", "audio"]]
    _, heard, rate = sound(str(with_sound[-1]))
    assert dominant_hz(heard, rate) == pytest.approx(TONE_HZ, abs=5)


def test_the_quick_form_with_camera_audio_records_a_g711_camera_s_sound(tmp_path, long_face_clip,
                                                                         gst_rtsp_server_factory):
    """``streamer anonymize rtsp://cam out.mp4 --camera-audio`` against a camera that sends its
    microphone as G.711 mu-law at 8 kHz (PCMU, over RTSP/TCP): the recording holds it as AAC."""
    camera = str(tmp_path / "camera.mov")
    with_tone(long_face_clip, camera, "pcm_mulaw", 8000, "mono")
    server = gst_rtsp_server_factory(play_sound={"cam": camera})
    record_with_quick_form(tmp_path, server.url("cam"), tmp_path / "out.mp4", "--camera-audio", min_bytes=100_000)
    (segment,) = sorted(tmp_path.glob("out-*-00000.mp4"))
    assert _stream_types(segment) == ["video", "audio"]
    codec, heard, rate = sound(str(segment))
    assert (codec, rate) == ("aac", 8000) and dominant_hz(heard, rate) == pytest.approx(TONE_HZ, abs=5)
    video, audio = _seconds(segment, "video"), _seconds(segment, "audio")
    # at 8 kHz an AAC frame lasts 0.128 s: the last picture's sound may end one frame past it, and the
    # encoder pads its last frame with silence
    assert video - 0.6 < audio < video + 2 * 1024 / 8000, (video, audio)


def test_sound_without_a_decoder_here_is_left_out_not_fatal():
    """A camera whose sound FFmpeg cannot decode (no decoder for its codec, no sample rate in the
    stream's description): the session goes on video only. It used to stop the camera: the message
    naming the codec read the missing decoder's name."""
    from types import SimpleNamespace

    from streamer.live.rtsp_source import audio_codec_name

    undecodable = SimpleNamespace(codec_context=None)
    undescribed = SimpleNamespace(codec_context=SimpleNamespace(name="g726", sample_rate=0, channels=1))
    audio = CameraAudio()
    assert not audio.start_session(undecodable) and not audio.start_session(undescribed) and audio.spec is None
    assert audio_codec_name(undecodable) == "unknown codec" and audio_codec_name(undescribed) == "g726"
