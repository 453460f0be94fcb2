"""What can go wrong talking to a presque server.

Every error the server answers is ``{"error": "message"}`` with a status code; each
status a caller may want to handle differently has its own class, all under
:class:`PresqueError`, which carries the status and the server's message as it was
sent. A request that got no answer at all (refused connection, reset, timeout) is a
:class:`ConnectionFailed`.
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Type

__all__ = [
    "PresqueError",
    "ConnectionFailed",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "QueueClosed",
    "Conflict",
    "PayloadTooLarge",
    "TooManyRequests",
    "ServerBusy",
    "error_for",
]


class PresqueError(Exception):
    """An error answered by the server (or, for :class:`ConnectionFailed`, no answer).

    ``status`` is the HTTP status (``None`` when nothing was answered), ``message``
    the server's ``error`` text, ``retry_after`` the seconds of a ``Retry-After``
    header if there was one.
    """

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        *,
        retry_after: Optional[float] = None,
        method: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        where = f" ({method} {path})" if method and path else ""
        prefix = f"{status}: " if status is not None else ""
        super().__init__(f"{prefix}{message}{where}")
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.method = method
        self.path = path


class ConnectionFailed(PresqueError):
    """No answer: the connection was refused, reset or timed out.

    The request may or may not have reached the server: a job posted may exist.
    """


class BadRequest(PresqueError):
    """400: the server refused the request as malformed; nothing changed."""


class Unauthorized(PresqueError):
    """401: no bearer token, or one the server does not know."""


class Forbidden(PresqueError):
    """403: the token's role may not use this route."""


class NotFound(PresqueError):
    """404: no such job (acked, purged), worker or route."""


class QueueClosed(NotFound):
    """404 ``queue is closed``: fetching is refused until the queue is opened."""


class Conflict(PresqueError):
    """409 ``lease is no longer held``: the lease ran out; drop the result."""


class PayloadTooLarge(PresqueError):
    """413: the body is over the server's ``max_body_bytes``."""


class TooManyRequests(PresqueError):
    """429: too many long-polls are waiting on the queue."""


class ServerBusy(PresqueError):
    """503 (stopping, recovering, log not writable) or 507 (memory or queue full).

    Nothing was changed; try again later (``retry_after`` says when, if the server
    said).
    """


_BY_STATUS: Dict[int, Type[PresqueError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: ServerBusy,
    507: ServerBusy,
}


def _message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        return str(decoded["error"])
    return body.decode("utf-8", "replace").strip()


def _seconds(raw: Optional[str]) -> Optional[float]:
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        # An HTTP date: presque never sends one; treat it as "soon".
        return None


def error_for(
    status: int,
    body: bytes,
    *,
    retry_after: Optional[str] = None,
    method: Optional[str] = None,
    path: Optional[str] = None,
) -> PresqueError:
    """The exception for an error answer: its class picked by status (and, for 404,
    by message), the server's ``{"error"}`` text as its message."""
    message = _message(body) or f"HTTP {status}"
    cls = _BY_STATUS.get(status, PresqueError)
    if status == 404 and message == "queue is closed":
        cls = QueueClosed
    return cls(
        message,
        status,
        retry_after=_seconds(retry_after),
        method=method,
        path=path,
    )
