"""The detector quantized to INT8 for ONNX Runtime on the CPU, against FP32: speed and faces found.

Static quantization (QDQ, per-channel INT8 weights, UINT8 activations) calibrated on the built-in sample
clip's frames and scikit-image's pictures (no evaluation data), then both detectors on the WIDER FACE
validation images of ``../shared/data/eval``: recall of the annotated faces (IoU >= 0.5), the annotated
faces one finds and the other misses, and the time per image. ``--int8-thresholds`` runs INT8 at lower
heatmap thresholds too (the FP32 detector stays at the configured one).

Usage:
    python benchmarks/detector_int8_cpu.py [--int8-thresholds 0.2,0.15,0.1] [--images 689]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from skimage import data

from engines.centerface_onnx import load_centerface_onnx
from engines.runner import OnnxRuntimeRunner
from streamer.config import load_config
from streamer.sample import make_sample_clip
from streamer.stages.detector import INPUT_NAME, OUTPUT_NAMES, CenterFaceDetector, detector_input_size

EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes in pixels."""
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def quantized_model(detector: CenterFaceDetector, folder: Path) -> Path:
    """CenterFace quantized to INT8, calibrated on the sample clip and scikit-image pictures."""
    clip = make_sample_clip(str(folder / "calibration.mp4"), seconds=2.0, fps=10, faces=2)
    with av.open(clip.path) as c:
        images = [vf.to_ndarray(format="rgb24") for vf in c.decode(video=0)]
    images += [data.astronaut(), data.chelsea(), data.coffee(), np.ascontiguousarray(data.astronaut()[:, ::-1])]
    width = detector.config.input_width
    feeds = iter([{INPUT_NAME: detector.preprocess([i], detector_input_size(i.shape[1], i.shape[0], width))}
                  for i in images])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    onnx.save(version_converter.convert_version(load_centerface_onnx(), 13), str(fp32))  # per-channel QDQ: 13+
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return int8


def main() -> None:
    """Print one line per INT8 threshold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8-thresholds", default="0.2,0.15,0.1")
    parser.add_argument("--images", type=int, default=689, help="WIDER validation images to use")
    args = parser.parse_args()
    if not EVAL.is_dir():
        raise SystemExit(f"{EVAL} not present: this benchmark needs ../shared/data/eval")
    config = load_config(None).detector
    fp32 = CenterFaceDetector(config, threads=2)
    folder = Path(tempfile.mkdtemp())
    int8_path = quantized_model(fp32, folder)
    samples = []
    for line in open(EVAL / "annotations.jsonl"):
        entry = json.loads(line)
        if entry["image"].startswith("images/wider_val") and len(samples) < args.images:
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in entry["boxes"]], np.float32).reshape(-1, 4)
            samples.append((cv2.cvtColor(cv2.imread(str(EVAL / entry["image"])), cv2.COLOR_BGR2RGB), boxes))
    print(f"{len(samples)} WIDER validation images, {sum(len(b) for _, b in samples)} annotated faces, "
          f"detector width {config.input_width}, FP32 threshold {config.threshold}")
    print("| detector | threshold | recall | found only by FP32 | found only by this | detections | ms/image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    runs = [("FP32", fp32, config.threshold)] + [
        ("INT8", CenterFaceDetector(dataclasses.replace(config, threshold=t),
                                    runner=OnnxRuntimeRunner(str(int8_path), INPUT_NAME, OUTPUT_NAMES, 2)), t)
        for t in (float(v) for v in args.int8_thresholds.split(","))]
    reference = None
    for name, detector, threshold in runs:
        hits, found, seconds = [], 0, 0.0
        for image, boxes in samples:
            start = time.perf_counter()
            result = detector([image])[0]
            seconds += time.perf_counter() - start
            found += len(result)
            hits.append(iou(boxes, result.xyxy).max(1) >= 0.5 if len(boxes) and len(result)
                        else np.zeros(len(boxes), bool))
        hit = np.concatenate(hits)
        reference = hit if reference is None else reference
        print(f"| {name} | {threshold} | {hit.mean():.2%} | {int((reference & ~hit).sum())} | "
              f"{int((hit & ~reference).sum())} | {found} | {seconds / len(samples) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
