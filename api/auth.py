"""Bearer API keys with scopes.

Keys are created from the command line (``spectra keys create``) and stored hashed by the
store; here a token is only verified. ``admin`` implies every scope and sees every owner's
jobs; any other key sees only its owner's (others' answer 404, not 403, so ids do not leak).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.errors import ApiProblem

SCOPES = ("read", "submit", "admin")

# A verified token is remembered this long, so that a busy client does not cost a database
# round trip per request. Keys are never edited in place; the one effect is that a key revoked
# with Store.revoke_api_key keeps working in this process for at most this long.
VERIFIED_TTL_S = 5.0

bearer = HTTPBearer(auto_error=False, description="An API key from `spectra keys create`.")


@dataclass(frozen=True)
class Principal:
    owner: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def allows(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    @property
    def visible_owner(self) -> str | None:
        """The owner filter for queries: None (everyone) for admin keys."""
        return None if self.is_admin else self.owner


class VerifiedKeyCache:
    def __init__(self, ttl_s: float = VERIFIED_TTL_S, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        # Never keep raw tokens in memory longer than the request.
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(self._key(token))
            if hit is None or hit[0] < now:
                return None
            return hit[1]

    def put(self, token: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._key(token)] = (time.monotonic() + self.ttl_s, principal)


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(
        401,
        "Unauthorized",
        detail,
        field="Authorization",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal:
    # async, so that a remembered key costs no trip through the thread pool; only a key not
    # seen in the last VERIFIED_TTL_S goes to the database, in a worker thread.
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorized(
            "Send an API key as 'Authorization: Bearer <token>'; create one with "
            "`spectra keys create --owner NAME --scopes read,submit`."
        )
    token = credentials.credentials
    cache: VerifiedKeyCache = request.app.state.key_cache
    principal = cache.get(token)
    if principal is None:
        record = await run_in_threadpool(request.app.state.store.verify_api_key, token)
        if record is None:
            raise _unauthorized(
                "This API key is not valid; create a new one with `spectra keys create`."
            )
        principal = Principal(owner=record.owner, scopes=frozenset(record.scopes))
        cache.put(token, principal)
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates and insists on one scope (admin passes everywhere)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")

    async def dependency(principal: Principal = Depends(authenticate)) -> Principal:
        if not principal.allows(scope):
            raise ApiProblem(
                403,
                "Forbidden",
                f"This API key lacks the {scope!r} scope (it has: "
                f"{', '.join(sorted(principal.scopes)) or 'none'}); create a key with it.",
                field="Authorization",
            )
        return principal

    return dependency


# The principal a route needs, as typed dependencies (``principal: ReadPrincipal``).
ReadPrincipal = Annotated[Principal, Depends(require("read"))]
SubmitPrincipal = Annotated[Principal, Depends(require("submit"))]
