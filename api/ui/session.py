"""Signing in to the web interface: an API key exchanged for a signed session cookie.

The cookie (Starlette's SessionMiddleware, signed with ``settings.secret_key``) is httpOnly
and SameSite=Lax, and Secure in production. It holds the key's id, owner and scopes, never
the token; the token is checked at sign-in, the key's id on every page (so revoking the key
ends the session at once), and the session lasts at most ``SESSION_MAX_AGE_S``. Every form carries the session's CSRF token, checked on each POST
(SameSite alone leaves older browsers and same-site attackers).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Form, Request

from api.auth import Principal

SESSION_COOKIE = "spectra_session"
SESSION_MAX_AGE_S = 8 * 3600
CSRF_FIELD = "csrf_token"


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


def sign_in(request: Request, key_id: str, owner: str, scopes: tuple[str, ...]) -> None:
    # A new CSRF token with the new identity: a token seen before sign-in is not reused.
    request.session.clear()
    request.session.update({"key_id": key_id, "owner": owner, "scopes": list(scopes)})
    csrf_token(request)


def sign_out(request: Request) -> None:
    request.session.clear()


@dataclass(frozen=True)
class UiUser:
    principal: Principal
    key_id: str

    @property
    def owner(self) -> str:
        return self.principal.owner


def _user(session: dict[str, Any]) -> UiUser | None:
    owner, scopes, key_id = session.get("owner"), session.get("scopes"), session.get("key_id")
    if not isinstance(owner, str) or not isinstance(scopes, list) or not isinstance(key_id, str):
        return None
    return UiUser(Principal(owner=owner, scopes=frozenset(map(str, scopes))), key_id)


def current_user(request: Request) -> UiUser:
    """The signed-in key, checked live on every page: a revoked key ends its sessions."""
    user = _user(request.session)
    if user is not None and not request.app.state.store.api_key_is_live(user.key_id):
        request.session.clear()
        user = None
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return user


UserDep = Annotated[UiUser, Depends(current_user)]
