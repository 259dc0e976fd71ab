"""Small generators for the pipeline tests, loaded by workers as python:FILE:FACTORY.

`crash` kills the process that computes with it. `wide` is `slow` with results of a realistic
size.
`slow` sleeps in every forward pass, so a chunk takes long enough to be killed, cancelled or
cut off from its database half-way, deterministically. `nan_at_trigger` gives NaN images for
exactly one code (first coordinate equal to TRIGGER) and is an ordinary smooth map elsewhere.
Both are plain arithmetic, so they behave the same under vmap / jvp.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

LATENT_DIM = 6
# `wide`: results of a realistic size (its eigenvectors, WIDE_DIM² float32, need new pages in
# the store on every save, as a real model's do; the 6-dimensional toys' fit in free space).
WIDE_DIM = 160
TRIGGER = 0.125  # a code whose first coordinate is exactly this makes nan_at_trigger fail
SLOW_SECONDS = float(os.environ.get("SPECTRA_TEST_SLOW_S", "0.15"))


class _Crash(nn.Module):
    """Passes the loader's probe (its first forward), then kills its process on every later
    forward: a poison chunk that takes down each worker child that runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Toy()
        self.calls = 0

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        # Only in a worker: submission in the test's own process now renders the model's
        # image variation too (more than the one probe), and must not end the test run.
        if self.calls > 1 and "pytest" not in sys.modules:
            os._exit(13)
        images: torch.Tensor = self.inner(codes)
        return images


class _Toy(nn.Module):
    def __init__(
        self, sleep_s: float = 0.0, nan_trigger: float | None = None, dim: int = LATENT_DIM
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            self.linear = nn.Linear(dim, 3 * 4 * 4)
        self.sleep_s = sleep_s
        self.nan_trigger = nan_trigger

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        images = torch.tanh(self.linear(codes))
        if self.nan_trigger is not None:
            # 0 * log|z0 - trigger|: zero (with zero derivative) everywhere except at the
            # trigger, where it is 0 * -inf = NaN.
            poison = 0.0 * torch.log(torch.abs(codes[:, :1] - self.nan_trigger))
            images = images + poison
        return images.reshape(codes.shape[0], 3, 4, 4)


def slow() -> tuple[nn.Module, int]:
    return _Toy(sleep_s=SLOW_SECONDS), LATENT_DIM


def wide() -> tuple[nn.Module, int]:
    """`slow` with WIDE_DIM-dimensional codes."""
    return _Toy(sleep_s=SLOW_SECONDS, dim=WIDE_DIM), WIDE_DIM


def nan_at_trigger() -> tuple[nn.Module, int]:
    return _Toy(nan_trigger=TRIGGER), LATENT_DIM


def crash() -> tuple[nn.Module, int]:
    return _Crash(), LATENT_DIM


class _CrashAtTrigger(_Toy):
    """An ordinary smooth map, except that a plain (untransformed) forward pass over a code
    whose first coordinate is TRIGGER kills the process: a poison latent, and only that one."""

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        try:
            first = [float(value) for value in codes[:, 0]]
        except RuntimeError:  # inside vmap / jvp: values are not concrete
            first = []
        if any(value == TRIGGER for value in first):
            if os.environ.get("SPECTRA_TEST_CRASH_RAISES"):
                raise RuntimeError("crash_at_trigger: would kill the process here")
            os._exit(13)
        return super().forward(codes)


def crash_at_trigger() -> tuple[nn.Module, int]:
    return _CrashAtTrigger(), LATENT_DIM
