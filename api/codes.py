"""Latent codes arriving over HTTP: reading ``.npy`` uploads safely and enforcing the limits.

Uploads are read without pickle (an object array is refused, never executed) and checked
before anything is written: shape, finiteness, count and dimension limits.
"""

from __future__ import annotations

import io

import numpy as np
from fastapi import UploadFile

from api.errors import ApiProblem
from services.config import Settings
from services.npz_safety import UnsafeArrayFileError, check_npy

READ_BLOCK = 1 << 20


def read_upload(upload: UploadFile, max_bytes: int, field: str = "file") -> bytes:
    """Read an upload, refusing (413) as soon as it passes ``max_bytes``."""
    parts: list[bytes] = []
    total = 0
    upload.file.seek(0)
    while block := upload.file.read(READ_BLOCK):
        total += len(block)
        if total > max_bytes:
            raise ApiProblem(
                413,
                "Payload too large",
                f"The uploaded file exceeds {max_bytes} bytes (SPECTRA_MAX_UPLOAD_BYTES).",
                field=field,
                slug="payload-too-large",
            )
        parts.append(block)
    return b"".join(parts)


def _invalid(detail: str, field: str) -> ApiProblem:
    return ApiProblem(422, "Invalid latent codes", detail, field=field, slug="invalid-latents")


def parse_npy_codes(data: bytes, settings: Settings, field: str = "file") -> np.ndarray:
    """A ``.npy`` holding (n, d) or (d,) real numbers -> (n, d) float64. The header's shape
    is checked against the limits before numpy allocates the array it declares."""
    if not data:
        raise _invalid("The uploaded file is empty; send a .npy array of shape (n, d).", field)
    try:
        check_npy(
            data,
            max_rows=settings.max_latents_per_job,
            max_columns=settings.max_latent_dim,
            field=field,
        )
    except UnsafeArrayFileError as error:
        raise _invalid(f"{error}".removeprefix(f"{field}: "), field) from None
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise _invalid(
            f"The upload is not a readable .npy array ({error}); save it with numpy.save.", field
        ) from None
    if not isinstance(array, np.ndarray):
        raise _invalid("Send one .npy array, not an .npz archive.", field)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise _invalid(f"The array holds {array.dtype}; codes must be real numbers.", field)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise _invalid(f"Codes must be an array of shape (n, d); got {array.shape}.", field)
    return np.asarray(array, dtype=np.float64)


def check_codes(codes: np.ndarray, settings: Settings, field: str = "latents") -> np.ndarray:
    """Enforce finiteness and the configured limits on an (n, d) array of codes."""
    n, d = codes.shape
    if n > settings.max_latents_per_job:
        raise _invalid(
            f"{n} codes exceed the limit of {settings.max_latents_per_job} per job "
            "(SPECTRA_MAX_LATENTS_PER_JOB); split them over several jobs.",
            field,
        )
    if d > settings.max_latent_dim:
        raise _invalid(
            f"Latent dimension {d} exceeds the limit of {settings.max_latent_dim} "
            "(SPECTRA_MAX_LATENT_DIM).",
            field,
        )
    bad = ~np.isfinite(codes)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise _invalid(
            f"Codes must be finite; {int(bad.sum())} values are NaN or infinite "
            f"(first at row {row}, column {column}).",
            field,
        )
    return codes
