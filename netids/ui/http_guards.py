"""HTTP guards in front of every page, with or without a login: security headers on every
response, and the upload size limit enforced while the body streams in.

Both are pure ASGI middlewares added by :func:`netids.webapp.build`. The Content-Security-Policy
is the strictest NiceGUI's pages satisfy: they run inline scripts and compile Vue templates
in the browser (``'unsafe-inline'``, ``'unsafe-eval'``), but load and connect only to this
origin, may not be framed, and cannot post forms or set ``<base>`` elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",  # NiceGUI: inline set-up, Vue templates
    "style-src 'self' 'unsafe-inline'",  # Quasar and Tailwind inject styles
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",  # the Socket.IO WebSocket is same-origin
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
UPLOAD_PATH = re.compile(r"^/_nicegui/client/[^/]+/upload/[^/]+$")


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response that does not set them itself."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class UploadLimit:
    """Refuses an upload larger than ``limit`` bytes with 413 and ``message``: at once when
    its Content-Length says so, else as soon as that many bytes have streamed in (so nothing
    larger ever reaches the disk)."""

    def __init__(self, app: App, *, limit: int, message: str) -> None:
        self.app = app
        self.limit = limit
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" \
                or not UPLOAD_PATH.match(scope.get("path", "")):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"detail": self.message}, status_code=413,
                                    headers={"connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # becomes a 413 response inside the app
                    raise HTTPException(413, detail=self.message,
                                        headers={"connection": "close"})
            return message

        await self.app(scope, counted, send)
