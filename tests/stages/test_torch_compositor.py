"""The torch (GPU) compositor against the OpenCV one: same faces, same picture up to rounding, nothing
else touched; and the whole file pipeline through it on the CPU (forced with pipeline.compositor)."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from skimage import data

from streamer.config import AnonymizerConfig
from streamer.detections import Detections, Frame
from streamer.factory import build_compositor
from streamer.pipeline import FrameProcessor, RunStats, anonymize_file
from streamer.sample import ASTRONAUT_FACE_BOX
from streamer.stages.compositor import Compositor, place_face
from streamer.stages.torch_compositor import TorchCompositor
from tests.conftest import fast_config
from tests.media import box_difference, outside_mask, video_frames, video_times

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
X1, Y1, X2, Y2 = ASTRONAUT_FACE_BOX
#: The astronaut's face, a second face overlapping it, one leaving the frame, a tiny one.
FACES = Detections(xyxy=[ASTRONAUT_FACE_BOX, [X1 + 30, Y1 + 20, X2 + 30, Y2 + 20], [-20, -30, 60, 70],
                         [400, 400, 412, 425]], scores=[0.9, 0.8, 1.0, 1.0])
KEYPOINTS = np.array([[208, 102], [243, 100], [226, 122], [211, 147], [240, 146]], np.float32)


def _outside_crops(shape, detections: Detections, config: AnonymizerConfig, context: float = 1.0) -> np.ndarray:
    """Pixels outside every face's crop rectangle: no compositor may change them."""
    keep = np.ones(shape[:2], bool)
    for box in detections.xyxy:
        p = place_face(box, config, context)
        keep[max(p.y0, 0):max(p.y1, 0), max(p.x0, 0):max(p.x1, 0)] = False
    return keep


@pytest.mark.parametrize("mode", ["blur", "pixelate", "mask"])
@pytest.mark.parametrize("device", DEVICES)
def test_classic_modes_match_the_opencv_compositor(mode, device):
    config = AnonymizerConfig(mode=mode)
    image = data.astronaut()
    expected, ours = image.copy(), image.copy()
    assert Compositor(config)(expected, FACES) == TorchCompositor(config, device=device)(ours, FACES) == {mode: 4}
    d = np.abs(expected.astype(int) - ours.astype(int))
    assert d.max() <= 2 and d.mean() < 0.05, (d.mean(), d.max())
    for box in FACES.xyxy[:3]:
        assert box_difference(image, ours, box) > 15  # really anonymized
    keep = _outside_crops(image.shape, FACES, config)
    assert np.array_equal(ours[keep], image[keep])  # bit-identical outside the feathered regions


@pytest.mark.parametrize("device", DEVICES)
def test_gan_mode_and_fallback_match_the_opencv_compositor(device):
    from streamer.stages.gan import GanAnonymizer
    from tests.generator.conftest import random_generator

    gan = GanAnonymizer.from_module(random_generator(seed=3), device=device)
    config = AnonymizerConfig(mode="gan", fallback_mode="pixelate")
    faces = Detections(xyxy=[ASTRONAUT_FACE_BOX, [300, 20, 360, 90], [400, 400, 410, 425]], scores=[0.9, 1, 1],
                       keypoints=[KEYPOINTS, KEYPOINTS + [100, -80], np.full((5, 2), np.nan)], track_ids=[3, 5, 4])
    image = data.astronaut()
    expected, ours = image.copy(), image.copy()
    counts = Compositor(config, anonymizer=gan)(expected, faces)
    assert counts == TorchCompositor(config, device=device, anonymizer=gan)(ours, faces) == {"gan": 2, "pixelate": 1}
    for box in faces.xyxy[:2]:
        changed = box_difference(image, expected, box)
        assert changed > 30 and box_difference(expected, ours, box) < 0.02 * changed
    keep = _outside_crops(image.shape, faces, config, context=gan.context)
    assert np.array_equal(ours[keep], image[keep])


def test_faces_batched_across_frames_equal_frame_by_frame():
    config = AnonymizerConfig(mode="blur")
    compositor = TorchCompositor(config)
    images = [data.astronaut(), np.ascontiguousarray(data.astronaut()[:, ::-1])]
    detections = [FACES, FACES[[0, 2]]]
    one_by_one = [image.copy() for image in images]
    for image, faces in zip(one_by_one, detections):
        compositor(image, faces)
    frames = [Frame(index=i, pts=i, time_base=None, image=image.copy(), detections=faces)
              for i, (image, faces) in enumerate(zip(images, detections))]
    counts = compositor.anonymize_frames(frames)
    assert counts == [Counter(blur=4), Counter(blur=2)]
    for frame, expected in zip(frames, one_by_one):
        assert np.array_equal(frame.image, expected)


def test_frames_left_on_the_device_drop_their_stale_host_copy():
    """download=False: the host image still shows the original face, so it must be gone."""
    image = data.astronaut()
    frame = Frame(index=0, pts=0, time_base=None, image=image.copy(), detections=FACES)
    compositor = TorchCompositor(AnonymizerConfig(mode="mask"), download=False)
    frame.device_image = torch.from_numpy(image.copy())  # a device copy not sharing the host memory
    compositor.anonymize_frames([frame])
    assert frame.image is None and frame.device_image is not None
    assert box_difference(image, frame.to_host(), ASTRONAUT_FACE_BOX) > 50  # downloaded: anonymized


def test_a_failing_anonymizer_blacks_out_the_batch():
    class Broken:
        name, context, input_size = "broken", 1.0, None

        def anonymize_tensor(self, crops):
            raise RuntimeError("simulated GPU fault")

    config = fast_config(**{"pipeline.on_error": "mask_frame"})
    compositor = TorchCompositor(config.anonymizer, anonymizer=Broken(), download=False)
    stats = RunStats()
    processor = FrameProcessor(config, lambda images: [FACES for _ in images], None, compositor, stats)
    frames = [Frame(index=i, pts=i, time_base=None, image=data.astronaut()) for i in range(2)]
    processor.process(frames)
    assert stats.frames_masked == 2
    assert all(f.device_image is None and f.image is not None and f.image.max() == 0 for f in frames)


def test_factory_picks_the_compositor_and_says_why(caplog):
    caplog.set_level(logging.INFO, logger="streamer")
    assert type(build_compositor(fast_config(**{"pipeline.device": "cpu"}))) is Compositor
    assert "compositor: numpy/OpenCV on the CPU" in caplog.text
    forced = build_compositor(fast_config(**{"pipeline.device": "cpu", "pipeline.compositor": "torch"}))
    assert isinstance(forced, TorchCompositor) and forced.device.type == "cpu"
    assert "compositor: torch on cpu (pipeline.compositor: torch)" in caplog.text


def _runs_with_each(clip, tmp_path, monkeypatch, config, variable: str, values: tuple[str, ...]) -> dict:
    """Anonymize ``clip`` once per value of the environment ``variable``; every frame must come out.
    Returns {value: (stats, decoded output frames)}."""
    runs = {}
    for value in values:
        monkeypatch.setenv(variable, value)
        out = str(tmp_path / f"{variable}-{value}.mp4")
        stats = anonymize_file(clip.path, out, config, progress=False)
        assert stats.frames_in == stats.frames_out == len(clip.face_boxes) and stats.frames_masked == 0
        runs[value] = (stats, video_frames(out))
    return runs


@pytest.mark.parametrize("stage_threads", ["1", "2"])
def test_own_cuda_stream_per_stage_gives_the_same_video(small_clip, tmp_path, monkeypatch, stage_threads):
    """``STREAMER_STAGE_STREAMS=1`` (the detector and the GPU compositor each on their own CUDA stream, with
    one or two stage threads) changes no pixel and no count: every cross-stream wait is in place. On a
    machine without a GPU the variable is accepted and changes nothing."""
    monkeypatch.setenv("STREAMER_STAGE_THREADS", stage_threads)
    config = fast_config(**{"pipeline.compositor": "torch", "detector.batch_size": 3})
    runs = _runs_with_each(small_clip, tmp_path, monkeypatch, config, "STREAMER_STAGE_STREAMS", ("0", "1"))
    (shared_stats, shared), (own_stats, own) = runs["0"], runs["1"]
    assert own_stats.anonymized == shared_stats.anonymized and own_stats.faces_detected == shared_stats.faces_detected
    for i, (a, b) in enumerate(zip(shared, own)):
        assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 2, f"frame {i} differs"


def test_bad_stage_streams_setting_is_one_line(small_clip, tmp_path, monkeypatch):
    from streamer.config import ConfigError

    monkeypatch.setenv("STREAMER_STAGE_STREAMS", "yes")
    with pytest.raises(ConfigError, match="STREAMER_STAGE_STREAMS must be 0 or 1"):
        anonymize_file(small_clip.path, str(tmp_path / "out.mp4"), fast_config(), progress=False)
    assert not (tmp_path / "out.mp4").exists()


def test_file_pipeline_through_the_torch_compositor(small_clip, tmp_path, caplog):
    """The whole pipeline with frames on a torch device (the GPU where there is one, else the CPU): the
    detector reads the device copy, faces are anonymized there, and the output matches the OpenCV
    compositor's."""
    caplog.set_level(logging.INFO, logger="streamer")
    outputs = {}
    for name in ("numpy", "torch"):
        out = str(tmp_path / f"{name}.mp4")
        stats = anonymize_file(small_clip.path, out, fast_config(**{"pipeline.compositor": name}), progress=False)
        assert stats.frames_in == stats.frames_out == len(small_clip.face_boxes) and stats.frames_masked == 0
        outputs[name] = (out, stats)
    assert f"compositor: torch on {'cuda' if torch.cuda.is_available() else 'cpu'}" in caplog.text
    (numpy_out, numpy_stats), (torch_out, torch_stats) = outputs["numpy"], outputs["torch"]
    assert torch_stats.anonymized == numpy_stats.anonymized
    assert torch_stats.faces_detected == numpy_stats.faces_detected
    assert video_times(torch_out) == pytest.approx(video_times(small_clip.path), abs=1e-6)
    original, ours, reference = (video_frames(p) for p in (small_clip.path, torch_out, numpy_out))
    for i, (a, b, ref, boxes) in enumerate(zip(original, ours, reference, small_clip.face_boxes)):
        for box in boxes:
            assert box_difference(a, b, box) > 12, f"frame {i}: face at {box} looks unchanged"
            assert box_difference(ref, b, box) < 3, f"frame {i}: differs from the OpenCV compositor"
        keep = outside_mask(a.shape, boxes, grow=2.0)
        assert np.abs(a.astype(np.int16) - b.astype(np.int16))[keep].mean() < 2.5


def test_detection_ahead_gives_the_same_video(small_clip, tmp_path, monkeypatch):
    """Starting each batch's detection before the previous batch is finished (STREAMER_DETECT_AHEAD=1) changes
    the order of the work, not the output: the same faces, the same pixels, every frame. The detector
    here takes device tensors (PyTorch, on the GPU where there is one), so its cells come back as
    fixed-size candidates."""
    monkeypatch.setenv("STREAMER_CPU_RUNTIME", "torch")
    config = fast_config(**{"pipeline.compositor": "torch", "detector.batch_size": 2})
    runs = _runs_with_each(small_clip, tmp_path, monkeypatch, config, "STREAMER_DETECT_AHEAD", ("1", "0"))
    (ahead_stats, ahead_frames), (plain_stats, plain_frames) = runs["1"], runs["0"]
    assert ahead_stats.backend in ("torch-cpu", "torch-cuda")  # device tensors: the candidates' path
    assert ahead_stats.faces_detected == plain_stats.faces_detected >= len(small_clip.face_boxes)
    assert ahead_stats.anonymized == plain_stats.anonymized
    for a, b in zip(ahead_frames, plain_frames):
        np.testing.assert_array_equal(a, b)
    original = video_frames(small_clip.path)
    for i, (a, b, boxes) in enumerate(zip(original, ahead_frames, small_clip.face_boxes)):
        for box in boxes:
            assert box_difference(a, b, box) > 12, f"frame {i}: face at {box} looks unchanged"
