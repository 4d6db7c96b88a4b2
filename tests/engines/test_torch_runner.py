"""TorchRunner on the CPU: padded-batch policy and chunking give the same results as plain calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.export import parity
from engines.torch_runner import TorchRunner, bucket_for, buckets_up_to, cudnn_autotune
from streamer.errors import BackendError
from tests.engines.conftest import frame_batch, torch_outputs


def test_bucket_for():
    buckets = (1, 2, 4, 8, 16, 32)
    assert [bucket_for(n, buckets) for n in (1, 2, 3, 5, 8, 9, 31, 32, 40)] == [1, 2, 4, 8, 8, 16, 32, 32, 32]
    with pytest.raises(ValueError):
        bucket_for(0, buckets)


def test_buckets_up_to_a_largest_batch():
    assert buckets_up_to(1) == (1,)
    assert buckets_up_to(3) == (1, 2, 3)
    assert buckets_up_to(16) == (1, 2, 4, 8, 16)
    assert buckets_up_to(40) == (1, 2, 4, 8, 16, 32, 40)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        buckets_up_to(0)


def test_cudnn_autotuning_is_on_unless_turned_off(monkeypatch):
    monkeypatch.delenv("STREAMER_CUDNN_BENCHMARK", raising=False)
    assert cudnn_autotune()
    monkeypatch.setenv("STREAMER_CUDNN_BENCHMARK", "0")
    assert not cudnn_autotune()
    monkeypatch.setenv("STREAMER_CUDNN_BENCHMARK", "yes")
    with pytest.raises(BackendError, match="STREAMER_CUDNN_BENCHMARK must be 0 or 1, got 'yes'"):
        cudnn_autotune()  # a user-facing error: one line from the CLI


def test_padding_and_chunking_do_not_change_outputs(centerface_torch, real_frames):
    x = np.concatenate([frame_batch(real_frames[i % 2], (128, 96)) for i in range(5)])
    ref = torch_outputs(centerface_torch, x)
    padded = TorchRunner(centerface_torch, "cpu", pad_to_buckets=True, batch_buckets=(1, 2, 4))(x)
    assert [o.shape for o in padded] == [o.shape for o in ref]
    assert max(parity(ref, padded)) < 1e-5


def test_cpu_runner_is_fp32_and_refuses_gpu_only_options(centerface_torch):
    runner = TorchRunner(centerface_torch, "cpu")
    assert runner.backend == "torch-cpu" and runner.dtype == torch.float32
    out = runner(np.zeros((1, 3, 64, 64), np.float32))
    assert all(o.dtype == np.float32 for o in out)
    with pytest.raises(ValueError):
        TorchRunner(centerface_torch, "cpu", cuda_graphs=True)
    with pytest.raises(ValueError):
        TorchRunner(centerface_torch, "cpu", half=True)


def test_the_callers_module_is_left_as_it_was():
    """A runner converts its own copy (device, precision, memory format, eval mode). On the CUDA tests'
    H100 run the first runner turned the shared FP32 CPU reference model into FP16 on the GPU, and the
    FP16-vs-FP32 test then failed on its reference, not on FP16."""
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    runner = TorchRunner(module, "cpu", channels_last=True)
    weight = module[0].weight
    assert module.training and weight.requires_grad
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        assert np.allclose(runner(x)[0], module.eval()(torch.from_numpy(x)).numpy(), atol=1e-6)


def test_several_inputs_by_name_or_position_with_padding_and_chunking():
    from engines.export import GENERATOR, reference_outputs
    from tests.generator.conftest import random_generator

    module = random_generator()  # small channels, the registered model's inputs
    x = GENERATOR.random_inputs(5, seed=4)
    ref = reference_outputs(GENERATOR, module, x)
    plain = TorchRunner(module, "cpu", input_names=GENERATOR.input_names)
    padded = TorchRunner(module, "cpu", pad_to_buckets=True, batch_buckets=(1, 2, 4),
                         input_names=GENERATOR.input_names)  # 5 faces: a chunk of 4 and one of 1
    reordered = dict(reversed(list(x.items())))  # a mapping is taken by name, not by its order
    for got in (plain(x), plain(reordered), plain(tuple(x.values())), padded(x)):
        assert got[0].shape == (5, 3, 128, 128)
        assert max(parity(ref, got)) < 1e-5
    tensors = [torch.from_numpy(v) for v in x.values()]
    assert max(parity(ref, [o.numpy() for o in padded.run_tensor(*tensors)])) < 1e-5


def test_several_inputs_are_checked():
    from engines.export import GENERATOR
    from tests.generator.conftest import random_generator

    runner = TorchRunner(random_generator(), "cpu", input_names=GENERATOR.input_names)
    x = GENERATOR.random_inputs(2, seed=5)
    with pytest.raises(ValueError, match="missing model inputs"):
        runner({k: v for k, v in x.items() if k != "z"})
    with pytest.raises(ValueError, match="3 inputs given, the model takes 4"):
        runner(tuple(x.values())[:3])
    with pytest.raises(ValueError, match="batch size"):
        runner.run_tensor(*(torch.from_numpy(v[: 1 if k == "z" else 2]) for k, v in x.items()))


class _ReplayedModule:
    """Stands in for a captured CUDA graph on the CPU: static inputs in, the module's outputs copied into
    static outputs on replay (what a graph does), so the runner's capture bookkeeping runs without a GPU."""

    def __init__(self, module, static_ins: tuple[torch.Tensor, ...]) -> None:
        self.module, self.static_ins = module, static_ins
        self.static_out = tuple(o.clone() for o in module(*static_ins))

    def replay(self) -> None:
        for static, out in zip(self.static_out, self.module(*self.static_ins)):
            static.copy_(out)


@pytest.fixture
def graphs_on_the_cpu(monkeypatch):
    """A CPU TorchRunner that takes the CUDA-graph path, with :class:`_ReplayedModule` as its graphs; yields
    (runner factory, captured batch sizes in order, sizes whose capture is made to fail)."""
    captured: list[int] = []
    failing: set[int] = set()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: None)

    def make(module, **kwargs) -> TorchRunner:
        runner = TorchRunner(module, "cpu", pad_to_buckets=True, **kwargs)
        runner.cuda_graphs = True

        def capture(shapes, dtypes):
            if shapes[0][0] in failing:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 102.00 MiB\nmore advice")
            captured.append(shapes[0][0])
            graph = _ReplayedModule(runner.module, tuple(torch.zeros(s, dtype=d) for s, d in zip(shapes, dtypes)))
            return graph, graph.static_ins, graph.static_out

        runner._capture = capture
        return runner

    return make, captured, failing


def test_a_first_batch_captures_its_bucket_and_the_smaller_ones_largest_first(centerface_torch, graphs_on_the_cpu):
    """The last, short batch of a file or a quieter moment of a camera then replays a graph instead of
    stopping the GPU for a capture mid-run (detect p95 654 ms on an H100, 2026-11-26)."""
    make, captured, _ = graphs_on_the_cpu
    runner = make(centerface_torch)
    x = torch.rand((3, 3, 64, 96)) * 255
    out = runner.run_tensor(x)
    assert captured == [4, 2, 1]
    runner.run_tensor(x[:1])
    runner.run_tensor(torch.cat([x, x, x[:1]]))  # 7: bucket 8, the only new one
    assert captured == [4, 2, 1, 8]
    eager = TorchRunner(centerface_torch, "cpu").run_tensor(x)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(out, eager))
    prepared = make(centerface_torch, prepare_up_to=32)
    captured.clear()
    prepared.run_tensor(x[:1])
    assert captured == [32, 16, 8, 4, 2, 1]


def test_a_shared_detector_captures_every_batch_size_up_to_its_largest_at_the_first_call(centerface_torch,
                                                                                        graphs_on_the_cpu):
    """Cameras meet in the shared detector's calls in varying numbers: every size up to max_batch is
    captured at once, none later while the cameras stream (16 streams on an H100 took ~28 s to reach
    their steady rate, 2026-11-27)."""
    from streamer.config import DetectorConfig
    from streamer.live.batcher import SharedDetector
    from streamer.stages.detector import CenterFaceDetector

    make, captured, _ = graphs_on_the_cpu
    shared = SharedDetector(CenterFaceDetector(DetectorConfig(input_width=96), runner=make(centerface_torch)),
                            max_batch=16)
    try:
        shared([np.zeros((64, 96, 3), np.uint8)])
        assert captured == [16, 8, 4, 2, 1]
        shared([np.zeros((64, 96, 3), np.uint8)] * 5)
        assert captured == [16, 8, 4, 2, 1]  # a batch of 5 replays bucket 8
    finally:
        shared.close()


def test_the_gpu_preparation_is_said_before_it_starts_and_timed(centerface_torch, graphs_on_the_cpu, caplog):
    """A user waiting 20-30 s before the first frame (an H100, 2026-11-27b) is told why."""
    import logging

    make, _, _ = graphs_on_the_cpu
    runner = make(centerface_torch, name="detector")
    with caplog.at_level(logging.INFO, logger="engines"):
        runner.run_tensor(torch.rand((3, 3, 64, 96)) * 255)
        runner.run_tensor(torch.rand((2, 3, 64, 96)) * 255)  # prepared already: nothing more said
    said = [r.getMessage() for r in caplog.records if r.name == "engines.torch_runner"]
    assert said[0] == ("detector: preparing the GPU for 96x64 input, batches of 4/2/1 (cuDNN autotuning and "
                       "CUDA graphs; once per input size and process)"), said  # width x height
    assert len(said) == 2 and said[1].startswith("detector: ready for 96x64 input in "), said


def test_a_file_detector_with_one_bucket_captures_once_and_pads_the_last_batch(centerface_torch,
                                                                               graphs_on_the_cpu):
    """A file pipeline's detector sees full batches but the last: one graph (one cuDNN autotuning per
    convolution, seconds at 1920x1088) instead of one per power of two below the batch (the first 180
    frames of an H100 gan bench took 20-30 s, 2026-11-27b)."""
    make, captured, _ = graphs_on_the_cpu
    runner = make(centerface_torch, batch_buckets=(8,))
    x = torch.rand((8, 3, 64, 96)) * 255
    runner.run_tensor(x)
    tail = runner.run_tensor(x[:3])  # the file's last 3 frames: padded to 8, the same graph
    assert captured == [8]
    eager = TorchRunner(centerface_torch, "cpu").run_tensor(x[:3])
    assert all(t.shape[0] == 3 and torch.allclose(t, e, atol=1e-4) for t, e in zip(tail, eager))


def test_a_detector_shared_by_three_cameras_captures_three_sizes(centerface_torch, graphs_on_the_cpu):
    """Live cameras hand over one frame each: a shared detector's calls hold 1 to (cameras) frames."""
    from streamer.config import DetectorConfig
    from streamer.live.batcher import SharedDetector
    from streamer.stages.detector import CenterFaceDetector

    make, captured, _ = graphs_on_the_cpu
    shared = SharedDetector(CenterFaceDetector(DetectorConfig(input_width=96),
                                               runner=make(centerface_torch, batch_buckets=buckets_up_to(3))),
                            max_batch=3)
    try:
        shared([np.zeros((64, 96, 3), np.uint8)])
        assert captured == [3, 2, 1]
    finally:
        shared.close()
    odd = make(centerface_torch, prepare_up_to=3)  # default buckets: 3 frames need bucket 4
    captured.clear()
    odd.run_tensor(torch.rand((1, 3, 64, 96)) * 255)
    assert captured == [4, 2, 1]


def test_a_failed_capture_leaves_those_shapes_eager_and_warns_once(centerface_torch, graphs_on_the_cpu, caplog):
    make, captured, failing = graphs_on_the_cpu
    failing.update({1, 2})
    runner = make(centerface_torch)
    x = torch.rand((2, 3, 64, 96)) * 255
    first, again = runner.run_tensor(x), runner.run_tensor(x)  # bucket 2: eager; its capture is not retried
    eager = TorchRunner(centerface_torch, "cpu").run_tensor(x)
    assert all(torch.allclose(a, b, atol=1e-4) and torch.equal(a, c) for a, b, c in zip(first, eager, again))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CUDA out of memory. Tried to allocate 102.00 MiB);" in warnings[0], warnings
    assert captured == [] and runner.graph_shapes == []
    runner.run_tensor(torch.cat([x, x]))  # bucket 4 still gets its graph
    assert captured == [4] and runner.graph_shapes == [(4, 3, 64, 96)]
