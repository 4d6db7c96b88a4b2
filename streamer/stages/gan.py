"""GAN anonymizer: every face replaced by a generated one that never saw the original.

The compositor cuts a square crop of ``context`` (2.0) x the face size around
each face, resizes it to 128 px and calls :meth:`GanAnonymizer.anonymize`;
the generator blacks out the face box (times ``mask_scale``) itself, so the
original face never reaches it, and the compositor blends back only the
feathered ellipse over the face.

One identity per person: the latent z of a face is drawn from a generator
seeded by ``(seed, track_id)``, so a tracked person keeps the same fake face
on every frame and two tracks get different ones (DeepPrivacy2 seeds z per
track the same way). Untracked faces (track id -1) get a fresh z per call.

Precision: FP16 on CUDA, FP32 on the CPU (slow but correct).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamer.stages.anonymizers import FaceCrops

log = logging.getLogger(__name__)


def track_latent(track_id: int, z_dim: int, seed: int = 0) -> np.ndarray:
    """The latent (z_dim,) float32 of a track: the same for the same (seed, track id)."""
    return np.random.default_rng([seed, int(track_id)]).standard_normal(z_dim).astype(np.float32)


class GanAnonymizer:
    """Anonymizer (see :class:`streamer.stages.anonymizers.Anonymizer`) backed by the face generator.

    Args:
        generator: an :class:`engines.generator.model.Generator` (eval mode) on ``device``.
        device: torch device name (``cpu`` or ``cuda``).
        seed: mixed into every track's latent (change it to get other fake identities).
        batch_size: faces per generator call.
    """

    name = "gan"

    def __init__(self, generator, device: str = "cpu", seed: int = 0, batch_size: int = 32) -> None:
        import torch

        self.generator = generator
        self.device = torch.device(device)
        self.dtype = next(generator.parameters()).dtype
        self.config = generator.config
        self.context = float(self.config.context)
        self.input_size = int(self.config.size)
        self.seed = seed
        self.batch_size = batch_size
        self._rng = np.random.default_rng([seed, 2**31])

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", seed: int = 0) -> "GanAnonymizer":
        """Load FP16 safetensors weights: FP16 on CUDA, FP32 on the CPU."""
        import torch

        from engines.generator.model import load_generator

        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        generator, info = load_generator(path, device=device, dtype=dtype)
        log.info("face generator %s: %d images shown, %s on %s", path, info.images_shown, dtype, device)
        return cls(generator, device=device, seed=seed)

    def latents(self, track_ids: np.ndarray) -> np.ndarray:
        """(N, z_dim) latents: seeded per track id, random for untracked faces (-1)."""
        z_dim = self.config.z_dim
        return np.stack([track_latent(t, z_dim, self.seed) if t >= 0
                         else self._rng.standard_normal(z_dim).astype(np.float32) for t in track_ids])

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """Generate a face into each crop (RGB uint8, ``input_size`` square); same shapes out."""
        import torch

        if not len(crops):
            return []
        images = torch.from_numpy(np.stack(crops.images)).permute(0, 3, 1, 2)
        faces = self.anonymize_tensor(FaceCrops(images=images, boxes=crops.boxes, keypoints=crops.keypoints,
                                                track_ids=crops.track_ids))
        return list(faces.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())

    def anonymize_tensor(self, crops: FaceCrops):
        """Generate a face into each crop of a (N, 3, s, s) tensor (or list of (3, s, s)), values 0..255.

        The crops may live on any device (they are moved to the generator's);
        returns (N, 3, s, s) float32 0..255 on the generator's device.
        """
        import torch

        images = crops.images if torch.is_tensor(crops.images) else torch.stack(list(crops.images))
        if not len(images):
            return images.new_zeros((0, 3, self.input_size, self.input_size), dtype=torch.float32)
        z_all = self.latents(np.asarray(crops.track_ids))
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                sl = slice(start, start + self.batch_size)
                x = images[sl].to(self.device).to(self.dtype) / 127.5 - 1
                boxes = torch.from_numpy(np.asarray(crops.boxes[sl], np.float32)).to(self.device)
                kps = torch.from_numpy(np.asarray(crops.keypoints[sl], np.float32)).to(self.device)
                z = torch.from_numpy(z_all[sl]).to(self.device, self.dtype)
                y = self.generator(x, boxes, kps, z)
                out.append((y.float().clamp(-1, 1) + 1) * 127.5)
        return torch.cat(out)


def build_gan_anonymizer(device: str = "auto", weights: str | Path | None = None, seed: int = 0) -> GanAnonymizer:
    """The GAN anonymizer for the pipeline's device setting (``auto``, ``cpu``, ``cuda``).

    Raises:
        BackendError: no weights file, or CUDA asked for but absent.
    """
    from engines.generator import WEIGHTS_ENV, weights_path
    from engines.select import cuda_available
    from streamer.errors import BackendError

    path = Path(weights) if weights else weights_path()
    if not path.is_file():
        raise BackendError(f"mode 'gan' needs the face generator's weights ({path}), which are not present; "
                           f"train them (engines/generator/train.py), point {WEIGHTS_ENV} at a file, "
                           "or use --mode blur, pixelate or mask")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise BackendError("device cuda was asked for, but PyTorch sees no CUDA GPU")
    if device == "cpu":
        log.warning("the face generator runs on the CPU in FP32: correct but slow")
    return GanAnonymizer.from_file(path, device=device, seed=seed)
