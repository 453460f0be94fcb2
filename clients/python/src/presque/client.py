"""The presque HTTP API as Python calls: jobs in and out, leases, dead letters,
queue control, worker registration.

Jobs are JSON values: ``push`` encodes them (compact, UTF-8), fetches decode them,
and ``/qb``'s array of JSON-text strings is decoded twice so a batch comes back as
the values that were pushed.
"""

from __future__ import annotations

import json
import os
import ssl
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
)

from ._transport import Cancel, QueryValue, Response, Transport, quote_segment
from .errors import PresqueError, error_for

__all__ = ["Client", "Lease", "DEFAULT_URL", "encode_job", "clean_reason"]

DEFAULT_URL = "http://127.0.0.1:5000"

# Header names, as the server spells them.
WORKER_HEADER = "X-presque-workerid"
LEASE_HEADER = "X-presque-lease"
EMPTY_HEADER = "X-presque-empty"
JOB_ID_HEADER = "x-presque-jobid"
JOB_ID_RANGE_HEADER = "x-presque-jobid-range"
ATTEMPTS_HEADER = "x-presque-attempts"

Json = Any


def encode_job(job: Json) -> bytes:
    """A job's bytes on the wire: compact JSON, UTF-8. NaN and infinities are not
    JSON and are refused here rather than by the server."""
    return json.dumps(job, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _decode(body: bytes) -> Json:
    return json.loads(body)


def _attempts(raw: Optional[str], count: int) -> List[Optional[int]]:
    """Each leased job's failed deliveries before this one, from
    ``X-presque-attempts``; ``None`` each from a server that does not send it."""
    if raw is not None:
        try:
            values = [int(part) for part in raw.split(",")]
        except ValueError:
            values = []
        if len(values) == count:
            return list(values)
    return [None] * count


class Lease:
    """A job handed out with a lease: it stays in flight until :meth:`ack`,
    :meth:`fail`, or the lease runs out (then it is handed out again).

    ``token`` is the delivery token (``X-presque-lease``) that every action on this
    delivery must show; ``job`` the decoded job; ``attempts`` the job's failed
    deliveries before this one (0 on the first; ``None`` from a server too old to send
    ``X-presque-attempts``).
    """

    __slots__ = (
        "client",
        "queue",
        "id",
        "token",
        "job",
        "lease_secs",
        "worker_id",
        "attempts",
    )

    def __init__(
        self,
        client: "Client",
        queue: str,
        id: int,
        token: str,
        job: Json,
        lease_secs: float,
        worker_id: Optional[str],
        attempts: Optional[int] = None,
    ) -> None:
        self.client = client
        self.queue = queue
        self.id = id
        self.token = token
        self.job = job
        self.lease_secs = lease_secs
        self.worker_id = worker_id
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"Lease(queue={self.queue!r}, id={self.id}, token={self.token!r})"

    def ack(self) -> None:
        """Done: the job is gone. :class:`~presque.errors.Conflict` if the lease ran
        out meanwhile (another worker may have the job now)."""
        self.client.ack(self.queue, self.id, self.token)

    def fail(
        self,
        reason: Optional[str] = None,
        *,
        delay: Optional[float] = None,
        delayed: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Failed: the job goes back to the tail (or after ``delay`` seconds, or at
        the epoch time ``delayed``), or to the dead letters after ``max_attempts``.
        Answers where it went (the lookup's fields)."""
        return self.client.fail(
            self.queue,
            self.id,
            self.token,
            reason=reason,
            delay=delay,
            delayed=delayed,
            worker_id=self.worker_id,
        )

    def extend(self, secs: Optional[float] = None) -> Dict[str, Any]:
        """The lease now ends ``secs`` seconds from now (default: its first length).
        The token stays the same."""
        return self.client.extend(
            self.queue, self.id, self.token, secs if secs is not None else self.lease_secs
        )

    def lookup(self) -> Dict[str, Any]:
        """The job's state: ``attempts``, ``lease_deadline``, ``errors``, ..."""
        return self.client.lookup(self.queue, self.id)


class Client:
    """A presque server at ``url`` (default ``$PRESQUE_URL``, else
    ``http://127.0.0.1:5000``), with bearer ``token`` (default ``$PRESQUE_TOKEN``).

    ``timeout`` bounds each request; a long-poll gets its ``wait`` on top. Safe to
    share between threads: each thread keeps its own keep-alive connection.
    ``worker_id``, if given, is sent as ``X-presque-workerid`` on fetches, posts and
    failure reports (the server credits that worker).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 10.0,
        worker_id: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.url = url or os.environ.get("PRESQUE_URL") or DEFAULT_URL
        self.token = token if token is not None else os.environ.get("PRESQUE_TOKEN") or None
        self.timeout = timeout
        self.worker_id = worker_id
        self._transport = Transport(self.url, ssl_context=ssl_context)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def disconnect(self) -> None:
        """Closes the kept-alive connections (later calls open new ones)."""
        self._transport.close()

    # -- plumbing ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Optional[QueryValue]]] = None,
        body: Optional[bytes] = None,
        json_body: bool = False,
        headers: Optional[Mapping[str, str]] = None,
        wait: Optional[float] = None,
        ok: Sequence[int] = (200,),
        cancel: Optional[Cancel] = None,
    ) -> Response:
        target = self._transport.target(path, query)
        sent: Dict[str, str] = {"Accept": "application/json"}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        if json_body:
            sent["Content-Type"] = "application/json"
        if headers:
            sent.update(headers)
        timeout = self.timeout + (wait or 0.0)
        response = self._transport.request(
            method, target, headers=sent, body=body, timeout=timeout, cancel=cancel
        )
        if response.status not in ok:
            raise error_for(
                response.status,
                response.body,
                retry_after=response.headers.get("retry-after"),
                method=method,
                path=target,
            )
        return response

    def _worker(self, worker_id: Optional[str]) -> Dict[str, str]:
        chosen = worker_id if worker_id is not None else self.worker_id
        return {WORKER_HEADER: chosen} if chosen else {}

    @staticmethod
    def _q(queue: str) -> str:
        if not queue:
            raise ValueError("queue name is empty")
        return quote_segment(queue)

    # -- jobs -------------------------------------------------------------------

    def push(
        self,
        queue: str,
        job: Json,
        *,
        delay: Optional[float] = None,
        delayed: Optional[float] = None,
        uniq: Optional[str] = None,
        worker_id: Optional[str] = None,
    ) -> int:
        """Adds ``job`` to the tail of ``queue``; answers its id. ``delay``: not
        fetchable for that many seconds; ``delayed``: not before that epoch time;
        ``uniq``: refused (:class:`~presque.errors.BadRequest` ``job already
        exists``) while a job with this key waits."""
        response = self._request(
            "POST",
            f"/q/{self._q(queue)}",
            query={"delay": delay, "delayed": delayed, "uniq": uniq},
            body=encode_job(job),
            json_body=True,
            headers=self._worker(worker_id),
            ok=(201,),
        )
        return int(response.headers[JOB_ID_HEADER])

    def push_batch(
        self,
        queue: str,
        jobs: Iterable[Json],
        *,
        delay: Optional[float] = None,
        delayed: Optional[float] = None,
    ) -> List[int]:
        """Adds ``jobs`` in order with one request (``/qb``); answers their ids."""
        return self._push_encoded(
            queue, [encode_job(job) for job in jobs], delay=delay, delayed=delayed
        )

    def _push_encoded(
        self,
        queue: str,
        encoded: Sequence[bytes],
        *,
        delay: Optional[float] = None,
        delayed: Optional[float] = None,
    ) -> List[int]:
        if not encoded:
            return []
        body = b'{"jobs":[' + b",".join(encoded) + b"]}"
        response = self._request(
            "POST",
            f"/qb/{self._q(queue)}",
            query={"delay": delay, "delayed": delayed},
            body=body,
            json_body=True,
            headers=self._worker(None),
            ok=(201,),
        )
        # The range is always there; the id list only for small batches.
        first, _, last = response.headers[JOB_ID_RANGE_HEADER].partition("-")
        ids = list(range(int(first), int(last) + 1))
        if len(ids) != len(encoded):
            raise PresqueError(
                f"the server created {len(ids)} jobs for a batch of {len(encoded)}",
                response.status,
            )
        return ids

    def _fetch(
        self,
        path: str,
        *,
        wait: Optional[float],
        lease_secs: Optional[float],
        batch_size: Optional[int],
        worker_id: Optional[str],
        cancel: Optional[Cancel] = None,
    ) -> Optional[Response]:
        headers = {EMPTY_HEADER: "204", **self._worker(worker_id)}
        response = self._request(
            "GET",
            path,
            query={"wait": wait, "lease": lease_secs, "batch_size": batch_size},
            headers=headers,
            wait=wait,
            ok=(200, 204),
            cancel=cancel,
        )
        return None if response.status == 204 else response

    def fetch(
        self, queue: str, *, wait: Optional[float] = None, worker_id: Optional[str] = None
    ) -> Optional[Json]:
        """Takes the head job (at most once: it is gone from the queue once
        answered); ``None`` when there is none, after waiting up to ``wait``
        seconds for one. A job that is JSON ``null`` also comes back as ``None``:
        use :meth:`fetch_batch` to tell them apart.
        :class:`~presque.errors.QueueClosed` when the queue is closed."""
        response = self._fetch(
            f"/q/{self._q(queue)}",
            wait=wait,
            lease_secs=None,
            batch_size=None,
            worker_id=worker_id,
        )
        return None if response is None else _decode(response.body)

    def fetch_batch(
        self,
        queue: str,
        *,
        batch_size: int = 10,
        wait: Optional[float] = None,
        worker_id: Optional[str] = None,
    ) -> List[Json]:
        """Takes up to ``batch_size`` jobs from the head (``[]`` when none)."""
        response = self._fetch(
            f"/qb/{self._q(queue)}",
            wait=wait,
            lease_secs=None,
            batch_size=batch_size,
            worker_id=worker_id,
        )
        if response is None:
            return []
        return [json.loads(text) for text in _decode(response.body)]

    def lease(
        self,
        queue: str,
        *,
        lease_secs: float,
        wait: Optional[float] = None,
        worker_id: Optional[str] = None,
    ) -> Optional[Lease]:
        """Takes the head job on a lease of ``lease_secs`` seconds (at least once:
        it comes back unless acked); ``None`` when there is none after ``wait``."""
        return self._lease(queue, lease_secs=lease_secs, wait=wait, worker_id=worker_id)

    def _lease(
        self,
        queue: str,
        *,
        lease_secs: float,
        wait: Optional[float],
        worker_id: Optional[str],
        cancel: Optional[Cancel] = None,
    ) -> Optional[Lease]:
        response = self._fetch(
            f"/q/{self._q(queue)}",
            wait=wait,
            lease_secs=lease_secs,
            batch_size=None,
            worker_id=worker_id,
            cancel=cancel,
        )
        if response is None:
            return None
        who = worker_id if worker_id is not None else self.worker_id
        return Lease(
            self,
            queue,
            int(response.headers[JOB_ID_HEADER]),
            response.headers[LEASE_HEADER.lower()],
            _decode(response.body),
            lease_secs,
            who,
            _attempts(response.headers.get(ATTEMPTS_HEADER), 1)[0],
        )

    def lease_batch(
        self,
        queue: str,
        *,
        lease_secs: float,
        batch_size: int = 10,
        wait: Optional[float] = None,
        worker_id: Optional[str] = None,
    ) -> List[Lease]:
        """Up to ``batch_size`` jobs, each on its own lease (``[]`` when none)."""
        response = self._fetch(
            f"/qb/{self._q(queue)}",
            wait=wait,
            lease_secs=lease_secs,
            batch_size=batch_size,
            worker_id=worker_id,
        )
        if response is None:
            return []
        ids = response.headers[JOB_ID_HEADER].split(",")
        tokens = response.headers[LEASE_HEADER.lower()].split(",")
        jobs = [json.loads(text) for text in _decode(response.body)]
        if not len(ids) == len(tokens) == len(jobs):
            raise PresqueError(
                f"a leased batch of {len(jobs)} jobs came with {len(ids)} ids "
                f"and {len(tokens)} tokens",
                response.status,
            )
        who = worker_id if worker_id is not None else self.worker_id
        attempts = _attempts(response.headers.get(ATTEMPTS_HEADER), len(jobs))
        return [
            Lease(self, queue, int(i), t.strip(), job, lease_secs, who, a)
            for i, t, job, a in zip(ids, tokens, jobs, attempts)
        ]

    # -- leases -----------------------------------------------------------------

    def _job_path(self, queue: str, id: int) -> str:
        return f"/q/{self._q(queue)}/{int(id)}"

    def ack(self, queue: str, id: int, token: str) -> None:
        """Acks job ``id`` leased with delivery ``token``: the job is gone."""
        self._request("DELETE", self._job_path(queue, id), headers={LEASE_HEADER: token}, ok=(204,))

    def fail(
        self,
        queue: str,
        id: int,
        token: str,
        *,
        reason: Optional[str] = None,
        delay: Optional[float] = None,
        delayed: Optional[float] = None,
        worker_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Reports job ``id`` (leased with ``token``) failed, with ``reason`` kept
        with the job (control characters other than tab, CR and LF are replaced,
        as the server refuses them; it keeps the first 1,000 characters)."""
        body = b"" if reason is None else encode_job({"error": clean_reason(reason)})
        response = self._request(
            "PUT",
            self._job_path(queue, id),
            query={"delay": delay, "delayed": delayed},
            body=body,
            json_body=reason is not None,
            headers={LEASE_HEADER: token, **self._worker(worker_id)},
        )
        result: Dict[str, Any] = _decode(response.body)
        return result

    def extend(self, queue: str, id: int, token: str, lease_secs: float) -> Dict[str, Any]:
        """The lease on job ``id`` now ends ``lease_secs`` from now."""
        response = self._request(
            "POST",
            self._job_path(queue, id),
            query={"lease": lease_secs},
            headers={LEASE_HEADER: token},
        )
        result: Dict[str, Any] = _decode(response.body)
        return result

    def lookup(self, queue: str, id: int, *, body: bool = False) -> Dict[str, Any]:
        """Where job ``id`` is (``state``, ``attempts``, ``errors``, ...); with
        ``body``, the job itself as ``job``."""
        response = self._request(
            "GET", self._job_path(queue, id), query={"body": 1 if body else None}
        )
        result: Dict[str, Any] = _decode(response.body)
        return result

    # -- queues -----------------------------------------------------------------

    def stats(self, queue: str) -> Dict[str, Any]:
        """``/j/NAME``: ``job_count`` (ready), ``job_failed``, ``job_processed``."""
        result: Dict[str, Any] = _decode(self._request("GET", f"/j/{self._q(queue)}").body)
        return result

    def queues(self) -> List[str]:
        """Every queue's name, sorted (all pages of ``/status/``)."""
        names: List[str] = []
        after: Optional[str] = None
        while True:
            page = _decode(
                self._request("GET", "/status/", query={"limit": 10000, "after": after}).body
            )
            names.extend(page["queues"])
            after = page.get("next")
            if not after:
                return names

    def is_open(self, queue: str) -> bool:
        """Whether fetching from ``queue`` is allowed."""
        page = _decode(self._request("GET", f"/control/{self._q(queue)}").body)
        return bool(page["status"])

    def open(self, queue: str) -> None:
        """Allows fetching from ``queue`` again."""
        self._control(queue, "start")

    def close(self, queue: str) -> None:
        """Refuses fetches from ``queue`` (404 ``queue is closed``); it still takes
        jobs. (To close the client's connections, use :meth:`disconnect`.)"""
        self._control(queue, "stop")

    def _control(self, queue: str, status: str) -> None:
        self._request(
            "POST",
            f"/control/{self._q(queue)}",
            body=encode_job({"status": status}),
            json_body=True,
        )

    def delete_queue(self, queue: str) -> None:
        """Deletes ``queue``: its jobs, keys, counters and open/closed state."""
        self._request("DELETE", f"/q/{self._q(queue)}", ok=(204,))

    def settings(self, queue: str) -> Dict[str, Any]:
        """``max_attempts`` and ``max_jobs`` of ``queue``."""
        result: Dict[str, Any] = _decode(self._request("GET", f"/settings/{self._q(queue)}").body)
        return result

    def update_settings(self, queue: str, **changes: Optional[int]) -> Dict[str, Any]:
        """Sets ``max_attempts=``/``max_jobs=`` (``None``: the server default)."""
        response = self._request(
            "POST", f"/settings/{self._q(queue)}", body=encode_job(changes), json_body=True
        )
        result: Dict[str, Any] = _decode(response.body)
        return result

    # -- dead letters -----------------------------------------------------------

    def dead(
        self, queue: str, *, limit: Optional[int] = None, after: Optional[int] = None
    ) -> Dict[str, Any]:
        """One page of ``queue``'s dead letters: ``{"queue", "jobs", "next"}``,
        each job with ``id``, ``attempts``, ``died_at``, ``reason``, ``errors`` and
        the decoded ``job``. Pass ``after=page["next"]`` for the next page."""
        response = self._request(
            "GET", f"/dead/{self._q(queue)}", query={"limit": limit, "after": after}
        )
        result: Dict[str, Any] = _decode(response.body)
        return result

    def dead_letters(self, queue: str, *, page_size: int = 1000) -> Iterator[Dict[str, Any]]:
        """Every dead letter of ``queue``, oldest id first, a page at a time."""
        after: Optional[int] = None
        while True:
            page = self.dead(queue, limit=page_size, after=after)
            yield from page["jobs"]
            after = page["next"]
            if after is None:
                return

    def retry_dead(self, queue: str, id: Optional[int] = None) -> int:
        """Puts dead letters (all, or job ``id``) back at the tail, attempts reset;
        answers how many."""
        response = self._request("POST", f"/dead/{self._q(queue)}", query={"id": id})
        return int(_decode(response.body)["retried"])

    def purge_dead(self, queue: str, id: Optional[int] = None) -> int:
        """Deletes dead letters (all, or job ``id``); answers how many."""
        response = self._request("DELETE", f"/dead/{self._q(queue)}", query={"id": id})
        return int(_decode(response.body)["purged"])

    # -- workers ----------------------------------------------------------------

    def _worker_id(self, worker_id: Optional[str]) -> str:
        chosen = worker_id if worker_id is not None else self.worker_id
        if not chosen:
            raise ValueError("a worker id is needed: pass worker_id or set Client(worker_id=)")
        return chosen

    def register_worker(self, queue: str, worker_id: Optional[str] = None) -> None:
        """Registers the worker on ``queue`` (its counters start again at 0)."""
        self._request(
            "POST",
            f"/w/{self._q(queue)}",
            headers={WORKER_HEADER: self._worker_id(worker_id)},
            ok=(201,),
        )

    def unregister_worker(self, queue: str, worker_id: Optional[str] = None) -> None:
        """Unregisters the worker from ``queue``."""
        self._request(
            "DELETE",
            f"/w/{self._q(queue)}",
            headers={WORKER_HEADER: self._worker_id(worker_id)},
            ok=(204,),
        )

    def worker_info(self, worker_id: Optional[str] = None) -> Dict[str, Any]:
        """A registered worker's ``started_at``, ``processed`` and ``failed``."""
        response = self._request("GET", "/w/", query={"worker_id": self._worker_id(worker_id)})
        result: Dict[str, Any] = _decode(response.body)
        return result

    def info(self) -> Dict[str, Any]:
        """The server: version, uptime, fsync policy, memory, ..."""
        result: Dict[str, Any] = _decode(self._request("GET", "/info").body)
        return result


# A failure reason the server takes: no control characters but tab, CR and LF.
_CONTROL = {c: "\ufffd" for c in list(range(0x20)) + list(range(0x7F, 0xA0)) if c not in (9, 10, 13)}


def clean_reason(reason: str) -> str:
    """``reason`` with the control characters the server refuses replaced by U+FFFD."""
    return reason.translate(_CONTROL)

