"""The optimisation job's spec: the ONE definition of an inversion job, used by HTTP and the
command line. Torch-free, like services/job_spec.py, so that `spectra optimise --help` and
the flags' checks start without the geometry core; resolution against the generator and the
store is services/pipeline/optimise_spec.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from services.job_spec import (
    DISTANCE_OPTIONS,
    DISTANCES,
    LPIPS_DISTANCES,
    ExplicitLatents,
    LatentSetRef,
    LatentSpace,
    SampledLatents,
)
from services.patterns import Seed

if TYPE_CHECKING:
    from services.geometry.optimise import OptimiserSettings

MAX_STEPS = 5000
MAX_RESTARTS = 32


class TargetSetRef(BaseModel):
    """Target images already stored, by id."""

    model_config = ConfigDict(extra="forbid")
    target_set: str = Field(min_length=1, description="id of a stored target set")


def _targets_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {
            SampledLatents: "count",
            ExplicitLatents: "values",
            LatentSetRef: "set",
            TargetSetRef: "target_set",
        }.get(type(value))
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
        default=None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="StyleGAN2 truncation toward w_avg, in (0, 1]; null = 1 (none)",
    )
    distance: str = Field(default="mse", description=f"one of {', '.join(DISTANCES)}")
    resize: int | None = Field(default=None, ge=16, le=1024, description="lpips: resize images")
    random_backbone: bool | None = Field(default=None, description="lpips: random backbone (tests)")
    targets: TargetsSpec | None = Field(
        default=None,
        description="codes to generate targets from, a stored target set, or "
        "null when images are uploaded with the request",
    )
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
            raise ValueError(
                f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}"
            )
        for option in ("resize", "random_backbone"):
            if getattr(self, option) is not None and option not in DISTANCE_OPTIONS[self.distance]:
                raise ValueError(
                    f"option {option!r} does not apply to distance {self.distance!r}; it is an "
                    f"option of {', '.join(LPIPS_DISTANCES)}"
                )
        # The optimisers' table lives with them in the geometry core (torch): read here, at
        # validation, so that importing this module (a command's --help) needs no torch.
        from services.geometry.optimise import BASIS_OPTIMISERS, GRADIENT_FREE, TOPK_OPTIMISERS

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
        from services.geometry.optimise import OptimiserSettings

        return OptimiserSettings(
            optimiser=self.optimiser,
            steps=self.steps,
            learning_rate=self.learning_rate,
            restarts=self.restarts,
            k=self.k,
            population=self.population,
            sigma=0.5 if self.sigma is None else self.sigma,
        )

    def distance_options(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in DISTANCE_OPTIONS[self.distance]
            if getattr(self, name) is not None
        }


# --------------------------------------------------------------------------------------------
# Targets arriving as files.
