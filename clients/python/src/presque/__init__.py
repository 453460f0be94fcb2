"""A client for presque, the HTTP/JSON job queue server: standard library only.

- :class:`Client`: every route as a call (push, fetch, lease/ack/fail/extend, dead
  letters, queue control, worker registration), errors as :class:`PresqueError`
  subclasses carrying the server's status and message.
- :class:`Worker`: a loop that leases jobs, runs a handler, acks or fails them,
  extends leases while the handler runs, and backs off when the server is away.
- :class:`Producer`: buffers pushes and sends them in batches.
"""

from .client import DEFAULT_URL, Client, Lease, clean_reason, encode_job
from .errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PresqueError,
    QueueClosed,
    ServerBusy,
    TooManyRequests,
    Unauthorized,
)
from .producer import Producer
from .worker import Backoff, Worker, default_worker_id, failure_reason

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "Backoff",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "Lease",
    "NotFound",
    "PayloadTooLarge",
    "PresqueError",
    "Producer",
    "QueueClosed",
    "ServerBusy",
    "TooManyRequests",
    "Unauthorized",
    "Worker",
    "clean_reason",
    "default_worker_id",
    "encode_job",
    "failure_reason",
]
