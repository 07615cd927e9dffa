"""Seeded choice of trials, balanced over unordered method pairs and over scenes.

A *cell* is (scene, unordered method pair). Real trials are distinct cells taken in the order of
:func:`balanced_cells` after a seeded relabelling of pairs and scenes, so the number of trials per method pair
and per scene differ by at most one. Each real trial gets a seeded a/b orientation. Sentinels use a scene (balanced the same way) and put
the GT copy on a seeded side. Repeats copy a seeded choice of real trials and are placed after them, at
least ``gap`` trials later where the sequence is long enough. ``n_trials`` counts every trial shown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .manifest import StudyError


@dataclass(frozen=True)
class TrialSpec:
    """One planned trial: ``kind``, ``scene``, methods ``a``/``b`` (sentinels: ``expected`` = GT side)."""

    kind: str
    scene: str
    a: str = ""
    b: str = ""
    repeat_of: int = -1  # index (in the final order) of the trial a repeat shows again
    expected: str = ""


def split_counts(n_trials: int, sentinels: float, repeats: float) -> tuple[int, int, int]:
    """(real, sentinel, repeat) trial counts from the total and the two fractions (rounded)."""
    for name, f in (("--sentinels", sentinels), ("--repeats", repeats)):
        if not 0 <= f < 1:
            raise StudyError(f"{name} {f}: a fraction in [0, 1)")
    if n_trials < 1:
        raise StudyError(f"--trials {n_trials}: must be >= 1")
    n_sent, n_rep = int(round(n_trials * sentinels)), int(round(n_trials * repeats))
    n_real = n_trials - n_sent - n_rep
    if n_real < 1 or n_rep > n_real:
        raise StudyError(f"--trials {n_trials} with --sentinels {sentinels} and --repeats {repeats} leaves "
                         f"{n_real} real trial(s) for {n_rep} repeat(s); lower the fractions")
    return n_real, n_sent, n_rep


def balanced_cells(n_rows: int, n_cols: int):
    """Every cell of an ``n_rows x n_cols`` grid once, in an order whose every prefix has row counts and
    column counts that differ by at most one: cell ``t`` of block ``j`` is ``(t mod R, (t + j) mod C)``,
    blocks of ``lcm(R, C)`` cells, ``gcd(R, C)`` blocks (they partition the grid)."""
    g = math.gcd(n_rows, n_cols)
    block = n_rows * n_cols // g
    for j in range(g):
        for t in range(block):
            yield t % n_rows, (t + j) % n_cols


def sample_trials(scenes: Sequence[str], methods: Sequence[str], n_trials: int, *, seed: int = 0,
                  sentinels: float = 0.0, repeats: float = 0.0, gap: int = 5) -> list[TrialSpec]:
    """The study's trials in display order (see the module docstring)."""
    if len(methods) < 2:
        raise StudyError(f"need at least two methods to compare, got {len(methods)} ({', '.join(methods)})")
    if len(set(methods)) != len(methods):
        raise StudyError(f"method named twice: {', '.join(methods)}")
    if not scenes:
        raise StudyError("no scenes (no GT file has an output of every method)")
    n_real, n_sent, n_rep = split_counts(n_trials, sentinels, repeats)
    pairs = list(itertools.combinations(methods, 2))
    if n_real > len(pairs) * len(scenes):
        raise StudyError(f"--trials {n_trials}: {n_real} real trial(s) asked for, but {len(scenes)} scene(s) x "
                         f"{len(pairs)} method pair(s) give only {len(pairs) * len(scenes)} distinct ones")
    rng = np.random.default_rng(seed)
    pair_order = [pairs[i] for i in rng.permutation(len(pairs))]
    scene_order = [scenes[i] for i in rng.permutation(len(scenes))]
    scene_rank = {s: r for r, s in enumerate(scene_order)}
    real = []
    for _t, (p, s) in zip(range(n_real), balanced_cells(len(pairs), len(scenes))):
        pair = pair_order[p]
        a, b = pair if rng.random() < 0.5 else pair[::-1]
        real.append(TrialSpec("real", scene_order[s], a, b))
    sent_count = dict.fromkeys(scenes, 0)
    sent: list[TrialSpec] = []
    for _ in range(n_sent):
        scene = min(scenes, key=lambda s: (sent_count[s], scene_rank[s]))
        sent_count[scene] += 1
        sent.append(TrialSpec("sentinel", scene, expected="a" if rng.random() < 0.5 else "b"))
    order = [*real, *sent]
    order = [order[i] for i in rng.permutation(len(order))]
    real_pos = [i for i, t in enumerate(order) if t.kind == "real"]
    chosen = sorted(rng.choice(len(real_pos), size=n_rep, replace=False).tolist()) if n_rep else []
    # insert repeats from the last original backwards so earlier positions stay valid
    inserts: list[tuple[int, int]] = []  # (original position in `order`, insertion slot)
    for k in chosen:
        pos = real_pos[k]
        lo = min(pos + 1 + gap, len(order))
        inserts.append((pos, int(rng.integers(lo, len(order) + 1))))
    seq: list[tuple[TrialSpec, int]] = [(t, -1) for t in order]  # (spec, index of the original in `order`)
    for pos, slot in sorted(inserts, key=lambda x: x[1], reverse=True):
        orig = order[pos]
        seq.insert(slot, (TrialSpec("repeat", orig.scene, orig.a, orig.b), pos))
    # map original positions in `order` to final positions
    final_index: dict[int, int] = {}
    k = 0
    for i, (_spec, src) in enumerate(seq):
        if src == -1:
            final_index[k] = i
            k += 1
    out = []
    for spec, src in seq:
        if src >= 0:
            spec = TrialSpec("repeat", spec.scene, spec.a, spec.b, repeat_of=final_index[src])
        out.append(spec)
    return out
