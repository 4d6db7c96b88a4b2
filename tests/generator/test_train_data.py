"""Training resumes exactly; the shard builder and augmentation keep geometry right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.generator.data import SHARED_DATA, ShardWriter, augment, build_shards, context_rect, load_shards
from engines.generator.model import GeneratorConfig, face_mask
from engines.generator.train import TrainConfig, Trainer, latent_spread, to_float

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


def test_a_checkpoint_with_the_old_plain_discriminator_resumes_its_generator():
    """Runs saved before the residual discriminator (2026-11-27) keep their generator; D starts fresh."""
    first = _trainer()
    first.step(_data())
    state = first.state()
    state["D"] = {k.replace(".main.", "."): v for k, v in state["D"].items()
                  if ".shortcut." not in k}  # the plain blocks' keys: blocks.i.0 / blocks.i.2
    resumed = _trainer()
    fresh_d = [p.clone() for p in resumed.D.parameters()]
    resumed.load_state(state)
    assert resumed.step_count == 1
    for a, b in zip(first.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(fresh_d, resumed.D.parameters()))
    resumed.step(_data())  # and it trains on


def test_raw_generator_reads_the_trained_weights_not_their_ema(tmp_path: Path):
    from engines.generator.train import raw_generator

    trainer = _trainer()
    for _ in range(2):
        trainer.step(_data())
    trainer.save(tmp_path, {})
    raw = raw_generator(tmp_path / "checkpoint.pt")
    assert raw.config == TINY and not raw.training
    for (k, a), b in zip(trainer.G.state_dict().items(), raw.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(a, b) for a, b in zip(trainer.G.parameters(), trainer.G_ema.parameters()))


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


def test_the_diversity_term_pairs_each_face_with_itself_under_other_latents():
    trainer = Trainer(TINY, TrainConfig(batch=4, diversity_weight=1.0, seed=3), torch.device("cpu"))
    images, boxes, kps, z = trainer.batch(_data())
    assert torch.equal(images[:2], images[2:]) and torch.equal(boxes[:2], boxes[2:]) and torch.equal(kps[:2], kps[2:])
    assert not torch.allclose(z[:2], z[2:])
    assert np.isfinite(trainer.step(_data())["spread"])
    # off by default: every face drawn on its own, no spread logged
    plain = Trainer(TINY, TrainConfig(batch=4, seed=3), torch.device("cpu"))
    assert "spread" not in plain.step(_data())


def test_latent_spread_is_the_face_regions_change_per_unit_of_latent_tint_aside():
    fake = torch.zeros(4, 3, 8, 8)
    fake[2:, :, 2:4, 2:6] = 0.5  # the second half: the face's top half brighter, and a change outside it
    fake[2:, :, 0, 0] = 1.0
    mask = torch.zeros(4, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    z = torch.cat([torch.zeros(2, 8), torch.full((2, 8), 2.0)])
    # tint aside, the top half moved +0.25 and the bottom half -0.25: 0.25 per pixel, over 2 of latent
    assert latent_spread(fake, z, mask).item() == pytest.approx(0.125)
    assert latent_spread(torch.cat([fake[:2], fake[:2]]), z, mask).item() == 0
    tinted = torch.cat([fake[:2], fake[:2] + torch.tensor([0.3, -0.2, 0.1])[:, None, None]])
    assert latent_spread(tinted, z, mask).item() == pytest.approx(0, abs=1e-7)  # a tint is no new face


def test_the_diversity_term_needs_an_even_batch_and_a_non_negative_weight():
    with pytest.raises(ValueError, match="batch must be even"):
        TrainConfig(batch=5, diversity_weight=1.0)
    with pytest.raises(ValueError, match="diversity_weight must be >= 0"):
        TrainConfig(diversity_weight=-1.0)
    with pytest.raises(ValueError, match="diversity_cap must be > 0"):
        TrainConfig(diversity_cap=0.0)
    TrainConfig(batch=5)  # odd batches are fine without it


def test_the_diversity_term_stops_pushing_past_its_cap():
    """Past the cap the term adds nothing, whatever its weight; under it, it moves the generator."""
    losses = {}
    for weight, cap in ((1.0, 1e-6), (5.0, 1e-6), (5.0, 100.0)):
        trainer = Trainer(TINY, TrainConfig(batch=4, diversity_weight=weight, diversity_cap=cap, seed=3),
                          torch.device("cpu"))
        trainer.step(_data())  # same seed and data: the same first step but for the term
        losses[weight, cap] = [p.detach().clone() for p in trainer.G.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(losses[1.0, 1e-6], losses[5.0, 1e-6]))
    assert any(not torch.equal(a, b) for a, b in zip(losses[5.0, 100.0], losses[5.0, 1e-6]))


def test_training_with_the_diversity_term_makes_the_latent_matter():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    data = (images, *(t.expand(16, *t.shape[1:]) for t in _data(1)[1:]))
    spreads = {}
    for weight in (0.0, 1.0):
        trainer = Trainer(TINY, TrainConfig(batch=8, diversity_weight=weight, diversity_cap=1.0, seed=1),
                          torch.device("cpu"))
        for _ in range(40):
            trainer.step(data)
        x = torch.cat([to_float(images[:4])] * 2)
        boxes, kps = (torch.cat([t[:4]] * 2) for t in data[1:])
        z = torch.randn(8, TINY.z_dim, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            fake = trainer.G(x, boxes, kps, z)
        spreads[weight] = latent_spread(fake, z, face_mask(boxes, TINY.size, TINY.mask_scale)).item()
    # measured: 0.033 without the term, 0.46 with it (2-core CPU, 2026-11-27)
    assert spreads[1.0] > 3 * spreads[0.0], spreads


def test_a_new_run_can_start_from_a_generator_weights_file(tmp_path: Path):
    """Fine-tuning from weights whose discriminator is gone (like the shipped file): G from the file, D fresh."""
    from dataclasses import replace

    from engines.generator.model import GeneratorInfo, save_generator
    from engines.generator.train import train

    source = _trainer()
    for _ in range(2):
        source.step(_data())
    weights = tmp_path / "given.safetensors"
    save_generator(source.G_ema, weights, GeneratorInfo(replace(TINY, mask_scale=1.1), 5000,
                                                        {"hardware": "NVIDIA H100 80GB HBM3", "train_seconds": 7.5}))
    shards = tmp_path / "shards"
    shards.mkdir()
    writer = ShardWriter(shards, "train", "x", shard_size=100, quality=90)
    for image, box, kp in zip(*_data()):
        writer.add(image.permute(1, 2, 0).numpy(), box.numpy(), kp.numpy(), "someone", "x.jpg")
    writer.flush()
    run = tmp_path / "run"
    trainer = train([shards], run, minutes=0, max_kimg=1e9, cfg=TrainConfig(batch=4), model_cfg=TINY,
                    device=torch.device("cpu"), init_generator=weights, mask_scale=1.3)
    assert trainer.images_shown == 5000 and trainer.hardware[0] == "NVIDIA H100 80GB HBM3"
    assert trainer.model_cfg.mask_scale == 1.3  # the file's architecture, fine-tuned at the asked mask
    for a, b in zip(source.G_ema.state_dict().values(), trainer.G_ema.state_dict().values()):
        assert torch.allclose(a.half().float(), b)
    # once the run has its own checkpoint, it resumes that, not the file
    again = train([shards], run, minutes=0, max_kimg=1e9, cfg=TrainConfig(batch=4), model_cfg=TINY,
                  device=torch.device("cpu"), init_generator=tmp_path / "missing.safetensors")
    assert again.images_shown == 5000


def test_the_discriminator_loss_is_2_ln_2_for_a_discriminator_that_cannot_tell():
    from engines.generator.train import discriminator_loss

    blind = discriminator_loss(torch.zeros(8), torch.zeros(8))
    assert abs(float(blind) - 2 * np.log(2)) < 1e-6
    assert discriminator_loss(torch.full((8,), 3.0), torch.full((8,), -3.0)) < 0.2 < blind
    assert discriminator_loss(torch.full((8,), -3.0), torch.full((8,), 3.0)) > blind  # fooled both ways round
