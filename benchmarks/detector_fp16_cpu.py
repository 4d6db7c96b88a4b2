"""How far the detector's heads move in FP16 and BF16, measured without a GPU.

PyTorch runs the CenterFace module in float16 / bfloat16 on the CPU too. The
numbers are not the GPU's (other kernels, other accumulation order), but they
say whether the network itself survives half precision: activations within
FP16's range, heatmaps within the engines issue's bound (relative error
< 1e-2 against FP32). Frames: the CUDA tests' two real frames (the astronaut
photo and a rendered frame with two faces) at 640x384.

Usage:
    python benchmarks/detector_fp16_cpu.py
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from engines.centerface_torch import load_centerface_torch
from engines.export import relative_error

HEADS = ("heatmap", "scale", "offset", "landmarks")


def test_frames(size: tuple[int, int] = (640, 384)) -> np.ndarray:
    """The CUDA tests' frames as a float32 (2, 3, H, W) batch, 0..255."""
    from skimage import data

    from streamer.sample import _background, _sprite, render_sample_frame

    sprite, face = _sprite()
    rendered, _ = render_sample_frame(_background(640, 360), sprite, face, t=0.3, faces=2)
    frames = [np.ascontiguousarray(data.astronaut()), rendered]
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) for f in frames]
                    ).astype(np.float32)


def main() -> None:
    x = torch.from_numpy(test_frames())
    with torch.no_grad():
        model = load_centerface_torch().eval()
        activations: list[float] = []  # the largest magnitude out of every leaf layer
        for layer in model.modules():
            if not list(layer.children()):
                layer.register_forward_hook(lambda m, i, o: activations.append(float(o.abs().max())))
        reference = model(x)
        print(f"largest activation in FP32: {max(activations):.1f} (FP16 holds up to 65504)")
        print("| precision | " + " | ".join(HEADS) + " |")
        print("|---|" + "---|" * len(HEADS))
        for dtype in (torch.float16, torch.bfloat16):
            got = load_centerface_torch().eval().to(dtype)(x.to(dtype))
            errors = [relative_error(g.float().numpy(), r.numpy()) for g, r in zip(got, reference)]
            print(f"| {str(dtype).split('.')[-1]} | " + " | ".join(f"{e:.4f}" for e in errors) + " |")


if __name__ == "__main__":
    main()
