"""One style and one deterministic, atomic ``save_figure`` for every figure (matplotlib Agg, no pyplot state).

The same input gives the same bytes for ``.png``, ``.pdf`` and ``.svg`` (no creation dates or software stamps,
a fixed SVG id salt).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import SRMetricsError

FIGURE_FORMATS = (".png", ".pdf", ".svg")
_DETERMINISTIC_METADATA = {
    ".png": {"Software": None},
    ".pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    ".svg": {"Creator": None, "Date": None},
}
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def label(text: object) -> str:
    """``text`` as drawn literally: matplotlib reads the text between two ``$`` as math (and fails on invalid math,
    e.g. a method named ``m$_$``), so every ``$`` of a name, title or caption is escaped."""
    return str(text).replace("$", r"\$")


def figure_format(out_path: str | os.PathLike) -> str:
    suffix = Path(out_path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise SRMetricsError(f"{out_path}: unsupported figure format '{suffix}' (use .png, .pdf or .svg)")
    return suffix


def save_figure(fig: Any, out_path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save a matplotlib figure deterministically and atomically; the format follows the extension."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out_path = Path(out_path)
    suffix = figure_format(out_path)
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp{os.getpid()}{suffix}")
    with matplotlib.rc_context({"svg.hashsalt": "clipscore-sr", "pdf.compression": 6}):
        fig.savefig(tmp, dpi=dpi, format=suffix[1:], metadata=_DETERMINISTIC_METADATA[suffix])
    os.replace(tmp, out_path)
    return out_path
