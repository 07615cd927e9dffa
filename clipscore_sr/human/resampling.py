"""The bootstrap machinery every human statistic uses: scenes x annotators, percentile intervals, p-values.

Why two factors
---------------
Votes on one scene are correlated (the scene favours some methods), and so are the votes of one annotator
(their taste). A bootstrap that resamples only scenes treats a study with 1,000 votes of 3 annotators as if
those 3 people were everybody; one that resamples only votes treats 1,000 votes on one scene as 1,000 scenes.
Both give intervals that are too narrow.

The two-way ("pigeonhole") bootstrap
------------------------------------
Scenes and annotators are resampled independently with replacement; the votes of a (scene, annotator) cell
count with weight ``r_scene * r_annotator``, the product of how often each was drawn (Owen 2007, "The
pigeonhole bootstrap", Ann. Appl. Stat. 1(2): its variance is close to, and slightly above, the variance of a
mean over a crossed random-effects design). Scenes are resampled within each dataset (datasets are fixed strata).
Rules that say which factors are resampled (:func:`design_of`):

* a factor with two or more units present is resampled; a factor with one unit is held fixed (the interval is
  then about that scene, or that annotator, which the output says);
* with one scene and one annotator nothing can be resampled: no interval (never a point passed off as one).

Few units: the percentile interval of a bootstrap over ``n`` units is too narrow (the resampled spread is
``(n-1)/n`` of the unbiased one, and the tails are t- rather than normal-shaped). Intervals are therefore
*expanded percentile* intervals (Hesterberg 2015, "What teachers should know about the bootstrap", Am. Stat.
69(4)): the percentiles taken are those of level ``2 Phi(sqrt(n/(n-1)) t_{df}^{-1}(1 - alpha/2)) - 1`` with
``df = n - 1`` of the one factor resampled, or ``min(scenes, annotators) - 1`` with both (:attr:`Design.df`,
:func:`expanded_level`); p-values are mapped
the same way, so a p-value below ``1 - confidence`` is exactly an interval that excludes 0. With hundreds of units
this changes nothing visible; with 5 scenes x 5 annotators it is what brings coverage to nominal.

Everything is multiplicity weights: a resample is a ``[B, n_units]`` matrix of counts, and a statistic that is a
sum over cells is ``weights @ per-cell sums`` (sparse), so thousands of resamples stay vectorised.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

_CHUNK = 256  # bootstrap resamples turned into count matrices at a time (memory: _CHUNK x n float64)


# --------------------------------------------------------------------------------------------------
# Index and count matrices

def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resample ``n`` items with replacement ``n_boot`` times: an index matrix ``[n_boot, n]`` (int64)."""
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int64)


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each item appears in each resample: ``[n_boot, n]`` float64 from an index matrix."""
    n_boot = idx.shape[0]
    flat = (idx + (np.arange(n_boot, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_sums(values: np.ndarray, idx: np.ndarray, chunk: int = _CHUNK) -> np.ndarray:
    """Sum of ``values`` ``[n, k]`` over each resample ``idx`` ``[n_boot, n]`` -> ``[n_boot, k]``.

    Computed as (resample count matrix) @ values, ``chunk`` resamples at a time; NaN values must have
    been replaced by the caller.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    out = np.empty((idx.shape[0], values.shape[1]), dtype=np.float64)
    for start in range(0, idx.shape[0], chunk):
        counts = resample_counts(idx[start:start + chunk], n)
        out[start:start + chunk] = counts @ values
    return out


def unit_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n]`` multiplicities of ``n`` units resampled with replacement (each row sums to ``n``)."""
    return resample_counts(bootstrap_indices(n, n_boot, rng), n)


def stratified_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n_units]`` multiplicities: units resampled with replacement within each stratum (strata in
    sorted order, one draw of ``n_boot`` resamples each)."""
    strata = np.asarray(strata)
    out = np.zeros((n_boot, len(strata)))
    for d in np.unique(strata):
        cols = np.flatnonzero(strata == d)
        out[:, cols] = unit_weights(len(cols), n_boot, rng)
    return out


# --------------------------------------------------------------------------------------------------
# Which factors a design lets us resample

@dataclass(frozen=True)
class Design:
    """What a bootstrap resamples for one table row/group: counts of scenes and annotators present and
    whether each is resampled. ``label`` (``scenes x annotators``, ``scenes``, ``annotators``, ``none``) goes
    into the ``resampled`` column of every output; ``note`` explains a missing or conditional interval."""

    n_scenes: int
    n_annotators: int
    scenes: bool
    annotators: bool
    scene_word: str = "scene"
    scale: float = 1.0  # deviations of the two-way resamples were scaled by this (pigeonhole_correction)

    @property
    def label(self) -> str:
        parts = [f"{self.scene_word}s"] * self.scenes + ["annotators"] * self.annotators
        return " x ".join(parts) if parts else "none"

    @property
    def df(self) -> int:
        """Degrees of freedom of the expansion: ``n - 1`` of the one factor resampled; with both,
        ``min(n_scenes, n_annotators) - 1`` (the Welch-Satterthwaite df of a sum of the two variance parts is at
        least that: the conservative end, as estimating the parts from few units is too noisy to do better)."""
        if self.scenes and self.annotators:
            return min(self.n_scenes, self.n_annotators) - 1
        return (self.n_scenes - 1) * self.scenes + (self.n_annotators - 1) * self.annotators

    def level(self, confidence: float) -> float:
        """The percentile level that gives ``confidence`` coverage for this design (:func:`expanded_level`)."""
        return expanded_level(confidence, self.df)

    def p_value(self, diffs: np.ndarray) -> np.ndarray:
        """Two-sided bootstrap p-value, expanded like the intervals (:func:`expand_p_value`)."""
        return expand_p_value(bootstrap_p_value(diffs), self.df)

    @property
    def any(self) -> bool:
        return self.scenes or self.annotators

    def describe(self) -> str:
        """``bootstrap over 12 scenes x 8 annotators`` (or why there is none)."""
        if not self.any:
            return self.note
        parts = []
        if self.scenes:
            parts.append(f"{self.n_scenes} {self.scene_word}s")
        if self.annotators:
            parts.append(f"{self.n_annotators} annotators")
        return "bootstrap over " + " x ".join(parts)

    @property
    def note(self) -> str:
        w = self.scene_word
        if not self.any:
            who = "annotators unknown" if self.n_annotators == 0 else f"{self.n_annotators} annotator"
            return (f"no interval: {self.n_scenes} {w} and {who}: nothing to resample "
                    f"(an interval needs two or more {w}s or annotators)")
        if not self.scenes:
            if self.n_scenes > 1:
                return (f"interval over annotators only: each dataset has one {w} (datasets are fixed strata), "
                        f"so it says nothing about other {w}s")
            return (f"interval over annotators only: one {w}, so it says nothing about other {w}s")
        if not self.annotators:
            return (f"interval over {w}s only: {'one annotator' if self.n_annotators == 1 else 'annotators unknown'}"
                    f", so it says nothing about other people")
        return ""


def design_of(scene_strata: np.ndarray, n_annotators: int, *, scene_word: str = "scene") -> Design:
    """The :class:`Design` of a group: ``scene_strata`` holds the stratum (dataset) of each scene present.
    Scenes are resampled when some stratum has two or more scenes; annotators when two or more are present."""
    strata = np.asarray(scene_strata)
    _, sizes = np.unique(strata, return_counts=True) if len(strata) else (None, np.zeros(0, np.int64))
    return Design(n_scenes=int(len(strata)), n_annotators=int(n_annotators),
                  scenes=bool(len(sizes) and sizes.max() >= 2), annotators=bool(n_annotators >= 2), scene_word=scene_word)


def pigeonhole_correction(v_two_way: float, v_scenes: float, v_annotators: float, n_scenes: int,
                          n_annotators: int) -> float:
    """The factor that removes the pigeonhole bootstrap's surplus variance from its deviations.

    With scene effects (variance part ``S_s``), annotator effects (``S_a``) and vote/cell noise (``E``), a
    scene-only bootstrap has variance about ``S_s + E``, an annotator-only one ``S_a + E``, and the two-way one
    ``S_s + S_a + 3E`` while the estimate's variance is ``S_s + S_a + E`` (Owen 2007, sec. 3). So
    ``E ~ v_two_way - v_scenes - v_annotators`` (clipped at 0), and the two-way deviations from the estimate are
    scaled by ``sqrt((v_scenes + v_annotators - E) / v_two_way)`` (kept in [sqrt(1/2), 1]: never widened, never
    more than halved in variance). The one-factor variances come from bootstraps a quarter as large."""
    if not v_two_way > 0:
        return 1.0
    e = max(v_two_way - v_scenes - v_annotators, 0.0)
    return math.sqrt(min(max((v_scenes + v_annotators - e) / v_two_way, 0.5), 1.0))


def cell_weights(scene_w: np.ndarray | None, annot_w: np.ndarray | None, cell_scene: np.ndarray,
                 cell_annot: np.ndarray) -> np.ndarray:
    """``[B, n_cells]`` pigeonhole weights of (scene, annotator) cells: ``scene_w[:, scene] *
    annot_w[:, annotator]``; a factor given as None is not resampled (weight 1)."""
    if scene_w is None and annot_w is None:
        raise ValueError("nothing to resample")
    out = scene_w[:, cell_scene] if scene_w is not None else None
    if annot_w is not None:
        a = annot_w[:, cell_annot]
        out = a if out is None else out * a
    return out


# --------------------------------------------------------------------------------------------------
# Intervals and p-values

def percentile_ci(samples: np.ndarray, confidence: float = 0.95, *, discrete: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (NaN samples ignored): ``(low, high)`` at ``confidence``. ``discrete``:
    bounds are resampled values (no interpolation; for statistics with few possible values, e.g. Kendall's tau)."""
    alpha = 1.0 - confidence
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanpercentile(samples, 100 * alpha / 2, axis=0, method="lower" if discrete else "linear")
        hi = np.nanpercentile(samples, 100 * (1 - alpha / 2), axis=0, method="higher" if discrete else "linear")
    return lo, hi


def expanded_level(confidence: float, df: float) -> float:
    """Hesterberg's expanded percentile level ``2 Phi(sqrt((df+1)/df) t_df^{-1}(1 - alpha/2)) - 1`` for
    ``df >= 1`` (``confidence`` itself for ``df <= 0``, where there is nothing to expand)."""
    from scipy.special import ndtr
    from scipy.stats import t

    if df <= 0:
        return confidence
    z = math.sqrt((df + 1) / df) * t.ppf(0.5 + confidence / 2, df)
    return float(2 * ndtr(z) - 1)


def expand_p_value(p: np.ndarray, df: float) -> np.ndarray:
    """Map a two-sided percentile-bootstrap p-value onto the expanded scale (the inverse of
    :func:`expanded_level`): ``z = Phi^{-1}(1 - p/2)``, ``p' = 2 t_df.sf(z / sqrt((df+1)/df))``."""
    from scipy.special import ndtri
    from scipy.stats import t

    p = np.asarray(p, np.float64)
    if df <= 0:
        return p
    z = ndtri(1 - np.clip(p, 0, 1) / 2)
    return np.minimum(1.0, 2 * t.sf(z / math.sqrt((df + 1) / df), df))


def bootstrap_p_value(diffs: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of ``H0: difference = 0`` from resampled differences (axis 0).

    ``min(1, 2 * min((1 + #{d <= 0}) / (B + 1), (1 + #{d >= 0}) / (B + 1)))``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    b = d.shape[0]
    le = (1.0 + (d <= 0).sum(axis=0)) / (b + 1.0)
    ge = (1.0 + (d >= 0).sum(axis=0)) / (b + 1.0)
    return np.minimum(1.0, 2.0 * np.minimum(le, ge))


__all__ = ["Design", "bootstrap_indices", "bootstrap_p_value", "bootstrap_sums", "cell_weights", "design_of",
           "expand_p_value", "expanded_level", "percentile_ci", "pigeonhole_correction", "resample_counts", "stratified_weights", "unit_weights"]
