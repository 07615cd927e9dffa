"""Per-pair vote counts from validated judgement rows: one row per pair, one row per (pair, annotator), and the
unique (gt, image) combinations a vote table needs scored. A pair is one stimulus (:func:`merge_same_stimulus`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .judgements import CHOICES


def stimulus_keys(rows: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """The stimulus each row shows, as one key: dataset, gt and the two images in sorted order (the resolved
    ``*_path`` columns where validation added them), and whether the row's ``a`` is the first of the two."""
    a = (rows["a_path"] if "a_path" in rows.columns else rows["a"]).astype(str)
    b = (rows["b_path"] if "b_path" in rows.columns else rows["b"]).astype(str)
    gt = (rows["gt_path"] if "gt_path" in rows.columns else rows["gt"]).astype(str)
    a_first = (a <= b).to_numpy()
    lo = pd.Series(np.where(a_first, a, b), index=rows.index)
    hi = pd.Series(np.where(a_first, b, a), index=rows.index)
    return rows["dataset"].astype(str) + "\x1f" + gt + "\x1f" + lo + "\x1f" + hi, a_first


def merge_same_stimulus(judgements: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Validated rows that show the same stimulus (dataset, gt and the two images, in either order) under
    different ``pair_id`` values become one pair: the first of those ids, each ``vote`` mirrored onto that id's
    orientation; an id whose annotator already voted on that stimulus (a repeat trial) stays a pair of its own. An active study gives every trial its own id, so without this each vote would be a pair of its
    own (no pair with two annotators, no human ceiling). Returns the rows (a copy) and how many ids were merged
    into another."""
    if judgements.empty:
        return judgements, 0
    firsts = judgements.drop_duplicates("pair_id", keep="first")
    who: dict[str, set[str]] = {}  # pair_id -> its annotators
    if "annotator" in judgements.columns:
        for pid, ann in zip(judgements["pair_id"], judgements["annotator"].fillna("").astype(str)):
            who.setdefault(pid, set()).add(ann.strip())
    canon: dict[str, list[tuple[str, bool, set[str]]]] = {}  # stimulus -> [(first id, its a first?, people)]
    rename: dict[str, tuple[str, bool]] = {}  # pair_id -> (pair_id it joins, orientation swapped)
    for pid, key, a_first in zip(firsts["pair_id"], *stimulus_keys(firsts)):
        mine = who.get(pid, set()) - {""}
        groups = canon.setdefault(key, [])
        # the first group of this stimulus none of whose annotators voted under this id: a repeat trial (the same
        # person again) stays its own pair, so that no one is counted as agreeing with themself
        g = next((g for g in groups if not (g[2] & mine)), None)
        if g is None:
            groups.append((pid, bool(a_first), set(mine)))
        else:
            g[2].update(mine)
            rename[pid] = (g[0], g[1] != bool(a_first))
    if not rename:
        return judgements, 0
    out = judgements.copy()
    target = out["pair_id"].map(lambda p: rename.get(p, (p, False)))
    swapped = np.array([s for _, s in target], bool) & (out["vote"].astype(str).str.lower() != "tie").to_numpy()
    out["pair_id"] = [p for p, _ in target]
    out.loc[swapped, "vote"] = out.loc[swapped, "vote"].astype(str).str.lower().map({"a": "b", "b": "a"})
    return out, len(rename)


def vote_table(judgements: pd.DataFrame) -> pd.DataFrame:
    """Aggregate validated judgements to one row per pair (first-appearance order).

    Columns: ``pair_id, dataset, gt, a, b, gt_path, a_path, b_path, n_a, n_b, n_tie`` where the counts
    use the pair's canonical orientation (the ``vote`` column from validation, else ``choice``).
    """
    vote_col = "vote" if "vote" in judgements.columns else "choice"
    votes = judgements[vote_col].astype(str).str.lower()
    path_cols = [c for c in ("gt_path", "a_path", "b_path") if c in judgements.columns]
    firsts = judgements.drop_duplicates("pair_id", keep="first")
    keep = ["pair_id", "dataset", "gt", "a", "b", *path_cols]
    pairs = firsts[keep].reset_index(drop=True)
    counts = pd.crosstab(judgements["pair_id"], votes).reindex(columns=list(CHOICES), fill_value=0)
    counts = counts.reindex(pairs["pair_id"]).fillna(0).astype(np.int64)
    pairs["n_a"] = counts["a"].to_numpy()
    pairs["n_b"] = counts["b"].to_numpy()
    pairs["n_tie"] = counts["tie"].to_numpy()
    return pairs


def annotator_vote_table(judgements: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame | None:
    """One row per (pair, annotator): ``pair`` (row of ``pairs``, as :func:`vote_table` makes it),
    ``annotator``, ``n_a``, ``n_b``, ``n_tie`` in the pair's canonical orientation; None without annotators."""
    if "annotator" not in judgements.columns:
        return None
    ann = judgements["annotator"].fillna("").astype(str).str.strip()
    if (ann == "").all():
        return None
    vote = judgements["vote" if "vote" in judgements.columns else "choice"].astype(str).str.lower()
    pos = pd.Series(np.arange(len(pairs)), index=pairs["pair_id"].to_numpy())
    df = pd.DataFrame({"pair": pos.reindex(judgements["pair_id"].to_numpy()).to_numpy(), "annotator": ann.to_numpy(),
                       "n_a": (vote == "a").to_numpy(int), "n_b": (vote == "b").to_numpy(int),
                       "n_tie": (vote == "tie").to_numpy(int)})
    df = df.dropna(subset=["pair"])
    out = df.groupby(["pair", "annotator"], sort=True, as_index=False)[["n_a", "n_b", "n_tie"]].sum()
    out["pair"] = out["pair"].astype(np.int64)
    return out


def unique_image_pairs(pairs: pd.DataFrame) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The unique (gt, image) combinations of a vote table, as :class:`clipscore_sr.io.Pair` objects.

    Returns ``(unique_pairs, index_a, index_b)``: ``unique_pairs[index_a[i]]`` is (gt, a) of pair ``i``.
    Keys are ``u000000``, ``u000001``... in first-appearance order.
    """
    from ..io import Pair

    lookup: dict[tuple[str, str], int] = {}
    uniq: list[Pair] = []
    ia = np.empty(len(pairs), np.int64)
    ib = np.empty(len(pairs), np.int64)
    gts = pairs["gt_path"].tolist()
    for target, col in ((ia, "a_path"), (ib, "b_path")):
        for i, (gt, img) in enumerate(zip(gts, pairs[col].tolist())):
            k = (gt, img)
            j = lookup.get(k)
            if j is None:
                j = lookup[k] = len(uniq)
                uniq.append(Pair(f"u{j:06d}", gt, img))
            target[i] = j
    return uniq, ia, ib


__all__ = ["annotator_vote_table", "merge_same_stimulus", "stimulus_keys", "unique_image_pairs", "vote_table"]
