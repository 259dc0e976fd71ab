"""SeFa variants, GANSpace and layer metrics against independent constructions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.geometry import (
    InvalidOptionError,
    compute_metric,
    ganspace,
    load_distance,
    load_generator,
    sefa,
)
from services.geometry.models.generator import Generator

from .conftest import python_generator
from .factories import LINEAR_DIM, linear_weights

STYLE_DIM = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.checkpoints import write_random_checkpoint

    path = tmp_path_factory.mktemp("sg2") / "g.pt"
    return write_random_checkpoint(
        path, size=16, style_dim=STYLE_DIM, n_mlp=2, channels={4: 5, 8: 4, 16: 3}, seed=8
    )


def modulation_weights(checkpoint: Path, skip_to_rgbs: bool = False) -> np.ndarray:
    state = torch.load(checkpoint)["g_ema"]
    keys = [k for k in state if k.endswith("modulation.weight")]
    if skip_to_rgbs:
        keys = [k for k in keys if "to_rgbs" not in k]
    return torch.cat([state[k] for k in keys]).double().numpy()


def same_directions(a: np.ndarray, b: np.ndarray, tol: float = 1e-8) -> bool:
    """Columns equal up to sign."""
    return bool(np.allclose(np.abs(np.sum(a * b, axis=0)), 1.0, atol=tol))


# --------------------------------------------------------------------------- SeFa


def test_sefa_of_every_named_style_layer_equals_eigh_of_the_normalised_weights(
    checkpoint: Path,
) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}", space="w")
    # Every style layer is neither published choice (tests/geometry/test_sefa.py has those):
    # it is asked for by name, rows normalised as the module's default says.
    module: Any = generator.module
    result = sefa(generator, layers=module.sefa_layer_names())
    a = modulation_weights(checkpoint)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(a.T @ a)
    assert np.allclose(result.eigenvalues, values[::-1], rtol=1e-10)
    assert same_directions(result.eigenvectors, vectors[:, ::-1])
    assert result.diagnostics["normalize_rows"] is True
    assert result.diagnostics["layer_names"][:3] == ["conv1", "to_rgb1", "convs.0"]


def test_sefa_raw_variant_is_rosinalitys_closed_form_factorization(checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}", space="w")
    module: Any = generator.module
    names = module.sefa_layer_names()
    chosen = [i for i, name in enumerate(names) if not name.startswith("to_rgbs")]
    result = sefa(generator, layers=chosen, normalize_rows=False)
    a = modulation_weights(checkpoint, skip_to_rgbs=True)  # the script's selection, unscaled
    _, singular, vh = np.linalg.svd(a)
    # The equalised-lr scale 1/sqrt(style_dim) is common to every row: same directions.
    assert np.allclose(result.eigenvalues * STYLE_DIM, singular**2, rtol=1e-10)
    assert same_directions(result.eigenvectors, vh.T)


def test_sefa_in_wplus_puts_each_layer_in_its_slot_and_refuses_z(checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}", space="w+")
    result = sefa(generator, layers=[2])  # convs.0 reads slot 1
    support = np.abs(result.eigenvectors).sum(axis=1).reshape(-1, STYLE_DIM).sum(axis=1)
    assert support[1] > 0 and np.count_nonzero(support) == 1
    with pytest.raises(InvalidOptionError, match="space 'w'"):
        sefa(load_generator(f"stylegan2:{checkpoint}"))
    with pytest.raises(InvalidOptionError, match="does not exist"):
        sefa(load_generator(f"stylegan2:{checkpoint}", space="w"), layers=[99])


def test_sefa_row_normalised_variant_for_a_dcgan(tiny_dcgan: Generator) -> None:
    result = sefa(tiny_dcgan, normalize_rows=True)
    weight: Any = tiny_dcgan.module.first_layer_weight
    a = weight.double().reshape(8, -1).T.numpy()
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(a.T @ a)
    assert np.allclose(result.eigenvalues, values[::-1], rtol=1e-10)
    assert same_directions(result.eigenvectors, vectors[:, ::-1])
    assert not np.allclose(sefa(tiny_dcgan).eigenvalues, result.eigenvalues)


# --------------------------------------------------------------------------- GANSpace


def test_ganspace_on_a_linear_generator_is_the_pca_of_its_outputs() -> None:
    generator = python_generator("linear")
    result = ganspace(generator, samples=400, sample_seed=5, layer="1")  # the Unflatten output
    weight, bias = linear_weights()
    outputs = generator.sample(400, 5) @ weight.T + bias
    values, components = np.linalg.eigh(np.cov(outputs, rowvar=False))
    values, components = values[::-1][:LINEAR_DIM], components[:, ::-1][:, :LINEAR_DIM]
    assert np.allclose(result.eigenvalues, values, rtol=1e-9)
    # Each latent direction moves the output along its principal component.
    moved = weight @ result.eigenvectors
    assert same_directions(moved / np.linalg.norm(moved, axis=0), components)
    assert result.diagnostics["samples"] == 400 and result.diagnostics["layer"] == "1"


def test_ganspace_on_stylegan2_w_is_the_pca_of_sampled_w(checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}", space="w", psi=0.7)
    result = ganspace(generator, samples=500, sample_seed=1)
    values, vectors = np.linalg.eigh(np.cov(generator.sample(500, 1), rowvar=False))
    assert result.diagnostics["layer"] == "w"
    assert np.allclose(result.eigenvalues, values[::-1], rtol=1e-9)
    assert same_directions(result.eigenvectors, vectors[:, ::-1])
    # In w+ the same components, in every slot at once.
    plus = ganspace(
        load_generator(f"stylegan2:{checkpoint}", space="w+", psi=0.7), samples=500, sample_seed=1
    )
    tiled = np.tile(vectors[:, ::-1], (6, 1)) / np.sqrt(6)
    assert plus.eigenvectors.shape == (6 * STYLE_DIM, STYLE_DIM)
    assert same_directions(plus.eigenvectors, tiled, tol=1e-6)


def test_ganspace_in_z_regresses_w_components_onto_z(checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}")
    result = ganspace(generator, samples=300, sample_seed=2, top_k=3)
    assert result.eigenvectors.shape == (STYLE_DIM, 3)
    assert np.allclose(np.linalg.norm(result.eigenvectors, axis=0), 1.0)
    with pytest.raises(InvalidOptionError, match="unknown layer 'nope'"):
        ganspace(generator, samples=10, layer="nope")


# --------------------------------------------------------------------------- layer metrics


def test_a_layer_metric_on_the_output_image_is_the_mse_metric_times_n(checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}", space="w")
    code = generator.sample(1, seed=3)[0]
    last = generator.layer_names()[-1]
    assert last == "synthesis.to_rgbs.1"
    layer = compute_metric(generator, load_distance(f"layer:{last}"), code, dtype="float64")
    mse = compute_metric(generator, load_distance("mse"), code, dtype="float64")
    assert np.allclose(layer, mse * 3 * 16 * 16, rtol=1e-10)


@pytest.mark.parametrize("layer", ["w", "synthesis.convs.1"])
def test_layer_metrics_agree_with_bp_in_float64(checkpoint: Path, layer: str) -> None:
    generator = load_generator(f"stylegan2:{checkpoint}")
    distance = load_distance(f"layer:{layer}")
    code = generator.sample(1, seed=6)[0]
    reference = compute_metric(generator, distance, code, method="bp", dtype="float64")
    for method in ("jacobian", "hvp"):
        metric = compute_metric(generator, distance, code, method=method, dtype="float64")
        assert np.linalg.norm(metric - reference) <= 1e-9 * np.linalg.norm(reference)


def test_dcgan_layers_are_listed_and_an_unknown_layer_is_refused(tiny_dcgan: Generator) -> None:
    names = tiny_dcgan.layer_names()
    assert names[0] == "net.0" and names[-1] == f"net.{len(names) - 1}"
    code = tiny_dcgan.sample(1, seed=0)[0]
    with pytest.raises(InvalidOptionError, match="unknown layer 'net.99'; this model's layers"):
        compute_metric(tiny_dcgan, load_distance("layer:net.99"), code)


def test_the_listed_dcgan_faces_layers_are_the_loaded_ones(dcgan: Generator) -> None:
    from services.geometry import list_models

    (info,) = [m for m in list_models() if m.name == "dcgan-faces"]
    assert list(info.layers) == dcgan.layer_names()
