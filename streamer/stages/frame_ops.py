"""Frame operations on torch tensors: batched, on whatever device the tensors live on.

These are the GPU pipeline's counterparts of the NumPy/OpenCV code of the CPU
path (PyAV colour conversion, :meth:`CenterFaceDetector.preprocess`, the
compositor's crops and blending, the classic anonymizers), written so that
the same code runs on the CPU (tests) and on CUDA.

Conventions:

* Images are ``(N, 3, H, W)`` tensors (or ``(3, H, W)`` for one image), RGB,
  values 0..255 (``uint8`` or float). Functions that create images allocate
  them channels-last, so ``image.permute(0, 2, 3, 1)`` is a free, contiguous
  ``(N, H, W, 3)`` view: the layout of :attr:`streamer.detections.Frame.image`
  and ``Frame.device_image``. :func:`nchw` and :func:`nhwc` switch views.
* Coordinates are pixels, x to the right, y down, pixel ``i`` covering
  ``[i, i + 1)`` (centre at ``i + 0.5``), as in OpenCV and FFmpeg.
* Colour follows the stream's :class:`~streamer.colour.ColourInfo` (matrix
  BT.601, BT.709, BT.2020...; limited or full range), as the CPU path's
  PyAV conversions do; None means BT.601 limited range, what FFmpeg's
  swscale assumes for an unspecified matrix. Chroma is up-sampled by
  replication (the swscale fast path PyAV uses) and down-sampled by 2x2
  averaging.

Example:
    >>> import torch
    >>> rgb = torch.full((1, 3, 4, 4), 128, dtype=torch.uint8)
    >>> yuv420p_to_rgb(rgb_to_yuv420p(rgb)).flatten().unique().tolist()
    [128]
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from streamer.colour import ColourInfo

#: Limited range: luma 16..235 (219 steps), chroma 16..240 (224 steps) around 128.
_Y_SCALE, _C_SCALE = 219.0 / 255.0, 224.0 / 255.0


def _coefficients(colour: ColourInfo | None) -> tuple[float, float, float, float, float, float]:
    """(Kr, Kg, Kb, luma offset, luma scale, chroma scale) of a stream's matrix and range."""
    colour = colour or ColourInfo()
    kr, kb = colour.luma_weights
    if colour.full_range:
        return kr, 1 - kr - kb, kb, 0.0, 1.0, 1.0
    return kr, 1 - kr - kb, kb, 16.0, _Y_SCALE, _C_SCALE


# -- layout -----------------------------------------------------------------------------------------
def nchw(images: torch.Tensor) -> torch.Tensor:
    """View ``(..., H, W, 3)`` images as ``(..., 3, H, W)`` (no copy)."""
    return images.movedim(-1, -3)


def nhwc(images: torch.Tensor) -> torch.Tensor:
    """View ``(..., 3, H, W)`` images as ``(..., H, W, 3)`` (no copy)."""
    return images.movedim(-3, -1)


def upload(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Copy a host array (a ``(H, W, 3)`` uint8 frame, masks, face rectangles...) to ``device``,
    asynchronously from pinned memory on CUDA: the host does not wait for the GPU work queued before
    the copy (a plain ``torch.as_tensor(array, device="cuda")`` does). On the CPU the result shares
    memory with ``array`` (no copy)."""
    host = torch.from_numpy(np.ascontiguousarray(array))
    device = torch.device(device)
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)


@contextmanager
def on_stream(stream: "torch.cuda.Stream | None") -> Iterator[None]:
    """Queue the block's CUDA work on ``stream``, after the work already queued on the calling thread's
    current stream (the frames' upload and colour conversion); ``None``: no change.

    A stage that ends by waiting for its results (a download) then waits for its own work only, not for
    another stage's batches queued meanwhile on a shared stream.
    """
    if stream is None:
        yield
        return
    stream.wait_stream(torch.cuda.current_stream(stream.device))
    with torch.cuda.stream(stream):
        yield


def stack_frames(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(N, 3, H, W)`` batch of ``(3, H, W)`` frames: a view of a single frame, else one copy
    (frames decoded or uploaded one by one live in separate tensors)."""
    if len(images) == 1:
        return images[0][None]
    return nchw(torch.stack([nhwc(image) for image in images]))  # channels-last, like every frame


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Round float images to uint8 like the CPU compositor (``floor(x + 0.5)``, clamped to 0..255)."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


# -- colour -----------------------------------------------------------------------------------------
def _split_420(planes: torch.Tensor, interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Y ``(N, H, W)`` and chroma ``(N, H/2, W/2, 2)`` (U, V) of I420 or NV12 ``(N, H*3/2, W)`` planes."""
    if planes.dim() == 2:
        planes = planes[None]
    n, rows, width = planes.shape
    height = rows * 2 // 3
    if rows != height * 3 // 2 or height % 2 or width % 2:
        raise ValueError(f"expected (N, H*3/2, W) planes with even H and W, got {tuple(planes.shape)}")
    y = planes[:, :height]
    if interleaved:  # NV12: rows of U, V, U, V, ...
        return y, planes[:, height:].reshape(n, height // 2, width // 2, 2)
    flat = planes[:, height:].reshape(n, 2, height // 2, width // 2)  # I420: the U plane, then the V plane
    return y, flat.permute(0, 2, 3, 1)


def _ycbcr_to_rgb(y: torch.Tensor, chroma: torch.Tensor, colour: ColourInfo | None) -> torch.Tensor:
    n, height, width = y.shape
    k_r, k_g, k_b, y_offset, y_scale, c_scale = _coefficients(colour)
    luma = (y.float() - y_offset) * (1.0 / y_scale)
    # chroma's share of R, G, B at chroma resolution (one small matmul), added to each 2x2 luma block
    kr, kb = 2 * (1 - k_r), 2 * (1 - k_b)
    mix = upload(np.array([[0.0, kr], [-k_b * kb / k_g, -k_r * kr / k_g], [kb, 0.0]], np.float32) / c_scale,
                 y.device)
    share = (chroma.float() - 128.0) @ mix.T  # (N, H/2, W/2, 3)
    rgb = luma.view(n, height // 2, 2, width // 2, 2, 1) + share.view(n, height // 2, 1, width // 2, 1, 3)
    # channels-last storage; clamp, then +0.5 and truncation rounds to nearest
    return nchw(rgb.view(n, height, width, 3).clamp_(0, 255).add_(0.5).to(torch.uint8))


def yuv420p_to_rgb(planes: torch.Tensor, colour: ColourInfo | None = None) -> torch.Tensor:
    """Convert planar YUV 4:2:0 (I420) frames to RGB.

    Args:
        planes: ``(N, H*3/2, W)`` (or ``(H*3/2, W)``) uint8: the Y plane (H rows),
            then the U and V planes (H/2 x W/2 each) packed row after row, the
            layout of PyAV's ``to_ndarray(format="yuv420p")``. H and W even (pixels).
        colour: the stream's matrix and range (None: BT.601, limited).

    Returns:
        ``(N, 3, H, W)`` uint8 RGB, channels-last in memory.
    """
    return _ycbcr_to_rgb(*_split_420(planes, interleaved=False), colour)


def nv12_to_rgb(planes: torch.Tensor, colour: ColourInfo | None = None) -> torch.Tensor:
    """Convert NV12 frames (the NVDEC output format) to RGB.

    Args:
        planes: ``(N, H*3/2, W)`` (or ``(H*3/2, W)``) uint8: the Y plane (H rows),
            then H/2 rows of interleaved U, V samples. H and W even (pixels).
        colour: the stream's matrix and range (None: BT.601, limited).

    Returns:
        ``(N, 3, H, W)`` uint8 RGB, channels-last in memory.
    """
    return _ycbcr_to_rgb(*_split_420(planes, interleaved=True), colour)


def rgb_to_yuv420p(images: torch.Tensor, colour: ColourInfo | None = None) -> torch.Tensor:
    """Convert RGB frames to planar YUV 4:2:0 (I420), the encoder's usual input.

    Args:
        images: ``(N, 3, H, W)`` (or ``(3, H, W)``) RGB, uint8 or float 0..255;
            H and W even (pixels).
        colour: the output's matrix and range (None: BT.601, limited).

    Returns:
        ``(N, H*3/2, W)`` uint8 planes, the layout :func:`yuv420p_to_rgb` and
        ``av.VideoFrame.from_ndarray(..., format="yuv420p")`` take. Chroma is
        the average of each 2x2 block.
    """
    if images.dim() == 3:
        images = images[None]
    n, _, height, width = images.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}")
    k_r, k_g, k_b, y_offset, y_scale, c_scale = _coefficients(colour)
    r, g, b = images.float().unbind(1)
    luma = k_r * r + k_g * g + k_b * b
    y = y_offset + y_scale * luma
    cb = F.avg_pool2d((128.0 + c_scale * (b - luma) / (2 * (1 - k_b)))[:, None], 2)
    cr = F.avg_pool2d((128.0 + c_scale * (r - luma) / (2 * (1 - k_r)))[:, None], 2)
    flat = torch.cat([y.flatten(1), cb.flatten(1), cr.flatten(1)], dim=1)
    return flat.round_().clamp_(0, 255).to(torch.uint8).reshape(n, height * 3 // 2, width)


# -- detector input ---------------------------------------------------------------------------------
def detector_input(images: torch.Tensor | Sequence[torch.Tensor], size: tuple[int, int],
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The CenterFace network input for a batch of frames, as the CPU path builds it.

    Each frame is stretched to ``size`` with bilinear interpolation (pixel
    centres aligned, no anti-aliasing: OpenCV's ``INTER_LINEAR``) and rounded
    to whole values like the uint8 image OpenCV returns. There is no padding
    and no normalisation: :func:`streamer.stages.detector.detector_input_size`
    already rounds both sides up to a multiple of 32 and the network takes
    RGB 0..255 (see :meth:`CenterFaceDetector.preprocess`).

    Args:
        images: ``(N, 3, H, W)`` or a sequence of ``(3, H, W)`` uint8 frames of one size.
        size: network input (width, height) in pixels.
        dtype: output dtype (float16 halves the memory on CUDA; values are whole numbers <= 255).

    Returns:
        ``(N, 3, height, width)`` contiguous tensor on the frames' device.
    """
    width, height = size
    batch = [images[i] for i in range(len(images))]
    out = []
    for image in batch:  # per frame: only the small resized copy is ever materialised as float
        x = image[None].to(dtype)
        if x.shape[-2:] != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
            x = x.round_().clamp_(0, 255)
        out.append(x)
    return torch.cat(out).contiguous()


# -- crops ------------------------------------------------------------------------------------------
def cut_crops(images: torch.Tensor | Sequence[torch.Tensor], frame_index, rects, pad_to: tuple[int, int] | None = None
              ) -> torch.Tensor:
    """Cut integer pixel rectangles out of frames, replicating the frame's edge where they leave it.

    Args:
        images: ``(N, 3, H, W)`` frames, or a sequence of ``(3, H, W)`` frames of one size.
        frame_index: ``(K,)`` which frame each rectangle is cut from.
        rects: ``(K, 4)`` integer rectangles ``x0, y0, x1, y1`` in pixels (``x1``, ``y1`` exclusive).
        pad_to: (height, width) of the output canvas; rectangles smaller than it
            are extended to the right and bottom by repeating their last column
            and row. Default: the largest rectangle.

    Returns:
        ``(K, 3, height, width)`` crops in the frames' dtype: one gather per frame, no per-face loop.
    """
    rects_np = np.asarray(rects, np.int64).reshape(-1, 4)
    index_np = np.asarray(frame_index, np.int64).reshape(-1)
    if pad_to is None:
        pad_to = ((int((rects_np[:, 3] - rects_np[:, 1]).max()), int((rects_np[:, 2] - rects_np[:, 0]).max()))
                  if len(rects_np) else (1, 1))
    if not torch.is_tensor(images):  # separate frames: gather from each, never stack whole frames
        frames = list(images)
        out = frames[0].new_empty((len(rects_np), 3, *pad_to))
        for f in np.unique(index_np):
            sel = np.flatnonzero(index_np == f)
            out[upload(sel, out.device)] = cut_crops(frames[f][None], np.zeros(len(sel)), rects_np[sel], pad_to)
        return out
    device = images.device
    rects_t, index = upload(rects_np, device), upload(index_np, device)
    sizes_h, sizes_w = rects_t[:, 3] - rects_t[:, 1], rects_t[:, 2] - rects_t[:, 0]
    height, width = images.shape[-2:]
    steps_y = torch.arange(pad_to[0], device=device)
    steps_x = torch.arange(pad_to[1], device=device)
    rows = (rects_t[:, 1:2] + torch.minimum(steps_y[None], sizes_h[:, None] - 1)).clamp_(0, height - 1)
    cols = (rects_t[:, 0:1] + torch.minimum(steps_x[None], sizes_w[:, None] - 1)).clamp_(0, width - 1)
    crops = nhwc(images)[index[:, None, None], rows[:, :, None], cols[:, None, :]]  # whole pixels at a time
    return nchw(crops)


def area_weights(sources: torch.Tensor, dst: int | torch.Tensor, pad: int, area: torch.Tensor,
                 dst_pad: int | None = None) -> torch.Tensor:
    """Per-axis weights of OpenCV's ``INTER_AREA`` resize, as matrices: ``out = W @ in`` along the axis.

    OpenCV averages pixel areas (fractional coverage included) when *both*
    axes shrink; otherwise it uses, on both axes, a 2-tap rule that
    replicates source pixels and mixes only across their borders. Both are
    reproduced here, vectorised over a batch of sizes.

    Args:
        sources: ``(K,)`` source lengths along the axis (pixels).
        dst: destination length (pixels), one for all, or ``(K,)`` one per source.
        pad: columns of the matrices (>= every source length); extra ones get weight 0.
        area: ``(K,)`` bool, True where the pixel-area rule applies (both axes shrink).
        dst_pad: with per-source ``dst``: rows of the matrices (>= every ``dst``); extra ones get weight 0.

    Returns:
        ``(K, dst, pad)`` float32 (``(K, dst_pad, pad)`` with per-source ``dst``).
    """
    device = sources.device
    src = sources.to(torch.float64)[:, None, None]
    rows = dst_pad if torch.is_tensor(dst) else dst
    i = torch.arange(rows, device=device, dtype=torch.float64)[None, :, None]
    if torch.is_tensor(dst):
        dst = dst.to(torch.float64)[:, None, None]
    j = torch.arange(pad, device=device, dtype=torch.float64)[None, None, :]
    scale = src / dst
    lo = i * scale
    averaged = (torch.minimum(lo + scale, j + 1) - torch.maximum(lo, j)).clamp(min=0) / scale
    sx = torch.floor(i * scale)
    fx = (i + 1) - (sx + 1) / scale
    fx = torch.where(fx <= 0, torch.zeros_like(fx), fx - torch.floor(fx))
    last = sx >= src - 1
    fx = torch.where(last, torch.zeros_like(fx), fx)
    sx = torch.where(last, src - 1, sx)
    two_tap = (j == sx) * (1 - fx) + (j == sx + 1) * fx
    weights = torch.where(area[:, None, None], averaged, two_tap)
    if torch.is_tensor(dst):
        weights = weights * (i < dst)
    return weights.float()


def crop_and_resize(images: torch.Tensor | Sequence[torch.Tensor], frame_index, rects, size: int,
                    max_elements: int = 1 << 26) -> torch.Tensor:
    """Cut every face rectangle of a batch of frames and resize each to ``size`` x ``size``, batched.

    The resize is OpenCV's ``INTER_AREA`` (the CPU compositor's), as two
    batched matrix products per chunk of faces (:func:`area_weights`): exact
    where a sampling grid (``grid_sample``, RoIAlign) only approximates it,
    and cheap for face-sized crops.

    Args:
        images: ``(N, 3, H, W)`` frames or a sequence of ``(3, H, W)`` frames of one size.
        frame_index: ``(K,)`` frame of each rectangle.
        rects: ``(K, 4)`` integer rectangles ``x0, y0, x1, y1`` (pixels, exclusive ends);
            parts outside the frame repeat its edge.
        size: output side in pixels.
        max_elements: bound on the float working copy of the crops (elements) per chunk.

    Returns:
        ``(K, 3, size, size)`` float32, values 0..255.
    """
    rects_np = np.asarray(rects, np.int64).reshape(-1, 4)
    index_np = np.asarray(frame_index, np.int64).reshape(-1)
    first = images if torch.is_tensor(images) else images[0]
    if not len(rects_np):
        return torch.zeros((0, 3, size, size), device=first.device)
    widths, heights = rects_np[:, 2] - rects_np[:, 0], rects_np[:, 3] - rects_np[:, 1]
    step = max(1, max_elements // (3 * int(heights.max()) * int(widths.max())))
    out = []
    for start in range(0, len(rects_np), step):
        sl = slice(start, start + step)
        canvas = cut_crops(images, index_np[sl], rects_np[sl]).float()
        sizes = np.stack([widths[sl], heights[sl]], 1)
        rows, cols = _area_matrices(sizes, np.full_like(sizes, size), canvas.shape[-2:], canvas.device)
        out.append(rows @ canvas @ cols.transpose(-1, -2))
    return torch.cat(out)


def _area_matrices(sizes: np.ndarray, small: np.ndarray, canvas_hw: tuple[int, int], device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`area_weights` of ``K`` images of ``sizes`` (``(K, 2)`` width, height, pixels) resized to
    ``small`` (same layout), both axes in one call: rows ``(K, 1, h, H)`` and columns ``(K, 1, w, W)``
    for ``rows @ canvas @ cols.transpose(-1, -2)`` on a ``(K, C, H, W)`` canvas (``H, W = canvas_hw``)."""
    k = len(sizes)
    area = (sizes[:, 0] >= small[:, 0]) & (sizes[:, 1] >= small[:, 1])  # OpenCV: both axes shrink
    table = upload(np.stack([np.concatenate([sizes[:, 1], sizes[:, 0]]), np.concatenate([small[:, 1], small[:, 0]]),
                             np.tile(area, 2)], 1).astype(np.int64), device)
    source, target, both_area = table.unbind(1)
    height, width = (int(v) for v in canvas_hw)
    out_h, out_w = int(small[:, 1].max()), int(small[:, 0].max())
    weights = area_weights(source, target, max(height, width), both_area.bool(), dst_pad=max(out_h, out_w))
    return weights[:k, None, :out_h, :height], weights[k:, None, :out_w, :width]


def resize_bilinear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(N, C, H, W)`` float images to ``size`` = (width, height), OpenCV ``INTER_LINEAR``."""
    width, height = size
    if image.shape[-2:] == (height, width):
        return image
    batch = image if image.dim() == 4 else image[None]
    out = F.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    return out if image.dim() == 4 else out[0]


def gaussian_kernel_size(sigma: float) -> int:
    """Kernel width (pixels) OpenCV's ``GaussianBlur(ksize=(0, 0))`` uses on uint8 images: 6 sigma + 1, odd."""
    return int(round(sigma * 3 * 2 + 1)) | 1


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """OpenCV's Gaussian kernel for uint8 images (:func:`gaussian_kernel_size` taps), normalised."""
    size = gaussian_kernel_size(sigma)
    x = torch.arange(size, device=device, dtype=torch.float64) - size // 2
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (kernel / kernel.sum()).to(dtype)


def _reflect_101(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Where OpenCV's ``BORDER_REFLECT_101`` reads position ``positions`` (any integers) of a row of
    ``lengths`` pixels (broadcast): mirrored about the first and last pixel, as often as needed."""
    last = np.maximum(lengths - 1, 0)
    period = np.maximum(2 * last, 1)
    folded = np.abs(positions) % period
    return np.minimum(np.where(folded > last, period - folded, folded), last)


def feathered_masks(canvases: Sequence[np.ndarray], sigmas, keep_boxes: Sequence[tuple[int, int, int, int] | None],
                    device: torch.device | str, min_sigma: float) -> FlatImages:
    """The compositor's feathered masks, finished on ``device`` in a few batched operations.

    The same values as :func:`streamer.stages.compositor.ellipse_mask_work`
    (which blurs each mask with OpenCV on the host): each drawn ellipse is
    blurred with its sigma as OpenCV's ``GaussianBlur`` does on float32
    images (8 sigma + 1 taps, edges mirrored, ``BORDER_REFLECT_101``),
    doubled and clipped to 1, then cut to its keep box.

    Args:
        canvases: ``(h_k, w_k)`` float32 ellipses, 0..1
            (:func:`streamer.stages.compositor.ellipse_canvas`).
        sigmas: ``(K,)`` Gaussian sigmas, canvas pixels; under ``min_sigma`` the canvas is kept as drawn.
        keep_boxes: per mask, rows ``r0:r1`` and columns ``c0:c1`` kept (the rest 0), or None: all.
        device: where the masks are used.
        min_sigma: the smallest sigma that blurs.

    Returns:
        The ``K`` masks, each in its own block of the largest mask's size (``strides``: that width).
    """
    sizes = np.array([[c.shape[1], c.shape[0]] for c in canvases], np.int64).reshape(-1, 2)
    count, (width, height) = len(canvases), (int(v) for v in sizes.max(0))
    stack = np.zeros((count, height, width), np.float32)
    for k, canvas in enumerate(canvases):
        stack[k, :canvas.shape[0], :canvas.shape[1]] = canvas
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    blurred = sigmas >= min_sigma
    # per mask, its own kernel (OpenCV's taps for float images, 8 sigma + 1) centred in the longest, or the
    # identity when too small to blur; then its gain (2, or 1 unblurred) and its kept rows and columns
    taps = np.where(blurred, np.round(sigmas * 8 + 1).astype(np.int64) | 1, 1)
    half = int(taps.max()) // 2
    kernel_width = 2 * half + 1
    table = np.zeros((count, kernel_width + 1 + height + width), np.float32)
    for k, (n, sigma) in enumerate(zip(taps, sigmas)):
        x = np.arange(n) - n // 2
        weights = np.exp(-(x * x) / (2 * sigma * sigma)) if n > 1 else np.ones(1)
        table[k, half - n // 2:half + n // 2 + 1] = weights / weights.sum()
        r0, r1, c0, c1 = keep_boxes[k] if keep_boxes[k] is not None else (0, sizes[k, 1], 0, sizes[k, 0])
        table[k, kernel_width + 1 + r0:kernel_width + 1 + r1] = 1.0
        table[k, kernel_width + 1 + height + c0:kernel_width + 1 + height + c1] = 1.0
    table[:, kernel_width] = np.where(blurred, 2.0, 1.0)
    # every mask's rows and columns read mirrored at its own edges
    ys = _reflect_101(np.arange(-half, height + half)[None], sizes[:, 1:2])
    xs = _reflect_101(np.arange(-half, width + half)[None], sizes[:, 0:1])
    reads = np.concatenate([np.arange(count)[:, None], ys, xs], 1)
    masks, table, reads = (upload(a, device) for a in (stack, table, reads))  # three copies for the batch
    weights, gain = table[:, :kernel_width], table[:, kernel_width]
    keep_rows, keep_cols = table[:, kernel_width + 1:kernel_width + 1 + height], table[:, -width:]
    index, ys, xs = reads[:, :1], reads[:, 1:1 + ys.shape[1]], reads[:, 1 + ys.shape[1]:]
    padded = masks[index[:, :, None], ys[:, :, None], xs[:, None, :]]  # (K, H + 2 half, W + 2 half)
    smooth = _convolve_separable(padded, weights)  # (K, H, W): each mask with its own kernel
    masks = (smooth * gain[:, None, None]).clamp_(0.0, 1.0) * keep_rows[:, :, None] * keep_cols[:, None, :]
    # each mask in its own (H, W) block of the batch, rows W long: nothing to pack
    return FlatImages(values=masks.reshape(1, -1), offsets=np.arange(count, dtype=np.int64) * (height * width),
                      sizes=sizes, strides=np.full(count, width, np.int64))


def _filter_along(images: torch.Tensor, dim: int, kernel: torch.Tensor) -> torch.Tensor:
    """Valid (unpadded) correlation of ``images`` with ``kernel`` along dimension ``dim``: ``kernel``
    ``(T,)`` for every image, or ``(N, T)`` one per image of the first dimension. A product over
    sliding windows, not a convolution: cuDNN would autotune every new shape (each batch's count and
    size of faces) mid-stream while its autotuning is on for the models."""
    windows = images.unfold(dim, kernel.shape[-1], 1)  # (..., T)
    if kernel.dim() == 1:
        return windows @ kernel
    return (windows * kernel.view(kernel.shape[0], *(1,) * (windows.dim() - 2), kernel.shape[1])).sum(-1)


def _convolve_separable(padded: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid (unpadded) convolution of images (``(N, C, H, W)``, or ``(N, H, W)``) with a symmetric
    ``kernel`` along both axes: ``(T,)`` for all, or ``(N, T)`` one per image."""
    return _filter_along(_filter_along(padded, -1, kernel), -2, kernel)


def pad_stack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(K, C, H, W)`` canvas of ``(C, h_k, w_k)`` images, each at the top left, zeros elsewhere;
    ``H``, ``W`` the largest sizes."""
    height, width = max(im.shape[-2] for im in images), max(im.shape[-1] for im in images)
    canvas = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for k, image in enumerate(images):
        canvas[k, :, :image.shape[-2], :image.shape[-1]] = image
    return canvas


def shrink_area(images: Sequence[torch.Tensor], small) -> torch.Tensor:
    """``(K, C, h, w)`` canvas of the ``(C, h_k, w_k)`` images shrunk to ``small`` (``(K, 2)`` width,
    height each, pixels) with OpenCV ``INTER_AREA``, each at the top left, zeros past its size: two
    batched matrix products (:func:`area_weights`)."""
    small = np.asarray(small, np.int64).reshape(-1, 2)
    sizes = np.array([[im.shape[-1], im.shape[-2]] for im in images], np.int64)
    canvas = pad_stack(images).float()
    rows, cols = _area_matrices(sizes, small, canvas.shape[-2:], canvas.device)
    return rows @ canvas @ cols.transpose(-1, -2)


def shrink_and_blur(images: Sequence[torch.Tensor], small_sizes, sigmas) -> list[torch.Tensor]:
    """Shrink each ``(C, h, w)`` float image to its small size (OpenCV ``INTER_AREA``) and blur it with
    its sigma (edges replicated, OpenCV's kernel), all faces in a few batched operations.

    Args:
        images: float images of any sizes (0..255).
        small_sizes: ``(K, 2)`` each image's shrunk (width, height), pixels, at most its size.
        sigmas: ``(K,)`` Gaussian standard deviations on the shrunk images, pixels.

    Returns:
        The ``K`` shrunk, blurred ``(C, small_h, small_w)`` images (views of one tensor).
    """
    small = np.asarray(small_sizes, np.int64).reshape(-1, 2)
    shrunk = shrink_area(images, small)  # (K, C, rows, cols)
    device = shrunk.device
    rows_max, cols_max = shrunk.shape[-2:]
    small_w, small_h = upload(small[:, 0], device), upload(small[:, 1], device)
    blurred = torch.empty_like(shrunk)
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    keys = np.round(sigmas, 6)  # sigma / (sigma / 3) is 3 up to rounding for every face but the smallest
    for key in np.unique(keys):
        chosen = np.flatnonzero(keys == key)
        sigma = float(sigmas[chosen[0]])
        half = gaussian_kernel_size(sigma) // 2
        index = upload(chosen, device)
        # each face's own edge replicated: clamp the sample positions to its shrunk size
        ys = torch.arange(-half, rows_max + half, device=device)[None].clamp(min=0)
        xs = torch.arange(-half, cols_max + half, device=device)[None].clamp(min=0)
        ys = torch.minimum(ys, small_h[index][:, None] - 1)
        xs = torch.minimum(xs, small_w[index][:, None] - 1)
        padded = shrunk[index[:, None, None], :, ys[:, :, None], xs[:, None, :]]  # (k, H', W', C)
        blurred[index] = _convolve_separable(padded.permute(0, 3, 1, 2).contiguous(),
                                             _gaussian_kernel(sigma, device, shrunk.dtype))
    return [blurred[k, :, :hk, :wk] for k, (wk, hk) in enumerate(small)]


def shrink_and_enlarge(images: Sequence[torch.Tensor], small_sizes) -> list[torch.Tensor]:
    """Mosaic: shrink each ``(C, h, w)`` float image to its small size (OpenCV ``INTER_AREA``) and enlarge
    it back by nearest neighbour (OpenCV ``INTER_NEAREST``), all faces batched.

    Args:
        images: float images of any sizes (0..255).
        small_sizes: ``(K, 2)`` each image's shrunk (width, height) in pixels (its blocks across and down).

    Returns:
        The ``K`` mosaics, each the size of its image (views of one tensor).
    """
    small = np.asarray(small_sizes, np.int64).reshape(-1, 2)
    sizes = np.array([[im.shape[-1], im.shape[-2]] for im in images], np.int64)
    shrunk = shrink_area(images, small)
    device = shrunk.device
    rows = _nearest_sources(sizes[:, 1], small[:, 1], device)
    cols = _nearest_sources(sizes[:, 0], small[:, 0], device)
    index = torch.arange(len(small), device=device)
    mosaic = shrunk[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (K, H, W, C)
    mosaic = mosaic.permute(0, 3, 1, 2)
    return [mosaic[k, :, :hk, :wk] for k, (wk, hk) in enumerate(sizes)]


def _nearest_sources(lengths: np.ndarray, small: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(K, max length)``: for each pixel ``i`` of each image's length, the pixel of its ``small``
    version that nearest-neighbour enlarging takes, ``floor(i * small / length)`` in exact integers
    (float scales miss exact multiples); pixels past an image's length repeat its last one."""
    table = upload(np.stack([lengths, small], 1), device)
    length, shrunk = table[:, :1], table[:, 1:]
    steps = torch.arange(int(lengths.max()), device=device)[None]
    return torch.minimum(steps, length - 1) * shrunk // length


@dataclass
class FlatImages:
    """Images of different sizes packed into one tensor, so a batch of faces is one gather, not a loop.

    Image ``k`` is ``values[:, offsets[k]:offsets[k] + h * stride]``, row-major, with
    ``(w, h) = sizes[k]``; each row is ``stride`` elements long (its ``w`` pixels first).

    Attributes:
        values: ``(C, total)`` float tensor on the device.
        offsets: ``(K,)`` int64, where each image starts in ``values`` (elements).
        sizes: ``(K, 2)`` int64, each image's (width, height) in pixels.
        strides: ``(K,)`` int64, elements from one row of an image to the next; None: its width.
    """

    values: torch.Tensor
    offsets: np.ndarray
    sizes: np.ndarray
    strides: np.ndarray | None = None

    @property
    def row_strides(self) -> np.ndarray:
        """``(K,)`` int64: elements from one row of each image to the next."""
        return self.sizes[:, 0] if self.strides is None else self.strides


def flatten_images(images: torch.Tensor | Sequence[torch.Tensor] | Sequence[np.ndarray],
                   device: torch.device | str | None = None) -> FlatImages:
    """Pack ``(K, C, h, w)`` images, a sequence of ``(C, h_k, w_k)`` tensors, or a sequence of
    ``(h_k, w_k)`` host arrays (masks: uploaded to ``device`` in one copy) into :class:`FlatImages`."""
    if torch.is_tensor(images):
        k, c, h, w = images.shape
        sizes = np.tile(np.array([w, h], np.int64), (k, 1))
        values = images.float().transpose(0, 1).reshape(c, k * h * w)
    elif len(images) and isinstance(images[0], np.ndarray):
        sizes = np.array([[a.shape[1], a.shape[0]] for a in images], np.int64).reshape(-1, 2)
        values = upload(np.concatenate([a.ravel() for a in images]).astype(np.float32)[None], device)
    else:
        sizes = np.array([[t.shape[-1], t.shape[-2]] for t in images], np.int64).reshape(-1, 2)
        values = torch.cat([t.float().reshape(t.shape[0], -1) for t in images], 1)
    counts = sizes[:, 0] * sizes[:, 1]
    return FlatImages(values=values, offsets=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
                      sizes=sizes)


def _sample_bilinear(flat: FlatImages, geometry: torch.Tensor, scales: torch.Tensor, face: torch.Tensor,
                     x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Values of each face's image resized to its destination size (OpenCV ``INTER_LINEAR``, the
    arithmetic of ``F.interpolate(mode="bilinear")``) at destination pixels ``(x, y)``.

    Args:
        flat: the source images.
        geometry: ``(K, 4)`` int64 per face: offset in ``flat``, source width, height and row stride.
        scales: ``(K, 2)`` float32 per face: source / destination size, x and y.
        face, x, y: ``(T,)`` per pixel: its face, and its column and row in the destination (int64).

    Returns:
        ``(C, T)`` float.
    """
    offset, src_w, src_h, stride = geometry[face].unbind(1)
    scale_x, scale_y = scales[face].unbind(1)
    sx = ((x + 0.5) * scale_x - 0.5).clamp_(min=0)
    sy = ((y + 0.5) * scale_y - 0.5).clamp_(min=0)
    x0, y0 = sx.long(), sy.long()  # >= 0: truncation is the floor
    fx, fy = sx - x0, sy - y0
    x1, y1 = torch.minimum(x0 + 1, src_w - 1), torch.minimum(y0 + 1, src_h - 1)
    row0, row1 = offset + y0 * stride, offset + y1 * stride
    taps = [flat.values.index_select(1, row + col) for row in (row0, row1) for col in (x0, x1)]
    top = taps[0] * (1 - fx) + taps[1] * fx
    bottom = taps[2] * (1 - fx) + taps[3] * fx
    return top * (1 - fy) + bottom * fy


def _overlap_layers(frame_index: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Per face, the blending pass it belongs to: one after every earlier face of its frame it overlaps,
    so overlapping faces blend in order (a later face over an earlier one's result), others together."""
    a, b = rects[:, None], rects[None, :]
    overlap = ((frame_index[:, None] == frame_index[None, :]) & (a[..., 0] < b[..., 2]) & (b[..., 0] < a[..., 2])
               & (a[..., 1] < b[..., 3]) & (b[..., 1] < a[..., 3]))
    earlier = np.tril(overlap, -1)  # [k, j]: face j comes before face k and overlaps it
    layers = np.zeros(len(rects), np.int64)
    for k in np.flatnonzero(earlier.any(1)):  # usually none: faces of a frame rarely overlap
        layers[k] = layers[earlier[k]].max() + 1
    return layers


def paste_faces(frames: torch.Tensor, frame_index, rects, faces: FlatImages, masks: FlatImages,
                supports=None, max_pixels: int = 1 << 21) -> None:
    """Resize every face result and its blend mask to its rectangle and blend them into the frames, in place.

    All faces of a batch are blended together, one pass over their pixels
    (faces that overlap an earlier face of their frame in a later pass), so
    the cost in kernel launches does not grow with the number of faces. The
    arithmetic is the CPU compositor's: bilinear resize (OpenCV
    ``INTER_LINEAR``), ``frame * (1 - m) + face * m``, rounded with
    ``floor(x + 0.5)``; pixels of a rectangle outside the frame are skipped.

    Args:
        frames: ``(N, 3, H, W)`` uint8 frames (modified).
        frame_index: ``(K,)`` frame of each face.
        rects: ``(K, 4)`` integer rectangles ``x0, y0, x1, y1`` (pixels, exclusive ends).
        faces: ``K`` results (3 channels, 0..255), any size: resized to their rectangle.
        masks: ``K`` blend weights (1 channel, 0..1), any size: resized to their rectangle.
        supports: ``(K, 4)`` integer boxes ``x0, y0, x1, y1`` in rectangle pixels outside which a
            face's resized mask is 0 (the GAN's changed box): only those pixels are visited, and
            faces overlap less. Default: the whole rectangle.
        max_pixels: pixels blended per pass at most (bounds the index tensors' memory).
    """
    rects = np.asarray(rects, np.int64).reshape(-1, 4)
    frame_index = np.asarray(frame_index, np.int64).reshape(-1)
    height, width = frames.shape[-2:]
    sizes = rects[:, 2:] - rects[:, :2]  # (w, h) of each rectangle
    region = rects if supports is None else np.tile(rects[:, :2], 2) + np.asarray(supports, np.int64).reshape(-1, 4)
    clipped = np.stack([np.maximum(region[:, 0], 0), np.maximum(region[:, 1], 0),
                        np.minimum(region[:, 2], width), np.minimum(region[:, 3], height)], 1)
    visible = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    device = frames.device
    geometry = upload(np.stack([faces.offsets, *faces.sizes.T, faces.row_strides,
                                masks.offsets, *masks.sizes.T, masks.row_strides], 1), device)
    scales = upload(np.concatenate([faces.sizes / sizes, masks.sizes / sizes], 1).astype(np.float32), device)
    pixels = nhwc(frames)  # (N, H, W, 3): one pixel = one row
    layers = _overlap_layers(frame_index, clipped)
    for layer in range(int(layers.max(initial=-1)) + 1):
        chosen = np.flatnonzero((layers == layer) & visible)
        if not len(chosen):
            continue
        for group in _pixel_groups(chosen, clipped, max_pixels):
            _paste_group(pixels, group, frame_index, rects, clipped, geometry, scales, faces, masks)


def _pixel_groups(chosen: np.ndarray, clipped: np.ndarray, max_pixels: int) -> list[np.ndarray]:
    """Split faces into consecutive groups of at most ``max_pixels`` visible pixels (a face never split)."""
    counts = (clipped[chosen, 2] - clipped[chosen, 0]) * (clipped[chosen, 3] - clipped[chosen, 1])
    groups, start, total = [], 0, 0
    for k, count in enumerate(counts):
        if total and total + count > max_pixels:
            groups.append(chosen[start:k])
            start, total = k, 0
        total += count
    groups.append(chosen[start:])
    return groups


def _paste_group(pixels: torch.Tensor, group: np.ndarray, frame_index: np.ndarray, rects: np.ndarray,
                 clipped: np.ndarray, geometry: torch.Tensor, scales: torch.Tensor, faces: FlatImages,
                 masks: FlatImages) -> None:
    """Blend the faces of ``group`` (none overlapping another) into ``pixels`` (N, H, W, 3), in place."""
    device = pixels.device
    widths = clipped[group, 2] - clipped[group, 0]
    counts = widths * (clipped[group, 3] - clipped[group, 1])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # per face of the group: start, visible width, visible x0/y0, their offset in the rectangle, frame, face id
    table = upload(np.stack([starts, widths, clipped[group, 0], clipped[group, 1],
                             clipped[group, 0] - rects[group, 0], clipped[group, 1] - rects[group, 1],
                             frame_index[group], group], 1).astype(np.int64), device)
    index = torch.arange(int(counts.sum()), device=device)
    local = torch.searchsorted(table[:, 0].contiguous(), index, right=True) - 1
    start, width, vx0, vy0, off_x, off_y, frame, face = table[local].unbind(1)
    within = index - start
    row = torch.div(within, width, rounding_mode="floor")
    col = within - row * width
    x, y = off_x + col, off_y + row  # pixel in the face's rectangle
    new = _sample_bilinear(faces, geometry[:, :4], scales[:, :2], face, x, y)  # (3, T)
    m = _sample_bilinear(masks, geometry[:, 4:], scales[:, 2:], face, x, y)[0][:, None]  # (T, 1)
    where = (frame, vy0 + row, vx0 + col)
    blended = pixels[where].float() * (1.0 - m) + new.T * m
    pixels[where] = to_uint8(blended)
