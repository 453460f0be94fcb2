"""HTTP/1.1 with keep-alive on :mod:`http.client`: one connection per thread.

urllib opens a connection per request; a worker making three requests a job would
spend most of its time in TCP handshakes. Each thread here keeps its own connection
(``http.client`` connections are not thread-safe), reconnects before reusing one the
server has likely closed (its idle timeout, ``keep_alive_secs``, is 5 s by default),
and retries once on a fresh connection when a reused one turns out to be closed
before any answer came.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from .errors import ConnectionFailed

# Reconnect rather than reuse a connection idle this long: the server closes idle
# keep-alive connections after `keep_alive_secs` (5 s by default).
IDLE_REUSE_SECS = 3.0

QueryValue = Union[str, int, float]


class Response(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes


class Cancel:
    """Lets another thread abort one thread's request in flight (a long-poll being
    waited out) by shutting its socket down. The server hands no job to a waiter
    whose connection is gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._sock: Optional[socket.socket] = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _attach(self, sock: Optional[socket.socket]) -> bool:
        with self._lock:
            if self._cancelled:
                return False
            self._sock = sock
            return True

    def _detach(self) -> None:
        with self._lock:
            self._sock = None


class _Conn:
    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.last_used = time.monotonic()
        self.used = False


def _format(value: QueryValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        # Plain decimals (the server reads no exponent), to the microsecond.
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return text or "0"
    return str(value)


def quote_segment(segment: str) -> str:
    """A queue name (or id) as one path segment, every reserved byte escaped."""
    return urllib.parse.quote(segment, safe="")


class Transport:
    def __init__(
        self,
        url: str,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._lock = threading.Lock()
        self._all: List[_Conn] = []
        self._local = threading.local()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"presque URL must be http:// or https://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"presque URL has no host: {url!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl_context = ssl_context

    def _new(self, timeout: float) -> _Conn:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=timeout,
                context=self._ssl_context or ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        wrapped = _Conn(conn)
        with self._lock:
            self._all.append(wrapped)
        return wrapped

    def _drop(self, wrapped: _Conn) -> None:
        wrapped.conn.close()
        with self._lock:
            if wrapped in self._all:
                self._all.remove(wrapped)
        if getattr(self._local, "conn", None) is wrapped:
            self._local.conn = None

    def _conn(self, timeout: float) -> _Conn:
        wrapped: Optional[_Conn] = getattr(self._local, "conn", None)
        if wrapped is not None and time.monotonic() - wrapped.last_used > IDLE_REUSE_SECS:
            self._drop(wrapped)
            wrapped = None
        if wrapped is None:
            wrapped = self._new(timeout)
            self._local.conn = wrapped
        return wrapped

    def release(self) -> None:
        """Closes the calling thread's connection (a thread about to end)."""
        wrapped: Optional[_Conn] = getattr(self._local, "conn", None)
        if wrapped is not None:
            self._drop(wrapped)

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Closes every thread's connection (the next request opens a new one)."""
        with self._lock:
            conns, self._all = self._all, []
        for wrapped in conns:
            wrapped.conn.close()

    def target(
        self, path: str, query: Optional[Mapping[str, Optional[QueryValue]]] = None
    ) -> str:
        pairs: List[Tuple[str, str]] = [
            (k, _format(v)) for k, v in (query or {}).items() if v is not None
        ]
        target = self._prefix + path
        if pairs:
            target += "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        return target

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str],
        body: Optional[bytes] = None,
        timeout: float,
        cancel: Optional[Cancel] = None,
    ) -> Response:
        for attempt in (1, 2):
            wrapped = self._conn(timeout)
            reused = wrapped.used
            try:
                return self._once(wrapped, method, target, headers, body, timeout, cancel)
            except (http.client.HTTPException, OSError) as e:
                self._drop(wrapped)
                if cancel is not None and cancel.cancelled:
                    raise ConnectionFailed("request cancelled", method=method, path=target) from e
                # A reused keep-alive connection the server closed meanwhile fails
                # before any answer: the request never reached it, so send it again.
                stale = isinstance(
                    e,
                    (
                        http.client.RemoteDisconnected,
                        ConnectionResetError,
                        BrokenPipeError,
                        ConnectionAbortedError,
                    ),
                )
                if attempt == 1 and reused and stale:
                    continue
                what = "timed out" if isinstance(e, socket.timeout) else str(e) or type(e).__name__
                raise ConnectionFailed(
                    f"no answer from {self.url}: {what}", method=method, path=target
                ) from e
        raise AssertionError("unreachable")

    def _once(
        self,
        wrapped: _Conn,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Optional[bytes],
        timeout: float,
        cancel: Optional[Cancel],
    ) -> Response:
        conn = wrapped.conn
        conn.timeout = timeout
        if conn.sock is None:
            conn.connect()
        conn.sock.settimeout(timeout)
        if cancel is not None and not cancel._attach(conn.sock):
            raise ConnectionAbortedError("cancelled")
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            response = conn.getresponse()
            data = response.read()
        finally:
            if cancel is not None:
                cancel._detach()
        wrapped.used = True
        wrapped.last_used = time.monotonic()
        if response.will_close:
            self._drop(wrapped)
        # Header names are case-insensitive; keep them lower-cased, one value each.
        found = {name.lower(): value for name, value in response.getheaders()}
        return Response(response.status, found, data)
