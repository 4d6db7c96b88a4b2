"""PyTorch runners: CPU FP32, and CUDA FP16 channels-last with CUDA graphs.

On CUDA the module runs in FP16 with channels-last memory and
``cudnn.benchmark`` autotuning. With ``cuda_graphs=True`` every
(batch bucket, H, W) shape is captured once into a CUDA graph and replayed
afterwards. Batches are padded up to the next size of ``batch_buckets`` (the
padded-batch policy), so a stream whose batch size varies between 1 and 32
reuses at most six graphs per input size instead of capturing one per batch
size. ``compile=True`` wraps the module in ``torch.compile`` (without its own
CUDA graphs, which this runner manages).

The runner owns no CUDA memory management of its own: tensors and streams are
PyTorch's, so a later GPU-resident pipeline can call :meth:`TorchRunner.run_tensor`
with device tensors and no host round trip.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

#: Default batch sizes the padded-batch policy rounds up to.
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """Smallest bucket >= ``n``; the largest bucket when ``n`` exceeds them all (caller chunks)."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    for b in sorted(buckets):
        if b >= n:
            return b
    return max(buckets)


class TorchRunner:
    """Runs an ``nn.Module`` that maps (N, C, H, W) to one tensor or a tuple of tensors.

    Args:
        module: the network, FP32 weights, any device (it is moved).
        device: ``cpu`` or ``cuda`` / ``cuda:N``.
        half: run in FP16 (default: True on CUDA, False on CPU).
        channels_last: NHWC memory format (default: True on CUDA).
        cuda_graphs: capture and replay CUDA graphs per (bucket, H, W) (CUDA only).
        pad_to_buckets: pad batches to ``batch_buckets`` (default: same as ``cuda_graphs``).
        batch_buckets: sizes the padded-batch policy rounds up to; larger
            batches are split into chunks of the largest bucket.
        compile: wrap the module in ``torch.compile``.
        threads: CPU intra-op threads (0 = leave PyTorch's default). Note this
            is process-wide in PyTorch.
        stream: CUDA stream to run on (default: the current stream).
    """

    def __init__(self, module: nn.Module, device: str = "cpu", half: bool | None = None,
                 channels_last: bool | None = None, cuda_graphs: bool = False,
                 pad_to_buckets: bool | None = None, batch_buckets: tuple[int, ...] = DEFAULT_BATCH_BUCKETS,
                 compile: bool = False, threads: int = 0, stream: "torch.cuda.Stream | None" = None) -> None:
        self.device = torch.device(device)
        is_cuda = self.device.type == "cuda"
        if (cuda_graphs or half) and not is_cuda:
            raise ValueError("FP16 and CUDA graphs need a CUDA device")
        if threads > 0 and not is_cuda:
            torch.set_num_threads(threads)
        self.dtype = torch.float16 if (is_cuda if half is None else half) else torch.float32
        self.memory_format = (torch.channels_last if (is_cuda if channels_last is None else channels_last)
                              else torch.contiguous_format)
        self.cuda_graphs = cuda_graphs
        self.pad_to_buckets = cuda_graphs if pad_to_buckets is None else pad_to_buckets
        self.batch_buckets = tuple(sorted(batch_buckets))
        self.stream = stream
        self.backend = "torch-cuda" if is_cuda else "torch-cpu"
        if is_cuda:
            torch.backends.cudnn.benchmark = True
        module = module.eval().requires_grad_(False).to(self.device, self.dtype, memory_format=self.memory_format)
        self.module: Callable = (torch.compile(module, mode="max-autotune-no-cudagraphs", dynamic=False)
                                 if compile else module)
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, ...]]] = {}

    # -- public API -----------------------------------------------------------------------------
    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a float32 (N, C, H, W) host batch; returns float32 host outputs in order."""
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        outs = self.run_tensor(x)
        return [o.float().cpu().numpy() for o in outs]

    def run_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run on a (N, C, H, W) tensor (any dtype/device; converted); returns device tensors.

        Outputs are in the runner's dtype and never alias CUDA-graph buffers.
        """
        n = x.shape[0]
        step = self.batch_buckets[-1] if self.pad_to_buckets else n
        chunks = [self._run_chunk(x[i:i + step]) for i in range(0, n, step)]
        if len(chunks) == 1:
            return chunks[0]
        return tuple(torch.cat(parts) for parts in zip(*chunks))

    @property
    def graph_shapes(self) -> list[tuple[int, ...]]:
        """Input shapes (N, C, H, W) of the CUDA graphs captured so far."""
        return sorted(self._graphs)

    # -- internals ------------------------------------------------------------------------------
    def _run_chunk(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = x.shape[0]
        padded = bucket_for(n, self.batch_buckets) if self.pad_to_buckets else n
        ctx = torch.cuda.stream(self.stream) if (self.stream is not None) else _nullcontext()
        with ctx, torch.inference_mode():
            x = x.to(self.device, self.dtype, non_blocking=True)
            if self.cuda_graphs:
                return self._replay(x, padded)
            if padded != n:
                x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
            outs = _as_tuple(self.module(x.contiguous(memory_format=self.memory_format)))
            return tuple(o[:n] for o in outs)

    def _replay(self, x: torch.Tensor, padded: int) -> tuple[torch.Tensor, ...]:
        n = x.shape[0]
        shape = (padded, *x.shape[1:])
        if shape not in self._graphs:
            self._graphs[shape] = self._capture(shape)
        graph, static_in, static_out = self._graphs[shape]
        static_in[:n].copy_(x)
        if padded > n:
            static_in[n:].zero_()
        graph.replay()
        return tuple(o[:n].clone() for o in static_out)

    def _capture(self, shape: tuple[int, ...]):
        log.debug("capturing CUDA graph for input %s", shape)
        static_in = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.memory_format)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up: cudnn autotuning and lazy init happen outside the graph
            for _ in range(3):
                self.module(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            static_out = _as_tuple(self.module(static_in))
        return graph, static_in, static_out


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
