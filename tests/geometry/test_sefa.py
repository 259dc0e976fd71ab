"""SeFa: closed-form directions from weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.geometry import (
    InvalidOptionError,
    compute_spectrum,
    load_distance,
    load_generator,
    sefa,
)
from services.geometry.models.generator import Generator
from services.geometry.sefa import DEFAULT_SEFA_PRESET
from tests.support.checkpoints import write_random_checkpoint

from .conftest import python_generator
from .factories import linear_weights


def test_sefa_on_a_linear_generator_equals_the_hessian_eigenvectors(linear: Generator) -> None:
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


def test_sefa_dcgan_uses_the_unfolded_first_layer(dcgan: Generator) -> None:
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
    styles: Any = generator.module.styles
    rows = [styles[i].weight.detach().double().numpy() for i in (0, 2)]
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


# --------------------------------------------------------------------------- published presets


STYLE: dict[str, Any] = {"size": 16, "style_dim": 6, "n_mlp": 2, "channels": {4: 5, 8: 4, 16: 3}}


@pytest.fixture(scope="module")
def style_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = write_random_checkpoint(
        tmp_path_factory.mktemp("sefa") / "style.pt", **STYLE, seed=9
    )
    return path


def _genforce_factorize_all(
    state: dict[str, torch.Tensor], num_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """genforce/sefa factorize_weight(G, 'all') on a StyleGAN2, written out slowly: layers
    0..num_layers−1, the last of them the output (ToRGB) layer num_layers−1 // 2, each style
    weight transposed to (d, out), stacked along axis 1, columns unit-normalised, eig(W Wᵀ).
    In rosinality's names, layer0 = conv1, layer i = convs.(i−1), the last output = the last
    to_rgbs. (genforce works in float32; float64 here, to compare at round-off.)"""
    weights = []
    for idx in range(num_layers):
        if idx == num_layers - 1:
            name = f"to_rgbs.{(idx // 2) - 1}"  # genforce's output{idx // 2}; to_rgb1 is output0
        else:
            name = "conv1" if idx == 0 else f"convs.{idx - 1}"
        weights.append(state[f"{name}.conv.modulation.weight"].double().numpy().T)
    weight = np.concatenate(weights, axis=1)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.dot(weight.T))
    order = np.argsort(values.real)[::-1]
    return values.real[order], vectors.real[:, order]


def _rosinality_closed_form(state: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """rosinality's closed_form_factorization.py: every modulation weight but the to_rgbs.*,
    concatenated raw, V of torch.svd; eigenvalues of WᵀW are the squared singular values."""
    modulate = {
        k: v for k, v in state.items() if "modulation" in k and "to_rgbs" not in k and "weight" in k
    }
    w = torch.cat(list(modulate.values()), 0).double()
    _, singular, v = torch.svd(w)
    return (singular**2).numpy(), v.numpy()


# The module keeps float32 weights with the equal-lr scale multiplied in (one float32 rounding):
# the references read the stored float32 weights exactly, so they agree to float32's precision.
FLOAT32_RTOL = 1e-6


def _same_directions(a: np.ndarray, b: np.ndarray) -> None:
    cosines = np.abs(np.sum(a * b / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0), axis=0))
    assert np.allclose(cosines, 1, atol=FLOAT32_RTOL)


def test_default_sefa_is_genforce_all_and_says_so(style_checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{style_checkpoint}", space="w")
    state = torch.load(style_checkpoint)["g_ema"]
    num_layers = len([k for k in state if k.startswith("noises.")]) + 1  # genforce's num_layers
    values, vectors = _genforce_factorize_all(state, num_layers)
    result = sefa(generator)
    assert result.diagnostics["preset"] == "genforce-all" == DEFAULT_SEFA_PRESET
    assert result.diagnostics["layer_names"] == [
        "conv1",
        "convs.0",
        "convs.1",
        "convs.2",
        "convs.3",
        "to_rgbs.1",
    ]
    assert np.allclose(result.eigenvalues, values, rtol=FLOAT32_RTOL)
    _same_directions(result.eigenvectors, vectors)
    assert result.diagnostics["published_scale_factor"] == 1.0  # normalised rows: no scale


def test_rosinality_preset_is_closed_form_factorization_with_the_scale_stated(
    style_checkpoint: Path,
) -> None:
    generator = load_generator(f"stylegan2:{style_checkpoint}", space="w")
    values, vectors = _rosinality_closed_form(torch.load(style_checkpoint)["g_ema"])
    result = sefa(generator, preset="rosinality-cff")
    assert result.diagnostics["layer_names"] == [
        "conv1",
        "to_rgb1",
        "convs.0",
        "convs.1",
        "convs.2",
        "convs.3",
    ]
    assert result.diagnostics["normalize_rows"] is False
    # The service keeps the equal-lr scale 1/√6 in A: its eigenvalues are 1/6 of rosinality's.
    assert result.diagnostics["published_scale_factor"] == STYLE["style_dim"]
    assert np.allclose(result.eigenvalues * STYLE["style_dim"], values, rtol=FLOAT32_RTOL)
    assert np.allclose(result.diagnostics["eigenvalues_published_scale"], values, rtol=FLOAT32_RTOL)
    _same_directions(result.eigenvectors, vectors)


def test_layers_are_chosen_by_name(style_checkpoint: Path) -> None:
    generator = load_generator(f"stylegan2:{style_checkpoint}", space="w")
    by_name = sefa(generator, layers=["convs.1", "to_rgb1"])
    assert by_name.diagnostics["layer_names"] == ["convs.1", "to_rgb1"]
    assert by_name.diagnostics["preset"] is None
    with pytest.raises(InvalidOptionError, match="SeFa layers are conv1, to_rgb1"):
        sefa(generator, layers=["convs.9"])
    with pytest.raises(InvalidOptionError, match="preset or layers"):
        sefa(generator, preset="genforce-all", layers=["conv1"])
    with pytest.raises(InvalidOptionError, match="genforce-all, rosinality-cff"):
        sefa(generator, preset="all")


def test_dcgan_folds_the_first_batchnorm_only_when_asked(dcgan: Generator) -> None:
    from services.geometry.models.dcgan import dcgan_faces_weights_path

    state = torch.load(dcgan_faces_weights_path(), map_location="cpu")["netG_state_dict"]
    weight = state["main.0.weight"].double()  # (nz, C, 4, 4)
    scale = state["main.1.weight"].double() / torch.sqrt(
        state["main.1.running_var"].double() + 1e-5
    )
    folded = (weight * scale[None, :, None, None]).reshape(100, -1).numpy()
    result = sefa(dcgan, top_k=10, fold_batchnorm=True)
    expected = np.linalg.eigvalsh(folded @ folded.T)[::-1][:10]
    # The network runs in float32: its folded weight is the float32 rounding of the product.
    assert np.allclose(result.eigenvalues, expected, rtol=1e-5)
    assert result.diagnostics["fold_batchnorm"] is True
    unfolded = sefa(dcgan, top_k=10, fold_batchnorm=False)
    assert unfolded.diagnostics["fold_batchnorm"] is False
    cosines = np.abs(np.sum(result.eigenvectors * unfolded.eigenvectors, axis=0))
    assert cosines.min() < 0.999  # folding moves the directions
    with pytest.raises(InvalidOptionError, match="fold"):
        sefa(python_generator("style_like"), fold_batchnorm=True)
