"""The native PyTorch CenterFace against ONNX Runtime on the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.centerface_onnx import load_centerface_onnx
from engines.centerface_torch import CenterFace, load_centerface_weights
from engines.export import parity
from engines.torch_runner import TorchRunner
from streamer.config import DetectorConfig
from streamer.errors import BackendError
from streamer.stages.detector import CenterFaceDetector
from tests.engines.conftest import frame_batch, torch_outputs


def test_only_native_layers(centerface_torch):
    kinds = {type(m).__name__ for m in centerface_torch.modules() if not list(m.children())}
    assert kinds <= {"Conv2d", "ConvTranspose2d", "ReLU"}
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in centerface_torch.modules()) == 3


@pytest.mark.parametrize("seed,shape", [(1, (2, 3, 96, 128)), (2, (1, 3, 160, 64))])
def test_parity_random_inputs(centerface_torch, ort_runner, seed, shape):
    x = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
    errors = parity(ort_runner(x), torch_outputs(centerface_torch, x))
    assert max(errors) < 1e-4, errors


def test_parity_real_frames(centerface_torch, ort_runner, real_frames):
    for frame, size in zip(real_frames, [(512, 512), (640, 384)]):
        x = frame_batch(frame, size)
        ref = ort_runner(x)
        assert ref[0].max() > 0.5  # a face is there, so the heatmap comparison means something
        errors = parity(ref, torch_outputs(centerface_torch, x))
        assert max(errors) < 1e-4, errors


def test_batched_equals_single(centerface_torch, real_frames):
    x = np.concatenate([frame_batch(f, (256, 192)) for f in real_frames])
    batched = torch_outputs(centerface_torch, x)
    for i in range(len(x)):
        single = torch_outputs(centerface_torch, x[i:i + 1])
        assert max(parity(single, [o[i:i + 1] for o in batched])) < 1e-5


def test_detections_match_onnxruntime_within_one_pixel(centerface_torch, ort_runner, real_frames):
    config = DetectorConfig(input_width=640)
    by_ort = CenterFaceDetector(config, runner=ort_runner)(real_frames[1:])
    by_torch = CenterFaceDetector(config, runner=TorchRunner(centerface_torch, "cpu"))(real_frames[1:])
    astro = DetectorConfig(input_width=512)
    by_ort += CenterFaceDetector(astro, runner=ort_runner)(real_frames[:1])
    by_torch += CenterFaceDetector(astro, runner=TorchRunner(centerface_torch, "cpu"))(real_frames[:1])
    assert [len(d) for d in by_ort] == [2, 1]
    for a, b in zip(by_ort, by_torch):
        assert len(a) == len(b)
        assert np.abs(a.xyxy - b.xyxy).max() <= 1.0
        assert np.abs(a.keypoints - b.keypoints).max() <= 1.0
        assert np.abs(a.scores - b.scores).max() < 1e-3


def test_frames_on_a_device_give_the_same_detections_as_host_frames(centerface_torch, real_frames):
    """Device frames: the outputs stay on the device and only the cells above the threshold are
    downloaded (streamer.stages.detector.cells_above); the detections are those of the host path."""
    rendered = np.pad(real_frames[1], ((0, 24), (0, 0), (0, 0)))  # 640 x 384: the network's size, no resize
    frames = [rendered, np.zeros_like(rendered), np.ascontiguousarray(rendered[:, ::-1])]  # 2, 0, 2 faces
    detector = CenterFaceDetector(DetectorConfig(input_width=640), runner=TorchRunner(centerface_torch, "cpu"))
    on_host = detector(frames)
    on_device = detector([torch.from_numpy(f) for f in frames])
    assert [len(d) for d in on_host] == [2, 0, 2]
    for a, b in zip(on_host, on_device):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_mismatched_onnx_is_refused():
    model = load_centerface_onnx()
    stem = model.graph.node[0]
    for attr in stem.attribute:  # a stride-1 stem is not the network the module describes
        if attr.name == "strides":
            attr.ints[:] = [1, 1]
    with pytest.raises(BackendError, match="does not match.*strides"):
        load_centerface_weights(CenterFace(), model)


def test_candidate_cells_are_the_cells_above_the_threshold_in_grid_order():
    """The GPU path's fixed-size candidates (no wait for the device) give exactly the cells that
    cells_above reads, and flag a frame with more cells above the threshold than candidates."""
    from streamer.stages.detector import candidate_cells, cells_above, start_candidates

    g = torch.Generator().manual_seed(0)
    heat = torch.rand((3, 1, 12, 20), generator=g) ** 4  # ~10 % of the cells above 0.55
    heat[1] = 0  # a frame without faces
    outputs = [heat, *(torch.randn((3, c, 12, 20), generator=g) for c in (2, 2, 10))]
    expected = cells_above(outputs, 0.55)
    got = candidate_cells(start_candidates(outputs, 0.55, k=64).numpy(), 20, 0.55)
    assert [len(ys) for ys, _, _ in expected] == [len(ys) for ys, _, _ in got] and len(expected[0][0]) > 5
    for (ys, xs, cells), (ys2, xs2, cells2) in zip(expected, got):
        np.testing.assert_array_equal(ys, ys2)
        np.testing.assert_array_equal(xs, xs2)
        np.testing.assert_array_equal(cells, cells2)
    crowded = candidate_cells(start_candidates(outputs, 0.55, k=4).numpy(), 20, 0.55)
    assert crowded[0] is None and crowded[2] is None and len(crowded[1][0]) == 0


def test_a_crowd_beyond_the_candidates_is_read_in_full(centerface_torch, real_frames, monkeypatch):
    """More cells above the threshold than candidates: the frame's cells are read in full, so no face is lost."""
    from streamer.stages import detector as detector_module

    rendered = np.pad(real_frames[1], ((0, 24), (0, 0), (0, 0)))
    detector = CenterFaceDetector(DetectorConfig(input_width=640), runner=TorchRunner(centerface_torch, "cpu"))
    on_host = detector([rendered])
    monkeypatch.setattr(detector_module, "CANDIDATE_CELLS", 1)
    pending = detector.start([torch.from_numpy(rendered)])
    assert pending.candidates.shape[2] == 1
    assert pending.candidates[0, 1, 0] > 1  # the two faces cover more than one cell above the threshold
    on_device = detector.collect(pending)
    assert len(on_host[0]) == len(on_device[0]) == 2
    np.testing.assert_allclose(on_host[0].xyxy, on_device[0].xyxy, atol=1e-3)


def test_batches_started_ahead_keep_their_own_detections(centerface_torch, real_frames):
    """Two batches started before either is collected (detection ahead) get the faces each has alone."""
    rendered = np.pad(real_frames[1], ((0, 24), (0, 0), (0, 0)))
    batches = [[rendered, np.zeros_like(rendered)], [np.zeros_like(rendered), np.ascontiguousarray(rendered[:, ::-1])]]
    detector = CenterFaceDetector(DetectorConfig(input_width=640), runner=TorchRunner(centerface_torch, "cpu"))
    alone = [detector(batch) for batch in batches]  # host frames: the full output maps
    pending = [detector.start([torch.from_numpy(f) for f in batch]) for batch in batches]
    assert all(p.candidates is not None for p in pending)  # device frames: the candidates' path
    ahead = [detector.collect(p) for p in pending]
    assert [[len(d) for d in batch] for batch in ahead] == [[2, 0], [0, 2]]
    for got, expected in zip(ahead, alone):
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
