"""The job spec: the ONE definition of a job, used by HTTP and the command line.

A spec is what a person asks for; this module holds the pydantic model and its pure checks,
and imports no torch, numpy or SQL, so that ``spectra submit`` (which only builds a spec and
sends it to a server) starts fast. Resolving a spec against the generator and the store
(services.pipeline.spec.resolve_spec) turns it into the *resolved* spec whose hash names the
job.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, FiniteFloat, Tag, model_validator

from services.method_registry import DIRECTION_METHODS, JOB_OPTIONS, JobMethod
from services.patterns import MAX_SEED as MAX_SEED  # re-exported (services.pipeline.spec)
from services.patterns import Seed

LPIPS_DISTANCES = ("lpips-alex", "lpips-vgg", "lpips-squeeze")
# Model names include file-based loaders ("python:/opt/models/mine.py:build").
MAX_NAME_LENGTH = 500
# What torch accepts as a device here; which of them some worker actually has is checked at
# submission (services.worker_devices).
DEVICE_PATTERN = r"^(cpu|mps|cuda(:[0-9]{1,3})?)$"
DISTANCES = ("mse", *LPIPS_DISTANCES)

# Which method takes which option: the registry's (services.method_registry).
METHOD_OPTIONS = JOB_OPTIONS
# DIRECTION_METHODS (sefa, ganspace) give one set of directions per model: no codes, no distance.
LAYER_DISTANCE_PREFIX = "layer:"
DISTANCE_OPTIONS: dict[str, tuple[str, ...]] = {
    "mse": (),
    **{name: ("resize", "random_backbone") for name in LPIPS_DISTANCES},
}


def distance_options_of(distance: str) -> tuple[str, ...]:
    """The options a distance takes (`layer:NAME` distances take none)."""
    return () if distance.startswith(LAYER_DISTANCE_PREFIX) else DISTANCE_OPTIONS[distance]


_ALL_METHOD_OPTIONS = sorted({o for opts in METHOD_OPTIONS.values() for o in opts})
_ALL_DISTANCE_OPTIONS = sorted({o for opts in DISTANCE_OPTIONS.values() for o in opts})


RANDOM_BACKBONE_SUFFIX = "[random-backbone]"


def stored_distance_name(distance: str, distance_options: dict[str, Any] | None) -> str:
    """The distance as stored with each spectrum and shown wherever spectra are listed or
    filtered: an LPIPS with a random backbone is not LPIPS, so it never carries the bare name."""
    if (distance_options or {}).get("random_backbone"):
        return distance + RANDOM_BACKBONE_SUFFIX
    return distance


class SampledLatents(BaseModel):
    """N codes drawn from the generator's own latent distribution with a seed."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=10**9, description="number of codes to sample")
    # The seed is stored as a signed 64-bit integer (PostgreSQL bigint).
    seed: Seed = Field(default=0, description="seed of the sampler")


class ExplicitLatents(BaseModel):
    """Codes given one per row; every value must be finite."""

    model_config = ConfigDict(extra="forbid")
    values: list[list[FiniteFloat]] = Field(min_length=1, description="codes, one row per code")

    @model_validator(mode="after")
    def _rows_have_one_length(self) -> ExplicitLatents:
        lengths = {len(row) for row in self.values}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(
                f"every code must have the same, non-zero length; got lengths {sorted(lengths)}"
            )
        return self


class LatentSetRef(BaseModel):
    """A latent set already stored (uploaded or sampled), by id."""

    model_config = ConfigDict(extra="forbid")
    set: str = Field(min_length=1, max_length=64, description="id of a stored latent set")


def _latents_kind(value: Any) -> str | None:
    """Pick the latents variant from the one key that names it, for a clear error."""
    if isinstance(value, BaseModel):
        return {SampledLatents: "count", ExplicitLatents: "values", LatentSetRef: "set"}.get(
            type(value)
        )
    if isinstance(value, dict):
        kinds = [key for key in ("count", "values", "set") if key in value]
        return kinds[0] if len(kinds) == 1 else None
    return None


LatentsSpec = Annotated[
    Annotated[SampledLatents, Tag("count")]
    | Annotated[ExplicitLatents, Tag("values")]
    | Annotated[LatentSetRef, Tag("set")],
    Discriminator(
        _latents_kind,
        custom_error_type="latents_kind",
        custom_error_message=(
            'latents must be exactly one of {"count": N, "seed": S}, {"values": [[...], ...]} '
            'or {"set": "<latent set id>"}'
        ),
    ),
]


# Every space some family offers (generators.ALL_SPACES); which ones a model has is its
# Generator's `spaces`, checked when the model is loaded (a 422 naming them).
LatentSpace = Literal["z", "w", "w+", "both", "noise", "class"]


class JobSpec(BaseModel):
    """What to compute: a generator, a distance, a method with its options, and the codes."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="dcgan-faces",
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="generator name",
    )
    distance: str = Field(
        default="mse",
        max_length=MAX_NAME_LENGTH,
        description=f"image distance: one of {', '.join(DISTANCES)}, or layer:NAME (squared "
        "difference of a named generator layer's activations; `spectra models` lists them)",
    )
    method: JobMethod = "jacobian"
    latents: LatentsSpec | None = Field(
        default=None, description="codes; sefa and ganspace take none"
    )
    top_k: int | None = Field(default=None, ge=1, description="eigenpairs kept; null = all")
    dtype: Literal["float32", "float64"] = "float32"
    chunk_size: int | None = Field(default=None, ge=1, le=10_000, description="codes per chunk")
    device: str | None = Field(
        default=None,
        pattern=DEVICE_PATTERN,
        description="torch device (cpu, cuda, cuda:N, mps); null = the worker's",
    )
    space: LatentSpace = Field(
        default="z",
        description="latent space of the codes: z, or w / w+ (StyleGAN2; w+ has d = num_ws x "
        "style_dim), or both / noise / class (BigGAN; both = noise ⊕ class embedding, and z is "
        "its older name); each model's spaces: `spectra models`",
    )
    psi: float | None = Field(
        default=None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="StyleGAN2 truncation toward w_avg, in (0, 1]; null = 1 (none)",
    )
    # Method-specific options (see METHOD_OPTIONS / DISTANCE_OPTIONS).
    step: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="fd: step")
    tol: float | None = Field(default=None, ge=0, lt=1, description="lanczos: tolerance")
    max_iter: int | None = Field(
        default=None, ge=1, le=1_000_000, description="lanczos: iteration cap"
    )
    batch: int | None = Field(
        default=None, ge=1, le=1_000_000, description="jacobian/hvp/fd: products per batch"
    )
    block_columns: int | None = Field(
        default=None,
        ge=1,
        description="split each Hessian into blocks of this many columns, one chunk per block",
    )
    resize: int | None = Field(default=None, ge=16, le=1024, description="lpips: resize images")
    random_backbone: bool | None = Field(
        default=None, description="lpips: random backbone weights (testing only)"
    )
    preset: Literal["genforce-all", "rosinality-cff"] | None = Field(
        default=None,
        description="sefa on style-based generators: genforce-all (genforce/sefa 'all', the "
        "default) or rosinality-cff (rosinality's closed_form_factorization.py)",
    )
    layers: (
        list[
            Annotated[int, Field(ge=0, le=100_000)]
            | Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.]+$")]
        ]
        | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="sefa: style layers by name (e.g. conv1, convs.0), or indices, instead of a preset",
    )
    fold_batchnorm: bool | None = Field(
        default=None, description="sefa (DCGAN): fold the first BatchNorm's scale into the weights"
    )
    normalize_rows: bool | None = Field(
        default=None,
        description="sefa: unit-normalise each weight row (genforce/sefa) or not (rosinality); "
        "null = the model's default (StyleGAN2: normalised)",
    )
    samples: int | None = Field(
        default=None, ge=2, le=1_000_000, description="ganspace: number of sampled codes"
    )
    sample_seed: Seed | None = Field(default=None, description="ganspace: sampling seed")
    layer: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="ganspace: the layer whose activations are PCA'd (default: StyleGAN2 w)",
    )

    @model_validator(mode="after")
    def _options_fit_method_and_distance(self) -> JobSpec:
        if self.distance not in DISTANCES and not (
            self.distance.startswith(LAYER_DISTANCE_PREFIX)
            and len(self.distance) > len(LAYER_DISTANCE_PREFIX)
        ):
            raise ValueError(
                f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)} "
                "or layer:NAME"
            )
        allowed = METHOD_OPTIONS[self.method]
        for option in _ALL_METHOD_OPTIONS:
            if getattr(self, option) is not None and option not in allowed:
                takers = [m for m, opts in METHOD_OPTIONS.items() if option in opts]
                raise ValueError(
                    f"option {option!r} does not apply to method {self.method!r}; "
                    f"it is an option of {', '.join(takers)}"
                )
        if self.method not in DIRECTION_METHODS:
            allowed = distance_options_of(self.distance)
            for option in _ALL_DISTANCE_OPTIONS:
                if getattr(self, option) is not None and option not in allowed:
                    raise ValueError(
                        f"option {option!r} does not apply to distance {self.distance!r}; "
                        f"it is an option of the lpips distances ({', '.join(LPIPS_DISTANCES)})"
                    )
        if self.method in DIRECTION_METHODS:
            if self.latents is not None:
                source = "the weights alone" if self.method == "sefa" else "its own seeded samples"
                raise ValueError(f"method {self.method!r} works from {source}: leave out 'latents'")
            for option in (*_ALL_DISTANCE_OPTIONS, "chunk_size"):
                if getattr(self, option) is not None:
                    raise ValueError(f"option {option!r} does not apply to method {self.method!r}")
        elif self.latents is None:
            raise ValueError(
                f"method {self.method!r} needs latent codes: give latents as "
                '{"count": N, "seed": S}, {"values": [[...]]} or {"set": "<id>"}'
            )
        return self

    def method_options(self) -> dict[str, Any]:
        """The options passed through to the geometry core for this method."""
        names = [o for o in METHOD_OPTIONS[self.method] if o != "block_columns"]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def distance_options(self) -> dict[str, Any]:
        """The options that shape the distance (part of the model cache key)."""
        if self.method in DIRECTION_METHODS:
            return {}
        names = distance_options_of(self.distance)
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class SpecError(ValueError):
    """A spec that cannot run: names the field at fault and says what to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the same data always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the resolved spec's canonical JSON."""
    return hashlib.sha256(canonical_json(resolved).encode()).hexdigest()


def check_count(count: int, limit: int, field: str, noun: str) -> None:
    """The items of one job (codes of a spectra job, targets of an optimisation job) against
    SPECTRA_MAX_LATENTS_PER_JOB: one check for every kind of job."""
    if count > limit:
        raise SpecError(
            field,
            f"{count} {noun} exceed the limit of {limit} per job "
            "(SPECTRA_MAX_LATENTS_PER_JOB); split them over several jobs",
        )
