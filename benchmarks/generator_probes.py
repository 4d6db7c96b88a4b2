"""Probe: where the GAN's identity leakage comes from, by changing one thing at inference.

Every variant anonymizes the same faces through the pipeline's compositor (GAN,
face box x 1.3 regenerated) in one run of ``engines.generator.evaluate``'s
``evaluate_images``, so besides each variant's table row it reports the paired
change of every face's dlib distance to its own original against the first
variant (mean and 95 % interval; > 0: the variant keeps less of the person).

Variants (``--variants``, the first is the reference):

* ``base``: the pipeline as it is;
* ``keypoints=A``: the five keypoints handed to the generator moved a share ``A``
  (0-1) of the way to a mean face template fitted to them by a similarity
  transform (position, scale and roll kept; the person's own proportions of
  eyes, nose and mouth removed at ``A`` = 1);
* ``grey``: the generator's output replaced by mid-grey, pasted exactly where the
  generated face would be: what is left of the original around it, alone.

Example (2-core CPU, about 80 s a variant on the held-out set)::

    python benchmarks/generator_probes.py --set heldout --variants base keypoints=1 keypoints=0.5 grey
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

#: Mean keypoints (eyes, nose, mouth corners) of the training faces, as shares of the face box's width
#: (x) and height (y), medians over the 21,017 training faces of ``python -m engines.generator.data``
#: (2026-11-27); y is scaled by the median box height / width, 1.278, so the template has the faces' shape.
TEMPLATE = np.array([[0.2588, 0.3697], [0.7300, 0.3628], [0.4912, 0.5654], [0.3051, 0.7395], [0.6874, 0.7336]])
TEMPLATE[:, 1] *= 1.278


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` (K, 2) moved onto ``dst`` (K, 2) by the least-squares similarity transform (Umeyama 1991)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.array([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = (d * sign).sum() / (a ** 2).sum(1).mean()
    return scale * a @ rotation.T + md


class Probe:
    """Wraps the GAN anonymizer: changes its keypoints or its output as the variant says."""

    def __init__(self, gan, variant: str) -> None:
        self.gan, self.variant = gan, variant
        self.toward_template = float(variant.split("=")[1]) if variant.startswith("keypoints=") else 0.0

    def __getattr__(self, name: str):
        return getattr(self.gan, name)

    def anonymize(self, crops):
        """The GAN's faces for ``crops``, with the variant's change."""
        from streamer.stages.anonymizers import FaceCrops

        kps = np.asarray(crops.keypoints, np.float64)
        if self.toward_template:
            kps = np.stack([(1 - self.toward_template) * k + self.toward_template * similarity_fit(TEMPLATE, k)
                            for k in kps])
        out = self.gan.anonymize(FaceCrops(images=crops.images, boxes=crops.boxes,
                                           keypoints=kps.astype(np.float32), track_ids=crops.track_ids))
        return [np.full_like(o, 128) for o in out] if self.variant == "grey" else out


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    import engines.generator.evaluate as ev
    from streamer.config import AnonymizerConfig, DetectorConfig
    from streamer.stages.compositor import Compositor
    from streamer.stages.detector import CenterFaceDetector
    from streamer.stages.gan import build_gan_anonymizer

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", choices=("heldout", "wider"), default="heldout")
    p.add_argument("--images", type=int, default=400, help="held-out faces or WIDER images (at most)")
    p.add_argument("--shards", type=Path, default=Path(".cache/generator-shards-full"))
    p.add_argument("--variants", nargs="+", default=["base", "keypoints=1", "grey"])
    args = p.parse_args(argv)
    for v in args.variants:
        if v not in ("base", "grey") and not v.startswith("keypoints="):
            p.error(f"unknown variant {v!r}")

    gan = build_gan_anonymizer("cpu", mask_scale=1.3)
    compositors = {v: Compositor(AnonymizerConfig(mode="gan", gan_mask_scale=1.3), anonymizer=Probe(gan, v))
                   for v in args.variants}
    own: list[np.ndarray] = []  # per leakage_metrics call: each face's distance to its own original
    metrics = ev.leakage_metrics

    def keep_own(originals, anonymized, different, threshold=ev.DLIB_THRESHOLD):
        own.append(np.linalg.norm(originals - anonymized, axis=1))
        return metrics(originals, anonymized, different, threshold)

    ev.leakage_metrics = keep_own
    images = (ev.heldout_images(args.shards, args.images) if args.set == "heldout"
              else ev.wider_images(args.images))
    start = time.perf_counter()
    res = ev.evaluate_images(images, CenterFaceDetector(DetectorConfig()), compositors, ev.Recognizer(),
                             dlib_check=False, latent_pairs=False)
    ev.leakage_metrics = metrics
    print(f"{args.set}, {res['images']} images, {time.perf_counter() - start:.0f} s (faces >= 40 px for leakage)")
    print("| variant | re-detected | leakage | chance | leakage - chance | identity gap | d to own original, "
          f"paired vs {args.variants[0]} |")
    print("|---|---|---|---|---|---|---|")
    per_mode = len(own) // len(args.variants)  # the first call of each mode is the headline (>= 40 px)
    reference = own[0]
    for i, v in enumerate(args.variants):
        r, d = res[v], own[i * per_mode] - reference
        paired = "" if i == 0 else f"{d.mean():+.4f} +- {1.96 * d.std(ddof=1) / np.sqrt(len(d)):.4f}"
        print(f"| {v} | {100 * r['redetection_rate']:.1f}% ({r['redetected']}/{r['faces']}) | "
              f"{100 * r['leakage_rate']:.1f}% | {100 * r['chance_match_rate']:.1f}% | "
              f"{100 * r['leakage_minus_chance']:+.1f} pp | {r['mean_d_other'] - r['mean_d_own']:+.3f} | {paired} |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
