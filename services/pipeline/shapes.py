"""A model's counts from its architecture alone, with no memory spent on its activations.

Two depths. `output_counts` reads what the loader recorded (the output image's shape) and
the weights' sizes: nothing runs, so a submission's request can afford it; its activation
figures are the output image alone, a lower bound of every activation. `model_counts` runs
one code through the model on torch's meta device, where every tensor has a shape and no
storage (the loader's contract check, services/geometry/models/contract.py, runs the same
pass): every module's output is counted, at no memory whatever the model's size; it runs
on the worker that probes (to keep the probe's batches inside the budget it was given).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from services.geometry import Distance, Generator
from services.geometry.distances import LayerDistance
from services.geometry.models.contract import meta_pass
from services.pipeline.estimate import Counts

log = logging.getLogger(__name__)


def output_counts(generator: Generator, distance: Distance) -> Counts | None:
    """The counts a submission can afford: weights, output features, and the output image
    as the lower bound of the activations. None for a layer distance (the cut model's
    output shape is not recorded) or a generator that recorded no output shape."""
    shape = generator.facts.get("output_shape")
    if isinstance(distance, LayerDistance) or not isinstance(shape, list | tuple):
        return None
    image = 1
    for size in shape:
        image *= int(size)
    features = int(distance.feature_weights((1, *shape)).numel())
    parameters = _elements(generator.module) + _elements(getattr(distance, "model", None))
    return Counts(generator.latent_dim, features, parameters, image, image)


def model_counts(generator: Generator, distance: Distance) -> Counts | None:
    """The counts of `generator` followed by `distance`'s features, or None where the model
    cannot run on the meta device (a module that reads values, e.g. `.item()` or numpy):
    then the planner probes, within its budget, as before."""
    if isinstance(distance, LayerDistance):
        generator = generator.at_layer(distance.layer)
    module = generator.module
    try:
        shapes = meta_pass(module, generator.latent_dim, generator.dtype)
        if len(shapes.output_shape) != 4:
            raise ValueError(f"the module's meta output has shape {shapes.output_shape}")
    except Exception as error:  # any module code may refuse meta tensors
        log.info("no meta-device pass of %s (%s): planned by its probe", generator.name, error)
        return None
    features = int(distance.feature_weights((1, *shapes.output_shape[1:])).numel())
    parameters = _elements(module) + _elements(getattr(distance, "model", None))
    return Counts(
        latent_dim=generator.latent_dim,
        features=features,
        parameters=parameters,
        largest_activation=shapes.largest_activation,
        activations=shapes.activations,
    )


def _elements(module: Any) -> int:
    if not isinstance(module, torch.nn.Module):
        return 0
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))
