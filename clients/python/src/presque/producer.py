"""A producer that batches: many ``push`` calls, few requests.

Each job costs one request with :meth:`Client.push`; a :class:`Producer` buffers
jobs per queue and sends each queue's buffer as one ``POST /qb/NAME`` when it holds
``batch_size`` jobs (or ``max_batch_bytes`` of them), when its oldest job has waited
``linger`` seconds, or on :meth:`Producer.flush`. ``push`` answers a
:class:`concurrent.futures.Future` that resolves to the job's id once its batch is
sent (or to the error that refused the batch). Jobs of one queue are sent in the
order they were pushed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, Dict, List, Optional, Tuple

from .client import Client, encode_job

__all__ = ["Producer"]


class _Buffer:
    __slots__ = ("jobs", "futures", "bytes", "since")

    def __init__(self) -> None:
        self.jobs: List[bytes] = []
        self.futures: List["Future[int]"] = []
        self.bytes = 0
        self.since = time.monotonic()


_Batch = Tuple[List[bytes], List["Future[int]"]]


class Producer:
    """Batches jobs for ``client``; use as a context manager (or call
    :meth:`close`) so that the last jobs are sent.

    At most ``max_pending`` jobs wait unsent: past that, ``push`` blocks until a
    batch has gone (back-pressure rather than unbounded memory). A batch that fails
    is not sent again (a connection lost mid-request may have created its jobs): its
    futures carry the error, and the next :meth:`flush` raises it.
    """

    def __init__(
        self,
        client: Client,
        *,
        batch_size: int = 100,
        linger: float = 0.2,
        max_batch_bytes: int = 512 * 1024,
        max_pending: Optional[int] = None,
    ) -> None:
        if not 1 <= batch_size <= 100_000:
            raise ValueError("batch_size must be from 1 to 100000")
        self.client = client
        self.batch_size = batch_size
        self.linger = linger
        self.max_batch_bytes = max_batch_bytes
        self.max_pending = max_pending or 10 * batch_size
        self.batches_sent = 0
        self._cond = threading.Condition()
        self._buffers: Dict[str, _Buffer] = {}
        self._pending = 0
        self._sending = 0
        self._flushing = 0
        self._errors: List[BaseException] = []
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # On an exception, send what was buffered but let that exception through.
        self.close(raise_errors=exc is None)

    def push(self, queue: str, job: Any) -> "Future[int]":
        """Buffers ``job`` for ``queue``; the future resolves to its id."""
        encoded = encode_job(job)
        future: "Future[int]" = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the producer is closed")
            self._cond.wait_for(lambda: self._pending < self.max_pending or self._closed)
            if self._closed:
                raise RuntimeError("the producer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="presque-producer", daemon=True
                )
                self._thread.start()
            buffer = self._buffers.get(queue)
            if buffer is None:
                buffer = self._buffers[queue] = _Buffer()
            buffer.jobs.append(encoded)
            buffer.futures.append(future)
            buffer.bytes += len(encoded) + 1
            self._pending += 1
            if self._full(buffer):
                self._cond.notify_all()
            elif len(buffer.jobs) == 1:
                # The sender sleeps until the oldest buffer's linger runs out.
                self._cond.notify_all()
        return future

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything buffered now and waits until it is sent; raises the
        first error of a batch that failed since the last flush."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                done = self._cond.wait_for(
                    lambda: self._pending == 0 and self._sending == 0, timeout
                )
            finally:
                self._flushing -= 1
            errors, self._errors = self._errors, []
        if not done:
            raise TimeoutError("the producer's batches were not sent in time")
        if errors:
            raise errors[0]

    def close(self, raise_errors: bool = True) -> None:
        """Sends what is buffered and stops the sender thread."""
        try:
            self.flush()
        except Exception:
            if raise_errors:
                raise
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()

    def _full(self, buffer: _Buffer) -> bool:
        return len(buffer.jobs) >= self.batch_size or buffer.bytes >= self.max_batch_bytes

    def _chunk_end(self, buffer: _Buffer) -> int:
        """How many of ``buffer``'s first jobs make one batch."""
        end = size = 0
        while end < len(buffer.jobs) and end < self.batch_size:
            if end > 0 and size + len(buffer.jobs[end]) + 1 > self.max_batch_bytes:
                break
            size += len(buffer.jobs[end]) + 1
            end += 1
        return end

    def _take(self, buffer: _Buffer, everything: bool) -> List[_Batch]:
        """The batches to send from ``buffer`` now: every full one, and with
        ``everything`` the partial rest too. Under the lock."""
        batches: List[_Batch] = []
        while buffer.jobs:
            end = self._chunk_end(buffer)
            if end == len(buffer.jobs) and not everything and not self._full(buffer):
                break
            batches.append((buffer.jobs[:end], buffer.futures[:end]))
            del buffer.jobs[:end], buffer.futures[:end]
            buffer.bytes = sum(len(job) + 1 for job in buffer.jobs)
        return batches

    def _run(self) -> None:
        while True:
            with self._cond:
                ready: List[Tuple[str, _Batch]] = []
                while True:
                    now = time.monotonic()
                    urgent = self._flushing > 0 or self._closed
                    for queue, buffer in list(self._buffers.items()):
                        everything = urgent or now - buffer.since >= self.linger
                        ready.extend((queue, batch) for batch in self._take(buffer, everything))
                        if not buffer.jobs:
                            del self._buffers[queue]
                    if ready:
                        count = sum(len(jobs) for _, (jobs, _) in ready)
                        self._pending -= count
                        self._sending += count
                        self._cond.notify_all()
                        break
                    if self._closed:
                        return
                    oldest = min((b.since for b in self._buffers.values()), default=None)
                    self._cond.wait(None if oldest is None else oldest + self.linger - now)
            # One thread sends, in the order batches were cut: a queue's jobs keep
            # their push order.
            for queue, batch in ready:
                self._send(queue, batch)

    def _send(self, queue: str, batch: _Batch) -> None:
        jobs, futures = batch
        try:
            ids = self.client._push_encoded(queue, jobs)
        except BaseException as e:
            for future in futures:
                future.set_exception(e)
            with self._cond:
                self._errors.append(e)
        else:
            for future, id in zip(futures, ids):
                future.set_result(id)
            with self._cond:
                self.batches_sent += 1
        with self._cond:
            self._sending -= len(jobs)
            self._cond.notify_all()
