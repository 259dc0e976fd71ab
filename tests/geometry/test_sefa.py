"""SeFa: closed-form directions from weights."""

from __future__ import annotations

import numpy as np
import pytest

from services.geometry import InvalidOptionError, compute_spectrum, load_distance, sefa

from .conftest import python_generator
from .factories import linear_weights


def test_sefa_on_a_linear_generator_equals_the_hessian_eigenvectors(linear) -> None:
    directions = sefa(linear)
    hessian = compute_spectrum(linear, load_distance("mse"), np.zeros(6), dtype="float64")
    cosines = np.abs(np.sum(directions.eigenvectors * hessian.eigenvectors, axis=0))
    assert np.allclose(cosines, 1, atol=1e-10)
    weight, _ = linear_weights()
    # H = 2 WᵀW / N, so the eigenvalues differ by exactly that factor.
    assert np.allclose(
        hessian.eigenvalues, 2 * directions.eigenvalues / weight.shape[0], rtol=1e-10
    )
    assert directions.diagnostics["source"].startswith("first linear layer")


def test_sefa_dcgan_uses_the_unfolded_first_layer(dcgan) -> None:
    import torch

    from services.geometry.models.dcgan import dcgan_faces_weights_path

    weight = torch.load(dcgan_faces_weights_path(), map_location="cpu")["netG_state_dict"][
        "main.0.weight"
    ]
    matrix = weight.double().reshape(100, -1).numpy()
    result = sefa(dcgan, top_k=10)
    assert np.allclose(
        result.eigenvalues, np.linalg.eigvalsh(matrix @ matrix.T)[::-1][:10], rtol=1e-10
    )
    assert result.eigenvectors.shape == (100, 10)


def test_sefa_style_like_normalises_rows_of_chosen_layers() -> None:
    generator = python_generator("style_like")
    result = sefa(generator, layers=[0, 2])
    rows = [generator.module.styles[i].weight.detach().double().numpy() for i in (0, 2)]
    a = np.concatenate([r / np.linalg.norm(r, axis=1, keepdims=True) for r in rows])
    assert np.allclose(result.eigenvalues, np.linalg.eigvalsh(a.T @ a)[::-1], rtol=1e-10)
    assert result.diagnostics["normalize_rows"] is True


def test_sefa_needs_a_latent_layer() -> None:
    generator = python_generator("nan_far_from_origin")  # has nn.Linear(4, ...): found
    assert sefa(generator).eigenvectors.shape == (4, 4)
    with pytest.raises(InvalidOptionError, match="sefa_weights"):
        sefa(generator, layers=[1])
    with pytest.raises(InvalidOptionError, match="top_k"):
        sefa(generator, top_k=4)
