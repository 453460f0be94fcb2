"""The batching Producer against a real server."""

from __future__ import annotations

import time
import unittest
from typing import List

from support import URL, queue_name

import presque


class Batching(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL)
        self.queue = queue_name(self)

    def test_a_full_batch_goes_at_once_the_rest_on_flush(self) -> None:
        producer = presque.Producer(self.client, batch_size=3, linger=3600)
        futures = [producer.push(self.queue, {"n": n}) for n in range(7)]
        ids = [f.result(timeout=10) for f in futures[:6]]
        self.assertEqual(producer.batches_sent, 2)
        self.assertFalse(futures[6].done())
        self.assertEqual(self.client.stats(self.queue)["job_count"], 6)
        producer.flush()
        ids.append(futures[6].result(timeout=0))
        self.assertEqual(producer.batches_sent, 3)
        self.assertEqual(ids, list(range(ids[0], ids[0] + 7)))
        # In push order, each id naming its job.
        self.assertEqual(self.client.fetch_batch(self.queue, batch_size=10), [{"n": n} for n in range(7)])
        producer.close()

    def test_linger_sends_a_partial_batch_by_itself(self) -> None:
        producer = presque.Producer(self.client, batch_size=1000, linger=0.1)
        first = producer.push(self.queue, "a")
        second = producer.push(self.queue, "b")
        self.assertEqual(second.result(timeout=10), first.result(timeout=10) + 1)
        self.assertEqual(producer.batches_sent, 1)
        producer.close()

    def test_the_context_manager_flushes_every_queue(self) -> None:
        other = self.queue + "-other"
        with presque.Producer(self.client, batch_size=100, linger=3600) as producer:
            for n in range(5):
                producer.push(self.queue, n)
                producer.push(other, -n)
        self.assertEqual(self.client.fetch_batch(self.queue), [0, 1, 2, 3, 4])
        self.assertEqual(self.client.fetch_batch(other), [0, -1, -2, -3, -4])
        with self.assertRaises(RuntimeError):
            producer.push(self.queue, "after close")

    def test_batches_stay_under_max_batch_bytes(self) -> None:
        big = "x" * 1000
        with presque.Producer(self.client, batch_size=100, max_batch_bytes=4500, linger=3600) as producer:
            futures = [producer.push(self.queue, big) for _ in range(10)]
        self.assertEqual([f.result() for f in futures], list(range(futures[0].result(), futures[0].result() + 10)))
        # Four jobs of 1,003 bytes a batch.
        self.assertEqual(producer.batches_sent, 3)

    def test_a_refused_batch_fails_its_futures_and_the_flush(self) -> None:
        producer = presque.Producer(self.client, batch_size=10, linger=3600)
        good = producer.push(self.queue, 1)
        bad = producer.push("bad/name", 2)
        with self.assertRaises(presque.BadRequest) as refused:
            producer.flush()
        self.assertIn("invalid queue name", refused.exception.message)
        self.assertIsInstance(bad.exception(timeout=0), presque.BadRequest)
        self.assertIsInstance(good.result(timeout=0), int)
        # The error was reported once; the producer goes on.
        producer.push(self.queue, 3)
        producer.flush()
        producer.close()
        self.assertEqual(self.client.fetch_batch(self.queue), [1, 3])

    def test_many_threads_pushing(self) -> None:
        import threading

        producer = presque.Producer(self.client, batch_size=50, linger=0.05, max_pending=100)
        got: List[int] = []

        def push(offset: int) -> None:
            for n in range(200):
                producer.push(self.queue, offset + n)

        threads = [threading.Thread(target=push, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer.close()
        while True:
            batch = self.client.fetch_batch(self.queue, batch_size=1000)
            if not batch:
                break
            got.extend(batch)
        self.assertEqual(sorted(got), sorted(k * 1000 + n for k in range(4) for n in range(200)))
        # Each thread's jobs kept their order.
        for k in range(4):
            mine = [n for n in got if k * 1000 <= n < (k + 1) * 1000]
            self.assertEqual(mine, sorted(mine))


if __name__ == "__main__":
    unittest.main()
