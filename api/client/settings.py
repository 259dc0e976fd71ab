"""The client's settings: the client-side twin of ``services.config.Settings`` for the two
``SPECTRA_*`` variables only a client reads, so that a notebook needs neither pydantic-settings
nor the server's dependencies.

=====================  ==============================================  ========================
variable               meaning                                         default
=====================  ==============================================  ========================
SPECTRA_SERVER_URL     the API's base URL                              http://127.0.0.1:8000
SPECTRA_TOKEN          the API key, sent as ``Authorization: Bearer``  none: an error says how
=====================  ==============================================  ========================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_VARIABLE = "SPECTRA_SERVER_URL"
TOKEN_VARIABLE = "SPECTRA_TOKEN"


@dataclass(frozen=True)
class ClientSettings:
    """Where the server is and the key to show it."""

    server: str
    token: str | None

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
    ) -> ClientSettings:
        """Arguments first, then the environment, then the default server."""
        env = os.environ if environ is None else environ
        chosen = server or env.get(SERVER_VARIABLE) or DEFAULT_SERVER
        return cls(chosen.rstrip("/"), token or env.get(TOKEN_VARIABLE) or None)

    def require_token(self) -> str:
        if not self.token:
            raise ValueError(
                f"give an API key (token=... or {TOKEN_VARIABLE}); create one with "
                "`spectra keys create --owner NAME --scopes read,submit`"
            )
        return self.token


def tls_verify(server: str) -> Any:
    """What httpx verifies TLS with. A plain-http server needs no certificates, and loading
    the CA bundle is most of a short command's run on a busy machine; a context with no CAs
    verifies nothing successfully, so a stray https request fails closed."""
    if server.startswith("http://"):
        import ssl

        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True
