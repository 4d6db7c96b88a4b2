"""Training resumes exactly; the shard builder and augmentation keep geometry right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.generator.data import SHARED_DATA, augment, build_shards, context_rect, load_shards
from engines.generator.model import GeneratorConfig
from engines.generator.train import TrainConfig, Trainer

TINY = GeneratorConfig(size=32, channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), z_dim=8)


def _data(n: int = 6):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[8.0, 8.0, 24.0, 24.0]] * n)
    kps = torch.tensor([[[12.0, 13.0], [20.0, 13.0], [16.0, 17.0], [13.0, 21.0], [19.0, 21.0]]] * n)
    return images, boxes, kps


def _trainer() -> Trainer:
    return Trainer(TINY, TrainConfig(batch=4, r1_every=2, seed=3), torch.device("cpu"))


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path: Path):
    data = _data()
    straight = _trainer()
    for _ in range(4):
        straight.step(data)
    first = _trainer()
    for _ in range(2):
        first.step(data)
    first.save(tmp_path, {})
    resumed = _trainer()
    resumed.load_state(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
    for _ in range(2):
        resumed.step(data)
    assert resumed.step_count == 4 and resumed.images_shown == 16
    for name in ("G", "D", "G_ema"):
        for (k, a), b in zip(getattr(straight, name).state_dict().items(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
    # the compact FP16 checkpoint restores counters and the EMA generator
    compact = _trainer()
    compact.load_compact(tmp_path)
    assert compact.step_count == 2
    for a, b in zip(first.G_ema.state_dict().values(), compact.G.state_dict().values()):
        assert torch.allclose(a.half().float(), b)
    assert (tmp_path / "generator.safetensors").is_file()


def test_weights_rebuilt_elsewhere_keep_the_training_hardware(tmp_path: Path):
    """Rebuilding generator.safetensors from a GPU run's compact checkpoint on a CPU (no steps) must not
    claim the CPU trained it."""
    from engines.generator.model import read_generator_info

    trainer = _trainer()
    trainer.step(_data())
    trainer.hardware = ["NVIDIA H100 80GB HBM3"]  # what the GPU chunk recorded
    trainer.save(tmp_path, {})
    (tmp_path / "checkpoint.pt").unlink()  # only the compact parts come back from the GPU machine
    rebuilt = _trainer()
    rebuilt.load_compact(tmp_path)
    rebuilt.save(tmp_path, {})
    assert read_generator_info(tmp_path / "generator.safetensors").extra["hardware"] == "NVIDIA H100 80GB HBM3"


def test_augment_moves_boxes_and_keypoints_with_the_image():
    images = -torch.ones(64, 3, 32, 32)
    images[:, :, 8:24, 4:12] = 1.0  # a bright rectangle where the "box" is
    boxes = torch.tensor([[4.0, 8.0, 12.0, 24.0]] * 64)
    kps = torch.tensor([[[5.0, 9.0], [11.0, 9.0], [8.0, 16.0], [5.0, 23.0], [11.0, 23.0]]] * 64)
    out, b, k = augment(images, boxes, kps, torch.Generator().manual_seed(0), colour=0.0)
    for i in range(len(out)):
        x1, y1, x2, y2 = b[i].tolist()
        inside = out[i, 0, int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
        assert inside.min() > 0.5, i
        assert k[i, 0, 0] < k[i, 1, 0], "right eye (image left) must stay left of the left eye"


def test_context_rect_makes_the_face_half_the_crop():
    x0, y0, x1, y1 = context_rect(np.array([100.0, 50.0, 160.0, 130.0]), 2.0)
    assert (x1 - x0, y1 - y0) == (160, 160)
    assert (x0 + x1) / 2 == 130 and (y0 + y1) / 2 == 90


@pytest.mark.skipif(not (SHARED_DATA / "faces_lfw" / "lfw-00.tar").is_file(),
                    reason=f"shared face data not found at {SHARED_DATA} (../shared beside the repo)")
def test_build_shards_from_a_handful_of_shared_images(tmp_path: Path):
    stats = build_shards(tmp_path, ["lfw"], limit=12, shard_size=5)
    assert stats["sources"]["lfw"]["images"] == 12
    faces = load_shards(tmp_path, "train")
    kept = stats["sources"]["lfw"]["train"]
    assert len(faces) == kept >= 10
    assert faces.images.shape[1:] == (128, 128, 3)
    sides = np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    np.testing.assert_allclose(sides, 64, atol=2)  # the face box is half the crop
    inside = ((faces.keypoints >= faces.boxes[:, None, :2]) & (faces.keypoints <= faces.boxes[:, None, 2:])).all()
    assert inside
    assert len(list(tmp_path.glob("train-lfw-*.npz"))) >= 2


def test_a_run_folder_remembers_its_model_config(tmp_path: Path):
    """Resuming with other flags (e.g. --mask-scale) must not silently change a run's model."""
    from dataclasses import replace

    from engines.generator.train import stored_model_config

    assert stored_model_config(tmp_path) is None
    config = replace(TINY, mask_scale=1.3)
    trainer = Trainer(config, TrainConfig(batch=4, r1_every=2, seed=3), torch.device("cpu"))
    trainer.step(_data())
    trainer.save(tmp_path, {})
    assert stored_model_config(tmp_path) == config
    (tmp_path / "checkpoint.pt").unlink()  # compact checkpoint only, as returned by the GPU machine
    assert stored_model_config(tmp_path) == config


def test_a_resumed_run_changes_its_mask_scale_only_when_asked_by_name():
    """Fine-tuning at another mask scale is explicit; the architecture of a resumed run never changes."""
    from dataclasses import replace

    from engines.generator.train import resolve_model_config

    stored = replace(TINY, mask_scale=1.1)
    assert resolve_model_config(None, TINY, None) == TINY
    assert resolve_model_config(None, TINY, 1.3).mask_scale == 1.3
    assert resolve_model_config(stored, TINY, None) == stored
    assert resolve_model_config(stored, TINY, 1.3) == replace(stored, mask_scale=1.3)
    wider = replace(TINY, channels=(16, 16, 16, 16))
    assert resolve_model_config(stored, wider, 1.3) == replace(stored, mask_scale=1.3)
