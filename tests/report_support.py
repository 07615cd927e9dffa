"""Small score / agreement / rank tables with real images and meta files, for the report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clipscore_sr import io
from clipscore_sr.human.agreement import RESULT_COLUMNS
from clipscore_sr.human.ranking import RANKING_COLUMNS
from clipscore_sr.results import write_table

METHODS = ("bicubic", "esrgan")


def _smooth(rng: np.random.Generator, c: int, h: int, w: int) -> np.ndarray:
    x = rng.random((c, h // 4, w // 4))
    return np.clip(np.kron(x, np.ones((1, 4, 4))) * 0.6 + 0.2, 0, 1)


def make_scored(root: Path, n: int = 4, *, size: int = 32, bands: int = 3, dtype: str = "uint8",
                data_range: float | None = None, band_sel: tuple[int, ...] | None = None, ext: str = ".png") -> Path:
    """gt/, lr/, sr/<method>/ with ``n`` images each, scored with psnr and ssim (``score --methods``) into
    ``root/scores.csv`` + its meta file. With ``data_range`` (e.g. 4095 in uint16) values stay below it."""
    from clipscore_sr.pipeline import score_pairs

    rng = np.random.default_rng(0)
    scale = (data_range / 65535.0) if (dtype == "uint16" and data_range) else 1.0
    for i in range(n):
        gt = _smooth(rng, bands, size, size)
        io.write_image(root / "gt" / f"t{i}{ext}", gt * scale, dtype=dtype)
        io.write_image(root / "lr" / f"t{i}{ext}", gt[:, ::4, ::4] * scale, dtype=dtype)
        for k, m in enumerate(METHODS):
            noisy = np.clip(gt + rng.normal(0, 0.03 * (k + 1) * (1 + i % 2), gt.shape), 0, 1)
            io.write_image(root / "sr" / m / f"t{i}{ext}", noisy * scale, dtype=dtype)
    pairing = io.pair_method_folders(root / "gt", root / "sr")
    score_pairs(pairing.pairs, ["psnr", "ssim"], out=root / "scores.csv", progress=False, data_range=data_range,
                bands=band_sel, device="cpu")
    return root / "scores.csv"


def make_agreement(path: Path) -> pd.DataFrame:
    rows = []
    for r, (metric, acc) in enumerate((("psnr", 0.61), ("ssim", 0.5875))):
        for ds in ("a", "all"):
            row = dict.fromkeys(RESULT_COLUMNS, np.nan)
            row.update(metric=metric, dataset=ds, higher_is_better=True, accuracy=acc, ci_low=acc - 0.05,
                       ci_high=acc + 0.0512345678901, n_pairs=40, n_votes=80, rank=r + 1, best_metric="psnr",
                       diff_vs_best=0.0 if r == 0 else 0.0225, p_vs_best=np.nan if r == 0 else 0.31,
                       bootstrap=100, seed=0, confidence=0.95,
                       ci_note="one scene: its 40 pairs are the units resampled" if ds == "a" else "")
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    write_table(df, path)
    return df


def make_rank(path: Path) -> pd.DataFrame:
    rows = []
    for r, (m, s) in enumerate((("esrgan", 0.4123456789), ("bicubic", -0.4123456789))):
        row = dict.fromkeys(RANKING_COLUMNS, np.nan)
        row.update(dataset="all", method=m, score=s, ci_low=np.nan, ci_high=np.nan, elo=1500 + 100 * s, wins=7.5 - r,
                   losses=2.5 + r, ties=1.0, n_votes=11, rank=r + 1, model="bt", unit="log-odds", ties_mode="split",
                   n_scenes=1, bootstrap=100, seed=0, confidence=0.95, prior_sd=10.0,
                   ci_note="no interval: every scene resample gives the same votes")
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(RANKING_COLUMNS))
    write_table(df, path)
    return df


def make_study(root: Path, *, answered: bool = True) -> Path:
    """A study made as a user makes one, ``srmetrics study make`` on the bundled demo tiles (3 methods, 24
    trials with sentinels and repeats), answered through the study's store (what ``study serve`` writes) by
    three scripted test annotators (not people: a fixed preference with some slips; one stops early)."""
    from click.testing import CliRunner

    from clipscore_sr.cli import main
    from clipscore_sr.demo import DATA_DIR, METHODS

    scene = DATA_DIR / "scene"
    out = root / "study"
    args = ["study", "make", str(scene / "gt"), *[a for m in METHODS for a in ("--method", f"{m}={scene / 'sr' / m}")],
            "--trials", "24", "--sentinels", "0.125", "--repeats", "0.125", "--allow-tie", "--seed", "0",
            "--out", str(out), "-q"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    if answered:
        answer_study(out)
    return out


def answer_study(folder: Path) -> None:
    """Scripted answers written with the store API the server uses (``answer_row`` + ``JudgementStore``)."""
    from clipscore_sr.human.study.manifest import load_study
    from clipscore_sr.human.study.store import JudgementStore, answer_row, shown_left

    study = load_study(folder)
    store = JudgementStore(study.root)
    rank = {"srcnn-tiny": 3, "bicubic": 2, "nearest": 1, "gt": 9, "degraded": 0}
    for k, who in enumerate(("ann-a", "ann-b", "ann-c")):
        for i, t in enumerate(study.trials[:len(study.trials) - 6 * k]):  # ann-b and ann-c stop early
            pick = "a" if rank[t.a_method] > rank[t.b_method] else "b"
            if k == 2 and i % 3 == 0:  # ann-c slips on every third trial
                pick = "b" if pick == "a" else "a"
            if k == 1 and i % 7 == 0:
                pick = "tie"
            store.append(answer_row(study, t, who, pick, shown_left(study, who, t), 400 + 37 * i + 100 * k,
                                    "2026-01-01T00:00:00"))


def make_scene(root: Path, shared: Path) -> Path:
    """``srmetrics scene`` on the Landsat 8 sample (LR) and its x2 bicubic SR with two planted faults: a 15%
    brighter block (a colour cast) and a hole of no-data where the LR is valid; tiles of 96 LR px."""
    from click.testing import CliRunner

    from clipscore_sr.cli import main

    from .scene_support import bicubic_sr, read_landsat, write_sr

    lr, prof = read_landsat(shared)
    sr = bicubic_sr(lr, 2)
    sr[:, 192:384, 384:576] *= 1.15
    sr[:, 450:500, 150:230] = np.nan
    write_sr(root / "sr.tif", sr, prof, 2)
    out = root / "eval"
    res = CliRunner().invoke(main, ["scene", str(shared / "samples" / "landsat" / "rmnp-rgb.tif"), str(root / "sr.tif"),
                                    "-o", str(out), "--tile", "96", "-q"])
    assert res.exit_code == 0, res.output
    return out
