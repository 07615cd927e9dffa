"""How reliable the annotators are: Krippendorff's alpha, leave-one-out majority agreement, sentinels, repeats.

Conventions
-----------
* A *unit* is one comparison: (dataset, gt, the unordered pair of image files). Its value in a vote is which
  of the two files (in sorted order) was chosen, ``first``/``second``, or ``tie``: a vote on ``a, b`` and one
  on ``b, a`` are compared correctly, and the three categories are the same in every unit.
* ``alpha``: Krippendorff's alpha, nominal level, over the ``real`` trials of units judged by at least two
  annotators (one value per annotator and unit: the first); 1 = perfect agreement, 0 = chance, NaN when
  every value is the same.
* ``loo_agreement`` of an annotator: over their real votes on units with other votes, the fraction that
  equal the majority of the *other* annotators' votes (units where the others are evenly split are skipped).
* ``sentinel_accuracy``: over ``trial_kind == 'sentinel'`` rows, the fraction choosing the GT copy: the side
  whose method is ``gt`` (the study's convention), or the side named by an ``expected`` column if present.
* ``repeat_consistency``: over ``trial_kind == 'repeat'`` rows, the fraction with the same value (same image
  file chosen, or tie) as the annotator's own real vote on that unit.
Without ``annotator``/``trial_kind`` columns the measures that need them are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

SENTINEL_GT = "gt"  # a_method/b_method of the GT copy in a sentinel trial (the study's convention)
ANNOTATOR_COLUMNS: tuple[str, ...] = (
    "annotator", "n_votes", "n_real", "loo_agreement", "n_loo", "sentinel_accuracy", "n_sentinel",
    "repeat_consistency", "n_repeat", "dropped", "reason",
)


def _as_objects(x: Sequence[Any]) -> np.ndarray | pd.Series:
    """``x`` as objects to factorize (a Series or 1-D array without a Python loop over its items)."""
    if isinstance(x, (pd.Series, pd.Index)) or (isinstance(x, np.ndarray) and x.ndim == 1):
        return np.asarray(x, dtype=object)
    return pd.Series(list(x), dtype=object)


def krippendorff_alpha_nominal(units: Sequence[Any], values: Sequence[Any]) -> tuple[float, int]:
    """Krippendorff's alpha (nominal) from one (unit, value) per coder and unit; ``(alpha, n_units)``
    where units with fewer than two values are not pairable and are left out.

    ``alpha = 1 - (n - 1) * sum_u (m_u^2 - sum_c n_uc^2) / (m_u - 1) / (n^2 - sum_c n_c^2)`` with ``n_uc`` the
    count of value c in unit u, ``m_u`` its number of values, ``n_c`` the pairable count of c, ``n = sum n_c``.
    """
    u_codes, _ = pd.factorize(_as_objects(units))
    v_codes, v_names = pd.factorize(_as_objects(values))
    if len(u_codes) == 0:
        return float("nan"), 0
    n_v = len(v_names)
    counts = np.bincount(u_codes * n_v + v_codes, minlength=(u_codes.max() + 1) * n_v).reshape(-1, n_v).astype(float)
    m_u = counts.sum(1)
    pair = m_u >= 2
    c = counts[pair]
    if len(c) == 0:
        return float("nan"), 0
    mu = m_u[pair]
    d_obs = ((mu ** 2 - (c ** 2).sum(1)) / (mu - 1)).sum()
    n_c = c.sum(0)
    n = n_c.sum()
    d_exp = n ** 2 - (n_c ** 2).sum()
    if d_exp == 0:
        return float("nan"), int(len(c))
    return float(1.0 - (n - 1) * d_obs / d_exp), int(len(c))


#: resamples x pairable votes spent on alpha's interval at most (beyond: fewer resamples, never below the minimum)
ALPHA_BOOTSTRAP_BUDGET = 5e7
ALPHA_MIN_BOOTSTRAP = 200


def alpha_bootstrap(units: Sequence[Any], coders: Sequence[Any], values: Sequence[Any], *,
                    scenes: Sequence[Any] | None = None, bootstrap: int = 1000, seed: int = 0,
                    confidence: float = 0.95,
                    max_resample_votes: float = ALPHA_BOOTSTRAP_BUDGET) -> tuple[float, float, str]:
    """Two-way bootstrap interval of nominal Krippendorff's alpha: ``(low, high, resampled)`` (``resampled``: what was
    resampled and how many of each, e.g. ``12 scenes x 8 annotators``; ``none``).

    Scenes (``scenes``: the scene of each unit; default: each unit its own) and annotators are resampled
    independently (:mod:`.resampling`). Weighted alpha: a unit of weight ``r`` (its scene's multiplicity) counts
    ``r`` times; a coder drawn ``w`` times gives each of its values weight ``w``, and a coder's copies are never
    paired with each other (that would be agreement with oneself): the within-unit pairing weight of values ``i``
    and ``j`` of different coders is ``w_i w_j``, so the unit's disagreement fraction is
    ``(W^2 - sum_c n_c^2) / (W^2 - sum_i w_i^2)`` with ``W = sum_i w_i``, ``n_c`` the weighted count of value c.
    At unit weights this is :func:`krippendorff_alpha_nominal`. Interval ``alpha -/+ t_df se``, within [-1, 1].

    The cost is resamples x pairable votes: past ``max_resample_votes`` fewer resamples are drawn (never below
    :data:`ALPHA_MIN_BOOTSTRAP`, enough for a 95% percentile interval), so 1M one-annotator votes take seconds."""
    from scipy.sparse import csr_matrix

    from .resampling import design_of, stratified_weights, unit_weights

    u, _ = pd.factorize(pd.Series(list(units), dtype=object))
    c, _ = pd.factorize(pd.Series(list(coders), dtype=object))
    v, vn = pd.factorize(pd.Series(list(values), dtype=object))
    if len(u) == 0 or bootstrap <= 0:
        return float("nan"), float("nan"), "none"
    # only units judged by >= 2 distinct coders are ever pairable (a coder's copies never pair with each other),
    # so the others are left out up front: with one annotator per vote most units are, and the cost is linear
    # in the pairable units
    first = pd.DataFrame({"u": u, "c": c}).drop_duplicates()
    pairable = np.bincount(first["u"].to_numpy(), minlength=u.max() + 1) >= 2
    keep = pairable[u]
    if not keep.all():
        sc_all = None if scenes is None else np.asarray(list(scenes), dtype=object)[keep]
        u, c, v = pd.factorize(u[keep])[0], pd.factorize(c[keep])[0], v[keep]
        scenes = sc_all
        if len(u) == 0:
            return float("nan"), float("nan"), "none"
    bootstrap = min(bootstrap, max(ALPHA_MIN_BOOTSTRAP, int(max_resample_votes // len(u))))
    n_u, n_c, n_v = u.max() + 1, c.max() + 1, len(vn)
    scene_of_unit = np.arange(n_u)
    word = "unit"
    if scenes is not None:
        sc = pd.factorize(pd.Series(list(scenes), dtype=object))[0]
        scene_of_unit = np.zeros(n_u, np.int64)
        scene_of_unit[u] = sc
        word = "scene"
    n_s = scene_of_unit.max() + 1
    des = design_of(np.zeros(n_s), n_c, scene_word=word)
    if not des.any:
        return float("nan"), float("nan"), "none"
    rng = np.random.default_rng(seed)
    val = csr_matrix((np.ones(len(u)), (np.arange(len(u)), u * n_v + v)), shape=(len(u), n_u * n_v))
    unit_of = csr_matrix((np.ones(len(u)), (np.arange(len(u)), u)), shape=(len(u), n_u))
    def run(scenes_on: bool, coders_on: bool, n_boot: int) -> np.ndarray:
        out = []
        for start in range(0, n_boot, 100):
            nb = min(100, n_boot - start)
            sw = stratified_weights(np.zeros(n_s), nb, rng)[:, scene_of_unit] if scenes_on else np.ones((nb, n_u))
            cw = unit_weights(n_c, nb, rng)[:, c] if coders_on else np.ones((nb, len(c)))
            nuc = np.asarray((val.T @ cw.T).T).reshape(nb, n_u, n_v)
            q = np.asarray((unit_of.T @ (cw ** 2).T).T)
            big_w = nuc.sum(-1)
            pairs = big_w ** 2 - q
            ok = pairs > 1e-9
            frac = np.where(ok, (big_w ** 2 - (nuc ** 2).sum(-1)) / np.where(ok, pairs, 1.0), 0.0)
            wu = sw * ok
            d_o = (wu * big_w * frac).sum(1)
            nc = (wu[:, :, None] * nuc).sum(1)
            n = nc.sum(1)
            d_e = (n ** 2 - (nc ** 2).sum(1)) / np.maximum(n - 1, 1e-12)
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(d_e > 0, 1 - d_o / d_e, np.nan))
        return np.concatenate(out)

    boot = run(des.scenes, des.annotators, bootstrap)
    if des.scenes and des.annotators:  # remove the pigeonhole's surplus (resampling.pigeonhole_correction)
        from .resampling import pigeonhole_correction

        n_part = max(100, bootstrap // 4)
        k, _ = pigeonhole_correction(float(np.nanvar(boot)), float(np.nanvar(run(True, False, n_part))),
                                     float(np.nanvar(run(False, True, n_part))), des.n_scenes, des.n_annotators)
        # alpha is a ratio of agreement sums, far from linear in the weights: the surplus estimate is kept
        # conservative (at most half the variance removed, df of the fewer units), as measured coverage needs
        # (60 units x 8 coders: 0.90 with the full correction and Satterthwaite's df, 0.93-0.94 with this)
        k = max(k, math.sqrt(0.5))
        des = replace(des, scale=k)
    a0 = krippendorff_alpha_nominal(u, v)[0]
    if des.scenes and des.annotators:
        boot = a0 + k * (boot - a0)
    lo, hi = des.interval(np.array([a0]), boot[:, None], confidence)
    lo, hi = np.maximum(lo, -1.0), np.minimum(hi, 1.0)
    return float(lo[0]), float(hi[0]), des.describe().removeprefix("bootstrap over ")  # '12 scenes x 8 annotators'


def _unit_and_value(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Unit key (the stimulus, :func:`~.vote_tables.stimulus_keys`), value (first/second/tie) and the raw choice of
    each row."""
    from .vote_tables import stimulus_keys

    unit, a_first = stimulus_keys(df)
    ch = df["choice"].astype(str).str.lower()
    # the value is relative to the unit (the first or second file in sorted order), so that the categories
    # are the same in every unit, as nominal alpha needs
    value = pd.Series(np.where(ch == "tie", "tie", np.where((ch == "a").to_numpy() == a_first, "first", "second")),
                      index=df.index)
    return unit, value, ch


@dataclass
class Reliability:
    """Output of :func:`annotator_reliability`: ``annotators`` (one row each, :data:`ANNOTATOR_COLUMNS`),
    ``alpha`` and ``n_alpha_units``, and ``dropped`` (annotator -> reason) when thresholds were given."""

    annotators: pd.DataFrame
    alpha: float
    n_alpha_units: int
    dropped: dict[str, str] = field(default_factory=dict)
    n_dropped_votes: int = 0
    alpha_ci: tuple[float, float] = (float("nan"), float("nan"))
    alpha_resampled: str = "none"

    def summary(self) -> str:
        a = "n/a" if np.isnan(self.alpha) else f"{self.alpha:.3f}"
        out = f"Krippendorff's alpha (nominal) {a} over {self.n_alpha_units} trial(s) with >= 2 annotators"
        if not np.isnan(self.alpha):
            out += (f" [95% CI {self.alpha_ci[0]:.3f}, {self.alpha_ci[1]:.3f}; bootstrap over {self.alpha_resampled}]"
                    if not np.isnan(self.alpha_ci[0]) else " (no interval: nothing to resample)"
                    if self.alpha_resampled == "none" else
                    f" (no interval: every resample over {self.alpha_resampled} gives the same alpha, which is not "
                    "certainty)")
        if self.dropped:
            out += (f"; dropped {len(self.dropped)} annotator(s), {self.n_dropped_votes} vote(s): "
                    + "; ".join(f"{k} ({v})" for k, v in self.dropped.items()))
        return out


def annotator_reliability(judgements: pd.DataFrame, *, min_agreement: float | None = None,
                          min_sentinel_accuracy: float | None = None, bootstrap: int = 1000,
                          seed: int = 0) -> Reliability:
    """Per-annotator reliability of validated judgements (see the module docstring for every measure).

    With ``min_agreement`` / ``min_sentinel_accuracy`` annotators below either threshold are marked
    ``dropped`` with the reason (an annotator without sentinels, or without votes shared with others, is
    not dropped for that measure). Use :func:`drop_annotators` to remove their votes.
    """
    df = judgements
    has_annot = "annotator" in df.columns
    annot = df["annotator"].astype(str) if has_annot else pd.Series("", index=df.index)
    kind = df["trial_kind"].astype(str).str.strip().str.lower() if "trial_kind" in df.columns else \
        pd.Series("real", index=df.index)
    kind = kind.where(kind != "", "real")
    unit, value, ch = _unit_and_value(df)
    real = (kind == "real").to_numpy()

    # one pass per measure, grouped by integer codes (linear in the number of votes, whatever the number of
    # annotators); annotators in order of first appearance
    a_codes, a_names = pd.factorize(annot)
    a_names = np.asarray(a_names, dtype=object)
    n_ann = len(a_names)
    u_codes = pd.factorize(unit)[0].astype(np.int64)
    key = a_codes.astype(np.int64) * (int(u_codes.max(initial=0)) + 1) + u_codes  # (annotator, unit)

    # alpha: first real vote of each annotator on each unit
    real_pos = np.flatnonzero(real)
    first_pos = np.sort(real_pos[np.unique(key[real_pos], return_index=True)[1]])
    first = pd.DataFrame({"u": unit.iloc[first_pos], "c": annot.iloc[first_pos], "v": value.iloc[first_pos]})
    alpha, n_units = krippendorff_alpha_nominal(first["u"], first["v"]) if has_annot else (float("nan"), 0)
    ci, resampled = (float("nan"), float("nan")), "none"
    if has_annot and not np.isnan(alpha) and bootstrap > 0:
        scene = first["u"].str.split("\x1f").str[:2].str.join("\x1f")  # (dataset, gt) of the unit
        lo, hi, resampled = alpha_bootstrap(first["u"], first["c"], first["v"], scenes=scene, bootstrap=bootstrap,
                                            seed=seed)
        ci = (lo, hi)

    # leave-one-out majority: per-unit counts minus the annotator's own vote
    fu, fv = pd.factorize(first["u"])[0], pd.factorize(first["v"])[0]
    loo_ok = np.full(len(first), np.nan)
    if len(first):
        n_v = int(fv.max()) + 1
        cnt = np.bincount(fu * n_v + fv, minlength=(int(fu.max()) + 1) * n_v).reshape(-1, n_v).astype(float)
        others = cnt[fu]
        others[np.arange(len(fu)), fv] -= 1.0
        top = others.max(1)
        unique_top = (others == top[:, None]).sum(1) == 1
        has = (top > 0) & unique_top
        loo_ok = np.where(has, (others.argmax(1) == fv).astype(float), np.nan)

    # sentinels
    sent = (kind == "sentinel").to_numpy()
    sent_ok = np.full(len(df), np.nan)
    if sent.any():
        if "expected" in df.columns:
            exp = df["expected"].astype(str).str.lower()
        else:
            am = df["a_method"].astype(str) if "a_method" in df.columns else pd.Series("", index=df.index)
            bm = df["b_method"].astype(str) if "b_method" in df.columns else pd.Series("", index=df.index)
            exp = pd.Series(np.where(am == SENTINEL_GT, "a", np.where(bm == SENTINEL_GT, "b", "")), index=df.index)
        known = sent & (exp != "").to_numpy()
        sent_ok[known] = (ch[known] == exp[known]).to_numpy(dtype=float)

    # repeats vs the annotator's own real vote on the unit
    rep = (kind == "repeat").to_numpy()
    rep_ok = np.full(len(df), np.nan)
    if rep.any():
        rep_pos = np.flatnonzero(rep)
        at = pd.Index(key[first_pos]).get_indexer(key[rep_pos])
        found = at >= 0
        vals = value.to_numpy()
        rep_ok[rep_pos[found]] = (vals[first_pos[at[found]]] == vals[rep_pos[found]]).astype(float)

    def per_annotator(codes: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean of the non-NaN ``ok`` per annotator (NaN without any) and their count."""
        v = ~np.isnan(ok)
        n = np.bincount(codes[v], minlength=n_ann)
        s = np.bincount(codes[v], weights=ok[v], minlength=n_ann)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan), n

    lo_m, lo_n = per_annotator(a_codes[first_pos], loo_ok)
    so_m, so_n = per_annotator(a_codes, sent_ok)
    ro_m, ro_n = per_annotator(a_codes, rep_ok)
    bad_lo = (lo_n > 0) & (lo_m < min_agreement) if min_agreement is not None else np.zeros(n_ann, bool)
    bad_so = (so_n > 0) & (so_m < min_sentinel_accuracy) if min_sentinel_accuracy is not None else \
        np.zeros(n_ann, bool)
    reason = np.full(n_ann, "", dtype=object)
    dropped: dict[str, str] = {}
    for k in np.flatnonzero(bad_lo | bad_so):
        why = []
        if bad_lo[k]:
            why.append(f"leave-one-out agreement {lo_m[k]:.2f} < {min_agreement:g}")
        if bad_so[k]:
            why.append(f"sentinel accuracy {so_m[k]:.2f} < {min_sentinel_accuracy:g}")
        reason[k] = dropped[a_names[k]] = "; ".join(why)
    if n_ann:
        table = pd.DataFrame(dict(
            annotator=a_names, n_votes=np.bincount(a_codes, minlength=n_ann).astype(np.int64),
            n_real=np.bincount(a_codes[real], minlength=n_ann).astype(np.int64), loo_agreement=lo_m,
            n_loo=lo_n.astype(np.int64), sentinel_accuracy=so_m, n_sentinel=so_n.astype(np.int64),
            repeat_consistency=ro_m, n_repeat=ro_n.astype(np.int64), dropped=bad_lo | bad_so, reason=reason),
            columns=list(ANNOTATOR_COLUMNS))
    else:
        table = pd.DataFrame([], columns=list(ANNOTATOR_COLUMNS))
    n_drop = int(table.loc[table["dropped"], "n_votes"].sum()) if len(table) else 0
    return Reliability(annotators=table, alpha=alpha, n_alpha_units=n_units, dropped=dropped, n_dropped_votes=n_drop,
                       alpha_ci=ci, alpha_resampled=resampled)


def drop_annotators(judgements: pd.DataFrame, annotators: Sequence[str]) -> pd.DataFrame:
    """The judgements without the votes of ``annotators``."""
    if not annotators or "annotator" not in judgements.columns:
        return judgements
    keep = ~judgements["annotator"].astype(str).isin(list(annotators))
    out = judgements.loc[keep].reset_index(drop=True)
    out.attrs = dict(judgements.attrs)
    return out


__all__ = ["ANNOTATOR_COLUMNS", "Reliability", "SENTINEL_GT", "alpha_bootstrap", "annotator_reliability", "drop_annotators",
           "krippendorff_alpha_nominal"]
