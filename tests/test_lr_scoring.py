"""Scoring with references at another resolution: `srmetrics score --lr`, LR-only runs, strips, per-band,
bicubic baseline, maps, judgement-style pairs whose gt is the LR input, and the real WorldStrat sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from clipscore_sr import io
from clipscore_sr.cli import main
from clipscore_sr.metrics.consistency import downsample
from clipscore_sr.metrics.correctness import upsample_lr
from clipscore_sr.pipeline import score_pairs


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def triplets(tmp_path: Path) -> Path:
    """hr/, lr/ (x4 box means), sr/ (bicubic of LR, rounded to 8 bits) for 3 smooth 64x64 RGB scenes; lr_bad/ with a 17x17 LR."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for i in range(3):
        hr = ndimage.gaussian_filter(rng.random((64, 64, 3)), (2, 2, 0))
        hr = np.round(255 * (hr - hr.min()) / (hr.max() - hr.min())).astype(np.uint8)
        lr = hr.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        up = upsample_lr(torch.from_numpy(lr.transpose(2, 0, 1)[None] / 255.0), (64, 64), mode="bicubic")
        sr = np.round(up[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)  # what --baseline bicubic computes
        _write(tmp_path / "hr" / f"s{i}.png", hr)
        _write(tmp_path / "lr" / f"s{i}.png", lr)
        _write(tmp_path / "sr" / f"s{i}.png", sr)
        _write(tmp_path / "lr_bad" / f"s{i}.png", lr if i else np.zeros((17, 17, 3), np.uint8))
        strip = np.concatenate([lr, np.zeros_like(lr), lr], axis=0)  # 3 frames stacked vertically
        _write(tmp_path / "strips" / f"s{i}.png", strip)
    return tmp_path


def test_lr_only_run_and_full_reference_errors(triplets: Path) -> None:
    out = triplets / "lr_only.csv"
    r = run("score", "--lr", str(triplets / "lr"), str(triplets / "sr"), "-m", "lr-l1,lr-psnr,lr-sam,lr-shift",
            "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert list(df.columns[3:]) == ["lr-l1", "lr-psnr", "lr-sam", "lr-shift", "lr-shift-dy", "lr-shift-dx", "error"]
    assert (df["lr-psnr"] > 25).all() and (df["lr-shift"] < 0.5).all() and df["error"].isna().all()
    # a full-reference metric without HR: one-line error per pair, exit 1
    r = run("score", "--lr", str(triplets / "lr"), str(triplets / "sr"), "-m", "lr-psnr,psnr", "-o", str(out), "-q")
    assert r.exit_code == 1
    df = pd.read_csv(out)
    assert df["error"].str.contains("psnr: needs an HR reference").all() and df["lr-psnr"].notna().all()


def test_non_integer_scale_is_a_per_pair_error(triplets: Path) -> None:
    df = score_folders_with_lr(triplets, "lr_bad", ["psnr", "lr-l1"])
    bad = df.set_index("key").loc["s0"]
    assert "same integer in both axes" in bad["error"]
    assert df.set_index("key").loc[["s1", "s2"], "error"].eq("").all()


def score_folders_with_lr(root: Path, lr_name: str, metrics, **kw) -> pd.DataFrame:
    pairing = io.pair_folders(root / "hr", root / "sr")
    io.attach_lr(pairing.pairs, root / lr_name)
    return score_pairs(pairing.pairs, metrics, progress=False, workers=0, **kw)


def test_strip_frames_and_mean(triplets: Path) -> None:
    single = score_folders_with_lr(triplets, "lr", ["lr-l1"])["lr-l1"]
    first = score_folders_with_lr(triplets, "strips", ["lr-l1"], lr_frame="1")["lr-l1"]
    mean = score_folders_with_lr(triplets, "strips", ["lr-l1"], lr_frame="mean")["lr-l1"]
    np.testing.assert_allclose(first, single, atol=1e-12)
    assert (mean > first + 0.05).all()  # the mean of frames 1..3 is 2/3 of the LR: far from SR
    with pytest.raises(Exception, match="frame numbers are 1-based"):
        score_folders_with_lr(triplets, "strips", ["lr-l1"], lr_frame="0")


def test_cli_baseline_per_band_maps_and_spectral(triplets: Path) -> None:
    out = triplets / "all.csv"
    maps = triplets / "maps"
    r = run("score", str(triplets / "hr"), str(triplets / "sr"), "--lr", str(triplets / "lr"),
            "-m", "psnr,ssim,ergas,sam,ndvi-error,correctness,lr-psnr", "--per-band", "--baseline", "bicubic",
            "--bands", "3,2,1", "--red-band", "1", "--nir-band", "2", "--maps", str(maps), "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    for col in ("psnr-b3", "ssim-b1", "psnr@bicubic", "psnr-gain", "ssim-gap-closed", "ergas@bicubic",
                "correctness-improvement", "correctness-hallucination-gap-closed", "lr-psnr-gain"):
        assert col in df.columns, col
    assert "psnr-gap-closed" not in df.columns  # unbounded
    # SR *is* bicubic(LR) up to PNG rounding: gains are ~0 and the baseline values equal the SR's
    np.testing.assert_allclose(df["psnr"], df["psnr@bicubic"], atol=0.05)
    np.testing.assert_allclose(df["ssim-gain"], 0, atol=2e-3)
    assert sorted(p.name for p in maps.iterdir()) == sorted(
        [f"s{i}.correctness.png" for i in range(3)] + [f"s{i}.correctness-figure.png" for i in range(3)])
    # ergas from the LR size (scale 4) equals --scale 4
    r = run("score", str(triplets / "hr"), str(triplets / "sr"), "-m", "ergas", "--scale", "4", "-o",
            str(triplets / "e.csv"), "-q")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(pd.read_csv(triplets / "e.csv")["ergas"], df["ergas"], rtol=1e-12)
    r = run("score", str(triplets / "hr"), str(triplets / "sr"), "-m", "ndvi-error", "--bands", "3,2",
            "--red-band", "1", "--nir-band", "2", "-q")
    assert r.exit_code == 2 and "--red-band 1: band 1 is not among --bands 3,2" in r.output
    r = run("score", str(triplets / "hr"), str(triplets / "sr"), "-m", "psnr", "--baseline", "bicubic", "-q")
    assert r.exit_code == 2 and "needs the LR inputs" in r.output


def test_metric_option_reaches_only_the_named_metric(triplets: Path) -> None:
    """--metric-option NAME.KEY=VALUE: the value (YAML) reaches the metrics named NAME, equals the Python API
    with that option, lands in the provenance; unknown names, keys and bad syntax are one-line errors."""
    from clipscore_sr.metrics import get_metric

    hr, sr, lr = (triplets / d for d in ("hr", "sr", "lr"))
    out = triplets / "opt.csv"
    r = run("score", str(hr), str(sr), "--lr", str(lr), "-m", "correctness,lr-shift", "-o", str(out), "-q",
            "--metric-option", "correctness.patch_size=4", "--metric-option", "correctness.mask_rule=any",
            "--metric-option", "lr-shift.upsample_factor=20")
    assert r.exit_code == 0, r.output
    # a full id targets that id only, and wins over its name; numbers as written (1e-1, 010)
    r2 = run("score", str(hr), str(sr), "--lr", str(lr), "-m", "correctness,correctness:l2,lr-psnr", "-q",
             "-o", str(triplets / "ids.csv"), "--metric-option", "correctness.patch_size=2",
             "--metric-option", "correctness:l2.patch_size=010", "--metric-option", "lr-psnr.psf_sigma=1e-1")
    assert r2.exit_code == 0, r2.output
    import json

    meta = json.loads((triplets / "ids.csv.meta.json").read_text())
    options = {m["id"]: m["options"] for m in meta["metrics"]}
    assert options["correctness"]["patch_size"] == 2 and options["correctness:l2"]["patch_size"] == 10
    assert options["lr-psnr"]["psf_sigma"] == 0.1
    assert "psf_sigma" not in options["correctness"] and "patch_size" not in options["lr-psnr"]  # no leaks
    df = pd.read_csv(out).set_index("key")
    m = get_metric("correctness", patch_size=4, mask_rule="any")
    shift = get_metric("lr-shift", upsample_factor=20)
    for key in df.index:
        def load(d: Path, key: str = key) -> torch.Tensor:
            return torch.from_numpy(np.asarray(Image.open(d / f"{key}.png"), np.float64).transpose(2, 0, 1)[None] / 255)

        want = m.compute(load(sr), load(hr), lr=load(lr), data_range=torch.tensor([255.0]))
        for col, value in want.items():
            assert df.loc[key, col] == pytest.approx(float(value[0]), abs=1e-12), col
        got = shift.compute(load(sr), load(lr))
        assert df.loc[key, "lr-shift"] == pytest.approx(float(got["lr-shift"][0]), abs=1e-12)
        assert round(df.loc[key, "lr-shift"] * 20, 6).is_integer()  # 1/20 px steps
    r = run("score", str(hr), str(sr), "--lr", str(lr), "-m", "correctness", "-q", "-o", str(triplets / "none.csv"),
            "--metric-option", "correctness.threshold=q100")  # nothing kept: the per-pair error says why
    assert r.exit_code == 1 and "no location kept" in r.output, r.output
    for args, message in (
        (("correctness.patchsize=4",), "correctness has no option 'patchsize' (its options: clip, gammas, harmonize,"),
        (("psnr.crop_border=2",), "no metric 'psnr' among the metrics"),
        (("correctness:lpips.patch_size=32",), "no metric 'correctness:lpips' among the metrics"),
        (("correctness.gammas=[a,b,c]",), "gammas=['a', 'b', 'c']: expected three finite numbers >= 0"),
        (("correctness.gammas=3",), "gammas=3: expected three finite numbers"),
        (("correctness.harmonize=nope",), "harmonize='nope': expected true or false"),
        (("correctness.clip=123",), "clip=123: expected a CLIP spec"),
        (("correctness.scale=2",), "use --scale for scale"),
        (("correctness",), "expected NAME.KEY=VALUE"),
        (("correctness.threshold=[q7",), "VALUE is not valid YAML"),
        (("correctness.mask_rule=all",), "mask_rule='all': expected 'ref' or 'any'"),
    ):
        r = run("score", str(hr), str(sr), "--lr", str(lr), "-m", "correctness", "-q", "--metric-option", *args)
        assert r.exit_code == 2 and message in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output


def test_gt_that_is_the_lr_input(triplets: Path) -> None:
    """Judgement files of real-world SR: gt is the LR input. LR-reference metrics work, others fail per pair."""
    pairs = [io.Pair(f"s{i}", str(triplets / "lr" / f"s{i}.png"), str(triplets / "sr" / f"s{i}.png"))
             for i in range(3)]
    df = score_pairs(pairs, ["lr-psnr", "ssim"], progress=False, workers=0, lr_from_gt=True)
    assert df["lr-psnr"].gt(25).all()
    assert df["error"].str.startswith("ssim: needs an HR reference of the SR's size").all()
    plain = score_pairs(pairs, ["lr-psnr"], progress=False, workers=0)
    assert plain["error"].str.contains("size mismatch").all()


def test_mixed_sizes_lets_size_agnostic_metrics_through(triplets: Path) -> None:
    from clipscore_sr.metrics.base import Metric

    class Agnostic(Metric):  # stands in for clipscore (no weights in tests): any reference size
        name = "mean-diff"
        higher_is_better = False
        size_agnostic = True

        def compute(self, sr, gt, **kw):
            return (sr.mean(dim=(1, 2, 3)) - gt.mean(dim=(1, 2, 3))).abs().double()

    pairs = [io.Pair(f"s{i}", "", str(triplets / "sr" / f"s{i}.png"), lr=str(triplets / "lr" / f"s{i}.png"))
             for i in range(3)]
    df = score_pairs(pairs, [Agnostic(), "psnr"], progress=False, workers=0, mixed_sizes=True)
    assert df["mean-diff"].lt(0.01).all() and df["error"].str.startswith("psnr: needs an HR").all()
    from clipscore_sr.metrics.clip.metric import ClipScore

    assert ClipScore.size_agnostic


# ------------------------------------------------------------------------------------------------------
# the real WorldStrat sample: L1 = Sentinel-2 revisit (400x400), SR = model output (800x800), HR = SPOT
def _worldstrat(shared_dir: Path) -> Path:
    d = shared_dir / "samples" / "worldstrat"
    if not all((d / f).is_file() for f in ("SR.png", "L1.png", "HR.png")):
        pytest.skip("WorldStrat sample not present")
    return d


def test_worldstrat_lr_consistency_sr_vs_l1(shared_dir: Path) -> None:
    d = _worldstrat(shared_dir)
    sr = torch.from_numpy(io.read_image(d / "SR.png").data[None])
    l1 = torch.from_numpy(io.read_image(d / "L1.png").data[None])
    from clipscore_sr.metrics import get_metric

    vals = {m: get_metric(m)(sr, l1) for m in ("lr-l1", "lr-psnr", "lr-sam", "lr-shift")}
    assert all(torch.isfinite(v).all() for x in vals.values() for v in (x.values() if isinstance(x, dict) else [x]))
    # SR made from this revisit is more consistent with it than the same SR moved by 4 LR pixels
    moved = torch.roll(sr, 8, dims=-1)
    assert get_metric("lr-psnr")(moved, l1) < vals["lr-psnr"]
    after = get_metric("lr-shift")(moved, l1)
    assert (after["lr-shift-dx"] - vals["lr-shift"]["lr-shift-dx"]).item() == pytest.approx(4.0, abs=0.1)
    assert (after["lr-shift-dy"] - vals["lr-shift"]["lr-shift-dy"]).item() == pytest.approx(0.0, abs=0.05)


def test_worldstrat_correctness_sr_vs_hr_with_l1(shared_dir: Path, tmp_path: Path) -> None:
    d = _worldstrat(shared_dir)
    pairs = [io.Pair("worldstrat", str(d / "HR.png"), str(d / "SR.png"), lr=str(d / "L1.png"))]
    df = score_pairs(pairs, ["correctness", "lr-psnr"], progress=False, workers=0, maps_dir=tmp_path)
    row = df.iloc[0]
    assert row["error"] == ""
    fr = [row[f"correctness-{k}"] for k in ("improvement", "omission", "hallucination")]
    assert sum(fr) == pytest.approx(1.0) and all(0 <= f <= 1 for f in fr)
    png = np.asarray(Image.open(tmp_path / "worldstrat.correctness.png"))
    assert png.shape == (800, 800, 3)
    up = downsample(torch.from_numpy(io.read_image(d / "SR.png").data[None]).double(), 2)
    assert up.shape[-1] == 400


def test_agreement_with_judgements_whose_gt_is_lr(triplets: Path) -> None:
    """A real-world SR study (no HR): gt = LR input; lr-psnr agrees with votes for the consistent output,
    psnr gives a one-line error per pair."""
    from clipscore_sr.human.agreement_run import run_agreement

    rng = np.random.default_rng(5)
    rows = []
    for i in range(3):
        sr = np.asarray(Image.open(triplets / "sr" / f"s{i}.png")).astype(float)
        noisy = np.clip(sr + rng.normal(0, 25, sr.shape), 0, 255).astype(np.uint8)
        _write(triplets / "noisy" / f"s{i}.png", noisy)
        rows.append({"pair_id": f"p{i}", "dataset": "real", "gt": f"lr/s{i}.png", "a": f"sr/s{i}.png",
                     "b": f"noisy/s{i}.png", "choice": "a"})
    csv = triplets / "judgements.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    run = run_agreement(csv, ["lr-psnr", "lr-l1"], bootstrap=0, workers=0)
    assert run.pairs["agree:lr-psnr"].eq(1.0).all() and run.pairs["agree:lr-l1"].eq(1.0).all()
    from clipscore_sr.errors import SRMetricsError

    scores = triplets / "scores.csv"
    with pytest.raises(SRMetricsError, match="no pair has both"):
        run_agreement(csv, ["psnr"], bootstrap=0, workers=0, scores_out=scores)
    assert pd.read_csv(scores)["error"].str.startswith("psnr: needs an HR reference of the SR's size").all()


def test_pairs_csv_lr_column_and_sidecar_reference(triplets: Path) -> None:
    import json

    rows = [{"gt": f"hr/s{i}.png", "sr": f"sr/s{i}.png", "lr": f"lr/s{i}.png"} for i in range(3)]
    pd.DataFrame(rows).to_csv(triplets / "pairs.csv", index=False)
    out = triplets / "p.json"
    r = run("score", "--pairs", str(triplets / "pairs.csv"), "-m", "psnr,lr-psnr", "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert [m.get("reference", "hr") for m in meta["metrics"]] == ["hr", "lr"]
