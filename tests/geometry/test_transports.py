"""The exact moves between a StyleGAN2's spaces, checked against autograd Hessians in float64
on a small random checkpoint: the w+ metric folded onto w, the w metric pulled back to z."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.geometry import InvalidOptionError, compute_metric, load_distance, load_generator
from services.geometry.models.generator import Generator
from services.geometry.transports import (
    fold_metric,
    fold_spectrum_metric,
    mapping_jacobian,
    match_mapped_codes,
    pull_back_metric,
    pulled_back_average,
    push_forward_directions,
    repeat_directions,
    style_module,
)
from tests.support.checkpoints import write_random_checkpoint

SMALL: dict[str, Any] = {"size": 8, "style_dim": 5, "n_mlp": 2, "channels": {4: 4, 8: 3}}
TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = write_random_checkpoint(
        tmp_path_factory.mktemp("transports") / "small.pt", **SMALL, seed=11
    )
    return path


def _model(checkpoint: Path, space: str, psi: float = 0.7) -> Generator:
    return load_generator(f"stylegan2:{checkpoint}", space=space, psi=psi)


def _autograd_mse_hessian(generator: Generator, code: np.ndarray) -> np.ndarray:
    """∂²/∂c² mean((G(c) − G(c0))²) at c0, by double backward through a float64 copy."""
    module = copy.deepcopy(generator.module).double()
    c0 = torch.from_numpy(np.asarray(code, dtype=np.float64))
    with torch.no_grad():
        reference = module(c0[None])

    def distance(c: torch.Tensor) -> torch.Tensor:
        difference: torch.Tensor = module(c[None]) - reference
        return (difference**2).mean()

    hessian_of: Any = torch.autograd.functional.hessian  # untyped in torch
    hessian = hessian_of(distance, c0.clone())
    return np.asarray(hessian.numpy(), dtype=np.float64)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_wplus_metric_folded_onto_w_is_the_w_metric(checkpoint: Path) -> None:
    w_model, wplus_model = _model(checkpoint, "w"), _model(checkpoint, "w+")
    num_ws = wplus_model.latent_dim // w_model.latent_dim
    w0 = w_model.sample(1, seed=5)[0]
    h_wplus = compute_metric(
        wplus_model, load_distance("mse"), np.tile(w0, num_ws), dtype="float64"
    )
    reference = _autograd_mse_hessian(w_model, w0)
    assert np.linalg.norm(reference) > 1e-6
    assert _relative(fold_metric(h_wplus, num_ws), reference) <= TOLERANCE
    # The same fold from the eigenpairs, without the (L·s)² matrix.
    values, vectors = np.linalg.eigh(h_wplus)
    assert _relative(fold_spectrum_metric(values, vectors, num_ws), reference) <= TOLERANCE


def test_repeated_w_direction_is_the_w_direction_in_wplus(checkpoint: Path) -> None:
    w_model, wplus_model = _model(checkpoint, "w"), _model(checkpoint, "w+")
    num_ws = wplus_model.latent_dim // w_model.latent_dim
    w0 = w_model.sample(1, seed=6)[0]
    h_w = _autograd_mse_hessian(w_model, w0)
    h_wplus = _autograd_mse_hessian(wplus_model, np.tile(w0, num_ws))
    v = np.linalg.eigh(h_w)[1][:, -2:]
    lifted = repeat_directions(v, num_ws)
    assert np.allclose(np.linalg.norm(lifted, axis=0), 1.0)
    # vᵀ H_w v = L · ((v,…,v)/√L)ᵀ H_w+ ((v,…,v)/√L): the same curvature along the same move.
    along_w = np.einsum("dk,de,ek->k", v, h_w, v)
    along_wplus = num_ws * np.einsum("dk,de,ek->k", lifted, h_wplus, lifted)
    assert np.allclose(along_wplus, along_w, rtol=TOLERANCE, atol=0)


def test_w_metric_pulled_back_through_the_truncated_mapping_is_the_z_metric(
    checkpoint: Path,
) -> None:
    z_model, w_model = _model(checkpoint, "z"), _model(checkpoint, "w")
    z0 = z_model.sample(1, seed=7)[0]
    w0 = w_model.sample(1, seed=7)[0]  # the same seed: w0 = ψ-truncated mapping(z0)
    jacobian = mapping_jacobian(style_module(z_model.module), z0)
    h_w = compute_metric(w_model, load_distance("mse"), w0, dtype="float64")
    reference = _autograd_mse_hessian(z_model, z0)
    assert np.linalg.norm(reference) > 1e-6
    assert _relative(pull_back_metric(h_w, jacobian), reference) <= TOLERANCE
    # Truncation is in J: ψ = 0.7 scales it, so an untruncated J would miss by 1 − ψ².
    untruncated = mapping_jacobian(style_module(_model(checkpoint, "z", psi=1.0).module), z0)
    assert np.allclose(jacobian, 0.7 * untruncated, rtol=1e-13, atol=0)


def test_z_direction_pushed_forward_moves_w_the_same_way(checkpoint: Path) -> None:
    z_model = _model(checkpoint, "z")
    z0 = z_model.sample(1, seed=8)[0]
    jacobian = mapping_jacobian(style_module(z_model.module), z0)
    v = np.eye(z_model.latent_dim)[:, :2]
    pushed = push_forward_directions(v, jacobian)
    # Finite differences of the mapping itself agree with J v to first order.
    module = style_module(copy.deepcopy(z_model.module).double())
    step = 1e-6

    def w(z: np.ndarray) -> np.ndarray:
        return np.asarray(module.truncate(module.mapping(torch.from_numpy(z)[None]))[0].numpy())

    with torch.no_grad():
        moved = np.stack([(w(z0 + step * c) - w(z0 - step * c)) / (2 * step) for c in v.T], 1)
    assert np.allclose(pushed, moved / np.linalg.norm(moved, axis=0), atol=1e-7)


def test_moves_refuse_shapes_that_do_not_fit() -> None:
    with pytest.raises(InvalidOptionError, match="layer slots"):
        fold_metric(np.eye(10), 3)
    with pytest.raises(InvalidOptionError, match="Jacobian"):
        pull_back_metric(np.eye(3), np.eye(4))


def test_w_codes_are_matched_to_their_z_draws_and_pulled_back_on_average(
    checkpoint: Path,
) -> None:
    z_model, w_model = _model(checkpoint, "z"), _model(checkpoint, "w")
    z_codes, w_codes = z_model.sample(3, seed=9), w_model.sample(3, seed=9)
    module = style_module(z_model.module)
    index_z, index_w = match_mapped_codes(module, z_codes, w_codes[::-1])
    assert index_z.tolist() == [0, 1, 2] and index_w.tolist() == [2, 1, 0]
    none_z, _ = match_mapped_codes(module, z_codes, w_codes + 1e-3)
    assert none_z.size == 0
    mse = load_distance("mse")
    metrics = [compute_metric(w_model, mse, w, dtype="float64") for w in w_codes]
    eigen = [np.linalg.eigh(h) for h in metrics]
    average = pulled_back_average(
        module, z_codes, np.stack([e[0] for e in eigen]), np.stack([e[1] for e in eigen])
    )
    reference = np.mean([_autograd_mse_hessian(z_model, z) for z in z_codes], axis=0)
    assert _relative(average, reference) <= TOLERANCE
