"""The optimisation core against closed forms: a linear generator with squared error is an
exact quadratic, loss(z) = ½ (z − z*)ᵀ H (z − z*) with H = 2 WᵀW / N, so its eigenbasis,
the floor of a top-k restriction and Adam's first step are known exactly."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from services.geometry import Distance, InvalidLatentError, InvalidOptionError, load_distance
from services.geometry.models.generator import Generator
from services.geometry.optimise import (
    OptimiserSettings,
    bootstrap_median,
    check_basis,
    check_settings,
    invert,
    start_codes,
    steps_to_threshold,
)

D = 6
SHAPE = (1, 4, 5)  # N = 20 pixels


def _linear_generator(singular: np.ndarray, seed: int = 3) -> tuple[Generator, np.ndarray]:
    """G(z) = W z, W = L diag(s) Rᵀ with random orthonormal L, R; returns (G, H)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(SHAPE))
    left, _ = np.linalg.qr(rng.standard_normal((n, D)))
    right, _ = np.linalg.qr(rng.standard_normal((D, D)))
    weight = (left * singular) @ right.T
    layer = nn.Linear(D, n, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    for parameter in layer.parameters():
        parameter.requires_grad_(False)
    module = nn.Sequential(layer, nn.Unflatten(1, SHAPE))
    generator = Generator(
        name="linear",
        family="test",
        latent_dim=D,
        module=module,
        facts={"output_shape": list(SHAPE)},
    )
    return generator, 2 * weight.T @ weight / n


def _eigenbasis(metric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(metric)
    return values[::-1], vectors[:, ::-1]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These problems are tiny: a second intra-op thread only adds contention (on a shared
    2-core machine it made them 10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mse() -> object:
    return load_distance("mse").to("cpu", torch.float64)


def _problem(generator: Generator, n_targets: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth = generator.sample(n_targets, 11)
    targets = generator.images(truth).numpy()
    starts = np.stack([start_codes(generator, 1, 0, i) for i in range(n_targets)])
    return truth, targets, starts


def test_the_loss_is_the_closed_form_quadratic(mse: Distance) -> None:
    generator, metric = _linear_generator(np.linspace(3.0, 0.5, D))
    truth, targets, starts = _problem(generator)
    results = invert(generator, mse, targets, starts, OptimiserSettings("adam", steps=1))
    for i, result in enumerate(results):
        delta = starts[i, 0] - truth[i]
        np.testing.assert_allclose(result.losses[0, 0], 0.5 * delta @ metric @ delta, rtol=1e-10)


def test_adams_first_step_is_the_learning_rate_times_the_gradients_sign(mse: Distance) -> None:
    generator, metric = _linear_generator(np.linspace(3.0, 0.5, D))
    truth, targets, starts = _problem(generator)
    lr = 0.01
    results = invert(
        generator, mse, targets, starts, OptimiserSettings("adam", steps=1, learning_rate=lr)
    )
    for i, result in enumerate(results):
        gradient = metric @ (starts[i, 0] - truth[i])
        expected = starts[i, 0] - lr * np.sign(gradient)  # m̂ / √v̂ = g / |g| at step 1
        np.testing.assert_allclose(result.final_code, expected, atol=1e-7)


def test_the_eigenbasis_of_an_axis_aligned_problem_is_raw_adam(mse: Distance) -> None:
    """Adam is equivariant to permuting and flipping coordinates: in a signed permutation
    basis the trajectory is raw Adam's, step for step."""
    generator, _ = _linear_generator(np.linspace(3.0, 0.5, D))
    _, targets, starts = _problem(generator)
    basis = np.eye(D)[:, [3, 0, 5, 1, 4, 2]] * np.array([1, -1, 1, -1, -1, 1])
    raw = invert(generator, mse, targets, starts, OptimiserSettings("adam", steps=25))
    rotated = invert(
        generator,
        mse,
        targets,
        starts,
        OptimiserSettings("adam-eigenbasis", steps=25),
        basis=basis,
    )
    for a, b in zip(raw, rotated, strict=True):
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(a.final_code, b.final_code, atol=1e-10)


def test_the_eigenbasis_helps_adam_on_an_ill_conditioned_rotated_quadratic(mse: Distance) -> None:
    """Condition number 10⁴ on rotated axes: Adam's per-coordinate scaling fits the eigen-axes
    (where the problem separates), not the raw ones."""
    generator, metric = _linear_generator(np.geomspace(10.0, 0.1, D))
    _, targets, starts = _problem(generator, 4)
    _, basis = _eigenbasis(metric)
    steps, learning_rate = 400, 0.05
    raw = invert(
        generator,
        mse,
        targets,
        starts,
        OptimiserSettings("adam", steps=steps, learning_rate=learning_rate),
    )
    eigen = invert(
        generator,
        mse,
        targets,
        starts,
        OptimiserSettings("adam-eigenbasis", steps=steps, learning_rate=learning_rate),
        basis=basis,
    )
    threshold = 1e-4 * np.median([r.losses[0, 0] for r in raw])
    raw_steps = steps_to_threshold(np.stack([r.curve for r in raw]), threshold)
    eigen_steps = steps_to_threshold(np.stack([r.curve for r in eigen]), threshold)
    assert np.isfinite(eigen_steps).all()
    assert np.median(eigen_steps) < 0.5 * np.median(raw_steps)


def test_topk_converges_to_the_closed_form_floor(mse: Distance) -> None:
    """Restricted to z_start + span(U_k), the minimum is ½ Σ_{i>k} λ_i ((Uᵀ(z_start − z*))_i)²
    (the quadratic separates in the eigenbasis), reached at the target's top-k coordinates."""
    generator, metric = _linear_generator(np.linspace(2.0, 0.5, D))
    truth, targets, starts = _problem(generator)
    values, basis = _eigenbasis(metric)
    k = 3
    results = invert(
        generator,
        mse,
        targets,
        starts,
        OptimiserSettings("adam-topk", steps=1500, learning_rate=0.02, k=k),
        basis=basis,
    )
    for i, result in enumerate(results):
        residual = basis.T @ (starts[i, 0] - truth[i])
        floor = 0.5 * np.sum(values[k:] * residual[k:] ** 2)
        np.testing.assert_allclose(result.final_loss, floor, rtol=1e-4)
        np.testing.assert_allclose(
            basis[:, :k].T @ result.final_code, basis[:, :k].T @ truth[i], atol=1e-3
        )
        # the coordinates outside the top-k eigenspace never moved
        np.testing.assert_allclose(
            basis[:, k:].T @ result.final_code, basis[:, k:].T @ starts[i, 0], atol=1e-12
        )


def test_cma_is_seeded_and_finds_the_optimum_in_the_topk_eigenspace(mse: Distance) -> None:
    generator, metric = _linear_generator(np.linspace(2.0, 0.5, D))
    truth, targets, starts = _problem(generator, 2)
    values, basis = _eigenbasis(metric)
    settings = OptimiserSettings("cma-topk", steps=60, k=2, population=8, sigma=0.5)
    first = invert(generator, mse, targets, starts, settings, basis=basis, seed=4)
    again = invert(generator, mse, targets, starts, settings, basis=basis, seed=4)
    for i, (a, b) in enumerate(zip(first, again, strict=True)):
        np.testing.assert_array_equal(a.losses, b.losses)
        residual = basis.T @ (starts[i, 0] - truth[i])
        floor = 0.5 * np.sum(values[2:] * residual[2:] ** 2)
        # The loss is summed pixel by pixel, the floor over eigen-coordinates: equal up to
        # rounding, so the lower bound allows a few ulps.
        assert floor * (1 - 1e-12) <= a.final_loss <= floor * 1.001 + 1e-9
        assert np.all(np.diff(a.losses[0]) <= 0)  # best so far never rises
        assert a.evaluations[-1] == 60 * 8


def test_restarts_keep_the_best_and_each_restart_runs_its_own_adam(mse: Distance) -> None:
    generator, _ = _linear_generator(np.linspace(3.0, 0.5, D))
    truth, targets, _ = _problem(generator, 2)
    starts = np.stack([start_codes(generator, 3, 0, i) for i in range(2)])
    together = invert(
        generator, mse, targets, starts, OptimiserSettings("adam", steps=10, restarts=3)
    )
    for i, result in enumerate(together):
        for r in range(3):
            alone = invert(
                generator,
                mse,
                targets[i : i + 1],
                starts[i : i + 1, r : r + 1],
                OptimiserSettings("adam", steps=10),
            )[0]
            np.testing.assert_allclose(result.losses[r], alone.losses[0], rtol=1e-10)
        assert result.best_restart == int(np.argmin(result.losses[:, -1]))
        assert result.final_loss == result.losses[result.best_restart, -1] == result.curve[-1]


@pytest.mark.parametrize(
    ("settings", "has_basis", "message"),
    [
        (OptimiserSettings("adam-topk", steps=5, k=D), True, "k < d"),
        (OptimiserSettings("adam-topk", steps=5, k=None), True, "needs k"),
        (OptimiserSettings("adam-eigenbasis", steps=5), False, "needs a basis"),
        (OptimiserSettings("adam", steps=5), True, "takes no basis"),
        (OptimiserSettings("adam", steps=5, k=2), False, "k applies only"),
        (OptimiserSettings("sgd", steps=5), False, "unknown optimiser"),
        (OptimiserSettings("cma", steps=5, population=1), False, "at least 2"),
    ],
)
def test_bad_settings_are_refused(
    settings: OptimiserSettings, has_basis: bool, message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        check_settings(settings, D, has_basis)


def test_a_basis_must_be_orthonormal_and_of_the_latent_dimension() -> None:
    with pytest.raises(InvalidOptionError, match="shape"):
        check_basis(np.eye(D + 1), D)
    with pytest.raises(InvalidOptionError, match="orthonormal"):
        check_basis(2 * np.eye(D), D)
    np.testing.assert_array_equal(check_basis(np.eye(D)[:, :3], D), np.eye(D)[:, :3])


def test_targets_of_the_wrong_shape_are_refused(mse: Distance) -> None:
    generator, _ = _linear_generator(np.linspace(3.0, 0.5, D))
    with pytest.raises(InvalidLatentError, match="shape"):
        invert(
            generator,
            mse,
            np.zeros((1, 1, 5, 5)),
            np.zeros((1, 1, D)),
            OptimiserSettings("adam", steps=1),
        )


def test_steps_to_threshold_and_the_bootstrap_median() -> None:
    curves = np.array([[1.0, 0.5, 0.1, 0.05], [1.0, 0.9, 0.8, 0.7], [1.0, 0.1, 0.01, 0.001]])
    np.testing.assert_array_equal(steps_to_threshold(curves, 0.1), [2, np.inf, 1])
    constant = bootstrap_median(np.full(9, 3.0), seed=1)
    assert constant["median"] == constant["low"] == constant["high"] == 3.0
    spread = bootstrap_median(np.arange(101.0), seed=1)
    assert spread["median"] == 50 and spread["low"] < 50 < spread["high"]
    assert bootstrap_median(np.arange(101.0), seed=1) == spread  # seeded
    never = bootstrap_median(np.array([np.inf, np.inf, 3.0]), seed=0)
    assert never["median"] == np.inf


def test_lpips_inversion_runs_through_the_same_code(
    tiny_dcgan: Generator, lpips_random: Distance
) -> None:
    """LPIPS (random backbone: no weights here) as the objective: a DCGAN target generated
    from a known code, Adam from another start lowers the distance."""
    truth = tiny_dcgan.sample(1, 5)
    target = tiny_dcgan.images(truth).numpy()
    starts = start_codes(tiny_dcgan, 1, 0, 0)[None]
    result = invert(tiny_dcgan, lpips_random, target, starts, OptimiserSettings("adam", steps=8))[0]
    assert np.isfinite(result.losses).all()
    assert result.final_loss < result.losses[0, 0]
    assert result.final_image.shape == target.shape[1:]
