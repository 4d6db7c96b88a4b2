"""Probe: can a fresh discriminator learn to tell real faces from a generator's, and how fast?

Trains only a discriminator (the generator is frozen) on real training crops against the
generator's outputs for the same crops, and prints every ``--every`` steps its training loss and
its accuracy on held-out faces (real above 0, generated below 0; 0.5 = it cannot tell them apart)
and its AUC (the share of real/generated pairs it ranks the right way round, whatever its bias).
Variants: ``he`` (the discriminator as :class:`engines.generator.model.Discriminator` initialises
it), ``default`` (PyTorch's default initialisation, as before 2026-11-27) and ``run`` (the
discriminator and raw generator of a training run's ``--checkpoint``; ``--steps 0`` only measures how
well that discriminator tells the two apart). Minutes on a CPU:
~4 s per step of batch 16 on 2 cores.

Example::

    python benchmarks/generator_discriminator_probe.py --variants default he --steps 120
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    import torch

    from engines.generator.data import augment, load_shards
    from engines.generator.model import Discriminator, load_generator
    from engines.generator.train import discriminator_loss, raw_generator, same_layout, to_float, to_tensors

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, default=Path("engines/generator/weights/generator.safetensors"))
    p.add_argument("--shards", type=Path, default=Path(".cache/generator-shards-full"),
                   help="shards of python -m engines.generator.data")
    p.add_argument("--variants", nargs="+", choices=("he", "default", "run"), default=["default", "he"])
    p.add_argument("--checkpoint", type=Path, help="a training run's checkpoint.pt (variant run)")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of the discriminator")
    p.add_argument("--every", type=int, default=20, help="steps between printed lines")
    p.add_argument("--mask-scale", type=float, default=1.3, help="blacked-out region, in face box sides")
    args = p.parse_args(argv)

    torch.set_flush_denormal(True)
    state = None
    if "run" in args.variants:
        if args.checkpoint is None:
            p.error("variant run needs --checkpoint")
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        generator = raw_generator(args.checkpoint, state)
    else:
        generator, _ = load_generator(args.weights)
    config = dataclasses.replace(generator.config, mask_scale=args.mask_scale)
    generator.config = config
    cpu = torch.device("cpu")
    train = to_tensors(load_shards([args.shards], "train", 4000), cpu)
    heldout = to_tensors(load_shards([args.shards], "heldout", 64), cpu)
    real_heldout = to_float(heldout[0])
    with torch.no_grad():
        z = torch.randn(len(real_heldout), config.z_dim, generator=torch.Generator().manual_seed(5))
        fake_heldout = generator(real_heldout, heldout[1], heldout[2], z)

    for variant in args.variants:
        torch.manual_seed(0)
        disc = Discriminator(config)
        if variant == "run":
            if not same_layout(disc, state["D"]):
                p.error(f"{args.checkpoint}: its discriminator has the plain blocks of runs before 2026-11-27; "
                        "measure it with this script at commit 0c9947a")
            disc.load_state_dict(state["D"])
        elif variant == "default":
            for layer in disc.modules():
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        opt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.99))
        start = time.perf_counter()
        for step in range(args.steps + 1):
            gen = torch.Generator().manual_seed(step)
            index = torch.randint(len(train[0]), (args.batch,), generator=gen)
            images, boxes, kps = (t[index] for t in train)
            real, boxes, kps = augment(to_float(images), boxes, kps, gen)
            with torch.no_grad():
                fake = generator(real, boxes, kps, torch.randn(args.batch, config.z_dim, generator=gen))
            loss = discriminator_loss(disc(real, real, boxes, kps), disc(fake, real, boxes, kps))
            if args.steps:  # --steps 0: measure only
                opt.zero_grad()
                loss.backward()
                opt.step()
            if step % args.every == 0:
                with torch.no_grad():
                    on_real = disc(real_heldout, real_heldout, heldout[1], heldout[2])
                    on_fake = disc(fake_heldout, real_heldout, heldout[1], heldout[2])
                accuracy = ((on_real > 0).float().mean() + (on_fake < 0).float().mean()) / 2
                ranked = (on_real[:, None] > on_fake[None, :]).float().mean()  # ROC AUC; blind to a shifted bias
                print(f"{variant:8s} lr {args.lr:g} step {step:4d}  train loss {loss.item():.4f}  held-out accuracy "
                      f"{accuracy.item():.3f}  AUC {ranked.item():.3f}  mean logit real {on_real.mean():+.3g} "
                      f"generated {on_fake.mean():+.3g}  {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
