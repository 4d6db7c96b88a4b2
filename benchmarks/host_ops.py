"""Host-side work of the GPU frame path, counted on any machine: torch ops dispatched per frame.

On a GPU every torch op the anonymize stage dispatches costs host time
(Python, the dispatcher, a kernel launch: microseconds each) while the stage
thread holds the GIL, whatever the op's GPU time. This counts those ops for
the stage as the pipeline runs it (tracked faces -> crops -> generator ->
blend), per frame, at several batch sizes, on the CPU: the count does not
depend on the device. The generator is replaced by an identity function (one
CUDA-graph replay on a GPU, whatever its size), so only the frame work is
counted. Also reported: the host time per frame of the tracker (pure
Python/NumPy, the same on any machine of similar speed).

Usage:
    python benchmarks/host_ops.py --faces 4 --batches 1,8 --modes gan,blur --out results.md
    python benchmarks/host_ops.py --cuda-syncs --batches 1,8 --modes gan   # on a GPU

``--cuda-syncs`` (CUDA only) instead runs the real pipeline on a sample clip
to a null sink with PyTorch's sync debug mode and counts, per source line,
the operations that made the host wait for the GPU: each one stops the host
from queueing work ahead of the GPU.

Top-level ops are those not called by another aten op (``x.to(...)`` counts
once, not as its four internal steps).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from streamer.config import load_config
from streamer.detections import Detections, Frame
from streamer.stages.gan import GanAnonymizer
from streamer.stages.torch_compositor import TorchCompositor
from streamer.stages.tracker import FaceTracker


class _IdentityGenerator:
    """Stands in for the generator runner: returns its image input."""

    backend = "identity"

    def run_tensor(self, image, boxes, keypoints, z):
        """The crops unchanged (the generator's output shape and device)."""
        return (image,)


def _faces(index: int, count: int, width: int, height: int) -> Detections:
    """``count`` faces of 110-180 px moving across a ``width`` x ``height`` frame; frame ``index``."""
    rng = np.random.default_rng(count)
    size = rng.uniform(110, 180, count)
    x = (rng.uniform(0, width - 200, count) + 4 * index) % (width - 200)
    y = rng.uniform(0, height - 200, count)
    xyxy = np.stack([x, y, x + size, y + size * 1.2], 1).astype(np.float32)
    kps = np.stack([xyxy[:, :2] + np.array([fx, fy]) * (xyxy[:, 2:] - xyxy[:, :2])
                    for fx, fy in [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]], 1)
    return Detections(xyxy=xyxy, scores=np.full(count, 0.9, np.float32), keypoints=kps.astype(np.float32))


def count_ops(mode: str, faces: int, batch: int, width: int = 1920, height: int = 1080, batches: int = 6
              ) -> dict:
    """Top-level torch ops per frame of the anonymize stage, and tracker milliseconds per frame.

    Args:
        mode: ``gan`` (identity generator) or a classic mode.
        faces: faces per frame.
        batch: frames per anonymize call.
        width, height: frame size in pixels.
        batches: calls measured (after one warm-up call).
    """
    config = load_config("benchmark")
    config.anonymizer.mode = mode
    generator = None
    if mode == "gan":
        from engines.generator.model import GeneratorConfig

        generator = GanAnonymizer(_IdentityGenerator(), GeneratorConfig())
    compositor = TorchCompositor(config.anonymizer, device="cpu", anonymizer=generator, download=False)
    tracker = FaceTracker(config.tracker, fps=30)
    pixels = torch.zeros((height, width, 3), dtype=torch.uint8)
    tracker_s, ops, index = 0.0, 0, 0
    for call in range(batches + 1):
        frames = []
        for _ in range(batch):
            frame = Frame(index=index, pts=index, time_base=None, image=None)
            frame.device_image = pixels.clone()
            start = time.perf_counter()
            frame.detections = tracker.update(_faces(index, faces, width, height), index / 30)
            tracker_s += time.perf_counter() - start if call else 0.0
            frames.append(frame)
            index += 1
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            compositor.anonymize_frames(frames)
        if call:  # the first call is a warm-up
            events = [e for e in prof.events() if e.name.startswith("aten::")]
            ops += sum(1 for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    frames_measured = batches * batch
    return {"mode": mode, "faces": faces, "batch": batch, "ops_per_frame": ops / frames_measured,
            "tracker_ms_per_frame": tracker_s * 1000 / frames_measured}


def count_cuda_syncs(mode: str, batch: int, seconds: float = 2.0) -> dict:
    """Host-GPU synchronizations per frame of a 1080p30 sample clip (4 faces) through the pipeline on CUDA.

    Returns the frames, the synchronizations per frame, and the source lines
    that caused them with their counts. The first run warms up (cuDNN
    autotuning and CUDA-graph capture synchronize once); the second is counted.
    """
    import collections
    import tempfile
    import warnings

    from streamer.config import apply_overrides
    from streamer.factory import build_source
    from streamer.pipeline import build_stages, run_pipeline
    from streamer.sample import make_sample_clip
    from streamer.sinks.null import NullSink

    config = apply_overrides(load_config("benchmark"), {"anonymizer.mode": mode, "pipeline.device": "cuda",
                                                        "detector.batch_size": batch})
    stages = build_stages(config)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(f"{tmp}/clip.mp4", seconds=seconds, fps=30, width=1920, height=1080, faces=4).path
        run = lambda: run_pipeline(build_source(clip, config), NullSink(), config,  # noqa: E731
                                   detector=stages.detector, compositor=stages.compositor)
        run()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                stats = run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    lines = collections.Counter(f"{w.filename.rsplit('/', 2)[-1]}:{w.lineno}" for w in caught
                                if "synchroniz" in str(w.message).lower())
    frames = max(stats.frames_out, 1)
    return {"mode": mode, "batch": batch, "frames": stats.frames_out,
            "syncs_per_frame": sum(lines.values()) / frames, "by_line": dict(lines.most_common())}


def main(argv: list[str] | None = None) -> None:
    """Print (and with ``--out`` write) the table of ops per frame."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=4, help="faces per frame")
    parser.add_argument("--batches", default="1,8", help="comma-separated frames per anonymize call")
    parser.add_argument("--modes", default="gan,blur", help="comma-separated anonymizer modes")
    parser.add_argument("--out", help="write the markdown table here")
    parser.add_argument("--cuda-syncs", action="store_true",
                        help="count host-GPU synchronizations of the real pipeline instead (CUDA only)")
    args = parser.parse_args(argv)
    if args.cuda_syncs:
        import json

        results = [count_cuda_syncs(mode, int(b)) for mode in args.modes.split(",") for b in args.batches.split(",")]
        text = json.dumps(results, indent=2)
        print(text)
        if args.out:
            with open(args.out, "w") as out:
                out.write(text + "\n")
        return
    rows = [count_ops(mode, args.faces, int(b)) for mode in args.modes.split(",") for b in args.batches.split(",")]
    lines = ["| mode | faces/frame | frames/batch | torch ops/frame (top level) | tracker ms/frame |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['faces']} | {r['batch']} | {r['ops_per_frame']:.1f} | "
              f"{r['tracker_ms_per_frame']:.2f} |" for r in rows]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
