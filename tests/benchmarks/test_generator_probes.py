"""The generator probe's keypoint template fit (the rest runs the real evaluation, minutes on a CPU)."""

from __future__ import annotations

import numpy as np

from benchmarks.generator_probes import TEMPLATE, similarity_fit


def test_the_template_fit_keeps_position_scale_and_roll_and_nothing_else():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = 40 * TEMPLATE @ rotation.T + [30, 50]  # the template moved, scaled and rolled: fitted exactly
    assert np.allclose(similarity_fit(TEMPLATE, face), face)
    wide_eyes = face.copy()
    wide_eyes[0] -= 5 * rotation[:, 0]  # a person's own proportions: eyes further apart
    wide_eyes[1] += 5 * rotation[:, 0]
    fitted = similarity_fit(TEMPLATE, wide_eyes)
    assert np.allclose(fitted.mean(0), wide_eyes.mean(0))  # same place
    eyes = lambda k: np.linalg.norm(k[1] - k[0]) / np.linalg.norm(k[4] - k[3])  # noqa: E731
    assert abs(eyes(fitted) - eyes(TEMPLATE)) < 1e-9 < abs(eyes(wide_eyes) - eyes(TEMPLATE))
