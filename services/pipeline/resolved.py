"""The resolved spec as typed records, one per job kind.

A job's resolved spec is stored as a JSON document (`jobs.resolved`) and hashed (the spec
hash is the sha256 of its canonical JSON), so its document is the contract: `document()`
writes exactly the keys resolution always wrote, and `from_document()` reads a stored one
back (older jobs included: keys added later have defaults). Code that acts on a job reads
these attributes instead of looking strings up in the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.pipeline.kinds import OPTIMISE_KIND


@dataclass(frozen=True)
class GeneratorPin:
    """The generator a job was resolved against: its family, dimension and facts (weights
    sha256, output shape, ...)."""

    family: str
    latent_dim: int
    facts: dict[str, Any]

    @property
    def weights_sha256(self) -> str | None:
        value = self.facts.get("weights_sha256")
        return None if value is None else str(value)

    def document(self) -> dict[str, Any]:
        return {"family": self.family, "latent_dim": self.latent_dim, "facts": self.facts}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> GeneratorPin:
        return cls(
            family=str(document["family"]),
            latent_dim=int(document["latent_dim"]),
            facts=dict(document.get("facts") or {}),
        )


@dataclass(frozen=True)
class StoredSetPin:
    """A stored set (latent codes, target images) pinned by id and content hash."""

    id: str
    sha256: str
    n: int
    source: str | None = None  # target sets only: "generated" or "uploaded"

    def document(self) -> dict[str, Any]:
        pin: dict[str, Any] = {"id": self.id, "sha256": self.sha256, "n": self.n}
        if self.source is not None:
            pin["source"] = self.source
        return pin

    @classmethod
    def from_document(cls, document: dict[str, Any] | None) -> StoredSetPin | None:
        if document is None:
            return None
        return cls(
            id=str(document["id"]),
            sha256=str(document["sha256"]),
            n=int(document["n"]),
            source=document.get("source"),
        )


@dataclass(frozen=True)
class ResolvedSpectra:
    """A spectra job's resolved spec: every default filled in, the codes pinned."""

    model: str
    generator: GeneratorPin
    distance: str | None  # None: a direction method (SeFa, GANSpace)
    distance_options: dict[str, Any]
    method: str
    method_options: dict[str, Any]
    top_k: int | None
    dtype: str
    device: str | None
    space: str
    psi: float | None
    latent_set: StoredSetPin | None
    n_latents: int
    chunk_size: int | None
    block_columns: int | None
    top_k_rule: str | None = None  # why top_k was chosen, when the job did not ask

    @property
    def batch(self) -> int | None:
        """The tangent batch the job asked for (None: the planner's)."""
        value = self.method_options.get("batch")
        return None if value is None else int(value)

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "model": self.model,
            "generator": self.generator.document(),
            "distance": self.distance,
            "distance_options": self.distance_options,
            "method": self.method,
            "method_options": self.method_options,
            "top_k": self.top_k,
            "dtype": self.dtype,
            "device": self.device,
            "space": self.space,
            "psi": self.psi,
            "latent_set": None if self.latent_set is None else self.latent_set.document(),
            "n_latents": self.n_latents,
            "chunk_size": self.chunk_size,
            "block_columns": self.block_columns,
        }
        if self.top_k_rule:
            document["top_k_rule"] = self.top_k_rule
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ResolvedSpectra:
        return cls(
            model=str(document["model"]),
            generator=GeneratorPin.from_document(document["generator"]),
            distance=document.get("distance"),
            distance_options=dict(document.get("distance_options") or {}),
            method=str(document["method"]),
            method_options=dict(document.get("method_options") or {}),
            top_k=document.get("top_k"),
            dtype=str(document["dtype"]),
            device=document.get("device"),
            space=str(document.get("space") or "z"),
            psi=document.get("psi"),
            latent_set=StoredSetPin.from_document(document.get("latent_set")),
            n_latents=int(document["n_latents"]),
            chunk_size=document.get("chunk_size"),
            block_columns=document.get("block_columns"),
            top_k_rule=document.get("top_k_rule"),
        )


@dataclass(frozen=True)
class OptimiserOptions:
    steps: int
    learning_rate: float
    restarts: int
    k: int | None
    population: int | None
    sigma: float | None

    def document(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "restarts": self.restarts,
            "k": self.k,
            "population": self.population,
            "sigma": self.sigma,
        }


@dataclass(frozen=True)
class ResolvedOptimisation:
    """An optimisation job's resolved spec: the optimiser and its options, the targets and
    the basis pinned."""

    model: str
    space: str
    psi: float | None
    generator: GeneratorPin
    distance: str
    distance_options: dict[str, Any]
    optimiser: str
    optimiser_options: OptimiserOptions
    seed: int
    basis: dict[str, Any] | None  # what load_basis recorded of the basis' source
    targets: StoredSetPin
    threshold: float | None
    device: str | None
    dtype: str
    n_latents: int
    chunk_size: int

    @property
    def label(self) -> str:
        k = self.optimiser_options.k
        return self.optimiser + (f" (k={k})" if k is not None else "")

    def document(self) -> dict[str, Any]:
        return {
            "kind": OPTIMISE_KIND,
            "model": self.model,
            "space": self.space,
            # Only when given, so that the hashes of the jobs from before psi existed stay.
            **({"psi": self.psi} if self.psi is not None else {}),
            "generator": self.generator.document(),
            "distance": self.distance,
            "distance_options": self.distance_options,
            "optimiser": self.optimiser,
            "optimiser_options": self.optimiser_options.document(),
            "seed": self.seed,
            "basis": self.basis,
            "targets": self.targets.document(),
            "threshold": self.threshold,
            "device": self.device,
            "dtype": self.dtype,
            "n_latents": self.n_latents,
            "chunk_size": self.chunk_size,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ResolvedOptimisation:
        targets = StoredSetPin.from_document(document["targets"])
        assert targets is not None
        return cls(
            model=str(document["model"]),
            space=str(document.get("space") or "z"),
            psi=document.get("psi"),
            generator=GeneratorPin.from_document(document["generator"]),
            distance=str(document["distance"]),
            distance_options=dict(document.get("distance_options") or {}),
            optimiser=str(document["optimiser"]),
            optimiser_options=OptimiserOptions(**document["optimiser_options"]),
            seed=int(document["seed"]),
            basis=document.get("basis"),
            targets=targets,
            threshold=document.get("threshold"),
            device=document.get("device"),
            dtype=str(document.get("dtype") or "float32"),
            n_latents=int(document["n_latents"]),
            chunk_size=int(document["chunk_size"]),
        )
