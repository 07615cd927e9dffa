"""opensr-test (Aybar et al., IEEE GRSL 2024; ``pip install opensr-test``) as an independent reference for the
LR-consistency and correctness metrics, shared by tests/test_opensr_reference.py and
benchmarks/bench_consistency.py. (This module has no tests of its own.)

``opensr_test.Metrics`` is configured as close to our definitions as its options go, and our side gets the two
settings where its code is not the paper (see ``OUR_SETTINGS``):

* no 16-pixel border crop (``border_mask=0``), no spatial harmonisation (``harm_apply_spatial=False``; ours:
  ``register=False``), per-pixel L1 distances (``correctness_distance="l1"``, ``agg_method="pixel"``),
  classes counted (``correctness_norm="percent"``; argmax of the softmin = argmin of the scores) with the
  paper's gammas 0.8/0.8/0.4 (its ``Config`` defaults are 0.05);
* its mask keeps a location where any of d_ref, d_im, d_om exceeds the q75 of d_ref: ours ``mask_rule="any"``;
* its spatial error is satalign's ``PCC`` (skimage phase correlation of the RGB band means, ``upsample_factor``
  50, warp stored in float32): ours ``lr-shift`` magnitude with ``upsample_factor=50`` on 3-band data.

Value correspondence (opensr-test key -> our column): reflectance -> lr-l1, spectral (``sad``, degrees, acos) ->
lr-sam, spatial -> lr-shift, im/om/ha_metric -> the three correctness fractions.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy import ndimage

#: our settings that reproduce opensr-test's code paths (everything else is our default)
OUR_SETTINGS = {"mask_rule": "any", "upsample_factor": 50}
#: (opensr-test result key, our column) in the order :func:`opensr_values` returns them
KEYS = (("reflectance", "lr-l1"), ("spectral", "lr-sam"), ("spatial", "lr-shift"),
        ("im_metric", "improvement"), ("om_metric", "omission"), ("ha_metric", "hallucination"))


def opensr_metrics() -> Any:
    """An ``opensr_test.Metrics`` on the CPU with the options above (imports opensr-test: skip if absent)."""
    import opensr_test

    config = opensr_test.Config(device="cpu", border_mask=0, harm_apply_spatial=False, agg_method="pixel",
                                correctness_distance="l1", correctness_norm="percent",
                                im_score=0.8, om_score=0.8, ha_score=0.4)
    return opensr_test.Metrics(config)


def opensr_values(metrics: Any, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> list[float]:
    """One triplet ``[C,h,w], [C,H,W], [C,H,W]`` through opensr-test's ``correctness`` and ``consistency`` (what
    ``Metrics.compute`` runs, less its synthesis distance) -> the values in ``KEYS`` order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metrics.correctness(lr, sr, hr, gradient_threshold="auto")
        out.update(metrics.consistency(lr, sr))
    return [float(out[key]) for key, _ in KEYS]


def our_values(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """Our batched side for ``[B,C,h,w], [B,C,H,W], [B,C,H,W]`` with ``OUR_SETTINGS`` -> ``[B,6]`` in ``KEYS``
    order (``levels``: the files' quantisation, for the counting histogram match)."""
    from clipscore_sr.metrics.consistency import lr_consistency
    from clipscore_sr.metrics.correctness import correctness

    lrc = lr_consistency(sr, lr, upsample_factor=OUR_SETTINGS["upsample_factor"])
    fractions = correctness(sr, hr, lr, mask_rule=OUR_SETTINGS["mask_rule"], levels=levels).fractions
    return torch.cat((lrc[:, [0, 2, 3]], fractions), dim=1)


def make_triplets(n: int, size: int, scale: int, bands: int = 3, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` 8-bit (LR, SR, HR) triplets ``[n,C,size/scale,..], [n,C,size,size] x2`` in float64, values ``k/255``
    as the pipeline decodes PNGs (float32 ``k/255`` widened): HR smooth noise, LR its block mean, SR the HR
    blurred by one of three widths, moved by up to 2 px, with invented detail (noise) and a colour offset."""
    rng = np.random.default_rng(seed)
    hr = ndimage.gaussian_filter(rng.random((n, bands, size, size)), (0, 0, 1.5, 1.5))
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    lr = hr.reshape(n, bands, size // scale, scale, size // scale, scale).mean(axis=(3, 5))
    sr = np.empty_like(hr)
    for k in range(n):
        blurred = ndimage.gaussian_filter(hr[k], (0, 0.5 + k % 3 * 0.5, 0.5 + k % 3 * 0.5))
        moved = np.roll(blurred, (k % 5 - 2, k % 3 - 1), axis=(1, 2))
        sr[k] = np.clip(moved + 0.05 * rng.normal(size=moved.shape) + 0.02 * (k % 4), 0, 1)
    return tuple((np.round(x * 255) / 255).astype(np.float32).astype(np.float64) for x in (lr, sr, hr))
