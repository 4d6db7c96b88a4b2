"""``streamer engines export|build|info``: ONNX export, TensorRT engine build, backend report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from streamer.errors import BackendError

log = logging.getLogger("streamer")


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    """'640x384,1280x736' -> [(640, 384), (1280, 736)] as (W, H) pixels."""
    sizes = []
    for item in text.split(","):
        try:
            w, h = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise BackendError(f"--sizes: '{item}' is not WxH (e.g. 1280x736)") from None
        if w % 32 or h % 32 or w <= 0 or h <= 0:
            raise BackendError(f"--sizes: {item} must be positive multiples of 32")
        sizes.append((w, h))
    return sizes


def add_commands(subparsers) -> dict:
    """Add ``engines`` with its sub-commands to the ``streamer`` parser; returns {name: handler}."""
    p = subparsers.add_parser("engines", help="export models to ONNX, build TensorRT engines, show backends")
    sub = p.add_subparsers(dest="engines_command", required=True)

    e = sub.add_parser("export", help="export a model to ONNX (dynamic batch; dynamic size for the detector)")
    e.add_argument("--model", default="centerface",
                   help="registered model: centerface (default) or generator (random weights without a weights file)")
    e.add_argument("--output", "-o", help="ONNX file to write (default <model>.onnx)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    e.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")

    b = sub.add_parser("build", help="build (or load from cache) a TensorRT FP16 engine; needs a GPU + tensorrt")
    b.add_argument("--model", default="centerface", help="registered model: centerface (default) or generator")
    b.add_argument("--config", "-c", metavar="NAME|PATH",
                   help="config to build for (detector input width and batch, anonymizer.gan_mask_scale): the "
                        "engine its runs load (default: the default config)")
    b.add_argument("--sizes", help="detector input sizes WxH,... (overrides the config; dynamic-size models only)")
    b.add_argument("--max-batch", type=int, help="largest batch (default: what the pipeline uses, 32 frames for "
                                                 "the detector, 64 faces for the generator)")
    b.add_argument("--cache-dir", help="engine cache folder (default $STREAMER_ENGINE_CACHE or ~/.cache)")
    b.add_argument("--fp32", action="store_true", help="build FP32 instead of FP16")

    sub.add_parser("info", help="which backend --device auto picks here, and why")
    return {"engines": cmd_engines}


def cmd_engines(args: argparse.Namespace) -> int:
    """Dispatch ``streamer engines <sub-command>``; returns the exit code."""
    return {"export": cmd_export, "build": cmd_build, "info": cmd_info}[args.engines_command](args)


def cmd_export(args: argparse.Namespace) -> int:
    """Export the model, run onnx.checker and (unless --no-parity) an ORT vs PyTorch parity check."""
    from engines.export import DEFAULT_OPSET, export_onnx, get_model_spec, parity, reference_outputs
    from engines.runner import OnnxRuntimeRunner

    spec = get_model_spec(args.model)
    output = Path(args.output or f"{spec.name}.onnx")
    module = spec.build()
    export_onnx(spec, output, module, opset=args.opset or DEFAULT_OPSET)
    print(f"wrote {output} (onnx.checker: ok; inputs {', '.join(spec.input_names)}; "
          f"weights: {spec.weights_source()})")
    if not args.no_parity:
        x = spec.random_inputs(2, seed=None)
        ref = reference_outputs(spec, module, x)
        errs = parity(ref, OnnxRuntimeRunner(str(output), spec.input_names, spec.output_names)(x))
        worst = max(errs)
        print(f"parity ONNX Runtime vs PyTorch FP32, random batch of 2: max relative error {worst:.2e}")
        if not worst < 1e-4:
            raise BackendError(f"exported model disagrees with PyTorch (relative error {worst:.2e} >= 1e-4)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build the TensorRT engine into the cache (or report it is already there)."""
    from engines.engine_cache import default_cache_dir
    from engines.export import exported_onnx_path
    from engines.select import select_backend, tensorrt_available
    from engines.tensorrt_runner import build_cached_engine, detector_profiles, profile_text
    from streamer.config import load_config
    from streamer.factory import DETECTOR_ENGINE_MAX_BATCH, tensorrt_plan

    if not tensorrt_available():
        raise BackendError("`streamer engines build` needs TensorRT 10: tensorrt not installed "
                           "(pip install tensorrt on a machine with an NVIDIA GPU)")
    select_backend("tensorrt")  # clear error when there is no usable GPU
    spec, profiles = tensorrt_plan(args.model, load_config(args.config), args.max_batch)
    if args.sizes and not spec.dynamic_hw:
        h, w = spec.example_hw
        raise BackendError(f"--sizes: {args.model} has a fixed input size ({w}x{h})")
    if args.sizes:
        profiles = detector_profiles(_parse_sizes(args.sizes), args.max_batch or DETECTOR_ENGINE_MAX_BATCH)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    onnx_path = exported_onnx_path(spec, cache_dir)
    _, built = build_cached_engine(onnx_path, spec.name, spec.input_names, profiles, cache_dir, not args.fp32)
    print(f"{'built' if built else 'cached'}: {spec.name} engine in {cache_dir} "
          f"(weights: {spec.weights_source()}; profiles {'; '.join(profile_text(p) for p in profiles)})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the versions, GPU, the backend ``auto`` picks and why, the CPU runtime, the generator's
    weights and the engine cache."""
    import torch

    from engines.engine_cache import default_cache_dir
    from engines.generator import default_mode, weights_path, weights_status
    from engines.generator.model import read_generator_info
    from engines.runner import ORT_SPINNING_ENV, ort_spinning
    from engines.select import cpu_runtime, cuda_available, select_backend, tensorrt_available
    from streamer.config import load_config

    choice = select_backend("auto")
    print(f"torch {torch.__version__}; CUDA GPU: "
          f"{torch.cuda.get_device_name(0) if cuda_available() else 'none'}")
    print(f"tensorrt: {'installed' if tensorrt_available() else 'not installed'}")
    print(f"--device auto -> {choice.name} ({choice.reason})")
    if choice.name == "torch-cuda":
        from engines.torch_runner import CUDNN_AUTOTUNE_ENV, cudnn_autotune

        print(f"cuDNN autotuning: {'on' if cudnn_autotune() else 'off'} (seconds of start-up per new input shape; "
              f"{CUDNN_AUTOTUNE_ENV}=0 turns it off)")
    print(f"CPU runtime: {cpu_runtime()} (set STREAMER_CPU_RUNTIME=onnxruntime|torch to change); "
          f"ONNX Runtime thread spinning {'on' if ort_spinning() else 'off'} ({ORT_SPINNING_ENV}=1 turns it on)")
    weights, status = weights_path(), weights_status()
    described = {"absent": f"no weights ({weights} absent)", "default": f"{weights} (cleared as the default)",
                 "opt-in": f"{weights} (--mode gan only: not cleared as the default, see MODEL_CARD.md)"}[status]
    print(f"face generator: {described}; default mode {default_mode()}")
    if status != "absent":
        trained = read_generator_info(weights).config.mask_scale
        scale = load_config(None).anonymizer.gan_mask_scale
        print(f"  regenerates the face box x {trained if scale is None else scale:g} (anonymizer.gan_mask_scale; "
              f"trained at x {trained:g})")
    cache = default_cache_dir()
    engines = sorted(cache.glob("*.engine")) if cache.is_dir() else []
    print(f"engine cache: {cache} ({len(engines)} engine(s))")
    return 0
