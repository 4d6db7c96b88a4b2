"""``-`` as input or output: a video piped in on standard input, the anonymized one out on standard output
(MPEG-TS), as in ``ffmpeg ... -f mpegts - | streamer anonymize - - | ffplay -``."""

from __future__ import annotations

import subprocess
import sys

import av
import pytest

from streamer.sample import make_sample_clip
from tests.media import audio_digest, box_difference, video_frames


@pytest.fixture(scope="module")
def camera_ts(tmp_path_factory):
    """1 s, 640x360 MPEG-TS with one face and AAC sound: what a camera or ffmpeg sends down a pipe."""
    return make_sample_clip(str(tmp_path_factory.mktemp("pipes") / "camera.ts"), seconds=1.0, fps=25,
                            width=640, height=360, faces=1)


def run(*args: str, stdin=None) -> subprocess.CompletedProcess:
    """``streamer anonymize ARGS`` with bytes on standard input; output as bytes."""
    return subprocess.run([sys.executable, "-m", "streamer.cli", "anonymize", *args, "--detector-width", "320"],
                          input=stdin, capture_output=True, timeout=300)


def assert_anonymized_copy(source, out: str) -> None:
    """Every frame, each face changed, the sound's packets all there."""
    original, anonymized = video_frames(source.path), video_frames(out)
    assert len(anonymized) == len(original) == len(source.face_boxes)
    for a, b, boxes in zip(original, anonymized, source.face_boxes):
        for box in boxes:
            assert box_difference(a, b, box) > 12
    assert audio_digest(out)[0] == audio_digest(source.path)[0]


def test_a_video_piped_in_is_anonymized_into_a_file(camera_ts, tmp_path):
    out = str(tmp_path / "out.mkv")
    proc = run("-", out, stdin=open(camera_ts.path, "rb").read())
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"standard input -> " in proc.stderr
    assert_anonymized_copy(camera_ts, out)


@pytest.mark.parametrize("piped_in", [False, True])
def test_the_anonymized_video_comes_out_on_standard_output(camera_ts, tmp_path, piped_in):
    args = ("-", "-") if piped_in else (camera_ts.path, "-")
    proc = run(*args, stdin=open(camera_ts.path, "rb").read() if piped_in else None)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:1] == b"\x47" and len(proc.stdout) % 188 == 0  # MPEG-TS packets, nothing else
    assert b"-> standard output" in proc.stderr
    out = tmp_path / "stdout.ts"
    out.write_bytes(proc.stdout)
    assert_anonymized_copy(camera_ts, str(out))
    with av.open(str(out)) as c:
        assert [s.codec_context.name for s in c.streams] == ["h264", "aac"]  # the sound copied, not re-encoded


def test_an_mp4_with_its_index_at_the_end_on_a_pipe_is_one_clear_error(clip, tmp_path):
    # FFmpeg reads a small one whole before it needs the index; this one (2 s of 720p) it cannot
    proc = run("-", str(tmp_path / "out.mkv"), stdin=open(clip.path, "rb").read())
    stderr = proc.stderr.decode()
    assert proc.returncode == 3 and "Traceback" not in stderr
    assert "cannot be read from a pipe: give it as a file" in stderr.splitlines()[-1]
    assert not (tmp_path / "out.mkv").exists()


def test_standard_input_into_a_folder_or_a_folder_to_standard_output_is_refused(camera_ts, tmp_path):
    proc = run("-", str(tmp_path) + "/", stdin=b"")
    assert proc.returncode == 4 and b"standard input has no file name" in proc.stderr
    proc = run(str(tmp_path), "-")
    assert proc.returncode == 4 and b"cannot all go to standard output" in proc.stderr and proc.stdout == b""


@pytest.mark.parametrize("terminal_is", ["stdin", "stdout"])
def test_a_terminal_as_the_pipe_is_refused(camera_ts, tmp_path, terminal_is):
    """A video cannot be typed in, and one written to a terminal prints garbage (as gzip refuses)."""
    import os
    import pty

    main_end, terminal = pty.openpty()
    try:
        args = ("-", str(tmp_path / "out.mkv")) if terminal_is == "stdin" else (camera_ts.path, "-")
        proc = subprocess.run([sys.executable, "-m", "streamer.cli", "anonymize", *args], stderr=subprocess.PIPE,
                              timeout=120, **{terminal_is: terminal})
    finally:
        os.close(main_end)
        os.close(terminal)
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert proc.returncode == (3 if terminal_is == "stdin" else 4)
    name = {"stdin": "input", "stdout": "output"}[terminal_is]
    assert last.startswith(f"streamer: error: standard {name} is a terminal"), last
    assert not (tmp_path / "out.mkv").exists()
