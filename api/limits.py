"""Request-size limits enforced before any handler reads the body.

File uploads (multipart, octet-stream) may be up to SPECTRA_MAX_UPLOAD_BYTES; every other
body (JSON) up to SPECTRA_MAX_JSON_BYTES, since a JSON body is parsed into Python objects
several times its size before any field is validated.

A declared ``Content-Length`` over the limit is refused at once with 413, without reading a
byte of the body; a chunked body is counted as it streams and cut off at the limit. Either way
no handler runs, so nothing is created.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_BASE, PROBLEM_JSON


class BodyTooLarge(Exception):
    pass


FILE_CONTENT_TYPES = (b"multipart/", b"application/octet-stream")


def _problem_bytes(limit: int, path: str, setting: str) -> bytes:
    return json.dumps(
        {
            "type": PROBLEM_BASE + "payload-too-large",
            "title": "Payload too large",
            "status": 413,
            "detail": f"The request body exceeds the limit of {limit} bytes "
            f"({setting}); send fewer or smaller codes, or upload codes as a .npy file.",
            "field": "body",
            "instance": path,
        }
    ).encode()


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int | None = None) -> None:
        self.app = app
        self.max_upload_bytes = max_bytes
        self.max_json_bytes = min(max_bytes, max_json_bytes or max_bytes)

    def _limit_for(self, scope: Scope) -> tuple[int, str]:
        for name, value in scope.get("headers", []):
            if name == b"content-type" and value.lower().startswith(FILE_CONTENT_TYPES):
                return self.max_upload_bytes, "SPECTRA_MAX_UPLOAD_BYTES"
        return self.max_json_bytes, "SPECTRA_MAX_JSON_BYTES"

    async def _refuse(self, scope: Scope, send: Send) -> None:
        limit, setting = self._limit_for(scope)
        body = _problem_bytes(limit, scope.get("path", ""), setting)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, _ = self._limit_for(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    await self._refuse(scope, send)
                    return
        received = 0
        exceeded = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # Stop reading here. Whatever the framework makes of this error (FastAPI
                    # turns body-parsing errors into 400), the response is replaced below.
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(scope, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                await self._refuse(scope, send)
