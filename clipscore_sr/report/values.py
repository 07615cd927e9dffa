"""JSON values of the report's model: numbers as JSON numbers, NaN as null, +-inf as ``"inf"``/``"-inf"`` (as
``score`` writes JSON), tables as ``{"file", "columns", "rows"}``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def jv(v: Any) -> Any:
    """A JSON value: NaN -> None, +-inf -> "inf"/"-inf" (as ``score`` writes JSON)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v) if not isinstance(v, str) else v


def json_numbers(a: np.ndarray) -> list:
    """:func:`jv` of every value of a float array (finite values as Python floats, in bulk)."""
    a = np.asarray(a, dtype=float)
    out = a.tolist()
    if not np.isfinite(a).all():
        for i in np.flatnonzero(~np.isfinite(a)).tolist():
            out[i] = jv(a[i])
    return out


def table_json(df: pd.DataFrame, name: str) -> dict[str, Any]:
    """A table of the page: its ``file`` (a name shown with it), ``columns`` and every cell as :func:`jv`."""
    return {"file": name, "columns": [str(c) for c in df.columns],
            "rows": [[jv(v) for v in r] for r in df.itertuples(index=False, name=None)]}


__all__ = ["json_numbers", "jv", "table_json"]
