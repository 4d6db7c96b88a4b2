"""Probe: the generator's evaluation with every latent z multiplied by a factor.

Tests whether drawing the per-track latent wider (or narrower, 0 = DeepPrivacy
v1's single mean face) than in training changes how much of the person the
output keeps. It wraps ``engines.generator.evaluate`` and takes its arguments.

Example::

    python benchmarks/generator_latent_scale.py 2 --modes gan --sets heldout --heldout 400 --device cpu \\
        --shards .cache/generator-shards-full --out /tmp/z2.json
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    """``argv``: the latent factor, then ``engines.generator.evaluate``'s arguments."""
    from engines.generator.evaluate import main as evaluate
    from streamer.stages.gan import GanAnonymizer

    factor = float(argv[0])
    latents = GanAnonymizer.latents
    GanAnonymizer.latents = lambda self, track_ids: (latents(self, track_ids) * factor).astype(np.float32)
    return evaluate(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
