"""The spec of an optimisation job (`kind: "optimise"`): invert target images with an
optimiser that may use a stored basis, and its resolution against the generator and store.

Targets are images generated from codes (a benchmark with a known answer: the codes are
kept in the store, never shown to the optimiser), a stored target set, or images uploaded
with the request. A basis is the eigenbasis of the average metric of a stored spectra job,
or one stored spectrum's eigenvectors. Every check runs before anything is written.
"""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from services.config import Settings, get_settings
from services.geometry import Generator, GeometryError, InvalidOptionError, average_metric
from services.geometry.optimise import (
    BASIS_OPTIMISERS,
    GRADIENT_FREE,
    TOPK_OPTIMISERS,
    OptimiserSettings,
    check_settings,
)
from services.jsonable import jsonable
from services.model_catalogue import canonical_space
from services.patterns import Seed
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.spec import (
    DISTANCE_OPTIONS,
    DISTANCES,
    LPIPS_DISTANCES,
    ExplicitLatents,
    LatentSetRef,
    LatentSpace,
    ResolvedSpec,
    SampledLatents,
    SpecError,
    spec_hash,
)
from services.store import ChunkPlan, NotFoundError, Store

SPACES = ("z",)  # where a generator's latent codes live; StyleGAN's w / w+ come with issue 16
OPTIMISE_KIND = "optimise"
MAX_STEPS = 5000
MAX_RESTARTS = 32
DEFAULT_CHUNK_TARGETS = 16  # targets of one chunk run as one batch
RANGE_TOLERANCE = 1e-6  # images must lie in [-1, 1]


class TargetSetRef(BaseModel):
    """Target images already stored, by id."""

    model_config = ConfigDict(extra="forbid")
    target_set: str = Field(min_length=1, description="id of a stored target set")


def _targets_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {
            SampledLatents: "count", ExplicitLatents: "values", LatentSetRef: "set",
            TargetSetRef: "target_set",
        }.get(type(value))  # fmt: skip
    if isinstance(value, dict):
        kinds = [key for key in ("count", "values", "set", "target_set") if key in value]
        return kinds[0] if len(kinds) == 1 else None
    return None


TargetsSpec = Annotated[
    Annotated[SampledLatents, Tag("count")]
    | Annotated[ExplicitLatents, Tag("values")]
    | Annotated[LatentSetRef, Tag("set")]
    | Annotated[TargetSetRef, Tag("target_set")],
    Discriminator(
        _targets_kind,
        custom_error_type="targets_kind",
        custom_error_message=(
            'targets must be exactly one of {"count": N, "seed": S} or {"values": [[...]]} or '
            '{"set": "<latent set id>"} (images generated from these codes), or '
            '{"target_set": "<id>"} (stored images); or upload images instead'
        ),
    ),
]


class BasisFromJob(BaseModel):
    """The eigenbasis of the average metric of a stored spectra job."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(min_length=1, description="id of a succeeded spectra job")


class BasisFromSpectrum(BaseModel):
    """The eigenvectors of one stored spectrum."""

    model_config = ConfigDict(extra="forbid")
    spectrum: str = Field(min_length=1, description="id of a stored spectrum")


class OptimiseSpec(BaseModel):
    """Invert target images: find z with G(z) close to each target under the distance."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["optimise"] = "optimise"
    model: str = Field(default="dcgan-faces", min_length=1, description="generator name")
    space: LatentSpace = Field(
        default="z", description="latent space optimised (the model's spaces: `spectra models`)"
    )
    psi: float | None = Field(
        default=None, gt=0, le=1, allow_inf_nan=False,
        description="StyleGAN2 truncation toward w_avg, in (0, 1]; null = 1 (none)",
    )  # fmt: skip
    distance: str = Field(default="mse", description=f"one of {', '.join(DISTANCES)}")
    resize: int | None = Field(default=None, ge=16, le=1024, description="lpips: resize images")
    random_backbone: bool | None = Field(default=None, description="lpips: random backbone (tests)")
    targets: TargetsSpec | None = Field(
        default=None, description="codes to generate targets from, a stored target set, or "
        "null when images are uploaded with the request",
    )  # fmt: skip
    optimiser: Literal["adam", "adam-eigenbasis", "adam-topk", "cma", "cma-topk"] = "adam"
    basis: BasisFromJob | BasisFromSpectrum | None = Field(
        default=None, description="eigenbasis source (adam-eigenbasis, adam-topk, cma-topk)"
    )
    k: int | None = Field(default=None, ge=1, description="*-topk: eigenspace dimension (< d)")
    steps: int = Field(default=200, ge=1, le=MAX_STEPS, description="Adam steps / CMA generations")
    learning_rate: float = Field(default=0.05, gt=0, le=10, allow_inf_nan=False, description="adam")
    restarts: int = Field(default=1, ge=1, le=MAX_RESTARTS, description="starts per target")
    seed: Seed = Field(default=0, description="seed of the starting codes (and of cma)")
    population: int | None = Field(default=None, ge=2, le=1000, description="cma: candidates")
    sigma: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False, description="cma")
    threshold: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="loss threshold for steps-to-threshold"
    )
    chunk_size: int | None = Field(default=None, ge=1, le=256, description="targets per chunk")
    device: str | None = Field(default=None, description="torch device; null = the worker's")

    @model_validator(mode="after")
    def _options_fit(self) -> OptimiseSpec:
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        for option in ("resize", "random_backbone"):
            if getattr(self, option) is not None and option not in DISTANCE_OPTIONS[self.distance]:
                raise ValueError(
                    f"option {option!r} does not apply to distance {self.distance!r}; it is an "
                    f"option of {', '.join(LPIPS_DISTANCES)}"
                )
        uses_basis = self.optimiser in BASIS_OPTIMISERS
        if uses_basis and self.basis is None:
            raise ValueError(
                f"optimiser {self.optimiser!r} needs a basis: "
                '{"job": "<spectra job id>"} or {"spectrum": "<spectrum id>"}'
            )
        if not uses_basis and self.basis is not None:
            raise ValueError(f"optimiser {self.optimiser!r} takes no basis; leave it out")
        if self.optimiser in TOPK_OPTIMISERS and self.k is None:
            raise ValueError(f"optimiser {self.optimiser!r} needs k, the eigenspace dimension")
        if self.optimiser not in TOPK_OPTIMISERS and self.k is not None:
            raise ValueError(f"k applies only to {', '.join(sorted(TOPK_OPTIMISERS))}")
        gradient_free = self.optimiser in GRADIENT_FREE
        for option in ("population", "sigma"):
            if getattr(self, option) is not None and not gradient_free:
                raise ValueError(f"option {option!r} applies only to cma and cma-topk")
        if gradient_free and "learning_rate" in self.model_fields_set:
            raise ValueError("learning_rate applies only to the adam optimisers; cma takes sigma")
        return self

    def optimiser_settings(self) -> OptimiserSettings:
        return OptimiserSettings(
            optimiser=self.optimiser, steps=self.steps,
            learning_rate=self.learning_rate, restarts=self.restarts, k=self.k,
            population=self.population,
            sigma=0.5 if self.sigma is None else self.sigma,
        )  # fmt: skip

    def distance_options(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in DISTANCE_OPTIONS[self.distance]
            if getattr(self, name) is not None
        }


# --------------------------------------------------------------------------------------------
# Targets arriving as files.


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
    store: Store, spec: OptimiseSpec, owner: str, *, images: np.ndarray | None = None,
    settings: Settings | None = None,
) -> ResolvedSpec:  # fmt: skip
    """Check `spec` (and uploaded `images` (n, C, H, W), if any) against the generator, the
    basis and the limits; then store the targets and plan one chunk per batch of targets.

    Raises SpecError naming the field; nothing is written unless every check passed."""
    settings = settings or get_settings()
    generator = _load(spec, settings.device)
    d = generator.latent_dim
    try:
        check_settings(spec.optimiser_settings(), d, spec.basis is not None)
    except GeometryError as error:
        raise SpecError("k" if spec.k is not None else "optimiser", str(error)) from error
    basis_facts = None
    if spec.basis is not None:
        basis, basis_facts = load_basis(store, spec.basis, owner, model=spec.model,
                                        space=generator.space, latent_dim=d, psi=spec.psi)  # fmt: skip
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
        owner, target_images, codes=target_codes, source=source,
        model=spec.model if target_codes is not None else None,
    )  # fmt: skip
    facts = jsonable(dict(generator.facts))
    resolved: dict[str, Any] = {
        "kind": OPTIMISE_KIND,
        "model": spec.model,
        "space": generator.space,
        # Only when given, so that the hashes of the jobs from before psi existed stay.
        **({"psi": spec.psi} if spec.psi is not None else {}),
        "generator": {"family": generator.family, "latent_dim": d, "facts": facts},
        "distance": spec.distance,
        "distance_options": spec.distance_options(),
        "optimiser": spec.optimiser,
        "optimiser_options": {
            "steps": spec.steps, "learning_rate": spec.learning_rate, "restarts": spec.restarts,
            "k": spec.k, "population": spec.population, "sigma": spec.sigma,
        },  # fmt: skip
        "seed": spec.seed,
        "basis": basis_facts,
        "targets": {"id": target_set.id, "sha256": target_set.sha256, "n": n, "source": source},
        "threshold": spec.threshold,
        "device": spec.device,
        "dtype": "float32",
        "n_latents": n,
        "chunk_size": chunk_size,
    }
    return ResolvedSpec(
        resolved=resolved, spec_hash=spec_hash(resolved), latent_set_id=None, n_latents=n,
        latent_dim=d, chunks=chunks, generator_family=generator.family, generator_facts=facts,
    )  # fmt: skip


def _load(spec: OptimiseSpec, device: str) -> Generator:
    try:
        generator = cached_generator(spec.model, device, "float32", spec.space, spec.psi)
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
    store: Store, spec: OptimiseSpec, owner: str, images: np.ndarray | None,
    generator: Generator, settings: Settings,
) -> tuple[np.ndarray, np.ndarray | None, str]:  # fmt: skip
    """(images (n, C, H, W), the codes that made them or None, source)."""
    if (images is None) == (spec.targets is None):
        raise SpecError(
            "targets", "give targets either in the spec (codes or a target set) or as "
            "uploaded images, exactly one of the two",
        )  # fmt: skip
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
    if n > settings.max_latents_per_job:
        raise SpecError(
            "targets", f"{n} targets exceed the limit of {settings.max_latents_per_job} per "
            "job (SPECTRA_MAX_LATENTS_PER_JOB); split them over several jobs",
        )  # fmt: skip


def _check_images(images: np.ndarray, generator: Generator) -> None:
    shape = generator.facts.get("output_shape")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise SpecError(
            "targets", f"target images have shape {tuple(images.shape[1:])} (C, H, W) but "
            f"{generator.name} makes images of shape {tuple(shape)}; resize them first",
        )  # fmt: skip
    if not np.isfinite(images).all():
        raise SpecError("targets", "target images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise SpecError(
            "targets", f"target values lie in [{low:.3g}, {high:.3g}]; images must be in "
            "[-1, 1] (a PNG is scaled for you; scale .npy arrays as 2 * x / 255 - 1)",
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# The basis: read from the store, checked against the model and space.


def load_basis(
    store: Store, reference: BasisFromJob | BasisFromSpectrum | dict[str, Any],
    owner: str | None, *, model: str, space: str, latent_dim: int, psi: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
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
    if job.resolved.get("kind") == OPTIMISE_KIND:
        raise SpecError("basis", f"job {job.id} is not a spectra job; give one that stores spectra")
    if job.status != "succeeded" and "job" in ref:
        raise SpecError("basis", f"job {job.id} is {job.status}; its basis is ready once it succeeded")
    basis_model = job.resolved.get("model", job.model)
    family = (job.resolved.get("generator") or {}).get("family")
    basis_space = canonical_space(family, job.resolved.get("space", "z"))
    if basis_model != model or basis_space != space:
        raise SpecError(
            "basis", f"the basis comes from model {basis_model!r} (space {basis_space}) but the "
            f"job optimises {model!r} (space {space}); use a spectra job of the same model and space",
        )  # fmt: skip
    basis_psi, job_psi = job.resolved.get("psi") or 1.0, psi or 1.0
    if space == "z" and basis_psi != job_psi:  # in z, psi changes the map itself (w is w)
        raise SpecError(
            "basis", f"the basis was computed at psi={basis_psi:g} but the job optimises z at "
            f"psi={job_psi:g}; in z the truncation changes the generator: use the same psi",
        )  # fmt: skip
    if "job" in ref:
        eigenvalues, ids = store.eigenvalue_matrix(job_id=job.id)
        vectors = store.top_k_eigenvectors(ids, eigenvalues.shape[1])
        if vectors.shape[1] != latent_dim:
            raise SpecError("basis", f"spectra of dimension {vectors.shape[1]}, model takes {latent_dim}")
        _, values, basis = average_metric(eigenvalues, vectors)
        facts: dict[str, Any] = {
            "job": job.id, "source": "average metric", "n_spectra": len(ids),
            "rank_per_spectrum": int(eigenvalues.shape[1]), "method": job.resolved.get("method"),
            "distance": job.resolved.get("distance"),
            "top_eigenvalues": [float(v) for v in values[:10]],
        }  # fmt: skip
    else:
        basis = np.asarray(store.eigenvectors(spectrum.id), dtype=np.float64)
        if basis.shape[0] != latent_dim:
            raise SpecError("basis", f"spectrum of dimension {basis.shape[0]}, model takes {latent_dim}")
        facts = {
            "spectrum": spectrum.id, "job": job.id, "source": "spectrum",
            "rank_per_spectrum": int(basis.shape[1]), "method": spectrum.method,
            "distance": spectrum.distance,
        }  # fmt: skip
    # Orthonormal to float64 precision, so a float32-stored basis is exactly a rotation.
    orthonormal, triangle = np.linalg.qr(basis)
    signs = np.where(np.diag(triangle) < 0, -1.0, 1.0)  # keep each column's own direction
    return orthonormal * signs[None, :], facts


def _check_basis_rank(spec: OptimiseSpec, basis: np.ndarray, facts: dict[str, Any]) -> None:
    d, m = basis.shape
    if spec.optimiser == "adam-eigenbasis" and m < d:
        raise SpecError(
            "basis", f"adam-eigenbasis needs a full basis of {d} directions; this spectrum "
            f"stores {m} (use a spectra job, whose average metric is full, or adam-topk)",
        )  # fmt: skip
    if spec.k is not None and spec.k > m:
        raise SpecError("k", f"k={spec.k} exceeds the {m} directions the basis holds")
