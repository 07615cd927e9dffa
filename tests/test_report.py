"""`srmetrics report`: the page's data model carries the input tables' numbers exactly; thumbnails use the
GT's display stretch (a 12-bit multi-band input is not black); the page has no remote reference; a study folder
gives what `study status` and `rank` print, a scene folder its summary, worst tiles and quick-look as written."""

from __future__ import annotations

import base64
import csv
import io as bytesio
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.report.build import STATIC, write_report
from clipscore_sr.report.data import build_model, disagreement, load_inputs
from clipscore_sr.results import read_table, summarize_by_method, write_table

from .conftest import SHARED
from .report_support import METHODS, make_agreement, make_rank, make_scene, make_scored, make_study


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


def test_fast_8bit_decode_gives_the_display_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thumbnails' 8-bit path (PNG header + imagecodecs, else Pillow) gives exactly the pixels of the general
    path (Displayed + to_display, no stretch) for the files it takes, and declines every other kind."""
    from PIL import Image

    from clipscore_sr.display import Displayed, to_display
    from clipscore_sr.report.thumbs import _decode_plain, _is_plain

    rng = np.random.default_rng(1)
    rgb = (np.kron(rng.random((6, 7, 3)), np.ones((5, 5, 1))) * 255).astype(np.uint8)
    files = {"rgb.png": lambda p: Image.fromarray(rgb).save(p), "grey.png": lambda p: Image.fromarray(rgb[..., 0]).save(p),
             "trns.png": lambda p: Image.fromarray(rgb).save(p, transparency=(1, 2, 3)),
             "jpeg.jpg": lambda p: Image.fromarray(rgb).save(p, quality=80),
             "palette.png": lambda p: Image.fromarray(rgb).convert("P").save(p),
             "rgba.png": lambda p: Image.fromarray(rgb).convert("RGBA").save(p),
             "sixteen.png": lambda p: Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(p),
             "tile.tif": lambda p: Image.fromarray(rgb).save(p)}
    for name, write in files.items():
        write(tmp_path / name)
    for name in files:
        p = str(tmp_path / name)
        a = _decode_plain(p, None)
        if name in ("rgb.png", "grey.png", "trns.png", "jpeg.jpg"):
            d = Displayed(p)
            want = to_display(d.data, np.zeros(d.data.shape[0]), np.ones(d.data.shape[0]))
            assert _is_plain(p) and a is not None and a.dtype == np.uint8, name
            assert np.array_equal(a if a.ndim == 3 else a[..., None], want), name
        else:
            assert a is None and not _is_plain(p), name
    assert _decode_plain(str(tmp_path / "rgb.png"), 35 * 30 - 1) is None  # over the pixel cap: the general path says so


def test_embed_full_with_an_unreadable_image(tmp_path: Path) -> None:
    """An image that cannot be read is a note and a blank panel, also with --embed-full (it was a KeyError)."""
    scores = make_scored(tmp_path, n=2)
    (tmp_path / "sr" / "esrgan" / "t1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    model, _ = build_model(load_inputs([scores]), tmp_path / "r.html", workers=1, embed_full=True)
    bad = [i for i, n in enumerate(model["images"]["name"]) if n == "t1.png" and model["images"]["thumb"][i] is None]
    assert len(bad) == 1 and model["images"]["full"][bad[0]] is None
    assert any("could not be read" in n for n in model["notes"])
    assert sum(f is not None and f.startswith("data:image/png") for f in model["images"]["full"]) == 2 + 2 * 2 - 1


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


# ------------------------------------------------------------------------------------------ study and scene folders
@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (SHARED / "samples" / "landsat").is_dir():
        pytest.skip("../shared sample data not present")
    return make_scene(tmp_path_factory.mktemp("scene"), SHARED)


def same(a, b) -> bool:
    """Equal, floats to the 10 significant digits `study status --json` prints (pandas' to_json)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def test_study_folder_gives_what_status_and_rank_print(study: Path, tmp_path: Path) -> None:
    status = json.loads(CliRunner().invoke(main, ["study", "status", str(study), "--json"]).output)
    res = CliRunner().invoke(main, ["rank", str(study / "judgements.csv"), "-o", str(tmp_path / "ranking.csv"), "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["report", str(study), "-o", str(tmp_path / "r.html"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    s = page_model((tmp_path / "r.html").read_text())["studies"][0]
    # progress, counted here from the files themselves
    with open(study / "judgements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    trials = json.loads((study / "study.json").read_text())["trials"]
    per = Counter(r["annotator"] for r in rows)
    assert (s["answers"], s["trials"], s["annotators"]) == (len(rows), len(trials), len(per)) == (54, 24, 3)
    assert s["finished"] == sum(n == len(trials) for n in per.values()) == 1
    assert s["kinds"] == dict(Counter(t["kind"] for t in trials)) and s["methods"] == ["nearest", "bicubic", "srcnn-tiny"]
    expected = {t["id"]: t["expected"] for t in trials if t["kind"] == "sentinel"}
    table = pd.DataFrame(s["status"]["rows"], columns=s["status"]["columns"])
    assert table["annotator"].tolist() == sorted(per)
    for r in table.itertuples():
        sent = [x for x in rows if x["annotator"] == r.annotator and x["pair_id"] in expected]
        assert r.answers == per[r.annotator] and r.sentinels == len(sent)
        assert r.sentinel_correct == sum(expected[x["pair_id"]] == x["choice"] for x in sent)
    assert table["flagged"].tolist() == [False, True, True]  # ann-b answers a sentinel with a tie, ann-c slips
    # every cell is what `study status --json` prints, and the alpha with its interval
    assert [list(r.values()) for r in status["annotators"]] and list(status["annotators"][0]) == s["status"]["columns"]
    for rec, row in zip(status["annotators"], s["status"]["rows"]):
        assert all(same(a, b) for a, b in zip(row, rec.values())), (row, rec)
    rel = s["reliability"]
    assert same(rel["krippendorff_alpha"], status["krippendorff_alpha"]) and rel["alpha_units"] == status["alpha_units"]
    assert all(same(a, b) for a, b in zip(rel["krippendorff_alpha_ci"], status["krippendorff_alpha_ci"]))
    # the ranking is `rank`'s, cell by cell; the scripted preference comes out on top
    back = pd.DataFrame(s["ranking"]["rows"], columns=s["ranking"]["columns"]).replace({None: np.nan})
    back["ci_note"] = back["ci_note"].replace({"": np.nan})  # an empty note is an empty CSV cell
    pd.testing.assert_frame_equal(back, read_table(tmp_path / "ranking.csv"), check_exact=True, check_dtype=False)
    assert back["method"].tolist() == ["srcnn-tiny", "bicubic", "nearest"] and back["ci_low"].notna().all()
    assert any("excluded" in n and "sentinel" in n for n in s["notes"])


def test_study_without_answers_shows_its_progress(tmp_path: Path) -> None:
    bare = make_study(tmp_path, answered=False)
    model, sheets = build_model(load_inputs([bare]), tmp_path / "r.html", workers=1)
    s = model["studies"][0]
    assert (s["answers"], s["annotators"], s["trials"], s["ranking"]) == (0, 0, 24, None)
    assert "no answers yet" in s["notes"][0] and "study serve" in s["notes"][0]
    assert model["rows"]["key"] == [] and sheets == []


def test_active_study_counts_its_schedule_and_ranks_with_its_model(tmp_path: Path) -> None:
    """An active study's study.json lists only its sentinels: the page must count the schedule (as `study status`
    does) and rank with the model the study was made for (as `rank --model thurstone`)."""
    from starlette.testclient import TestClient

    from clipscore_sr.demo import DATA_DIR
    from clipscore_sr.demo import METHODS as DEMO_METHODS
    from clipscore_sr.human.study.app import create_app

    scene, out = DATA_DIR / "scene", tmp_path / "active"
    res = CliRunner().invoke(main, ["study", "make", str(scene / "gt"),
                                    *[a for m in DEMO_METHODS for a in ("--method", f"{m}={scene / 'sr' / m}")],
                                    "--trials", "12", "--sentinels", "0.1", "--repeats", "0.1", "--design", "active",
                                    "--seed", "0", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    c = TestClient(create_app(out), base_url="http://127.0.0.1")
    for who, n in (("ann-a", 12), ("ann-b", 2)):  # scripted test annotators (not people): the left one, always
        nxt = c.post("/api/next", json={"annotator": who}).json()["next"]
        for _ in range(n):
            r = c.post("/api/answer", json={"annotator": who, "trial": nxt["id"], "shown_left": nxt["shown_left"],
                                            "choice": "left", "rt_ms": 500})
            assert r.status_code == 200, r.text
            nxt = r.json()["next"]
    status = json.loads(CliRunner().invoke(main, ["study", "status", str(out), "--json"]).output)
    res = CliRunner().invoke(main, ["rank", str(out / "judgements.csv"), "--model", "thurstone",
                                    "-o", str(tmp_path / "ranking.csv"), "-q"])
    assert res.exit_code == 0, res.output
    model, _ = build_model(load_inputs([out]), tmp_path / "r.html", workers=1)
    s = model["studies"][0]
    sched = json.loads((out / "study.json").read_text())["active"]["schedule"]
    assert (s["design"], s["model"], s["trials"]) == ("active", "thurstone", len(sched)) == ("active", "thurstone", 12)
    assert s["kinds"] == dict(Counter(x["kind"] for x in sched)) and sum(s["kinds"].values()) == 12
    assert (s["answers"], s["annotators"], s["finished"]) == (14, 2, 1)
    assert [r["answers"] for r in status["annotators"]] == [12, 2]
    want = read_table(tmp_path / "ranking.csv")
    got = pd.DataFrame(s["ranking"]["rows"], columns=s["ranking"]["columns"])
    np.testing.assert_allclose(got["score"].astype(float), want["score"], atol=1e-12)  # JOD, as rank --model thurstone


def test_scene_folder_summary_worst_tiles_and_quicklook(scene: Path, tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    res = CliRunner().invoke(main, ["report", str(scene), "-o", str(tmp_path / "r.html"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    e = page_model((tmp_path / "r.html").read_text())["scenes"][0]
    summary = json.loads((scene / "summary.json").read_text())
    c, s = e["scenes"][0], summary["scenes"]["sr"]
    assert len(e["scenes"]) == 1 and c["name"] == "sr" and e["settings"] == summary["settings"]
    assert c["aggregate"] == s["aggregate"] and c["flagged"] == s["flagged"] == {"cast": 1, "nodata": 2}
    # the worst tiles: every ranked tile, then the flagged ones, each with its cells of tiles.parquet exactly
    order = list(dict.fromkeys([i["key"] for items in s["worst"].values() for i in items] + s["outlined"]))
    worst = pd.DataFrame(c["worst"]["rows"], columns=c["worst"]["columns"])
    assert worst["key"].tolist() == order and set(s["flagged_tiles"]["cast"]) <= set(order)
    tiles = read_table(scene / "tiles.parquet").set_index("key")
    for col in ("x_min", "y_min", "x_max", "y_max", "row_off", "col_off", "lr-l1", "cast", "nodata-new-frac",
                "seam-step", "detail-gain", "lr-psnr", "flags"):
        want = [None if isinstance(v, float) and np.isnan(v) else v for v in tiles.loc[order, col]]
        assert worst[col].tolist() == want, col
    by_key = worst.set_index("key")["worst in"]
    for col, items in s["worst"].items():
        for i, item in enumerate(items):
            assert f"{col} #{i + 1}" in by_key[item["key"]]
            assert item["value"] == tiles.loc[item["key"], col]
    # the quick-look is embedded byte for byte; the map is described from the COG and linked relative to the page
    assert base64.b64decode(c["quicklook"].split(",", 1)[1]) == (scene / "quicklook" / "sr.png").read_bytes()
    with rasterio.open(scene / "maps" / "sr.tif") as m:
        assert c["map"]["crs"] == m.crs.to_string() == "EPSG:4326" and c["map"]["bands"] == list(m.descriptions)
    assert (tmp_path / c["map"]["file"]).resolve() == (scene / "maps" / "sr.tif").resolve()


def test_folders_that_are_neither_are_one_line_errors(scene: Path, study: Path, tmp_path: Path) -> None:
    def report(*paths: Path):
        return CliRunner().invoke(main, ["report", *map(str, paths), "-o", str(tmp_path / "r.html")])

    (tmp_path / "plain").mkdir()
    res = report(tmp_path / "plain")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "neither a study" in res.output and "scene evaluation" in res.output
    shutil.copytree(scene / "shards", tmp_path / "unmerged" / "shards")  # what `scene --shard I/N` leaves
    res = report(tmp_path / "unmerged")
    assert res.exit_code == 2 and "srmetrics scene-merge" in res.output and len(res.output.strip().splitlines()) == 1
    res = report(study / "judgements.csv")
    assert res.exit_code == 2 and "pass its study folder" in res.output
    broken = tmp_path / "broken-study"
    broken.mkdir()
    (broken / "study.json").write_text("{")
    res = report(broken)
    assert res.exit_code == 2 and "study.json: not valid JSON" in res.output
    help_text = " ".join(CliRunner().invoke(main, ["report", "--help"]).output.split())
    assert "study folders" in help_text and "scene evaluation folders" in help_text
    assert "my-study/" in help_text and "srmetrics report eval/" in help_text
