"""PyTorch runners: CPU FP32, and CUDA FP16 channels-last with CUDA graphs.

On CUDA the module runs in FP16 with channels-last memory and
``cudnn.benchmark`` autotuning (off with ``$STREAMER_CUDNN_BENCHMARK=0``).
With ``cuda_graphs=True`` every set of padded input shapes (batch bucket,
H, W) is captured once into a CUDA graph and replayed afterwards; each
input (a model may take several, e.g. the generator's image, boxes,
keypoints and z) has its own static buffer.
Batches are padded up to the next size of ``batch_buckets`` (the padded-batch
policy), so a stream whose batch size varies between 1 and 32 reuses at most
six graphs per input size instead of capturing one per batch size. The first
batch of an input size captures its bucket and every smaller one (and, with
``prepare_up_to``, the larger ones up to it), largest first, so later batches
do not stop the GPU for a capture; captures of all runners take turns
(:data:`CAPTURE_LOCK`), and shapes whose capture fails run eagerly.
``compile=True`` wraps the module in ``torch.compile`` (without its own CUDA
graphs, which this runner manages).

The runner owns no CUDA memory management of its own: tensors and streams are
PyTorch's, so a later GPU-resident pipeline can call :meth:`TorchRunner.run_tensor`
with device tensors and no host round trip.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from engines.runner import Inputs, ordered_inputs

log = logging.getLogger(__name__)

#: Held by a runner while it warms up for and captures a CUDA graph. Entering a capture synchronizes the
#: device and empties PyTorch's memory cache (freeing memory synchronizes too): in one thread while another
#: thread captures, that fails the other capture, and a warm-up's cuDNN autotuning can fill the memory a
#: capture needs and cannot free (the detector and generator runners capture from two threads; 16 streams on
#: an H100 lost every frame of 15 streams to "operation failed due to a previous error during capture" and
#: out-of-memory errors, 2026-11-26).
CAPTURE_LOCK = threading.Lock()

#: Default batch sizes the padded-batch policy rounds up to.
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)

#: Set to 0 to turn cuDNN's autotuning off (cuDNN's heuristics pick each convolution's kernel instead).
CUDNN_AUTOTUNE_ENV = "STREAMER_CUDNN_BENCHMARK"


def cudnn_autotune() -> bool:
    """Whether CUDA runners let cuDNN time its kernels for every new input shape (``cudnn.benchmark``):
    on unless ``$STREAMER_CUDNN_BENCHMARK=0``.

    Autotuning runs once per input shape, at the warm-up before a CUDA graph is captured, and is most of
    a GPU run's start-up: the first 180 frames of a 1080p gan bench took 20-30 s on an H100 against 1 s
    steady (2026-11-27, ``benchmarks/results/h100-session-2026-11-27b.md``). Whether heuristics alone
    lose steady speed is not measured yet, so autotuning stays on by default.

    Raises:
        BackendError: the variable is set to anything but 0 or 1.
    """
    from streamer.config import env_switch
    from streamer.errors import BackendError

    return env_switch(CUDNN_AUTOTUNE_ENV, BackendError) is not False


def buckets_up_to(max_batch: int, buckets: tuple[int, ...] = DEFAULT_BATCH_BUCKETS) -> tuple[int, ...]:
    """The batch buckets a model that never sees more than ``max_batch`` items per call needs:
    ``buckets`` below ``max_batch``, then ``max_batch`` itself (frames or faces).

    Every bucket costs a CUDA graph and, with cuDNN autotuning, seconds of start-up on a GPU.

    Example:
        >>> buckets_up_to(8)
        (1, 2, 4, 8)
        >>> buckets_up_to(3)
        (1, 2, 3)

    Raises:
        ValueError: ``max_batch`` is below 1.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return tuple(b for b in sorted(buckets) if b < max_batch) + (max_batch,)


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """Smallest bucket >= ``n``; the largest bucket when ``n`` exceeds them all (caller chunks)."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    for b in sorted(buckets):
        if b >= n:
            return b
    return max(buckets)


class TorchRunner:
    """Runs an ``nn.Module`` whose ``forward`` takes one or more batched tensors and returns one tensor
    or a tuple of tensors.

    Image inputs (4-D, N x C x H x W) get the runner's dtype (FP16 on CUDA) and
    memory format; other inputs (boxes, keypoints, latents) stay FP32 so pixel
    coordinates are not rounded, and the module casts them as it needs.

    Args:
        module: the network, FP32 weights, any device. The runner works on its own copy: the caller's
            module keeps its device, precision and mode (the CUDA tests' FP32 CPU reference model was
            turned into FP16 on the GPU by the first runner built on it).
        device: ``cpu`` or ``cuda`` / ``cuda:N``.
        half: run in FP16 (default: True on CUDA, False on CPU).
        channels_last: NHWC memory format (default: True on CUDA).
        cuda_graphs: capture and replay CUDA graphs per set of padded input shapes (CUDA only).
        pad_to_buckets: pad batches to ``batch_buckets`` (default: same as ``cuda_graphs``).
        batch_buckets: sizes the padded-batch policy rounds up to; larger
            batches are split into chunks of the largest bucket.
        compile: wrap the module in ``torch.compile``.
        threads: CPU intra-op threads (0 = leave PyTorch's default). Note this
            is process-wide in PyTorch.
        stream: CUDA stream to run on (default: the current stream).
        input_names: the module's input names in ``forward`` order, so inputs
            can be passed as a name -> array mapping (default: the mapping's order).
        prepare_up_to: with CUDA graphs, the first batch of a new input size also captures every
            bucket up to this batch size (besides the buckets up to its own, which it always captures),
            so later batches never stop the GPU for a capture (0: only up to its own).
        name: what the log calls the model (default: the module's class name).
    """

    def __init__(self, module: nn.Module, device: str = "cpu", half: bool | None = None,
                 channels_last: bool | None = None, cuda_graphs: bool = False,
                 pad_to_buckets: bool | None = None, batch_buckets: tuple[int, ...] = DEFAULT_BATCH_BUCKETS,
                 compile: bool = False, threads: int = 0, stream: "torch.cuda.Stream | None" = None,
                 input_names: tuple[str, ...] | None = None, prepare_up_to: int = 0, name: str = "") -> None:
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
        self.prepare_up_to = prepare_up_to
        self.stream = stream
        self.input_names = tuple(input_names) if input_names is not None else None
        self.backend = "torch-cuda" if is_cuda else "torch-cpu"
        self.name = name or type(module).__name__
        if is_cuda:
            torch.backends.cudnn.benchmark = cudnn_autotune()
        module = copy.deepcopy(module).eval().requires_grad_(False).to(self.device, self.dtype,
                                                                       memory_format=self.memory_format)
        self.module: Callable = (torch.compile(module, mode="max-autotune-no-cudagraphs", dynamic=False)
                                 if compile else module)
        self._graphs: dict[tuple[tuple[int, ...], ...],
                           tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}
        # one side stream and one memory pool for every capture of this runner: the caching allocator keeps
        # freed memory per stream, so a new stream per capture left each warm-up's memory cached where
        # nothing reuses it (71.5 GiB reserved but unallocated, 16 streams on an H100, 2026-11-26)
        self._capture_stream: torch.cuda.Stream | None = None
        self._graph_pool = None
        self._eager_shapes: set[tuple[tuple[int, ...], ...]] = set()  # shapes whose capture failed

    # -- public API -----------------------------------------------------------------------------
    def __call__(self, inputs: Inputs) -> list[np.ndarray]:
        """Run on float32 host inputs (one array, name -> array, or a tuple in ``forward`` order),
        batch axis first; returns float32 host outputs in order."""
        values = ordered_inputs(inputs, self.input_names)
        xs = [torch.from_numpy(np.ascontiguousarray(v, np.float32)) for v in values]
        if self.device.type == "cuda":
            xs = [x.pin_memory().to(self.device, non_blocking=True) for x in xs]
        outs = self.run_tensor(*xs)
        return [o.float().cpu().numpy() for o in outs]

    def run_tensor(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run on batched tensors in ``forward`` order (any dtype/device; converted); returns device tensors.

        Outputs are in the runner's dtype and never alias CUDA-graph buffers.
        """
        n = inputs[0].shape[0]
        if any(x.shape[0] != n for x in inputs):
            raise ValueError(f"inputs disagree on the batch size: {[tuple(x.shape) for x in inputs]}")
        step = self.batch_buckets[-1] if self.pad_to_buckets else n
        chunks = [self._run_chunk([x[i:i + step] for x in inputs]) for i in range(0, n, step)]
        if len(chunks) == 1:
            return chunks[0]
        return tuple(torch.cat(parts) for parts in zip(*chunks))

    @property
    def graph_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the first (image) input, (N, C, H, W), of the CUDA graphs captured so far."""
        return sorted(shapes[0] for shapes in self._graphs)

    # -- internals ------------------------------------------------------------------------------
    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        """Move to the device: images (4-D) in the runner's dtype and memory format, other float inputs FP32."""
        if x.dim() == 4:
            return x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        dtype = torch.float32 if x.is_floating_point() else x.dtype
        return x.to(self.device, dtype, non_blocking=True).contiguous()

    def _run_chunk(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        n = xs[0].shape[0]
        padded = bucket_for(n, self.batch_buckets) if self.pad_to_buckets else n
        ctx = torch.cuda.stream(self.stream) if (self.stream is not None) else _nullcontext()
        with ctx, torch.inference_mode():
            xs = [self._convert(x) for x in xs]
            if self.cuda_graphs:
                return self._replay(xs, padded)
            return self._eager(xs, padded)

    def _eager(self, xs: list[torch.Tensor], padded: int) -> tuple[torch.Tensor, ...]:
        n = xs[0].shape[0]
        if padded != n:
            xs = [self._convert(torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])) for x in xs]
        outs = _as_tuple(self.module(*xs))
        return tuple(o[:n] for o in outs)

    def _replay(self, xs: list[torch.Tensor], padded: int) -> tuple[torch.Tensor, ...]:
        n = xs[0].shape[0]
        shapes = tuple((padded, *x.shape[1:]) for x in xs)
        if shapes not in self._graphs and shapes not in self._eager_shapes:
            # a capture synchronizes the device and stalls every stream (seconds at 1920x1088 with cuDNN
            # autotuning: detect p95 654 ms on an H100, 2026-11-26): this batch's size and the smaller
            # buckets (a file's last batch, a quieter scene), largest first, are captured together now
            # rather than one by one in the middle of a run
            top = max(padded, bucket_for(self.prepare_up_to, self.batch_buckets) if self.prepare_up_to else 0)
            sizes = sorted({b for b in self.batch_buckets if b <= top} | {padded}, reverse=True)
            # the wait a user sees before the first frames (20-30 s on an H100 when every size was captured,
            # 2026-11-27b): said before it starts, and how long it took
            size_text = "x".join(str(d) for d in reversed(xs[0].shape[2:]))  # width x height, pixels
            log.info("%s: preparing the GPU for %s input, batches of %s (cuDNN autotuning and CUDA graphs; "
                     "once per input size and process)", self.name, size_text, "/".join(map(str, sizes)))
            started = time.perf_counter()
            for size in sizes:
                self._try_capture(tuple((size, *x.shape[1:]) for x in xs), [x.dtype for x in xs])
            log.info("%s: ready for %s input in %.1f s", self.name, size_text, time.perf_counter() - started)
        if shapes in self._eager_shapes:
            return self._eager(xs, padded)
        graph, static_ins, static_out = self._graphs[shapes]
        for static_in, x in zip(static_ins, xs):  # every input into its static buffer, zero-padded
            static_in[:n].copy_(x)
            if padded > n:
                static_in[n:].zero_()
        graph.replay()
        return tuple(o[:n].clone() for o in static_out)

    def _try_capture(self, shapes: tuple[tuple[int, ...], ...], dtypes: list[torch.dtype]) -> None:
        """Capture a graph for ``shapes`` unless there is one; a failed capture marks them eager."""
        if shapes in self._graphs or shapes in self._eager_shapes:
            return
        current = torch.cuda.current_stream(self.device)
        try:
            with CAPTURE_LOCK:
                self._graphs[shapes] = self._capture(shapes, dtypes)
        except RuntimeError as exc:  # out of memory during the capture, or a capture CUDA invalidated
            # torch.cuda.graph leaves its stream current when ending the capture fails; a later capture
            # starts on a fresh stream and pool rather than on ones a failed capture may have left behind
            torch.cuda.set_stream(current)
            self._capture_stream = self._graph_pool = None
            (log.debug if self._eager_shapes else log.warning)(
                "CUDA graph capture for inputs %s failed (%s); these shapes run without a graph",
                [list(s) for s in shapes], str(exc).splitlines()[0])
            self._eager_shapes.add(shapes)

    def _capture(self, shapes: tuple[tuple[int, ...], ...], dtypes: list[torch.dtype]):
        log.debug("capturing CUDA graph for inputs %s", shapes)
        static_ins = tuple(self._convert(torch.zeros(shape, device=self.device, dtype=dtype))
                           for shape, dtype in zip(shapes, dtypes))
        if self._capture_stream is None:
            self._capture_stream = torch.cuda.Stream(self.device)
            self._graph_pool = torch.cuda.graph_pool_handle()
        side = self._capture_stream
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up: cudnn autotuning and lazy init happen outside the graph
            for _ in range(3):
                self.module(*static_ins)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # other threads keep working while this one captures (the reader uploads, the writer downloads, the
        # other model stage launches and synchronizes): in the default "global" mode any of their
        # synchronizing calls during the capture would fail it; "thread_local" checks this thread only
        # the graphs share one pool: a runner replays one graph at a time and clones its outputs at once,
        # so one graph's intermediates may reuse another's memory
        with torch.cuda.graph(graph, pool=self._graph_pool, stream=side, capture_error_mode="thread_local"):
            static_out = _as_tuple(self.module(*static_ins))
        return graph, static_ins, static_out


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
