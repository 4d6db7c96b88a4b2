"""The face generator (DeepPrivacy-style conditional U-Net GAN).

This package is importable without torch: it only knows where the shipped
weights live and which anonymizer mode is the default. The model, the data
builder, training and evaluation live in submodules that import torch.

Example:
    >>> default_mode() in ("gan", "blur")
    True
"""

from __future__ import annotations

import os
from pathlib import Path

#: The shipped generator weights (FP16 safetensors), committed with a model card.
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "generator.safetensors"
#: Environment variable that points the pipeline at other weights (a training run's export).
WEIGHTS_ENV = "STREAMER_GENERATOR_WEIGHTS"
#: The mode used when no weights exist and none is configured.
CLASSIC_DEFAULT_MODE = "blur"


def weights_path() -> Path:
    """The generator weights the pipeline uses: ``$STREAMER_GENERATOR_WEIGHTS`` or the shipped file."""
    override = os.environ.get(WEIGHTS_ENV)
    return Path(override) if override else WEIGHTS_PATH


def default_mode() -> str:
    """``"gan"`` when generator weights are present and cleared as the default, else ``"blur"``.

    The CLI/config calls this for the default anonymizer mode. Weights are
    cleared by the ``is_default`` flag in their metadata, set only for weights
    whose evaluation met the targets (identity leakage, re-detection; see
    ``MODEL_CARD.md``): weights that are present but not cleared still serve
    ``--mode gan`` when asked for, and the default stays the classic mode.
    """
    return "gan" if weights_status() == "default" else CLASSIC_DEFAULT_MODE


def weights_status(path: str | Path | None = None) -> str:
    """``"default"``, ``"opt-in"`` (present, not cleared as the default) or ``"absent"`` for the weights at
    ``path`` (default :func:`weights_path`). Reads the file's metadata header only (no torch needed)."""
    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        return "absent"
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception:  # not a safetensors file: the gan mode will say so when it loads it
        return "opt-in"
    return "default" if meta.get("is_default") == "true" else "opt-in"


def use_generator_weights(choice: str | None, workdir: str | Path) -> str:
    """Point this process's gan mode at ``choice`` and describe the weights it will use.

    Args:
        choice: a weights file; ``"random"`` for fixed-seed random weights
            (written to ``workdir``; same network and cost as trained ones, so
            timing runs need no training, but the faces are noise); None keeps
            :func:`weights_path`.
        workdir: folder for the random weights file.

    Returns:
        A one-line description for result files: the path, or what "random" means.

    Raises:
        streamer.errors.InputError: ``choice`` names a file that does not exist.
    """
    if choice == "random":
        from engines.generator.model import GeneratorInfo, random_generator, save_generator

        path = Path(workdir) / "generator-random.safetensors"
        model = random_generator(seed=0)
        save_generator(model, path, GeneratorInfo(config=model.config, extra={"random": True}))
        os.environ[WEIGHTS_ENV] = str(path)
        return "random weights, seed 0 (timing only: same network and cost, the faces are noise)"
    if choice:
        if not Path(choice).is_file():
            from streamer.errors import InputError

            raise InputError(f"generator weights not found: {choice}")
        os.environ[WEIGHTS_ENV] = str(Path(choice).resolve())
    return str(weights_path())
