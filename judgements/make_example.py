"""Build the example judgement set in ``judgements/example/`` from the public-domain Landsat 8 sample.

The labels are CONSTRUCTED, not human: every pair shows the same degradation of the same tile at two
severities, and the vote goes to the less degraded image (the annotator id ``construct-severity`` says so).
Run from the repository root (deterministic: same inputs and library versions give the same files)::

    python judgements/make_example.py                 # reads ../shared/samples/landsat/rmnp-rgb.tif
    python judgements/make_example.py --source PATH --out judgements/example
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from clipscore_sr.io import fill_pixels, read_image

REPO = Path(__file__).resolve().parents[1]
# ../shared/samples next to the repository (or next to a folder above it, for git worktrees)
DEFAULT_SOURCE = next((p / "shared" / "samples" for p in REPO.parents if (p / "shared" / "samples").is_dir()),
                      REPO.parent / "shared" / "samples") / "landsat" / "rmnp-rgb.tif"
TILE = 64
SEED = 20240611
ANNOTATOR = "construct-severity"
# the demo's scene tiles (clipscore_sr/data/demo/scene/gt/yYYYxXXX.png): never reused here, so no image is stored
# twice and the demo's scores stay independent of the example's labels
DEMO_TILES = REPO / "clipscore_sr" / "data" / "demo" / "scene" / "gt"

# dataset -> degradation -> severities, mildest first (the vote always goes to the milder one)
DESIGN: dict[str, dict[str, tuple[float, ...]]] = {
    "landsat-blur-noise": {"blur": (0.7, 1.0, 1.4), "noise": (4.0, 7.0, 11.0)},
    "landsat-compression": {"jpeg": (60.0, 35.0, 15.0), "resample": (2.0, 3.0, 4.0)},
}
TILES_PER_DATASET = 3


def to_uint8(data01: np.ndarray) -> np.ndarray:
    """``[C,H,W]`` in [0,1] -> ``[H,W,C]`` uint8 (rounded)."""
    return np.clip(np.rint(np.moveaxis(data01, 0, -1) * 255.0), 0, 255).astype(np.uint8)


def demo_tiles() -> set[tuple[int, int]]:
    """``(y, x)`` of the demo's scene tiles (from their file names)."""
    import re

    found = (re.fullmatch(r"y(\d+)x(\d+)", p.stem) for p in DEMO_TILES.glob("*.png"))
    return {(int(m[1]), int(m[2])) for m in found if m}


def pick_tiles(img: np.ndarray, n: int, exclude: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    """The ``n`` non-overlapping TILE x TILE tiles with the most texture (std of luminance), in a fixed order.

    Tiles with any no-data fill pixel (255 or 0 in every band: the white collar of the rotated scene edge)
    are rejected, so the scene edge is never counted as texture; so are the ``exclude`` positions.
    """
    h, w = img.shape[:2]
    lum = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    fill = fill_pixels(img)
    cands = [(float(lum[y:y + TILE, x:x + TILE].std()), y, x)
             for y in range(0, h - TILE + 1, TILE) for x in range(0, w - TILE + 1, TILE)
             if not fill[y:y + TILE, x:x + TILE].any() and (y, x) not in exclude]
    if len(cands) < n:
        raise SystemExit(f"only {len(cands)} tiles without no-data fill; need {n}")
    cands.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(y, x) for _, y, x in cands[:n]]


def degrade(tile: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One degraded copy of a uint8 ``[H,W,3]`` tile; returns (pixels or encoded bytes marker, file suffix)."""
    if kind == "blur":  # Gaussian blur, sigma in pixels
        out = gaussian_filter(tile.astype(np.float64), sigma=(level, level, 0), mode="reflect")
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), ".png"
    if kind == "noise":  # additive Gaussian noise, sigma in 8-bit units
        out = tile.astype(np.float64) + rng.normal(0.0, level, tile.shape)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), ".png"
    if kind == "jpeg":  # stored as the JPEG file itself (quality = level)
        buf = _io.BytesIO()
        Image.fromarray(tile).save(buf, format="JPEG", quality=int(level))
        return np.frombuffer(buf.getvalue(), dtype=np.uint8).copy(), ".jpg"
    if kind == "resample":  # bicubic down by `level`, bicubic back up
        small = (max(1, round(TILE / level)), max(1, round(TILE / level)))
        down = Image.fromarray(tile).resize(small, Image.BICUBIC)
        return np.asarray(down.resize((TILE, TILE), Image.BICUBIC)), ".png"
    raise ValueError(kind)


def build(source: Path, out: Path) -> dict[str, int]:
    img = read_image(source)
    if img.dtype not in ("uint8", "uint16"):
        raise SystemExit(f"{source}: expected an 8- or 16-bit RGB image, got {img.dtype}")
    if img.data.shape[0] != 3:
        raise SystemExit(f"{source}: expected 3 bands, got {img.data.shape[0]}")
    rgb = to_uint8(img.data)  # 16-bit data is scaled by its range to 8 bits
    if out.exists():
        shutil.rmtree(out / "images", ignore_errors=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    tiles = pick_tiles(rgb, TILES_PER_DATASET * len(DESIGN), exclude=demo_tiles())
    rows: list[dict[str, str]] = []
    n_images = 0
    for d_index, (dataset, kinds) in enumerate(DESIGN.items()):
        for y, x in tiles[d_index * TILES_PER_DATASET:(d_index + 1) * TILES_PER_DATASET]:
            name = f"y{y:03d}x{x:03d}"
            tile = rgb[y:y + TILE, x:x + TILE]
            gt_rel = f"images/{dataset}/{name}/gt.png"
            (out / gt_rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(tile).save(out / gt_rel, optimize=True)
            n_images += 1
            for kind, levels in kinds.items():
                rels = []
                for s, level in enumerate(levels):
                    data, suffix = degrade(tile, kind, level, rng)
                    rel = f"images/{dataset}/{name}/{kind}{s + 1}{suffix}"
                    if suffix == ".jpg":
                        (out / rel).write_bytes(data.tobytes())
                    else:
                        Image.fromarray(data).save(out / rel, optimize=True)
                    rels.append((rel, level))
                    n_images += 1
                for (i, (rel_i, lev_i)), (j, (rel_j, lev_j)) in combinations(enumerate(rels), 2):
                    # i < j: i is the milder severity, so it is preferred by construction
                    swap = bool(rng.integers(0, 2))
                    a, b = (rel_j, rel_i) if swap else (rel_i, rel_j)
                    rows.append({
                        "pair_id": f"{dataset}/{name}/{kind}{i + 1}-vs-{kind}{j + 1}",
                        "dataset": dataset, "gt": gt_rel, "a": a, "b": b,
                        "choice": "b" if swap else "a", "annotator": ANNOTATOR,
                        "a_method": f"{kind}={lev_j:g}" if swap else f"{kind}={lev_i:g}",
                        "b_method": f"{kind}={lev_i:g}" if swap else f"{kind}={lev_j:g}",
                    })
    with open(out / "judgements.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return {"pairs": len(rows), "images": n_images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=REPO / "judgements" / "example")
    args = parser.parse_args()
    if not args.source.is_file():
        raise SystemExit(f"{args.source}: Landsat sample not found (pass --source)")
    counts = build(args.source, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{counts['pairs']} pairs, {counts['images']} images, {size / 1024:.0f} KiB in {args.out}")


if __name__ == "__main__":
    main()
