"""Probe: how much a generator's faces change with its latent, and a picture of it.

For each weights file (or a training run's ``checkpoint.pt``: its raw generator,
before the EMA, which in a short run is still mostly the weights it started
from): the spread (``engines.generator.train.latent_spread``: the
face region's mean absolute change, each face's tint taken out, per unit of
latent) over held-out faces each drawn with two latents, at the pipeline's mask
(face box x 1.3); optionally a PNG with, per face, one row per weights file:
original | three latents. Seconds on a CPU (the evaluation's "two latents" line
is the identity-level version of the same question, minutes).

Example::

    python benchmarks/generator_latent_spread.py engines/generator/weights/generator.safetensors \\
        .cache/gen-run/generator.safetensors --sheet /tmp/latents.png
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np


def load_weights(path: Path):
    """(generator in eval mode on the CPU, images shown) from a weights file or a run's ``checkpoint.pt``."""
    import torch

    from engines.generator.model import load_generator
    from engines.generator.train import raw_generator

    if path.name != "checkpoint.pt":
        generator, info = load_generator(path)
        return generator, info.images_shown
    state = torch.load(path, map_location="cpu", weights_only=False)
    return raw_generator(path, state), int(state["images_shown"])


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    import cv2
    import torch

    from engines.generator.data import load_shards
    from engines.generator.model import face_mask
    from engines.generator.train import latent_spread

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", type=Path, nargs="+")
    p.add_argument("--shards", type=Path, default=Path(".cache/generator-shards-full"))
    p.add_argument("--faces", type=int, default=64, help="held-out faces for the spread")
    p.add_argument("--mask-scale", type=float, default=1.3)
    p.add_argument("--sheet", type=Path, help="write the picture here (PNG)")
    p.add_argument("--sheet-faces", type=int, nargs="+", default=[0, 60], help="held-out faces in the picture")
    args = p.parse_args(argv)

    faces = load_shards(args.shards, "heldout", max(args.faces, max(args.sheet_faces) + 1))
    images = torch.from_numpy(faces.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    boxes, kps = torch.from_numpy(faces.boxes), torch.from_numpy(faces.keypoints)
    n = args.faces
    x, b, k = (torch.cat([t[:n]] * 2) for t in (images, boxes, kps))  # each face twice: two latents
    pick = torch.tensor(args.sheet_faces)
    rows = []
    for path in args.weights:
        generator, shown = load_weights(path)
        generator.config = dataclasses.replace(generator.config, mask_scale=args.mask_scale)
        z_dim = generator.config.z_dim
        z = torch.randn(2 * n, z_dim, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            spread = latent_spread(generator(x, b, k, z), z, face_mask(b, generator.config.size, args.mask_scale)).item()
            drawn = [generator(images[pick], boxes[pick], kps[pick],
                               torch.randn(len(pick), z_dim, generator=torch.Generator().manual_seed(seed)))
                     for seed in (1, 2, 3)]
        rows.append(torch.cat([images[pick], *drawn], dim=3))
        print(f"{path}: spread {spread:.4f} ({n} held-out faces x 2 latents, mask x {args.mask_scale:g}; "
              f"{shown} images shown)")
    if args.sheet:
        grid = torch.stack(rows, dim=1).reshape(-1, *rows[0].shape[1:])  # per face, one row per weights file
        picture = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(np.concatenate(list(picture.numpy())), cv2.COLOR_RGB2BGR))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
