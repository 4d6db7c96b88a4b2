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
