"""Bearer tokens against a server with auth on: each role's calls, and refusals
carrying the server's message."""

from __future__ import annotations

import unittest
from typing import List

from support import auth_url, queue_name, tokens

import presque


class Auth(unittest.TestCase):
    def setUp(self) -> None:
        self.queue = queue_name(self)
        self.tokens = tokens()

    def client(self, role: str) -> presque.Client:
        return presque.Client(auth_url(), self.tokens[role])

    def test_no_token_is_unauthorized(self) -> None:
        # An explicit empty token: no Authorization header, whatever $PRESQUE_TOKEN says.
        anonymous = presque.Client(auth_url(), "")
        with self.assertRaises(presque.Unauthorized) as refused:
            anonymous.push(self.queue, 1)
        self.assertEqual(refused.exception.status, 401)
        self.assertTrue(refused.exception.message.startswith("authentication required"))
        with self.assertRaises(presque.Unauthorized) as wrong:
            presque.Client(auth_url(), "not-a-token-of-this-server").push(self.queue, 1)
        self.assertEqual(wrong.exception.message, "invalid bearer token")

    def test_each_role_does_its_part(self) -> None:
        producer, consumer, admin = (self.client(r) for r in ("producer", "consumer", "admin"))
        producer.push(self.queue, {"n": 1})
        with self.assertRaises(presque.Forbidden) as forbidden:
            producer.fetch(self.queue)
        self.assertEqual(forbidden.exception.status, 403)
        self.assertIn("consumer", forbidden.exception.message)
        lease = consumer.lease(self.queue, lease_secs=30)
        assert lease is not None
        self.assertEqual(lease.job, {"n": 1})
        lease.extend(30)
        lease.ack()
        with self.assertRaises(presque.Forbidden):
            consumer.close(self.queue)
        admin.close(self.queue)
        admin.open(self.queue)
        self.assertEqual(admin.dead(self.queue)["jobs"], [])
        self.assertEqual(consumer.stats(self.queue)["job_processed"], 1)

    def test_a_worker_with_a_consumer_token(self) -> None:
        self.client("producer").push_batch(self.queue, [1, 2, 3])
        seen: List[int] = []
        worker = presque.Worker(
            self.client("consumer"), self.queue, seen.append, lease_secs=10, wait=1
        )
        worker.start()
        try:
            for _ in range(200):
                if len(seen) == 3:
                    break
                worker.join(0.05)
        finally:
            worker.stop()
            self.assertTrue(worker.join(10))
        self.assertIsNone(worker.error)
        self.assertEqual(sorted(seen), [1, 2, 3])
        self.assertEqual(worker.processed, 3)


if __name__ == "__main__":
    unittest.main()
