"""A worker loop: lease a job, run a handler on it, ack or report the failure.

``Worker(client, "emails", send_email).run()`` registers the worker, long-polls the
queue with a lease, calls ``send_email(job)`` for each job, acks when it returns and
reports a failure (the traceback's tail as the reason) when it raises. While the
handler runs, a heartbeat extends the lease, so a job may take longer than
``lease_secs`` without being handed to another worker; if the worker dies, the
lease runs out and the job is handed out again. Connection errors and a busy server
(429, 503, 507) are retried with capped exponential backoff and jitter. ``stop()``
(or SIGTERM, with :meth:`Worker.install_signal_handlers`) ends the long-polls at
once, lets running handlers finish and ack, and unregisters.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

from ._transport import Cancel
from .client import Client, Lease
from .errors import ConnectionFailed, Conflict, NotFound, PresqueError, ServerBusy, TooManyRequests

__all__ = ["Worker", "Backoff", "failure_reason", "default_worker_id"]

log = logging.getLogger("presque.worker")

# The server keeps the first 1,000 characters of a reason: send the last ones, where
# a traceback names the exception.
MAX_REASON_CHARS = 1000


def failure_reason(error: BaseException) -> str:
    """The tail of ``error``'s traceback, at most 1,000 characters: what the server
    keeps with the failed job."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
    if len(text) > MAX_REASON_CHARS:
        text = "..." + text[-(MAX_REASON_CHARS - 3) :]
    return text


def default_worker_id() -> str:
    """``HOST-PID-RANDOM``, in the characters a worker id may have (printable ASCII,
    no ``/``, no spaces)."""
    raw = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    cleaned = "".join(c if "!" <= c <= "~" and c != "/" else "-" for c in raw)
    return cleaned[-255:]


class Backoff:
    """Delays after consecutive failures: doubling from ``base`` up to ``cap``
    seconds, each drawn between half and all of that ("equal jitter", so a fleet
    that failed together does not retry together), and never below the server's
    ``Retry-After``."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng

    def next(self, floor: Optional[float] = None) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures, 64))
        self.failures += 1
        delay = ceiling / 2 + self._rng() * ceiling / 2
        return max(delay, floor or 0.0)

    def reset(self) -> None:
        self.failures = 0


class _Held:
    __slots__ = ("lease", "next_at", "lost")

    def __init__(self, lease: Lease, next_at: float) -> None:
        self.lease = lease
        self.next_at = next_at
        self.lost = False


class _Heartbeat:
    """One thread extending every lease the worker holds, each ``every`` seconds."""

    def __init__(self, lease_secs: float, every: float) -> None:
        self.lease_secs = lease_secs
        self.every = every
        self._cond = threading.Condition()
        self._held: Dict[int, _Held] = {}
        self._closed = False
        self.extensions = 0

    def add(self, lease: Lease) -> _Held:
        held = _Held(lease, time.monotonic() + self.every)
        with self._cond:
            self._held[id(held)] = held
            self._cond.notify()
        return held

    def remove(self, held: _Held) -> None:
        with self._cond:
            self._held.pop(id(held), None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                due: List[_Held] = []
                while not self._closed:
                    now = time.monotonic()
                    due = [h for h in self._held.values() if h.next_at <= now]
                    if due:
                        break
                    soonest = min((h.next_at for h in self._held.values()), default=None)
                    self._cond.wait(None if soonest is None else soonest - now)
                if self._closed:
                    return
            for held in due:
                self._extend(held)

    def _extend(self, held: _Held) -> None:
        lease = held.lease
        try:
            lease.extend(self.lease_secs)
            self.extensions += 1
            held.next_at = time.monotonic() + self.every
        except (Conflict, NotFound) as e:
            # The lease ran out (or the job was purged): someone else may be doing
            # it now. The handler finishes; its ack will be refused.
            log.warning("lost the lease on job %s of %r: %s", lease.id, lease.queue, e.message)
            held.lost = True
            self.remove(held)
        except PresqueError as e:
            log.warning("could not extend the lease on job %s: %s", lease.id, e)
            held.next_at = time.monotonic() + min(self.every, 1.0)


Handler = Callable[[Any], Any]


class Worker:
    """Runs ``handler`` on the jobs of ``queue``, ``concurrency`` at a time.

    The handler gets the decoded job (or, with ``with_lease=True``, the
    :class:`~presque.client.Lease`, whose ``job``, ``id`` and ``lookup()`` it can
    read). Returning acks the job; raising reports it failed with the traceback's
    tail as the reason (the server retries it, or moves it to the dead letters after
    ``max_attempts``).

    ``wait`` is each long-poll's length (keep it within the server's
    ``max_wait_secs``, 30 by default); ``extend_every`` how often a running job's
    lease is extended (default: a third of ``lease_secs``).
    """

    def __init__(
        self,
        client: Client,
        queue: str,
        handler: Handler,
        *,
        lease_secs: float = 30.0,
        concurrency: int = 1,
        worker_id: Optional[str] = None,
        wait: float = 20.0,
        extend_every: Optional[float] = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        with_lease: bool = False,
        register: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_secs <= 0:
            raise ValueError("lease_secs must be more than 0")
        self.client = client
        self.queue = queue
        self.handler = handler
        self.lease_secs = lease_secs
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.wait = wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.with_lease = with_lease
        self.register = register
        self.processed = 0
        self.failed = 0
        self.lost = 0
        #: An unexpected exception that stopped the worker (re-raised by :meth:`run`).
        self.error: Optional[BaseException] = None
        self._heartbeat = _Heartbeat(lease_secs, extend_every or lease_secs / 3)
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._cancels: List[Cancel] = []
        self._supervisor: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"Worker({self.queue!r}, worker_id={self.worker_id!r})"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        """Starts the worker in background threads; see :meth:`stop`, :meth:`join`."""
        if self._supervisor is not None:
            raise RuntimeError("a worker starts once")
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"presque-worker-{self.queue}", daemon=True
        )
        self._supervisor.start()

    def run(self) -> None:
        """Starts the worker and blocks until it has stopped (see :meth:`stop` and
        :meth:`install_signal_handlers`); re-raises an error that stopped it."""
        self.start()
        # Short waits so that the main thread runs signal handlers promptly.
        while not self._done.wait(0.2):
            pass
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Asks the worker to stop: no new job is taken, long-polls end at once,
        running handlers finish and are acked (or failed), then it unregisters.
        Safe to call from a signal handler; returns at once (see :meth:`join`)."""
        self._stopping.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits for the worker to have stopped; False if ``timeout`` ran out."""
        return self._done.wait(timeout)

    def install_signal_handlers(
        self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Makes ``signals`` (by default SIGTERM and SIGINT) stop the worker
        gracefully. Call from the main thread."""
        for number in signals:
            signal.signal(number, lambda _signum, _frame: self.stop())

    # -- threads ----------------------------------------------------------------

    def _supervise(self) -> None:
        registered = False
        threads: List[threading.Thread] = []
        beat = threading.Thread(target=self._beat, name="presque-heartbeat", daemon=True)
        try:
            if self.register:
                registered = self._retrying(
                    "register", lambda: self.client.register_worker(self.queue, self.worker_id)
                )
            if self._stopping.is_set():
                return
            beat.start()
            for n in range(self.concurrency):
                cancel = Cancel()
                with self._lock:
                    self._cancels.append(cancel)
                thread = threading.Thread(
                    target=self._guarded,
                    args=(cancel,),
                    name=f"presque-worker-{self.queue}-{n}",
                    daemon=True,
                )
                thread.start()
                threads.append(thread)
            self._stopping.wait()
            with self._lock:
                for cancel in self._cancels:
                    cancel.cancel()
            for thread in threads:
                thread.join()
        except BaseException as e:  # noqa: B902 - reported through run()
            self.error = self.error or e
            self._stopping.set()
        finally:
            self._heartbeat.close()
            if beat.is_alive():
                beat.join()
            if registered:
                try:
                    self.client.unregister_worker(self.queue, self.worker_id)
                except PresqueError as e:
                    log.warning("could not unregister %s from %r: %s", self.worker_id, self.queue, e)
            self._done.set()

    def _beat(self) -> None:
        try:
            self._heartbeat.run()
        finally:
            self.client._transport.release()

    def _retrying(self, what: str, call: Callable[[], None]) -> bool:
        """Runs ``call`` until it succeeds, backing off on transient errors; False if
        the worker was stopped first. Other errors propagate."""
        backoff = Backoff(self.backoff_base, self.backoff_cap)
        while not self._stopping.is_set():
            try:
                call()
                return True
            except (ConnectionFailed, ServerBusy, TooManyRequests) as e:
                delay = backoff.next(e.retry_after)
                log.warning("%s failed (%s); retrying in %.2f s", what, e, delay)
                self._stopping.wait(delay)
        return False

    def _guarded(self, cancel: Cancel) -> None:
        try:
            self._poll(cancel)
        except BaseException as e:  # noqa: B902 - reported through run()
            log.exception("worker thread stopped by an unexpected error")
            with self._lock:
                self.error = self.error or e
            self._stopping.set()
        finally:
            self.client._transport.release()

    def _poll(self, cancel: Cancel) -> None:
        backoff = Backoff(self.backoff_base, self.backoff_cap)
        while not self._stopping.is_set():
            try:
                lease = self.client._lease(
                    self.queue,
                    lease_secs=self.lease_secs,
                    wait=self.wait,
                    worker_id=self.worker_id,
                    cancel=cancel,
                )
            except PresqueError as e:
                if self._stopping.is_set():
                    return
                delay = backoff.next(e.retry_after)
                # A closed queue, a busy or unreachable server: wait and ask again.
                # Anything else (a bad token, a wait over max_wait_secs) will not heal
                # by itself: say so louder, and keep trying as slowly.
                transient = isinstance(e, (ConnectionFailed, ServerBusy, TooManyRequests, NotFound))
                log.log(
                    logging.WARNING if transient else logging.ERROR,
                    "fetching from %r failed (%s); retrying in %.2f s",
                    self.queue,
                    e,
                    delay,
                )
                self._stopping.wait(delay)
                continue
            backoff.reset()
            if lease is not None:
                self._handle(lease)

    def _handle(self, lease: Lease) -> None:
        held = self._heartbeat.add(lease)
        reason: Optional[str] = None
        try:
            self.handler(lease if self.with_lease else lease.job)
        except Exception as e:
            reason = failure_reason(e)
            log.info("job %s of %r failed: %s", lease.id, self.queue, e)
        finally:
            self._heartbeat.remove(held)
        if held.lost:
            with self._lock:
                self.lost += 1
            return
        done = self._settle(lease, reason)
        with self._lock:
            if not done:
                self.lost += 1
            elif reason is None:
                self.processed += 1
            else:
                self.failed += 1

    def _settle(self, lease: Lease, reason: Optional[str]) -> bool:
        """Acks (or fails) ``lease``, retrying transient errors while the lease may
        still be held; False if it was lost."""
        backoff = Backoff(self.backoff_base, min(self.backoff_cap, self.lease_secs))
        give_up = time.monotonic() + self.lease_secs
        while True:
            try:
                if reason is None:
                    lease.ack()
                else:
                    lease.fail(reason)
                return True
            except (Conflict, NotFound) as e:
                log.warning("job %s of %r: %s; dropping the result", lease.id, self.queue, e.message)
                return False
            except (ConnectionFailed, ServerBusy) as e:
                delay = backoff.next(e.retry_after)
                if time.monotonic() + delay > give_up:
                    log.warning("could not settle job %s (%s); its lease will run out", lease.id, e)
                    return False
                time.sleep(delay)
            except PresqueError as e:
                log.error("could not settle job %s of %r: %s", lease.id, self.queue, e)
                return False
