"""The spec of an optimisation job (`kind: "optimise"`): invert target images with an
optimiser that may use a stored basis, and its resolution against the generator and store.

Targets are images generated from codes (a benchmark with a known answer: the codes are
kept in the store, never shown to the optimiser), a stored target set, or images uploaded
with the request. A basis is the eigenbasis of the average metric of a stored spectra job,
or one stored spectrum's eigenvectors. Every check runs before anything is written.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from services.config import Settings
from services.geometry import Generator, GeometryError, InvalidOptionError, average_metric
from services.geometry.optimise import (
    check_settings,
)
from services.job_spec import check_count
from services.jsonable import jsonable
from services.model_catalogue import canonical_space
from services.optimise_job_spec import BasisFromJob, BasisFromSpectrum, OptimiseSpec, TargetSetRef
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.kinds import OPTIMISE_KIND, is_kind
from services.pipeline.resolved import (
    GeneratorPin,
    OptimiserOptions,
    ResolvedOptimisation,
    StoredSetPin,
)
from services.pipeline.spec import (
    ExplicitLatents,
    ResolvedSpec,
    SampledLatents,
    SpecError,
    spec_hash,
)
from services.store import ChunkPlan, NotFoundError, Store

# The spec itself is torch-free (services/optimise_job_spec.py); re-exported for the callers
# of resolution.
__all__ = [
    "BasisFromJob",
    "BasisFromSpectrum",
    "OptimiseSpec",
    "TargetSetRef",
    "decode_target_file",
    "load_basis",
    "resolve_optimisation",
]

DEFAULT_CHUNK_TARGETS = 16  # targets of one chunk run as one batch
RANGE_TOLERANCE = 1e-6  # images must lie in [-1, 1]


def decode_target_file(data: bytes, filename: str) -> np.ndarray:
    """A PNG (RGB or grey, scaled to [-1, 1]) or a ``.npy`` array in [-1, 1] of shape
    (C, H, W) or (n, C, H, W) -> (n, C, H, W) float64. SpecError("targets") otherwise."""
    if not data:
        raise SpecError("targets", f"{filename!r} is empty")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _decode_png(data, filename)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise SpecError(
            "targets", f"{filename!r} is neither a PNG nor a readable .npy array ({error})"
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise SpecError("targets", f"{filename!r} must be one .npy array of real numbers")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or 0 in array.shape:
        raise SpecError(
            "targets", f"{filename!r} has shape {array.shape}; send (C, H, W) or (n, C, H, W)"
        )
    return np.asarray(array, dtype=np.float64)


def _decode_png(data: bytes, filename: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > 4096 * 4096:
                raise SpecError("targets", f"{filename!r} is larger than 4096 x 4096 pixels")
            pixels = np.asarray(image.convert("L" if image.mode in ("L", "I", "I;16") else "RGB"))
    except Image.DecompressionBombError:
        # Raised by Image.open from the header alone, before any pixel is inflated.
        raise SpecError("targets", f"{filename!r} is larger than 4096 x 4096 pixels") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SpecError("targets", f"{filename!r} is not a readable PNG ({error})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return (pixels.transpose(2, 0, 1)[None].astype(np.float64) / 127.5) - 1.0


# --------------------------------------------------------------------------------------------
# Resolution.


def resolve_optimisation(
    store: Store,
    spec: OptimiseSpec,
    owner: str,
    *,
    images: np.ndarray | None = None,
    settings: Settings,
) -> ResolvedSpec:
    """Check `spec` (and uploaded `images` (n, C, H, W), if any) against the generator, the
    basis and the limits; then store the targets and plan one chunk per batch of targets.

    Raises SpecError naming the field; nothing is written unless every check passed."""
    generator = _load(spec, settings.device, settings.nvidia_code_dir)
    d = generator.latent_dim
    try:
        check_settings(spec.optimiser_settings(), d, spec.basis is not None)
    except GeometryError as error:
        raise SpecError("k" if spec.k is not None else "optimiser", str(error)) from error
    basis_facts = None
    if spec.basis is not None:
        basis, basis_facts = load_basis(
            store,
            spec.basis,
            owner,
            model=spec.model,
            space=generator.space,
            latent_dim=d,
            psi=spec.psi,
        )
        _check_basis_rank(spec, basis, basis_facts)
    target_images, target_codes, source = _targets(store, spec, owner, images, generator, settings)
    n = int(target_images.shape[0])
    chunk_size = spec.chunk_size or min(n, DEFAULT_CHUNK_TARGETS)
    chunks = [
        ChunkPlan(index=i, latent_indices=list(range(start, min(start + chunk_size, n))))
        for i, start in enumerate(range(0, n, chunk_size))
    ]
    # All checks passed: from here on we write.
    target_set = store.create_target_set(
        owner,
        target_images,
        codes=target_codes,
        source=source,
        model=spec.model if target_codes is not None else None,
    )
    facts = jsonable(dict(generator.facts))
    resolved = ResolvedOptimisation(
        model=spec.model,
        space=generator.space,
        psi=spec.psi,
        generator=GeneratorPin(generator.family, d, facts),
        distance=spec.distance,
        distance_options=spec.distance_options(),
        optimiser=spec.optimiser,
        optimiser_options=OptimiserOptions(
            steps=spec.steps,
            learning_rate=spec.learning_rate,
            restarts=spec.restarts,
            k=spec.k,
            population=spec.population,
            sigma=spec.sigma,
        ),
        seed=spec.seed,
        basis=basis_facts,
        targets=StoredSetPin(target_set.id, target_set.sha256, n, source),
        threshold=spec.threshold,
        device=spec.device,
        dtype="float32",
        n_latents=n,
        chunk_size=chunk_size,
    ).document()
    return ResolvedSpec(
        resolved=resolved,
        spec_hash=spec_hash(resolved),
        latent_set_id=None,
        n_latents=n,
        latent_dim=d,
        chunks=chunks,
        generator_family=generator.family,
        generator_facts=facts,
    )


def _load(spec: OptimiseSpec, device: str, nvidia_code_dir: str) -> Generator:
    try:
        generator = cached_generator(
            spec.model, device, "float32", spec.space, spec.psi, nvidia_code_dir or None
        )
    except InvalidOptionError as error:  # a space or psi this model does not have
        raise SpecError("psi" if "psi" in str(error) else "space", str(error)) from error
    except GeometryError as error:
        raise SpecError("model", str(error)) from error
    try:
        cached_distance(spec.distance, device, "float32", **spec.distance_options())
    except GeometryError as error:
        raise SpecError("distance", str(error)) from error
    return generator


def _targets(
    store: Store,
    spec: OptimiseSpec,
    owner: str,
    images: np.ndarray | None,
    generator: Generator,
    settings: Settings,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(images (n, C, H, W), the codes that made them or None, source)."""
    if (images is None) == (spec.targets is None):
        raise SpecError(
            "targets",
            "give targets either in the spec (codes or a target set) or as "
            "uploaded images, exactly one of the two",
        )
    codes: np.ndarray | None = None
    source = "uploaded"
    if isinstance(spec.targets, TargetSetRef):
        try:
            stored = store.get_target_set(spec.targets.target_set, owner)
        except NotFoundError as error:
            raise SpecError("targets", str(error)) from error
        images = store.target_images(stored.id)
        codes = store.target_codes(stored.id)
        source = stored.source
    elif spec.targets is not None:
        codes = _target_codes(store, spec.targets, owner, generator)
        _check_count(codes.shape[0], settings)
        images = _render(generator, codes)
        source = "generated"
    assert images is not None
    _check_count(images.shape[0], settings)
    _check_images(images, generator)
    return np.asarray(images, dtype=np.float32), codes, source


def _target_codes(store: Store, targets: Any, owner: str, generator: Generator) -> np.ndarray:
    d = generator.latent_dim
    if isinstance(targets, SampledLatents):
        return generator.sample(targets.count, targets.seed)
    if isinstance(targets, ExplicitLatents):
        codes = np.asarray(targets.values, dtype=np.float64)
    else:
        try:
            stored = store.get_latent_set(targets.set, owner)
        except NotFoundError as error:
            raise SpecError("targets", str(error)) from error
        codes = store.latent_codes(stored.id)
    if codes.shape[1] != d:
        raise SpecError("targets", f"codes have dimension {codes.shape[1]} but the model takes {d}")
    if not np.isfinite(codes).all():
        raise SpecError("targets", "codes contain NaN or infinite values")
    return codes


def _render(generator: Generator, codes: np.ndarray) -> np.ndarray:
    batches = [generator.images(codes[i : i + 64]) for i in range(0, codes.shape[0], 64)]
    return np.concatenate([b.to("cpu").double().numpy() for b in batches])


def _check_count(n: int, settings: Settings) -> None:
    check_count(n, settings.max_latents_per_job, "targets", "targets")


def _check_images(images: np.ndarray, generator: Generator) -> None:
    shape = generator.facts.get("output_shape")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise SpecError(
            "targets",
            f"target images have shape {tuple(images.shape[1:])} (C, H, W) but "
            f"{generator.name} makes images of shape {tuple(shape)}; resize them first",
        )
    if not np.isfinite(images).all():
        raise SpecError("targets", "target images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise SpecError(
            "targets",
            f"target values lie in [{low:.3g}, {high:.3g}]; images must be in "
            "[-1, 1] (a PNG is scaled for you; scale .npy arrays as 2 * x / 255 - 1)",
        )


# --------------------------------------------------------------------------------------------
# The basis: read from the store, checked against the model and space.


def load_basis(
    store: Store,
    reference: BasisFromJob | BasisFromSpectrum | dict[str, Any],
    owner: str | None,
    *,
    model: str,
    space: str,
    latent_dim: int,
    psi: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(basis (d, m) orthonormal columns in descending eigenvalue order, facts to record).
    SpecError("basis") for a basis that does not exist, is not finished, or belongs to
    another model or space."""
    ref = reference if isinstance(reference, dict) else reference.model_dump()
    ref = {key: value for key, value in ref.items() if key in ("job", "spectrum") and value}
    try:
        if "job" in ref:
            job = store.get_job(ref["job"], owner)
        else:
            spectrum = store.get_spectrum(ref["spectrum"], owner)
            job = store.get_job(spectrum.job_id, owner)
    except NotFoundError as error:
        raise SpecError("basis", str(error)) from error
    if is_kind(job, OPTIMISE_KIND):
        raise SpecError("basis", f"job {job.id} is not a spectra job; give one that stores spectra")
    if job.status != "succeeded" and "job" in ref:
        raise SpecError(
            "basis", f"job {job.id} is {job.status}; its basis is ready once it succeeded"
        )
    # Any stored spectra job may give the basis, imported ones included, whose resolved
    # documents record only what the imported file said: read with defaults.
    source = job.resolved
    basis_model = source.get("model", job.model)
    family = (source.get("generator") or {}).get("family")
    basis_space = canonical_space(family, source.get("space", "z"))
    if basis_model != model or basis_space != space:
        raise SpecError(
            "basis",
            f"the basis comes from model {basis_model!r} (space {basis_space}) but the "
            f"job optimises {model!r} (space {space}); use a spectra job of the same model and space",
        )
    basis_psi, job_psi = source.get("psi") or 1.0, psi or 1.0
    if space == "z" and basis_psi != job_psi:  # in z, psi changes the map itself (w is w)
        raise SpecError(
            "basis",
            f"the basis was computed at psi={basis_psi:g} but the job optimises z at "
            f"psi={job_psi:g}; in z the truncation changes the generator: use the same psi",
        )
    if "job" in ref:
        eigenvalues, ids = store.eigenvalue_matrix(job_id=job.id)
        vectors = store.top_k_eigenvectors(ids, eigenvalues.shape[1])
        if vectors.shape[1] != latent_dim:
            raise SpecError(
                "basis", f"spectra of dimension {vectors.shape[1]}, model takes {latent_dim}"
            )
        _, values, basis = average_metric(eigenvalues, vectors)
        facts: dict[str, Any] = {
            "job": job.id,
            "source": "average metric",
            "n_spectra": len(ids),
            "rank_per_spectrum": int(eigenvalues.shape[1]),
            "method": source.get("method"),
            "distance": source.get("distance"),
            "top_eigenvalues": [float(v) for v in values[:10]],
        }
    else:
        basis = np.asarray(store.eigenvectors(spectrum.id), dtype=np.float64)
        if basis.shape[0] != latent_dim:
            raise SpecError(
                "basis", f"spectrum of dimension {basis.shape[0]}, model takes {latent_dim}"
            )
        facts = {
            "spectrum": spectrum.id,
            "job": job.id,
            "source": "spectrum",
            "rank_per_spectrum": int(basis.shape[1]),
            "method": spectrum.method,
            "distance": spectrum.distance,
        }
    # Orthonormal to float64 precision, so a float32-stored basis is exactly a rotation.
    orthonormal, triangle = np.linalg.qr(basis)
    signs = np.where(np.diag(triangle) < 0, -1.0, 1.0)  # keep each column's own direction
    return orthonormal * signs[None, :], facts


def _check_basis_rank(spec: OptimiseSpec, basis: np.ndarray, facts: dict[str, Any]) -> None:
    d, m = basis.shape
    if spec.optimiser == "adam-eigenbasis" and m < d:
        raise SpecError(
            "basis",
            f"adam-eigenbasis needs a full basis of {d} directions; this spectrum "
            f"stores {m} (use a spectra job, whose average metric is full, or adam-topk)",
        )
    if spec.k is not None and spec.k > m:
        raise SpecError("k", f"k={spec.k} exceeds the {m} directions the basis holds")
