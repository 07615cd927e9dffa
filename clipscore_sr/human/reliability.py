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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SENTINEL_GT = "gt"  # a_method/b_method of the GT copy in a sentinel trial (the study's convention)
ANNOTATOR_COLUMNS: tuple[str, ...] = (
    "annotator", "n_votes", "n_real", "loo_agreement", "n_loo", "sentinel_accuracy", "n_sentinel",
    "repeat_consistency", "n_repeat", "dropped", "reason",
)


def krippendorff_alpha_nominal(units: Sequence[Any], values: Sequence[Any]) -> tuple[float, int]:
    """Krippendorff's alpha (nominal) from one (unit, value) per coder and unit; ``(alpha, n_units)``
    where units with fewer than two values are not pairable and are left out.

    ``alpha = 1 - (n - 1) * sum_u (m_u^2 - sum_c n_uc^2) / (m_u - 1) / (n^2 - sum_c n_c^2)`` with ``n_uc`` the
    count of value c in unit u, ``m_u`` its number of values, ``n_c`` the pairable count of c, ``n = sum n_c``.
    """
    u_codes, _ = pd.factorize(pd.Series(list(units), dtype=object))
    v_codes, v_names = pd.factorize(pd.Series(list(values), dtype=object))
    if len(u_codes) == 0:
        return float("nan"), 0
    counts = np.zeros((u_codes.max() + 1, len(v_names)))
    np.add.at(counts, (u_codes, v_codes), 1.0)
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


def _unit_and_value(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Unit key, value (first/second/tie) and the raw choice of each row."""
    a = df["a_path"] if "a_path" in df.columns else df["a"]
    b = df["b_path"] if "b_path" in df.columns else df["b"]
    gt = df["gt_path"] if "gt_path" in df.columns else df["gt"]
    a, b = a.astype(str), b.astype(str)
    lo = np.where(a <= b, a, b)
    hi = np.where(a <= b, b, a)
    unit = df["dataset"].astype(str) + "\x1f" + gt.astype(str) + "\x1f" + pd.Series(lo, index=df.index) + \
        "\x1f" + pd.Series(hi, index=df.index)
    ch = df["choice"].astype(str).str.lower()
    chosen = np.where(ch == "a", a, b)
    # the value is relative to the unit (the first or second file in sorted order), so that the categories
    # are the same in every unit, as nominal alpha needs
    value = pd.Series(np.where(ch == "tie", "tie", np.where(chosen == lo, "first", "second")), index=df.index)
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

    def summary(self) -> str:
        a = "n/a" if np.isnan(self.alpha) else f"{self.alpha:.3f}"
        out = f"Krippendorff's alpha (nominal) {a} over {self.n_alpha_units} trial(s) with >= 2 annotators"
        if self.dropped:
            out += (f"; dropped {len(self.dropped)} annotator(s), {self.n_dropped_votes} vote(s): "
                    + "; ".join(f"{k} ({v})" for k, v in self.dropped.items()))
        return out


def annotator_reliability(judgements: pd.DataFrame, *, min_agreement: float | None = None,
                          min_sentinel_accuracy: float | None = None) -> Reliability:
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

    # alpha: first real vote of each annotator on each unit
    first = pd.DataFrame({"u": unit[real], "c": annot[real], "v": value[real]}).drop_duplicates(["u", "c"])
    alpha, n_units = krippendorff_alpha_nominal(first["u"], first["v"]) if has_annot else (float("nan"), 0)

    # leave-one-out majority
    fu, fv = pd.factorize(first["u"])[0], pd.factorize(first["v"])[0]
    loo_ok = pd.Series(np.nan, index=first.index)
    if len(first):
        cnt = np.zeros((fu.max() + 1, fv.max() + 1))
        np.add.at(cnt, (fu, fv), 1.0)
        others = cnt[fu].copy()
        others[np.arange(len(fu)), fv] -= 1.0
        top = others.max(1)
        unique_top = (others == top[:, None]).sum(1) == 1
        has = (top > 0) & unique_top
        loo_ok[:] = np.where(has, (others.argmax(1) == fv).astype(float), np.nan)

    # sentinels
    sent = (kind == "sentinel").to_numpy()
    sent_ok = pd.Series(np.nan, index=df.index)
    if sent.any():
        if "expected" in df.columns:
            exp = df["expected"].astype(str).str.lower()
        else:
            am = df["a_method"].astype(str) if "a_method" in df.columns else pd.Series("", index=df.index)
            bm = df["b_method"].astype(str) if "b_method" in df.columns else pd.Series("", index=df.index)
            exp = pd.Series(np.where(am == SENTINEL_GT, "a", np.where(bm == SENTINEL_GT, "b", "")), index=df.index)
        known = sent & (exp != "").to_numpy()
        sent_ok[known] = (ch[known] == exp[known]).astype(float)

    # repeats vs the annotator's own real vote on the unit
    rep = (kind == "repeat").to_numpy()
    rep_ok = pd.Series(np.nan, index=df.index)
    if rep.any():
        own = dict(zip(zip(first["c"], first["u"]), first["v"]))
        keys = list(zip(annot[rep], unit[rep]))
        orig = [own.get(k) for k in keys]
        rep_ok[rep] = [np.nan if o is None else float(o == v) for o, v in zip(orig, value[rep])]

    rows = []
    dropped: dict[str, str] = {}
    for name in dict.fromkeys(annot):
        mine = (annot == name).to_numpy()
        lo = loo_ok[first["c"] == name].dropna()
        so = sent_ok[mine].dropna()
        ro = rep_ok[mine].dropna()
        r = dict(annotator=name, n_votes=int(mine.sum()), n_real=int((mine & real).sum()),
                 loo_agreement=float(lo.mean()) if len(lo) else np.nan, n_loo=int(len(lo)),
                 sentinel_accuracy=float(so.mean()) if len(so) else np.nan, n_sentinel=int(len(so)),
                 repeat_consistency=float(ro.mean()) if len(ro) else np.nan, n_repeat=int(len(ro)),
                 dropped=False, reason="")
        why = []
        if min_agreement is not None and len(lo) and r["loo_agreement"] < min_agreement:
            why.append(f"leave-one-out agreement {r['loo_agreement']:.2f} < {min_agreement:g}")
        if min_sentinel_accuracy is not None and len(so) and r["sentinel_accuracy"] < min_sentinel_accuracy:
            why.append(f"sentinel accuracy {r['sentinel_accuracy']:.2f} < {min_sentinel_accuracy:g}")
        if why:
            r["dropped"], r["reason"] = True, "; ".join(why)
            dropped[name] = r["reason"]
        rows.append(r)
    table = pd.DataFrame(rows, columns=list(ANNOTATOR_COLUMNS))
    n_drop = int(table.loc[table["dropped"], "n_votes"].sum()) if len(table) else 0
    return Reliability(annotators=table, alpha=alpha, n_alpha_units=n_units, dropped=dropped, n_dropped_votes=n_drop)


def drop_annotators(judgements: pd.DataFrame, annotators: Sequence[str]) -> pd.DataFrame:
    """The judgements without the votes of ``annotators``."""
    if not annotators or "annotator" not in judgements.columns:
        return judgements
    keep = ~judgements["annotator"].astype(str).isin(list(annotators))
    out = judgements.loc[keep].reset_index(drop=True)
    out.attrs = dict(judgements.attrs)
    return out


__all__ = ["ANNOTATOR_COLUMNS", "Reliability", "SENTINEL_GT", "annotator_reliability", "drop_annotators",
           "krippendorff_alpha_nominal"]
