"""Fixtures for the geometry core: the real dcgan-faces, LPIPS with an explicit random backbone,
and small generators loaded through the real `python:` loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.geometry import Distance, Generator, load_distance, load_generator

FACTORIES = Path(__file__).with_name("factories.py")


def python_generator(factory: str) -> Generator:
    return load_generator(f"python:{FACTORIES}:{factory}")


@pytest.fixture(scope="session")
def dcgan() -> Generator:
    return load_generator("dcgan-faces")


@pytest.fixture(scope="session")
def mse() -> Distance:
    return load_distance("mse")


@pytest.fixture(scope="session")
def lpips_random() -> Distance:
    return load_distance("lpips-alex", random_backbone=True)


@pytest.fixture(scope="session")
def linear() -> Generator:
    return python_generator("linear")


@pytest.fixture(scope="session")
def tiny_dcgan() -> Generator:
    return python_generator("tiny_dcgan")
