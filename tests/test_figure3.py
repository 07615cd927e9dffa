"""Figure 3: bar order, axis limits, error bars, human ceiling, deterministic bytes for png/pdf/svg."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from PIL import Image

from clipscore_sr.errors import SRMetricsError
from clipscore_sr.figures.figure3 import figure3, figure3_order
from clipscore_sr.human.agreement import agreement_from_scores


def _table(accs: dict[str, tuple[float, float]], ceiling: float | None = 0.86) -> pd.DataFrame:
    """An agreement-like table: metric -> (accuracy on ds-one, accuracy on ds-two), CI +-0.03."""
    rows = []
    for m, (x, y) in accs.items():
        for d, acc in (("ds-one", x), ("ds-two", y), ("all", (x + y) / 2)):
            rows.append(dict(metric=m, dataset=d, accuracy=acc, ci_low=acc - 0.03, ci_high=acc + 0.03,
                             human_ceiling=ceiling if ceiling is not None else np.nan))
    return pd.DataFrame(rows)


ACCS = {"psnr": (0.52, 0.50), "clipscore:clip-rn50": (0.80, 0.84), "ssim": (0.49, 0.55), "lpips": (0.70, 0.66)}
EXPECTED_ORDER = ["psnr", "ssim", "lpips", "clipscore:clip-rn50"]  # averages .51, .52, .68, .82


def test_bars_are_ordered_worst_to_best_by_average(tmp_path: Path) -> None:
    meta = figure3(_table(ACCS), tmp_path / "f.png")
    assert meta["metric_order"] == EXPECTED_ORDER
    assert meta["datasets"] == ["ds-one", "ds-two"]
    ax = meta["axes"]
    assert [t.get_text() for t in ax.get_xticklabels()] == EXPECTED_ORDER
    # the drawn rectangles: left to right, grouped per metric, heights in percent
    rects = sorted((p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0),
                   key=lambda p: p.get_x())
    assert len(rects) == 8
    expect = [100 * ACCS[m][k] for m in EXPECTED_ORDER for k in (0, 1)]
    np.testing.assert_allclose([r.get_height() for r in rects], expect, atol=1e-9)
    assert meta["ylim"] == (40.0, 90.0) and ax.get_ylim() == (40.0, 90.0)
    assert meta["ceilings"] == {"ds-one": pytest.approx(86.0), "ds-two": pytest.approx(86.0)}
    labels = [line.get_label() for line in ax.get_lines()]
    assert "chance (50%)" in labels and "human ceiling (ds-one)" in labels
    img = Image.open(tmp_path / "f.png")
    assert img.size[0] > 500 and img.size[1] > 300
    assert np.asarray(img.convert("L")).std() > 10  # not blank


def test_axis_extends_to_values_outside_40_90(tmp_path: Path) -> None:
    meta = figure3(_table({"a": (0.31, 0.45), "b": (0.97, 0.92)}, ceiling=None), tmp_path / "f.png")
    assert meta["ylim"] == (25.0, 100.0)
    assert meta["ceilings"] == {}
    assert not any(line.get_label().startswith("human ceiling") for line in meta["axes"].get_lines())


def test_single_dataset_and_pooled_only_tables(tmp_path: Path) -> None:
    t = _table(ACCS)
    meta = figure3(t[t["dataset"] == "all"], tmp_path / "f.svg")
    assert meta["datasets"] == ["all"] and meta["metric_order"] == EXPECTED_ORDER
    one = t[t["dataset"] == "ds-two"]
    order, datasets, avg = figure3_order(one)
    assert datasets == ["ds-two"] and order == ["psnr", "ssim", "lpips", "clipscore:clip-rn50"]
    assert avg["ssim"] == pytest.approx(0.55)


@pytest.mark.parametrize("ext", ["png", "pdf", "svg"])
def test_same_input_same_bytes(tmp_path: Path, ext: str) -> None:
    t = _table(ACCS)
    figure3(t, tmp_path / f"a.{ext}")
    figure3(t.copy(), tmp_path / f"b.{ext}")
    assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()


def test_same_bytes_in_a_fresh_interpreter(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    _table(ACCS).to_csv(csv, index=False)
    code = textwrap.dedent(f"""
        from clipscore_sr.figures.figure3 import figure3
        for ext in ("png", "pdf", "svg"):
            figure3({str(csv)!r}, {str(tmp_path)!r} + "/c." + ext)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    for ext in ("png", "pdf", "svg"):
        figure3(csv, tmp_path / f"d.{ext}")
        h = {k: hashlib.sha1((tmp_path / f"{k}.{ext}").read_bytes()).hexdigest() for k in "cd"}
        assert h["c"] == h["d"], ext


def test_from_a_real_agreement_table_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 60
    d = rng.normal(size=n)
    na = rng.binomial(3, 1 / (1 + np.exp(-d)))
    t = agreement_from_scores({"good": d + rng.normal(0, 0.3, n), "bad": rng.normal(size=n)},
                              {"good": np.zeros(n), "bad": np.zeros(n)}, na, 3 - na, higher_is_better=True,
                              datasets=np.where(np.arange(n) % 2 == 0, "x", "y"), bootstrap=100)
    t.to_csv(tmp_path / "agreement.csv", index=False)
    meta = figure3(tmp_path / "agreement.csv", tmp_path / "fig.pdf")
    assert meta["metric_order"] == ["bad", "good"]
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    bars = {(b["metric"], b["dataset"]): b for b in meta["bars"]}
    row = t[(t.metric == "good") & (t.dataset == "y")].iloc[0]
    assert bars[("good", "y")]["ci"] == (pytest.approx(100 * row.ci_low), pytest.approx(100 * row.ci_high))


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(SRMetricsError, match="unsupported figure format"):
        figure3(_table(ACCS), tmp_path / "f.gif")
    with pytest.raises(SRMetricsError, match="lacks column"):
        figure3(pd.DataFrame({"metric": ["a"], "dataset": ["x"]}), tmp_path / "f.png")
    with pytest.raises(SRMetricsError, match="not found"):
        figure3(tmp_path / "missing.csv", tmp_path / "f.png")
