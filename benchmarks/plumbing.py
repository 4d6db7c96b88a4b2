"""The frame rate the pipeline's Python plumbing alone allows: models and codecs replaced by stubs.

The H100 target of a GAN pipeline to a null sink is 600 frames/s: 1.7 ms per frame for everything the
host does, on one interpreter. This runs :func:`streamer.pipeline.run_pipeline` on pre-made 16x16
frames with a detector that returns 4 fixed faces per frame without looking, a compositor that
anonymizes nothing (the GPU compositor's batch interface) and a null sink, so what is left is the
per-frame host work of the file pipeline: reader, batcher and writer threads, queues, the tracker
(norfair), statistics. Its fps is a ceiling for any GPU: the models' and codecs' host time (kernel
launches, NVDEC calls, encoding) comes on top.

With ``--streams N`` it runs N such pipelines at once instead, as the bench's N-stream rows and the
live server's cameras do: one frame per stream per call into one shared (batching) detector and one
shared compositor, each stream with its own tracker; the fps printed is all streams' frames over the
wall time, against 30 x N for N real-time 30 fps streams.

``--launches K`` makes every stub model call also run K tiny PyTorch CPU operations, each of which
lets go of the GIL and takes it back as a CUDA kernel launch does: the threads launching work then
compete for the GIL with the streams' Python, as on a GPU.

Usage:
    python benchmarks/plumbing.py [--frames 3000] [--faces 0,4] [--batches 1,8] [--threads 1,2]
                                  [--trackers off,on] [--launches 0,100]
    python benchmarks/plumbing.py --streams 16 [--frames 600] [--faces 0,4] [--launches 0,100]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from fractions import Fraction

import numpy as np

from benchmarks import run_on_threads
from streamer.config import apply_overrides, load_config
from streamer.detections import Detections, Frame
from streamer.factory import STAGE_THREADS_ENV
from streamer.pipeline import run_pipeline
from streamer.sinks.null import NullSink
from streamer.sources.video_file import StreamInfo


class StubSource:
    """``frames`` tiny frames at 30 fps, made before the run (no decoding)."""

    def __init__(self, frames: int) -> None:
        self.path = "stub"
        self.info = StreamInfo(width=16, height=16, fps=30.0, time_base=Fraction(1, 30), frames=frames, codec="stub",
                               duration=frames / 30)
        self.decode_errors, self.truncated = 0, False
        image = np.zeros((16, 16, 3), np.uint8)
        self.frames = [Frame(index=i, pts=i, time_base=Fraction(1, 30), image=image) for i in range(frames)]

    def __iter__(self):
        return iter(self.frames)

    def close(self) -> None:
        """Nothing to close."""


def launch(ops: int) -> None:
    """``ops`` tiny PyTorch CPU operations (~3 us each): each lets go of the GIL and takes it back, as every
    CUDA kernel launch does, so a thread launching them waits for the GIL ``ops`` times."""
    if ops:
        import torch

        x = torch.zeros(16)
        for _ in range(ops):
            x = x + 1


class StubDetector:
    """Returns ``faces`` fixed faces (with keypoints) for every frame, drifting one pixel a frame, after
    ``launches`` GIL-releasing operations per call (:func:`launch`)."""

    def __init__(self, faces: int, launches: int = 0) -> None:
        self.count = 0
        self.launches = launches
        boxes = np.array([[100 + 200 * i, 100, 200 + 200 * i, 220] for i in range(faces)], np.float32)
        self.boxes = boxes.reshape(-1, 4)
        centre = (self.boxes[:, None, :2] + self.boxes[:, None, 2:]) / 2
        self.keypoints = np.repeat(centre, 5, axis=1)

    def __call__(self, images: list) -> list[Detections]:
        """One Detections per image."""
        launch(self.launches)
        out = []
        for _ in images:
            shift = np.float32(self.count % 50)
            out.append(Detections(xyxy=self.boxes + shift, scores=np.full(len(self.boxes), 0.9, np.float32),
                                  keypoints=self.keypoints + shift))
            self.count += 1
        return out


class StubCompositor:
    """The GPU compositor's batch interface, anonymizing nothing, after ``launches`` GIL-releasing operations
    per call (:func:`launch`)."""

    anonymizer = None

    def __init__(self, launches: int = 0) -> None:
        self.launches = launches

    def upload(self, frames: list[Frame]) -> None:
        """Nothing to upload."""

    def anonymize_frames(self, frames: list[Frame]) -> list[Counter]:
        """A count per frame, no pixels touched."""
        launch(self.launches)
        return [Counter(stub=len(f.detections)) for f in frames]


def plumbing_fps(frames: int, faces: int, batch: int, threads: int, tracker: bool, launches: int = 0) -> float:
    """Frames per second of run_pipeline with stubbed models, codecs and I/O."""
    config = apply_overrides(load_config(None), {"detector.batch_size": batch, "tracker.enabled": tracker,
                                                 "pipeline.device": "cpu"})
    before = os.environ.get(STAGE_THREADS_ENV)
    os.environ[STAGE_THREADS_ENV] = str(threads)
    try:
        source = StubSource(frames)
        start = time.perf_counter()
        stats = run_pipeline(source, NullSink(), config, detector=StubDetector(faces, launches),
                             compositor=StubCompositor(launches))
        seconds = time.perf_counter() - start
    finally:
        if before is None:
            os.environ.pop(STAGE_THREADS_ENV, None)
        else:
            os.environ[STAGE_THREADS_ENV] = before
    if stats.frames_out != frames:
        raise RuntimeError(f"{frames - stats.frames_out} frames lost")
    return frames / seconds


def streams_fps(streams: int, frames: int, faces: int, launches: int = 0) -> float:
    """Frames per second of all ``streams`` stubbed pipelines together, sharing one batching detector and
    one batching compositor (one frame per stream per call), each with its own tracker."""
    from streamer.live.batcher import SharedCompositor, SharedDetector

    config = apply_overrides(load_config(None), {"detector.batch_size": 1, "pipeline.device": "cpu"})
    detector = SharedDetector(StubDetector(faces, launches), max_batch=streams)
    compositor = SharedCompositor(StubCompositor(launches), max_batch=streams)
    written = [0] * streams

    def one(i: int) -> None:
        stats = run_pipeline(StubSource(frames), NullSink(), config, detector=detector,
                             compositor=compositor.for_camera(i))
        written[i] = stats.frames_out

    seconds = run_on_threads(one, streams)
    detector.close()
    compositor.close()
    if sum(written) != streams * frames:
        raise RuntimeError(f"{streams * frames - sum(written)} frames lost")
    return streams * frames / seconds


def main() -> None:
    """Print a markdown table of fps per variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--faces", default="0,4")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--streams", type=int, default=0, help="N concurrent streams sharing the models")
    parser.add_argument("--trackers", default="off,on", help="tracker settings to run (file pipelines)")
    parser.add_argument("--launches", default="0",
                        help="GIL-releasing operations per model call, standing in for CUDA kernel launches")
    args = parser.parse_args()
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    plumbing_fps(200, 0, 1, 1, False)  # warm-up: imports, first thread starts
    launch(max(ints(args.launches)))  # imports PyTorch (seconds) before any timing
    if args.streams:
        print("| streams | faces/frame | launches/call | fps, all streams | ms/frame | needed for 30 fps each |")
        print("|---:|---:|---:|---:|---:|---:|")
        for faces in ints(args.faces):
            for launches in ints(args.launches):
                fps = streams_fps(args.streams, args.frames, faces, launches)
                print(f"| {args.streams} | {faces} | {launches} | {fps:.0f} | {1000 / fps:.2f} | {30 * args.streams} |",
                      flush=True)
        return
    print("| faces/frame | tracker | launches/call | frames/batch | stage threads | fps | ms/frame |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for faces in ints(args.faces):
        for tracker in args.trackers.split(","):
            for launches in ints(args.launches):
                for batch in ints(args.batches):
                    for threads in ints(args.threads):
                        fps = plumbing_fps(args.frames, faces, batch, threads, tracker == "on", launches)
                        print(f"| {faces} | {tracker} | {launches} | {batch} | {threads} | {fps:.0f} | "
                              f"{1000 / fps:.2f} |", flush=True)


if __name__ == "__main__":
    main()
