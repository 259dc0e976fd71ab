"""Bounded reading of client-sent ``.npy`` / ``.npz`` files: look at what a file declares
before anything is decompressed or allocated.

A ``.npz`` is a zip archive: a 1 MB file can hold a member that inflates to gigabytes, and a
``.npy`` header can claim a shape whose allocation alone exhausts the server. Both declare
their sizes up front (the zip directory gives each member's uncompressed size, the ``.npy``
header its dtype and shape), so each is checked against the limits from those declarations,
reading nothing but headers. The zip reader then never inflates more than a member declares.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np

# Dtype kinds an array file may hold: bool, signed/unsigned integers, floats, and unicode
# or byte strings (the ``meta`` record). Objects (pickles), complex and void are refused.
ALLOWED_KINDS = frozenset("biufUS")
# A .npy header is a few hundred bytes; numpy itself refuses headers over 10 KB by default.
MAX_HEADER_BYTES = 64 * 1024


class UnsafeArrayFileError(ValueError):
    """An array file whose declared contents exceed the limits or cannot be trusted; names
    the member (or ``file``) at fault and says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def read_npy_header(stream: IO[bytes], field: str = "file") -> ArrayHeader:
    """The dtype and shape a ``.npy`` stream declares, reading only its header."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=MAX_HEADER_BYTES
            )
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=MAX_HEADER_BYTES
            )
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise UnsafeArrayFileError(field, f"not a readable .npy header ({error})") from None
    del fortran
    if dtype.hasobject or dtype.kind not in ALLOWED_KINDS:
        raise UnsafeArrayFileError(
            field, f"holds {dtype}; only numbers (and a string meta record) are accepted"
        )
    if any(extent < 0 for extent in shape):
        raise UnsafeArrayFileError(field, f"declares a negative shape {shape}")
    return ArrayHeader(tuple(shape), dtype, math.prod(shape) * dtype.itemsize)


def check_npy(data: bytes, *, max_rows: int, max_columns: int, field: str = "file") -> ArrayHeader:
    """Refuse a ``.npy`` of codes whose header declares more than (max_rows, max_columns)
    or more bytes than the file holds, before numpy allocates anything."""
    stream = io.BytesIO(data)
    header = read_npy_header(stream, field)
    shape = header.shape
    if len(shape) > 2:
        raise UnsafeArrayFileError(field, f"codes must be an array of shape (n, d); got {shape}")
    rows, columns = (1, *shape)[-2:] if shape else (1, 1)
    if rows > max_rows or columns > max_columns:
        raise UnsafeArrayFileError(
            field,
            f"declares shape {shape}, over the limits of {max_rows} codes "
            f"(SPECTRA_MAX_LATENTS_PER_JOB) of dimension {max_columns} (SPECTRA_MAX_LATENT_DIM)",
        )
    remaining = len(data) - stream.tell()
    if header.nbytes > remaining:
        raise UnsafeArrayFileError(
            field,
            f"declares shape {shape} ({header.nbytes} bytes of {header.dtype}) but holds only "
            f"{remaining} bytes of data; the file is truncated",
        )
    return header


def check_npz(data: bytes, *, max_total_bytes: int) -> dict[str, ArrayHeader]:
    """Each member's declared uncompressed size and ``.npy`` header, checked before any
    member is read: numbers only, and all of them together at most ``max_total_bytes``.
    Returns the headers by array name (the member name without ``.npy``)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise UnsafeArrayFileError("file", f"not a readable .npz archive ({error})") from None
    headers: dict[str, ArrayHeader] = {}
    declared_total = 0
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            declared_total += info.file_size
            if declared_total > max_total_bytes:
                raise UnsafeArrayFileError(
                    name,
                    f"the archive's members declare more than {max_total_bytes} bytes "
                    "uncompressed (SPECTRA_MAX_ARRAY_BYTES); send fewer or smaller arrays",
                )
            if info.is_dir():
                continue
            try:
                with archive.open(info) as member:
                    header = read_npy_header(member, name)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
                raise UnsafeArrayFileError(name, f"cannot be read ({error})") from None
            # The zip reader stops at the declared size, so the array must fit in it; a
            # header claiming more is a truncated (or lying) member.
            if header.nbytes > info.file_size:
                raise UnsafeArrayFileError(
                    name,
                    f"declares shape {header.shape} ({header.nbytes} bytes) but the archive "
                    f"holds only {info.file_size} bytes for it",
                )
            headers[name] = header
    return headers
