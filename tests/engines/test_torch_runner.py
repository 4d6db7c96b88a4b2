"""TorchRunner on the CPU: padded-batch policy and chunking give the same results as plain calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.export import parity
from engines.torch_runner import TorchRunner, bucket_for
from tests.engines.conftest import frame_batch, torch_outputs


def test_bucket_for():
    buckets = (1, 2, 4, 8, 16, 32)
    assert [bucket_for(n, buckets) for n in (1, 2, 3, 5, 8, 9, 31, 32, 40)] == [1, 2, 4, 8, 8, 16, 32, 32, 32]
    with pytest.raises(ValueError):
        bucket_for(0, buckets)


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
