"""Hardening: annotator reliability linear in the number of annotators; '$' in names never breaks a figure;
checkpoints checked against their architecture before anything big is allocated (one-line errors). Votes here
are constructed, never human."""

from __future__ import annotations

import json
import resource
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from clipscore_sr.cli import main

# --------------------------------------------------------------------------------------------------
# annotator reliability: one annotator per vote


def test_reliability_with_one_annotator_per_vote_is_linear_and_exact() -> None:
    from clipscore_sr.human.reliability import annotator_reliability

    n_units = 10_000  # 4 votes per unit, each by its own annotator: three choose x, one chooses y
    unit = np.repeat(np.arange(n_units), 4)
    minority = np.tile([False, False, False, True], n_units)
    df = pd.DataFrame({"dataset": "d", "gt": [f"g{u}.png" for u in unit], "a": [f"x{u}.png" for u in unit],
                       "b": [f"y{u}.png" for u in unit], "choice": np.where(minority, "b", "a"),
                       "annotator": [f"u{k}" for k in range(len(unit))], "trial_kind": "real"})
    rel = annotator_reliability(df, min_agreement=0.5)  # was about 45 s when quadratic (time: bench_rank.py)
    t = rel.annotators
    assert len(t) == len(df) and list(t["annotator"][:3]) == ["u0", "u1", "u2"]
    assert (t["n_votes"] == 1).all() and (t["n_loo"] == 1).all()
    np.testing.assert_array_equal(t["loo_agreement"].to_numpy(), np.where(minority, 0.0, 1.0))
    assert rel.n_dropped_votes == n_units and len(rel.dropped) == n_units
    assert rel.dropped["u3"] == "leave-one-out agreement 0.00 < 0.5"
    # by hand: per unit D_o = (16 - 9 - 1) / 3 = 2; n = 4U, n_x = 3U, n_y = U
    u = n_units
    assert rel.alpha == pytest.approx(1 - (4 * u - 1) * 2 * u / (16 * u * u - 9 * u * u - u * u), abs=1e-12)
    assert rel.n_alpha_units == n_units


# --------------------------------------------------------------------------------------------------
# '$' in method, file and dataset names (matplotlib math text)

ODD = ("m$_$", "$\\bad$", "a$b")


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure3_with_dollar_names(tmp_path: Path) -> None:
    from clipscore_sr.figures.figure3 import figure3

    rows = [dict(metric=m, dataset=d, accuracy=0.6 + 0.05 * i, ci_low=0.55, ci_high=0.75, human_ceiling=0.8)
            for i, m in enumerate(ODD) for d in ("d$^$", "e$_$")]
    meta = figure3(pd.DataFrame(rows), tmp_path / "f.png", title="t$_$", ylabel="y$^$")
    _assert_png(tmp_path / "f.png")
    assert set(meta["metric_order"]) == set(ODD)


def test_figure7_with_dollar_names(tmp_path: Path) -> None:
    from clipscore_sr.figures.figure7 import figure7

    runs = []
    for k, name in enumerate(("run$_$", "run$^$")):
        d = tmp_path / name
        d.mkdir()
        pd.DataFrame({"step": [0, 10, 20], "time_s": [1.0, 2.0, 3.0],
                      "val_clipscore$_$": [0.5, 0.7 + 0.05 * k, 0.9]}).to_csv(d / "log.csv", index=False)
        runs.append(d)
    figure7(runs, tmp_path / "f7.png", target=None)
    figure7(runs, tmp_path / "f7b.png", target=None, labels=list(ODD[:2]), title="t$_$")
    _assert_png(tmp_path / "f7.png")
    _assert_png(tmp_path / "f7b.png")


def test_ranking_figures_with_dollar_names(tmp_path: Path) -> None:
    from clipscore_sr.figures.ranking import ranking_agreement_figure, ranking_figure
    from clipscore_sr.human.ranking import rank_methods
    from clipscore_sr.human.votes import Votes, simulate_votes

    df = simulate_votes([0.0, 0.3, 1.0], 300, 20, seed=0)
    rename = dict(zip(sorted(set(df["a_method"])), ODD))
    votes = Votes.from_arrays(df["a_method"].map(rename), df["b_method"].map(rename),
                              df["choice"].map({"a": 1.0, "b": 0.0, "tie": 0.5}), scene=df["gt"],
                              dataset=pd.Series(np.where(df["gt"].rank(method="dense") % 2 == 0, "d$_$", "e$^$"),
                                                index=df.index))
    r = rank_methods(votes, bootstrap=20, by_dataset=True)
    meta = ranking_figure(r.table, r.pairs, tmp_path / "r.png", title="t$^$")
    _assert_png(tmp_path / "r.png")
    assert all(set(order) == set(ODD) for order in meta["order"].values())
    methods = pd.DataFrame([dict(metric=m, dataset="all", method=x, human_rank=i + 1, metric_rank=3 - i)
                            for m in ("p$_$", "q") for i, x in enumerate(ODD)])
    summary = pd.DataFrame([dict(metric=m, dataset="all", tau_b=-1.0, tau_ci_low=-1.0, tau_ci_high=0.5)
                            for m in ("p$_$", "q")])
    ranking_agreement_figure(methods, summary, tmp_path / "ra.png", reference="people$_$")
    _assert_png(tmp_path / "ra.png")


def test_montage_with_dollar_names(tmp_path: Path) -> None:
    from clipscore_sr.figures.montage import montage

    scores = {m: pd.DataFrame({"key": ["k$_$", "k2"], "gt": ["", ""], "sr": ["", ""], "error": ["", ""],
                               "psnr": [30.0 + i, 10.0], "lpips": [0.5, 0.5 - 0.1 * i]}) for i, m in enumerate(ODD)}
    meta = montage(scores, ["psnr", "lpips"], tmp_path / "m.png", higher_is_better={"psnr": True, "lpips": False},
                   title="t$^$")
    _assert_png(tmp_path / "m.png")
    assert meta["keys"] == ["k$_$", "k2"]


def test_correctness_maps_with_dollar_names(tmp_path: Path) -> None:
    from clipscore_sr.figures.correctness_maps import draw_correctness_maps

    rng = np.random.default_rng(0)
    hr, sr, lr = rng.random((3, 16, 16)), rng.random((3, 16, 16)), rng.random((3, 4, 4))
    classes = rng.integers(-1, 3, (16, 16))
    draw_correctness_maps(lr, sr, hr, classes, (0.5, 0.3, 0.2), tmp_path / "c.png", title="m$_$: correctness",
                          lr_stats={"lr-psnr$_$": 30.0})
    _assert_png(tmp_path / "c.png")


# --------------------------------------------------------------------------------------------------
# checkpoints: shapes and sizes checked against the architecture before allocating


def _raw_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]],
                     metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file written by hand: its header may declare any shape (empty tensors take no byte)."""
    header: dict = {}
    blob, off = b"", 0
    for k, (dtype, shape, data) in tensors.items():
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blob += data
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)
    return path


def _bomb(path: Path, num_feat: int = 10 ** 9) -> Path:
    """An RRDBNet state dict of 3 empty tensors whose shapes say num_feat = ``num_feat``."""
    return _raw_safetensors(path, {"conv_first.weight": ("F32", [num_feat, 24, 0, 3], b""),
                                   "body.0.rdb1.conv1.weight": ("F32", [32, num_feat, 3, 0], b""),
                                   "conv_last.weight": ("F32", [3, num_feat, 0, 3], b"")})


def _tiny(tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import load_file

    from clipscore_sr.baselines import build_generator, save_checkpoint

    model = build_generator("esrgan", "small", 2, 4, num_feat=8, num_block=1, num_grow_ch=4)
    ckpt = save_checkpoint(model, tmp_path / "tiny" / "g.safetensors", extra={"tile": 16})
    return load_file(str(ckpt)), json.loads(ckpt.with_suffix(".json").read_text())


def _lr_input(tmp_path: Path) -> Path:
    from PIL import Image

    (tmp_path / "in").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(tmp_path / "in" / "s.png")
    return tmp_path / "in"


def _generate(tmp_path: Path, ckpt: Path):
    return CliRunner().invoke(main, ["generate", "--checkpoint", str(ckpt), "--input", str(_lr_input(tmp_path)),
                                     "--out", str(tmp_path / "out"), "--device", "cpu", "-q"])


def test_header_declaring_absurd_shapes_fails_fast_in_one_line(tmp_path: Path) -> None:
    from clipscore_sr.baselines.checkpoints import CheckpointError, load_checkpoint

    path = _bomb(tmp_path / "bomb.safetensors")
    assert path.stat().st_size < 1024
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)  # refused from the header: nothing of the declared size is allocated
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024 < 200  # MiB
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "num_feat=1000000000" in msg
    # the same through .pth and through our metadata
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(10 ** 9, 24, 0, 3),
                               "body.0.rdb1.conv1.weight": torch.zeros(32, 10 ** 9, 3, 0),
                               "conv_last.weight": torch.zeros(3, 10 ** 9, 0, 3)}}, tmp_path / "bomb.pth")
    with pytest.raises(CheckpointError, match="num_feat=1000000000"):
        load_checkpoint(tmp_path / "bomb.pth")
    state, meta = _tiny(tmp_path)
    meta["config"]["num_feat"] = 10 ** 9
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "described.safetensors"), metadata={"clipscore_sr": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"described\.safetensors: architecture argument num_feat=1000000000"):
        load_checkpoint(tmp_path / "described.safetensors")


def test_header_bomb_through_the_cli_is_one_error_line(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "bomb.safetensors")
    res = _generate(tmp_path, path)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and str(path) in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_state_dict_checked_on_the_meta_device_before_the_model_is_built(tmp_path: Path, monkeypatch) -> None:
    """A config within the limits but far larger than the weights: the mismatch is found without building the
    large model for real (only a meta-device shell)."""
    from safetensors.torch import save_file

    from clipscore_sr.baselines import registry
    from clipscore_sr.baselines.checkpoints import CheckpointError, load_checkpoint

    built: list[str] = []

    class Recording(registry.GENERATORS["esrgan"]):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs) -> None:
            built.append(torch.empty(()).device.type)
            super().__init__(**kwargs)

    state, meta = _tiny(tmp_path)
    monkeypatch.setitem(registry.GENERATORS, "esrgan", Recording)
    meta["config"].update(num_feat=512, num_grow_ch=512)
    save_file(state, str(tmp_path / "wide.safetensors"), metadata={"clipscore_sr": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"wide\.safetensors: layer '.*' has shape"):
        load_checkpoint(tmp_path / "wide.safetensors")
    assert built == ["meta"]


def _tampered(tmp_path: Path, case: str) -> Path:
    from safetensors.torch import save_file

    state, meta = _tiny(tmp_path)
    described = True
    if case == "1-D conv_first":
        state["conv_first.weight"], described = state["conv_first.weight"].flatten().contiguous(), False
    elif case == "0-D conv_last":
        state["conv_last.weight"], described = torch.zeros(()), False
    elif case == "config lacks n_frames":
        del meta["config"]["n_frames"]
    elif case == "negative width":
        meta["config"]["num_grow_ch"] = -3
    elif case == "fractional width":
        meta["config"]["num_feat"] = 8.5
    elif case == "tile not a number":
        meta["extra"]["tile"] = "x"
    elif case == "extra not a dict":
        meta["extra"] = [1]
    elif case == "name not a string":
        meta["name"] = 5
    path = tmp_path / "tampered.safetensors"
    save_file(state, str(path), metadata={"clipscore_sr": json.dumps(meta)} if described else None)
    return path


@pytest.mark.parametrize("case", ["1-D conv_first", "0-D conv_last", "config lacks n_frames", "negative width",
                                  "fractional width", "tile not a number", "extra not a dict", "name not a string"])
def test_tampered_checkpoint_is_one_error_line(tmp_path: Path, case: str) -> None:
    path = _tampered(tmp_path, case)
    res = _generate(tmp_path, path)
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith("Error: ") and str(path) in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
