"""Dataset readers: S2-NAIP, WorldStrat, PROBA-V, OLI2MSI and generic paired folders.

Every reader is a ``torch.utils.data.Dataset`` returning a dict per scene:

=============  ==================================================================================
``lr``         float32 ``[T, C, h, w]`` in [0, 1] (file values / data range), the chosen frames in
               random order (``frame_order="random"``, the default, as the authors' readers) or in
               chronological (file) order (``frame_order="chronological"``)
``hr``         float32 ``[C, H, W]`` in [0, 1] (absent where a split has no targets, e.g. PROBA-V test)
``lr_valid``   bool ``[T, 1, h, w]``: usable LR pixels (not no-data, not cloud / clear per the mask)
``hr_valid``   bool ``[1, H, W]``: usable target pixels (absent with ``hr``)
``frames``     int64 ``[T]``: indices of the chosen frames among the scene's frames
``key``        str: scene id (relative path style, e.g. ``"1234_5678/uuid"``)
=============  ==================================================================================

Randomness (frame choice among equally good frames, optional crops) is drawn from
``numpy.random.default_rng([seed, epoch, index])``: the same ``seed`` (and :meth:`set_epoch`) gives
the same samples in any order, in any DataLoader worker, at train and test time alike.

Frame choice (``n_frames``): frames are ranked by their fraction of unusable pixels (black no-data
pixels, clouds or non-clear mask pixels); fully usable frames come first (picked at random among them),
then the least-bad frames; a scene with fewer than ``n_frames`` frames repeats its frames cyclically.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clipscore_sr.errors import ImageReadError, SRMetricsError
from clipscore_sr.io import IMAGE_EXTENSIONS, decode_s2_strip, read_array, to_chw

S2_BAND_SCALE = 8160.0  # Satlas normalisation of 16-bit Sentinel-2 bands: clip(value / 8160, 0, 1)
# PROBA-V frames hold 14-bit values in 16-bit PNGs, but the competition's scoring (the Kelvins helper's
# img_as_float64, the organisers' norm.csv baselines) divides by 65535: we use the competition's scale so that
# training validation, `srmetrics score` and norm.csv agree.
PROBAV_DATA_RANGE = 65535.0


class DatasetError(SRMetricsError):
    """A dataset folder does not have the expected layout."""

    hint = "sources and layouts: README, 'Getting the datasets and the authors' weights'"


FRAME_ORDERS = ("random", "chronological")


def select_frames(badness: Sequence[float], n: int, rng: np.random.Generator, order: str = "chronological"
                  ) -> np.ndarray:
    """Indices of ``n`` frames preferring low ``badness`` (fraction of unusable pixels, 0 = clean).

    Clean frames are drawn at random (without replacement); if there are too few, the remaining slots
    go to the least-bad frames (random tie-break); fewer frames than ``n`` repeat cyclically.
    ``order="chronological"``: returned in ascending (file) order, except for repeats, which follow;
    ``order="random"``: the chosen frames in a random order (the authors' ``random.sample`` of clean frames).
    """
    if order not in FRAME_ORDERS:
        raise DatasetError(f"frame_order must be one of {', '.join(FRAME_ORDERS)}, got {order!r}")
    badness = np.asarray(badness, dtype=np.float64)
    total = len(badness)
    if total == 0:
        raise DatasetError("no frames to choose from")
    if n <= 0:
        raise DatasetError(f"n_frames must be >= 1, got {n}")
    ranked = np.lexsort((rng.random(total), badness))  # by badness, random among equals
    if total >= n:
        chosen = np.sort(ranked[:n])
    else:
        base = np.sort(ranked)
        chosen = np.concatenate([base, base[np.arange(n - total) % total]])
    return rng.permutation(chosen) if order == "random" else chosen


def black_fraction(frames: np.ndarray) -> np.ndarray:
    """Per-frame fraction of pixels whose channels are all zero; ``frames`` ``[T, C, h, w]``."""
    return (frames == 0).all(axis=1).reshape(frames.shape[0], -1).mean(axis=1)


def _read_chw(path: Path, bands: Sequence[int] | None = None) -> np.ndarray:
    arr, alpha = read_array(path)
    return to_chw(arr, alpha=alpha, bands=bands, path=path)


def _scale_values(arr: np.ndarray, data_range: float | None, path: Path | str) -> np.ndarray:
    if data_range is None:
        if arr.dtype == np.uint8:
            data_range = 255.0
        elif arr.dtype == np.uint16:
            data_range = 65535.0
        elif arr.dtype.kind == "f":
            data_range = 1.0
        else:
            raise ImageReadError(f"{path}: pixel type {arr.dtype} has no default data range")
    return (arr.astype(np.float32) / np.float32(data_range)).astype(np.float32)


class _PairedBase(Dataset):
    """Seeded randomness, epochs and paired crops shared by the readers."""

    def __init__(self, seed: int = 0, crop_size: int | None = None, frame_order: str = "random") -> None:
        self.seed, self.epoch, self.crop_size = int(seed), 0, crop_size
        if frame_order not in FRAME_ORDERS:
            raise DatasetError(f"frame_order must be one of {', '.join(FRAME_ORDERS)}, got {frame_order!r}")
        self.frame_order = frame_order

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (frame choice, crops) for a new training epoch."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _finish(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Apply the optional paired random crop (``crop_size`` in LR pixels) and convert to tensors."""
        if self.crop_size:
            lr = sample["lr"]
            h, w = lr.shape[-2:]
            c = int(self.crop_size)
            if c > h or c > w:
                raise DatasetError(f"{sample['key']}: crop_size {c} exceeds the LR size {h}x{w}")
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            sample["lr"] = lr[..., y:y + c, x:x + c]
            if "lr_valid" in sample:
                sample["lr_valid"] = sample["lr_valid"][..., y:y + c, x:x + c]
            if "hr" in sample:
                hh, hw = sample["hr"].shape[-2:]
                if hh % h or hw % w or hh // h != hw // w:
                    raise DatasetError(f"{sample['key']}: HR {hh}x{hw} is not an integer multiple of LR {h}x{w}")
                s = hh // h
                for k in ("hr", "hr_valid"):
                    if k in sample:
                        sample[k] = sample[k][..., y * s:(y + c) * s, x * s:(x + c) * s]
        out: dict[str, Any] = {}
        for k, v in sample.items():
            out[k] = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        return out


# --------------------------------------------------------------------------------------------------

class S2NAIPDataset(_PairedBase):
    """S2-NAIP: ``naip/{image_uuid}/{tile}/rgb.png`` (128x128 RGB) targets and ``sentinel2/{tile}/tci.png``
    strips of T 32x32 frames stacked vertically (8-bit RGB).

    ``bands``: ``tci`` first, then optional ``b01``..``b12`` strips ``sentinel2/{tile}/{band}.png``, each
    one channel; 16-bit files are scaled by ``clip(v / 8160, 0, 1)`` (Satlas normalisation), 8-bit files
    by ``v / 255``. Channels are concatenated in the order given.

    ``nodata_targets``: ``"skip"`` reads every target at construction and drops those with black
    (all-zero) pixels (listed in :attr:`skipped`); ``"keep"`` keeps them (``hr_valid`` marks the pixels);
    ``"error"`` raises on the first one met.
    """

    def __init__(self, root: str | os.PathLike, n_frames: int = 8, *, bands: Sequence[str] = ("tci",),
                 seed: int = 0, nodata_targets: str = "skip", frame_size: int = 32, crop_size: int | None = None,
                 band_scale: float = S2_BAND_SCALE, frame_order: str = "random") -> None:
        super().__init__(seed, crop_size, frame_order)
        self.root, self.n_frames, self.frame_size, self.band_scale = Path(root), int(n_frames), frame_size, band_scale
        self.bands = [b.lower() for b in bands]
        if not self.bands or self.bands[0] != "tci":
            raise DatasetError(f"S2-NAIP: bands must start with 'tci', got {list(bands)}")
        for b in self.bands[1:]:
            if not re.fullmatch(r"b(0[1-9]|1[0-2]|8a)", b):
                raise DatasetError(f"S2-NAIP: unknown band '{b}' (expected tci, b01..b12, b8a)")
        if nodata_targets not in ("skip", "keep", "error"):
            raise DatasetError(f"S2-NAIP: nodata_targets must be skip, keep or error, got {nodata_targets!r}")
        self.nodata_targets = nodata_targets
        naip, s2 = self.root / "naip", self.root / "sentinel2"
        for d in (naip, s2):
            if not d.is_dir():
                raise DatasetError(f"{d}: missing (S2-NAIP layout: naip/{{uuid}}/{{tile}}/rgb.png, sentinel2/{{tile}}/tci.png)")
        self.items: list[tuple[str, Path, Path]] = []
        self.missing_lr: list[str] = []
        self.skipped: list[str] = []
        for target in sorted(naip.glob("*/*/rgb.png")):
            uuid, tile = target.parent.parent.name, target.parent.name
            key = f"{tile}/{uuid}"
            if not (s2 / tile / "tci.png").is_file():
                self.missing_lr.append(key)
                continue
            if nodata_targets == "skip" and black_fraction(_read_chw(target)[None]).item() > 0:
                self.skipped.append(key)
                continue
            self.items.append((key, target, s2 / tile))
        if not self.items:
            raise DatasetError(f"{self.root}: no S2-NAIP pairs found (naip/*/*/rgb.png with sentinel2/<tile>/tci.png)")

    def __len__(self) -> int:
        return len(self.items)

    def tile_weights(self, weights: str | os.PathLike | dict[str, float]) -> np.ndarray:
        """Per-item sampling weights from the authors' ``train_tile_weights`` JSON (``{tile: weight}``, the
        inverse frequency of the rarest OpenStreetMap category in the tile); tiles it does not list get 1, as
        in the authors' sampler."""
        import json

        source = str(weights) if not isinstance(weights, dict) else "tile_weights"
        if not isinstance(weights, dict):
            try:
                weights = json.loads(Path(weights).read_text())
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{source}: unreadable tile weights JSON ({exc})") from None
        if not isinstance(weights, dict):
            raise DatasetError(f"{source}: expected a JSON object {{tile: weight}}")
        out = np.ones(len(self.items), dtype=np.float64)
        for i, (key, _, _) in enumerate(self.items):
            w = weights.get(key.split("/")[0])
            if w is not None:
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
                    raise DatasetError(f"{source}: weight of tile '{key.split('/')[0]}' must be a number >= 0, got {w!r}")
                out[i] = float(w)
        if not out.sum() > 0:
            raise DatasetError(f"{source}: every training tile has weight 0")
        return out

    def read_strips(self, s2_dir: Path) -> np.ndarray:
        """All frames ``[T_total, C, 32, 32]`` float32 in [0, 1] of the configured bands."""
        return read_s2_bands(s2_dir, self.bands, self.frame_size, self.band_scale)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key, target, s2_dir = self.items[index]
        rng = self.rng(index)
        hr = _scale_values(_read_chw(target), None, target)
        if hr.shape[0] == 4:
            hr = hr[:3]
        hr_valid = ~(hr == 0).all(axis=0, keepdims=True)
        if self.nodata_targets == "error" and not hr_valid.all():
            raise DatasetError(f"{target}: target has {int((~hr_valid).sum())} black no-data pixels")
        frames = self.read_strips(s2_dir)
        chosen = select_frames(black_fraction(frames[:, :3]), self.n_frames, rng, self.frame_order)
        lr = frames[chosen]
        lr_valid = ~(lr[:, :3] == 0).all(axis=1, keepdims=True)
        return self._finish({"lr": lr, "hr": hr, "lr_valid": lr_valid, "hr_valid": hr_valid,
                             "frames": chosen.astype(np.int64), "key": key}, rng)


def read_s2_bands(s2_dir: str | os.PathLike, bands: Sequence[str] = ("tci",), frame_size: int = 32,
                  band_scale: float = S2_BAND_SCALE) -> np.ndarray:
    """Frames ``[T, C, frame_size, frame_size]`` float32 in [0, 1] of one S2-NAIP ``sentinel2/{tile}`` folder:
    ``tci.png`` (RGB, /255) then each extra band ``{band}.png`` (one channel; 16-bit: ``clip(v / band_scale, 0,
    1)``, 8-bit: /255), concatenated along channels in the order given (S2-NAIP's layout and normalisation)."""
    s2_dir = Path(s2_dir)
    parts: list[np.ndarray] = []
    for band in bands:
        path = s2_dir / f"{band}.png"
        if not path.is_file():
            raise DatasetError(f"{path}: band file missing (bands: {', '.join(bands)})")
        arr, _ = read_array(path)
        frames = decode_s2_strip(arr, frame_size)
        if band == "tci":
            if frames.shape[1] == 4:
                frames = frames[:, :3]
            scaled = _scale_values(frames, None, path)
        elif arr.dtype == np.uint16:
            scaled = np.clip(frames.astype(np.float32) / np.float32(band_scale), 0, 1)
        else:
            scaled = _scale_values(frames, None, path)
        if parts and scaled.shape[0] != parts[0].shape[0]:
            raise DatasetError(f"{path}: {scaled.shape[0]} frames but tci.png has {parts[0].shape[0]}")
        parts.append(scaled[:, :1] if band != "tci" else scaled)
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------------

def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


class WorldStratDataset(_PairedBase):
    """WorldStrat, in either layout (detected):

    * official: ``hr_dataset/{AOI}/{AOI}_rgb.png`` (or ``_ps.tiff`` with ``hr="ps"``) and
      ``lr_dataset/{AOI}/L2A/{AOI}-{i}-L2A_data.tiff`` revisits (12 bands, HWC; float reflectance or uint16
      scaled by ``lr_data_range``); ``lr_bands`` 1-based (default 4,3,2 = B4,B3,B2 -> RGB). A revisit's
      cloud mask is ``{AOI}-{i}-CLM.tiff`` beside it (WorldStrat's naming; nonzero = cloud); without one the
      revisit counts as clear (warned once). ``-dataMask.tiff`` (1 = valid data) and ``-CLP`` (cloud
      probability) are not used.
    * flat scene folders (e.g. the shared sample): ``{scene}/HR.png`` plus revisits ``{scene}/L*.png``
      (natural order); optional ``{stem}_mask.png`` (nonzero = cloud); a revisit whose name contains
      ``cloud`` without a mask counts as fully clouded when ranking frames.

    ``lr_size``/``hr_size`` resize (antialiased bilinear) to fixed sizes, as WorldStrat's HR is not an
    integer multiple of its LR; ``splits_csv`` + ``split`` keep the AOIs listed for that split (columns
    containing the AOI name and ``split``).
    """

    def __init__(self, root: str | os.PathLike, n_frames: int = 8, *, seed: int = 0, hr: str = "rgb",
                 lr_bands: Sequence[int] = (4, 3, 2), lr_data_range: float | None = None,
                 hr_data_range: float | None = None, lr_size: int | None = None, hr_size: int | None = None,
                 splits_csv: str | os.PathLike | None = None, split: str | None = None,
                 crop_size: int | None = None, frame_order: str = "random") -> None:
        super().__init__(seed, crop_size, frame_order)
        self.root, self.n_frames = Path(root), int(n_frames)
        self.lr_bands, self.lr_data_range, self.hr_data_range = tuple(lr_bands), lr_data_range, hr_data_range
        self.lr_size, self.hr_size = lr_size, hr_size
        self._warned_no_clm = False
        self.scenes: list[tuple[str, Path, list[Path]]] = []
        self.official = (self.root / "hr_dataset").is_dir() and (self.root / "lr_dataset").is_dir()
        if self.official:
            suffix = {"rgb": "_rgb.png", "ps": "_ps.tiff"}.get(hr)
            if suffix is None:
                raise DatasetError(f"WorldStrat: hr must be 'rgb' or 'ps', got {hr!r}")
            for lr_dir in sorted((self.root / "lr_dataset").glob("*/L2A")):
                aoi = lr_dir.parent.name
                hr_path = self.root / "hr_dataset" / aoi / f"{aoi}{suffix}"
                revisits = sorted(lr_dir.glob(f"{aoi}-*-L2A_data.tif*"), key=lambda p: _natural_key(p.name))
                if hr_path.is_file() and revisits:
                    self.scenes.append((aoi, hr_path, revisits))
        else:
            for hr_path in sorted(self.root.rglob("HR.*")):
                if hr_path.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                revisits = sorted((p for p in hr_path.parent.glob("L*") if p.suffix.lower() in IMAGE_EXTENSIONS
                                   and not p.stem.lower().endswith("_mask")), key=lambda p: _natural_key(p.name))
                if revisits:
                    key = hr_path.parent.relative_to(self.root).as_posix()
                    self.scenes.append((key if key != "." else hr_path.parent.name, hr_path, revisits))
        if splits_csv is not None:
            keep = self._read_split(Path(splits_csv), split)
            self.scenes = [s for s in self.scenes if s[0] in keep]
        if not self.scenes:
            raise DatasetError(
                f"{self.root}: no WorldStrat scenes found (hr_dataset/ + lr_dataset/<AOI>/L2A/, or <scene>/HR.png + L*.png)")

    @staticmethod
    def _read_split(path: Path, split: str | None) -> set[str]:
        if split is None:
            raise DatasetError(f"{path}: splits_csv needs a split name")
        if not path.is_file():
            raise DatasetError(f"{path}: splits file not found")
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "split" not in rows[0]:
            raise DatasetError(f"{path}: needs a 'split' column")
        cols = list(rows[0])
        name_col = next((c for c in cols if c and c.lower() in ("tile", "aoi", "name", "id")), None)
        if name_col is None:
            name_col = cols[1] if len(cols) > 1 and cols[0] in ("", "index") else cols[0]
        return {r[name_col] for r in rows if r["split"] == split}

    def __len__(self) -> int:
        return len(self.scenes)

    def _cloud_mask(self, revisit: Path) -> Path | None:
        if self.official:
            # WorldStrat's own naming ({AOI}-{i}-CLM.tiff, as its downloader and loader); never -dataMask,
            # whose 1 means *valid data*
            prefix = revisit.name.split("-L2A_data")[0]
            for ext in (".tiff", ".tif"):
                cand = revisit.with_name(f"{prefix}-CLM{ext}")
                if cand.is_file():
                    return cand
            if not self._warned_no_clm:
                self._warned_no_clm = True
                warnings.warn(f"WorldStrat: {revisit.parent}/{prefix}-CLM.tiff not found; revisits without a CLM "
                              "cloud mask are treated as clear (no-data pixels still count)", stacklevel=2)
            return None
        for ext in IMAGE_EXTENSIONS:
            cand = revisit.with_name(revisit.stem + "_mask" + ext)
            if cand.is_file():
                return cand
        return None

    def _read_lr(self, path: Path) -> np.ndarray:
        arr, alpha = read_array(path)
        bands = self.lr_bands if self.official else None
        chw = to_chw(arr, alpha=alpha, bands=bands, path=path)
        return np.clip(_scale_values(chw, self.lr_data_range, path), 0, 1)

    @staticmethod
    def _resize(chw: np.ndarray, size: int | None, mode: str = "bilinear") -> np.ndarray:
        if size is None or chw.shape[-2:] == (size, size):
            return chw
        t = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None]
        if mode == "nearest":
            return torch.nn.functional.interpolate(t, size=(size, size), mode="nearest")[0].numpy()
        return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                                               align_corners=False)[0].numpy()

    def __getitem__(self, index: int) -> dict[str, Any]:
        key, hr_path, revisits = self.scenes[index]
        rng = self.rng(index)
        hr = _read_chw(hr_path)
        hr = np.clip(_scale_values(hr[:3] if hr.shape[0] > 3 else hr, self.hr_data_range, hr_path), 0, 1)
        hr = self._resize(hr, self.hr_size)
        frames, clouds = [], []
        for p in revisits:
            lr = self._resize(self._read_lr(p), self.lr_size)
            mpath = self._cloud_mask(p)
            if mpath is not None:
                m = _read_chw(mpath)[:1].astype(np.float32)
                cloud = self._resize((m != 0).astype(np.float32), self.lr_size, "nearest") > 0.5
            else:
                flagged = "cloud" in p.stem.lower() and not self.official
                cloud = np.full((1, *lr.shape[-2:]), flagged, dtype=bool)
            if frames and lr.shape != frames[0].shape:
                raise DatasetError(f"{p}: revisit shape {lr.shape} differs from {frames[0].shape}; pass lr_size")
            frames.append(lr)
            clouds.append(cloud)
        stack, cloud_stack = np.stack(frames), np.stack(clouds)
        nodata = (stack == 0).all(axis=1, keepdims=True)
        bad = (cloud_stack | nodata).reshape(len(frames), -1).mean(axis=1)
        chosen = select_frames(bad, self.n_frames, rng, self.frame_order)
        return self._finish({"lr": stack[chosen], "hr": hr, "lr_valid": ~(cloud_stack | nodata)[chosen],
                             "hr_valid": ~(hr == 0).all(axis=0, keepdims=True),
                             "frames": chosen.astype(np.int64), "key": key}, rng)


# --------------------------------------------------------------------------------------------------

class ProbaVDataset(_PairedBase):
    """PROBA-V (Kelvins challenge): ``{split}/{RED,NIR}/imgsetNNNN/`` with ``LR000.png..`` (128x128) and
    ``QM000.png..`` clear masks (nonzero = clear), ``HR.png`` (384x384) and ``SM.png`` (nonzero = clear);
    ``norm.csv`` at the root (``imgsetNNNN value`` per line, the baseline cPSNR normaliser) is attached as
    ``sample["norm"]`` (NaN when absent). Values are 14-bit in 16-bit PNGs, divided by ``data_range``
    (default 65535, the competition's scale: the Kelvins helper reads PNGs with ``img_as_float64`` and
    ``norm.csv`` holds cPSNRs on that scale; 16383 would put cPSNR ~12.04 dB lower). Frames are ranked by
    clear fraction (most clear first, seeded tie-break).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", band: str | None = None, n_frames: int = 9,
                 *, seed: int = 0, data_range: float = PROBAV_DATA_RANGE, crop_size: int | None = None,
                 frame_order: str = "random") -> None:
        super().__init__(seed, crop_size, frame_order)
        self.root, self.split, self.n_frames, self.data_range = Path(root), split, int(n_frames), float(data_range)
        bands = [band.upper()] if band else ["NIR", "RED"]
        self.sets: list[tuple[str, Path]] = []
        for b in bands:
            base = self.root / split / b
            self.sets += [(f"{split}/{b}/{d.name}", d) for d in sorted(base.glob("imgset*")) if d.is_dir()]
        if not self.sets:
            raise DatasetError(f"{self.root}: no PROBA-V image sets under {split}/{'|'.join(bands)}/imgset*")
        self.norms: dict[str, float] = {}
        norm_path = self.root / "norm.csv"
        if norm_path.is_file():
            for line_no, line in enumerate(norm_path.read_text().splitlines(), start=1):
                parts = [p for p in re.split(r"[\s,]+", line.strip()) if p]
                if len(parts) < 2:
                    continue
                try:
                    self.norms[parts[0]] = float(parts[1])
                except ValueError:
                    if line_no > 1:  # a header line is fine
                        raise DatasetError(f"{norm_path}:{line_no}: expected 'imgset value', got {line!r}") from None

    def __len__(self) -> int:
        return len(self.sets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key, d = self.sets[index]
        rng = self.rng(index)
        lr_paths = sorted(d.glob("LR*.png"), key=lambda p: _natural_key(p.name))
        if not lr_paths:
            raise DatasetError(f"{d}: no LR*.png frames")
        frames, clear = [], []
        for p in lr_paths:
            frames.append(_scale_values(_read_chw(p), self.data_range, p))
            qm = p.with_name("QM" + p.name[2:])
            clear.append((_read_chw(qm)[:1] != 0) if qm.is_file() else np.ones((1, *frames[-1].shape[-2:]), bool))
        stack, clear_stack = np.stack(frames), np.stack(clear)
        chosen = select_frames(1.0 - clear_stack.reshape(len(frames), -1).mean(axis=1), self.n_frames, rng,
                               self.frame_order)
        sample: dict[str, Any] = {"lr": stack[chosen], "lr_valid": clear_stack[chosen],
                                  "frames": chosen.astype(np.int64), "key": key,
                                  "norm": float(self.norms.get(d.name, float("nan")))}
        hr_path = d / "HR.png"
        if hr_path.is_file():
            sample["hr"] = _scale_values(_read_chw(hr_path), self.data_range, hr_path)
            sm = d / "SM.png"
            sample["hr_valid"] = (_read_chw(sm)[:1] != 0) if sm.is_file() else np.ones((1, *sample["hr"].shape[-2:]), bool)
        return self._finish(sample, rng)


# --------------------------------------------------------------------------------------------------

class OLI2MSIDataset(_PairedBase):
    """OLI2MSI: float GeoTIFF pairs ``{split}_hr/NAME.TIF`` (Sentinel-2 MSI, 10 m) and ``{split}_lr/NAME.TIF``
    (Landsat-8 OLI, 30 m; x3), matched by file name. Values are reflectance floats, divided by
    ``data_range`` (default 1.0) and clipped to [0, 1]. One frame (T = 1)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", *, seed: int = 0, data_range: float = 1.0,
                 crop_size: int | None = None) -> None:
        super().__init__(seed, crop_size)
        self.root, self.split, self.data_range = Path(root), split, float(data_range)
        hr_dir, lr_dir = self.root / f"{split}_hr", self.root / f"{split}_lr"
        if not hr_dir.is_dir() or not lr_dir.is_dir():
            raise DatasetError(f"{self.root}: expected {split}_hr/ and {split}_lr/ folders of GeoTIFFs")
        lr_index = {p.stem: p for p in lr_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff")}
        self.pairs = [(p.stem, p, lr_index[p.stem]) for p in sorted(hr_dir.iterdir())
                      if p.suffix.lower() in (".tif", ".tiff") and p.stem in lr_index]
        if not self.pairs:
            raise DatasetError(f"{self.root}: no matching file names in {split}_hr/ and {split}_lr/")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key, hr_path, lr_path = self.pairs[index]
        rng = self.rng(index)
        hr = np.clip(_scale_values(_read_chw(hr_path), self.data_range, hr_path), 0, 1)
        lr = np.clip(_scale_values(_read_chw(lr_path), self.data_range, lr_path), 0, 1)[None]
        return self._finish({"lr": lr, "hr": hr, "lr_valid": np.isfinite(lr).all(axis=1, keepdims=True),
                             "hr_valid": np.isfinite(hr).all(axis=0, keepdims=True),
                             "frames": np.zeros(1, np.int64), "key": key}, rng)


# --------------------------------------------------------------------------------------------------

class PairedFolderDataset(_PairedBase):
    """Generic pairs: ``lr_dir`` and ``hr_dir`` files matched by relative path without extension.

    An LR file is one frame, or with ``frame_size`` a strip of square frames of that width stacked
    vertically (``frame_size="auto"``: frame height = image width). ``n_frames`` chooses that many frames
    (black frames last); ``None`` keeps all (they must then agree within a batch). ``bands`` (1-based)
    select channels of both LR and HR; values are divided by ``data_range`` (default by dtype).
    """

    def __init__(self, lr_dir: str | os.PathLike, hr_dir: str | os.PathLike, *, n_frames: int | None = None,
                 frame_size: int | str | None = None, seed: int = 0, bands: Sequence[int] | None = None,
                 data_range: float | None = None, crop_size: int | None = None, frame_order: str = "random") -> None:
        super().__init__(seed, crop_size, frame_order)
        from clipscore_sr.io import pair_folders

        pairing = pair_folders(hr_dir, lr_dir)
        self.pairs = pairing.pairs
        self.unmatched = pairing.warning()
        self.n_frames, self.frame_size, self.bands, self.data_range = n_frames, frame_size, bands, data_range

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        rng = self.rng(index)
        lr_path, hr_path = Path(pair.sr), Path(pair.gt)
        arr, alpha = read_array(lr_path)
        chw = to_chw(arr, alpha=alpha, bands=self.bands, path=lr_path)
        frames = _scale_values(split_frames(chw, self.frame_size, lr_path), self.data_range, lr_path)
        chosen = (select_frames(black_fraction(frames), self.n_frames, rng, self.frame_order) if self.n_frames
                  else np.arange(frames.shape[0]))
        hr = _scale_values(_read_chw(hr_path, self.bands), self.data_range, hr_path)
        lr = frames[chosen]
        return self._finish({"lr": lr, "hr": hr, "lr_valid": ~(lr == 0).all(axis=1, keepdims=True),
                             "hr_valid": ~(hr == 0).all(axis=0, keepdims=True),
                             "frames": chosen.astype(np.int64), "key": pair.key}, rng)


def split_frames(chw: np.ndarray, frame_size: int | str | None, path: str | os.PathLike = "") -> np.ndarray:
    """``[C, H, W]`` -> ``[T, C, S, W]``: ``None`` = one frame; an int or ``"auto"`` (= W) = vertical strip."""
    if frame_size is None:
        return chw[None]
    c, h, w = chw.shape
    s = w if frame_size == "auto" else int(frame_size)
    if s != w or h % s:
        raise ImageReadError(f"{path}: {h}x{w} image is not a vertical strip of {s}x{s} frames")
    return decode_s2_strip(np.moveaxis(chw, 0, -1), s)
