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
def test_shrink_area_is_opencv_inter_area(device):
    image = data.astronaut()[100:237, 150:301]  # 151 x 137: fractional ratios
    sizes = [(20, 18), (75, 68), (151, 40), (151, 137)]  # both axes shrink; one axis kept; none
    crops = [frame_ops.nchw(torch.from_numpy(np.ascontiguousarray(image[:h0, :w0]))).to(device).float()
             for w0, h0 in [(151, 137), (120, 137), (151, 100), (151, 137)]]
    shrunk = frame_ops.shrink_area(crops, sizes)
    for k, (crop, (w, h)) in enumerate(zip(crops, sizes)):
        expected = cv2.resize(frame_ops.nhwc(crop).cpu().numpy().astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA)
        d = _diff(frame_ops.nhwc(shrunk[k, :, :h, :w]).cpu().numpy().round(), expected)
        assert d.max() <= 1, ((w, h), d.max())
    assert shrunk[1, :, :, 75:].abs().max() == 0 and shrunk[0, :, 18:].abs().max() == 0  # zeros past each size


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
        o = frame_ops.resize_bilinear(o, (e.shape[1], e.shape[0]))  # blur returns its shrunk crop
        d = _diff(frame_ops.to_uint8(frame_ops.nhwc(o)).cpu().numpy(), e)
        assert d.max() <= 2 and d.mean() < 0.3, (anonymizer.name, d.mean(), d.max())


def test_shrink_and_blur_blurs_like_opencv():
    image = np.random.default_rng(0).uniform(0, 255, (40, 30, 3)).astype(np.float32)
    expected = cv2.GaussianBlur(image, (frame_ops.gaussian_kernel_size(3.0),) * 2, 3.0,
                                borderType=cv2.BORDER_REPLICATE)
    smaller = np.ascontiguousarray(image[:25, :20])  # a second, smaller face: its own edges replicated
    expected_smaller = cv2.GaussianBlur(smaller, (frame_ops.gaussian_kernel_size(3.0),) * 2, 3.0,
                                        borderType=cv2.BORDER_REPLICATE)
    crops = [frame_ops.nchw(torch.from_numpy(a)) for a in (image, smaller)]
    ours = frame_ops.shrink_and_blur(crops, [(30, 40), (20, 25)], [3.0, 3.0])  # not shrunk: blur alone
    np.testing.assert_allclose(frame_ops.nhwc(ours[0]).numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(frame_ops.nhwc(ours[1]).numpy(), expected_smaller, atol=1e-3)


def test_paste_faces_clips_at_the_frame_edge_and_rounds_like_the_cpu_compositor():
    frames = torch.full((1, 3, 10, 10), 100, dtype=torch.uint8)
    faces = frame_ops.flatten_images(torch.full((1, 3, 3, 3), 201.0))  # resized to the 6 x 6 rectangle
    masks = frame_ops.flatten_images([np.full((2, 2), 0.5, np.float32)], "cpu")
    frame_ops.paste_faces(frames, [0], [(-2, 7, 4, 13)], faces, masks)
    assert frames[0, :, 7:, :4].unique().tolist() == [151]  # floor(150.5 + 0.5)
    assert frames[0, :, :7].unique().tolist() == [100] and frames[0, :, :, 4:].unique().tolist() == [100]


def _paste_one_by_one(frames: torch.Tensor, frame_index, rects, results, masks) -> None:
    """Reference: each face resized with F.interpolate and blended on its own, in order."""
    for i, (x0, y0, x1, y1), result, mask in zip(frame_index, rects, results, masks):
        size = (int(y1 - y0), int(x1 - x0))
        new = torch.nn.functional.interpolate(result[None].float(), size=size, mode="bilinear")[0]
        m = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None], size=size, mode="bilinear")[0, 0]
        height, width = frames.shape[-2:]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        target = frames[i, :, cy0:cy1, cx0:cx1]
        target.copy_(frame_ops.to_uint8(target.float() * (1 - m[sub]) + new[(slice(None), *sub)] * m[sub]))


@pytest.mark.parametrize("max_pixels", [1 << 21, 500])
@pytest.mark.parametrize("device", DEVICES)
def test_paste_faces_equals_blending_each_face_in_order(device, max_pixels):
    rng = np.random.default_rng(3)
    frames = torch.from_numpy(rng.integers(0, 256, (3, 3, 90, 120), dtype=np.uint8)).to(device)
    original, expected = frames.clone(), frames.cpu().clone()  # the reference blends on the CPU
    rects = np.array([[10, 10, 50, 60],     # 128 px result shrunk
                      [30, 40, 75, 70],     # overlaps the first: blended after it, over its result
                      [-20, 60, 30, 110],   # leaves the frame at the left and bottom
                      [100, 5, 140, 33],    # leaves it at the right
                      [5, 5, 45, 45],       # other frame
                      [200, 200, 240, 240],  # wholly outside: skipped
                      [0, 0, 120, 90]])     # a whole frame, enlarged from 128 x 128 on one axis
    frame_index = np.array([0, 0, 0, 0, 1, 1, 2])
    results = torch.from_numpy(rng.uniform(0, 255, (len(rects), 3, 128, 128)).astype(np.float32)).to(device)
    masks = [rng.uniform(0, 1, (int(rng.integers(3, 40)), int(rng.integers(3, 40)))).astype(np.float32)
             for _ in rects]
    frame_ops.paste_faces(frames, frame_index, rects, frame_ops.flatten_images(results),
                          frame_ops.flatten_images(masks, device), max_pixels=max_pixels)
    _paste_one_by_one(expected, frame_index, rects, results.cpu(), masks)
    d = (frames.cpu().int() - expected.cpu().int()).abs()
    assert d.max() <= 1 and (d > 0).float().mean() < 1e-3, (d.max(), (d > 0).float().mean())  # float rounding
    outside = torch.ones((3, 90, 120), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in zip(frame_index, rects):
        outside[i, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = False
    changed = (frames != original).any(1).cpu()
    assert not changed[outside].any() and changed[~outside].float().mean() > 0.9


def test_paste_faces_within_supports_equals_the_whole_rectangles():
    """Faces whose masks are 0 outside a box blend the same when only that box is visited (the GAN's
    changed box): the two boxes below overlap as rectangles, not as supports, so one pass blends both."""
    rng = np.random.default_rng(4)
    frames = torch.from_numpy(rng.integers(0, 256, (1, 3, 60, 80), dtype=np.uint8))
    rects = np.array([[0, 0, 40, 40], [20, 20, 60, 60]])
    supports = np.array([[8, 8, 20, 20], [24, 24, 36, 36]])
    masks = []
    for x0, y0, x1, y1 in supports:  # drawn at rectangle size: no resize spreads them
        mask = np.zeros((40, 40), np.float32)
        mask[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = rng.uniform(0.2, 1, (y1 - y0 - 2, x1 - x0 - 2))
        masks.append(mask)
    faces = frame_ops.flatten_images(torch.from_numpy(rng.uniform(0, 255, (2, 3, 16, 16)).astype(np.float32)))
    whole, within = frames.clone(), frames.clone()
    frame_ops.paste_faces(whole, [0, 0], rects, faces, frame_ops.flatten_images(masks, "cpu"))
    frame_ops.paste_faces(within, [0, 0], rects, faces, frame_ops.flatten_images(masks, "cpu"), supports=supports)
    assert torch.equal(whole, within) and not torch.equal(whole, frames)


def test_overlapping_faces_blend_in_passes_one_after_another():
    """A chain of overlaps takes as many passes as it is long; other frames' and disjoint faces share pass 0."""
    rects = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [12, 12, 20, 20], [40, 40, 50, 50], [0, 0, 10, 10]])
    frames = np.array([0, 0, 0, 0, 1])
    assert frame_ops._overlap_layers(frames, rects).tolist() == [0, 1, 2, 0, 0]
    touching = np.array([[0, 0, 10, 10], [10, 0, 20, 10]])  # sharing an edge is not overlapping
    assert frame_ops._overlap_layers(np.array([0, 0]), touching).tolist() == [0, 0]


@pytest.mark.parametrize("device", DEVICES)
def test_feathered_masks_equal_the_cpu_compositors(device):
    """The GPU compositor feathers its masks on the device in one batch: the values the CPU compositor's
    OpenCV blur gives, for faces of every size and both kinds of crop (classic: whole; GAN: cut to the
    regenerated box), and a mask too small to blur kept as drawn."""
    from streamer.stages.compositor import MIN_FEATHER_SIGMA, ellipse_canvas, ellipse_mask_work, keep_box

    rng = np.random.default_rng(1)
    canvases, sigmas, keep, expected = [], [], [], []
    for i in range(24):
        side = rng.uniform(4, 400)
        x, y = rng.uniform(0, 500, 2)
        box = np.array([x, y, x + side * rng.uniform(0.6, 1.0), y + side], np.float32)
        gan = i % 2 == 0
        p = place_face(box, AnonymizerConfig(mode="gan" if gan else "blur"), 2.0 if gan else 1.0, 1.3 if gan else None)
        canvas, sigma = ellipse_canvas(p.width, p.height, p.region, p.feather)
        canvases.append(canvas)
        sigmas.append(sigma)
        keep.append(None if p.changed is None else keep_box(p.changed, p.width, p.height, canvas.shape))
        expected.append(ellipse_mask_work(p.width, p.height, p.region, p.feather, p.changed))
    sigmas[5] = MIN_FEATHER_SIGMA / 2  # too small to blur: the drawn ellipse, cut to its box
    r0, r1, c0, c1 = keep[5] or (0, canvases[5].shape[0], 0, canvases[5].shape[1])
    expected[5] = np.zeros_like(canvases[5])
    expected[5][r0:r1, c0:c1] = canvases[5][r0:r1, c0:c1]
    assert len({round(s, 6) for s in sigmas}) > 5 and {k is None for k in keep} == {True, False}
    got = frame_ops.feathered_masks(canvases, sigmas, keep, device, MIN_FEATHER_SIGMA)
    values = got.values.cpu().numpy()[0]
    for k, want in enumerate(expected):
        (w, h), offset, stride = got.sizes[k], got.offsets[k], got.row_strides[k]
        assert (w, h) == (want.shape[1], want.shape[0])
        mask = values[offset:offset + h * stride].reshape(h, stride)[:, :w]
        np.testing.assert_allclose(mask, want, atol=1e-5, err_msg=f"mask {k}")
