"""`srmetrics demo` runs offline and produces its outputs; with --clip local-dir it adds that CLIP model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.demo import METHODS, PIXEL_METRICS

from .test_clip_support import PREP, TINY_VIT, write_local_dir


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere: the demo must still succeed with the pixel metrics."""
    for var, sub in (("TORCH_HOME", "torch"), ("HF_HOME", "hf"), ("CLIPSCORE_SR_CACHE", "own")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


def test_demo_offline_writes_its_outputs(empty_caches: Path) -> None:
    out = empty_caches / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--quiet", "--bootstrap", "200"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("scores.csv", "summary.csv", "agreement.csv", "agreement_pairs.csv", "figure3.png", "montage.png"):
        assert (out / name).stat().st_size > 0, name
    # learned metrics without weights are listed as not run, with what to do first; the demo forces offline
    # mode itself, so it must not blame environment variables the user never set
    assert "the demo runs offline" in res.output and "HF_HUB_OFFLINE" not in res.output
    assert "not run: lpips: weights for LPIPS-vgg backbone (vgg16) not found: put torchvision's vgg16" in res.output
    assert "not run: clipscore: weights for clipscore:clipa-v2-bigg" in res.output
    assert "srmetrics models --fetch clipa-v2-bigg" in res.output
    assert "not run: samscore:" in res.output
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["method"].unique()) == sorted(METHODS)
    assert set(PIXEL_METRICS) <= set(scores.columns)
    assert len(scores) == 3 * 6
    # the rows name the copy in the demo folder (the files the README points to), not the installed package
    for col in ("gt", "sr"):
        assert all(Path(p).resolve().is_relative_to((out / "data" / "scene").resolve()) for p in scores[col])
    means = scores.groupby("method")["psnr"].mean()
    assert means["bicubic"] > means["nearest"]  # a sanity check of the bundled outputs
    best = next(ln for ln in res.output.splitlines() if ln.startswith("best method per metric: "))
    assert f"psnr {means.idxmax()}" in best
    agreement = pd.read_csv(out / "agreement.csv")
    assert set(PIXEL_METRICS) <= set(agreement["metric"])
    assert "constructed labels" in res.output and "not human" in res.output
    assert f"judge the demo outputs yourself: srmetrics demo --study --out {out}" in res.output
    assert str(out / "figure3.png") in res.output


def test_bundled_tiles_hold_no_nodata_fill() -> None:
    """No GT tile of the demo or of the example judgement set has a pixel that is 255 or 0 in every band."""
    from PIL import Image

    from clipscore_sr.demo import DATA_DIR, example_judgements_dir
    from clipscore_sr.io import fill_pixels

    files = sorted((DATA_DIR / "scene").rglob("*.png")) + sorted(example_judgements_dir().rglob("gt.png"))
    assert len(files) == 6 * 5 + 6
    for f in files:
        assert not fill_pixels(np.asarray(Image.open(f).convert("RGB"))).any(), f


def test_fill_pixels_finds_a_white_collar() -> None:
    from clipscore_sr.io import fill_pixels

    tile = np.full((8, 8, 3), 120, np.uint8)
    tile[:2] = 255            # collar
    tile[4, 4] = (255, 0, 255)  # saturated in some bands only: real data, not fill
    mask = fill_pixels(tile)
    assert mask[:2].all() and mask.sum() == 16


def test_demo_with_a_local_clip_model(empty_caches: Path) -> None:
    model_dir, _ = write_local_dir(empty_caches / "tinyclip", TINY_VIT, PREP, seed=3)
    out = empty_caches / "demo"
    spec = f"local-dir:{model_dir}"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "-q", "--bootstrap", "100", "--clip", spec],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(out / "scores.csv")
    col = f"clipscore:{spec}"
    assert col in scores.columns
    assert scores[col].between(-1, 1).all() and scores[col].std() > 0


def test_demo_with_missing_clip_spec_fails_clearly(empty_caches: Path) -> None:
    res = CliRunner().invoke(main, ["demo", "--out", str(empty_caches / "d"), "-q", "--clip",
                                    f"local-dir:{empty_caches / 'nope'}"])
    assert res.exit_code == 2
    assert "--clip local-dir:" in res.output and "Traceback" not in res.output


def test_no_image_is_stored_twice() -> None:
    """The demo scene and the example judgement set share no file content (make_example.py skips the demo's
    tiles): one copy of each fact."""
    import hashlib

    repo = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for root in ("judgements/example", "clipscore_sr/data/demo"):
        for p in sorted((repo / root).rglob("*")):
            if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".tif", ".tiff"):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                assert digest not in seen, f"{p} duplicates {seen[digest]}"
                seen[digest] = p
    assert len(seen) > 40
