"""Torch frame operations against the CPU path they replace (PyAV colour conversion, OpenCV resizes,
the detector's pre-processing, the classic anonymizers), on real decoded frames; on CUDA when present."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch
from skimage import data

from streamer.config import AnonymizerConfig
from streamer.sample import ASTRONAUT_FACE_BOX
from streamer.stages import frame_ops
from streamer.stages.anonymizers import Blur, FaceCrops, Mask, Pixelate
from streamer.stages.compositor import Compositor, place_face
from streamer.stages.detector import CenterFaceDetector
from tests.conftest import fast_config

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def decoded(small_clip) -> list[av.VideoFrame]:
    """Three decoded frames of the real H.264 test clip (yuv420p, 640x360)."""
    with av.open(small_clip.path) as c:
        frames = []
        for frame in c.decode(video=0):
            frames.append(frame)
            if len(frames) == 3:
                return frames
    return frames


def _diff(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, np.int32) - np.asarray(b, np.int32))


@pytest.mark.parametrize("device", DEVICES)
def test_yuv420p_and_nv12_to_rgb_match_pyav(decoded, device):
    reference = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
    i420 = torch.from_numpy(np.stack([f.to_ndarray(format="yuv420p") for f in decoded])).to(device)
    nv12 = torch.from_numpy(np.stack([f.reformat(format="nv12").to_ndarray() for f in decoded])).to(device)
    rgb = frame_ops.yuv420p_to_rgb(i420)
    assert rgb.shape == (3, 3, 360, 640) and rgb.dtype == torch.uint8
    assert frame_ops.nhwc(rgb).is_contiguous()  # free (H, W, 3) view: Frame.device_image's layout
    d = _diff(frame_ops.nhwc(rgb).cpu(), reference)
    # PyAV's swscale fast path truncates where this rounds: at most 3 levels, about 1 on average
    assert d.max() <= 3 and d.mean() < 1.2 and np.percentile(d, 99) <= 2, (d.mean(), d.max())
    assert torch.equal(frame_ops.nv12_to_rgb(nv12), rgb)  # same samples, other layout


@pytest.mark.parametrize("device", DEVICES)
def test_rgb_to_yuv420p_matches_pyav_and_round_trips(decoded, device):
    rgb = decoded[0].to_ndarray(format="rgb24")
    pyav = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    ours = frame_ops.rgb_to_yuv420p(frame_ops.nchw(torch.from_numpy(rgb).to(device)))[0].cpu().numpy()
    assert ours.shape == pyav.shape == (540, 640)
    luma, chroma = _diff(ours[:360], pyav[:360]), _diff(ours[360:], pyav[360:])
    assert luma.max() <= 1 and luma.mean() < 0.05, (luma.mean(), luma.max())
    assert chroma.mean() < 0.5 and np.percentile(chroma, 99) <= 2, (chroma.mean(), chroma.max())
    # round trip through PyAV's own decoder-side conversion: as good as PyAV's own encoder-side one
    back = av.VideoFrame.from_ndarray(ours, format="yuv420p").to_ndarray(format="rgb24")
    pyav_back = av.VideoFrame.from_ndarray(pyav, format="yuv420p").to_ndarray(format="rgb24")
    assert _diff(back, rgb).mean() <= _diff(pyav_back, rgb).mean() + 0.1
    assert _diff(back, rgb).mean() < 2.5


def test_odd_frame_sizes_are_refused():
    with pytest.raises(ValueError, match="even"):
        frame_ops.rgb_to_yuv420p(torch.zeros(3, 5, 8, dtype=torch.uint8))


@pytest.mark.parametrize("device", DEVICES)
def test_detector_input_equals_cpu_preprocessing(decoded, device):
    frames = [f.to_ndarray(format="rgb24") for f in decoded]
    detector = CenterFaceDetector(fast_config().detector)
    for size in [(640, 384), (320, 192), (416, 256)]:  # as is (pad rows), halved, odd ratio
        reference = detector.preprocess(frames, size)
        ours = frame_ops.detector_input([frame_ops.nchw(torch.from_numpy(f).to(device)) for f in frames], size)
        assert ours.shape == reference.shape and ours.dtype == torch.float32
        d = np.abs(ours.cpu().numpy() - reference)
        # OpenCV's fixed-point bilinear rounds a few percent of values the other way
        assert d.max() <= 1 and (d > 0).mean() < 0.1, (size, d.max(), (d > 0).mean())


def test_detector_on_device_frames_finds_the_same_faces(decoded):
    frames = [f.to_ndarray(format="rgb24") for f in decoded]
    detector = CenterFaceDetector(fast_config().detector)
    on_host = detector(frames)
    on_device = detector([torch.from_numpy(f) for f in frames])
    for a, b in zip(on_host, on_device):
        assert len(a) == len(b) >= 1
        np.testing.assert_allclose(b.xyxy, a.xyxy, atol=0.5)
        np.testing.assert_allclose(b.scores, a.scores, atol=0.01)


def _cut_cpu(image, rect):
    """The CPU compositor's crop (edge replicated outside the frame)."""
    x0, y0, x1, y1 = rect
    placement = place_face(np.array([x0, y0, x1, y1], np.float32), AnonymizerConfig(box_scale=1.0, feather=0.0))
    placement.x0, placement.y0, placement.x1, placement.y1 = rect
    return Compositor._cut(image, placement)


@pytest.mark.parametrize("device", DEVICES)
def test_cut_and_crop_and_resize_match_opencv(device):
    frames = [data.astronaut(), np.ascontiguousarray(data.astronaut()[::-1])]
    tensors = [frame_ops.nchw(torch.from_numpy(f).to(device)) for f in frames]
    rects = np.array([[150, 40, 300, 190],    # inside, 150 px -> 128: fractional area weights
                      [-40, -25, 88, 103],    # leaves the frame top-left: edge replicated
                      [400, 420, 656, 676],   # leaves bottom-right, 256 px -> 128 (2x)
                      [200, 100, 264, 164],   # 64 px -> 128: enlarged (OpenCV's 2-tap rule)
                      [10, 10, 139, 137],     # 129 x 127: one axis shrinks, one grows
                      [5, 5, 90, 200]])       # 85 x 195
    index = np.array([0, 1, 0, 1, 0, 1])
    cuts = frame_ops.cut_crops(tensors, index, rects)
    for k, (i, rect) in enumerate(zip(index, rects)):
        expected = _cut_cpu(frames[i], tuple(rect))
        h, w = expected.shape[:2]
        assert np.array_equal(frame_ops.nhwc(cuts[k, :, :h, :w]).cpu().numpy(), expected)
    resized = frame_ops.crop_and_resize(torch.stack(tensors), index, rects, 128)
    assert resized.shape == (6, 3, 128, 128) and resized.dtype == torch.float32
    for k, (i, rect) in enumerate(zip(index, rects)):
        expected = cv2.resize(_cut_cpu(frames[i], tuple(rect)), (128, 128), interpolation=cv2.INTER_AREA)
        d = _diff(frame_ops.nhwc(resized[k]).cpu().numpy().round(), expected)
        assert d.max() <= 1 and d.mean() < 0.2, (rect, d.mean(), d.max())  # OpenCV's uint8 rounding


@pytest.mark.parametrize("device", DEVICES)
def test_resize_area_is_opencv_inter_area(device):
    image = data.astronaut()[100:237, 150:301]  # 151 x 137: fractional ratios
    x = frame_ops.nchw(torch.from_numpy(image).to(device)).float()
    for size in [(20, 18), (75, 68), (151, 40), (200, 100)]:  # shrink both; one axis kept; one grows
        expected = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        d = _diff(frame_ops.nhwc(frame_ops.resize_area(x, size)).cpu().numpy().round(), expected)
        assert d.max() <= 1, (size, d.max())


@pytest.mark.parametrize("anonymizer", [Blur(strength=0.25), Pixelate(blocks=8), Mask(color=(10, 200, 30))],
                         ids=["blur", "pixelate", "mask"])
@pytest.mark.parametrize("device", DEVICES)
def test_classic_anonymizers_on_tensors_match_opencv(anonymizer, device):
    image = data.astronaut()
    crops, boxes = [], []
    for scale in (0.4, 1.0):  # a small and a large face: sigma and block size scale with it
        box = ASTRONAUT_FACE_BOX * scale + (1 - scale) * ASTRONAUT_FACE_BOX[:2].repeat(2)
        p = place_face(box, AnonymizerConfig())
        crops.append(Compositor._cut(image, p))
        boxes.append((box.reshape(2, 2) - [p.x0, p.y0]).reshape(4))
    expected = anonymizer.anonymize(FaceCrops(images=crops, boxes=np.stack(boxes)))
    tensors = [frame_ops.nchw(torch.from_numpy(c).to(device)).float() for c in crops]
    ours = anonymizer.anonymize_tensor(FaceCrops(images=tensors, boxes=np.stack(boxes)))
    for e, o in zip(expected, ours):
        d = _diff(frame_ops.to_uint8(frame_ops.nhwc(o)).cpu().numpy(), e)
        assert d.max() <= 2 and d.mean() < 0.3, (anonymizer.name, d.mean(), d.max())


def test_gaussian_blur_matches_opencv():
    image = np.random.default_rng(0).uniform(0, 255, (40, 30, 3)).astype(np.float32)
    expected = cv2.GaussianBlur(image, (frame_ops.gaussian_kernel_size(3.0),) * 2, 3.0,
                                borderType=cv2.BORDER_REPLICATE)
    ours = frame_ops.nhwc(frame_ops.gaussian_blur(frame_ops.nchw(torch.from_numpy(image)), 3.0)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_blend_into_clips_at_the_frame_edge_and_rounds_like_the_cpu_compositor():
    frame = torch.full((3, 10, 10), 100, dtype=torch.uint8)
    replacement = torch.full((3, 6, 6), 201.0)
    mask = torch.full((6, 6), 0.5)
    frame_ops.blend_into(frame, (-2, 7, 4, 13), replacement, mask)
    assert frame[:, 7:, :4].unique().tolist() == [151]  # floor(150.5 + 0.5)
    assert frame[:, :7].unique().tolist() == [100] and frame[:, :, 4:].unique().tolist() == [100]
