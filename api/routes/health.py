"""Liveness, readiness (database reachable and writable, broker reachable) and Prometheus
metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.errors import RETRY_AFTER_S, problem_response, problem_responses
from services.store import StoreFull
from services.store.availability import STORE_FULL_MESSAGE

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    # async: a liveness probe should not wait for a thread-pool slot behind slow requests.
    return {"status": "ok"}


async def _check(name: str, probe: Any, *, on_loop: bool = False) -> tuple[str, str]:
    """``probe``: a blocking callable (run in a thread) or, ``on_loop``, an awaitable's
    factory (the API's own hot-read path)."""
    try:
        running = probe() if on_loop else run_in_threadpool(probe)
        await asyncio.wait_for(running, timeout=READY_TIMEOUT_S)
    except TimeoutError:
        return name, f"timed out after {READY_TIMEOUT_S:.0f} s"
    except StoreFull:
        return name, STORE_FULL_MESSAGE
    except Exception as error:  # any failure means not ready; say which and why
        return name, f"unreachable: {type(error).__name__}: {error}"
    return name, "ok"


@router.get(
    "/readyz",
    summary="The database answers (on both read paths) and can write; the broker answers",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> JSONResponse:
    store = request.app.state.store
    dispatcher = request.app.state.dispatcher
    results = await asyncio.gather(
        _check("database", store.ping),
        _check("database reads", store.ping_async, on_loop=True),
        _check("broker", lambda: dispatcher.ping(READY_TIMEOUT_S)),
    )
    checks = dict(results)
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(f"{name} {value}" for name, value in checks.items() if value != "ok")
    return problem_response(
        503,
        "Not ready",
        f"A dependency is not ready: {failing}. Retry after {RETRY_AFTER_S} s.",
        slug="not-ready",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_S)},
        extra={"checks": checks},
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
