"""Face detector stage: CenterFace boxes, scores and 5 facial keypoints.

The network runs through an :class:`engines.runner.Runner`, so the same code
serves ONNX Runtime on the CPU and the GPU backends. Decoding of the heatmaps
and NMS are vectorised NumPy.

Example:
    >>> import numpy as np
    >>> from streamer.config import DetectorConfig
    >>> det = CenterFaceDetector(DetectorConfig(input_width=320))
    >>> [len(d) for d in det([np.zeros((240, 320, 3), np.uint8)])]
    [0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from engines.centerface_onnx import INPUT_NAME, OUTPUT_NAMES, STRIDE_MULTIPLE, load_centerface_onnx
from engines.runner import OnnxRuntimeRunner, Runner
from streamer.config import DetectorConfig
from streamer.detections import Detections

if TYPE_CHECKING:  # torch is imported only where frames are on a device (the CPU path does without it)
    import torch

#: CenterFace's output stride: one heatmap cell per 4x4 input pixels.
OUTPUT_STRIDE = 4


def detector_input_size(width: int, height: int, input_width: int) -> tuple[int, int]:
    """Network input size (width, height) in pixels for a frame of ``width`` x ``height``.

    The frame is scaled to ``input_width`` (never up-scaled; 0 = native width),
    keeping the aspect ratio, and both sides are rounded up to a multiple of 32.
    """
    target_w = width if input_width <= 0 or input_width >= width else input_width
    target_h = height * target_w / width
    round_up = lambda v: int(math.ceil(v / STRIDE_MULTIPLE) * STRIDE_MULTIPLE)  # noqa: E731
    return round_up(target_w), round_up(target_h)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    A box is dropped when its IoU with a kept, higher-scoring box is at least
    ``iou_threshold``.
    """
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou < iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_cells(ys: np.ndarray, xs: np.ndarray, cells: np.ndarray, input_size: tuple[int, int],
                 nms_iou: float) -> Detections:
    """Detections from the heatmap cells above the threshold, in network-input pixels.

    Args:
        ys, xs: (K,) row and column of each cell in the output grid.
        cells: (15, K) the outputs at those cells: score, scale (2), offset (2), landmarks (10).
        input_size: (width, height) of the network input in pixels.
        nms_iou: NMS IoU threshold.
    """
    if ys.size == 0:
        return Detections.empty()
    width, height = input_size
    score, scale, offset, landmarks = cells[0], cells[1:3], cells[3:5], cells[5:15]
    box_h = np.exp(scale[0]) * OUTPUT_STRIDE
    box_w = np.exp(scale[1]) * OUTPUT_STRIDE
    cx = (xs + offset[1] + 0.5) * OUTPUT_STRIDE
    cy = (ys + offset[0] + 0.5) * OUTPUT_STRIDE
    x1 = np.clip(cx - box_w / 2, 0, width)
    y1 = np.clip(cy - box_h / 2, 0, height)
    x2 = np.minimum(x1 + box_w, width)
    y2 = np.minimum(y1 + box_h, height)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    scores = score.astype(np.float32)
    kp_x = landmarks[1::2].T * box_w[:, None] + x1[:, None]
    kp_y = landmarks[0::2].T * box_h[:, None] + y1[:, None]
    keypoints = np.stack([kp_x, kp_y], axis=2).astype(np.float32)
    keep = nms(boxes, scores, nms_iou)
    return Detections(xyxy=boxes[keep], scores=scores[keep], keypoints=keypoints[keep])


def cells_above(outputs, threshold: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image of a batch of CenterFace outputs left on a device (torch tensors), the cells whose
    heatmap score exceeds ``threshold``: (ys, xs, cells (15, K)) host arrays for :func:`decode_cells`.

    Only those cells cross to the host, in one copy: a few kilobytes instead
    of the whole output maps (15 x 1/16 of the input pixels per frame).
    """
    import torch

    heatmap = outputs[0]
    found = (heatmap[:, 0].float() > threshold).nonzero()  # (K, 3): image, row, column; FP32 as on the host
    image, ys, xs = found.unbind(1)
    cells = torch.cat([o[image, :, ys, xs].float() for o in outputs], 1)  # (K, 15)
    host = torch.cat([found.float(), cells], 1).cpu().numpy()  # one copy; rows/columns are exact in float32
    per_image = np.searchsorted(host[:, 0], np.arange(len(heatmap) + 1))
    return [(host[a:b, 1].astype(np.int64), host[a:b, 2].astype(np.int64), host[a:b, 3:].T)
            for a, b in zip(per_image[:-1], per_image[1:])]


#: Heatmap cells per frame that :func:`start_candidates` sends to the host without waiting for the GPU.
CANDIDATE_CELLS = 1024


@dataclass
class PendingCells:
    """A batch's detector outputs on their way to the host (:meth:`CenterFaceDetector.start`).

    Attributes:
        images: the batch's frames (kept for the rare re-run, see :func:`candidate_cells`).
        input_size: network input (width, height) in pixels.
        cells: per frame, the cells above the threshold, when they are known already (host runners).
        candidates: ``(N, 17, K)`` host tensor being filled by an asynchronous copy: per frame the
            flat heatmap index and the count of cells above the threshold (rows 0-1), then the 15
            outputs (rows 2-16) of its K best cells.
        ready: CUDA event recorded after the copy (None: the copy is done).
    """

    images: list
    input_size: tuple[int, int]
    cells: list | None = None
    candidates: "torch.Tensor | None" = None
    ready: "torch.cuda.Event | None" = None


def start_candidates(outputs, threshold: float, k: int | None = None) -> "torch.Tensor":
    """The K (default :data:`CANDIDATE_CELLS`) best heatmap cells of each frame with their outputs, as
    one ``(N, 17, K)`` float32 tensor on the outputs' device, computed without waiting for the device
    (no data-dependent shapes).

    Rows: 0 the cell's flat index in the output grid, 1 how many cells of the frame exceed
    ``threshold`` (the same in every column), 2-16 the 15 outputs (score, scale, offset, landmarks).
    :func:`candidate_cells` reads it on the host.
    """
    import torch

    heatmap = outputs[0][:, 0].float().flatten(1)  # FP32 as on the host
    k = min(k or CANDIDATE_CELLS, heatmap.shape[1])
    index = heatmap.topk(k, dim=1, sorted=False).indices  # (N, K)
    count = (heatmap > threshold).sum(1, keepdim=True).float()  # (N, 1)
    values = [o.flatten(2).gather(2, index[:, None, :].expand(-1, o.shape[1], -1)).float() for o in outputs]
    # flat indices < 2**24 are exact in float32 (a 4K frame has 0.5 M cells)
    return torch.cat([index[:, None].float(), count[:, :, None].expand(-1, 1, k), *values], 1)


def candidate_cells(candidates: np.ndarray, grid_width: int, threshold: float
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Per frame, :func:`decode_cells`' inputs (ys, xs, cells) from :func:`start_candidates`' host copy,
    in the row-major order of the output grid, as :func:`cells_above` gives them; None for a frame
    with more cells above the threshold than candidates (its cells must be read in full)."""
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for frame in candidates:
        if frame[1, 0] > frame.shape[1]:
            out.append(None)
            continue
        keep = frame[2] > threshold
        index = frame[0, keep].astype(np.int64)
        order = np.argsort(index)
        index = index[order]
        out.append((index // grid_width, index % grid_width, frame[2:, keep][:, order]))
    return out


class CenterFaceDetector:
    """Detects faces in batches of RGB frames.

    Args:
        config: detector settings (input width, threshold, NMS).
        runner: the network runner; defaults to ONNX Runtime on the CPU.
        threads: CPU inference threads for the default runner (0 = all cores).
        stream: CUDA stream for device frames (None: the calling thread's current stream).
    """

    def __init__(self, config: DetectorConfig, runner: Runner | None = None, threads: int = 0,
                 stream: "torch.cuda.Stream | None" = None) -> None:
        self.config = config
        self.runner = runner or OnnxRuntimeRunner(load_centerface_onnx(), INPUT_NAME, OUTPUT_NAMES, threads)
        self.stream = stream

    def preprocess(self, images: list[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
        """Resize RGB uint8 frames to ``input_size`` and stack as float32 (N, 3, H, W), 0..255."""
        width, height = input_size
        batch = np.empty((len(images), 3, height, width), dtype=np.float32)
        for i, image in enumerate(images):
            if image.shape[1] != width or image.shape[0] != height:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            batch[i] = image.transpose(2, 0, 1)
        return batch

    def _cells(self, images: list, input_size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per frame, the output cells above the threshold (:func:`decode_cells`' inputs), for host
        frames or device (torch) frames."""
        threshold = self.config.threshold
        if isinstance(images[0], np.ndarray):
            outputs = self.runner(self.preprocess(images, input_size))
        else:
            from streamer.stages import frame_ops

            # frames already on a device: resize there; a runner taking device tensors keeps the outputs
            # there too, and only the cells above the threshold are downloaded
            with frame_ops.on_stream(self.stream):
                batch = frame_ops.detector_input([frame_ops.nchw(image) for image in images], input_size)
                run_tensor = getattr(self.runner, "run_tensor", None)
                if run_tensor is not None:
                    return cells_above(run_tensor(batch), threshold)
                batch = batch.cpu().numpy()
            outputs = self.runner(batch)
        cells = []
        for b in range(len(images)):
            ys, xs = np.nonzero(outputs[0][b, 0] > threshold)
            cells.append((ys, xs, np.concatenate([o[b][:, ys, xs] for o in outputs])))
        return cells

    def start(self, images: list) -> PendingCells:
        """Start detecting faces in same-sized RGB uint8 frames; :meth:`collect` returns the detections.

        For frames on a GPU with a runner taking device tensors, this only
        queues the work (resize, network, the best cells of each frame and
        their copy to the host) and returns at once, so the caller can track
        and anonymize the previous batch while the GPU detects this one. For
        any other frames or runner the detection is done here.
        """
        if not len(images):
            return PendingCells(images=[], input_size=(0, 0), cells=[])
        frame_h, frame_w = images[0].shape[:2]
        input_size = detector_input_size(frame_w, frame_h, self.config.input_width)
        run_tensor = getattr(self.runner, "run_tensor", None)
        if isinstance(images[0], np.ndarray) or run_tensor is None:
            return PendingCells(images=images, input_size=input_size, cells=self._cells(images, input_size))
        import torch

        from streamer.stages import frame_ops

        with frame_ops.on_stream(self.stream):
            batch = frame_ops.detector_input([frame_ops.nchw(image) for image in images], input_size)
            candidates = start_candidates(run_tensor(batch), self.config.threshold)
            cuda = candidates.is_cuda
            host = torch.empty(candidates.shape, dtype=candidates.dtype, pin_memory=cuda)
            host.copy_(candidates, non_blocking=cuda)
            ready = None
            if cuda:
                ready = torch.cuda.Event()
                ready.record()
        return PendingCells(images=images, input_size=input_size, candidates=host, ready=ready)

    def collect(self, pending: PendingCells) -> list[Detections]:
        """The detections of a batch :meth:`start` started (waits for the GPU); boxes in frame pixels."""
        if not len(pending.images):
            return []
        cells = pending.cells
        if cells is None:
            if pending.ready is not None:
                pending.ready.synchronize()
            grid_width = pending.input_size[0] // OUTPUT_STRIDE
            cells = candidate_cells(pending.candidates.numpy(), grid_width, self.config.threshold)
            if any(c is None for c in cells):  # a crowd: more cells than candidates; read them in full
                cells = self._cells(pending.images, pending.input_size)
        return self._decode(pending.images, pending.input_size, cells)

    def __call__(self, images: list) -> list[Detections]:
        """Detect faces in same-sized RGB uint8 frames, (H, W, 3) NumPy arrays or torch tensors
        (on any device); boxes in frame pixels."""
        return self.collect(self.start(images))

    def _decode(self, images: list, input_size: tuple[int, int], cells_per_frame: list) -> list[Detections]:
        """Detections (frame pixels) from each frame's cells above the threshold."""
        frame_h, frame_w = images[0].shape[:2]
        sx, sy = frame_w / input_size[0], frame_h / input_size[1]
        results = []
        for ys, xs, cells in cells_per_frame:
            det = decode_cells(ys, xs, cells, input_size, self.config.nms_iou)
            det.xyxy *= np.array([sx, sy, sx, sy], dtype=np.float32)
            det.keypoints *= np.array([sx, sy], dtype=np.float32)
            results.append(det)
        return results
