"""`srmetrics report`: the page's data model carries the input tables' numbers exactly; thumbnails use the
GT's display stretch (a 12-bit multi-band input is not black); the page has no remote reference."""

from __future__ import annotations

import base64
import io as bytesio
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.report.build import STATIC, write_report
from clipscore_sr.report.data import build_model, disagreement, load_inputs
from clipscore_sr.results import read_table, summarize_by_method, write_table

from .report_support import METHODS, make_agreement, make_rank, make_scored


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scored(tmp_path_factory.mktemp("rep"))


def page_model(html: str) -> dict:
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, flags=re.S)
    return json.loads(m.group(1))


def test_model_numbers_equal_the_tables(scored: Path, tmp_path: Path) -> None:
    agreement = make_agreement(tmp_path / "agreement.csv")
    rank = make_rank(tmp_path / "ranking.csv")
    res = write_report([scored, tmp_path / "agreement.csv", tmp_path / "ranking.csv"], tmp_path / "r.html",
                       lr_dir=str(scored.parent / "lr"), workers=1)
    model = page_model((tmp_path / "r.html").read_text())
    table = read_table(scored)
    assert res.n_rows == len(table) == 2 * 4 and model["methods"] == list(METHODS)
    rows = model["rows"]
    for i, key in enumerate(table["key"]):  # per row: method, image key and every value exactly
        method, image = key.split("/", 1)
        assert model["methods"][rows["method"][i]] == method and rows["key"][i] == image
        for m in ("psnr", "ssim"):
            assert rows["values"][m][i] == table[m].iat[i]
    summary, means = summarize_by_method(table.assign(method=table["key"].str.split("/").str[0]), ["psnr", "ssim"])
    got = pd.DataFrame(model["summary"]["rows"], columns=model["summary"]["columns"])
    pd.testing.assert_frame_equal(got[["method", "metric", "mean", "ci95_low", "ci95_high", "count"]],
                                  summary[["method", "metric", "mean", "ci95_low", "ci95_high", "count"]],
                                  check_exact=True, check_dtype=False)
    assert model["best"] == {m: [means[m].idxmax()] for m in ("psnr", "ssim")}
    # agreement and rank tables: every cell, NaN as null
    for name, df in (("agreement", agreement), ("rank", rank)):
        t = model[name][0]
        assert t["columns"] == list(df.columns)
        back = pd.DataFrame(t["rows"], columns=t["columns"]).replace({None: np.nan})
        pd.testing.assert_frame_equal(back, read_table(tmp_path / f"{'agreement' if name == 'agreement' else 'ranking'}.csv"),
                                      check_exact=True, check_dtype=False)
    # provenance from the meta file; LR panels paired by image key; images shown full size from relative paths
    prov = model["provenance"][0]
    meta = json.loads(Path(str(scored) + ".meta.json").read_text())
    assert prov["data_range"] == meta["settings"]["data_range"] == 255.0
    assert [m["id"] for m in prov["metrics"]] == ["psnr", "ssim"]
    img = model["images"]
    assert all(i >= 0 and img["kind"][i] == "lr" for i in rows["lr"])
    for i in rows["sr"]:
        assert (tmp_path / img["full"][i]).resolve().is_file()
        assert img["thumb"][i][3] <= 48 and img["size"][i] == [32, 32]


def test_method_per_file_and_directions(tmp_path: Path, scored: Path) -> None:
    """One table per method (keys without a method) -> the file stem names the method; lower-is-better
    metrics pick the smallest mean as best; a missing meta file is a note, not an error."""
    t = read_table(scored)
    for m in METHODS:
        part = t[t["key"].str.startswith(m + "/")].assign(key=lambda d: d["key"].str.split("/").str[1])
        part = part.assign(lpips=np.linspace(0.1, 0.4, len(part)) + (0.5 if m == "bicubic" else 0.0))
        write_table(part, tmp_path / f"{m}.csv")
    model, _ = build_model(load_inputs([tmp_path / f"{m}.csv" for m in METHODS]), tmp_path / "r.html", workers=1)
    assert model["methods"] == list(METHODS)
    assert {m["id"]: m["higher"] for m in model["metrics"]} == {"psnr": True, "ssim": True, "lpips": False}
    assert model["best"]["lpips"] == ["esrgan"]
    assert any("no meta file" in n for n in model["notes"])


def test_disagreement_is_the_rank_spread() -> None:
    rows = pd.DataFrame({"method": ["a"] * 4, "psnr": [1.0, 2.0, 3.0, 4.0], "lpips": [0.1, 0.2, 0.3, 0.4]})
    # psnr: higher is better; lpips lower: the same order of images means full disagreement at the ends
    d = disagreement(rows, ["psnr", "lpips"], {"psnr": True, "lpips": False})
    assert d.tolist() == pytest.approx([0.75, 0.25, 0.25, 0.75])
    same = disagreement(rows, ["psnr", "lpips"], {"psnr": True, "lpips": True})
    assert same.tolist() == [0.0] * 4


def _thumb(model: dict, sheets: list[str], image_id: int) -> np.ndarray:
    from PIL import Image

    s, x, y, w, h = model["images"]["thumb"][image_id]
    sheet = np.asarray(Image.open(bytesio.BytesIO(base64.b64decode(sheets[s]))).convert("RGB"))
    return sheet[y:y + h, x:x + w]


def test_twelve_bit_multiband_thumbnails_are_stretched_not_black(tmp_path: Path) -> None:
    scores = make_scored(tmp_path, n=2, bands=4, dtype="uint16", data_range=4095.0, band_sel=(3, 2, 1), ext=".tif")
    raw = read_table(scores)
    assert "psnr" in raw and raw["error"].fillna("").eq("").all()
    model, sheets = build_model(load_inputs([scores]), tmp_path / "r.html", workers=1)
    assert model["provenance"][0]["data_range"] == 4095.0 and model["provenance"][0]["bands"] == [3, 2, 1]
    for i in model["rows"]["gt"] + model["rows"]["sr"]:
        px = _thumb(model, sheets, i)
        assert px.shape[:2] == (32, 32) and px.mean() > 60 and px.std() > 20  # stretched from the GT percentiles
        assert model["images"]["full"][i] is None  # a browser cannot show 16-bit 4-band TIFF as stored
    # the same data shown as stored (divided by 65535, no stretch) would be nearly black
    from clipscore_sr.io import read_array
    assert read_array(tmp_path / "gt" / "t0.tif")[0].max() / 65535 < 0.07
    full, fsheets = build_model(load_inputs([scores]), tmp_path / "r.html", workers=1, embed_full=True)
    uri = full["images"]["full"][full["rows"]["gt"][0]]
    assert uri.startswith("data:image/png;base64,")


def test_page_is_offline_and_escapes_its_data(tmp_path: Path) -> None:
    for f in STATIC.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "@import" not in text, f.name
    df = pd.DataFrame({"key": ["bicubic/</script><script>alert(1)</script>", "esrgan/x"], "gt": ["", ""],
                       "sr": ["", ""], "psnr": [float("inf"), 20.5], "error": ["", ""]})
    write_table(df, tmp_path / "s.csv")
    res = write_report([tmp_path / "s.csv"], tmp_path / "r.html", workers=1)
    html = (tmp_path / "r.html").read_text()
    # the data cannot end its <script> element: only the page's own two scripts and the sheets close one
    assert "default-src 'none'" in html and html.count("</script>") == 2 + res.n_sheets
    model = page_model(html)
    assert model["rows"]["key"][0] == "</script><script>alert(1)</script>"
    assert model["rows"]["values"]["psnr"] == ["inf", 20.5]


def test_cli_report_and_its_errors(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "x" / "report.html"
    res = CliRunner().invoke(main, ["report", str(scored), "-o", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert f"-> {out}" in res.output and out.stat().st_size > 0
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    res = CliRunner().invoke(main, ["report", str(tmp_path / "odd.csv"), "-o", str(out)])
    assert res.exit_code == 2 and res.output.startswith("Error: ") and "not a table the report knows" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["report", str(scored), "-o", str(out), "--embed-full", "--embed-limit", "0.001"])
    assert res.exit_code == 2 and "exceed --embed-limit" in res.output
    res = CliRunner().invoke(main, ["report", str(scored), "-o", str(tmp_path / "r.pdf")])
    assert res.exit_code == 2 and "an .html file" in res.output
    help_text = CliRunner().invoke(main, ["report", "--help"]).output
    assert "Examples:" in help_text and "srmetrics report" in help_text.split("Examples:")[1]
