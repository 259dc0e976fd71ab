"""Web interface sessions, kept here so that a cookie is only a reference: the session names an
API key, and the key (owner, scopes, revoked) is read on every request. Ending a session ends
it for every copy of its cookie; revoking the key ends all of its sessions."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update

from .codecs import sha256_hex
from .connection import StoreConnection, retry_read
from .models import Base, utcnow
from .records import ApiKeyRecord
from .tables import API_KEYS

UI_SESSIONS = Base.metadata.tables["ui_sessions"]


class UiSessionStore(StoreConnection):
    def open_ui_session(self, key_id: str, lifetime_s: float) -> str:
        """A new session for the key; returns its token (only its sha256 is stored). Sessions
        that expired are deleted on the way, so the table holds only live ones."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self._write() as conn:
            conn.execute(delete(UI_SESSIONS).where(UI_SESSIONS.c.expires_at < now))
            conn.execute(
                UI_SESSIONS.insert().values(
                    token_sha256=sha256_hex(token.encode()),
                    key_id=key_id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=lifetime_s),
                    ended_at=None,
                )
            )
        return token

    @retry_read
    def ui_session_key(self, token: str) -> ApiKeyRecord | None:
        """The live API key of a live session (not ended, not expired, key not revoked), with
        the key's owner and scopes as stored now; None otherwise."""
        if not token:
            return None
        query = (
            select(
                API_KEYS.c.id,
                API_KEYS.c.owner,
                API_KEYS.c.scopes,
                API_KEYS.c.created_at,
                API_KEYS.c.revoked,
            )
            .join(UI_SESSIONS, UI_SESSIONS.c.key_id == API_KEYS.c.id)
            .where(
                UI_SESSIONS.c.token_sha256 == sha256_hex(token.encode()),
                UI_SESSIONS.c.ended_at.is_(None),
                UI_SESSIONS.c.expires_at > utcnow(),
                API_KEYS.c.revoked.is_(False),
            )
        )
        with self._read() as conn:
            row = conn.execute(query).mappings().one_or_none()
        if row is None:
            return None
        return ApiKeyRecord(**{**dict(row), "scopes": tuple(row["scopes"])})

    def end_ui_session(self, token: str) -> bool:
        """End the session for good (sign-out). True if it was live."""
        with self._write() as conn:
            result = conn.execute(
                update(UI_SESSIONS)
                .where(
                    UI_SESSIONS.c.token_sha256 == sha256_hex(token.encode()),
                    UI_SESSIONS.c.ended_at.is_(None),
                )
                .values(ended_at=utcnow())
            )
            return result.rowcount == 1
