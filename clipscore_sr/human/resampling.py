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

Intervals: ``estimate -/+ t_df se`` (:meth:`Design.interval`). ``se`` is the resamples' standard deviation,
made unbiased: a bootstrap over ``n`` units has ``(n-1)/n`` of the variance (one factor: times ``sqrt(n/(n-1))``;
two factors: :func:`pigeonhole_correction`, which also removes the pigeonhole's surplus). ``df`` is ``n - 1`` of
the one factor resampled (effective units), or with both Satterthwaite's from the scene, annotator and noise
parts of the variance (``rank``; ``agreement`` and alpha, far from linear, keep the fewer units' df): with
2-5 units of a factor whose effects dominate, ``t_df`` is what keeps coverage near nominal (percentile
intervals cannot reach past the most extreme resample, and with 3 x 3 units they covered 87-90%), and where vote
noise dominates ``df`` is large and nothing is widened for nothing. p-values use the same ``se`` and ``df``
(:meth:`Design.p_value`), so a p-value below ``1 - confidence`` is exactly an interval that excludes 0 (a
percentile p-value cannot fall below ``2/(B+1)``, which the small-sample expansion then pushed above 0.05).
``rank`` resamples a one-step linearisation of the fit (:func:`~.fits.one_step_scores`), so the bootstrap's
variance parts add up as this assumes; Kendall's tau, whose interval must end on values tau can take, keeps
expanded percentiles (:func:`expanded_level`; Hesterberg 2015, Am. Stat. 69(4)).

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
    df_parts: float | None = None  # two-way: Satterthwaite df from the variance parts (pigeonhole_correction)
    eff_scenes: float | None = None  # effective numbers of units, (sum of votes)^2 / sum of votes^2 (None: n)
    eff_annotators: float | None = None

    @property
    def label(self) -> str:
        parts = [f"{self.scene_word}s"] * self.scenes + ["annotators"] * self.annotators
        return " x ".join(parts) if parts else "none"

    @property
    def df(self) -> float:
        """Degrees of freedom of ``t``: :attr:`unit_df` of the one factor resampled; with both, the Satterthwaite df
        of the variance parts (:func:`pigeonhole_correction`) where set (``rank``), else the smaller of
        :attr:`unit_df` (``agreement`` and alpha, whose parts are not estimated well enough to do better)."""
        if self.scenes and self.annotators:
            return self.df_parts if self.df_parts is not None else min(self.unit_df)
        return self.unit_df[0] if self.scenes else self.unit_df[1]

    @property
    def unit_df(self) -> tuple[float, float]:
        """``(scenes, annotators)``: ``n_eff - 1`` (at least 1) of each factor, ``n_eff`` the effective number of
        units, ``(sum of votes)^2 / sum of votes^2``: 10 annotators of whom one gave 80% of the votes count as
        1.5, as their spread is mostly one person's."""
        es = self.eff_scenes if self.eff_scenes is not None else self.n_scenes
        ea = self.eff_annotators if self.eff_annotators is not None else self.n_annotators
        return max(es - 1.0, 1.0), max(ea - 1.0, 1.0)

    def level(self, confidence: float) -> float:
        """The percentile level that gives ``confidence`` coverage for this design (:func:`expanded_level`; for
        statistics whose interval must end on values they can take, e.g. Kendall's tau)."""
        return expanded_level(confidence, self.df)

    @property
    def se_factor(self) -> float:
        """What the resamples' sd is multiplied by to estimate the standard error: ``sqrt(n / (n - 1))`` of the
        one factor resampled (a bootstrap over ``n`` units has ``(n-1)/n`` of the variance); 1 with both, whose
        resamples :func:`pigeonhole_correction` already scaled."""
        if self.scenes and self.annotators or not self.any:
            return 1.0
        n = self.n_scenes if self.scenes else self.n_annotators
        return math.sqrt(n / (n - 1))

    def interval(self, estimate: np.ndarray, samples: np.ndarray, confidence: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``estimate -/+ t_df((1 + confidence) / 2) * se`` (:func:`t_interval`) with ``se`` the resamples' sd
        (axis 0) times :attr:`se_factor`; NaN where every resample gave the same value (no interval, which is not
        certainty)."""
        se = self.standard_error(samples)
        return t_interval(estimate, np.where(se > 1e-12, se, np.nan), self.df, confidence)

    def standard_error(self, samples: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanstd(np.asarray(samples, np.float64), axis=0) * self.se_factor

    def p_value(self, estimate: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """Two-sided p-value of ``H0: 0`` with the interval's ``se`` and ``df``: below ``1 - confidence`` exactly
        when :meth:`interval` excludes 0."""
        return t_p_value(estimate, self.standard_error(samples), self.df)

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
                          n_annotators: int, unit_df: tuple[float, float] | None = None) -> tuple[float, float]:
    """``(scale, df)``: the factor that turns the pigeonhole bootstrap's deviations into the estimate's standard
    error, and the degrees of freedom of that variance.

    With scene effects (variance part ``S_s``), annotator effects (``S_a``) and cell/vote noise (``E``) the
    estimate's variance is ``V = S_s + S_a + E``. With ``x = 1/n_scenes``, ``y = 1/n_annotators`` and a statistic
    close to linear in the votes (``rank``: :func:`~.fits.one_step_scores`), a scene-only bootstrap has variance
    ``(1-x)(S_s + E)``, an annotator-only one ``(1-y)(S_a + E)``, and the two-way one adds ``(1-x)(1-y) E`` to their
    sum (each vote's weight is a product of two multiplicities; Owen 2007, sec. 3, for ``x, y -> 0``: ``S_s + S_a +
    3E``). So ``E = (v_two_way - v_scenes - v_annotators) / ((1-x)(1-y))`` and ``V = v_scenes/(1-x) +
    v_annotators/(1-y) - E``, kept between the larger and the sum of the two one-factor terms (``E >= 0``,
    ``S >= 0``); ``scale = sqrt(V / v_two_way)``. ``df`` is Satterthwaite's for ``V`` from parts with ``unit_df``
    (default ``n_scenes - 1``, ``n_annotators - 1``; :attr:`Design.unit_df` counts effective units) and their
    product df: near the fewer units' df where their effects dominate, large where vote noise does. The one-factor
    variances come from bootstraps a quarter as large."""
    ns, na = max(n_scenes, 2), max(n_annotators, 2)
    x, y = 1.0 / ns, 1.0 / na
    vs, va = max(v_scenes, 0.0) / (1 - x), max(v_annotators, 0.0) / (1 - y)
    ds, da = unit_df if unit_df is not None else (ns - 1.0, na - 1.0)
    floor = float(min(ds, da))
    if not v_two_way > 0 or not vs + va > 0:
        return 1.0, floor
    e = max(v_two_way - v_scenes - v_annotators, 0.0) / ((1 - x) * (1 - y))
    total = min(max(vs + va - e, vs, va), vs + va)
    e = vs + va - total
    s_s, s_a = max(vs - e, 0.0), max(va - e, 0.0)
    denom = s_s ** 2 / ds + s_a ** 2 / da + e ** 2 / (ds * da)
    df = total ** 2 / denom if denom > 0 else floor
    return math.sqrt(total / v_two_way), float(max(df, floor))


def effective_units(counts: np.ndarray) -> float:
    """``(sum counts)^2 / sum counts^2``: how many equally weighted units the weights ``counts`` are worth."""
    c = np.asarray(counts, np.float64)
    return float(c.sum() ** 2 / (c ** 2).sum()) if c.size and (c ** 2).sum() > 0 else 0.0


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


def t_interval(estimate: np.ndarray, se: np.ndarray, df: float, confidence: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """``estimate -/+ t_df((1 + confidence)/2) se`` (normal quantile for ``df <= 0`` or infinite); NaN where
    ``se`` is NaN."""
    from scipy.stats import norm, t

    q = float(t.ppf(0.5 + confidence / 2, df)) if 0 < df < np.inf else float(norm.ppf(0.5 + confidence / 2))
    est, se = np.asarray(estimate, np.float64), np.asarray(se, np.float64)
    return est - q * se, est + q * se


def t_p_value(estimate: np.ndarray, se: np.ndarray, df: float) -> np.ndarray:
    """Two-sided ``2 t_df.sf(|estimate| / se)`` (1 where both are 0; NaN where ``se`` is NaN)."""
    from scipy.stats import norm, t

    est, se = np.asarray(estimate, np.float64), np.asarray(se, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(est) / np.where(se > 0, se, 1.0), np.where(est == 0, 0.0, np.inf))
    sf = t.sf(z, df) if 0 < df < np.inf else norm.sf(z)
    return np.where(np.isnan(se), np.nan, np.minimum(1.0, 2 * sf))


def expanded_level(confidence: float, df: float) -> float:
    """Hesterberg's expanded percentile level ``2 Phi(sqrt((df+1)/df) t_df^{-1}(1 - alpha/2)) - 1`` for
    ``df >= 1`` (``confidence`` itself for ``df <= 0``, where there is nothing to expand)."""
    from scipy.special import ndtr
    from scipy.stats import t

    if df <= 0:
        return confidence
    z = math.sqrt((df + 1) / df) * t.ppf(0.5 + confidence / 2, df)
    return float(2 * ndtr(z) - 1)


__all__ = ["Design", "bootstrap_indices", "bootstrap_sums", "cell_weights", "design_of",
           "effective_units", "expanded_level", "percentile_ci", "pigeonhole_correction", "resample_counts",
           "stratified_weights", "t_interval", "t_p_value", "unit_weights"]
