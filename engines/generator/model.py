"""Generator and discriminator of the face generator (after DeepPrivacy, Hukkelas et al. 2019).

Conventions shared by training and inference:

* a sample is a square context crop of ``size`` x ``size`` pixels (128) whose
  face box sides are ``1 / context`` of the crop (the compositor cuts crops
  this way, see :mod:`streamer.stages.compositor`);
* images are float tensors (N, 3, S, S) in [-1, 1];
* ``boxes`` (N, 4) are the face boxes ``x1, y1, x2, y2`` and ``keypoints``
  (N, 5, 2) the 5 facial keypoints (right eye, left eye, nose, right mouth,
  left mouth), both in crop pixels; NaN keypoints are "unknown".

The generator masks its own input (:meth:`Generator.forward` blacks out the
face box scaled by ``mask_scale`` before anything else), so no code path can
hand it the original face.

Example:
    >>> g = Generator(GeneratorConfig())
    >>> 10e6 <= count_parameters(g) <= 15e6
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Keypoint order after a horizontal flip (right and left eye / mouth corner swap).
KEYPOINT_FLIP = (1, 0, 3, 2, 4)
NUM_KEYPOINTS = 5


@dataclass
class GeneratorConfig:
    """Architecture and crop geometry (stored in the weights' metadata).

    Attributes:
        size: crop side in pixels.
        context: crop side / face box side (the face box is a fixed fraction of the crop).
        mask_scale: the blacked-out region is the face box scaled by this about its centre.
        z_dim: latent size.
        channels: feature channels per resolution, from ``size`` down to 4 px.
        d_channels: discriminator channels per resolution.
    """

    size: int = 128
    context: float = 2.0
    mask_scale: float = 1.1
    z_dim: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 256, 320, 384)
    d_channels: tuple[int, ...] = (32, 64, 128, 256, 256, 256)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.d_channels = tuple(int(c) for c in self.d_channels)
        if self.size != 4 * 2 ** (len(self.channels) - 1):
            raise ValueError(f"size {self.size} needs {int(math.log2(self.size // 4)) + 1} channel entries")

    @property
    def resolutions(self) -> list[int]:
        """Feature-map sides in pixels, largest first."""
        return [self.size // 2 ** i for i in range(len(self.channels))]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---------------------------------------------------------------- conditions

def face_mask(boxes: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """(N, 1, size, size) float mask, 1 on every pixel that touches the face box scaled by ``scale``.

    Args:
        boxes: (N, 4) face boxes in crop pixels.
        size: crop side in pixels.
        scale: box scale about its centre (>= 1 covers the whole box).
    """
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    lo, hi = torch.floor(c - half), torch.ceil(c + half)  # pixel j covers [j, j+1)
    grid = torch.arange(size, device=boxes.device, dtype=boxes.dtype)
    inside_x = (grid[None] >= lo[:, :1]) & (grid[None] < hi[:, :1])
    inside_y = (grid[None] >= lo[:, 1:]) & (grid[None] < hi[:, 1:])
    return (inside_y[:, :, None] & inside_x[:, None, :]).to(boxes.dtype)[:, None]


def keypoint_maps(keypoints: torch.Tensor, size: int, resolution: int) -> torch.Tensor:
    """One-hot keypoint maps (N, 5, r, r): 1 at the cell of each known keypoint, else 0.

    Args:
        keypoints: (N, 5, 2) keypoints in pixels of a ``size`` crop, NaN if unknown.
        size: crop side in pixels.
        resolution: side ``r`` of the maps.
    """
    n, k = keypoints.shape[:2]
    cells = torch.floor(keypoints * (resolution / size))
    valid = ~torch.isnan(cells).any(-1) & (cells >= 0).all(-1) & (cells < resolution).all(-1)
    cells = torch.where(valid[..., None], cells, torch.zeros_like(cells)).long()
    index = cells[..., 1] * resolution + cells[..., 0]
    maps = torch.zeros(n, k, resolution * resolution, device=keypoints.device)
    maps.scatter_(2, index[..., None], valid[..., None].float())
    return maps.view(n, k, resolution, resolution)


# ---------------------------------------------------------------- layers

class PixelNorm(nn.Module):
    """Normalises each pixel's feature vector to unit mean square (ProGAN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.float().pow(2).mean(dim=1, keepdim=True) + 1e-8).to(x.dtype)


def _conv(c_in: int, c_out: int, k: int = 3, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.LeakyReLU(0.2)]
    if norm:
        layers.append(PixelNorm())
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- generator

class Generator(nn.Module):
    """U-Net with skip connections, keypoint maps at the input and after every upsampling.

    The latent z enters at the 4x4 bottleneck and, broadcast, at every decoder
    level, so one z gives one consistent identity.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        k = NUM_KEYPOINTS
        self.stem = _conv(3 + 1 + k, ch[0], k=1)
        self.down = nn.ModuleList()
        for i in range(len(ch)):
            c_in = ch[max(i - 1, 0)]
            self.down.append(nn.Sequential(_conv(c_in, ch[i]), _conv(ch[i], ch[i])))
        self.z_map = nn.Linear(config.z_dim, config.z_dim * 16)
        self.bottleneck = nn.Sequential(_conv(ch[-1] + config.z_dim + k, ch[-1]), _conv(ch[-1], ch[-1]))
        self.up = nn.ModuleList()
        self.z_up = nn.ModuleList()
        for i in range(len(ch) - 2, -1, -1):
            self.z_up.append(nn.Linear(config.z_dim, ch[i + 1]))
            self.up.append(nn.Sequential(_conv(ch[i + 1] + ch[i] + k, ch[i]), _conv(ch[i], ch[i])))
        self.to_rgb = nn.Conv2d(ch[0], 3, 1)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor, keypoints: torch.Tensor,
                z: torch.Tensor) -> torch.Tensor:
        """Generate the face region.

        Args:
            image: (N, 3, S, S) crops in [-1, 1]; the face region is blacked out here first.
            boxes: (N, 4) face boxes in crop pixels.
            keypoints: (N, 5, 2) keypoints in crop pixels (NaN: unknown).
            z: (N, z_dim) latent.

        Returns:
            (N, 3, S, S): the generated face pasted into the input crop (outside
            the mask the input pixels are kept).
        """
        cfg = self.config
        mask = face_mask(boxes.float(), cfg.size, cfg.mask_scale).to(image.dtype)
        masked = image * (1 - mask)
        kp = {r: keypoint_maps(keypoints.float(), cfg.size, r).to(image.dtype) for r in cfg.resolutions}
        x = self.stem(torch.cat([masked, mask, kp[cfg.size]], 1))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        z = z.to(image.dtype)
        zmap = self.z_map(z).view(-1, cfg.z_dim, 4, 4)
        x = self.bottleneck(torch.cat([x, zmap, kp[4]], 1))
        for j, (block, z_lin) in enumerate(zip(self.up, self.z_up)):
            i = len(cfg.channels) - 2 - j
            x = F.interpolate(x, scale_factor=2.0, mode="nearest") + z_lin(z)[:, :, None, None]
            x = block(torch.cat([x, skips[i], kp[cfg.resolutions[i]]], 1))
        raw = self.to_rgb(x)
        return masked + raw * mask


# ---------------------------------------------------------------- discriminator

class MinibatchStd(nn.Module):
    """Appends the mean per-feature standard deviation over groups of samples (one channel)."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        while n % g:
            g -= 1
        y = x.float().view(g, -1, c, h, w)
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n / g,)
        std = std.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
        return torch.cat([x, std], 1)


class ResidualDown(nn.Module):
    """Two 3x3 convolutions and a 2x average-pool, plus a pooled 1x1 shortcut (StyleGAN2's residual D block).

    The sum is scaled by 1/sqrt(2) so that the block keeps its input's scale.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2))
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.avg_pool2d(self.main(x), 2) + self.shortcut(F.avg_pool2d(x, 2))) * (0.5 ** 0.5)


class Discriminator(nn.Module):
    """Conditional discriminator: the image (3), the masked crop (3), the mask (1) and keypoint maps (5).

    Residual blocks (:class:`ResidualDown`) from 128 down to 4 px, then minibatch standard deviation and two
    linear layers. Plain (non-residual) blocks, as before 2026-11-27, learnt to tell the shipped generator's
    faces from real ones a little more slowly (held-out AUC 0.81 against 0.88 after 100 steps of batch 16,
    0.89 against 0.91 after 150; ``benchmarks/generator_discriminator_probe.py``, 2-core CPU, 2026-11-27).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.d_channels
        self.stem = nn.Sequential(nn.Conv2d(3 + 3 + 1 + NUM_KEYPOINTS, ch[0], 1), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleList(ResidualDown(ch[i], ch[i + 1]) for i in range(len(ch) - 1))
        self.head = nn.Sequential(MinibatchStd(), nn.Conv2d(ch[-1] + 1, ch[-1], 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Flatten(), nn.Linear(ch[-1] * 16, ch[-1]), nn.LeakyReLU(0.2),
                                  nn.Linear(ch[-1], 1))
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation for LeakyReLU(0.2), zero biases, and a last layer of unit gain.

        PyTorch's default initialisation shrinks activations by ~1.7x per layer; through this
        discriminator's 14 layers a fresh network's logits varied by 4e-7 across a batch of faces
        (measured 2026-11-27), so it output ~0 for everything and its loss sat at 2 ln 2 (1.386) through
        the whole 2026-11-26 training run: the generator learnt from its L1 term. Initialised so,
        activations keep their scale from layer to layer and the logits of different faces differ
        by ~0.1-0.2 from the start.
        """
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for layer in layers:
            if layer.bias is None:  # a residual shortcut: linear, unit gain
                nn.init.kaiming_normal_(layer.weight, nonlinearity="linear")
            else:
                nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        nn.init.normal_(layers[-1].weight, std=layers[-1].weight.shape[1] ** -0.5)

    def forward(self, image: torch.Tensor, condition: torch.Tensor, boxes: torch.Tensor,
                keypoints: torch.Tensor) -> torch.Tensor:
        """Realness logits (N,) of ``image`` given the crop ``condition`` (masked here)."""
        cfg = self.config
        mask = face_mask(boxes.float(), cfg.size, cfg.mask_scale).to(image.dtype)
        kp = keypoint_maps(keypoints.float(), cfg.size, cfg.size).to(image.dtype)
        x = self.stem(torch.cat([image, condition * (1 - mask), mask, kp], 1))
        for block in self.blocks:
            x = block(x)
        return self.head(x).view(-1)


# ---------------------------------------------------------------- weights I/O

@dataclass
class GeneratorInfo:
    """What the weights file records besides the tensors.

    Attributes:
        config: architecture and geometry.
        images_shown: training images the generator (EMA) has seen.
        extra: free-form provenance (hardware, wall time, data).
        is_default: these weights passed the evaluation's targets and may make
            ``gan`` the default mode (:func:`engines.generator.default_mode`);
            False for weights that are only to be chosen explicitly.
    """

    config: GeneratorConfig
    images_shown: int = 0
    extra: dict = field(default_factory=dict)
    is_default: bool = False


def save_generator(model: nn.Module, path: str | Path, info: GeneratorInfo) -> None:
    """Write the generator's weights as FP16 safetensors with the config in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(asdict(info.config)), "images_shown": str(info.images_shown),
            "extra": json.dumps(info.extra), "format": "streamer-face-generator-v1",
            "is_default": "true" if info.is_default else "false"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def random_generator(seed: int = 0, config: GeneratorConfig | None = None) -> Generator:
    """A generator with fixed-seed random weights (eval mode, CPU, FP32).

    It costs exactly what trained weights cost, so it serves export checks and
    timing runs before any training; its output is noise, never a face.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(config or GeneratorConfig()).eval()


def read_generator_info(path: str | Path) -> GeneratorInfo:
    """The config and training record stored in a weights file by :func:`save_generator` (tensors unread).

    Raises:
        ValueError: the file is not a streamer face-generator weights file.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "streamer-face-generator-v1":
        raise ValueError(f"{path} is not a streamer face-generator weights file")
    return GeneratorInfo(config=GeneratorConfig(**json.loads(meta["config"])),
                         images_shown=int(meta.get("images_shown", 0)), extra=json.loads(meta.get("extra", "{}")),
                         is_default=meta.get("is_default") == "true")


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[Generator, GeneratorInfo]:
    """Load weights written by :func:`save_generator`; the model is in eval mode on ``device``."""
    from safetensors.torch import load_file

    info = read_generator_info(path)
    model = Generator(info.config)
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model.to(device=device, dtype=dtype).eval(), info
