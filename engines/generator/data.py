"""Training data for the face generator: build compact shards, read them back, augment.

Build (detects every face with the pipeline's own CenterFace detector, keeps
faces >= ``min_face`` px, cuts the square context crop the compositor cuts,
stores crop + box + keypoints)::

    python -m engines.generator.data --out .cache/generator-shards --sources lfw fairface

A shard is an ``.npz`` of JPEG bytes (``jpeg`` concatenated, ``offsets``),
``boxes`` (N, 4) and ``keypoints`` (N, 5, 2) in crop pixels, ``identity`` and
``member`` names. File names start with the split: ``train-*.npz`` or
``heldout-*.npz``. The held-out split is chosen by identity (5 %: crc32 of
the identity), so no held-out person is ever trained on. Every part of a shard
set is capped (``--part-mb``) so a part fits one device transfer.

Source data is read from ``../shared/data`` beside the repository and never
committed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: ``../shared/data`` beside the repository (never committed).
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: Share of identities (1 in HELDOUT_MODULO) kept out of training.
HELDOUT_MODULO = 20
SPLITS = ("train", "heldout")


# ---------------------------------------------------------------- geometry

def context_rect(box: np.ndarray, context: float) -> tuple[int, int, int, int]:
    """Integer square ``x0, y0, x1, y1`` (pixels) of side ``context`` x the box's longer side, centred on it.

    This is the compositor's GAN crop (``streamer.stages.compositor.place_face`` with context > 1)
    whenever the feathered face ellipse fits inside it.
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = context * max(box[2] - box[0], box[3] - box[1]) / 2
    return (int(np.floor(cx - half)), int(np.floor(cy - half)), int(np.ceil(cx + half)), int(np.ceil(cy + half)))


def cut_context_crop(image: np.ndarray, box: np.ndarray, keypoints: np.ndarray, context: float,
                     size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Cut the square context crop around ``box``, edge-replicated where it leaves the image.

    Returns the (size, size, 3) crop, the box (4,) and keypoints (5, 2) in crop
    pixels, and the share of the crop that is padding (0..1).
    """
    x0, y0, x1, y1 = context_rect(box, context)
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    crop = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, borderType=cv2.BORDER_REPLICATE)
    pad_share = 1.0 - (cx1 - cx0) * (cy1 - cy0) / max(1, (x1 - x0) * (y1 - y0))
    fx, fy = size / (x1 - x0), size / (y1 - y0)
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    offset = np.array([x0, y0], np.float32)
    scale = np.array([fx, fy], np.float32)
    out_box = ((box.reshape(2, 2) - offset) * scale).reshape(4)
    return crop, out_box.astype(np.float32), ((keypoints - offset) * scale).astype(np.float32), pad_share


def is_heldout(identity: str) -> bool:
    """True for the 1-in-20 identities kept out of training (stable across runs)."""
    return zlib.crc32(identity.encode()) % HELDOUT_MODULO == 0


# ---------------------------------------------------------------- sources

@dataclass
class SourceImage:
    """One image of a source set: RGB uint8, its identity and member name."""

    image: np.ndarray
    identity: str
    member: str


def _decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_source(name: str, root: Path = SHARED_DATA, limit: int | None = None) -> Iterator[SourceImage]:
    """Images of ``lfw`` (identity = person) or ``fairface`` (identity = file) from ``root``."""
    folder = root / ("faces_lfw" if name == "lfw" else "faces_fairface")
    if name not in ("lfw", "fairface"):
        raise ValueError(f"unknown source {name!r} (lfw, fairface)")
    identities: dict[str, str] = {}
    if name == "lfw":
        with open(folder / "index.csv", newline="") as f:
            identities = {row["member"]: row["identity"] for row in csv.DictReader(f)}
    count = 0
    for tar_path in sorted(folder.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".jpg"):
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                identity = identities.get(member.name, member.name.split("/")[0]) if name == "lfw" \
                    else f"fairface/{member.name}"
                yield SourceImage(_decode(data), identity, f"{name}/{member.name}")
                count += 1
                if limit is not None and count >= limit:
                    return


# ---------------------------------------------------------------- detection

def detect_main_face(detector, images: list[np.ndarray], pad: int) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per image, the detected face nearest the centre as (box (4,), keypoints (5, 2)), or None.

    Images are padded by ``pad`` px (edge replication) before detection, so faces
    that fill the frame are still found; results are in unpadded pixels.
    """
    padded = [cv2.copyMakeBorder(im, pad, pad, pad, pad, cv2.BORDER_REPLICATE) for im in images]
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for image, det in zip(images, detector(padded)):
        keep = det.has_keypoints
        if not keep.any():
            out.append(None)
            continue
        det = det[np.flatnonzero(keep)]
        centres = (det.xyxy[:, :2] + det.xyxy[:, 2:]) / 2 - pad
        target = np.array([image.shape[1] / 2, image.shape[0] / 2], np.float32)
        i = int(np.argmin(((centres - target) ** 2).sum(1)))
        out.append((det.xyxy[i] - pad, det.keypoints[i] - pad))
    return out


# ---------------------------------------------------------------- shards

class ShardWriter:
    """Accumulates crops of one split and writes ``<split>-<source>-<k>.npz`` shards of ``shard_size``."""

    def __init__(self, out: Path, split: str, source: str, shard_size: int, quality: int) -> None:
        self.out, self.split, self.source = out, split, source
        self.shard_size, self.quality = shard_size, quality
        self.rows: list[tuple[bytes, np.ndarray, np.ndarray, str, str]] = []
        self.shards = 0
        self.count = 0

    def add(self, crop: np.ndarray, box: np.ndarray, keypoints: np.ndarray, identity: str, member: str) -> None:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        assert ok
        self.rows.append((jpeg.tobytes(), box, keypoints, identity, member))
        self.count += 1
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        jpegs = [r[0] for r in self.rows]
        offsets = np.concatenate([[0], np.cumsum([len(j) for j in jpegs])]).astype(np.int64)
        path = self.out / f"{self.split}-{self.source}-{self.shards:03d}.npz"
        np.savez(path, jpeg=np.frombuffer(b"".join(jpegs), np.uint8), offsets=offsets,
                 boxes=np.stack([r[1] for r in self.rows]), keypoints=np.stack([r[2] for r in self.rows]),
                 identity=np.array([r[3] for r in self.rows]), member=np.array([r[4] for r in self.rows]))
        self.shards += 1
        self.rows = []


def build_shards(out: Path, sources: list[str], root: Path = SHARED_DATA, limit: int | None = None,
                 min_face: float = 24.0, context: float = 2.0, size: int = 128, shard_size: int = 2048,
                 quality: int = 85, detector_batch: int = 32) -> dict:
    """Build the shard set in ``out``; returns (and writes as ``manifest.json``) the counts.

    Args:
        out: output folder.
        sources: ``lfw`` and/or ``fairface``.
        root: the shared data folder.
        limit: at most this many images per source (None: all).
        min_face: faces whose box's shorter side is below this (source pixels) are skipped.
        context: crop side / face box side.
        size: crop side in pixels.
        shard_size: crops per shard file.
        quality: JPEG quality of the stored crops.
        detector_batch: images per detector call.
    """
    from streamer.config import DetectorConfig
    from streamer.stages.detector import CenterFaceDetector

    out.mkdir(parents=True, exist_ok=True)
    detector = None
    stats: dict = {"sources": {}, "context": context, "size": size, "min_face": min_face, "quality": quality,
                   "detector": "CenterFace (streamer.stages.detector), threshold 0.2, input padded by 25%"}
    start = time.perf_counter()
    for source in sources:
        writers = {s: ShardWriter(out, s, source, shard_size, quality) for s in SPLITS}
        seen = no_face = small = 0
        pad_shares: list[float] = []
        batch: list[SourceImage] = []

        def process(items: list[SourceImage]) -> None:
            nonlocal detector, no_face, small
            pad = items[0].image.shape[0] // 4
            if detector is None:
                size_in = items[0].image.shape[1] + 2 * pad
                detector = CenterFaceDetector(DetectorConfig(input_width=size_in, threshold=0.2))
            for item, found in zip(items, detect_main_face(detector, [i.image for i in items], pad)):
                if found is None:
                    no_face += 1
                    continue
                box, kps = found
                if min(box[2] - box[0], box[3] - box[1]) < min_face:
                    small += 1
                    continue
                crop, cbox, ckps, pad_share = cut_context_crop(item.image, box, kps, context, size)
                pad_shares.append(pad_share)
                split = "heldout" if is_heldout(item.identity) else "train"
                writers[split].add(crop, cbox, ckps, item.identity, item.member)

        for item in iter_source(source, root, limit):
            seen += 1
            if batch and item.image.shape != batch[0].image.shape:
                process(batch)
                batch = []
            batch.append(item)
            if len(batch) >= detector_batch:
                process(batch)
                batch = []
        if batch:
            process(batch)
        for w in writers.values():
            w.flush()
        stats["sources"][source] = {"images": seen, "no_face": no_face, "too_small": small,
                                    "train": writers["train"].count, "heldout": writers["heldout"].count,
                                    "mean_padding_share": float(np.mean(pad_shares)) if pad_shares else 0.0}
        log.info("%s: %s", source, stats["sources"][source])
    stats["seconds"] = round(time.perf_counter() - start, 1)
    stats["bytes"] = sum(p.stat().st_size for p in out.glob("*.npz"))
    (out / "manifest.json").write_text(json.dumps(stats, indent=2))
    return stats


@dataclass
class FaceSet:
    """Decoded shards.

    Attributes:
        images: (N, S, S, 3) uint8 RGB crops.
        boxes: (N, 4) face boxes in crop pixels.
        keypoints: (N, 5, 2) keypoints in crop pixels.
        identity: (N,) identity names.
        member: (N,) source file names.
    """

    images: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    identity: np.ndarray
    member: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def load_shards(folders: list[Path] | Path, split: str = "train", limit: int | None = None) -> FaceSet:
    """Read and decode every ``<split>-*.npz`` in ``folders`` (at most ``limit`` crops)."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    files = sorted(p for folder in folders for p in Path(folder).glob(f"{split}-*.npz"))
    if not files:
        raise FileNotFoundError(f"no {split}-*.npz shards in {', '.join(map(str, folders))}")
    images, boxes, kps, ident, member = [], [], [], [], []
    for path in files:
        with np.load(path) as z:
            data, offsets = z["jpeg"], z["offsets"]
            n = len(offsets) - 1 if limit is None else min(len(offsets) - 1, limit - len(images))
            images += [_decode(data[offsets[i]:offsets[i + 1]].tobytes()) for i in range(n)]
            boxes.append(z["boxes"][:n])
            kps.append(z["keypoints"][:n])
            ident.append(z["identity"][:n])
            member.append(z["member"][:n])
        if limit is not None and len(images) >= limit:
            break
    return FaceSet(np.stack(images), np.concatenate(boxes), np.concatenate(kps), np.concatenate(ident),
                   np.concatenate(member))


# ---------------------------------------------------------------- augmentation

def augment(images, boxes, keypoints, generator, shift: float = 0.05, scale: float = 0.1, colour: float = 0.1):
    """Random flip, scale/shift jitter and colour jitter of a batch (torch).

    Args:
        images: (N, 3, S, S) float in [-1, 1].
        boxes: (N, 4), keypoints: (N, 5, 2) in crop pixels; moved with the image.
        generator: CPU ``torch.Generator`` (the draws are reproducible).
        shift: largest shift, fraction of the crop side.
        scale: largest relative zoom in or out.
        colour: brightness / contrast / saturation jitter amplitude.

    Returns:
        ``images, boxes, keypoints`` transformed.
    """
    import torch
    import torch.nn.functional as F

    from engines.generator.model import KEYPOINT_FLIP

    n, _, size, _ = images.shape
    dev = images.device

    def draw(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    flip = draw(n) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    fx1, fx2 = size - boxes[:, 2], size - boxes[:, 0]
    boxes = torch.where(flip[:, None], torch.stack([fx1, boxes[:, 1], fx2, boxes[:, 3]], 1), boxes)
    flipped = keypoints[:, list(KEYPOINT_FLIP)].clone()
    flipped[..., 0] = size - flipped[..., 0]
    keypoints = torch.where(flip[:, None, None], flipped, keypoints)

    s = 1.0 + (draw(n) * 2 - 1) * scale
    t = (draw(n, 2) * 2 - 1) * shift * size  # pixels
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = -(2 * t / size) / s[:, None]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    centre = size / 2
    boxes = ((boxes.view(n, 2, 2) - centre) * s[:, None, None] + centre + t[:, None]).view(n, 4)
    keypoints = (keypoints - centre) * s[:, None, None] + centre + t[:, None]

    brightness = (draw(n) * 2 - 1) * colour
    contrast = 1 + (draw(n) * 2 - 1) * colour * 2
    saturation = 1 + (draw(n) * 2 - 1) * colour * 2
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    gray = images.mean(dim=1, keepdim=True)
    images = gray + (images - gray) * saturation[:, None, None, None]
    return images.clamp(-1, 1), boxes, keypoints


def main(argv: list[str] | None = None) -> int:
    """CLI: build shards from ``../shared/data``."""
    parser = argparse.ArgumentParser(prog="python -m engines.generator.data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder for the shards")
    parser.add_argument("--sources", nargs="+", default=["lfw", "fairface"], choices=["lfw", "fairface"])
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="shared data folder")
    parser.add_argument("--limit", type=int, help="at most this many images per source")
    parser.add_argument("--min-face", type=float, default=24.0, help="skip faces smaller than this (px)")
    parser.add_argument("--shard-size", type=int, default=2048, help="crops per shard file")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality of stored crops")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stats = build_shards(args.out, args.sources, args.root, args.limit, args.min_face,
                         shard_size=args.shard_size, quality=args.quality)
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
