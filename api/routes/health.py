"""Liveness, readiness (database and broker reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.errors import RETRY_AFTER_S, problem_response, problem_responses

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(run_in_threadpool(probe), timeout=READY_TIMEOUT_S)
    except TimeoutError:
        return name, f"timed out after {READY_TIMEOUT_S:.0f} s"
    except Exception as error:  # any failure means not ready; say which and why
        return name, f"unreachable: {type(error).__name__}: {error}"
    return name, "ok"


@router.get(
    "/readyz",
    summary="The database and the broker are reachable",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> JSONResponse:
    store = request.app.state.store
    dispatcher = request.app.state.dispatcher
    results = await asyncio.gather(
        _check("database", store.ping),
        _check("broker", lambda: dispatcher.ping(READY_TIMEOUT_S)),
    )
    checks = dict(results)
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(f"{name} {value}" for name, value in checks.items() if value != "ok")
    return problem_response(
        503,
        "Not ready",
        f"A dependency is unreachable: {failing}. Retry after {RETRY_AFTER_S} s.",
        slug="not-ready",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_S)},
        extra={"checks": checks},
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
