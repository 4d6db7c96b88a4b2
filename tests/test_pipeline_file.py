"""End-to-end file anonymization on real H.264/AAC clips (CPU)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from streamer.detections import Detections, Frame
from streamer.pipeline import anonymize_file
from streamer.sample import make_sample_clip
from streamer.sources.video_file import VideoFileSource, top_level_boxes
from streamer.stages.detector import CenterFaceDetector
from tests.conftest import SHARED_VIDEOS, fast_config
from tests.media import (audio_digest, box_difference, joined_ts, outside_mask, stream_types, video_frames,
                         video_times)


@pytest.fixture(scope="module")
def blurred(clip, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("out") / "blurred.mp4")
    stats = anonymize_file(clip.path, out, fast_config(), progress=False)
    return out, stats


def test_every_frame_once_with_original_timestamps(clip, blurred):
    out, stats = blurred
    assert stats.frames_in == stats.frames_out == len(clip.face_boxes)
    assert stats.frames_dropped == 0
    assert video_times(out) == pytest.approx(video_times(clip.path), abs=1e-6)


def test_audio_copied_untouched(clip, blurred):
    out, stats = blurred
    assert stream_types(out) == ["video", "audio"]
    n_in, dur_in, md5_in = audio_digest(clip.path)
    n_out, dur_out, md5_out = audio_digest(out)
    assert (n_out, md5_out) == (n_in, md5_in)
    assert dur_out == pytest.approx(dur_in, abs=0.05)
    assert stats.packets_copied == n_in


def test_faces_changed_background_kept(clip, blurred):
    out, _ = blurred
    original, anonymized = video_frames(clip.path), video_frames(out)
    for i, (a, b, boxes) in enumerate(zip(original, anonymized, clip.face_boxes)):
        for box in boxes:
            assert box_difference(a, b, box) > 12, f"frame {i}: face at {box} looks unchanged"
        keep = outside_mask(a.shape, boxes, grow=2.0)
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))[keep].mean()
        assert diff < 2.5, f"frame {i}: background changed by {diff:.2f}"


def _overlapping_scores(found: Detections, box) -> list[float]:
    scores = []
    for det, score in zip(found.xyxy, found.scores):
        overlap = max(0, min(box[2], det[2]) - max(box[0], det[0])) * max(0, min(box[3], det[3]) - max(box[1], det[1]))
        if overlap > 0.1 * (box[2] - box[0]) * (box[3] - box[1]):
            scores.append(float(score))
    return scores


def test_mask_mode_leaves_no_detectable_face(clip, tmp_path):
    """Re-detection at CenterFace's standard 0.5 confidence, the protocol of the generator
    evaluation. The pipeline's 0.2 is tuned for recall and fires on the black head silhouette
    (hair and ears stay outside the ellipse): that silhouette scores 0.3-0.5, a real face > 0.6."""
    out = str(tmp_path / "masked.mp4")
    anonymize_file(clip.path, out, fast_config(**{"anonymizer.mode": "mask"}), progress=False)
    detector = CenterFaceDetector(fast_config(**{"detector.threshold": 0.1}).detector)
    original, frames = video_frames(clip.path), video_frames(out)
    after_scores = []
    for i, (before, after) in enumerate(zip(original, frames)):
        found_before, found_after = detector([before, after])
        for box in clip.face_boxes[i]:
            assert max(_overlapping_scores(found_before, box), default=0) > 0.6  # a clear face before
            score = max(_overlapping_scores(found_after, box), default=0)
            assert score < 0.6, f"frame {i}: a face-like response ({score:.2f}) is left at {box}"
            after_scores.append(score)
    redetected = np.mean(np.array(after_scores) >= 0.5)
    assert redetected <= 0.03, f"{redetected:.0%} of masked faces are re-detected at 0.5"


class BlinkingDetector:
    """The real detector, blind on the given frame indices (counted in call order)."""

    def __init__(self, inner, blind: set[int]):
        self.inner, self.blind, self.seen = inner, blind, 0

    def __call__(self, images):
        results = self.inner(images)
        out = []
        for r in results:
            out.append(Detections.empty() if self.seen in self.blind else r)
            self.seen += 1
        return out


def test_tracker_covers_detector_misses(clip, tmp_path):
    config = fast_config()
    blind = set(range(20, 26))  # 6 frames = 0.24 s < keep_seconds
    detector = BlinkingDetector(CenterFaceDetector(config.detector), blind)
    out = str(tmp_path / "blink.mp4")
    stats = anonymize_file(clip.path, out, config, progress=False, detector=detector)
    assert stats.faces_tracked_only >= len(blind) * 2
    original, anonymized = video_frames(clip.path), video_frames(out)
    for i in sorted(blind):
        for box in clip.face_boxes[i]:
            assert box_difference(original[i], anonymized[i], box) > 12, f"frame {i}: face uncovered"


def test_without_tracker_blind_frames_leak(clip, tmp_path):
    """Control for the test above: the blind frames really are unanonymized without the tracker."""
    config = fast_config(**{"tracker.enabled": False})
    detector = BlinkingDetector(CenterFaceDetector(config.detector), {20})
    out = str(tmp_path / "blink-notrack.mp4")
    anonymize_file(clip.path, out, config, progress=False, detector=detector)
    original, anonymized = video_frames(clip.path, limit=21), video_frames(out, limit=21)
    assert all(box_difference(original[20], anonymized[20], b) < 6 for b in clip.face_boxes[20])


def test_variable_frame_rate_and_audio_first(tmp_path):
    src = make_sample_clip(str(tmp_path / "vfr.mkv"), seconds=1.0, fps=25, width=640, height=360,
                           frame_durations=[100, 250, 100, 400], audio_first=True)
    assert stream_types(src.path) == ["audio", "video"]
    out = str(tmp_path / "vfr-out.mkv")
    stats = anonymize_file(src.path, out, fast_config(), progress=False)
    times_in, times_out = video_times(src.path), video_times(out)
    assert len(set(np.round(np.diff(times_in), 3))) > 1  # really variable
    assert times_out == pytest.approx(times_in, abs=1e-3)
    assert stats.frames_out == len(src.pts)
    assert audio_digest(out)[2] == audio_digest(src.path)[2]


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("policy", ["mask_frame", "drop"])
def test_stage_failure_policy(small_clip, tmp_path, policy, threads, monkeypatch):
    monkeypatch.setenv("STREAMER_STAGE_THREADS", threads)  # 2: detection and anonymization on two threads
    # one frame per detector call whatever the default (8 on a GPU until 2026-11-26: 4 calls for 25 frames)
    config = fast_config(**{"pipeline.on_error": policy, "detector.batch_size": 1})
    inner = CenterFaceDetector(config.detector)
    calls = {"n": 0}

    def flaky(images):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated detector fault")
        return inner(images)

    out = str(tmp_path / f"{policy}.mp4")
    stats = anonymize_file(small_clip.path, out, config, progress=False, detector=flaky)
    frames = video_frames(out)
    if policy == "mask_frame":
        assert stats.frames_masked == 1 and len(frames) == stats.frames_in
        assert frames[4].mean() < 20  # the whole frame is blacked out, face included
    else:
        assert stats.frames_dropped == 1 and len(frames) == stats.frames_in - 1


def test_a_stage_failing_on_every_frame_is_warned_about_in_a_few_lines(small_clip, tmp_path, monkeypatch, caplog):
    """A GPU out of memory fails every frame, with four lines of CUDA advice in each message: the first
    failures are named in one line each, the rest counted (one warning every REPORT_EVERY); none is lost."""
    import logging

    from streamer.pipeline import FrameProcessor

    def out_of_memory(images):
        raise RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at "
                           "some other API call\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1")

    monkeypatch.setattr(FrameProcessor, "REPORT_EVERY", 10)
    caplog.set_level(logging.WARNING, logger="streamer.pipeline")
    stats = anonymize_file(small_clip.path, str(tmp_path / "out.mp4"), fast_config(**{"detector.batch_size": 1}),
                           progress=False, detector=out_of_memory)
    assert stats.frames_masked == stats.frames_in == stats.frames_out == 25
    named = [r.getMessage() for r in caplog.records if "detector failed on frame" in r.getMessage()]
    assert len(named) == 5 + 2 and all("\n" not in m and "CUDA kernel errors" not in m for m in named), named
    assert named[0] == "detector failed on frame 0: CUDA error: out of memory; frame masked"
    assert named[4].endswith("further failures are counted, with a warning every 10")
    assert named[5].startswith("10 frames masked on stage failures so far; the latest: detector failed on frame 9:")


def test_two_stage_threads_write_the_same_video(small_clip, tmp_path, monkeypatch):
    """Detection and anonymization on two threads (the GPU default) change nothing in the output."""
    outputs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("STREAMER_STAGE_THREADS", threads)
        out = str(tmp_path / f"threads-{threads}.mp4")
        stats = anonymize_file(small_clip.path, out, fast_config(**{"detector.batch_size": 3}), progress=False)
        assert stats.frames_out == stats.frames_in == len(small_clip.face_boxes)
        outputs.append(video_frames(out))
    assert all(np.array_equal(a, b) for a, b in zip(*outputs)) and len(outputs[0]) == len(outputs[1])


def test_a_gpu_defaults_to_eight_frames_per_batch_on_one_stage_thread(monkeypatch):
    """What the H100 measured fastest for the whole pipeline (full gan at 1.19x the transcode against 0.94x
    for one frame per batch and 0.45x for 8 on two threads, 2026-11-27); the CPU keeps one frame; both
    stay settable."""
    import streamer.factory as factory

    monkeypatch.delenv(factory.STAGE_THREADS_ENV, raising=False)
    assert factory.frames_per_batch(fast_config(**{"pipeline.device": "cpu"})) == 1
    monkeypatch.setattr(factory, "torch_device", lambda config: "cuda")
    assert factory.frames_per_batch(fast_config()) == 8 and factory.stage_threads() == 1
    monkeypatch.setenv(factory.STAGE_THREADS_ENV, "2")
    assert factory.frames_per_batch(fast_config(**{"detector.batch_size": 1})) == 1 and factory.stage_threads() == 2


@pytest.mark.parametrize("name,value,message", [("STREAMER_STAGE_THREADS", "4", "must be 1 or 2"),
                                                ("STREAMER_DETECT_AHEAD", "yes", "must be 0 or 1")])
def test_bad_stage_settings_are_one_line(small_clip, tmp_path, monkeypatch, name, value, message):
    from streamer.config import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} {message}"):
        anonymize_file(small_clip.path, str(tmp_path / "out.mp4"), fast_config(), progress=False)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.skipif(not SHARED_VIDEOS.is_dir(), reason="../shared/data/videos not present")
def test_real_clip_with_audio(tmp_path):
    src = str(SHARED_VIDEOS / "face_recognition_short_hamilton_clip.mp4")
    out = str(tmp_path / "hamilton.mp4")
    stats = anonymize_file(src, out, fast_config(), progress=False)
    assert stats.frames_out == stats.frames_in == len(video_times(src))
    assert video_times(out) == pytest.approx(video_times(src), abs=1e-3)
    assert audio_digest(out)[2] == audio_digest(src)[2]
    assert stats.faces_detected > stats.frames_in  # several performers on stage


def test_avi_without_presentation_timestamps_to_mp4(tmp_path):
    """AVI stores decode order only: H.264 with B-frames decodes to out-of-order pts."""
    src = make_sample_clip(str(tmp_path / "bframes.avi"), seconds=1.0, fps=25, width=640, height=360)
    import av

    with av.open(src.path) as c:
        raw = [f.pts for f in c.decode(video=0)]
    assert raw != sorted(raw)  # the input really is faulty
    out = str(tmp_path / "bframes.mp4")
    stats = anonymize_file(src.path, out, fast_config(), progress=False)
    times = video_times(out)
    assert len(times) == stats.frames_in == len(src.pts) and not stats.truncated
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(times[0] + (len(times) - 1) / 25, abs=0.1)


@pytest.mark.parametrize("name, codec, out_name, out_codec", [
    ("hevc.mkv", "libx265", "out.mkv", "libx264"), ("vp9.mkv", "libvpx-vp9", "out.mkv", "libx264"),
    ("h264.mov", "libx264", "out.mov", "libx264"), ("mpeg4.avi", "mpeg4", "out.mkv", "libx264"),
    # AVI keeps no presentation times: H.264 in AVI reads back one frame late in FFmpeg-based
    # players (README, known limits), so AVI-to-AVI is checked with FFmpeg's own AVI default codec
    ("mpeg4.avi", "mpeg4", "out.avi", "mpeg4")])
def test_other_codecs_and_containers(tmp_path, name, codec, out_name, out_codec):
    """HEVC, VP9, MPEG-4 Part 2, QuickTime and AVI inputs: every frame once, same times, audio copied."""
    src = make_sample_clip(str(tmp_path / name), seconds=0.6, fps=25, width=320, height=240, codec=codec)
    out = str(tmp_path / out_name)
    stats = anonymize_file(src.path, out, fast_config(**{"encoder.codec": out_codec}), progress=False)
    assert stats.frames_out == stats.frames_in == len(src.pts) and stats.frames_dropped == 0
    assert video_times(out) == pytest.approx(video_times(src.path), abs=1e-3)
    assert stream_types(out) == ["video", "audio"]
    assert audio_digest(out)[2] == audio_digest(src.path)[2]


def test_h264_in_avi_keeps_frame_order(tmp_path):
    """AVI stores decode order only: the encoder makes no B-frames there, so no frame is reordered."""
    src = make_sample_clip(str(tmp_path / "in.avi"), seconds=0.6, fps=25, width=320, height=240, codec="mpeg4")
    out = str(tmp_path / "out.avi")
    anonymize_file(src.path, out, fast_config(), progress=False)
    times = video_times(out)
    assert len(times) == len(src.pts) and times == sorted(times)
    # at most one frame (40 ms here) late, never early: see the README's known limits
    lag = np.array(times) - np.array(video_times(src.path))
    assert np.all(lag >= -1e-3) and np.all(lag <= 0.07), lag


def test_an_avi_is_written_and_read_at_its_frame_rate(tmp_path):
    """An AVI stores one chunk per tick of its time base and states that rate as its frame rate. Written
    at a Matroska input's 1/1000 time base, the output said 1000 fps (39 empty chunks a frame). Read, an
    AVI written that way (the crowd clip in ../shared: 1/50 for 25 fps) gave its chunk rate and chunk
    count as frame rate and frame count (50 fps, 682 frames: the progress bar stopped half way), and its
    frames were timed by guessed presentation times, which put a frame's gap after the first frame."""
    import av

    mkv = make_sample_clip(str(tmp_path / "in.mkv"), seconds=1.0, fps=25, width=320, height=240)
    out = str(tmp_path / "out.avi")
    stats = anonymize_file(mkv.path, out, fast_config(), progress=False)
    with av.open(out) as c:
        video = c.streams.video[0]
        assert video.average_rate == 25 and video.time_base == Fraction(1, 25)
        assert sum(1 for p in c.demux(video) if p.size) == stats.frames_out == 25
    assert np.allclose(np.diff(video_times(out)), 0.04)

    padded = str(tmp_path / "padded.avi")  # ticks of 1/50 s, a frame every other tick
    with av.open(padded, mode="w") as c:
        video = c.add_stream("mpeg4", rate=25, options={"bf": "2"})  # B-frames: guessed pts out of order
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 50)
        for i, image in enumerate(video_frames(mkv.path)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = 2 * i, Fraction(1, 50)
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
    with av.open(padded) as c:
        assert c.streams.video[0].average_rate == 50  # what FFmpeg reports for such a file
    source = VideoFileSource(padded)
    try:
        assert source.info.fps == 25 and source.info.frames == pytest.approx(25, abs=1)
        times = [float(f.pts * f.time_base) for f in source if isinstance(f, Frame)]
    finally:
        source.close()
    assert len(times) == 25 and np.allclose(np.diff(times), 0.04)


def test_a_matroska_file_without_a_frame_duration_is_read_at_its_frame_rate(small_clip, tmp_path):
    """Remuxed without a default frame duration (as a stream template copy writes it), a Matroska file's
    average rate is FFmpeg's estimate from its first decode times, which it leaves unset for the first
    B-frames: 2500 fps for 25. Taken as it was, the VP9 encoder refused the first frame, and the tracker
    and the progress bar counted 100 times too many frames."""
    import av

    mkv = str(tmp_path / "remuxed.mkv")
    with av.open(small_clip.path) as inp, av.open(mkv, mode="w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
    with av.open(mkv) as c:
        assert c.streams.video[0].average_rate > 100  # what FFmpeg reports for it
    source = VideoFileSource(mkv)
    source.close()
    assert source.info.fps == 25 and source.info.frames == pytest.approx(len(small_clip.pts), abs=1)
    out = str(tmp_path / "out.webm")
    stats = anonymize_file(mkv, out, fast_config(), progress=False)
    assert stats.frames_out == len(small_clip.pts) and np.allclose(np.diff(video_times(out)), 0.04)


@pytest.mark.parametrize("faststart, first", [(True, b"moov"), (False, b"mdat")])
def test_an_mp4_output_has_its_index_first_so_it_plays_while_it_downloads(small_clip, tmp_path, faststart, first):
    """With the index (moov) at the end, a browser or a player reading over the network must fetch the
    whole file before showing a frame; encoder.faststart (default) writes it first."""
    out = str(tmp_path / "out.mp4")
    stats = anonymize_file(small_clip.path, out, fast_config(**{"encoder.faststart": faststart}), progress=False)
    boxes = top_level_boxes(out)
    assert boxes[0] == b"ftyp" and [b for b in boxes if b in (b"moov", b"mdat")][0] == first
    assert len(video_times(out)) == stats.frames_out == len(small_clip.pts)
    assert audio_digest(out)[2] == audio_digest(small_clip.path)[2]


def test_a_second_video_stream_is_named_in_a_warning_not_lost_silently(tmp_path, caplog):
    """Some dashcams store front and rear cameras as two video streams of one file."""
    import av

    src, out = str(tmp_path / "two-cameras.mp4"), str(tmp_path / "out.mp4")
    with av.open(src, mode="w") as c:
        front, rear = (c.add_stream("libx264", rate=25) for _ in range(2))
        for stream, (w, h) in ((front, (320, 240)), (rear, (160, 120))):
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(10):
            for stream in (front, rear):
                picture = av.VideoFrame.from_ndarray(np.zeros((stream.height, stream.width, 3), np.uint8),
                                                     format="rgb24")
                picture.pts = i
                for packet in stream.encode(picture):
                    c.mux(packet)
        for stream in (front, rear):
            for packet in stream.encode(None):
                c.mux(packet)
    with caplog.at_level("WARNING", logger="streamer"):
        stats = anonymize_file(src, out, fast_config(), progress=False)
    assert stats.frames_out == 10 and stream_types(out) == ["video"]
    assert "only video stream 0 is anonymized; stream 1 (h264 160x120) left out of the output" in caplog.text


@pytest.mark.parametrize("compositor", ["numpy", "torch"])
def test_a_frame_size_change_mid_stream_is_scaled_not_cropped(tmp_path, caplog, compositor):
    """Two recordings joined into one MPEG-TS, the second larger: every frame comes out at the first
    size with its whole picture (the right half of the larger frames is dark, and stays so)."""
    if compositor == "torch":  # frames converted and scaled on the torch device
        pytest.importorskip("torch")
    src, out = joined_ts(tmp_path), str(tmp_path / "out.mp4")
    with caplog.at_level("WARNING", logger="streamer"):
        stats = anonymize_file(src, out, fast_config(**{"pipeline.compositor": compositor}), progress=False)
    frames = video_frames(out)
    assert stats.frames_out == len(frames) == 20
    assert all(f.shape == (240, 320, 3) for f in frames)
    for frame in frames:  # bright left half, dark right half: the picture was scaled, not cut
        assert frame[:, :150].mean() > 200 and frame[:, 170:].mean() < 50
    assert "the frame size changes from 320x240 to 480x360 at frame 10" in caplog.text


def test_a_recording_cut_mid_stream_reports_the_frames_before_its_first_keyframe(tmp_path, caplog):
    """A piece cut from a longer MPEG-TS recording starts between keyframes: decoders drop what comes
    before the first keyframe without an error. Those frames are counted and named, not lost silently."""
    import av

    whole = make_sample_clip(str(tmp_path / "whole.ts"), seconds=4.0, fps=25, width=320, height=240,
                             audio=False, gop=25)
    data = open(whole.path, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[len(data) * 3 // 10 // 188 * 188:])  # whole 188-byte TS packets
    with av.open(str(cut)) as c:
        keys = [p.is_keyframe for p in c.demux(video=0) if p.size]
    before_first_key = keys.index(True)
    assert before_first_key > 5  # the cut really is mid-GOP
    with caplog.at_level("WARNING", logger="streamer"):
        stats = anonymize_file(str(cut), str(tmp_path / "out.mp4"), fast_config(), progress=False)
    assert stats.frames_out == len(keys) - before_first_key
    assert stats.decode_errors == before_first_key
    assert f"starts mid-stream: the {before_first_key} frames before its first keyframe" in caplog.text


def test_a_recording_whose_clock_starts_late_comes_out_starting_at_zero(tmp_path):
    """An MPEG-TS from a camera starts wherever its 90 kHz clock was (here one hour in). Kept as it
    was, an MP4 opens with an hour of nothing; moved back like FFmpeg's command line does, it starts
    at zero with sound and picture as far apart as they were."""
    import av

    src, out = str(tmp_path / "late.ts"), str(tmp_path / "late.mp4")
    make_sample_clip(src, seconds=1.0, fps=25, width=320, height=240,
                     container_options={"output_ts_offset": "3600"})
    stats = anonymize_file(src, out, fast_config(), progress=False)
    assert stats.frames_out == 25

    def starts(path):
        with av.open(path) as c:
            return (c.duration / 1e6, *(float(s.start_time * s.time_base) for s in (c.streams.video[0],
                                                                                   c.streams.audio[0])))

    _, video_in, audio_in = starts(src)
    duration, video_out, audio_out = starts(out)
    assert video_in >= 3600 and duration < 1.5 and min(video_out, audio_out) == pytest.approx(0, abs=0.01)
    assert video_out - audio_out == pytest.approx(video_in - audio_in, abs=0.002)
    times_in, times_out = video_times(src), video_times(out)
    assert np.allclose(np.diff(times_out), np.diff(times_in), atol=1e-3)  # frame spacing unchanged


@pytest.mark.parametrize("out_name, out_codec, encoder", [
    ("out.webm", "vp9", "libvpx-vp9"),        # PyAV refuses the pair when the stream is added
    ("out.ogv", "vp8", "libvpx"),             # the Ogg muxer refuses it only at its first packet
    ("out.y4m", "rawvideo", "wrapped_avframe"),  # a YUV4MPEG file holds uncompressed pictures only
])
def test_a_container_that_cannot_hold_h264_gets_its_own_video_codec(tmp_path, caplog, out_name, out_codec, encoder):
    """H.264 (the default encoder) cannot go into a WebM, an Ogg or a YUV4MPEG file: the container's
    own codec is used, with a warning, and every frame is there at its time (on the code before, the
    .ogv and .y4m jobs failed at the first frame with 'Invalid argument' / 'Invalid data')."""
    import av

    src = make_sample_clip(str(tmp_path / "in.mp4"), seconds=0.4, fps=25, width=320, height=240, audio=False)
    out = str(tmp_path / out_name)
    with caplog.at_level("WARNING", logger="streamer"):
        stats = anonymize_file(src.path, out, fast_config(), progress=False)
    with av.open(out) as c:
        assert c.streams.video[0].codec_context.name == out_codec
    assert stats.frames_out == len(video_times(out)) == len(src.pts)
    assert video_times(out) == pytest.approx(video_times(src.path), abs=1e-3)
    assert f"cannot hold libx264 video: encoding with {encoder}" in caplog.text
