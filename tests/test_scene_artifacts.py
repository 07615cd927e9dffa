"""Known artifacts injected into a bicubic x4 SR of the real Landsat sample, one per tile: seams of 128-px
inference windows, NaN holes, a +5% cast in one band, a hard-constrained SR (block means replaced by the LR).
Each is ranked first (or flagged only) where it was injected; the clean bicubic SR raises no flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from clipscore_sr.cli import main

from .scene_support import bicubic_sr, full_tiles, read_landsat, write_sr

pytest.importorskip("rasterio")
TILE, S = 64, 4  # LR pixels; SR tiles are 256 px: two 128-px inference windows per axis


def test_injected_artifacts_are_found_where_injected(shared_dir: Path, tmp_path: Path) -> None:
    lr, prof = read_landsat(shared_dir)
    clean = bicubic_sr(lr, S)
    ok = full_tiles(lr, TILE)
    assert len(ok) >= 6
    seam_t, hole_t, cast_t, hard_t = ok[0], ok[len(ok) // 3], ok[2 * len(ok) // 3], ok[-1]
    sr = clean.copy()
    tile_sr = TILE * S

    def region(t):
        return slice(t[0] * tile_sr, (t[0] + 1) * tile_sr), slice(t[1] * tile_sr, (t[1] + 1) * tile_sr)

    # seams: each 128x128 inference window of the tile offset by +-2% of full scale (checkerboard)
    ys, xs = region(seam_t)
    rr, cc = np.meshgrid(np.arange(ys.start, ys.stop) // 128, np.arange(xs.start, xs.stop) // 128, indexing="ij")
    sr[:, ys, xs] += np.where((rr + cc) % 2 == 0, 0.02 * 255, -0.02 * 255).astype(np.float32)
    # NaN holes of a few pixels
    ys, xs = region(hole_t)
    for dy, dx in ((40, 50), (120, 200), (210, 30)):
        sr[:, ys.start + dy:ys.start + dy + 3, xs.start + dx:xs.start + dx + 4] = np.nan
    # +5% cast in band 2
    ys, xs = region(cast_t)
    sr[1, ys, xs] *= 1.05
    # hard-constrained: a detailed SR whose block means are replaced by the LR's
    ys, xs = region(hard_t)
    rng = np.random.default_rng(0)
    model = torch.from_numpy(clean[:, ys, xs].astype(np.float64) + rng.normal(0, 4, (3, tile_sr, tile_sr)))[None]
    lr_t = torch.from_numpy(lr[:, ys.start // S:ys.stop // S, xs.start // S:xs.stop // S].astype(np.float64))[None]
    up = lambda x: x.repeat_interleave(S, -2).repeat_interleave(S, -1)  # noqa: E731
    hard = model - up(F.avg_pool2d(model, S)) + up(lr_t)
    sr[:, ys, xs] = hard[0].numpy().astype(np.float32)

    lr_path = shared_dir / "samples" / "landsat" / "rmnp-rgb.tif"
    runner = CliRunner()
    for name, data in (("clean", clean), ("bad", sr)):
        path = write_sr(tmp_path / f"{name}.tif", data, prof, S)
        r = runner.invoke(main, ["scene", str(lr_path), str(path), "-o", str(tmp_path / name), "--tile", str(TILE),
                                 "-q"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    ncols = -(-lr.shape[2] // TILE)
    key = lambda t: f"bad/{t[0] * ncols + t[1]:07d}"  # noqa: E731
    clean_df = pd.read_parquet(tmp_path / "clean" / "tiles.parquet")
    assert (clean_df["flags"] == "").all(), clean_df.loc[clean_df["flags"] != "", ["key", "flags"]]
    df = pd.read_parquet(tmp_path / "bad" / "tiles.parquet").set_index("key")

    def first(col: str) -> str:
        return df[col].astype(float).idxmax()

    assert first("seam-step") == key(seam_t) and df.loc[key(seam_t), "seam-period"] == 128
    assert set(df.index[df["flags"].str.contains("seam")]) == {key(seam_t)}
    assert set(df.index[df["nodata-new-px"] > 0]) == {key(hole_t)}
    assert df.loc[key(hole_t), "nodata-new-px"] == 3 * 12 and df.loc[key(hole_t), "nodata-spread-px"] <= 2
    assert first("cast") == key(cast_t) and df.loc[key(cast_t), "ratio-b2"] == pytest.approx(1.05, abs=0.002)
    assert set(df.index[df["flags"].str.contains("cast")]) == {key(cast_t)}
    assert set(df.index[df["by-construction"] == 1]) == {key(hard_t)}
    assert df.loc[key(hard_t), "detail-gain"] > 1.3 and df.loc[key(hard_t), "lr-maxdiff-box"] < 1e-5
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())["scenes"]["bad"]
    assert summary["worst"]["seam-step"][0]["key"] == key(seam_t)
    assert set(summary["outlined"]) == {key(t) for t in (seam_t, hole_t, cast_t, hard_t)}
