"""Bad requests raise a typed GeometryError (a ValueError) that names the problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.geometry import (
    Generator,
    GeometryError,
    InvalidLatentError,
    InvalidOptionError,
    UnknownMethodError,
    compute_metric,
    compute_spectrum,
    load_distance,
    metric_columns,
    spectrum_from_metric,
)

CASES = [
    ({"code": np.zeros(7)}, InvalidLatentError, "dimension 7 but .* expects 8"),
    ({"code": np.zeros((2, 8))}, InvalidLatentError, "one latent code"),
    ({"code": np.full(8, np.nan)}, InvalidLatentError, "NaN or inf"),
    ({"code": np.full(8, -np.inf)}, InvalidLatentError, "NaN or inf"),
    ({"method": "newton"}, UnknownMethodError, "jacobian, hvp, lanczos, fd, bp"),
    ({"top_k": 8}, InvalidOptionError, "1 <= top_k < d = 8"),
    ({"top_k": 0}, InvalidOptionError, "top_k"),
    ({"method": "lanczos", "top_k": 9}, InvalidOptionError, "top_k"),
    ({"dtype": "float16"}, InvalidOptionError, "float32' or 'float64"),
    ({"method": "fd", "step": 0.0}, InvalidOptionError, "step"),
    ({"method": "fd", "step": float("nan")}, InvalidOptionError, "step"),
    ({"method": "jacobian", "step": 1e-3}, InvalidOptionError, "do not apply to jacobian"),
    ({"method": "hvp", "batch": 0}, InvalidOptionError, "batch"),
    ({"method": "lanczos", "tol": -1.0}, InvalidOptionError, "tol"),
    ({"method": "lanczos", "max_iter": 0}, InvalidOptionError, "max_iter"),
]


@pytest.mark.parametrize(("change", "error", "message"), CASES)
def test_bad_requests_raise_typed_errors(
    tiny_dcgan: Generator, change: dict[str, Any], error: type[GeometryError], message: str
) -> None:
    request = {
        "code": np.zeros(8),
        "method": "jacobian",
        "top_k": None,
        "dtype": "float32",
        **change,
    }
    code = request.pop("code")
    with pytest.raises(error, match=message) as raised:
        compute_spectrum(tiny_dcgan, load_distance("mse"), code, **request)
    assert isinstance(raised.value, GeometryError) and isinstance(raised.value, ValueError)


def test_metric_entry_points_validate_too(tiny_dcgan: Generator) -> None:
    mse = load_distance("mse")
    with pytest.raises(InvalidOptionError, match="lanczos"):
        compute_metric(tiny_dcgan, mse, np.zeros(8), method="lanczos")
    for start, stop in ((3, 3), (-1, 2), (0, 9)):
        with pytest.raises(InvalidOptionError, match="column block"):
            metric_columns(tiny_dcgan, mse, np.zeros(8), start, stop)
    with pytest.raises(InvalidOptionError, match="square"):
        spectrum_from_metric(np.ones((2, 3)))
    with pytest.raises(GeometryError, match="NaN"):
        spectrum_from_metric(np.full((2, 2), np.nan))
