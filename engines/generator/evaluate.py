"""Evaluate anonymizers side by side: identity leakage and re-detection.

For every image of a set (held-out training faces, the WIDER FACE validation
subset, frames of the shared clips), faces are detected with the pipeline's
detector, anonymized with each mode through the pipeline's compositor, and:

* **re-detection** (the seed's Table 1 protocol): share of the originally
  detected faces that the detector still finds (IoU >= 0.5) after anonymization;
* **identity leakage**: share of faces (short side >= ``--min-leak-size`` px)
  whose anonymized version is still matched to the original by dlib's ResNet
  face recognizer (``face_recognition_models`` + ``dlib-bin``), at its standard
  threshold 0.6 (Euclidean distance). Both embeddings are taken at the
  original box, so a face the recognizer no longer "finds" still counts.

Example::

    python -m engines.generator.evaluate --modes gan blur pixelate mask \\
        --out benchmarks/results/generator-eval.json --contact-sheet benchmarks/results/contact-sheet.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np

from engines.generator.data import SHARED_DATA, load_shards

log = logging.getLogger(__name__)

#: dlib's standard same-person threshold (Euclidean distance of 128-d descriptors).
DLIB_THRESHOLD = 0.6
REPO = Path(__file__).resolve().parents[2]


class Recognizer:
    """dlib's ResNet face descriptor at a given box (5-point alignment)."""

    def __init__(self) -> None:
        import importlib.util

        import dlib

        # read the package's files directly: its __init__ needs pkg_resources, gone from recent setuptools
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("pip install dlib-bin face_recognition_models")
        models = Path(list(spec.submodule_search_locations)[0]) / "models"
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._rect = dlib.rectangle

    def embed(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(128,) descriptor of the face in ``box`` (x1, y1, x2, y2 px) of the RGB ``image``."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self.shape(image, self._rect(x1, y1, x2, y2))
        return np.asarray(self.net.compute_face_descriptor(image, shape), np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


# ---------------------------------------------------------------- image sets

def heldout_images(shards: Path, limit: int) -> Iterator[np.ndarray]:
    """Held-out context crops (128 px, face = half the crop) from the shard set."""
    faces = load_shards(shards, "heldout", limit)
    yield from faces.images


def wider_images(limit: int, root: Path = SHARED_DATA / "eval") -> Iterator[np.ndarray]:
    """The first ``limit`` WIDER FACE validation images of ``../shared/data/eval``."""
    import cv2

    count = 0
    for line in (root / "annotations.jsonl").read_text().splitlines():
        row = json.loads(line)
        if not row["image"].startswith("images/wider_val/"):
            continue
        yield cv2.cvtColor(cv2.imread(str(root / row["image"])), cv2.COLOR_BGR2RGB)
        count += 1
        if count >= limit:
            return


def video_frames(per_video: int, root: Path = SHARED_DATA / "videos") -> Iterator[np.ndarray]:
    """``per_video`` evenly spaced frames of every clip in ``../shared/data/videos``."""
    import av

    for path in sorted(p for p in root.iterdir() if p.suffix in (".mp4", ".avi", ".mkv", ".mov")):
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for i in np.linspace(0, len(frames) - 1, per_video).round().astype(int):
            yield frames[i]


# ---------------------------------------------------------------- evaluation

def build_compositors(modes: list[str], device: str) -> dict:
    """One compositor per mode (the GAN falls back to blur for faces it cannot take)."""
    from streamer.config import AnonymizerConfig
    from streamer.stages.compositor import Compositor

    out = {}
    for mode in modes:
        config = AnonymizerConfig(mode=mode)
        if mode == "gan":
            from streamer.stages.gan import build_gan_anonymizer

            out[mode] = Compositor(config, anonymizer=build_gan_anonymizer(device))
        else:
            out[mode] = Compositor(config)
    return out


def evaluate_images(images: Iterator[np.ndarray], detector, compositors: dict, recognizer: Recognizer | None,
                    min_leak_size: float) -> dict:
    """Re-detection and leakage counts per mode over ``images``."""
    from streamer.detections import Detections

    counts: dict = defaultdict(lambda: defaultdict(int))
    n_images = 0
    for image in images:
        n_images += 1
        found = detector([image])[0]
        if not len(found):
            continue
        found = Detections(xyxy=found.xyxy, scores=found.scores, keypoints=found.keypoints,
                           track_ids=np.arange(len(found)))
        sizes = np.minimum(found.widths, found.heights)
        leak_idx = np.flatnonzero(sizes >= min_leak_size) if recognizer else np.array([], int)
        originals = {int(i): recognizer.embed(image, found.xyxy[i]) for i in leak_idx} if recognizer else {}
        for mode, compositor in compositors.items():
            c = counts[mode]
            anonymized = image.copy()
            handled = compositor(anonymized, found)
            for name, n in handled.items():
                c[f"handled_{name}"] += n
            again = detector([anonymized])[0]
            c["faces"] += len(found)
            if len(again):
                c["redetected"] += int((iou_matrix(found.xyxy, again.xyxy).max(1) >= 0.5).sum())
            for i, emb in originals.items():
                dist = float(np.linalg.norm(emb - recognizer.embed(anonymized, found.xyxy[i])))
                c["leak_faces"] += 1
                c["leaked"] += int(dist < DLIB_THRESHOLD)
    result = {"images": n_images}
    for mode, c in counts.items():
        result[mode] = {**c, "redetection_rate": c["redetected"] / max(c["faces"], 1),
                        "leakage_rate": c["leaked"] / max(c["leak_faces"], 1) if c["leak_faces"] else None}
    return result


def contact_sheet(shards: Path, path: Path, device: str, count: int = 8) -> None:
    """PNG: one row per held-out face, original | blacked-out input | generated."""
    import cv2
    import torch

    from engines.generator.model import face_mask
    from streamer.stages.anonymizers import FaceCrops
    from streamer.stages.gan import build_gan_anonymizer

    gan = build_gan_anonymizer(device)
    faces = load_shards(shards, "heldout", count)
    generated = gan.anonymize(FaceCrops(images=list(faces.images), boxes=faces.boxes, keypoints=faces.keypoints,
                                        track_ids=np.arange(len(faces))))
    mask = face_mask(torch.from_numpy(faces.boxes), gan.input_size, gan.config.mask_scale)[:, 0].numpy()
    rows = [np.concatenate([o, (o * (1 - m[..., None])).astype(np.uint8), g], 1)
            for o, m, g in zip(faces.images, mask, generated)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def markdown_table(results: dict) -> str:
    """Results as a Markdown table (one row per set and mode)."""
    lines = ["| set | mode | faces | re-detected | identity leakage (dlib, d < 0.6) |", "|---|---|---|---|---|"]
    for set_name, res in results["sets"].items():
        for mode in results["modes"]:
            r = res.get(mode)
            if not r:
                continue
            leak = "n/a" if r["leakage_rate"] is None else f"{100 * r['leakage_rate']:.1f}% of {r['leak_faces']}"
            lines.append(f"| {set_name} | {mode} | {r['faces']} | {100 * r['redetection_rate']:.1f}% | {leak} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m engines.generator.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--modes", nargs="+", default=["gan", "blur", "pixelate", "mask"],
                   choices=["gan", "blur", "pixelate", "mask"])
    p.add_argument("--sets", nargs="+", default=["heldout", "wider", "videos"], choices=["heldout", "wider", "videos"])
    p.add_argument("--shards", type=Path, default=REPO / ".cache" / "generator-shards",
                   help="shard set whose held-out split is evaluated")
    p.add_argument("--heldout", type=int, default=400, help="held-out faces (at most)")
    p.add_argument("--wider", type=int, default=689, help="WIDER images (at most)")
    p.add_argument("--frames-per-video", type=int, default=10)
    p.add_argument("--min-leak-size", type=float, default=32.0, help="leakage only for faces >= this (px)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="write the results as JSON here (and .md beside it)")
    p.add_argument("--contact-sheet", type=Path, help="write the GAN contact sheet PNG here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from streamer.config import DetectorConfig
    from streamer.stages.detector import CenterFaceDetector

    detector = CenterFaceDetector(DetectorConfig())
    compositors = build_compositors(args.modes, args.device)
    recognizer = Recognizer()
    sources = {"heldout": lambda: heldout_images(args.shards, args.heldout),
               "wider": lambda: wider_images(args.wider),
               "videos": lambda: video_frames(args.frames_per_video)}
    results: dict = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()} {platform.processor()}",
                     "modes": args.modes, "command": "python -m engines.generator.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
                     "sets": {}}
    start = time.perf_counter()
    for name in args.sets:
        results["sets"][name] = evaluate_images(sources[name](), detector, compositors, recognizer, args.min_leak_size)
        log.info("%s done (%.0f s)", name, time.perf_counter() - start)
    results["seconds"] = round(time.perf_counter() - start, 1)
    table = markdown_table(results)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        args.out.with_suffix(".md").write_text(table + "\n")
    if args.contact_sheet:
        contact_sheet(args.shards, args.contact_sheet, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
