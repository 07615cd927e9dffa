"""``srmetrics generate``: outputs per scene at the same relative paths, equal to the model applied directly
(within PNG rounding: 1/255), frame choice, tiling, SR3 seeding, authors' checkpoints, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from clipscore_sr.baselines import build_generator, save_checkpoint, tiled_forward
from clipscore_sr.cli import main

TOL = 1.0 / 255 + 1e-6


def png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def read(path: Path) -> torch.Tensor:
    arr = np.asarray(Image.open(path))
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    return torch.from_numpy(arr.astype(np.float64) / scale).permute(2, 0, 1)


def frames_of(strip: np.ndarray, size: int) -> torch.Tensor:
    t = strip.shape[0] // size
    return torch.from_numpy(np.stack([strip[i * size:(i + 1) * size] for i in range(t)])).permute(0, 3, 1, 2) / 255.0


def run(*args: str):
    result = CliRunner().invoke(main, ["generate", *args, "--device", "cpu", "--quiet"])
    return result


@pytest.fixture
def esrgan(tmp_path):
    torch.manual_seed(0)
    model = build_generator("esrgan", "small", 2, 4, num_feat=8, num_block=1, num_grow_ch=4).eval()
    ckpt = save_checkpoint(model, tmp_path / "ckpt" / "esrgan.safetensors", extra={"tile": 16})
    return model, ckpt


def test_generate_strips(tmp_path, esrgan):
    model, ckpt = esrgan
    rng = np.random.default_rng(0)
    a = rng.integers(1, 256, (16, 8, 3), dtype=np.uint8)  # 2 frames
    b = rng.integers(1, 256, (24, 8, 3), dtype=np.uint8)  # 3 frames, frame 1 has no-data pixels
    b[8:10, :2] = 0
    c = rng.integers(1, 256, (8, 8, 3), dtype=np.uint8)  # 1 frame: repeated
    png(tmp_path / "in" / "a.png", a)
    png(tmp_path / "in" / "sub" / "b.png", b)
    png(tmp_path / "in" / "c.png", c)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["generate", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in"),
                                    "--out", str(out), "--batch-size", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "wrote 3 image(s)" in res.output and "fewer than 2 frames" in res.output
    with torch.no_grad():
        exp_a = model(frames_of(a, 8)[None])[0].clamp(0, 1)
        exp_b = model(frames_of(b, 8)[[0, 2]][None])[0].clamp(0, 1)
        exp_c = model(frames_of(c, 8)[[0, 0]][None])[0].clamp(0, 1)
    for path, exp in ((out / "a.png", exp_a), (out / "sub" / "b.png", exp_b), (out / "c.png", exp_c)):
        got = read(path)
        assert got.shape == (3, 32, 32)
        assert (got - exp.double()).abs().max() <= TOL, path


def test_generate_folder_layout_tiles_large_scenes(tmp_path, esrgan):
    model, ckpt = esrgan
    rng = np.random.default_rng(1)
    frames = [rng.integers(1, 256, (40, 36, 3), dtype=np.uint8) for _ in range(2)]
    for i, f in enumerate(frames):
        png(tmp_path / "in" / "scene1" / f"L{i + 1}.png", f)
    lr = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].float() / 255.0
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o1"),
              "--layout", "folder", "--overlap", "8")
    assert res.exit_code == 0, res.output
    with torch.no_grad():
        tiled = tiled_forward(model, lr, 4, tile=16, overlap=8).clamp(0, 1)[0]  # tile 16 from the checkpoint
        whole = model(lr).clamp(0, 1)[0]
    got = read(tmp_path / "o1" / "scene1.png")
    assert got.shape == (3, 160, 144)
    assert (got - tiled.double()).abs().max() <= TOL
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o2"),
              "--layout", "folder", "--tile", "0", "--bit-depth", "16")
    assert res.exit_code == 0, res.output
    import tifffile

    arr16 = tifffile.imread(tmp_path / "o2" / "scene1.tif")
    assert arr16.dtype == np.uint16
    got16 = torch.from_numpy(arr16.astype(np.float64) / 65535.0).permute(2, 0, 1)
    assert (got16 - whole.double()).abs().max() <= 1.0 / 65535 + 1e-6


def test_generate_sr3_seeded_independent_of_batch_size(tmp_path):
    torch.manual_seed(0)
    model = build_generator("sr3", "small", 1, 2, inner_channel=8, channel_mults=(1, 2), norm_groups=4,
                            n_timestep=6, image_size=16, attn_res=(8,))
    ckpt = save_checkpoint(model, tmp_path / "sr3.safetensors")
    rng = np.random.default_rng(2)
    for i in range(3):
        png(tmp_path / "in" / f"s{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    outs = {}
    for tag, extra in (("b1", ["--batch-size", "1"]), ("b3", ["--batch-size", "3"]), ("seed", ["--seed", "9"]),
                       ("ddpm", ["--sampler", "ddpm"])):
        sampler = [] if tag == "ddpm" else ["--sampler", "ddim", "--steps", "3", "--eta", "0.5"]
        res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / tag),
                  *sampler, *extra)
        assert res.exit_code == 0, res.output
        outs[tag] = [np.asarray(Image.open(tmp_path / tag / f"s{i}.png")) for i in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(outs["b1"], outs["b3"]))
    assert not all(np.array_equal(x, y) for x, y in zip(outs["b1"], outs["seed"]))
    assert outs["ddpm"][0].shape == (16, 16, 3)


def test_generate_authors_pth_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_generator("esrgan", "small", 1, 4, num_feat=8, num_block=2, num_grow_ch=4).eval()
    torch.save({"params_ema": model.state_dict()}, tmp_path / "net_g_ema.pth")
    img = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    png(tmp_path / "in" / "x.png", img)
    res = run("--checkpoint", str(tmp_path / "net_g_ema.pth"), "--input", str(tmp_path / "in"),
              "--out", str(tmp_path / "out"), "--model", "esrgan", "--scale", "4")
    assert res.exit_code == 0, res.output
    with torch.no_grad():
        exp = model(frames_of(img, 8)[None])[0].clamp(0, 1)
    assert (read(tmp_path / "out" / "x.png") - exp.double()).abs().max() <= TOL


def test_generate_errors(tmp_path, esrgan):
    _, ckpt = esrgan
    png(tmp_path / "gray" / "g.png", np.zeros((16, 8), np.uint8))
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "gray"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "g.png: frames have 1 channels but the model takes 3" in res.output
    png(tmp_path / "odd" / "o.png", np.zeros((12, 8, 3), np.uint8))
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "odd"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "o.png: a 12x8 image is not a vertical strip" in res.output
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "odd"), "--out", str(tmp_path / "o"),
              "--frames", "4")
    assert res.exit_code == 2 and "--frames 4 does not match the checkpoint" in res.output
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    res = run("--checkpoint", str(tmp_path / "bare.safetensors"), "--input", str(tmp_path / "odd"),
              "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "no architecture metadata" in res.output
    assert "Traceback" not in res.output


def test_generate_refuses_to_overwrite_inputs(tmp_path, esrgan):
    """Issue 10 item 8: --input D --out D (or an --out that maps an output onto an input) changes nothing."""
    _, ckpt = esrgan
    strip = np.random.default_rng(1).integers(1, 256, (16, 8, 3), dtype=np.uint8)
    png(tmp_path / "in" / "a.png", strip)
    png(tmp_path / "in" / "sub" / "b.png", strip)
    before = {p: p.read_bytes() for p in (tmp_path / "in").rglob("*.png")}
    for out in (tmp_path / "in", tmp_path / "in" / "sub" / ".."):
        res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(out))
        assert res.exit_code == 2, res.output
        assert "2 output(s) would overwrite input files" in res.output and res.output.count("\n") == 1
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "in"),
              "--skip-existing")
    assert res.exit_code == 2
    assert {p: p.read_bytes() for p in (tmp_path / "in").rglob("*.png")} == before
    # 16-bit outputs are .tif files: the same folder is then safe (nothing is replaced)
    res = run("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "in"),
              "--bit-depth", "16")
    assert res.exit_code == 0, res.output
    assert {p: p.read_bytes() for p in (tmp_path / "in").rglob("*.png")} == before
