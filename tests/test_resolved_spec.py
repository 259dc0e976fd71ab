"""The typed resolved specs write exactly the document resolution stores and hashes, and read
a stored one back: the same job hashes the same, older documents included."""

from __future__ import annotations

from typing import Any

import pytest

from services.config import Settings
from services.geometry import sampled_image_variation
from services.job_spec import SampledLatents, spec_hash
from services.pipeline import JobSpec, dry_run_job
from services.pipeline.resolved import ResolvedOptimisation, ResolvedSpectra
from services.store import Store


@pytest.fixture
def store(sqlite_url: str) -> Store:
    store = Store(sqlite_url)
    store.migrate()
    return store


@pytest.mark.parametrize(
    "spec",
    [
        {"model": "dcgan-faces", "latents": {"count": 2, "seed": 1}},
        {"model": "dcgan-faces", "method": "sefa", "top_k": 5},
        {"model": "dcgan-faces", "method": "fd", "step": 0.01, "latents": {"count": 1}},
    ],
)
def test_a_resolved_spectra_document_round_trips(store: Store, spec: dict[str, Any]) -> None:
    resolved = dry_run_job(store, JobSpec(**spec), "a", settings=Settings())["resolved"]
    typed = ResolvedSpectra.from_document(resolved)
    assert typed.document() == resolved
    assert spec_hash(typed.document()) == spec_hash(resolved)
    assert typed.generator.latent_dim == 100 and typed.method == JobSpec(**spec).method


def test_an_older_spectra_document_reads_with_defaults() -> None:
    older = {
        "model": "dcgan-faces",
        "generator": {"family": "dcgan", "latent_dim": 100, "facts": {}},
        "distance": "mse",
        "distance_options": {},
        "method": "jacobian",
        "method_options": {"batch": 16},
        "top_k": None,
        "dtype": "float32",
        "device": None,
        "n_latents": 3,
        "latent_set": {"id": "s", "sha256": "h", "n": 3},
        "chunk_size": 2,
        "block_columns": None,
        "plan": {"per_code": {"tangent_batch": 16}},  # kept by jobs of older versions
    }
    typed = ResolvedSpectra.from_document(older)
    assert (typed.space, typed.psi, typed.batch, typed.top_k_rule) == ("z", None, 16, None)
    assert typed.latent_set is not None and typed.latent_set.n == 3


def test_a_resolved_optimisation_document_round_trips() -> None:
    document = {
        "kind": "optimise",
        "model": "dcgan-faces",
        "space": "z",
        "generator": {"family": "dcgan", "latent_dim": 100, "facts": {"a": 1}},
        "distance": "mse",
        "distance_options": {},
        "optimiser": "adam",
        "optimiser_options": {
            "steps": 10,
            "learning_rate": 0.05,
            "restarts": 2,
            "k": None,
            "population": None,
            "sigma": None,
        },
        "seed": 0,
        "basis": None,
        "targets": {"id": "t", "sha256": "h", "n": 4, "source": "generated"},
        "threshold": 0.01,
        "device": None,
        "dtype": "float32",
        "n_latents": 4,
        "chunk_size": 4,
    }
    typed = ResolvedOptimisation.from_document(document)
    assert typed.document() == document  # no psi key when none was given (older hashes)
    assert typed.label == "adam" and typed.targets.source == "generated"
    with_psi = ResolvedOptimisation.from_document({**document, "psi": 0.7})
    assert with_psi.document()["psi"] == 0.7


def test_a_loaded_generators_image_variation_is_rendered_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every job of a model records its (seeded) image variation; the images are rendered
    once per loaded generator, not in every submission's request."""
    from services.pipeline import spec as resolution

    rendered: list[object] = []
    real = sampled_image_variation

    def counting(generator: Any) -> dict[str, Any]:
        rendered.append(generator)
        return real(generator)

    monkeypatch.setattr(resolution, "sampled_image_variation", counting)
    monkeypatch.setattr(resolution, "_variations", type(resolution._variations)())
    first = dry_run_job(
        store,
        JobSpec(model="dcgan-faces", latents=SampledLatents(count=1)),
        "a",
        settings=Settings(),
    )
    second = dry_run_job(
        store,
        JobSpec(model="dcgan-faces", latents=SampledLatents(count=3)),
        "a",
        settings=Settings(),
    )
    assert len(rendered) == 1
    variation = first["resolved"]["generator"]["facts"]["image_variation"]
    assert second["resolved"]["generator"]["facts"]["image_variation"] == variation
    assert variation["degenerate"] is False
