"""The job spec: the ONE definition of a job, used by HTTP and the command line.

A spec is what a person asks for. Resolving it against the generator and the store turns it
into the *resolved* spec: every default filled in, the latent codes pinned to a stored latent
set (by id and sha256), the generator's own facts (weights sha256, ...) recorded. The spec
hash is the sha256 of the resolved spec's canonical JSON, so two requests that would compute
the same numbers are the same job, however the latents were written down.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.config import Settings
from services.geometry import (
    Generator,
    GeometryError,
    InvalidOptionError,
    sampled_image_variation,
    sefa,
    unmeasured_image_variation,
)
from services.geometry.models.contract import renders_at_load
from services.geometry.sefa import sefa_options

# The model and its pure checks live in services.job_spec (torch-free); re-exported here.
from services.job_spec import (
    DEVICE_PATTERN,
    DISTANCE_OPTIONS,
    DISTANCES,
    LAYER_DISTANCE_PREFIX,
    LPIPS_DISTANCES,
    MAX_NAME_LENGTH,
    MAX_SEED,
    METHOD_OPTIONS,
    ExplicitLatents,
    JobSpec,
    LatentSetRef,
    LatentSpace,
    LatentsSpec,
    SampledLatents,
    SpecError,
    canonical_json,
    check_count,
    distance_options_of,
    spec_hash,
)
from services.jsonable import jsonable
from services.method_registry import DIRECTION_METHODS
from services.pipeline import costs
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.planning import (
    choose_chunk_size,
    plan_column_blocks,
    plan_latent_chunks,
    plan_sefa,
)
from services.pipeline.resolved import GeneratorPin, ResolvedSpectra, StoredSetPin
from services.store import ChunkPlan, LatentSetRecord, Store

# --------------------------------------------------------------------------------------------
# Resolution: the spec checked against the generator and pinned to stored codes.


@dataclass(frozen=True)
class ResolvedSpec:
    """Everything needed to create the job's rows."""

    resolved: dict[str, Any]
    spec_hash: str
    latent_set_id: str | None
    n_latents: int
    latent_dim: int
    chunks: list[ChunkPlan]
    generator_family: str
    generator_facts: dict[str, Any]

    # The planner's estimate, times included, and the profile it read (the job records it
    # beside the resolved spec, out of its hash: the plan does not change the numbers).
    estimate: dict[str, Any] | None = None
    # No cost profile of the model yet: the job is stored without chunks and a worker plans
    # it (services/pipeline/costs.py).
    pending: bool = False

    @property
    def plan(self) -> dict[str, Any]:
        return dict(self.estimate or {})


def resolve_spec(
    store: Store,
    spec: JobSpec,
    owner: str,
    *,
    settings: Settings,
    dry_run: bool = False,
) -> ResolvedSpec:
    """Check `spec` against its generator and the limits, plan its chunks and its costs (a
    job that fits no worker is refused), store its codes as a latent set (deduplicated, so
    identical specs share codes) and hash it. `dry_run`: plan only, write nothing.

    Every check runs before anything is written: a spec refused here leaves no row behind.
    Raises SpecError (naming the field), or the store's NotFoundError for an unknown set.
    """
    # Checked here on this process's device: the API may have no GPU while its workers do.
    generator = _load_or_refuse(spec, settings.device, settings.nvidia_code_dir)
    device = spec.device or settings.device
    d = generator.latent_dim
    if d > settings.max_latent_dim:
        raise SpecError(
            "model",
            f"latent dimension {d} exceeds the limit {settings.max_latent_dim} "
            "(SPECTRA_MAX_LATENT_DIM)",
        )
    _check_top_k(spec, d)
    top_k, top_k_rule = _kept_eigenvectors(spec, d, settings)

    codes: np.ndarray | None = None
    stored_set: LatentSetRecord | None = None
    if isinstance(spec.latents, SampledLatents):
        _check_count(spec.latents.count, settings)
        codes = np.asarray(
            generator.sample(spec.latents.count, spec.latents.seed), dtype=np.float64
        )
    elif isinstance(spec.latents, ExplicitLatents):
        codes = np.asarray(spec.latents.values, dtype=np.float64)
        _check_count(codes.shape[0], settings)
        _check_dimension(codes.shape[1], d, spec.model)
    elif isinstance(spec.latents, LatentSetRef):
        stored_set = store.get_latent_set(spec.latents.set, owner)
        _check_count(stored_set.n, settings)
        _check_dimension(stored_set.d, d, spec.model)
    if codes is not None and not np.isfinite(codes).all():
        raise SpecError("latents", "codes contain NaN or infinite values; give finite numbers")

    n_latents = 1 if spec.method in DIRECTION_METHODS else _count(codes, stored_set)
    chunk_size: int | None = None
    if spec.method in DIRECTION_METHODS:
        chunks = plan_sefa()
    elif spec.block_columns is not None:
        if spec.block_columns >= d:
            raise SpecError(
                "block_columns",
                f"must be smaller than the latent dimension {d}; leave it "
                "out to compute each Hessian in one piece",
            )
        chunks = plan_column_blocks(n_latents, d, spec.block_columns)
    else:
        chunk_size = spec.chunk_size or choose_chunk_size(n_latents, spec.method, d, device)
        chunks = plan_latent_chunks(n_latents, chunk_size)
    planned = _plan_costs(store, spec, generator, settings, top_k, n_latents, chunk_size)
    if dry_run:
        codes = None  # nothing is stored: the plan names no latent set

    # All checks passed: from here on we write.
    if codes is not None:
        assert isinstance(spec.latents, SampledLatents | ExplicitLatents)
        sampled = isinstance(spec.latents, SampledLatents)
        stored_set = store.create_latent_set(
            owner,
            codes,
            source="sampled" if sampled else "uploaded",
            model=spec.model if sampled else None,
            seed=spec.latents.seed if isinstance(spec.latents, SampledLatents) else None,
            name=_origin_name(spec, generator) if sampled else None,
        )
    facts = jsonable({**generator.facts, "image_variation": _image_variation(generator)})
    typed = ResolvedSpectra(
        model=spec.model,
        generator=GeneratorPin(generator.family, d, facts),
        distance=None if spec.method in DIRECTION_METHODS else spec.distance,
        distance_options=spec.distance_options(),
        method=spec.method,
        method_options=sefa_options(generator, spec.method_options())
        if spec.method == "sefa"
        else spec.method_options(),
        top_k=top_k,
        dtype=spec.dtype,
        device=spec.device,
        space=generator.space,  # the family's name for it (BigGAN: z is both)
        psi=spec.psi,
        latent_set=None
        if stored_set is None
        else StoredSetPin(stored_set.id, stored_set.sha256, stored_set.n),
        n_latents=n_latents,
        chunk_size=chunk_size,
        block_columns=spec.block_columns,
        top_k_rule=top_k_rule,
    )
    resolved = typed.document()
    return ResolvedSpec(
        resolved=resolved,
        spec_hash=spec_hash(resolved),
        latent_set_id=None if stored_set is None else stored_set.id,
        n_latents=n_latents,
        latent_dim=d,
        chunks=chunks,
        generator_family=generator.family,
        generator_facts=facts,
        estimate=jsonable(planned.estimate),
        pending=planned.pending,
    )


FULL_SPECTRUM_METHODS = ("jacobian", "hvp", "fd", "bp")

# A loaded generator's image variation (seeded: the same for every job of it), rendered once
# per loaded generator rather than in every submission's request; weak, so a generator the
# model cache lets go is not kept alive by it.
_variations: weakref.WeakKeyDictionary[Generator, dict[str, Any]] = weakref.WeakKeyDictionary()


def _image_variation(generator: Generator) -> dict[str, Any]:
    found = _variations.get(generator)
    if found is None:
        # A large generator's images are not rendered in the process that plans it (the API):
        # eight of its images at once can take more memory than that process has.
        found = _variations[generator] = (
            sampled_image_variation(generator)
            if renders_at_load(generator)
            else unmeasured_image_variation(
                "the model is too large to render where jobs are planned (its load-time "
                "check ran on torch's meta device); its images are first computed by a worker"
            )
        )
    return found


def _kept_eigenvectors(spec: JobSpec, d: int, settings: Settings) -> tuple[int | None, str | None]:
    """top_k as asked; for a full-spectrum method above SPECTRA_FULL_EIGENVECTORS_MAX_DIM
    with none asked, the default top k, and the rule that chose it (recorded)."""
    if (
        spec.top_k is not None
        or spec.method not in FULL_SPECTRUM_METHODS
        or d <= settings.full_eigenvectors_max_dim
    ):
        return spec.top_k, None
    top_k = min(settings.default_top_k, d - 1)
    return top_k, (
        f"top {top_k} eigenvectors kept by default above d = "
        f"{settings.full_eigenvectors_max_dim} (SPECTRA_FULL_EIGENVECTORS_MAX_DIM, "
        "SPECTRA_DEFAULT_TOP_K); every eigenvalue and the trace are still stored"
    )


def _plan_costs(
    store: Store,
    spec: JobSpec,
    generator: Generator,
    settings: Settings,
    top_k: int | None,
    n_latents: int,
    chunk_size: int | None,
) -> costs.Planned:
    """The planner's estimate for this spec, with no probe here (services/pipeline/costs.py);
    refuses (SpecError) a job that fits no worker by its counts or its stored profile."""
    inputs = costs.CostInputs(
        model=spec.model,
        weights_sha256=generator.facts.get("weights_sha256"),
        space=generator.space,
        psi=spec.psi,
        distance=None if spec.method in DIRECTION_METHODS else spec.distance,
        distance_options=spec.distance_options(),
        method=spec.method,
        dtype=spec.dtype,
        top_k=top_k,
        batch=spec.batch,
        block_columns=spec.block_columns,
        n_latents=n_latents,
        latent_dim=generator.latent_dim,
        chunk_size=chunk_size,
        device=spec.device,
    )
    distance = None
    if inputs.distance is not None:
        distance = cached_distance(
            inputs.distance, settings.device, spec.dtype, **spec.distance_options()
        )
    planned = costs.plan_at_submit(
        store, inputs, costs.Workers.from_settings(settings), generator, distance
    )
    if planned.refusal is not None:
        raise SpecError(planned.refused_field, planned.refusal)
    return planned


def _load_or_refuse(spec: JobSpec, device: str, nvidia_code_dir: str) -> Generator:
    try:
        generator = cached_generator(
            spec.model, device, spec.dtype, spec.space, spec.psi, nvidia_code_dir or None
        )
    except InvalidOptionError as error:  # a space or psi this model does not have
        raise SpecError("psi" if "psi" in str(error) else "space", str(error)) from error
    except GeometryError as error:  # unknown model, missing weights (names the file), ...
        raise SpecError("model", str(error)) from error
    _check_layers(spec, generator)
    if spec.method not in DIRECTION_METHODS:
        # Loads the distance here so that a missing LPIPS backbone is refused at submit
        # time, naming the file to place, rather than failing every chunk later.
        try:
            cached_distance(spec.distance, device, spec.dtype, **spec.distance_options())
        except GeometryError as error:
            raise SpecError("distance", str(error)) from error
    return generator


def _check_layers(spec: JobSpec, generator: Generator) -> None:
    """Layer names and SeFa's layers checked against the model at submit time."""
    names = generator.layer_names()
    asked = [("layer", spec.layer)] if spec.layer is not None else []
    if spec.method not in DIRECTION_METHODS and spec.distance.startswith(LAYER_DISTANCE_PREFIX):
        asked.append(("distance", spec.distance.removeprefix(LAYER_DISTANCE_PREFIX)))
    for field, layer in asked:
        if layer not in names:
            listed = ", ".join(names) if names else "none (not an nn.Module)"
            raise SpecError(field, f"unknown layer {layer!r} of {spec.model}; its layers: {listed}")
    if spec.method == "sefa":
        try:  # weights only, and cheap: the same call the worker makes
            sefa(generator, top_k=spec.top_k, **spec.method_options())
        except GeometryError as error:
            raise SpecError("layers" if spec.layers else "space", str(error)) from error


def _origin_name(spec: JobSpec, generator: Generator) -> str | None:
    """Sampled codes of w / w+ record where they came from: z drawn from the seed, mapped;
    BigGAN noise / class codes the fixed other half they are joined with."""
    assert isinstance(spec.latents, SampledLatents)
    seed = spec.latents.seed
    if generator.space in ("noise", "class"):
        other = (
            f"class {generator.facts['fixed_class']}'s embedding"
            if generator.space == "noise"
            else "the noise"
        )
        return (
            f"BigGAN {generator.space} codes from numpy seed {seed}, joined with {other} of the "
            f"seed-{generator.facts['fixed_half_seed']} code (facts fixed_*)"
        )
    if generator.space not in ("w", "w+"):
        return None
    psi = 1.0 if spec.psi is None else spec.psi
    return (
        f"{spec.space} codes: w = w_avg + {psi:g} (mapping(z) - w_avg), z ~ N(0, I) from "
        f"numpy seed {seed}"
    )


def _check_top_k(spec: JobSpec, d: int) -> None:
    if spec.top_k is not None and spec.top_k >= d:
        raise SpecError(
            "top_k",
            f"top_k={spec.top_k} must be smaller than the latent dimension {d}; "
            f"leave it out (null) to keep all {d} eigenpairs",
        )


def _check_count(count: int, settings: Settings) -> None:
    check_count(count, settings.max_latents_per_job, "latents", "codes")


def _check_dimension(given: int, expected: int, model: str) -> None:
    if given != expected:
        raise SpecError(
            "latents", f"codes have dimension {given} but model {model!r} takes {expected}"
        )


def _count(codes: np.ndarray | None, stored_set: LatentSetRecord | None) -> int:
    if codes is not None:
        return int(codes.shape[0])
    assert stored_set is not None
    return stored_set.n


__all__ = [
    "DEVICE_PATTERN",
    "DIRECTION_METHODS",
    "DISTANCES",
    "DISTANCE_OPTIONS",
    "ExplicitLatents",
    "JobSpec",
    "LAYER_DISTANCE_PREFIX",
    "LPIPS_DISTANCES",
    "LatentSetRef",
    "LatentSpace",
    "LatentsSpec",
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "METHOD_OPTIONS",
    "ResolvedSpec",
    "SampledLatents",
    "SpecError",
    "canonical_json",
    "distance_options_of",
    "resolve_spec",
    "spec_hash",
]
