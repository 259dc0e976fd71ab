"""Optimisation in latent space that uses the stored geometry: inverting target images.

The paper's applied claim (Wang & Ponce, ICLR 2021, §5): Adam's per-coordinate step sizes
suit the eigen-axes of the metric H̄, so running Adam in the eigenbasis of the average metric
(or only in its top-k eigenspace) should invert images in fewer steps than in raw
coordinates; the same basis helps a gradient-free search (CMA-ES).

Every optimiser works on coordinates y with z = origin + B y:

    adam             B = I,      origin = 0,      y0 = z_start        (raw coordinates)
    adam-eigenbasis  B = U,      origin = 0,      y0 = Uᵀ z_start     (a rotation: same set)
    adam-topk        B = U[:, :k], origin = z_start, y0 = 0           (the rest stays at start)
    cma              B = I,      origin = 0,      y0 = z_start
    cma-topk         B = U[:, :k], origin = z_start, y0 = 0

Pure computation: no I/O. Restarts of one target run as one batch (Adam is elementwise, so
the summed loss of a batch gives each restart exactly its own Adam trajectory).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .distances import Distance
from .errors import InvalidLatentError, InvalidOptionError, NonFiniteOutputError
from .models.generator import Generator
from .statistics import bootstrap

OPTIMISERS = ("adam", "adam-eigenbasis", "adam-topk", "cma", "cma-topk")
BASIS_OPTIMISERS = frozenset({"adam-eigenbasis", "adam-topk", "cma-topk"})
TOPK_OPTIMISERS = frozenset({"adam-topk", "cma-topk"})
GRADIENT_FREE = frozenset({"cma", "cma-topk"})
ORTHONORMAL_TOLERANCE = 1e-4  # float32-stored eigenvectors are orthonormal to ~1e-6


@dataclass(frozen=True)
class OptimiserSettings:
    """How to optimise one target. `steps`: Adam steps, or CMA-ES generations."""

    optimiser: str
    steps: int
    learning_rate: float = 0.05  # adam: step size in the optimised coordinates
    restarts: int = 1
    k: int | None = None  # *-topk: dimension of the eigenspace searched
    population: int | None = None  # cma: candidates per generation; None = 4 + ⌊3 ln n⌋
    sigma: float = 0.5  # cma: initial step size in the optimised coordinates


@dataclass
class InversionResult:
    """One target's optimisation.

    losses[r, t]: restart r's distance at step t (t = 0 is the start; for CMA-ES the best
    candidate so far after t generations). evaluations[t]: distance evaluations per restart
    spent by step t (a gradient step counts one). The final code is the best restart's last
    iterate (CMA-ES: its best candidate)."""

    losses: np.ndarray  # (restarts, steps + 1) float64
    evaluations: np.ndarray  # (steps + 1,) int64
    final_code: np.ndarray  # (d,) float64
    final_loss: float
    final_image: np.ndarray  # (C, H, W) float32
    best_restart: int
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> np.ndarray:
        """The loss per step over restarts run side by side: the best restart so far."""
        return np.asarray(self.losses.min(axis=0))


def check_settings(settings: OptimiserSettings, latent_dim: int, has_basis: bool) -> None:
    """InvalidOptionError for settings that cannot run (before any work is done)."""
    if settings.optimiser not in OPTIMISERS:
        raise InvalidOptionError(
            f"unknown optimiser {settings.optimiser!r}; choose one of {', '.join(OPTIMISERS)}"
        )
    if settings.steps < 1 or settings.restarts < 1:
        raise InvalidOptionError("steps and restarts must be at least 1")
    if not (math.isfinite(settings.learning_rate) and settings.learning_rate > 0):
        raise InvalidOptionError("learning_rate must be a finite number > 0")
    if not (math.isfinite(settings.sigma) and settings.sigma > 0):
        raise InvalidOptionError("sigma must be a finite number > 0")
    needs_basis = settings.optimiser in BASIS_OPTIMISERS
    if needs_basis and not has_basis:
        raise InvalidOptionError(f"optimiser {settings.optimiser!r} needs a basis")
    if not needs_basis and has_basis:
        raise InvalidOptionError(f"optimiser {settings.optimiser!r} takes no basis")
    if settings.optimiser in TOPK_OPTIMISERS:
        if settings.k is None:
            raise InvalidOptionError(f"optimiser {settings.optimiser!r} needs k")
        if not 1 <= settings.k < latent_dim:
            raise InvalidOptionError(
                f"k={settings.k} must be between 1 and {latent_dim - 1} (k < d = {latent_dim}); "
                f"use adam-eigenbasis for the whole space"
            )
    elif settings.k is not None:
        raise InvalidOptionError(f"k applies only to {', '.join(sorted(TOPK_OPTIMISERS))}")
    if settings.population is not None:
        if settings.optimiser not in GRADIENT_FREE:
            raise InvalidOptionError("population applies only to cma and cma-topk")
        if settings.population < 2:
            raise InvalidOptionError("population must be at least 2")


def check_basis(basis: np.ndarray, latent_dim: int) -> np.ndarray:
    """A (d, m) matrix with orthonormal columns, float64; InvalidOptionError otherwise."""
    array = np.asarray(basis, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != latent_dim or not 1 <= array.shape[1] <= latent_dim:
        raise InvalidOptionError(
            f"basis must have shape (d, m) with d = {latent_dim} and 1 <= m <= d; "
            f"got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InvalidOptionError("basis contains NaN or inf")
    gram_error = np.abs(array.T @ array - np.eye(array.shape[1])).max()
    if gram_error > ORTHONORMAL_TOLERANCE:
        raise InvalidOptionError(
            f"basis columns are not orthonormal (max |UᵀU - I| = {gram_error:.2e})"
        )
    return array


def start_codes(generator: Generator, restarts: int, seed: int, target_index: int) -> np.ndarray:
    """(restarts, d) starting codes drawn from the prior; the same for every optimiser given
    (seed, target), so optimisers are compared from the same starts."""
    derived = int(np.random.SeedSequence((seed, target_index)).generate_state(1)[0])
    return generator.sample(restarts, derived)


StepCallback = Callable[[int], None]


def invert(
    generator: Generator,
    distance: Distance,
    targets: np.ndarray,
    starts: np.ndarray,
    settings: OptimiserSettings,
    *,
    basis: np.ndarray | None = None,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> list[InversionResult]:
    """Minimise D(target_i, G(z)) over z for each target, from each of its starts; see the
    module doc. All targets and restarts run as one batch.

    targets: (n, C, H, W) in the generator's output range. starts: (n, restarts, d).
    basis: (d, m) orthonormal columns in rank order (descending eigenvalue), needed by the
    eigenbasis optimisers. on_step(step) is called after every step (a place to stop: an
    exception raised there propagates)."""
    d = generator.latent_dim
    check_settings(settings, d, basis is not None)
    target_tensor = _target_tensor(generator, targets)
    n = target_tensor.shape[0]
    starts = np.asarray(starts, dtype=np.float64)
    if starts.shape != (n, settings.restarts, d):
        raise InvalidOptionError(
            f"need start codes of shape ({n}, {settings.restarts}, {d}), got {starts.shape}"
        )
    flat_starts = generator.validate_codes(starts.reshape(n * settings.restarts, d))
    checked_basis = None if basis is None else check_basis(basis, d)
    origin, matrix, y0 = _coordinates(settings, flat_starts, checked_basis)
    rows = np.repeat(np.arange(n), settings.restarts)  # row -> its target
    problem = _Problem(generator, distance, target_tensor, rows, origin, matrix)
    began = time.perf_counter()
    if settings.optimiser in GRADIENT_FREE:
        losses, evaluations, last_y = _run_cma(problem, y0, settings, seed, on_step)
    else:
        losses, evaluations, last_y = _run_adam(problem, y0, settings, on_step)
    wall = time.perf_counter() - began
    codes = problem.codes(last_y)
    losses = losses.reshape(n, settings.restarts, -1)
    best = np.argmin(losses[:, :, -1], axis=1)
    final_codes = codes.reshape(n, settings.restarts, d)[np.arange(n), best]
    final_images = generator.images(final_codes).to("cpu", torch.float32).numpy()
    return [
        InversionResult(
            losses=losses[i],
            evaluations=evaluations,
            final_code=final_codes[i],
            final_loss=float(losses[i, best[i], -1]),
            final_image=final_images[i],
            best_restart=int(best[i]),
            diagnostics={
                "optimiser": settings.optimiser,
                "coordinates": int(matrix.shape[1]),
                "batch_wall_time_s": wall,
                "batch_targets": n,
                "evaluations": int(evaluations[-1]) * settings.restarts,
                "dtype": str(generator.dtype).removeprefix("torch."),
            },
        )
        for i in range(n)
    ]


def _target_tensor(generator: Generator, targets: np.ndarray) -> torch.Tensor:
    array = np.asarray(targets, dtype=np.float64)
    shape = generator.facts.get("output_shape")
    if array.ndim != 4 or (shape is not None and tuple(array.shape[1:]) != tuple(shape)):
        expected = "(n, C, H, W)" if shape is None else f"(n, {', '.join(map(str, shape))})"
        raise InvalidLatentError(
            f"targets have shape {tuple(array.shape)} but {generator.name} makes images of "
            f"shape {expected}"
        )
    if not np.isfinite(array).all():
        raise InvalidLatentError("targets contain NaN or inf")
    return torch.as_tensor(array, dtype=generator.dtype, device=generator.device)


def _coordinates(
    settings: OptimiserSettings, starts: np.ndarray, basis: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin (N, d), B (d, m), y0 (N, m)) with z = origin + y Bᵀ for each row."""
    rows, d = starts.shape
    if settings.optimiser in ("adam", "cma"):
        return np.zeros_like(starts), np.eye(d), starts.copy()
    assert basis is not None
    if settings.optimiser == "adam-eigenbasis":
        return np.zeros_like(starts), basis, starts @ basis
    assert settings.k is not None
    return starts.copy(), basis[:, : settings.k], np.zeros((rows, settings.k))


class _Problem:
    """The loss of coordinates y: D(target of the row, G(origin_row + y Bᵀ))."""

    def __init__(
        self, generator: Generator, distance: Distance, targets: torch.Tensor,
        rows: np.ndarray, origin: np.ndarray, matrix: np.ndarray,
    ) -> None:  # fmt: skip
        self.generator, self.distance, self.targets = generator, distance, targets
        self._to: dict[str, Any] = {"dtype": generator.dtype, "device": generator.device}
        self._origin_np, self._matrix_np = origin, matrix
        self.rows = torch.as_tensor(rows, device=generator.device)
        self.origin = torch.as_tensor(np.ascontiguousarray(origin), **self._to)
        self.matrix = torch.as_tensor(np.ascontiguousarray(matrix), **self._to)

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), **self._to)

    def codes(self, y: np.ndarray) -> np.ndarray:
        """Codes (N, d) float64 of coordinates y (N, m), one per row."""
        return np.asarray(self._origin_np + y @ self._matrix_np.T)

    def loss(self, y: torch.Tensor, repeat: int = 1) -> torch.Tensor:
        """Distances of y (N * repeat, m): `repeat` consecutive candidates per row."""
        origin, rows = self.origin, self.rows
        if repeat > 1:
            origin = origin.repeat_interleave(repeat, dim=0)
            rows = rows.repeat_interleave(repeat)
        images = self.generator.module(origin + y @ self.matrix.T)
        values = self.distance(self.targets[rows], images)
        if not torch.isfinite(values).all():
            raise NonFiniteOutputError(
                "the distance became NaN or inf during the optimisation; lower the learning "
                "rate (adam) or sigma (cma)"
            )
        return values


def _run_adam(
    problem: _Problem, y0: np.ndarray, settings: OptimiserSettings, on_step: StepCallback | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = problem.tensor(y0).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([y], lr=settings.learning_rate)
    losses = np.empty((y0.shape[0], settings.steps + 1))
    for step in range(settings.steps + 1):
        optimiser.zero_grad(set_to_none=True)
        values = problem.loss(y)
        losses[:, step] = values.detach().to("cpu", torch.float64).numpy()
        if step == settings.steps:
            break
        values.sum().backward()  # rows are independent: each gets its own gradient
        optimiser.step()
        if on_step is not None:
            on_step(step + 1)
    evaluations = np.arange(settings.steps + 1, dtype=np.int64)
    return losses, evaluations, y.detach().to("cpu", torch.float64).numpy()


def _run_cma(
    problem: _Problem, y0: np.ndarray, settings: OptimiserSettings, seed: int,
    on_step: StepCallback | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One CMA-ES per row, run in lockstep so that each generation is one batched forward."""
    import cma  # a kept CMA-ES implementation (numpy only); imported where it is used

    rows, m = y0.shape
    population = settings.population or 4 + int(3 * math.log(m))
    options = {
        "popsize": population, "verbose": -9,
        # Run the whole budget: the comparison is at equal evaluations, not until converged.
        "tolfun": 0, "tolx": 0, "tolfunhist": 0, "tolflatfitness": 10**9,
        "tolstagnation": 10**9, "maxiter": settings.steps + 1,
    }  # fmt: skip
    strategies = [
        cma.CMAEvolutionStrategy(y0[row], settings.sigma, {**options, "seed": seed * 100_003 + row + 1})
        for row in range(rows)
    ]
    losses = np.empty((rows, settings.steps + 1))
    with torch.no_grad():
        losses[:, 0] = problem.loss(problem.tensor(y0)).to("cpu", torch.float64).numpy()
    best_y = y0.copy()
    for generation in range(1, settings.steps + 1):
        candidates = np.stack([np.asarray(s.ask()) for s in strategies])  # (rows, P, m)
        with torch.no_grad():
            values = problem.loss(problem.tensor(candidates.reshape(-1, m)), repeat=population)
        scores = values.to("cpu", torch.float64).numpy().reshape(rows, population)
        for row, strategy in enumerate(strategies):
            strategy.tell(list(candidates[row]), scores[row].tolist())
        winners = np.argmin(scores, axis=1)
        improved = scores[np.arange(rows), winners] < losses[:, generation - 1]
        best_y[improved] = candidates[np.arange(rows), winners][improved]
        losses[:, generation] = np.minimum(losses[:, generation - 1], scores.min(axis=1))
        if on_step is not None:
            on_step(generation)
    evaluations = np.arange(settings.steps + 1, dtype=np.int64) * population
    return losses, evaluations, best_y


# --------------------------------------------------------------------------------------------
# Statistics over targets (a job's targets, or several jobs on the same targets).


def steps_to_threshold(curves: np.ndarray, threshold: float) -> np.ndarray:
    """(n,) float64: the first step at which each curve (n, T) is <= threshold; inf if never."""
    reached = np.asarray(curves) <= threshold
    first = np.argmax(reached, axis=1).astype(np.float64)
    first[~reached.any(axis=1)] = np.inf
    return first


def bootstrap_median(
    values: Sequence[float] | np.ndarray, *, seed: int = 0, resamples: int = 2000,
    level: float = 0.95,
) -> dict[str, Any]:  # fmt: skip
    """Median of `values` with its bootstrap interval (THE bootstrap of
    ``statistics.bootstrap``), in the one interval shape. Values may be inf (a target that
    never reached a threshold): the median and bounds are then inf."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InvalidOptionError("bootstrap_median needs a non-empty 1-D array")
    return bootstrap(array, "median", seed=seed, resamples=resamples, level=level).to_json()


def curve_band(curves: np.ndarray, low: float = 0.25, high: float = 0.75) -> dict[str, np.ndarray]:
    """Per-step median and quantile band over targets of curves (n, T)."""
    array = np.asarray(curves, dtype=np.float64)
    return {
        "median": np.median(array, axis=0),
        "low": np.quantile(array, low, axis=0),
        "high": np.quantile(array, high, axis=0),
    }
