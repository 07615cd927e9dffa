"""Write the report: the page template (``static/report.html``) with its stylesheet, script, the data model
as JSON and the thumbnail sheets inlined, into one HTML file that needs nothing but a browser (no network:
the page's Content-Security-Policy allows no remote source at all)."""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReportError
from .thumbs import THUMB_CAP

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ReportResult:
    path: Path
    n_rows: int
    n_images: int
    n_sheets: int
    size_bytes: int
    seconds: float
    notes: list[str]


def _script_text(s: str) -> str:
    """Text safe inside a <script> element (no '</script', no '<!--')."""
    return s.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_html(model: dict, sheets: Sequence[str]) -> str:
    """The page as one string."""
    page = (STATIC / "report.html").read_text()
    css = (STATIC / "report.css").read_text()
    js = (STATIC / "report.js").read_text()
    data = _script_text(json.dumps(model, ensure_ascii=True, allow_nan=False, separators=(",", ":")))
    sheet_tags = "".join(f'<script type="text/plain" id="sheet-{i}">{s}</script>\n' for i, s in enumerate(sheets))
    parts = {"__TITLE__": html.escape(model.get("title", "report")), "/*__CSS__*/": css, "__SHEETS__": sheet_tags,
             "__DATA__": data, "/*__JS__*/": _script_text(js)}
    out, rest = [], page
    for marker, value in parts.items():  # in template order: a value can never be taken for a later marker
        head, sep, rest = rest.partition(marker)
        if not sep:
            raise ReportError(f"{STATIC / 'report.html'}: template marker {marker} missing (reinstall clipscore-sr)")
        out += [head, value]
    return "".join(out) + rest


def write_report(results: Sequence[str | os.PathLike], out: str | os.PathLike, *, lr_dir: str | None = None,
                 maps_dir: str | None = None, title: str | None = None, stretch: str = "auto",
                 thumb_cap: int = THUMB_CAP, embed_full: bool = False, embed_limit_mb: float = 200.0,
                 workers: int | None = None) -> ReportResult:
    """Read the tables ``results`` and write the report to ``out`` (.html), atomically."""
    from ..results import check_writable_dir
    from .data import build_model, load_inputs

    t0 = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"{out}: the report is an .html file")
    if not 16 <= thumb_cap <= 512:
        raise ReportError(f"--thumb-size {thumb_cap}: expected 16 to 512 px")
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable_dir(out.parent, "report folder")
    inputs = load_inputs(results)
    model, sheets = build_model(inputs, out, lr_dir=lr_dir, maps_dir=maps_dir, stretch=stretch, cap=thumb_cap,
                                title=title or "SR evaluation report", embed_full=embed_full,
                                embed_limit_mb=embed_limit_mb, workers=workers)
    model["built"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    text = render_html(model, sheets)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return ReportResult(path=out, n_rows=len(model["rows"]["key"]), n_images=len(model["images"]["kind"]),
                        n_sheets=len(sheets), size_bytes=out.stat().st_size, seconds=time.perf_counter() - t0,
                        notes=model["notes"])


__all__ = ["ReportResult", "render_html", "write_report"]
