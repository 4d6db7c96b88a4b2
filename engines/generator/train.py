"""Train the face generator in resumable chunks.

Each invocation trains for at most ``--minutes`` (a chunk), then saves and
exits; rerunning the same command resumes. Recipe (from
``../shared/notes/generator-probe.md``, run B): non-saturating loss, lazy R1
(gamma 1 every 16 steps), an L1 term on the face region, Adam lr 2e-4 betas
(0.5, 0.99), EMA of the generator, bf16 autocast, channels-last on CUDA.

Files in ``--run``:

* ``checkpoint.pt``: FP32 models + Adam state + counters, for an exact resume
  (about 0.3 GB; keep it on the training machine between chunks);
* ``compact-*.safetensors``: FP16 EMA generator and discriminator (each
  file < 16 MiB) + ``compact.json``; resuming from these alone (when
  ``checkpoint.pt`` is gone, e.g. on a fresh machine) restarts the generator
  from its EMA and resets Adam (logged);
* ``generator.safetensors``: the FP16 EMA generator the pipeline loads;
* ``log.jsonl``: losses, images shown, images/s; ``samples-*.png``: original |
  input | output triples on held-out faces.

Batches are drawn from a generator seeded by (seed, step), so a resumed run
draws exactly the batches an uninterrupted run would.

Example (one H100 chunk of 8 minutes)::

    python -m engines.generator.train --data .cache/generator-shards --run runs/gen --minutes 8 --batch 128
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engines.generator.data import FaceSet, augment, load_shards
from engines.generator.model import (Discriminator, Generator, GeneratorConfig, GeneratorInfo, count_parameters,
                                     face_mask, save_generator)

log = logging.getLogger(__name__)

#: Split a compact checkpoint's tensors into files below this size (bytes) so each travels alone.
COMPACT_PART_BYTES = 15 * 2 ** 20


@dataclass
class TrainConfig:
    """Hyper-parameters (saved in the checkpoint for the record; a resume uses the command line's values).

    Attributes:
        batch: images per step.
        lr: Adam learning rate (both networks).
        beta1, beta2: Adam betas.
        r1_gamma: R1 penalty weight.
        r1_every: lazy R1 interval in steps.
        l1_weight: weight of the L1 loss on the face region.
        diversity_weight: weight of the diversity term (Yang et al. 2019, "Diversity-Sensitive
            Conditional GANs"; the ratio of Mao et al. 2019, "Mode Seeking GANs"): the second half of
            every batch repeats the first half's faces (same augmentation) with other latents, and
            the generator pays ``diversity_weight x max(diversity_cap - spread, 0)``, spread being
            how far the face moves per unit of latent (:func:`latent_spread`). 0 (default) leaves it
            off and the batch as drawn. Why: the shipped generator nearly ignores z (two latents give
            the same identity), so the face it draws follows the context; see the model card.
        diversity_cap: the spread past which the term stops pushing. Unbounded (MSGAN's 1 / spread),
            CPU fine-tunes of the shipped generator traded the faces for spread (0.23-0.35, flat or
            blotched boxes); the shipped generator's spread is 0.027.
        ema_kimg: EMA half-life in thousands of images.
        seed: seed of batches, augmentations and latents.
        amp: bf16, fp16 or none (autocast on CUDA only).
    """

    batch: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.99
    r1_gamma: float = 1.0
    r1_every: int = 16
    l1_weight: float = 1.0
    diversity_weight: float = 0.0
    diversity_cap: float = 0.1
    ema_kimg: float = 10.0
    seed: int = 0
    amp: str = "bf16"

    def __post_init__(self) -> None:
        if self.diversity_weight < 0:
            raise ValueError(f"diversity_weight must be >= 0, got {self.diversity_weight}")
        if self.diversity_cap <= 0:
            raise ValueError(f"diversity_cap must be > 0, got {self.diversity_cap}")
        if self.diversity_weight and self.batch % 2:
            raise ValueError(f"the diversity term pairs each face with itself: batch must be even, got {self.batch}")


def latent_spread(fake: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How far the faces move per unit of latent: the mean absolute difference between the first and
    second half of ``fake`` (N, 3, S, S) inside ``mask`` (N, 1, S, S; the halves' masks are the same),
    over the mean absolute difference of their latents ``z`` (N, z_dim). A scalar tensor.

    Each face's mean colour inside the mask is taken out first: tinting the whole face is the cheapest
    way for two outputs to differ, and a CPU fine-tune with the plain difference found it (flat
    coloured boxes instead of faces; the model card's "Where the leakage comes from").
    """
    f1, f2 = fake.chunk(2)
    z1, z2 = z.chunk(2)
    m = mask.chunk(2)[0]
    area = m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)

    def detinted(f: torch.Tensor) -> torch.Tensor:
        return f - (f * m).sum(dim=(2, 3), keepdim=True) / area

    moved = ((detinted(f1) - detinted(f2)).abs() * m).sum() / (m.sum() * fake.shape[1] + 1e-8)
    return moved / (z1 - z2).abs().mean()


def discriminator_loss(on_real: torch.Tensor, on_fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating GAN loss of the discriminator from its logits on real and generated faces (N,):
    2 ln 2 = 1.386 when it says 0 ("can't tell") for every face."""
    return F.softplus(on_fake).mean() + F.softplus(-on_real).mean()


def to_tensors(faces: FaceSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 3, S, S) uint8, boxes (N, 4), keypoints (N, 5, 2) on ``device``."""
    images = torch.from_numpy(faces.images).permute(0, 3, 1, 2).contiguous().to(device)
    return images, torch.from_numpy(faces.boxes).to(device), torch.from_numpy(faces.keypoints).to(device)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


class Trainer:
    """Holds the networks, optimizers and counters; :meth:`step` runs one G and one D update."""

    def __init__(self, model_cfg: GeneratorConfig, cfg: TrainConfig, device: torch.device,
                 channels_last: bool = False) -> None:
        self.model_cfg, self.cfg, self.device = model_cfg, cfg, device
        torch.manual_seed(cfg.seed)
        if device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal activations make CPU steps several times slower
        self.G = Generator(model_cfg).to(device)
        self.D = Discriminator(model_cfg).to(device)
        if channels_last:
            self.G = self.G.to(memory_format=torch.channels_last)
            self.D = self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.step_count = 0
        self.images_shown = 0
        self.seconds = 0.0
        self.hardware: list[str] = []  # every device that trained this run, in order (provenance)
        self.channels_last = channels_last
        use_amp = device.type == "cuda" and cfg.amp != "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def batch(self, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        """The augmented batch and latents of the current step (reproducible from seed and step)."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step_count)
        paired = self.cfg.diversity_weight > 0  # second half: the first half's faces again, other latents
        faces = self.cfg.batch // 2 if paired else self.cfg.batch
        index = torch.randint(len(data[0]), (faces,), generator=gen).to(self.device)
        images, boxes, kps = (t[index] for t in data)
        images, boxes, kps = augment(to_float(images), boxes, kps, gen)
        if paired:
            images, boxes, kps = (torch.cat([t, t]) for t in (images, boxes, kps))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        z = torch.randn(self.cfg.batch, self.model_cfg.z_dim, generator=gen).to(self.device)
        return images, boxes, kps, z

    def step(self, data) -> dict[str, float]:
        """One discriminator and one generator update; returns the losses."""
        cfg = self.cfg
        real, boxes, kps, z = self.batch(data)
        stats: dict[str, float] = {}

        # discriminator
        self.D.requires_grad_(True)
        with self._autocast():
            with torch.no_grad():
                fake = self.G(real, boxes, kps, z)
            on_fake, on_real = self.D(fake, real, boxes, kps), self.D(real, real, boxes, kps)
            loss_d = discriminator_loss(on_real, on_fake)
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        stats["loss_d"] = float(loss_d.detach())
        # how far apart D puts real and generated faces (logits); ~0 with loss_d at 2 ln 2 = a D that cannot tell
        stats["d_margin"] = float(on_real.detach().float().mean() - on_fake.detach().float().mean())
        if cfg.r1_every and self.step_count % cfg.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            logits = self.D(real_r1, real.detach(), boxes, kps)  # FP32: double backward
            (grad,) = torch.autograd.grad(logits.sum(), real_r1, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
            self.scaler.scale(r1 * (cfg.r1_gamma / 2 * cfg.r1_every)).backward()
            stats["r1"] = float(r1.detach())
        self.scaler.step(self.opt_D)

        # generator
        self.D.requires_grad_(False)
        with self._autocast():
            fake = self.G(real, boxes, kps, z)
            adv = F.softplus(-self.D(fake, real, boxes, kps)).mean()
            mask = face_mask(boxes, self.model_cfg.size, self.model_cfg.mask_scale)
            l1 = ((fake.float() - real).abs() * mask).sum() / (mask.sum() * 3 + 1e-8)
            loss_g = adv + cfg.l1_weight * l1
            if cfg.diversity_weight:
                spread = latent_spread(fake.float(), z, mask)
                loss_g = loss_g + cfg.diversity_weight * (cfg.diversity_cap - spread).clamp(min=0)
                stats["spread"] = float(spread.detach())
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_G)
        self.scaler.update()
        stats.update(loss_g=float(adv.detach()), l1=float(l1.detach()))

        beta = 0.5 ** (cfg.batch / max(cfg.ema_kimg * 1000, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.step_count += 1
        self.images_shown += cfg.batch
        return stats

    # ------------------------------------------------------------ checkpoints

    def state(self) -> dict:
        """Everything an exact resume needs (FP32)."""
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step_count, "images_shown": self.images_shown,
                "seconds": self.seconds, "hardware": self.hardware, "train_config": asdict(self.cfg),
                "model_config": asdict(self.model_cfg)}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`."""
        for name in ("G", "G_ema", "opt_G", "scaler"):
            getattr(self, name).load_state_dict(state[name])
        if self._load_discriminator(state["D"]):
            self.opt_D.load_state_dict(state["opt_D"])
        self.step_count, self.images_shown = int(state["step"]), int(state["images_shown"])
        self.seconds = float(state.get("seconds", 0.0))
        self.hardware = list(state.get("hardware", []))

    def save(self, run: Path, extra: dict) -> None:
        """Write the exact checkpoint, the compact FP16 checkpoint and the pipeline's generator file."""
        from safetensors.torch import save_file

        run.mkdir(parents=True, exist_ok=True)
        tmp = run / "checkpoint.pt.tmp"
        torch.save(self.state(), tmp)
        tmp.replace(run / "checkpoint.pt")
        tensors = {f"G_ema.{k}": v for k, v in self.G_ema.state_dict().items()}
        tensors.update({f"D.{k}": v for k, v in self.D.state_dict().items()})
        parts: list[dict] = [{}]
        size = 0
        for key, value in tensors.items():
            nbytes = value.numel() * 2
            if parts[-1] and size + nbytes > COMPACT_PART_BYTES:
                parts.append({})
                size = 0
            parts[-1][key] = value.detach().to("cpu", torch.float16).contiguous()
            size += nbytes
        for old in run.glob("compact-*.safetensors"):
            old.unlink()
        for i, part in enumerate(parts):
            save_file(part, str(run / f"compact-{i}.safetensors"))
        meta = {"step": self.step_count, "images_shown": self.images_shown, "seconds": self.seconds,
                "hardware": self.hardware, "parts": len(parts), "train_config": asdict(self.cfg),
                "model_config": asdict(self.model_cfg)}
        (run / "compact.json").write_text(json.dumps(meta, indent=2))
        info = GeneratorInfo(self.model_cfg, self.images_shown,
                             {**extra, "hardware": ", ".join(self.hardware) or "none",
                              "train_seconds": round(self.seconds, 1), "step": self.step_count})
        save_generator(self.G_ema, run / "generator.safetensors", info)

    def _load_discriminator(self, state: dict) -> bool:
        """Load D's weights; False (D and its Adam left fresh, with a warning) for a checkpoint whose
        discriminator has another layout (runs before 2026-11-27 had plain, non-residual blocks)."""
        if not same_layout(self.D, state):
            log.warning("the checkpoint's discriminator has another layout (plain blocks, before 2026-11-27): "
                        "the discriminator starts fresh; the generator resumes")
            return False
        self.D.load_state_dict(state)
        return True

    def load_generator_weights(self, path: Path) -> None:
        """Start G and its EMA from a generator weights file (e.g. the shipped one); D starts fresh.

        The images shown, training seconds and hardware carry over from the file, so a fine-tune's record counts
        every image its generator has seen. Adam starts fresh.
        """
        from engines.generator.model import load_generator

        generator, info = load_generator(path)
        self.G.load_state_dict(generator.state_dict())
        self.G_ema.load_state_dict(generator.state_dict())
        self.images_shown = int(info.images_shown)
        self.seconds = float(info.extra.get("train_seconds", 0.0))
        hardware = info.extra.get("hardware")
        self.hardware = [h for h in str(hardware).split(", ") if h and h != "none"] if hardware else []
        log.warning("generator started from %s (%d images shown); the discriminator starts fresh", path,
                    self.images_shown)

    def load_compact(self, run: Path) -> None:
        """Resume from the FP16 compact checkpoint: G and G_ema from the EMA, D as saved, fresh Adam."""
        from safetensors.torch import load_file

        meta = json.loads((run / "compact.json").read_text())
        tensors: dict[str, torch.Tensor] = {}
        for i in range(meta["parts"]):
            tensors.update(load_file(str(run / f"compact-{i}.safetensors")))
        g = {k[len("G_ema."):]: v.float() for k, v in tensors.items() if k.startswith("G_ema.")}
        d = {k[len("D."):]: v.float() for k, v in tensors.items() if k.startswith("D.")}
        self.G.load_state_dict(g)
        self.G_ema.load_state_dict(g)
        self._load_discriminator(d)
        self.step_count, self.images_shown = int(meta["step"]), int(meta["images_shown"])
        self.seconds = float(meta.get("seconds", 0.0))
        self.hardware = list(meta.get("hardware", []))
        log.warning("resumed from the FP16 compact checkpoint at step %d: G restarts from its EMA, Adam is reset",
                    self.step_count)


def save_samples(trainer: Trainer, data, path: Path, count: int = 8) -> None:
    """PNG grid, one row per held-out face: original | blacked-out input | EMA output."""
    import cv2

    images, boxes, kps = (t[:count] for t in data)
    real = to_float(images)
    z = torch.randn(len(real), trainer.model_cfg.z_dim, generator=torch.Generator().manual_seed(1)).to(real.device)
    with torch.no_grad():
        fake = trainer.G_ema(real, boxes, kps, z).float()
    masked = real * (1 - face_mask(boxes, trainer.model_cfg.size, trainer.model_cfg.mask_scale))
    rows = torch.cat([real, masked, fake], dim=3)  # side by side
    grid = ((rows.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).reshape(-1, rows.shape[3], 3)
    cv2.imwrite(str(path), cv2.cvtColor(grid.cpu().numpy(), cv2.COLOR_RGB2BGR))


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def stored_model_config(run: Path, state: dict | None = None) -> GeneratorConfig | None:
    """The model config a run folder was started with (its checkpoint, given as ``state`` when already
    loaded, or its compact checkpoint), or None for a new run."""
    if state is None and (run / "checkpoint.pt").is_file():
        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    if state is not None:
        stored = state.get("model_config")
    elif (run / "compact.json").is_file():
        stored = json.loads((run / "compact.json").read_text()).get("model_config")
    else:
        return None
    if stored is None:
        return None
    return GeneratorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})


def same_layout(module: torch.nn.Module, state: dict) -> bool:
    """Whether ``state`` (a state dict) has exactly ``module``'s parameter and buffer names. Checkpoints of runs
    before 2026-11-27's residual discriminator have another discriminator layout (plain blocks)."""
    return set(state) == set(module.state_dict())


def raw_generator(checkpoint: Path, state: dict | None = None) -> Generator:
    """The raw generator (the trained weights, not their EMA) of a run's ``checkpoint.pt``, in eval mode on
    the CPU; ``state``: the checkpoint when already loaded. In a short fine-tune the EMA is still mostly the
    weights the run started from, so probes of what the run learnt read these."""
    if state is None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    generator = Generator(stored_model_config(checkpoint.parent, state))
    generator.load_state_dict(state["G"])
    return generator.eval()


def resolve_model_config(stored: GeneratorConfig | None, requested: GeneratorConfig,
                         mask_scale: float | None = None) -> GeneratorConfig:
    """The model config a chunk trains: a new run's ``requested`` one, a resumed run's ``stored`` one.

    The architecture of a resumed run never changes. Its mask scale (the blacked-out region, in face
    box sides) does only when ``mask_scale`` is given, i.e. asked for by name: the run is fine-tuned at
    it, which a warning says.
    """
    if stored is None:
        return requested if mask_scale is None else replace(requested, mask_scale=mask_scale)
    if replace(stored, mask_scale=requested.mask_scale) != requested:
        log.warning("resuming with the model config the run was started with (%s), not %s", stored, requested)
    if mask_scale is not None and mask_scale != stored.mask_scale:
        log.warning("fine-tuning at mask scale %g: the run was trained at %g so far", mask_scale, stored.mask_scale)
        return replace(stored, mask_scale=mask_scale)
    return stored


def train(data_dirs: list[Path], run: Path, minutes: float, max_kimg: float, cfg: TrainConfig,
          model_cfg: GeneratorConfig, device: torch.device, log_every: int = 50, save_minutes: float = 5.0,
          compile_models: bool = False, limit: int | None = None, mask_scale: float | None = None,
          init_generator: Path | None = None) -> Trainer:
    """Train one chunk of at most ``minutes`` (or until ``max_kimg`` thousand images in total); save; return.

    ``mask_scale`` (face box sides), when given, sets a new run's blacked-out region or fine-tunes a
    resumed run at it (``resolve_model_config``). ``init_generator`` (a generator weights file) starts a
    new run's generator from it, with its architecture (ignored when the run folder resumes).
    """
    run.mkdir(parents=True, exist_ok=True)
    # loaded once, on the CPU: load_state_dict moves weights and optimizer state to the trainer's device
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False) \
        if (run / "checkpoint.pt").is_file() else None
    stored = stored_model_config(run, state)
    start_from = init_generator if stored is None else None
    if init_generator is not None and start_from is None:
        log.warning("--init-generator ignored: %s resumes its own checkpoint", run)
    if start_from is not None:
        from engines.generator.model import read_generator_info

        stored = read_generator_info(start_from).config
    model_cfg = resolve_model_config(stored, model_cfg, mask_scale)
    trainer = Trainer(model_cfg, cfg, device, channels_last=device.type == "cuda")
    if start_from is not None:
        trainer.load_generator_weights(start_from)
    elif state is not None:
        trainer.load_state(state)
        log.info("resumed at step %d (%d images shown)", trainer.step_count, trainer.images_shown)
    elif (run / "compact.json").is_file():
        trainer.load_compact(run)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    step_fn = trainer.step
    if compile_models:  # compiled forward shares the parameters; checkpoints keep plain key names
        trainer.G.forward = torch.compile(trainer.G.forward)  # type: ignore[method-assign]
    faces = load_shards(data_dirs, "train", limit)
    data = to_tensors(faces, device)
    try:
        heldout = to_tensors(load_shards(data_dirs, "heldout", 8), device)
    except FileNotFoundError:
        heldout = tuple(t[:8] for t in data)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    extra = {"train_faces": len(faces), "data": [str(d) for d in data_dirs]}  # + hardware of every chunk
    log.info("G %.2f M params, D %.2f M params, %d training faces, %s",
             count_parameters(trainer.G) / 1e6, count_parameters(trainer.D) / 1e6, len(faces), hardware)
    start = last_save = last_log = time.perf_counter()
    seconds_before = trainer.seconds
    images_at_log = trainer.images_shown

    def checkpoint() -> None:
        trainer.seconds = seconds_before + time.perf_counter() - start
        trainer.save(run, extra)
        save_samples(trainer, heldout, run / f"samples-{trainer.step_count:07d}.png")

    with open(run / "log.jsonl", "a") as log_file:
        while time.perf_counter() - start < minutes * 60 and trainer.images_shown < max_kimg * 1000:
            stats = step_fn(data)
            if hardware not in trainer.hardware:  # a rebuild (--minutes 0) on another machine adds nothing
                trainer.hardware.append(hardware)
            if not all(np.isfinite(v) for v in stats.values()):
                raise FloatingPointError(f"non-finite loss at step {trainer.step_count}: {stats}")
            now = time.perf_counter()
            if trainer.step_count % log_every == 0:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rate = (trainer.images_shown - images_at_log) / max(now - last_log, 1e-9)
                row = {"step": trainer.step_count, "kimg": trainer.images_shown / 1000, "img_per_s": round(rate, 1),
                       "seconds": round(seconds_before + now - start, 1),
                       **{k: round(v, 4) for k, v in stats.items()}}
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                log.info("%s", row)
                last_log, images_at_log = now, trainer.images_shown
            if now - last_save > save_minutes * 60:
                checkpoint()
                last_save = now
    checkpoint()
    log.info("chunk done: step %d, %d images shown, %.0f s trained in total", trainer.step_count,
             trainer.images_shown, trainer.seconds)
    return trainer


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m engines.generator.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="shard folder(s)")
    p.add_argument("--run", type=Path, required=True, help="run folder (checkpoints, logs, samples)")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of this chunk")
    p.add_argument("--max-kimg", type=float, default=40_000, help="stop at this many thousand images in total")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--r1-gamma", type=float, default=1.0)
    p.add_argument("--l1-weight", type=float, default=1.0)
    p.add_argument("--diversity-cap", type=float, default=TrainConfig.diversity_cap,
                   help="spread (face change per unit of latent) past which the diversity term stops pushing")
    p.add_argument("--diversity-weight", type=float, default=0.0,
                   help="diversity term: reward faces that change with the latent (0 = off; batch must be even)")
    p.add_argument("--mask-scale", type=float,
                   help=f"blacked-out region = face box x this (default {GeneratorConfig.mask_scale:g}; "
                        "a resumed run keeps its own unless this is given, then it is fine-tuned at it)")
    p.add_argument("--init-generator", type=Path, metavar="WEIGHTS",
                   help="start a new run's generator from this weights file (e.g. the shipped "
                        "engines/generator/weights/generator.safetensors); the discriminator starts fresh")
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--log-every", type=int, default=50, help="steps between log lines")
    p.add_argument("--save-minutes", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator (CUDA)")
    p.add_argument("--limit", type=int, help="use at most this many training faces")
    p.add_argument("--channels", type=int, nargs="+", help="generator channels per level (smoke tests only)")
    p.add_argument("--d-channels", type=int, nargs="+", help="discriminator channels per level (smoke tests only)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig(batch=args.batch, lr=args.lr, r1_gamma=args.r1_gamma, l1_weight=args.l1_weight,
                      diversity_weight=args.diversity_weight, diversity_cap=args.diversity_cap, amp=args.amp,
                      seed=args.seed)
    overrides = {k: tuple(v) for k, v in (("channels", args.channels), ("d_channels", args.d_channels)) if v}
    train(args.data, args.run, args.minutes, args.max_kimg, cfg, GeneratorConfig(**overrides), pick_device(args.device),
          log_every=args.log_every, save_minutes=args.save_minutes, compile_models=args.compile, limit=args.limit,
          mask_scale=args.mask_scale, init_generator=args.init_generator)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
