"""The Worker loop against a real server: acks, failure reports, lease extension,
backoff, graceful stop (also by SIGTERM, in a separate process)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from typing import Any, Callable, List

from support import SRC, URL, queue_name, raw

import presque


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


class WorkerLoop(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL)
        self.queue = queue_name(self)
        self.workers: List[presque.Worker] = []

    def tearDown(self) -> None:
        for worker in self.workers:
            worker.stop()
            self.assertTrue(worker.join(30), "the worker did not stop")
            self.assertIsNone(worker.error)
        self.client.disconnect()

    def worker(self, handler: Callable[[Any], Any], **options: Any) -> presque.Worker:
        options.setdefault("wait", 1)
        options.setdefault("lease_secs", 10)
        worker = presque.Worker(presque.Client(URL), self.queue, handler, **options)
        self.workers.append(worker)
        worker.start()
        return worker

    def test_processes_every_job_and_acks_it(self) -> None:
        ids = self.client.push_batch(self.queue, [{"n": n} for n in range(20)])
        seen: List[int] = []
        lock = threading.Lock()

        def handle(job: Any) -> None:
            with lock:
                seen.append(job["n"])

        worker = self.worker(handle, concurrency=3, worker_id=f"py-{self.queue}")
        self.assertTrue(eventually(lambda: worker.processed == 20))
        self.assertEqual(sorted(seen), list(range(20)))
        for id in ids:
            # Acked: gone, not merely handed out.
            self.assertEqual(raw("GET", f"/q/{self.queue}/{id}")[0], 404)
        info = self.client.worker_info(f"py-{self.queue}")
        self.assertEqual(info["processed"], 20)
        self.assertEqual(worker.failed, 0)

    def test_a_raising_handler_fails_the_job_with_its_traceback(self) -> None:
        id = self.client.push(self.queue, {"to": "nobody"})
        attempts: List[Any] = []

        def handle(job: Any) -> None:
            attempts.append(job)
            raise ValueError(f"cannot send to {job['to']}")

        worker = self.worker(handle, worker_id=f"py-{self.queue}")
        self.assertTrue(eventually(lambda: worker.failed >= 1))
        worker.stop()
        self.assertTrue(worker.join(30))
        info = self.client.lookup(self.queue, id)
        self.assertGreaterEqual(info["attempts"], 1)
        report = info["errors"][0]
        self.assertEqual(report["worker_id"], f"py-{self.queue}")
        self.assertTrue(report["error"].startswith("Traceback"), report["error"])
        self.assertTrue(report["error"].endswith("ValueError: cannot send to nobody"), report["error"])
        self.assertEqual(worker.processed, 0)

    def test_a_long_job_keeps_its_lease(self) -> None:
        id = self.client.push(self.queue, "slow")
        calls: List[Any] = []

        def handle(job: Any) -> None:
            calls.append(job)
            # Over twice the lease: without extensions it would run out twice.
            time.sleep(3.2)

        other: List[Any] = []
        worker = self.worker(handle, lease_secs=1.5)
        self.assertTrue(eventually(lambda: worker.processed == 1))
        # Had the lease run out, another fetch would have got the job meanwhile.
        other.append(self.client.fetch(self.queue))
        self.assertEqual(other, [None])
        self.assertEqual(calls, ["slow"])
        self.assertGreaterEqual(worker._heartbeat.extensions, 2)
        self.assertEqual(raw("GET", f"/q/{self.queue}/{id}")[0], 404)

    def test_a_handler_that_loses_its_lease_has_its_result_dropped(self) -> None:
        id = self.client.push(self.queue, "x")
        stolen: List[presque.Lease] = []

        def handle(job: Any) -> None:
            # The lease runs out (no extension in time) and another worker takes it.
            lease = self.client.lease(self.queue, lease_secs=30, wait=10)
            assert lease is not None
            stolen.append(lease)

        with self.assertLogs("presque.worker", "WARNING") as logs:
            worker = self.worker(handle, lease_secs=0.2, extend_every=60)
            self.assertTrue(eventually(lambda: worker.lost == 1))
        self.assertIn("lease is no longer held; dropping the result", logs.output[-1])
        self.assertEqual(worker.processed, 0)
        self.assertEqual([l.id for l in stolen], [id])
        self.assertEqual(self.client.lookup(self.queue, id)["state"], "leased")
        stolen[0].ack()

    def test_with_lease_the_handler_gets_the_lease(self) -> None:
        id = self.client.push(self.queue, [1])
        got: List[presque.Lease] = []
        worker = self.worker(got.append, with_lease=True)
        self.assertTrue(eventually(lambda: worker.processed == 1))
        self.assertEqual([(l.id, l.job, l.queue) for l in got], [(id, [1], self.queue)])

    def test_stop_ends_a_long_poll_at_once_and_unregisters(self) -> None:
        worker = self.worker(lambda job: None, wait=25, worker_id=f"py-{self.queue}")
        self.assertTrue(eventually(lambda: raw("GET", f"/w/?worker_id=py-{self.queue}")[0] == 200))
        time.sleep(0.3)
        worker.stop()
        # Well under the 25 s the long-poll would otherwise last.
        self.assertTrue(worker.join(10), "stop did not end the long-poll")
        self.assertEqual(raw("GET", f"/w/?worker_id=py-{self.queue}")[0], 404)
        # The abandoned long-poll took nothing: a job posted now stays.
        self.client.push(self.queue, "after")
        self.assertEqual(self.client.fetch(self.queue), "after")

    def test_stop_lets_the_running_job_finish_and_acks_it(self) -> None:
        id = self.client.push(self.queue, "in hand")
        self.client.push(self.queue, "not taken")
        started = threading.Event()
        release = threading.Event()

        def handle(job: Any) -> None:
            started.set()
            release.wait(30)

        worker = self.worker(handle)
        self.assertTrue(started.wait(20))
        worker.stop()
        self.assertFalse(worker.join(0.3), "stopped before its job was done")
        release.set()
        self.assertTrue(worker.join(20))
        self.assertEqual(worker.processed, 1)
        self.assertEqual(raw("GET", f"/q/{self.queue}/{id}")[0], 404)
        self.assertEqual(self.client.fetch(self.queue), "not taken")

    def test_a_closed_queue_is_waited_out(self) -> None:
        self.client.push(self.queue, "held")
        self.client.close(self.queue)
        worker = self.worker(lambda job: None, backoff_base=0.05, backoff_cap=0.2)
        time.sleep(0.5)
        self.assertEqual(worker.processed, 0)
        self.client.open(self.queue)
        self.assertTrue(eventually(lambda: worker.processed == 1))

    def test_an_unreachable_server_is_retried_with_backoff(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        nowhere = presque.Client(f"http://127.0.0.1:{port}", timeout=1)
        for register, what in ((True, "register failed"), (False, "fetching from")):
            worker = presque.Worker(
                nowhere,
                self.queue,
                lambda job: None,
                backoff_base=0.01,
                backoff_cap=0.05,
                register=register,
            )
            with self.assertLogs("presque.worker", "WARNING") as logs:
                worker.start()
                eventually(lambda: len(logs.output) >= 2, timeout=10)
                worker.stop()
                self.assertTrue(worker.join(10))
            # Kept retrying rather than dying.
            self.assertIsNone(worker.error)
            retries = [line for line in logs.output if what in line and "Connection refused" in line]
            self.assertGreaterEqual(len(retries), 2, logs.output)

    def test_a_refused_registration_stops_the_worker(self) -> None:
        # Registration refused for good (not a transient error): the worker stops
        # and run() raises what the server said.
        worker = presque.Worker(
            presque.Client(URL), self.queue, lambda job: None, worker_id="w" * 300
        )
        with self.assertRaises(presque.BadRequest) as refused:
            worker.run()
        self.assertIn("invalid worker_id", refused.exception.message)


class BackoffSchedule(unittest.TestCase):
    def test_doubles_with_jitter_up_to_the_cap_and_honours_retry_after(self) -> None:
        low = presque.Backoff(base=0.5, cap=4.0, rng=lambda: 0.0)
        self.assertEqual([low.next() for _ in range(6)], [0.25, 0.5, 1.0, 2.0, 2.0, 2.0])
        high = presque.Backoff(base=0.5, cap=4.0, rng=lambda: 1.0)
        self.assertEqual([high.next() for _ in range(5)], [0.5, 1.0, 2.0, 4.0, 4.0])
        self.assertEqual(high.next(floor=10.0), 10.0)
        high.reset()
        self.assertEqual(high.next(), 0.5)
        for _ in range(2000):
            high.next()
        self.assertEqual(high.next(), 4.0)


class Reasons(unittest.TestCase):
    def test_the_tail_of_the_traceback_fits_what_the_server_keeps(self) -> None:
        try:
            raise RuntimeError("x" * 5000 + " the end")
        except RuntimeError as e:
            reason = presque.failure_reason(e)
        self.assertEqual(len(reason), 1000)
        self.assertTrue(reason.startswith("..."))
        self.assertTrue(reason.endswith(" the end"))


SIGTERM_WORKER = """
import sys, time, presque
client = presque.Client(sys.argv[1])
def handle(job):
    print("started", flush=True)
    time.sleep(1.0)
    print("finished", flush=True)
worker = presque.Worker(client, sys.argv[2], handle, worker_id=sys.argv[3], wait=25, lease_secs=10)
worker.install_signal_handlers()
worker.run()
print("stopped", worker.processed, flush=True)
"""


@unittest.skipIf(os.name != "posix", "signals")
class Sigterm(unittest.TestCase):
    def test_sigterm_mid_job_finishes_the_job_then_exits(self) -> None:
        client = presque.Client(URL)
        queue = queue_name(self)
        worker_id = f"py-{queue}"
        first = client.push(queue, 1)
        client.push(queue, 2)
        env = dict(os.environ, PYTHONPATH=SRC)
        process = subprocess.Popen(
            [sys.executable, "-c", SIGTERM_WORKER, URL, queue, worker_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert process.stdout is not None
            self.assertEqual(process.stdout.readline().strip(), "started")
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.assertEqual(process.returncode, 0, err)
        self.assertEqual(out.split("\n")[:2], ["finished", "stopped 1"], err)
        self.assertEqual(raw("GET", f"/q/{queue}/{first}")[0], 404)
        self.assertEqual(client.fetch(queue), 2)
        self.assertEqual(raw("GET", f"/w/?worker_id={worker_id}")[0], 404)


if __name__ == "__main__":
    unittest.main()
