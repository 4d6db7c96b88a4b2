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
* Colour is BT.601, limited ("TV") range: what FFmpeg's swscale, and so
  PyAV's ``to_ndarray(format="rgb24")``, assumes for SD/HD H.264 whose
  colour matrix is unspecified. Chroma is up-sampled by replication (the
  swscale fast path PyAV uses) and down-sampled by 2x2 averaging.

Example:
    >>> import torch
    >>> rgb = torch.full((1, 3, 4, 4), 128, dtype=torch.uint8)
    >>> yuv420p_to_rgb(rgb_to_yuv420p(rgb)).flatten().unique().tolist()
    [128]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: BT.601 luma weights (R, G, B).
_KR, _KG, _KB = 0.299, 0.587, 0.114
#: Limited range: luma 16..235 (219 steps), chroma 16..240 (224 steps) around 128.
_Y_SCALE, _C_SCALE = 219.0 / 255.0, 224.0 / 255.0


# -- layout -----------------------------------------------------------------------------------------
def nchw(images: torch.Tensor) -> torch.Tensor:
    """View ``(..., H, W, 3)`` images as ``(..., 3, H, W)`` (no copy)."""
    return images.movedim(-1, -3)


def nhwc(images: torch.Tensor) -> torch.Tensor:
    """View ``(..., 3, H, W)`` images as ``(..., H, W, 3)`` (no copy)."""
    return images.movedim(-3, -1)


def upload(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Copy a host array (a ``(H, W, 3)`` uint8 frame, masks...) to ``device``, asynchronously from
    pinned memory on CUDA. On the CPU the result shares memory with ``array`` (no copy)."""
    host = torch.from_numpy(array)
    device = torch.device(device)
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)


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


def _ycbcr_to_rgb(y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    n, height, width = y.shape
    luma = (y.float() - 16.0) * (1.0 / _Y_SCALE)
    # chroma's share of R, G, B at chroma resolution (one small matmul), added to each 2x2 luma block
    kr, kb = 2 * (1 - _KR), 2 * (1 - _KB)
    mix = torch.tensor([[0.0, kr], [-_KB * kb / _KG, -_KR * kr / _KG], [kb, 0.0]], device=y.device) / _C_SCALE
    share = (chroma.float() - 128.0) @ mix.T  # (N, H/2, W/2, 3)
    rgb = luma.view(n, height // 2, 2, width // 2, 2, 1) + share.view(n, height // 2, 1, width // 2, 1, 3)
    # channels-last storage; clamp, then +0.5 and truncation rounds to nearest
    return nchw(rgb.view(n, height, width, 3).clamp_(0, 255).add_(0.5).to(torch.uint8))


def yuv420p_to_rgb(planes: torch.Tensor) -> torch.Tensor:
    """Convert planar YUV 4:2:0 (I420) frames to RGB.

    Args:
        planes: ``(N, H*3/2, W)`` (or ``(H*3/2, W)``) uint8: the Y plane (H rows),
            then the U and V planes (H/2 x W/2 each) packed row after row, the
            layout of PyAV's ``to_ndarray(format="yuv420p")``. H and W even (pixels).

    Returns:
        ``(N, 3, H, W)`` uint8 RGB, channels-last in memory.
    """
    return _ycbcr_to_rgb(*_split_420(planes, interleaved=False))


def nv12_to_rgb(planes: torch.Tensor) -> torch.Tensor:
    """Convert NV12 frames (the NVDEC output format) to RGB.

    Args:
        planes: ``(N, H*3/2, W)`` (or ``(H*3/2, W)``) uint8: the Y plane (H rows),
            then H/2 rows of interleaved U, V samples. H and W even (pixels).

    Returns:
        ``(N, 3, H, W)`` uint8 RGB, channels-last in memory.
    """
    return _ycbcr_to_rgb(*_split_420(planes, interleaved=True))


def rgb_to_yuv420p(images: torch.Tensor) -> torch.Tensor:
    """Convert RGB frames to planar YUV 4:2:0 (I420), the encoder's usual input.

    Args:
        images: ``(N, 3, H, W)`` (or ``(3, H, W)``) RGB, uint8 or float 0..255;
            H and W even (pixels).

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
    r, g, b = images.float().unbind(1)
    luma = _KR * r + _KG * g + _KB * b
    y = 16.0 + _Y_SCALE * luma
    cb = F.avg_pool2d((128.0 + _C_SCALE * (b - luma) / (2 * (1 - _KB)))[:, None], 2)
    cr = F.avg_pool2d((128.0 + _C_SCALE * (r - luma) / (2 * (1 - _KR)))[:, None], 2)
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
            out[torch.as_tensor(sel, device=out.device)] = cut_crops(frames[f][None], np.zeros(len(sel)),
                                                                     rects_np[sel], pad_to)
        return out
    device = images.device
    rects_t = torch.as_tensor(rects_np, device=device)
    index = torch.as_tensor(index_np, device=device)
    sizes_h, sizes_w = rects_t[:, 3] - rects_t[:, 1], rects_t[:, 2] - rects_t[:, 0]
    height, width = images.shape[-2:]
    steps_y = torch.arange(pad_to[0], device=device)
    steps_x = torch.arange(pad_to[1], device=device)
    rows = (rects_t[:, 1:2] + torch.minimum(steps_y[None], sizes_h[:, None] - 1)).clamp_(0, height - 1)
    cols = (rects_t[:, 0:1] + torch.minimum(steps_x[None], sizes_w[:, None] - 1)).clamp_(0, width - 1)
    crops = nhwc(images)[index[:, None, None], rows[:, :, None], cols[:, None, :]]  # whole pixels at a time
    return nchw(crops)


def area_weights(sources: torch.Tensor, dst: int, pad: int, area: torch.Tensor) -> torch.Tensor:
    """Per-axis weights of OpenCV's ``INTER_AREA`` resize, as matrices: ``out = W @ in`` along the axis.

    OpenCV averages pixel areas (fractional coverage included) when *both*
    axes shrink; otherwise it uses, on both axes, a 2-tap rule that
    replicates source pixels and mixes only across their borders. Both are
    reproduced here, vectorised over a batch of sizes.

    Args:
        sources: ``(K,)`` source lengths along the axis (pixels).
        dst: destination length (pixels).
        pad: columns of the matrices (>= every source length); extra ones get weight 0.
        area: ``(K,)`` bool, True where the pixel-area rule applies (both axes shrink).

    Returns:
        ``(K, dst, pad)`` float32.
    """
    device = sources.device
    src = sources.to(torch.float64)[:, None, None]
    i = torch.arange(dst, device=device, dtype=torch.float64)[None, :, None]
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
    return torch.where(area[:, None, None], averaged, two_tap).float()


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
        device = canvas.device
        w = torch.as_tensor(widths[sl], device=device)
        h = torch.as_tensor(heights[sl], device=device)
        area = (w >= size) & (h >= size)
        rows = area_weights(h, size, canvas.shape[-2], area)[:, None]  # (k, 1, size, Hmax)
        cols = area_weights(w, size, canvas.shape[-1], area)[:, None]  # (k, 1, size, Wmax)
        out.append(rows @ canvas @ cols.transpose(-1, -2))
    return torch.cat(out)


def resize_area(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(..., C, H, W)`` float images to ``size`` = (width, height) like OpenCV's ``INTER_AREA``
    (pixel-area averaging when shrinking), as two small matrix products."""
    width, height = size
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image
    device = image.device
    area = torch.tensor([width <= w and height <= h], device=device)
    rows = area_weights(torch.tensor([h], device=device), height, h, area)[0].to(image.dtype)
    cols = area_weights(torch.tensor([w], device=device), width, w, area)[0].to(image.dtype)
    return rows @ image @ cols.T


def resize_bilinear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(N, C, H, W)`` float images to ``size`` = (width, height), OpenCV ``INTER_LINEAR``."""
    width, height = size
    if image.shape[-2:] == (height, width):
        return image
    batch = image if image.dim() == 4 else image[None]
    out = F.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    return out if image.dim() == 4 else out[0]


def resize_nearest(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(C, H, W)`` images to ``size`` = (width, height) by nearest neighbour, OpenCV ``INTER_NEAREST``."""
    width, height = size
    h, w = image.shape[-2:]
    # source index floor(dst * src / dst_size) in exact integer arithmetic (float scales miss exact multiples)
    rows = torch.arange(height, device=image.device) * h // height
    cols = torch.arange(width, device=image.device) * w // width
    return image.index_select(-2, rows).index_select(-1, cols)


def gaussian_kernel_size(sigma: float) -> int:
    """Kernel width (pixels) OpenCV's ``GaussianBlur(ksize=(0, 0))`` uses on uint8 images: 6 sigma + 1, odd."""
    return int(round(sigma * 3 * 2 + 1)) | 1


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, H, W)`` or ``(N, C, H, W)`` float images, edges replicated.

    Args:
        image: float images.
        sigma: standard deviation in pixels; the kernel is OpenCV's for uint8 images
            (:func:`gaussian_kernel_size` taps).
    """
    size = gaussian_kernel_size(sigma)
    half = size // 2
    x = torch.arange(size, device=image.device, dtype=torch.float64) - half
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(image.dtype)
    batch = image if image.dim() == 4 else image[None]
    n, c, h, w = batch.shape
    flat = batch.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (half, half, 0, 0), mode="replicate"), kernel.view(1, 1, 1, size))
    flat = F.conv2d(F.pad(flat, (0, 0, half, half), mode="replicate"), kernel.view(1, 1, size, 1))
    out = flat.reshape(n, c, h, w)
    return out if image.dim() == 4 else out[0]


def blend_into(image: torch.Tensor, rect: tuple[int, int, int, int], replacement: torch.Tensor,
               mask: torch.Tensor) -> None:
    """Blend ``replacement`` into ``image`` over ``rect`` with weights ``mask``, in place.

    Args:
        image: ``(3, H, W)`` uint8 frame (modified).
        rect: ``x0, y0, x1, y1`` integer pixels; may leave the frame (clipped).
        replacement: ``(3, y1 - y0, x1 - x0)`` float 0..255.
        mask: ``(y1 - y0, x1 - x0)`` float weights of the replacement, 0..1.

    The result is rounded like the CPU compositor (``floor(x + 0.5)``).
    """
    x0, y0, x1, y1 = (int(v) for v in rect)
    height, width = image.shape[-2:]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    m = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    new = replacement[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    target = image[:, cy0:cy1, cx0:cx1]
    blended = target.float() * (1.0 - m) + new * m
    target.copy_(to_uint8(blended))
