"""Build the demo bundle in ``clipscore_sr/data/demo/scene`` from the public-domain Landsat 8 sample.

A maintainer script (the result is committed; ``srmetrics demo`` only reads it). Run from the repository root
(deterministic: the same source file and library versions give the same files)::

    python clipscore_sr/data/demo/make_demo.py            # reads ../shared/samples/landsat/rmnp-rgb.tif
    python clipscore_sr/data/demo/make_demo.py --source PATH

Tiles holding any no-data fill (a pixel that is 255 or 0 in every band, e.g. the white collar of the rotated
scene edge) are never used, neither as demo tiles nor to train the tiny SRCNN.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from clipscore_sr.io import fill_pixels, read_image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# ../shared/samples next to the repository (or next to a folder above it, for git worktrees)
DEFAULT_SOURCE = next((p / "shared" / "samples" for p in REPO.parents if (p / "shared" / "samples").is_dir()),
                      REPO.parent / "shared" / "samples") / "landsat" / "rmnp-rgb.tif"
TILE, SCALE = 64, 4  # GT tile size and downsampling factor (the LR input is 16x16)


def clean_tiles(rgb: np.ndarray, tile: int = TILE) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping ``tile`` x ``tile`` tiles without any no-data fill pixel."""
    h, w = rgb.shape[:2]
    fill = fill_pixels(rgb)
    return [(y, x) for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)
            if not fill[y:y + tile, x:x + tile].any()]


def _downsample(tile: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(tile).resize((TILE // SCALE, TILE // SCALE), Image.BICUBIC))


def _upsample(lr: np.ndarray, method: str) -> np.ndarray:
    resample = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[method]
    return np.asarray(Image.fromarray(lr).resize((TILE, TILE), resample))


def _train_tiny_srcnn(train_tiles: list[np.ndarray], steps: int, seed: int):
    """A tiny single-frame SRCNN trained with L1 on x4 bicubic-downsampled tiles; returns the model."""
    import torch

    from clipscore_sr.baselines import build_generator

    torch.manual_seed(seed)
    model = build_generator("srcnn-915", "small", n_frames=1, scale=SCALE, n1=32, n2=16)
    hr = torch.from_numpy(np.stack(train_tiles)).permute(0, 3, 1, 2).float() / 255
    lr = torch.from_numpy(np.stack([_downsample(t) for t in train_tiles])).permute(0, 3, 1, 2).float() / 255
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(hr), (16,), generator=gen)
        loss = (model(lr[idx, None]) - hr[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def build(source: str | Path, dest: str | Path = HERE, *, n_tiles: int = 6, steps: int = 600,
          seed: int = 0) -> list[str]:
    """Write ``dest/scene/{gt,lr,sr/<method>}``; returns the tile names."""
    import torch

    dest = Path(dest)
    rgb = (np.moveaxis(read_image(source).data, 0, -1) * 255).round().astype(np.uint8)
    positions = clean_tiles(rgb)
    if len(positions) < 2 * n_tiles:
        raise SystemExit(f"{source}: only {len(positions)} tiles without no-data fill; need {2 * n_tiles}")
    texture = [float(rgb[y:y + TILE, x:x + TILE].std()) for y, x in positions]
    order = sorted(range(len(positions)), key=lambda i: (-texture[i], i))
    step = max(1, min(3, len(positions) // n_tiles))
    demo_idx = sorted(order[:n_tiles * step:step])  # spread over the most textured clean tiles
    train = [rgb[y:y + TILE, x:x + TILE] for i, (y, x) in enumerate(positions) if i not in demo_idx]
    model = _train_tiny_srcnn(train, steps, seed)
    if (dest / "scene").exists():
        shutil.rmtree(dest / "scene")
    names = []
    for i in demo_idx:
        y, x = positions[i]
        name = f"y{y:03d}x{x:03d}.png"
        tile = rgb[y:y + TILE, x:x + TILE]
        assert not fill_pixels(tile).any()
        lr = _downsample(tile)
        outputs = {m: _upsample(lr, m) for m in ("nearest", "bicubic")}
        with torch.no_grad():
            sr = model(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None, None].float() / 255)[0]
        outputs["srcnn-tiny"] = (sr.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for sub, arr in [("gt", tile), ("lr", lr), *[(f"sr/{m}", a) for m, a in outputs.items()]]:
            (dest / "scene" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(dest / "scene" / sub / name, optimize=True)
        names.append(name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--dest", type=Path, default=HERE)
    args = parser.parse_args()
    if not args.source.is_file():
        raise SystemExit(f"{args.source}: Landsat sample not found (pass --source)")
    names = build(args.source, args.dest)
    print(f"{len(names)} tiles ({', '.join(names)}) in {args.dest / 'scene'}")


if __name__ == "__main__":
    main()
