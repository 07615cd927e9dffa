"""Our batched LR-consistency and correctness metrics against opensr-test's own ``Metrics`` (Aybar et al.'s
code), one triplet at a time, configured as in tests/opensr_support.py. Skipped when opensr-test is not
installed (``.ci/run`` installs it).

Tolerances: lr-l1 1e-12 (same arithmetic); lr-sam 1e-9 degrees (opensr-test takes ``acos`` of the cosine,
we ``atan2``); lr-shift 1e-6 LR px (satalign stores the warp in float32); the three fractions 1e-7
(opensr-test divides in float32; one location differing is >= 1/2304 here, so the classes are the same).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .opensr_support import KEYS, make_triplets, opensr_metrics, opensr_values, our_values

pytest.importorskip("opensr_test")

TOLERANCES = {"lr-l1": 1e-12, "lr-sam": 1e-9, "lr-shift": 1e-6, "improvement": 1e-7, "omission": 1e-7,
              "hallucination": 1e-7}


def _compare(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, columns: tuple[str, ...]) -> None:
    t_lr, t_sr, t_hr = (torch.from_numpy(x) for x in (lr, sr, hr))
    ours = our_values(t_lr, t_sr, t_hr, levels=255).numpy()
    metrics = opensr_metrics()
    theirs = np.array([opensr_values(metrics, t_lr[k], t_sr[k], t_hr[k]) for k in range(len(lr))])
    names = [ours_name for _, ours_name in KEYS]
    for col in columns:
        j = names.index(col)
        assert np.isfinite(ours[:, j]).all(), col
        np.testing.assert_allclose(ours[:, j], theirs[:, j], rtol=0, atol=TOLERANCES[col], err_msg=col)


@pytest.mark.parametrize("size,scale", [(64, 4), (48, 2)])
def test_rgb_triplets_match_opensr_test(size, scale):
    lr, sr, hr = make_triplets(6, size, scale, seed=size)
    _compare(lr, sr, hr, tuple(c for _, c in KEYS))


def test_multiband_triplets_match_opensr_test():
    """4 bands: all metrics but the shift, which opensr-test takes from the first three (RGB) bands only."""
    lr, sr, hr = make_triplets(4, 64, 4, bands=4, seed=3)
    _compare(lr, sr, hr, ("lr-l1", "lr-sam", "improvement", "omission", "hallucination"))


def test_fractions_are_not_trivial():
    """Guard: the compared triplets exercise all three classes (a test of agreement on empty maps proves nothing)."""
    lr, sr, hr = make_triplets(6, 64, 4, seed=64)
    f = our_values(*(torch.from_numpy(x) for x in (lr, sr, hr)), levels=255)[:, 3:]
    assert bool((f > 0.01).all()), f
