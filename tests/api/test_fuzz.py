"""Property-based fuzz of the whole OpenAPI schema (schemathesis): whatever a client sends,
the API answers with a 4xx or a success, never a 5xx.

Every operation gets data that fits the schema and data that does not. Chunks are only
recorded, not run, so a generated job costs one spec resolution; examples per operation are
bounded so the whole fuzz stays well under a minute. (Driven from a plain test
rather than schemathesis' pytest plugin, whose lazy-fixture loader does not run on pytest 9.)
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import given
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from services.store import Store
from tests.api.conftest import RecordingDispatcher, bearer
from tests.support.fuzzing import repeatable

EXAMPLES_PER_OPERATION = 10  # per operation, for valid and for invalid data each


def test_no_operation_answers_with_a_server_error(app: FastAPI, store: Store) -> None:
    app.state.dispatcher = RecordingDispatcher()
    headers = bearer(store.create_api_key("fuzzer", ["admin"])[1])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20  # every route is in the schema, so every route is fuzzed
    server_errors: list[str] = []
    statuses: Counter[int] = Counter()

    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @repeatable(EXAMPLES_PER_OPERATION)
        def exercise(case: schemathesis.Case[Any]) -> None:
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.operation.label} -> {response.status_code}: {response.text[:300]}\n"
                    f"  {case.as_curl_command()}"
                )

        try:
            exercise()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid input to generate.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert not server_errors, "\n".join(server_errors)
    # The fuzz reached the handlers, not only the validators: some calls succeeded.
    assert sum(n for status, n in statuses.items() if status < 300) >= len(operations) // 2, (
        statuses
    )
