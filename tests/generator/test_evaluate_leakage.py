"""The calibrated identity-leakage metric: chance baseline, rank-1 re-identification, size buckets.

Synthetic descriptors whose answers are known; no dlib, no detector, fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.generator.evaluate import (
    DLIB_THRESHOLD,
    SECOND_DRAW,
    different_people,
    evaluate_images,
    false_match_rate,
    markdown_table,
    leakage_metrics,
    size_buckets,
    wilson_interval,
)
from streamer.detections import Detections


def _far_apart(n: int, dim: int = 128, offset: int = 0) -> np.ndarray:
    """``n`` one-hot descriptors (pairwise distance sqrt(2) > 0.6)."""
    out = np.zeros((n, dim), np.float32)
    out[np.arange(n), offset + np.arange(n)] = 1.0
    return out


def _all_different(n: int) -> np.ndarray:
    return different_people(np.arange(n), np.array([f"id{i}" for i in range(n)]))


def test_identical_descriptors_leak_everything_above_chance():
    emb = _far_apart(6)
    r = leakage_metrics(emb, emb.copy(), _all_different(6))
    assert r["leak_faces"] == 6 and r["leaked"] == 6
    assert r["leakage_rate"] == 1.0
    assert r["chance_pairs"] == 30 and r["chance_match_rate"] == 0.0
    assert r["leakage_minus_chance"] == 1.0
    assert r["rank1_rate"] == 1.0
    assert r["rank1_chance"] == pytest.approx(1 / 6)


def test_orthogonal_descriptors_leak_nothing_and_rank1_is_chance():
    originals = _far_apart(5)
    anonymized = _far_apart(5, offset=5)  # orthogonal to every original: all distances sqrt(2)
    r = leakage_metrics(originals, anonymized, _all_different(5))
    assert r["leaked"] == 0 and r["leakage_rate"] == 0.0
    assert r["chance_match_rate"] == 0.0 and r["leakage_minus_chance"] == 0.0
    # every probe ties with its whole gallery: a tie of k shares the hit, so rank-1 equals chance
    assert r["rank1_rate"] == pytest.approx(r["rank1_chance"]) == pytest.approx(1 / 5)
    assert r["mean_d_own"] == pytest.approx(np.sqrt(2), rel=1e-5)


def test_clustered_descriptors_match_everyone_so_leakage_equals_chance():
    """The small-face failure: every chip lands near one point, so anything matches anything."""
    rng = np.random.default_rng(0)
    centre = rng.normal(size=128).astype(np.float32)
    originals = centre + 0.001 * rng.normal(size=(8, 128)).astype(np.float32)
    anonymized = centre + 0.001 * rng.normal(size=(8, 128)).astype(np.float32)
    r = leakage_metrics(originals, anonymized, _all_different(8))
    assert r["leakage_rate"] == 1.0
    assert r["chance_match_rate"] == 1.0
    assert r["leakage_minus_chance"] == 0.0
    assert false_match_rate(originals, _all_different(8))["rate"] == 1.0


def test_chance_and_rank1_skip_pairs_that_may_be_the_same_person():
    """Faces 0 and 1 are one identity in two images: their cross match is neither chance nor a rank-1 rival."""
    originals = _far_apart(3)
    originals[1] = originals[0]  # same person, same descriptor
    anonymized = originals.copy()
    diff = different_people(np.array([0, 1, 2]), np.array(["alice", "alice", "bob"]))
    assert not diff[0, 1] and not diff[1, 0] and diff[0, 2] and diff[2, 1]
    r = leakage_metrics(originals, anonymized, diff)
    assert r["chance_pairs"] == 4 and r["chance_match_rate"] == 0.0
    assert r["rank1_rate"] == 1.0  # faces 0 and 1 are not in each other's gallery
    assert r["rank1_chance"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)
    # if they were (wrongly) counted as different people, the chance rate would rise above 0
    wrong = leakage_metrics(originals, anonymized, _all_different(3))
    assert wrong["chance_match_rate"] == pytest.approx(2 / 6)


def test_different_people_rules():
    # faces 0, 1 in frame 0 of clip a; face 2 in frame 1 of clip a; face 3 in clip b
    diff = different_people(np.array([0, 0, 1, 2]), np.array(["a", "a", "a", "b"]))
    assert not diff.diagonal().any()
    assert diff[0, 1] and diff[1, 0]  # two boxes of one frame: two people
    assert not diff[0, 2] and not diff[1, 2]  # other frame of the same clip: maybe the same person
    assert diff[3, :3].all() and diff[:3, 3].all()  # another clip


def test_empty_set_has_no_rates():
    r = leakage_metrics(np.zeros((0, 128)), np.zeros((0, 128)), np.zeros((0, 0), bool))
    assert r["leak_faces"] == 0 and r["leakage_rate"] is None and r["chance_match_rate"] is None


def test_wilson_interval_and_leakage_ci():
    lo, hi = wilson_interval(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.037, abs=0.001)  # 0 of 100 still allows ~3.7 %
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    assert wilson_interval(0, 0) is None
    r = leakage_metrics(_far_apart(6), _far_apart(6), _all_different(6))
    ci = r["leakage_minus_chance_ci95"]
    assert ci[0] < r["leakage_minus_chance"] == 1.0
    assert ci[1] == pytest.approx(1.0)


def test_size_buckets():
    assert [b[0] for b in size_buckets([40, 80])] == ["<40", "40-80", ">=80"]
    assert size_buckets([40, 80])[1][1:] == (40, 80)


class _Recognizer:
    """Descriptor = the box's mean colour at ten times scale (distinct colours: far apart)."""

    def embed(self, image, box):
        x1, y1, x2, y2 = (int(v) for v in box)
        out = np.zeros(128, np.float32)
        out[:3] = image[y1:y2, x1:x2].reshape(-1, 3).mean(0) / 25.5
        return out

    def detect(self, image):
        return np.array([[0, 0, 100, 100]], np.float32)  # dlib "finds" only the big face


def _detector(images):
    return [Detections(xyxy=np.array([[0, 0, 100, 100], [120, 0, 140, 20]], np.float32), scores=np.ones(2))
            for _ in images]


def _images():
    for k in range(3):
        image = np.zeros((150, 150, 3), np.uint8)
        image[0:100, 0:100] = (40 + 60 * k, 10, 10)
        image[0:20, 120:140] = (10, 40 + 60 * k, 10)
        yield image, f"img{k}"


def _keep(image, found):
    return {"keep": len(found)}


def _black(image, found):
    for x1, y1, x2, y2 in found.xyxy.astype(int):
        image[y1:y2, x1:x2] = 0
    return {"black": len(found)}


def test_evaluate_images_separates_sizes_and_keeps_faces_aligned():
    res = evaluate_images(_images(), _detector, {"keep": _keep, "black": _black}, _Recognizer(),
                          min_leak_size=32, buckets=[40, 80])
    assert res["images"] == 3
    keep, black = res["keep"], res["black"]
    assert keep["faces"] == 6 and keep["redetected"] == 6  # the fake detector always finds them
    # headline: only the three 100 px faces; leakage 100 % with no chance matches when nothing changes
    assert keep["leak_faces"] == 3 and keep["leakage_rate"] == 1.0 and keep["chance_match_rate"] == 0.0
    assert keep["rank1_rate"] == 1.0
    # blacked-out faces all get the zero descriptor, which no original is within 0.6 of
    assert black["leakage_rate"] == 0.0 and black["chance_match_rate"] == 0.0
    # the 20 px faces are reported separately, not dropped
    assert keep["leakage_by_size"]["<32"]["leak_faces"] == 3
    assert keep["leakage_by_size"]["<40"]["leak_faces"] == 3
    assert keep["leakage_by_size"]["40-80"]["leak_faces"] == 0
    assert res["by_size"][">=80"] == {"faces": 3, "original_false_match_rate": 0.0, "original_pairs": 6,
                                      "dlib_detector_found": 3}
    assert res["by_size"]["<40"]["dlib_detector_found"] == 0


def test_threshold_is_dlibs_standard():
    assert DLIB_THRESHOLD == 0.6


class _KeepBigBlackSmall:
    """Like the pipeline's Compositor in gan mode: big faces to the main anonymizer (kept here),
    faces under 30 px to the fallback (blacked out)."""

    def assign(self, found):
        small = np.minimum(found.widths, found.heights) < 30
        return np.flatnonzero(~small), np.flatnonzero(small)

    def __call__(self, image, found):
        main, fallback = self.assign(found)
        _black(image, found[fallback])
        return {"gan": len(main), "black": len(fallback)}


def _finds_non_black(images):
    """Finds each of the two faces where its box is not black."""
    boxes = np.array([[0, 0, 100, 100], [120, 0, 140, 20]], np.float32)
    out = []
    for im in images:
        seen = np.array([im[y1:y2, x1:x2].any() for x1, y1, x2, y2 in boxes.astype(int)])
        out.append(Detections(xyxy=boxes[seen], scores=np.ones(int(seen.sum()))))
    return out


def test_redetection_is_split_between_generated_and_fallback_faces():
    res = evaluate_images(_images(), _finds_non_black, {"gan": _KeepBigBlackSmall()}, None)
    gan = res["gan"]
    assert (gan["faces"], gan["redetected"], gan["fallback_faces"], gan["fallback_redetected"]) == (6, 3, 3, 0)
    assert gan["main_redetection_rate"] == 1.0 and gan["fallback_redetection_rate"] == 0.0
    assert "50.0% (gan 100.0% of 3, fallback 0.0% of 3)" in markdown_table({"sets": {"s": res}, "modes": ["gan"]})


class _PaintsByTrack:
    """A GAN stand-in: paints each face a grey set by its track id (``ignore_latent``: the same for all),
    and, like the GAN's compositor, has an anonymizer that draws latents."""

    def __init__(self, ignore_latent: bool) -> None:
        self.ignore_latent = ignore_latent
        self.anonymizer = type("Gan", (), {"latents": None})()

    def __call__(self, image, found):
        for (x1, y1, x2, y2), track in zip(found.xyxy.astype(int), found.track_ids):
            image[y1:y2, x1:x2] = 100 if self.ignore_latent or track < SECOND_DRAW else 200
        return {"gan": len(found)}


def test_two_latents_say_whether_the_generator_uses_its_latent():
    res = evaluate_images(_images(), _detector, {"uses": _PaintsByTrack(False), "ignores": _PaintsByTrack(True),
                                                 "keep": _keep}, _Recognizer(), min_leak_size=32)
    # grey 100 vs 200 at the recognizer's scale: |(100 - 200) / 25.5| * sqrt(3) = 6.8 apart, never "the same person"
    assert res["uses"]["latent_d"] == pytest.approx(100 / 25.5 * np.sqrt(3), rel=1e-5)
    assert res["uses"]["latent_same_share"] == 0.0
    assert res["ignores"]["latent_d"] == 0.0 and res["ignores"]["latent_same_share"] == 1.0
    assert "latent_d" not in res["keep"]  # no latents, no second pass
    table = markdown_table({"sets": {"s": res}, "modes": ["uses", "ignores", "keep"]})
    assert "s, ignores: the same faces generated with a second latent are d = 0.000 from the first" in table
    skipped = evaluate_images(_images(), _detector, {"uses": _PaintsByTrack(False)}, _Recognizer(),
                              min_leak_size=32, latent_pairs=False)
    assert "latent_d" not in skipped["uses"]
