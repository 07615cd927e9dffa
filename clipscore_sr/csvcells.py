"""Text cells of the CSV files this toolkit writes, safe to open in a spreadsheet.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by spreadsheet programs as a
formula (CSV formula injection: a method named ``=HYPERLINK(...)``). Such cells are written with a leading ``'``
(which spreadsheets show as text), and a cell that already starts with ``'`` before one of those characters (or
before another ``'``) gets one more, so the escaping is injective and :func:`unescape` restores every value.
Numbers are never touched (only text cells are).
"""

from __future__ import annotations

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def escape(value: str) -> str:
    """The cell text to write for ``value`` (see the module docstring)."""
    if value[:1] in _TRIGGERS or (value[:1] == "'" and value[1:2] in (*_TRIGGERS, "'")):
        return "'" + value
    return value


def unescape(value: str) -> str:
    """The value a cell written by :func:`escape` stood for."""
    if value[:1] == "'" and value[1:2] in (*_TRIGGERS, "'"):
        return value[1:]
    return value


def _text_columns(df) -> list:
    from pandas.api.types import is_object_dtype, is_string_dtype

    return [c for c in df.columns if is_object_dtype(df[c].dtype) or is_string_dtype(df[c].dtype)]


def escape_frame(df):
    """A copy of a DataFrame with every text cell escaped (object and string columns; others untouched)."""
    out = df.copy()
    for col in _text_columns(out):
        out[col] = [escape(v) if isinstance(v, str) else v for v in out[col]]
    return out


def unescape_frame(df):
    """The inverse of :func:`escape_frame`, in place; returns ``df``."""
    for col in _text_columns(df):
        df[col] = [unescape(v) if isinstance(v, str) else v for v in df[col]]
    return df


__all__ = ["escape", "escape_frame", "unescape", "unescape_frame"]
