"""Signing in to the web interface: an API key exchanged for a signed session cookie.

The cookie (Starlette's SessionMiddleware, signed with ``settings.secret_key``) is httpOnly
and SameSite=Lax, and Secure in production. It holds only a random session token and the
CSRF token, never the API key nor who the user is: the session lives in the store, names the
key, and the key's owner and scopes are read on every page. So a cookie re-signed with a
known secret grants nothing, sign-out ends the session for every copy of the cookie, revoking
the key ends its sessions, and a session lasts at most ``SESSION_MAX_AGE_S``. Every form
carries the session's CSRF token, checked on each POST (SameSite alone leaves older browsers
and same-site attackers).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from services.store import Store

SESSION_COOKIE = "spectra_session"
SESSION_MAX_AGE_S = 8 * 3600
CSRF_FIELD = "csrf_token"
# The session's key in the signed cookie: the server-side session's token.
SESSION_TOKEN = "sid"


class SignInRequired(Exception):
    """No valid session: the handler in ``api.ui.app`` redirects to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRejected(Exception):
    """A POST whose form token does not match the session's."""


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str) -> None:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not secrets.compare_digest(expected, submitted):
        raise CsrfRejected()


async def checked_form(
    request: Request, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> None:
    """A dependency for every POST: the form's CSRF token must be this session's."""
    check_csrf(request, csrf_token)


CsrfChecked = Annotated[None, Depends(checked_form)]


async def sign_in(request: Request, key_id: str) -> None:
    """Open a server-side session for the key; the cookie gets only the session's token."""
    store: Store = request.app.state.store
    token = await run_in_threadpool(store.open_ui_session, key_id, SESSION_MAX_AGE_S)
    # A new CSRF token with the new identity: a token seen before sign-in is not reused.
    request.session.clear()
    request.session[SESSION_TOKEN] = token
    csrf_token(request)


def sign_out(request: Request) -> None:
    """End the session on the server: every copy of this cookie stops working at once."""
    token = request.session.get(SESSION_TOKEN)
    if isinstance(token, str):
        store: Store = request.app.state.store
        store.end_ui_session(token)
    request.session.clear()


@dataclass(frozen=True)
class UiUser:
    principal: Principal
    key_id: str

    @property
    def owner(self) -> str:
        return self.principal.owner


def signed_in_user(request: Request) -> UiUser | None:
    """Who this request's page shows as signed in (set by ``current_user``), or None."""
    user = getattr(request.state, "ui_user", None)
    return user if isinstance(user, UiUser) else None


def current_user(request: Request) -> UiUser:
    """The signed-in key, read from the store on every page: owner and scopes are the key's
    as stored now (nothing the cookie says about them is trusted), and a session that was
    ended, expired, or whose key was revoked, is no session."""
    token = request.session.get(SESSION_TOKEN)
    store: Store = request.app.state.store
    record = store.ui_session_key(token) if isinstance(token, str) else None
    if record is None:
        request.session.clear()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    user = UiUser(Principal(owner=record.owner, scopes=frozenset(record.scopes)), record.id)
    request.state.ui_user = user
    return user


UserDep = Annotated[UiUser, Depends(current_user)]
