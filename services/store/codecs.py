"""The byte and JSON codecs of the store, and the checks every write makes before it opens a
transaction: arrays are little-endian bytes, documents JSON with finite numbers."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.jsonable import numpy_default

from .errors import InvalidDataError

MAX_PAGE = 1000


def new_id() -> str:
    return str(uuid.uuid4())


def le_bytes(array: np.ndarray, dtype: str) -> bytes:
    """C-order little-endian bytes of ``array`` in ``dtype``. One copy even for a transposed
    view (tobytes reorders as it copies; ascontiguousarray first would copy twice)."""
    return np.asarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes(order="C")


def from_le(buffer: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read-only native-order array viewed on ``buffer`` (bytes from the database)."""
    array = np.frombuffer(buffer, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return array.astype(np.dtype(dtype), copy=False)


def readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_document(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON-safe copy (numpy scalars and arrays converted); NaN/inf refused."""
    if not isinstance(value, Mapping):
        raise InvalidDataError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(value), default=numpy_default, allow_nan=False)))
    except (TypeError, ValueError) as error:
        raise InvalidDataError(
            f"{what} must be JSON-serialisable with finite numbers only: {error}"
        ) from error


def float_array(value: Any, what: str, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise InvalidDataError(f"{what} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise InvalidDataError(f"{what} must be {ndim}-D, got shape {array.shape}")
    if 0 in array.shape:
        raise InvalidDataError(f"{what} is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise InvalidDataError(
            f"{what} contains {bad} NaN or infinite value(s); nothing was stored"
        )
    return array


def check_status(status: str, allowed: Sequence[str], what: str) -> None:
    if status not in allowed:
        raise InvalidDataError(f"unknown {what} {status!r}; expected one of {', '.join(allowed)}")


def check_page(limit: int, offset: int) -> None:
    if not 0 <= limit <= MAX_PAGE:
        raise InvalidDataError(f"limit must be between 0 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidDataError(f"offset must be >= 0, got {offset}")


def non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InvalidDataError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


class Digest(threading.Thread):
    """sha256 of a buffer computed in the background; ``result()`` waits for it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(daemon=True)
        self._data = data
        self._hexdigest = ""
        self.start()

    def run(self) -> None:
        self._hexdigest = hashlib.sha256(self._data).hexdigest()

    def result(self) -> str:
        self.join()
        return self._hexdigest
