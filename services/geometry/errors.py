"""Typed errors of the geometry core.

All of them are `ValueError`s, so a caller that only knows "bad input" can catch one thing;
the API maps them to 4xx responses and the worker stores their message as a latent's failure
reason. Every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class GeometryError(ValueError):
    """Base class: the request cannot be computed as given."""


class UnknownModelError(GeometryError):
    """The generator name matches no registry entry or loader scheme."""


class UnknownDistanceError(GeometryError):
    """The distance name is not one of the supported distances."""


class UnknownMethodError(GeometryError):
    """The metric-tensor method is not one of METHODS."""


class InvalidLatentError(GeometryError):
    """A latent code has the wrong shape or dimension, or holds NaN/inf."""


class InvalidOptionError(GeometryError):
    """A method option is out of range (k >= d, a bad step, an unknown dtype, ...)."""


class NonFiniteOutputError(GeometryError):
    """The generator or the distance produced NaN/inf."""


class MissingWeightsError(GeometryError):
    """Weights a model needs are not on this machine; the message names the file and where
    to put it."""


class InvalidGeneratorError(GeometryError):
    """A user-supplied generator (TorchScript file, Python factory, BigGAN checkpoint) does not
    keep the documented contract (output shape, latent dimension, checkpoint keys)."""


class NotConvergedError(GeometryError):
    """An iterative solver (Lanczos) did not reach the requested accuracy."""
