"""The one JSON sanitiser: numpy scalars and arrays to plain JSON values.

``jsonable`` is for what the service reports (facts, diagnostics, comparisons): NaN and inf
become null (JSON has neither) and objects JSON cannot hold their string form (torch devices,
dtypes, paths). ``numpy_default`` is the ``json.dumps`` hook for documents that must be exact
(the store's): numpy converted, anything else refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return str(value)


def numpy_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
