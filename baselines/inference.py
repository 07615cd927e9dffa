"""Batch inference over a folder of low-resolution scenes (the engine of ``srmetrics generate``).

What an input is
----------------
* ``layout="strip"`` (default): every image file under the input folder (recursively; PNG, JPEG, TIFF...)
  is one scene holding T frames of ``frame_size x W`` stacked vertically, as S2-NAIP ``tci.png`` strips
  (``frame_size="auto"``: square frames, T = H / W; a file of one square image is one frame). Decoded with
  :func:`clipscore_sr.io.read_array` + :func:`clipscore_sr.io.decode_s2_strip`. Output: ``OUT/<relative
  path without extension>.png``.
* ``layout="folder"``: every folder directly holding image files is one scene; its LR frames (natural name
  order) must share one size (any size, e.g. WorldStrat revisits). Frames are chosen by the readers'
  naming (:func:`lr_frame_files`): PROBA-V ``LR*.png`` when present, otherwise every image except targets and
  masks (``HR.*``, ``SM.*``, ``QM*``, ``*_mask``, ``*-CLM``/``-CLP``/``-dataMask``). Output:
  ``OUT/<relative folder path>.png``.
* ``layout="s2naip"``: the S2-NAIP tree (``--input`` is the dataset root holding ``sentinel2/`` or the
  ``sentinel2/`` folder itself): one scene per ``sentinel2/{tile}/`` folder, the model's bands read from
  ``{band}.png`` (``tci`` then e.g. ``b05``; :func:`~clipscore_sr.baselines.datasets.read_s2_bands`).
  Output: ``OUT/{tile}.png``; when ``naip/{uuid}/{tile}/rgb.png`` targets exist beside ``sentinel2/``,
  ``OUT/pairs.csv`` (columns ``key,gt,sr``, paths relative to OUT) pairs every output with its targets for
  ``srmetrics score --pairs OUT/pairs.csv``.

A scene that cannot be read (wrong channels, not a strip, missing band file...) is skipped and reported
(:attr:`GenerateReport.failed`); the other scenes are still written.

Values are divided by the data range (by dtype unless given); ``bands`` are 1-based. When a scene has more
frames than the model takes, frames are chosen as in the dataset readers (frames without black no-data
pixels first, seeded per scene); fewer frames are repeated cyclically (reported).

Scenes up to ``tile`` LR pixels on each side run whole, batched with other scenes of the same size;
larger scenes run in overlapping tiles blended by :func:`~clipscore_sr.baselines.tiling.tiled_forward`.
Stochastic generators (SR3) draw their noise from one generator per scene (and per tile) seeded from
``seed`` and the scene key, so outputs do not depend on batch size or order.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clipscore_sr.errors import ImageReadError, InputMismatchError, SRMetricsError
from clipscore_sr.io import IMAGE_EXTENSIONS, decode_s2_strip, read_array, to_chw, write_image

from .datasets import black_fraction, select_frames
from .sr3 import SR3
from .tiling import tiled_forward


@dataclass
class Scene:
    """One input scene: ``key`` = output path without extension, ``paths`` = its file(s)."""

    key: str
    paths: list[Path]


@dataclass
class GenerateReport:
    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    repeated_frames: list[str] = field(default_factory=list)
    tiled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (scene key, one-line error)
    pairs_csv: Path | None = None
    overlap: int | None = None


LAYOUTS = ("strip", "folder", "s2naip")
_NOT_FRAMES = re.compile(r"^(hr|sm|qm\d*)$|_mask$|-(clm|clp|datamask)$", re.IGNORECASE)


def lr_frame_files(paths: Sequence[Path]) -> list[Path]:
    """The LR frames among a scene folder's images, by the dataset readers' naming: PROBA-V ``LR<n>`` files when
    any exist; otherwise every image except targets and masks (``HR``, ``SM``, ``QM<n>``, ``*_mask``,
    WorldStrat ``-CLM``/``-CLP``/``-dataMask``)."""
    lr = [p for p in paths if re.fullmatch(r"LR\d+", p.stem, re.IGNORECASE)]
    return lr if lr else [p for p in paths if not _NOT_FRAMES.search(p.stem)]


def s2naip_folders(input_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(sentinel2 folder, naip folder or None)`` for ``--input`` = an S2-NAIP root or its ``sentinel2/``."""
    root = Path(input_dir)
    s2 = root / "sentinel2" if (root / "sentinel2").is_dir() else root
    naip = s2.parent / "naip"
    return s2, (naip if naip.is_dir() else None)


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def find_scenes(input_dir: str | os.PathLike, layout: str = "strip") -> list[Scene]:
    """Scenes under ``input_dir`` for the given ``layout`` (see module docstring), sorted by key."""
    root = Path(input_dir)
    if not root.is_dir():
        raise SRMetricsError(f"--input {root}: not a directory")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda p: _natural(p.relative_to(root).as_posix()))
    if layout == "s2naip":
        s2, _ = s2naip_folders(root)
        scenes = [Scene(d.name, [d]) for d in sorted(s2.iterdir(), key=lambda p: _natural(p.name))
                  if d.is_dir() and (d / "tci.png").is_file()]
        if not scenes:
            raise SRMetricsError(f"--input {root}: no S2-NAIP scenes (sentinel2/<tile>/tci.png)")
        return scenes
    if layout == "strip":
        scenes = [Scene(p.relative_to(root).with_suffix("").as_posix(), [p]) for p in files]
        counts = Counter(s.key for s in scenes)
        dup = next((k for k, n in counts.items() if n > 1), None)
        if dup is not None:
            raise SRMetricsError(f"--input {root}: two files share the output name '{dup}.png'")
    elif layout == "folder":
        groups: dict[Path, list[Path]] = {}
        for p in files:
            groups.setdefault(p.parent, []).append(p)
        scenes = []
        for folder, paths in sorted(groups.items(), key=lambda kv: _natural(kv[0].as_posix())):
            frames = lr_frame_files(paths)
            if not frames:
                continue
            key = folder.relative_to(root).as_posix()
            scenes.append(Scene(key if key != "." else root.name, frames))
    else:
        raise SRMetricsError(f"--layout {layout}: expected one of {', '.join(LAYOUTS)}")
    if not scenes:
        raise SRMetricsError(f"--input {root}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return scenes


def _scale(chw: np.ndarray, data_range: float | None, path: Path) -> np.ndarray:
    if data_range is None:
        kind = chw.dtype
        data_range = 255.0 if kind == np.uint8 else 65535.0 if kind == np.uint16 else 1.0 if kind.kind == "f" else None
        if data_range is None:
            raise ImageReadError(f"{path}: pixel type {kind} has no default data range; pass --data-range")
    return (chw.astype(np.float32) / np.float32(data_range)).astype(np.float32)


def load_scene(scene: Scene, *, layout: str = "strip", frame_size: int | str = "auto",
               bands: Sequence[int] | None = None, data_range: float | None = None,
               s2_bands: Sequence[str] = ("tci",)) -> np.ndarray:
    """All frames of a scene, float32 ``[T, C, h, w]`` in [0, 1]."""
    if layout == "s2naip":
        from .datasets import read_s2_bands

        size = 32 if frame_size == "auto" else int(frame_size)
        return read_s2_bands(scene.paths[0], list(s2_bands), size)
    if layout == "strip":
        path = scene.paths[0]
        arr, alpha = read_array(path)
        chw = to_chw(arr, alpha=alpha, bands=bands, path=path)
        c, h, w = chw.shape
        s = w if frame_size == "auto" else int(frame_size)
        if s != w or h % s:
            raise ImageReadError(f"{path}: a {h}x{w} image is not a vertical strip of {w}x{w} frames "
                                 "(use --layout folder for one frame per file)")
        return _scale(decode_s2_strip(np.moveaxis(chw, 0, -1), s), data_range, path)
    frames = []
    for p in scene.paths:
        arr, alpha = read_array(p)
        chw = _scale(to_chw(arr, alpha=alpha, bands=bands, path=p), data_range, p)
        if frames and chw.shape != frames[0].shape:
            raise ImageReadError(f"{p}: frame shape {chw.shape} differs from {scene.paths[0].name} {frames[0].shape}")
        frames.append(chw)
    return np.stack(frames)


def scene_seed(seed: int, key: str, part: int = 0) -> int:
    """A 63-bit seed derived from the run seed, the scene key and a part (tile) number."""
    digest = hashlib.sha256(f"{seed}\0{key}\0{part}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def run_model(model: nn.Module, lr: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
    """Forward a batch; SR3 samples with one CPU generator per item seeded from ``seeds``."""
    if isinstance(model, SR3):
        gens = None if seeds is None else [torch.Generator().manual_seed(int(s)) for s in seeds]
        return model.sample(lr, generator=gens)
    return model(lr)


def choose_frames(frames: np.ndarray, n: int, seed: int, key: str) -> tuple[np.ndarray, bool]:
    """``n`` frames of a scene (seeded per scene); second item: frames had to be repeated."""
    rng = np.random.default_rng(scene_seed(seed, key, -1))
    idx = select_frames(black_fraction(frames), n, rng)
    return frames[idx], frames.shape[0] < n


def check_outputs_spare_inputs(scenes: Sequence[Scene], out_root: Path, ext: str) -> None:
    """Refuse (one line, before any work) when an output file would replace an input file, e.g.
    ``--input D --out D`` with PNG strips; paths are compared after resolving symlinks and ``..``."""
    inputs = {os.path.realpath(p) for s in scenes for p in s.paths}
    clashes = [s.key for s in scenes if os.path.realpath(out_root / f"{s.key}{ext}") in inputs]
    if clashes:
        raise SRMetricsError(f"--out {out_root}: {len(clashes)} output(s) would overwrite input files "
                             f"(e.g. {out_root / (clashes[0] + ext)}); choose another --out")


def generate(model: nn.Module, input_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
             layout: str = "strip", frame_size: int | str = "auto", batch_size: int = 8,
             device: str | torch.device = "cpu", tile: int | None = 32, overlap: int | None = None, seed: int = 0,
             bands: Sequence[int] | None = None, data_range: float | None = None, bit_depth: int = 8,
             skip_existing: bool = False, progress: bool = True, s2_bands: Sequence[str] = ("tci",)
             ) -> GenerateReport:
    """Super-resolve every scene of ``input_dir`` into ``out_dir`` (same relative paths): 8-bit PNG, or
    with ``bit_depth=16`` a 16-bit TIFF (``.tif``; Pillow has no 16-bit RGB PNG).

    ``tile``: LR window size for scenes larger than it (``None`` or 0: never tile); ``overlap`` in LR px
    (``None``: ``tile // 4``, e.g. 8 for the default 32-pixel tile). ``s2_bands``: the bands of ``layout="s2naip"``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise SRMetricsError(f"--batch-size must be >= 1, got {batch_size}")
    if bit_depth not in (8, 16):
        raise SRMetricsError(f"--bit-depth must be 8 or 16, got {bit_depth}")
    device = torch.device(device)
    model = model.to(device).eval()
    out_root = Path(out_dir)
    scenes = find_scenes(input_dir, layout)
    ext = ".png" if bit_depth == 8 else ".tif"  # Pillow cannot write or read 16-bit RGB PNGs
    check_outputs_spare_inputs(scenes, out_root, ext)
    report = GenerateReport()
    if overlap is None:
        overlap = tile // 4 if tile else 0
    report.overlap = overlap
    n_frames, in_ch, scale = model.n_frames, model.in_channels, model.scale
    dtype = "uint8" if bit_depth == 8 else "uint16"
    pending: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}
    bar = tqdm(total=len(scenes), desc="generate", unit="scene", disable=not progress)

    def write(key: str, img: torch.Tensor) -> None:
        write_image(out_root / f"{key}{ext}", img.clamp(0, 1), dtype=dtype)
        report.written.append(key)
        bar.update(1)

    def flush(shape: tuple[int, ...]) -> None:
        items = pending.pop(shape, [])
        if not items:
            return
        lr = torch.from_numpy(np.stack([a for _, a in items])).to(device)
        with torch.inference_mode():
            sr = run_model(model, lr, [scene_seed(seed, k) for k, _ in items])
        for (key, _), img in zip(items, sr):
            write(key, img)

    try:
        for scene in scenes:
            if skip_existing and (out_root / f"{scene.key}{ext}").is_file():
                report.skipped_existing.append(scene.key)
                bar.update(1)
                continue
            try:
                frames = load_scene(scene, layout=layout, frame_size=frame_size, bands=bands, data_range=data_range,
                                    s2_bands=s2_bands)
                if frames.shape[1] != in_ch:
                    hint = "--s2-bands" if layout == "s2naip" else "--bands"
                    raise InputMismatchError(f"{scene.paths[0]}: frames have {frames.shape[1]} channels but the "
                                             f"model takes {in_ch} (see {hint})")
            except SRMetricsError as exc:
                report.failed.append((scene.key, str(exc)))
                bar.update(1)
                continue
            frames, repeated = choose_frames(frames, n_frames, seed, scene.key)
            if repeated:
                report.repeated_frames.append(scene.key)
            h, w = frames.shape[-2:]
            if tile and (h > tile or w > tile):
                report.tiled.append(scene.key)
                counter = itertools.count(1)
                key = scene.key

                def fn(x: torch.Tensor, key: str = key, counter: itertools.count = counter) -> torch.Tensor:
                    return run_model(model, x, [scene_seed(seed, key, next(counter)) for _ in range(x.shape[0])])

                lr = torch.from_numpy(frames)[None].to(device)
                with torch.inference_mode():
                    sr = tiled_forward(fn, lr, scale, tile, overlap, batch_size)
                write(scene.key, sr[0])
                continue
            shape = tuple(frames.shape)
            pending.setdefault(shape, []).append((scene.key, frames))
            if len(pending[shape]) >= batch_size:
                flush(shape)
        for shape in list(pending):
            flush(shape)
    finally:
        bar.close()
    if layout == "s2naip":
        report.pairs_csv = write_s2naip_pairs(input_dir, out_root, report.written + report.skipped_existing, ext)
    return report


def write_s2naip_pairs(input_dir: str | os.PathLike, out_root: Path, tiles: Sequence[str], ext: str
                       ) -> Path | None:
    """``OUT/pairs.csv`` pairing each generated ``OUT/{tile}{ext}`` with every ``naip/{uuid}/{tile}/rgb.png``
    (key ``{tile}/{uuid}``, as the S2-NAIP reader; paths relative to OUT), written atomically; None without
    a ``naip/`` folder or any target."""
    import csv

    _, naip = s2naip_folders(input_dir)
    if naip is None:
        return None
    wanted = set(tiles)
    rows = []
    for target in sorted(naip.glob("*/*/rgb.png")):
        tile, uuid = target.parent.name, target.parent.parent.name
        if tile in wanted:
            rows.append({"key": f"{tile}/{uuid}", "gt": os.path.relpath(target, out_root), "sr": f"{tile}{ext}"})
    if not rows:
        return None
    out_root.mkdir(parents=True, exist_ok=True)
    path = out_root / "pairs.csv"
    tmp = path.with_name(f".pairs.csv.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["key", "gt", "sr"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path
