"""Photos in, photos out: a JPEG, PNG, WebP, BMP or TIFF is a one-frame input and is written back as an
image file of its kind."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from skimage import data

from streamer.pipeline import anonymize_file
from streamer.sample import ASTRONAUT_FACE_BOX, make_sample_clip
from tests.conftest import fast_config, run_cli
from tests.media import box_difference
from tests.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """The astronaut portrait (one real face) as a JPEG, quality 95."""
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    cv2.imwrite(str(path), data.astronaut()[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def _rgb(path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image[:, :, ::-1]


@pytest.mark.parametrize("kind", ["jpg", "png", "webp", "bmp", "tif"])
def test_a_photo_comes_back_as_an_image_with_the_face_replaced(photo, tmp_path, kind):
    exact = kind in ("png", "bmp", "tif")
    if kind != "jpg":
        cv2.imwrite(str(tmp_path / f"astronaut.{kind}"), cv2.imread(str(photo)))
        photo = tmp_path / f"astronaut.{kind}"
    out = tmp_path / f"out.{kind}"
    stats = anonymize_file(str(photo), str(out), fast_config(**{"anonymizer.mode": "mask"}), progress=False)
    assert stats.frames_out == 1 and stats.faces_detected == 1
    before, after = _rgb(photo), _rgb(out)
    assert after.shape == before.shape
    assert box_difference(before, after, ASTRONAUT_FACE_BOX) > 40
    rest = np.abs(before[300:].astype(int) - after[300:].astype(int)).mean()  # below the face
    assert rest == 0 if exact else rest < 3, rest  # PNG, BMP, TIFF lossless; JPEG at q 2, WebP at 75


def test_a_video_written_to_an_image_file_is_one_clear_error(small_clip, tmp_path):
    proc = run_cli("anonymize", small_clip.path, str(tmp_path / "out.jpg"), "-q")
    assert_one_line_error(proc, "an image file holds one picture and the input has 25 frames", 4)
    assert not (tmp_path / "out.jpg").exists()


def test_a_folder_of_clips_and_photos(small_clip, photo, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(small_clip.path, folder / "clip.mp4")
    shutil.copy(photo, folder / "snapshot.jpg")
    for kind in ("webp", "bmp", "tiff"):  # a phone's or a camera's snapshots (until 2026-11-26 left out)
        cv2.imwrite(str(folder / f"snapshot-{kind}.{kind}"), cv2.imread(str(photo)))
    proc = run_cli("anonymize", str(folder), str(tmp_path / "out"), "-q", "--mode", "mask")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "clip.mp4").stat().st_size > 0
    for name in ("snapshot.jpg", "snapshot-webp.webp", "snapshot-bmp.bmp", "snapshot-tiff.tiff"):
        assert box_difference(_rgb(photo), _rgb(tmp_path / "out" / name), ASTRONAUT_FACE_BOX) > 40, name


def test_a_phone_photo_with_exif_orientation_comes_out_upright(tmp_path):
    """Stored sideways with EXIF orientation 6 (turn clockwise to view): the face is looked for upright
    and the output image, which carries no EXIF, is written upright."""
    from PIL import Image

    upright = data.astronaut()[:400]  # not square: a size mix-up shows
    exif = Image.Exif()
    exif[0x0112] = 6
    src, out = tmp_path / "phone.jpg", tmp_path / "out.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(src, exif=exif, quality=95)
    stats = anonymize_file(str(src), str(out), fast_config(**{"anonymizer.mode": "mask"}), progress=False)
    assert stats.faces_detected == 1
    after = _rgb(out)
    assert box_difference(upright, after, ASTRONAUT_FACE_BOX) > 40
    assert np.abs(upright[300:].astype(int) - after[300:].astype(int)).mean() < 4


def test_an_animated_gif_of_a_phone_clip_is_upright_and_silent(tmp_path, caplog):
    """GIF holds no display rotation and no sound: pictures are written upright, the audio left out
    with a warning, the encoder is GIF's own."""
    import av

    clip = make_sample_clip(str(tmp_path / "phone.mp4"), seconds=0.4, fps=25, width=180, height=320,
                            rotation=-90)
    out = tmp_path / "out.gif"
    with caplog.at_level("WARNING", logger="streamer"):
        stats = anonymize_file(clip.path, str(out), fast_config(**{"anonymizer.mode": "mask"}), progress=False)
    with av.open(str(out)) as c:
        pictures = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.video[0].codec_context.name == "gif" and len(c.streams) == 1
    assert stats.frames_out == len(pictures) == len(clip.pts)
    assert pictures[0].shape == (320, 180, 3)
    assert "holds pictures only: the input's audio left out" in caplog.text
