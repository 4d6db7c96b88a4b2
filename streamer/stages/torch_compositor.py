"""GPU compositor: the anonymization of :class:`~streamer.stages.compositor.Compositor`, on the device.

Same geometry (:func:`~streamer.stages.compositor.place_face`), same
anonymizer parameters, same feathered ellipse and the same order of
blending as the CPU compositor, so both give the same picture up to
rounding. The difference is where the pixels are:

* each frame is uploaded once (pinned host memory, asynchronous copy on
  CUDA), or arrives on the GPU already (NVDEC); the detector reads the same
  device copy (:attr:`streamer.detections.Frame.pixels`);
* crops, anonymizers and blending run on the device with
  :mod:`streamer.stages.frame_ops`; faces are batched across all frames of a
  batch: one gather and one resize for every crop, one generator call (or
  one batched blur / mosaic), one blending pass over the pixels of every
  face (:func:`~streamer.stages.frame_ops.paste_faces`), so the number of
  kernel launches per batch hardly grows with the number of faces
  (``benchmarks/host_ops.py`` counts them);
* the result crosses back once: downloaded into ``Frame.image`` (the
  default, what live outputs read), or left on the device
  (``download=False``) for a sink that converts it to the encoder's pixel
  format there and downloads that (:class:`streamer.sinks.video_file.VideoFileSink`).
  Then ``Frame.image`` is cleared: the host copy still shows the original faces.

Only the masks' ellipses are drawn on the host (at most 96 px across, by the
CPU compositor's own function) and uploaded in one copy per batch; they are
feathered on the device (:func:`~streamer.stages.frame_ops.feathered_masks`,
the CPU compositor's OpenCV blur to within 1e-5). Small
host arrays (rectangles, tables) go up from pinned memory without waiting
for the GPU (:func:`~streamer.stages.frame_ops.upload`).

Example:
    >>> import numpy as np
    >>> from streamer.config import AnonymizerConfig
    >>> image = np.full((120, 160, 3), 200, np.uint8)
    >>> faces = Detections(xyxy=[[60, 40, 100, 80]], scores=[0.9])
    >>> TorchCompositor(AnonymizerConfig(mode="mask"), device="cpu")(image, faces)
    Counter({'mask': 1})
    >>> int(image[60, 80].max()), int(image[5, 5].min())
    (0, 200)
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from streamer.config import AnonymizerConfig
from streamer.detections import Detections, Frame
from streamer.stages import frame_ops
from streamer.stages.anonymizers import Anonymizer, FaceCrops
from streamer.stages.compositor import (MIN_FEATHER_SIGMA, Compositor, ellipse_canvas, face_in_crop, keep_box,
                                        place_face)

_NONE = np.zeros(0, np.int64)


def _mask_supports(placements) -> np.ndarray | None:
    """Per face, the box of its crop outside which its blend mask is 0: the changed box (GAN) plus a
    pixel of margin, or None when every mask may cover its whole crop (classic modes)."""
    if any(p.changed is None for p in placements):
        return None
    changed = np.array([p.changed for p in placements], np.float64)
    limits = np.array([[p.width, p.height, p.width, p.height] for p in placements])
    boxes = np.concatenate([np.floor(changed[:, :2]) - 1, np.ceil(changed[:, 2:]) + 1], 1)
    return np.clip(boxes, 0, limits).astype(np.int64)


class TorchCompositor(Compositor):
    """Anonymizes the faces of frames on a torch device (CUDA, or the CPU for tests).

    Args:
        config: anonymizer settings.
        device: torch device the frames and crops live on.
        anonymizer: the main anonymizer (defaults to the config's classic mode);
            must implement ``anonymize_tensor``.
        fallback: for faces the main anonymizer cannot take.
        download: put the result back into ``Frame.image`` (True), or leave it
            on the device only and clear ``Frame.image`` (False).
        stream: CUDA stream to anonymize on (None: the calling thread's current
            stream); the event each frame's ``ready`` holds is recorded on it.
    """

    def __init__(self, config: AnonymizerConfig, device: str | torch.device = "cpu",
                 anonymizer: Anonymizer | None = None, fallback: Anonymizer | None = None,
                 download: bool = True, stream: "torch.cuda.Stream | None" = None) -> None:
        super().__init__(config, anonymizer=anonymizer, fallback=fallback)
        self.device = torch.device(device)
        self.download = download
        self.stream = stream

    def upload(self, frames: list[Frame]) -> None:
        """Give every frame a ``device_image`` on this compositor's device (one copy, asynchronous on CUDA)."""
        for frame in frames:
            if frame.device_image is None:
                frame.device_image = frame_ops.upload(frame.image, self.device)
            elif frame.device_image.device != self.device:
                frame.device_image = frame.device_image.to(self.device)

    def __call__(self, image: np.ndarray, detections: Detections) -> Counter:
        """Anonymize every face of ``detections`` in ``image`` (RGB uint8, modified in place), like
        :class:`Compositor`. Returns how many faces each anonymizer handled."""
        frame = Frame(index=0, pts=None, time_base=None, image=image, detections=detections)
        return self.anonymize_frames([frame], download=True)[0]

    def anonymize_frames(self, frames: list[Frame], download: bool | None = None) -> list[Counter]:
        """Anonymize the faces in ``frame.detections`` of every frame, on the device.

        The frames are worked on as one ``(N, 3, H, W)`` batch (a copy when
        there are several: a few microseconds on a GPU); afterwards each
        ``frame.device_image`` is a view of that batch.

        Args:
            frames: frames with their detections; uploaded first if they are not on the device.
            download: override the compositor's ``download`` setting.

        Returns:
            Per frame, how many faces each anonymizer handled.
        """
        download = self.download if download is None else download
        self.upload(frames)
        with frame_ops.on_stream(self.stream):
            return self._anonymize_uploaded(frames, download)

    def _anonymize_uploaded(self, frames: list[Frame], download: bool) -> list[Counter]:
        counts = [Counter() for _ in frames]
        assigned = [self.assign(f.detections) if len(f.detections) else (_NONE, _NONE) for f in frames]
        if any(len(main) or len(fallback) for main, fallback in assigned):
            batch = frame_ops.stack_frames([frame_ops.nchw(frame.device_image) for frame in frames])
            for i, frame in enumerate(frames):
                frame.device_image = frame_ops.nhwc(batch[i])
            for slot, anonymizer in enumerate((self.anonymizer, self.fallback)):
                jobs = [(i, int(j)) for i, faces in enumerate(assigned) for j in faces[slot]]
                if jobs:
                    self._apply_batch(frames, batch, jobs, anonymizer)
                    for i, _ in jobs:
                        counts[i][anonymizer.name] += 1
        ready = None
        if not download and self.device.type == "cuda":  # the sink converts on its own stream: tell it when
            ready = torch.cuda.Event()
            ready.record()
        for frame in frames:
            frame.ready = ready
            self._hand_back(frame, download)
        return counts

    def _apply_batch(self, frames: list[Frame], batch: torch.Tensor, jobs: list[tuple[int, int]],
                     anonymizer: Anonymizer) -> None:
        """Anonymize the faces ``jobs`` ((frame, face) pairs) of ``batch`` (N, 3, H, W) with ``anonymizer``:
        one gather of every crop, one anonymizer call, one blend of every face."""
        placements, boxes, keypoints, track_ids = [], [], [], []
        for i, j in jobs:
            det = frames[i].detections
            p = place_face(det.xyxy[j], self.config, anonymizer.context, anonymizer.mask_scale)
            face_box, face_kps = face_in_crop(p, det.xyxy[j], det.keypoints[j], anonymizer.input_size)
            placements.append(p)
            boxes.append(face_box)
            keypoints.append(face_kps)
            track_ids.append(det.track_ids[j])
        frame_index = np.array([i for i, _ in jobs])
        rects = np.array([p.rect for p in placements], np.int64)
        if anonymizer.input_size:  # every crop of the batch to one size, in one gather + resize
            crops = frame_ops.crop_and_resize(batch, frame_index, rects, anonymizer.input_size)
        else:  # native size: one gather, each face a view of its own size
            canvas = frame_ops.cut_crops(batch, frame_index, rects).float()
            crops = [canvas[k, :, :p.height, :p.width] for k, p in enumerate(placements)]
        results = anonymizer.anonymize_tensor(FaceCrops(images=crops, boxes=np.stack(boxes),
                                                        keypoints=np.stack(keypoints),
                                                        track_ids=np.array(track_ids, np.int64)))
        if torch.is_tensor(results):
            results = results.to(self.device)
        # the ellipses are drawn on the host (a few microseconds each), feathered here in one batch: blurring
        # each on the host cost ~95 us a face (2-core CPU), most of the stage's host time on a GPU
        canvases, sigmas, keep = [], [], []
        for p in placements:
            canvas, sigma = ellipse_canvas(p.width, p.height, p.region, p.feather)
            canvases.append(canvas)
            sigmas.append(sigma)
            keep.append(None if p.changed is None else keep_box(p.changed, p.width, p.height, canvas.shape))
        masks = frame_ops.feathered_masks(canvases, sigmas, keep, self.device, MIN_FEATHER_SIGMA)
        # in order: where faces overlap, later faces blend over earlier anonymized pixels
        frame_ops.paste_faces(batch, frame_index, rects, frame_ops.flatten_images(results), masks,
                              supports=_mask_supports(placements))

    @staticmethod
    def _hand_back(frame: Frame, download: bool) -> None:
        device_image = frame.device_image
        if frame.image is not None and device_image.device.type == "cpu" \
                and np.shares_memory(frame.image, device_image.numpy()):
            return  # the CPU "device" worked on the host array itself
        if download:
            if frame.image is None:
                frame.image = device_image.cpu().numpy()
            else:
                torch.from_numpy(frame.image).copy_(device_image)
        else:
            frame.image = None  # still the original faces: only the device copy is anonymized
