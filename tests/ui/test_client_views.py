"""The client's views held against the server's OpenAPI document, field by field: every field
the server declares is in the view with the same name, the same optionality and the same type,
and the view has nothing the server does not send. Built on the real app's ``openapi()``."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from api.app import create_app
from api.client import views
from services.store import Store
from tests.api.conftest import make_settings

# client view -> the OpenAPI schema it mirrors
MIRRORS: dict[type[Any], str] = {
    views.Job: "JobView",
    views.Progress: "JobProgressView",
    views.Timings: "JobTimings",
    views.Failure: "LatentFailureView",
    views.SpectrumSummary: "SpectrumSummary",
    views.PageInfo: "Page",
    views.ModelInfo: "ModelView",
}
# Fields a view carries beyond its schema, each from the answer that sends it (optional in the
# view, as the other answers leave it out).
EXTRAS: dict[type[Any], tuple[str, ...]] = {views.Job: ("JobDetail", "JobSubmitted")}
SCHEMA_OF_VIEW = {name: view for view, name in MIRRORS.items()}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'spectra.db'}"
    store = Store(url)
    store.migrate()
    try:
        yield create_app(make_settings(url), store=store).openapi()["components"]["schemas"]
    finally:
        store.close()


def python_type(schema: dict[str, Any]) -> Any:
    """The Python type a client field must have for this JSON schema."""
    if "$ref" in schema:
        return SCHEMA_OF_VIEW[schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        kinds = [python_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        assert len(kinds) == 1, schema
        return kinds[0] | None if len(schema["anyOf"]) == 2 else kinds[0]
    kind = schema["type"]
    if kind == "string":
        return datetime if schema.get("format") == "date-time" else str
    if kind == "array":
        return list[python_type(schema["items"])]  # type: ignore[misc]
    if kind == "object":
        extra = schema.get("additionalProperties", True)
        return dict[str, Any] if extra is True else dict[str, python_type(extra)]  # type: ignore[misc]
    return {"integer": int, "number": float, "boolean": bool}[kind]


def same_type(declared: Any, expected: Any) -> bool:
    if typing.get_origin(declared) in (typing.Union, types.UnionType):
        return set(typing.get_args(declared)) == set(typing.get_args(expected))
    return bool(declared == expected)


def field_table(view: type[Any]) -> dict[str, tuple[Any, bool]]:
    """name -> (type, required) of a dataclass view."""
    hints = typing.get_type_hints(view, localns={"np": np})
    return {
        f.name: (
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(view)
    }


@pytest.mark.parametrize("view", list(MIRRORS), ids=lambda v: v.__name__)
def test_view_mirrors_its_schema(view: type[Any], schemas: dict[str, Any]) -> None:
    schema = schemas[MIRRORS[view]]
    declared = field_table(view)
    required = set(schema.get("required", []))
    expected = {
        name: (python_type(s), name in required) for name, s in schema["properties"].items()
    }
    extras = {
        name: python_type(s)
        for extra_schema in EXTRAS.get(view, ())
        for name, s in schemas[extra_schema]["properties"].items()
        if name not in expected
    }
    assert sorted(declared) == sorted([*expected, *extras]), "fields differ"
    for name, (kind, is_required) in expected.items():
        got_kind, got_required = declared[name]
        assert got_required == is_required, f"{view.__name__}.{name}: required {got_required}"
        assert same_type(got_kind, kind), f"{view.__name__}.{name}: {got_kind} != {kind}"
    for name, kind in extras.items():
        got_kind, got_required = declared[name]
        assert not got_required, f"{view.__name__}.{name} comes with some answers only"
        # Optional, or a list that is empty when the answer has none.
        fits = same_type(got_kind, kind | None) or (
            typing.get_origin(kind) is list and same_type(got_kind, kind)
        )
        assert fits, f"{view.__name__}.{name}: {got_kind} != {kind}"


def test_spectrum_mirrors_the_detail_schema(schemas: dict[str, Any]) -> None:
    """A spectrum is its summary plus arrays: the detail's own fields, numbers as numpy."""
    detail = schemas["SpectrumDetail"]
    own = set(detail["properties"]) - set(schemas["SpectrumSummary"]["properties"])
    declared = field_table(views.Spectrum)
    assert set(declared) == own | {"summary"}
    assert declared["summary"] == (views.SpectrumSummary, True)
    assert declared["eigenvalues"] == (np.ndarray, True)
    assert same_type(declared["code"][0], np.ndarray | None)
    assert declared["diagnostics"] == (dict[str, Any], True)


def test_list_answers_are_items_and_a_page(schemas: dict[str, Any]) -> None:
    for listing, item in (("JobList", "JobView"), ("SpectrumList", "SpectrumSummary")):
        properties = schemas[listing]["properties"]
        assert set(properties) == {"items", "page"}
        assert properties["items"]["items"]["$ref"].endswith("/" + item)
        assert properties["page"]["$ref"].endswith("/Page")
    assert {f.name for f in dataclasses.fields(views.Page)} == {"items", "page"}


def test_a_drifted_view_is_caught() -> None:
    """The type mapping the test relies on tells a string from a datetime and an optional."""
    assert python_type({"type": "string", "format": "date-time"}) is datetime
    assert not same_type(str, datetime)
    assert python_type({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == int | None
    assert not same_type(int, int | None)
