"""The published ``.npz`` layout, in one place: conversion both ways, and job export/import.

The layout is what the published analysis tools read:

- ``eva``  (N, k) eigenvalues, ASCENDING along k (the service keeps them descending),
- ``evc``  (N, d, k) eigenvectors as columns, in the same ascending order as ``eva``,
- ``feat`` (N, d) the latent codes,
- ``meta`` a 0-d string array holding one JSON object (model, distance, method, dtype, seed,
  spec, versions) — the record the published files lack.

Importing such a file creates a finished job whose spectra join comparisons like computed ones.

GAN-Geometry's own files (Wang & Ponce's published code) are read through `NPZ_LAYOUTS`, the
key map documented in docs/npz-layouts.md: per-position ``Hess_BP_<i>.npz`` (``eva_BP``,
``evc_BP``, ``H_BP``, ``feat``), the other methods' suffixes (``_BI`` BackwardIter, ``_FI``
ForwardIter), the older ``eigvals`` / ``eigvects`` keys, and stacked files of our own layout.
Several per-position files are one import (`combine`). `to_gan_geometry_zip` writes a job the
other way: one ``Hess_BP_<i>.npz`` per position, what the published ``scan_hess_npz`` reads.

An export's ``meta["contents"]`` says what it holds (every eigenpair, or the top k of d) and
which published analysis functions take it as it is: GAN-Geometry's ``average_H`` builds a
(k, k) average from (d, d) metrics, so it takes full spectra only.

Images in [0, 1] (GAN-Geometry renders so) against this service's [-1, 1]: the mse metric of
the same generator is 1/4 of ours. An import declares its files' range (`IMAGE_RANGES`); for
mse a [0, 1] file's eigenvalues are multiplied by 4 and the job records it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from services.npz_safety import UnsafeArrayFileError, check_npz
from services.store import ConflictError, InvalidDataError, JobRecord, SpectrumRecord, Store

REQUIRED_KEYS = ("eva", "evc")
# The range of the images a file's metrics were computed on -> the factor that brings its mse
# eigenvalues to this service's [-1, 1] images (pixel differences twice as large: x4).
IMAGE_RANGES = {"[-1,1]": 1.0, "[0,1]": 4.0}
SERVICE_IMAGE_RANGE = "[-1,1]"
RESCALABLE_DISTANCES = ("mse",)
IMPORTED_METHOD_NOTE = "imported"


@dataclass(frozen=True)
class NpzLayout:
    """Which arrays of an .npz hold the eigenvalues, eigenvectors (columns) and codes."""

    name: str
    eva: str
    evc: str
    feat: str
    method: str | None  # the method the layout's files come from, when the keys say it
    ascending_required: bool  # ours is checked; published files are sorted on reading


# The key map (docs/npz-layouts.md). The first layout whose eva and evc keys are both present
# is used. Published methods keep their own names: their numbers are not ours (float32, H not
# symmetrised, ForwardIter's halved Hv), so they never pass for a `bp` or `fd` of this service.
NPZ_LAYOUTS = (
    NpzLayout("latent-spectra", "eva", "evc", "feat", None, True),
    NpzLayout("gan-geometry BP", "eva_BP", "evc_BP", "feat", "gan-geometry-bp", False),
    NpzLayout(
        "gan-geometry BackwardIter", "eva_BI", "evc_BI", "feat", "gan-geometry-backward-iter", False
    ),
    NpzLayout(
        "gan-geometry ForwardIter", "eva_FI", "evc_FI", "feat", "gan-geometry-forward-iter", False
    ),
    NpzLayout("gan-geometry (older files)", "eigvals", "eigvects", "feat", None, False),
)
# Files of averages and collections, not per-position spectra: refused, saying why.
_NOT_SPECTRA = {
    "H_avg": "an average metric (H_avg / eva_avg / evc_avg), not per-position spectra",
    "eigval_col": "a collection of eigenvalues without eigenvectors (spectra_col_*.npz)",
    "corr_mat_log": "a homogeneity matrix (Hess_*_corr_mat.npz), not spectra",
}
# Per-position export: the published pipeline's default pattern and keys.
GAN_GEOMETRY_FILE = "Hess_BP_{index}.npz"
GAN_GEOMETRY_KEYS = ("eva_BP", "evc_BP", "feat")


class ExportFormatError(ValueError):
    """A file that is not in the published layout; says which array is wrong and how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class PublishedSpectra:
    """N spectra in the service's own convention: eigenvalues DESCENDING, vectors as columns."""

    eigenvalues: np.ndarray  # (N, k) descending
    eigenvectors: np.ndarray  # (N, d, k) columns, same order
    codes: np.ndarray | None  # (N, d) or None (sefa)
    meta: dict[str, Any] = field(default_factory=dict)


def software_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for package in ("latent-spectra", "numpy", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def to_npz_bytes(spectra: PublishedSpectra) -> bytes:
    """Write the published layout (ascending) from descending arrays."""
    eva = np.ascontiguousarray(spectra.eigenvalues[:, ::-1])
    evc = np.ascontiguousarray(spectra.eigenvectors[:, :, ::-1])
    arrays: dict[str, np.ndarray] = {"eva": eva, "evc": evc}
    if spectra.codes is not None:
        arrays["feat"] = np.asarray(spectra.codes)
    arrays["meta"] = np.array(json.dumps(spectra.meta, sort_keys=True, allow_nan=False))
    buffer = io.BytesIO()
    savez: Any = np.savez_compressed  # (numpy's stubs reject a **dict of arrays)
    savez(buffer, **arrays)
    return buffer.getvalue()


def _finite(name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise ExportFormatError(name, f"must hold numbers, not {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ExportFormatError(name, "holds NaN or infinite values")


def layout_of(keys: list[str]) -> NpzLayout:
    """The key-map entry for an archive's member names, or ExportFormatError saying what
    layouts are read."""
    for layout in NPZ_LAYOUTS:
        if layout.eva in keys and layout.evc in keys:
            return layout
    for key, what in _NOT_SPECTRA.items():
        if key in keys:
            raise ExportFormatError("file", f"is {what}; import the per-position files instead")
    known = "; ".join(f"{layout.eva}/{layout.evc}/{layout.feat}" for layout in NPZ_LAYOUTS)
    raise ExportFormatError(
        "file",
        f"lacks eigenvalues and eigenvectors under any known keys ({known}); the layout is eva "
        f"(N, k) ascending, evc (N, d, k), feat (N, d) and an optional meta record, see "
        f"docs/npz-layouts.md (found: {', '.join(keys)})",
    )


def from_npz_bytes(data: bytes, *, max_array_bytes: int) -> PublishedSpectra:
    """Read an .npz of any layout in NPZ_LAYOUTS back into descending order; every shape is
    checked.

    A single position saved without the leading N axis (eva (k,), evc (d, k), feat (d,) or
    (1, d)) is accepted too. Files are read without pickle: an object array is refused,
    never executed. Every member's declared size and dtype are checked first
    (``max_array_bytes`` in all: the caller passes SPECTRA_MAX_ARRAY_BYTES), so nothing is
    inflated past the limit.
    """
    _check_members(data, max_array_bytes)
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ExportFormatError("file", f"not a readable .npz archive ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ExportFormatError("file", "is a single .npy array; an .npz archive is expected")
    with archive:
        layout = layout_of(list(archive.files))
        try:
            eva = np.asarray(archive[layout.eva], dtype=np.float64)
            evc_raw = archive[layout.evc]
            feat = (
                np.asarray(archive[layout.feat], dtype=np.float64)
                if layout.feat in archive.files
                else None
            )
            meta_raw = archive["meta"] if "meta" in archive.files else None
        except ValueError as error:  # object arrays, truncated members
            raise ExportFormatError("file", f"an array cannot be read ({error})") from None
    evc = np.asarray(evc_raw)
    if evc.dtype not in (np.float32, np.float64):
        evc = evc.astype(np.float64)
    if eva.ndim == 1:
        eva, evc = eva[None], evc[None]
        feat = None if feat is None else feat.reshape(1, -1)
    if eva.ndim != 2:
        raise ExportFormatError(layout.eva, f"must be (N, k); got shape {eva.shape}")
    n, k = eva.shape
    if n == 0 or k == 0:
        raise ExportFormatError(layout.eva, "is empty")
    if evc.ndim != 3 or evc.shape[0] != n or evc.shape[2] != k:
        raise ExportFormatError(layout.evc, f"must be (N, d, k) = ({n}, d, {k}); got {evc.shape}")
    d = evc.shape[1]
    if k > d:
        raise ExportFormatError(layout.evc, f"has more eigenvectors ({k}) than dimensions ({d})")
    if feat is not None and feat.shape != (n, d):
        raise ExportFormatError(layout.feat, f"must be (N, d) = ({n}, {d}); got {feat.shape}")
    _finite(layout.eva, eva)
    _finite(layout.evc, evc)
    if feat is not None:
        _finite(layout.feat, feat)
    if layout.ascending_required:
        if np.any(np.diff(eva, axis=1) < -1e-12 * np.abs(eva).max(initial=1.0)):
            raise ExportFormatError("eva", "must be ascending along k, as the published layout is")
    else:  # eigh gives ascending, Lanczos its own order: sort, vectors with their values
        order = np.argsort(eva, axis=1, kind="stable")
        eva = np.take_along_axis(eva, order, axis=1)
        evc = np.take_along_axis(evc, order[:, None, :], axis=2)
    meta = _read_meta(meta_raw)
    if layout.name != NPZ_LAYOUTS[0].name:
        meta.setdefault("source_layout", layout.name)
        if layout.method is not None:
            meta.setdefault("method", layout.method)
        meta.setdefault("dtype", "float32" if evc.dtype == np.float32 else "float64")
    return PublishedSpectra(
        eigenvalues=np.ascontiguousarray(eva[:, ::-1]),
        eigenvectors=np.ascontiguousarray(evc[:, :, ::-1]),
        codes=feat,
        meta=meta,
    )


def _check_members(data: bytes, max_array_bytes: int) -> None:
    try:
        check_npz(data, max_total_bytes=max_array_bytes)
    except UnsafeArrayFileError as error:
        raise ExportFormatError(error.field, str(error).removeprefix(f"{error.field}: ")) from None


_POSITION_NUMBER = re.compile(r"(\d+)\.npz$")


def combine(
    files: list[tuple[str, bytes]], *, max_array_bytes: int
) -> tuple[PublishedSpectra, str]:
    """Several files of one run (per-position ``Hess_BP_<i>.npz``, or stacked) as one set of
    spectra, with the sha256 that identifies the combination. Latent indices come from the
    number in each file name when every name has a distinct one, else from the order given."""
    if not files:
        raise ExportFormatError("file", "no files given")
    parts = [from_npz_bytes(data, max_array_bytes=max_array_bytes) for _, data in files]
    shapes = {p.eigenvectors.shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ExportFormatError(
            "file", f"the files hold spectra of different shapes (d, k): {sorted(shapes)}"
        )
    if len(parts) == 1:
        return parts[0], content_sha256(files[0][1])
    if len({p.codes is None for p in parts}) != 1:
        raise ExportFormatError("feat", "some files hold the codes (feat) and others do not")
    numbers = [_POSITION_NUMBER.search(name) for name, _ in files]
    counts = [p.eigenvalues.shape[0] for p in parts]
    if (
        all(numbers)
        and all(c == 1 for c in counts)
        and len({m[1] for m in numbers if m}) == len(files)
    ):
        indices = [int(m[1]) for m in numbers if m]
    else:
        indices = list(range(sum(counts)))
    meta = dict(parts[0].meta)
    meta["latent_indices"] = indices
    meta["source_files"] = [name for name, _ in files]
    codes = (
        None
        if parts[0].codes is None
        else np.concatenate([p.codes for p in parts if p.codes is not None])
    )
    combined = PublishedSpectra(
        eigenvalues=np.concatenate([p.eigenvalues for p in parts]),
        eigenvectors=np.concatenate([p.eigenvectors for p in parts]),
        codes=codes,
        meta=meta,
    )
    digest = hashlib.sha256("".join(content_sha256(data) for _, data in files).encode())
    return combined, digest.hexdigest()


def to_gan_geometry_zip(spectra: PublishedSpectra) -> bytes:
    """A zip of per-position files in GAN-Geometry's layout: ``Hess_BP_<latent index>.npz``
    with ``eva_BP`` (k,) ascending, ``evc_BP`` (d, k) columns, ``feat`` (1, d) and our
    ``meta`` record, so the published ``scan_hess_npz(dir, "Hess_BP_(\\d*).npz",
    evakey="eva_BP", evckey="evc_BP", featkey="feat")`` reads them as they are."""
    indices = spectra.meta.get("latent_indices") or list(range(spectra.eigenvalues.shape[0]))
    meta = json.dumps(spectra.meta, sort_keys=True, allow_nan=False)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for row, index in enumerate(indices):
            member = io.BytesIO()
            arrays: dict[str, np.ndarray] = {
                "eva_BP": np.ascontiguousarray(spectra.eigenvalues[row, ::-1]),
                "evc_BP": np.ascontiguousarray(spectra.eigenvectors[row, :, ::-1]),
                "meta": np.array(meta),
            }
            if spectra.codes is not None:
                arrays["feat"] = np.asarray(spectra.codes[row])[None, :]
            savez: Any = np.savez_compressed
            savez(member, **arrays)
            archive.writestr(GAN_GEOMETRY_FILE.format(index=index), member.getvalue())
    return buffer.getvalue()


def _read_meta(raw: np.ndarray | None) -> dict[str, Any]:
    if raw is None:
        return {}
    text = str(raw.item() if raw.ndim == 0 else raw.ravel()[0])
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExportFormatError("meta", f"is not a JSON object ({error})") from None
    if not isinstance(meta, dict):
        raise ExportFormatError("meta", "must be one JSON object")
    return meta


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- jobs <-> the published layout ---------------------------------------------------------

EXPORT_PAGE = 1000


def _all_spectra(store: Store, job_id: str) -> list[SpectrumRecord]:
    records: list[SpectrumRecord] = []
    while True:
        page = store.list_spectra(
            job_id=job_id, order_by="latent_index", limit=EXPORT_PAGE, offset=len(records)
        )
        records.extend(page)
        if len(page) < EXPORT_PAGE:
            return records


def export_job(
    store: Store, job_id: str, *, owner: str | None = None, k: int | None = None
) -> PublishedSpectra:
    """A job's stored spectra (by latent index) with the record of how they were made.

    ``k`` defaults to the smallest number of eigenpairs any of its spectra keeps. Latents that
    failed are absent; ``meta["latent_indices"]`` says which latent each row is.
    """
    job = store.get_job(job_id, owner=owner)
    records = _all_spectra(store, job.id)
    if not records:
        raise ConflictError(
            f"job {job.id} has no stored spectra yet (status {job.status}); export it once it "
            "has results"
        )
    smallest = min(r.k for r in records)
    if k is None:
        k = smallest
    elif k > smallest:
        raise InvalidDataError(f"k={k} but some spectra of this job keep only {smallest}")
    eigenvalues = np.stack([np.asarray(r.eigenvalues[:k], dtype=np.float64) for r in records])
    eigenvectors = store.top_k_eigenvectors([r.id for r in records], k)
    codes_list = [r.code for r in records]
    codes = None if any(c is None for c in codes_list) else np.stack(codes_list)  # type: ignore[arg-type]
    first = records[0]
    latents = job.spec.get("latents") if isinstance(job.spec.get("latents"), dict) else None
    meta = {
        "model": first.model,
        "distance": first.distance,
        "method": first.method,
        "dtype": first.dtype,
        "seed": latents.get("seed") if latents else None,
        "spec": job.spec,
        "resolved": job.resolved,  # an import of this file keeps the comparability key
        "job_id": job.id,
        "latent_indices": [r.latent_index for r in records],
        "k": k,
        "contents": export_contents(k, int(eigenvectors.shape[1])),
        "image_range": SERVICE_IMAGE_RANGE,
        "versions": software_versions(),
        "layout": "eva (N, k) ascending; evc (N, d, k) columns, same order; feat (N, d)",
    }
    return PublishedSpectra(eigenvalues, eigenvectors, codes, meta)


def export_contents(k: int, d: int) -> dict[str, Any]:
    """What an export of k of d eigenpairs per position holds, and what it is good for."""
    full = k >= d
    return {
        "eigenpairs": "all" if full else f"top {k} of {d}",
        "full_spectra": full,
        "gan_geometry": {
            "average_H": "takes it"
            if full
            else (
                "does not take it: average_H sizes its (k, k) average from eva's k and adds "
                "(d, d) metrics; export every eigenpair (k = d) for it"
            ),
            "compute_hess_corr": "takes it" + ("" if full else f" (homogeneity over the top {k})"),
            "plot_spectra": "takes it" + ("" if full else f" (the top {k} only)"),
        },
    }


def image_range_scale(image_range: str | None, distance: str) -> float:
    """The factor for a file's eigenvalues computed on images in `image_range` (None: this
    service's own range), or a refusal saying what to do."""
    if image_range is None or image_range == SERVICE_IMAGE_RANGE:
        return 1.0
    if image_range not in IMAGE_RANGES:
        raise ExportFormatError(
            "image_range", f"must be one of {', '.join(IMAGE_RANGES)}, got {image_range!r}"
        )
    if distance not in RESCALABLE_DISTANCES:
        raise ExportFormatError(
            "image_range",
            f"a {image_range} image range has a known factor only for "
            f"{', '.join(RESCALABLE_DISTANCES)} (x{IMAGE_RANGES[image_range]:g}); {distance!r} "
            "depends on how the images were fed to it: import without image_range",
        )
    return IMAGE_RANGES[image_range]


def import_job(
    store: Store,
    owner: str,
    published: PublishedSpectra,
    *,
    source_sha256: str,
    model: str | None = None,
    distance: str | None = None,
    method: str | None = None,
    image_range: str | None = None,
) -> tuple[JobRecord, bool]:
    """Store published spectra as a finished job of ``owner``; the same file imported twice
    is the same job. The file's ``meta`` names model, distance and method unless given here.
    `image_range` declares the images the file's metrics were computed on ('[0,1]' for
    GAN-Geometry's renders): mse eigenvalues are rescaled to this service's [-1, 1] and the
    job records the range and the factor."""
    from services.geometry import summary_of  # the one definition of the summary columns

    meta = published.meta
    given = {"model": model, "distance": distance, "method": method}
    names: dict[str, str] = {}
    for name, value in given.items():
        value = value or meta.get(name)
        if not isinstance(value, str) or not value:
            raise ExportFormatError(
                name, f"the file's meta does not say the {name}; give it with the import"
            )
        names[name] = value
    scale = image_range_scale(image_range, names["distance"])
    eigenvalues = published.eigenvalues * scale
    n, d, k = published.eigenvectors.shape
    indices = meta.get("latent_indices")
    if not (
        isinstance(indices, list)
        and len(indices) == n
        and len(set(indices)) == n
        and all(isinstance(i, int) and i >= 0 for i in indices)
    ):
        indices = list(range(n))
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        dtype = "float32" if published.eigenvectors.dtype == np.float32 else "float64"
    rescaled = {"image_range": image_range, "eigenvalue_scale": scale} if scale != 1.0 else {}
    spec = {**names, "imported": {"sha256": source_sha256, "meta": meta, **rescaled}}
    resolved: dict[str, Any] = {
        **names,
        "imported": True,
        "source_sha256": source_sha256,
        "n": n,
        "d": d,
        "k": k,
        **rescaled,
    }
    if isinstance(meta.get("resolved"), dict):  # exported by this service: the source's key
        resolved["source_resolved"] = meta["resolved"]
    job_hash = hashlib.sha256(
        json.dumps(["import", source_sha256, names, *rescaled.values()], sort_keys=True).encode()
    )
    latent_set_id = None
    if published.codes is not None:
        latent_set_id = store.create_latent_set(
            owner, published.codes, name=f"imported {source_sha256[:12]}", source="uploaded"
        ).id
    job, created = store.create_job(
        owner, spec, resolved, job_hash.hexdigest(), latent_set_id, n, []
    )
    if not created:
        return job, False
    store.transition_job(job.id, ["queued"], "running")
    try:
        for row, latent_index in enumerate(indices):
            store.save_spectrum(
                job.id,
                latent_index,
                None if published.codes is None else published.codes[row],
                eigenvalues[row],
                published.eigenvectors[row],
                summary=summary_of(eigenvalues[row]),
                diagnostics={"imported": True, "source_sha256": source_sha256, **rescaled},
                model=names["model"],
                distance=names["distance"],
                method=names["method"],
                dtype=dtype,
            )
    except Exception as error:
        store.transition_job(job.id, ["running"], "failed", error=f"import failed: {error}")
        raise
    return store.refresh_job_status(job.id), True
