"""Shared fixtures of the face-generator tests: small random generators saved as weights files."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the face generator needs torch")

from engines.generator.model import (Generator, GeneratorConfig, GeneratorInfo, random_generator as _random,  # noqa: E402
                                     save_generator)

#: A narrow generator at the real 128 px geometry: fast on 2 CPU cores.
SMALL = dict(channels=(8, 16, 16, 32, 32, 32), d_channels=(8, 16, 16, 32, 32, 32))


def random_generator(seed: int = 0, **overrides) -> Generator:
    """A fixed-seed randomly initialised small generator (``SMALL`` + ``overrides``) in eval mode."""
    return _random(seed, GeneratorConfig(**{**SMALL, **overrides}))


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    """A temporary FP16 weights file of a small random generator (not cleared as the default)."""
    path = tmp_path / "generator.safetensors"
    save_generator(random_generator(), path, GeneratorInfo(GeneratorConfig(**SMALL), images_shown=0))
    return path


@pytest.fixture
def default_weights_file(tmp_path: Path) -> Path:
    """Like ``weights_file``, flagged as cleared to be the default (``is_default``)."""
    path = tmp_path / "generator-default.safetensors"
    save_generator(random_generator(), path, GeneratorInfo(GeneratorConfig(**SMALL), is_default=True))
    return path
