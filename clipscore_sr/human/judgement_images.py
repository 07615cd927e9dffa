"""The image checks of judgement validation: every referenced image exists and is readable (from its header
only: nothing is decoded, the pixel cap applies), and the images of a row agree in size and bands (or the GT is
the LR input at an integer scale: real-world SR without an HR reference)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..errors import ImageReadError


def _image_shape(path: str) -> tuple[int, int, int]:
    """(H, W, C) of an image read from its header only (nothing is decoded, so a decompression bomb costs
    nothing; the pixel cap applies); raises :class:`ImageReadError` otherwise."""
    from ..io import check_pixel_cap

    h, w, c, planes = check_pixel_cap(path)
    if planes > 1:
        raise ImageReadError(f"{path}: expected a 2-D image, found {planes} planes of {w}x{h}")
    return h, w, c


def is_lr_reference(gt: tuple[int, int, int], img: tuple[int, int, int]) -> bool:
    """True when ``gt`` (H, W, C) is smaller than ``img`` by one integer scale > 1 with the same bands."""
    (h, w, c), (ih, iw, ic) = gt, img
    return c == ic and h < ih and ih % h == 0 and iw % w == 0 and ih // h == iw // w


def probe_image(path: str) -> tuple[int, int, int] | str:
    """(H, W, C) of an image file, or the problem: ``image not found`` / ``unreadable image (...)``."""
    if not os.path.isfile(path):
        return "image not found"
    try:
        return _image_shape(path)
    except ImageReadError as exc:
        msg = str(exc)
        return "unreadable image (" + (msg[len(path) + 2:] if msg.startswith(path) else msg) + ")"


def image_problems(gt_abs: Sequence[str], a_abs: Sequence[str], b_abs: Sequence[str],
                   shown: Mapping[str, Sequence[str]]) -> list[tuple[int, str, str]]:
    """``(row, column, message)`` for every image problem of the rows: not found, unreadable, a size or band
    count that differs from the GT's (or, without a GT, a's from b's). ``*_abs``: resolved paths per row ('' =
    not to be opened); ``shown``: the paths as written in the file (``shown['gt'][row]``...), for the messages."""
    out: list[tuple[int, str, str]] = []
    unique_paths = [p for p in dict.fromkeys([*gt_abs, *a_abs, *b_abs]) if p]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoders release the GIL
        shapes = dict(zip(unique_paths, pool.map(probe_image, unique_paths)))
    for pos in range(len(gt_abs)):
        row_shapes: dict[str, tuple[int, int, int]] = {}
        for col, paths in (("gt", gt_abs), ("a", a_abs), ("b", b_abs)):
            p = paths[pos]
            if not p:
                continue
            got = shapes[p]
            if isinstance(got, str):
                out.append((pos, col, f"{got}: {shown[col][pos]} (resolved to {p})"
                            if got == "image not found" else f"{got}: {shown[col][pos]}"))
            else:
                row_shapes[col] = got
        if "gt" in row_shapes:
            ref = row_shapes["gt"]
            for col in ("a", "b"):
                s = row_shapes.get(col)
                if s is None:
                    continue
                if s[:2] != ref[:2] and is_lr_reference(ref, s) and s[:2] == row_shapes.get("a", s)[:2]:
                    continue  # gt is the LR input (real-world SR, no HR): integer scale, a and b agree
                if s[:2] != ref[:2]:
                    out.append((pos, col, f"image size {s[1]}x{s[0]} of '{col}' ({shown[col][pos]}) differs from "
                                          f"gt {ref[1]}x{ref[0]} ({shown['gt'][pos]}) (W x H)"))
                elif s[2] != ref[2]:
                    out.append((pos, col, f"'{col}' ({shown[col][pos]}) has {s[2]} band(s), gt has {ref[2]}"))
        elif "a" in row_shapes and "b" in row_shapes and row_shapes["a"][:2] != row_shapes["b"][:2]:
            sa, sb = row_shapes["a"], row_shapes["b"]
            out.append((pos, "b", f"image sizes differ: a {sa[1]}x{sa[0]}, b {sb[1]}x{sb[0]} (W x H)"))
    return out


__all__ = ["image_problems", "is_lr_reference", "probe_image"]
