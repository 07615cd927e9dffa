"""Reading images (PNG, JPEG, BMP, TIFF/GeoTIFF incl. LZW/deflate), data ranges, band selection,
Sentinel-2 strips, GT/SR pairing and masks.

Conventions
-----------
* :func:`read_image` returns ``float32 [C, H, W]`` values in ``[0, 1]`` (file values divided by the
  data range) plus that data range.
* Data range: 255 for uint8, 65535 for uint16, 1.0 for float and bool, unless the caller passes
  ``data_range`` (e.g. 4095 for 12-bit data stored in uint16, 10000 for S2 L2A reflectance).
* ``bands`` are **1-based** (as in GDAL/rasterio): ``bands=(3, 2, 1)`` picks the third, second and first
  band in that order. RGBA and gray+alpha drop the alpha band when no bands are given.
* Grayscale stays one channel.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ImageReadError, PairingError

if TYPE_CHECKING:
    import torch


def _is_tensor(x: object) -> bool:
    """``x`` is a torch tensor. torch is imported by whoever made one: reading images never needs it (the
    report's thumbnail workers read thousands of files without paying torch's import)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF_EXTENSIONS = (".tif", ".tiff")

#: default decompression-bomb cap in pixels (height x width x planes), the same as Pillow's MAX_IMAGE_PIXELS
DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)


def max_pixels() -> int | None:
    """The pixel cap every reader applies before decoding: ``$CLIPSCORE_SR_MAX_PIXELS`` (a number; ``0`` or
    ``none`` disables it), default :data:`DEFAULT_MAX_PIXELS` (89,478,485, Pillow's ``MAX_IMAGE_PIXELS``)."""
    env = os.environ.get("CLIPSCORE_SR_MAX_PIXELS", "").strip().lower()
    if not env:
        return DEFAULT_MAX_PIXELS
    if env in ("0", "none", "off"):
        return None
    try:
        value = int(float(env))
    except ValueError:
        raise ImageReadError(f"CLIPSCORE_SR_MAX_PIXELS='{env}': expected a number of pixels (0 = no cap)") from None
    return value if value > 0 else None


def _tiff_shape(tif) -> tuple[int, int, int, int]:
    """:func:`image_header_shape` of an open ``tifffile.TiffFile``."""
    series = tif.series[0]
    dims = dict(zip(series.axes, tuple(series.shape)))
    h, w = dims.get("Y", 1), dims.get("X", 1)
    chans = next((n for a, n in dims.items() if a in "SC"), 1)
    planes = int(np.prod([n for a, n in dims.items() if a not in "YXSC"] or [1]))
    alpha = chans in (2, 4) and series.dtype == np.uint8  # as read_array treats 8-bit gray+alpha / RGBA
    return int(h), int(w), int(chans) - alpha, planes


def image_header_shape(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """``(height, width, bands, planes)`` from the file header alone, nothing decoded. ``bands`` is what
    :func:`read_image` returns without ``bands=`` (alpha dropped, palette as RGB); ``planes`` > 1 for
    multi-page/volume TIFFs. Raises :class:`ImageReadError`."""
    path = Path(path)
    try:
        if path.suffix.lower() in _TIFF_EXTENSIONS:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _tiff_shape(tif)
        with open(path, "rb") as fh:
            ihdr = png_ihdr(fh.read(26))
        if ihdr is not None:
            w, h, _, colour = ihdr
            return h, w, {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}.get(colour, 1), 1
        from PIL import Image

        with Image.open(path) as im:  # lazy: reads the header only
            w, h = im.size
            bands = im.getbands()
            n = 3 if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV") else len(bands) - ("A" in bands)
            return int(h), int(w), n, int(getattr(im, "n_frames", 1) or 1)
    except ImageReadError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{path}: cannot decode image ({msg})") from None


def check_pixel_cap(path: str | os.PathLike, shape: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
    """Header shape of ``path`` (or ``shape``, already read from it); an image over :func:`max_pixels` raises
    before any decoding."""
    h, w, c, planes = shape if shape is not None else image_header_shape(path)
    cap = max_pixels()
    if cap is not None and h * w * planes > cap:
        raise ImageReadError(
            f"{path}: {w}x{h}" + (f"x{planes} planes" if planes > 1 else "") + f" = {h * w * planes:,} pixels "
            f"exceeds the cap of {cap:,} (a decompression bomb?); raise CLIPSCORE_SR_MAX_PIXELS if it is real")
    return h, w, c, planes


@dataclass
class LoadedImage:
    """A decoded image: ``data`` float32 ``[C,H,W]`` in [0,1], the ``data_range`` it was divided by,
    and the storage dtype of the file (``uint8``, ``uint16``, ``float32``...)."""

    data: np.ndarray
    data_range: float
    dtype: str
    path: str = ""
    #: the largest stored value (integer types; NaN for float files), before dividing by ``data_range``
    max_value: float = float("nan")

    def tensor(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.data)


def parse_bands(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``'3,2,1'`` -> ``(3, 2, 1)`` (1-based band numbers)."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        try:
            bands = tuple(int(t) for t in text.split(",") if t.strip())
        except ValueError:
            raise ImageReadError(f"--bands '{text}': expected comma-separated 1-based band numbers like 3,2,1") from None
    else:
        bands = tuple(int(b) for b in text)
    if not bands or any(b < 1 for b in bands):
        raise ImageReadError(f"--bands {text}: band numbers are 1-based and must be >= 1")
    return bands


def _read_tiff(tif, path: Path) -> np.ndarray:
    """Decode an open ``tifffile.TiffFile`` to ``[H, W, C]`` (or ``[H, W]``), whatever its planar configuration."""
    series = tif.series[0]
    arr = series.asarray()
    axes = series.axes
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3:
        # 'YXS' (contiguous samples) is already HWC; 'SYX'/'CYX'/'QYX'/'IYX' are band-first.
        if axes[-1] in "SC" and axes[0] == "Y":
            return arr
        if axes[1:] == "YX":
            return np.moveaxis(arr, 0, -1)
        raise ImageReadError(f"{path}: unsupported TIFF axes '{axes}' (expected YX, YXS or band-first ?YX)")
    squeezed = np.squeeze(arr)
    if squeezed.ndim in (2, 3) and squeezed.ndim < arr.ndim:
        return _read_tiff_array_fallback(squeezed, path)
    raise ImageReadError(f"{path}: TIFF has {arr.ndim} dimensions (axes '{axes}'); expected a single 2-D image")


def _read_tiff_array_fallback(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] < min(arr.shape[1:]) and arr.shape[0] <= 32:
        return np.moveaxis(arr, 0, -1)
    return arr


def _read_pil(path: Path) -> tuple[np.ndarray, bool]:
    """Decode with Pillow; returns ``[H,W]`` or ``[H,W,C]`` and whether the last band is alpha."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels()  # Pillow's own check agrees with ours (checked before decoding)
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            mode = im.mode
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
            mode = "RGB"
        elif mode == "1":
            im = im.convert("L")
            mode = "L"
        if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            arr = np.asarray(im, dtype=np.uint16)
        elif mode == "I":
            arr = np.asarray(im)
            if arr.min() >= 0 and arr.max() <= 65535:
                arr = arr.astype(np.uint16)
        else:
            arr = np.asarray(im)
    return arr, mode in ("RGBA", "LA", "PA", "La", "RGBa")


def png_ihdr(head: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, bit depth, colour type)`` from a PNG's first 26 bytes (signature + IHDR chunk); None
    when they are not a PNG header."""
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24], head[25]


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None if the file is not a PNG."""
    with open(path, "rb") as fh:
        ihdr = png_ihdr(fh.read(26))
    return None if ihdr is None else ihdr[2:]


def _read_png16(path: Path, colour_type: int) -> tuple[np.ndarray, bool]:
    """16-bit PNGs (Pillow would truncate 16-bit RGB to 8 bits): decoded with imagecodecs."""
    import imagecodecs

    arr = imagecodecs.png_decode(path.read_bytes())
    return arr, colour_type in (4, 6)  # gray+alpha, RGBA


def read_array(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Decode a file to its stored values ``[H, W]`` or ``[H, W, C]``; second item: last band is alpha."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    try:
        if path.suffix.lower() in _TIFF_EXTENSIONS:  # one parse of the tags for the cap and the pixels
            import tifffile

            with tifffile.TiffFile(path) as tif:
                check_pixel_cap(path, _tiff_shape(tif))  # before any decoder allocates anything
                arr = _read_tiff(tif, path)
            alpha = False
            if arr.ndim == 3 and arr.shape[-1] in (2, 4) and arr.dtype == np.uint8:
                alpha = True  # 8-bit gray+alpha / RGBA TIFFs
            return arr, alpha
        check_pixel_cap(path)  # before any decoder allocates anything
        if path.suffix.lower() == ".png":
            header = _png_header(path)
            if header is not None and header[0] == 16:
                return _read_png16(path, header[1])
        return _read_pil(path)
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors differ per library; report them uniformly
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{path}: cannot decode image ({msg})") from None


#: accepted ``--data-range`` values: finite and within these bounds (outside them SSIM's constants and PSNR's
#: peak make every comparison meaningless, e.g. a range of 1e-30 gives SSIM -3e51)
DATA_RANGE_BOUNDS = (1e-6, 1e12)
#: values may exceed ``[0, data range]`` by this fraction of the range before a pair is reported
RANGE_TOLERANCE = 1e-3


def check_data_range(value: float | None, what: str = "--data-range") -> float | None:
    """``value`` as a float if it is a usable data range (None passes); one-line :class:`ImageReadError`
    for NaN, inf, zero, negative or absurd values (outside :data:`DATA_RANGE_BOUNDS`)."""
    if value is None:
        return None
    try:
        rng = float(value)
    except (TypeError, ValueError):
        raise ImageReadError(f"{what} {value!r}: expected a number (the value of full scale)") from None
    lo, hi = DATA_RANGE_BOUNDS
    if not (lo <= rng <= hi):  # also False for NaN
        raise ImageReadError(f"{what} {value!r}: must be a finite number between {lo:g} and {hi:g} "
                             "(the value of full scale: 255 for 8-bit, 65535 for 16-bit, 1 for float in [0,1])")
    return rng


def out_of_range(data: np.ndarray, tolerance: float = RANGE_TOLERANCE) -> tuple[float, float] | None:
    """``(min, max)`` of scaled values when they leave ``[0, 1]`` by more than ``tolerance``, else None."""
    lo, hi = float(np.min(data)), float(np.max(data))
    return (lo, hi) if lo < -tolerance or hi > 1 + tolerance else None


def default_data_range(dtype: np.dtype, path: str | os.PathLike = "") -> float:
    """255 for uint8, 65535 for uint16, 1.0 for float/bool; other integer types need an explicit range."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype == np.bool_ or dtype.kind == "f":
        return 1.0
    raise ImageReadError(f"{path}: pixel type {dtype} has no default data range; pass --data-range")


def to_chw(arr: np.ndarray, *, alpha: bool = False, bands: Sequence[int] | None = None,
           path: str | os.PathLike = "") -> np.ndarray:
    """``[H,W]``/``[H,W,C]`` -> ``[C,H,W]``, selecting 1-based ``bands`` or dropping alpha."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageReadError(f"{path}: expected a 2-D image, got array of shape {arr.shape}")
    n = arr.shape[-1]
    if bands is not None:
        bad = [b for b in bands if b > n]
        if bad:
            raise ImageReadError(f"{path}: --bands {','.join(map(str, bands))} asks for band {bad[0]} but the image has {n}")
        arr = arr[:, :, [b - 1 for b in bands]]
    elif alpha:
        arr = arr[:, :, : n - 1]
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def read_image(path: str | os.PathLike, *, bands: Sequence[int] | None = None,
               data_range: float | None = None) -> LoadedImage:
    """Read any supported image as float32 ``[C,H,W]`` scaled to [0,1] by its data range."""
    arr, alpha = read_array(path)
    if arr.dtype.kind not in "uifb":
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype}")
    rng = check_data_range(data_range) if data_range is not None else default_data_range(arr.dtype, path)
    chw = to_chw(arr, alpha=alpha, bands=bands, path=path)
    data = chw.astype(np.float32) if chw.dtype != np.float64 else chw
    raw_max = float(chw.max()) if chw.dtype.kind in "ui" and chw.size else float("nan")
    data = (data / rng).astype(np.float32)
    return LoadedImage(data=data, data_range=rng, dtype=str(arr.dtype), path=str(path), max_value=raw_max)


#: full-scale values of the usual remote-sensing encodings in uint16 (the hint of :func:`small_range_hint`)
RANGE_HINTS = ((1023.0, "10-bit"), (4095.0, "12-bit"), (10000.0, "Sentinel-2 reflectance x10000"),
               (16383.0, "14-bit"))


def small_range_hint(dtype: str, data_range: float, max_seen: float, *, requested: bool = False) -> str | None:
    """A one-line warning when default-ranged ``uint16`` data never exceed a quarter of 65535 (12-bit data or
    reflectance x10000 scored against 65535 give PSNR about 24 dB too high), else None. ``requested``: the
    user gave ``--data-range`` (never warned)."""
    if requested or np.dtype(dtype) != np.uint16 or not np.isfinite(max_seen) or max_seen >= data_range / 4:
        return None
    fits = [f"{v:g} ({what})" for v, what in RANGE_HINTS if max_seen <= v * 1.15]
    suggest = ("--data-range " + (", ".join(fits[:-1]) + " or " + fits[-1] if len(fits) > 1 else fits[0])
               if fits else "--data-range <full-scale value>")
    return (f"uint16 data reach at most {max_seen:g}, {max_seen / data_range:.1%} of the default range "
            f"{data_range:g} that the scores assume; if the data are not 16-bit, pass {suggest}")


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A clear-pixel mask ``[H, W]`` bool: nonzero = clear (PROBA-V ``SM.png``/``QM*.png`` style)."""
    arr, _ = read_array(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr != 0


def fill_pixels(hwc: np.ndarray, values: Sequence[float] = (0, 255)) -> np.ndarray:
    """``[H, W]`` mask of no-data fill: pixels whose every band equals one of ``values`` (e.g. the pure white
    collar of a rotated Landsat scene, 255 in all bands of 8-bit RGB, or a 0 fill)."""
    hwc = np.asarray(hwc)
    if hwc.ndim == 2:
        hwc = hwc[..., None]
    return np.logical_or.reduce([(hwc == v).all(axis=-1) for v in values])


def file_digest(path: str | os.PathLike, extra: str = "") -> str:
    """SHA-1 of the file's bytes (plus ``extra``, e.g. band selection): the identity used by caches."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if extra:
        h.update(b"\0" + extra.encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Sentinel-2 strips (S2-NAIP layout)

def decode_s2_strip(strip: np.ndarray | torch.Tensor, frame_size: int = 32):
    """Split a strip of T frames stacked vertically, ``[T*S, S, C]`` (or ``[T*S, S]``), into ``[T, C, S, S]``.

    Frames are cut along the height axis; channels are never mixed (a plain ``reshape(T, C, S, S)`` of
    the HWC array would interleave rows and channels).
    """
    is_tensor = _is_tensor(strip)
    arr = strip if is_tensor else np.asarray(strip)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageReadError(f"S2 strip: expected [T*{frame_size}, {frame_size}, C], got shape {tuple(arr.shape)}")
    h, w, c = arr.shape
    if w != frame_size or h % frame_size != 0:
        raise ImageReadError(
            f"S2 strip: shape {tuple(arr.shape)} is not T frames of {frame_size}x{frame_size} stacked vertically")
    t = h // frame_size
    frames = arr.reshape(t, frame_size, frame_size, c)  # split height only: [T, S, S, C]
    if is_tensor:
        return frames.permute(0, 3, 1, 2).contiguous()
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------------------------------
# Pairing

@dataclass
class Pair:
    """One GT/SR pair; ``key`` is the relative path without extension (posix separators)."""

    key: str
    gt: str  # "" when there is no HR image (LR-reference scoring)
    sr: str
    mask: str | None = None
    lr: str | None = None


@dataclass
class Pairing:
    pairs: list[Pair]
    unmatched_gt: list[str] = field(default_factory=list)
    unmatched_sr: list[str] = field(default_factory=list)
    reference: str = "GT"  # what SR files are paired with: "GT" or "LR" (pair_lr_folders)

    def warning(self) -> str | None:
        if not self.unmatched_gt and not self.unmatched_sr:
            return None
        def show(items: list[str]) -> str:
            head = ", ".join(items[:5])
            return head + (f", ... (+{len(items) - 5} more)" if len(items) > 5 else "")
        parts = []
        if self.unmatched_gt:
            parts.append(f"{len(self.unmatched_gt)} {self.reference} file(s) without SR: {show(self.unmatched_gt)}")
        if self.unmatched_sr:
            parts.append(f"{len(self.unmatched_sr)} SR file(s) without {self.reference}: {show(self.unmatched_sr)}")
        return f"{len(self.pairs)} pairs matched; " + "; ".join(parts)


def index_images(root: str | os.PathLike) -> dict[str, Path]:
    """Map key (relative path without extension) -> file, recursively, for supported image files."""
    root = Path(root)
    if not root.is_dir():
        raise PairingError(f"{root}: not a directory")
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in index:
            raise PairingError(f"{root}: two images share the key '{key}' ({index[key].name}, {path.name})")
        index[key] = path
    return index


def pair_folders(gt_dir: str | os.PathLike, sr_dir: str | os.PathLike, *, strict: bool = False,
                 mask_dir: str | os.PathLike | None = None) -> Pairing:
    """Pair files by relative path without extension: ``gt/a/x.png`` pairs with ``out/a/x.tif``.

    No match at all is an error; unmatched files are reported (an error with ``strict``). Masks in
    ``mask_dir`` are paired by the same key; every pair must have one.
    """
    gt_index, sr_index = index_images(gt_dir), index_images(sr_dir)
    if not gt_index:
        raise PairingError(f"{gt_dir}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    if not sr_index:
        raise PairingError(f"{sr_dir}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    keys = sorted(gt_index.keys() & sr_index.keys())
    pairing = Pairing(
        pairs=[Pair(k, str(gt_index[k]), str(sr_index[k])) for k in keys],
        unmatched_gt=sorted(gt_index.keys() - sr_index.keys()),
        unmatched_sr=sorted(sr_index.keys() - gt_index.keys()),
    )
    if not keys:
        subdirs = sorted(p.name for p in Path(sr_dir).iterdir() if p.is_dir())
        nested = {k.split("/", 1)[1] for k in sr_index if "/" in k}
        if subdirs and nested & gt_index.keys() and not any(p.is_file() for p in Path(sr_dir).iterdir()):
            shown = ", ".join(subdirs[:5]) + (", ..." if len(subdirs) > 5 else "")
            raise PairingError(
                f"no GT/SR pairs: {sr_dir} holds method subfolders ({shown}), not SR files: score one of them, "
                f"e.g. {Path(sr_dir) / subdirs[0]}, or all of them as methods with --methods")
        raise PairingError(
            f"no GT/SR pairs: none of the {len(gt_index)} files in {gt_dir} has a counterpart in {sr_dir} "
            "(files pair by relative path without extension)")
    if strict and (pairing.unmatched_gt or pairing.unmatched_sr):
        raise PairingError(f"--strict: {pairing.warning()}")
    if mask_dir is not None:
        attach_masks(pairing.pairs, mask_dir)
    return pairing


def pair_method_folders(gt_dir: str | os.PathLike, sr_parent: str | os.PathLike, *, strict: bool = False,
                        mask_dir: str | os.PathLike | None = None) -> Pairing:
    """One :func:`pair_folders` per subfolder of ``sr_parent`` (one SR method each); keys ``METHOD/KEY``."""
    subdirs = sorted(p for p in Path(sr_parent).iterdir() if p.is_dir())
    if not subdirs:
        raise PairingError(f"{sr_parent}: no method subfolders (--methods expects SR_DIR/METHOD/...)")
    out = Pairing(pairs=[])
    for sub in subdirs:
        one = pair_folders(gt_dir, sub, strict=strict, mask_dir=mask_dir)
        out.pairs += [Pair(f"{sub.name}/{p.key}", p.gt, p.sr, p.mask) for p in one.pairs]
        out.unmatched_gt += [f"{sub.name}: {k}" for k in one.unmatched_gt]
        out.unmatched_sr += [f"{sub.name}/{k}" for k in one.unmatched_sr]
    return out


def attach_masks(pairs: Iterable[Pair], mask_dir: str | os.PathLike) -> None:
    mask_index = index_images(mask_dir)
    missing = [p.key for p in pairs if p.key not in mask_index]
    if missing:
        raise PairingError(f"{mask_dir}: no mask for {len(missing)} pair(s), e.g. '{missing[0]}'")
    for p in pairs:
        p.mask = str(mask_index[p.key])


def attach_lr(pairs: Iterable[Pair], lr_dir: str | os.PathLike) -> list[str]:
    """Give every pair its LR input from ``lr_dir``, paired by the same key (relative path without extension);
    a pair without one is an error."""
    lr_index = index_images(lr_dir)
    pairs = list(pairs)
    if not any(p.key in lr_index for p in pairs):
        raise PairingError(f"{lr_dir}: no LR image for any of the {len(pairs)} pair(s), e.g. '{pairs[0].key}' "
                           "(LR files pair by relative path without extension)")
    missing = []
    for p in pairs:  # a pair without LR: the metrics that need it fail on that pair only (per-pair error)
        p.lr = str(lr_index[p.key]) if p.key in lr_index else None
        if p.lr is None:
            missing.append(p.key)
    return missing


def pair_lr_folders(lr_dir: str | os.PathLike, sr_dir: str | os.PathLike, *, strict: bool = False) -> Pairing:
    """SR outputs and their LR inputs, no HR: pairs with ``gt=""`` and ``lr`` set, keyed as :func:`pair_folders`."""
    lr_index, sr_index = index_images(lr_dir), index_images(sr_dir)
    if not sr_index:
        raise PairingError(f"{sr_dir}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    keys = sorted(lr_index.keys() & sr_index.keys())
    if not keys:
        raise PairingError(f"no LR/SR pairs: none of the {len(sr_index)} files in {sr_dir} has a counterpart in "
                           f"{lr_dir} (files pair by relative path without extension)")
    pairing = Pairing(pairs=[Pair(k, "", str(sr_index[k]), lr=str(lr_index[k])) for k in keys],
                      unmatched_gt=sorted(lr_index.keys() - sr_index.keys()),
                      unmatched_sr=sorted(sr_index.keys() - lr_index.keys()), reference="LR")
    if strict and (pairing.unmatched_gt or pairing.unmatched_sr):
        raise PairingError(f"--strict: {pairing.warning()}")
    return pairing


def parse_lr_frame(value: str | int | None) -> int | str | None:
    """``--lr-frame``: None (the LR file is one image), a 1-based frame number, or ``mean``."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() == "mean":
        return "mean"
    try:
        frame = int(value)
    except (TypeError, ValueError):
        raise ImageReadError(f"--lr-frame {value!r}: expected a 1-based frame number or 'mean'") from None
    if frame < 1:
        raise ImageReadError(f"--lr-frame {value}: frame numbers are 1-based")
    return frame


def select_lr_frame(chw: np.ndarray, frame: int | str | None, path: str | os.PathLike = "") -> np.ndarray:
    """A multi-frame LR strip ``[C, T*S, S]`` (T square frames stacked vertically, as S2-NAIP strips) ->
    ``[C, S, S]``: the 1-based ``frame`` or the per-pixel ``mean`` of all frames; None returns ``chw``."""
    if frame is None:
        return chw
    c, h, w = chw.shape
    if h % w:
        raise ImageReadError(f"{path}: --lr-frame needs a strip of square frames stacked vertically, got {w}x{h}")
    t = h // w
    frames = chw.reshape(c, t, w, w)
    if frame == "mean":
        return np.ascontiguousarray(frames.mean(axis=1, dtype=np.float64).astype(chw.dtype))
    if frame > t:
        raise ImageReadError(f"{path}: --lr-frame {frame} but the strip has {t} frame(s)")
    return np.ascontiguousarray(frames[:, frame - 1])


def read_pairs_csv(path: str | os.PathLike, *, strict: bool = True) -> Pairing:
    """A manifest CSV with columns ``gt,sr`` (optional ``key``, ``mask``, ``lr``); relative paths are relative to
    the CSV's folder. Missing files are an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise PairingError(f"{path}: pairs file not found")
    base = path.parent
    pairs: list[Pair] = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: a BOM (as Excel writes) is not part of 'gt'
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PairingError(f"{path}:{line}: not valid UTF-8 (byte {exc.object[exc.start]:#04x}); "
                           "save the file as UTF-8") from None
    import io as _io

    with _io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"gt", "sr"} <= cols:
            raise PairingError(f"{path}: needs columns 'gt' and 'sr' (found: {', '.join(sorted(cols)) or 'none'})")
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            gt, sr = (row.get("gt") or "").strip(), (row.get("sr") or "").strip()
            if not gt or not sr:
                raise PairingError(f"{path}:{line}: empty 'gt' or 'sr'")
            gt_p, sr_p = base / gt, base / sr
            mask = (row.get("mask") or "").strip() or None
            key = (row.get("key") or "").strip() or Path(sr).with_suffix("").as_posix()
            if key in seen:
                raise PairingError(f"{path}:{line}: duplicate key '{key}' (add a 'key' column)")
            seen.add(key)
            if strict:
                for name, p in (("gt", gt_p), ("sr", sr_p)):
                    if not p.is_file():
                        raise PairingError(f"{path}:{line}: {name} file not found: {p}")
            lr = (row.get("lr") or "").strip() or None
            pairs.append(Pair(key, str(gt_p), str(sr_p), str(base / mask) if mask else None,
                              lr=str(base / lr) if lr else None))
    if not pairs:
        raise PairingError(f"{path}: no pairs listed")
    return Pairing(pairs=pairs)


def write_image(path: str | os.PathLike, chw: np.ndarray | torch.Tensor, *, dtype: str = "uint8") -> None:
    """Write ``[C,H,W]`` values in [0,1] as an 8- or 16-bit PNG/TIFF (rounded, clipped)."""
    if _is_tensor(chw):
        chw = chw.detach().float().cpu().numpy()
    scale = 255.0 if dtype == "uint8" else 65535.0
    arr = np.clip(np.rint(np.asarray(chw, dtype=np.float64) * scale), 0, scale).astype(dtype)
    hwc = np.moveaxis(arr, 0, -1)
    if hwc.shape[-1] == 1:
        hwc = hwc[..., 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        import tifffile

        tifffile.imwrite(path, hwc, compression="zlib")
    elif dtype == "uint16" and path.suffix.lower() == ".png" and hwc.ndim == 3:
        import imagecodecs  # Pillow cannot write 16-bit RGB(A) PNGs

        path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(hwc)))
    else:
        from PIL import Image

        Image.fromarray(hwc).save(path)
