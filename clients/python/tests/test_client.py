"""Client calls against a real server: what goes on the wire and what comes back."""

from __future__ import annotations

import json
import socket
import threading
import time
import unittest
from typing import Any, List

from support import URL, queue_name, raw, raw_json

import presque
from presque import _transport


class Jobs(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL)
        self.queue = queue_name(self)

    def tearDown(self) -> None:
        self.client.disconnect()

    def test_push_sends_compact_utf8_json_and_answers_the_id(self) -> None:
        job = {"to": "a@b.c", "name": "Zoë", "n": [1, 2.5, None, True]}
        id = self.client.push(self.queue, job)
        found = raw_json("GET", f"/q/{self.queue}/{id}?body=1")
        assert isinstance(found, dict)
        self.assertEqual(found["id"], id)
        self.assertEqual(found["state"], "ready")
        # The server hands back the bytes as posted: compact JSON, UTF-8 (not \u00eb).
        status, _, body = raw("GET", f"/q/{self.queue}")
        self.assertEqual(status, 200)
        self.assertEqual(body, json.dumps(job, separators=(",", ":"), ensure_ascii=False).encode())
        self.assertIn("Zoë".encode(), body)

    def test_fetch_decodes_exactly_what_was_posted_by_anyone(self) -> None:
        posted = b'{"b": 1,  "a": [1.50, "\\u00e9"]}'
        status, headers, _ = raw(
            "POST", f"/q/{self.queue}", body=posted, headers={"Content-Type": "application/json"}
        )
        self.assertEqual(status, 201)
        self.assertEqual(self.client.fetch(self.queue), {"b": 1, "a": [1.5, "é"]})

    def test_an_empty_queue_fetches_none(self) -> None:
        self.assertIsNone(self.client.fetch(self.queue))
        self.assertIsNone(self.client.fetch(self.queue, wait=0.2))
        self.assertEqual(self.client.fetch_batch(self.queue), [])
        self.assertIsNone(self.client.lease(self.queue, lease_secs=5))
        self.assertEqual(self.client.lease_batch(self.queue, lease_secs=5), [])
        # Waiting created nothing.
        self.assertNotIn(self.queue, self.client.queues())

    def test_a_long_poll_gets_a_job_pushed_during_its_wait(self) -> None:
        got: List[Any] = []
        waiter = threading.Thread(target=lambda: got.append(self.client.fetch(self.queue, wait=20)))
        waiter.start()
        # Half a second for the waiter to park; were it late, it would find the job
        # ready instead, and the test would still hold.
        time.sleep(0.5)
        presque.Client(URL).push(self.queue, {"late": True})
        waiter.join(timeout=25)
        self.assertEqual(got, [{"late": True}])

    def test_batches_come_back_decoded_twice_with_consecutive_ids(self) -> None:
        jobs = [{"n": 1}, "two", [3], None, 5.5]
        ids = self.client.push_batch(self.queue, jobs)
        self.assertEqual(len(ids), 5)
        self.assertEqual(ids, list(range(ids[0], ids[0] + 5)))
        for id, job in zip(ids, jobs):
            found = raw_json("GET", f"/q/{self.queue}/{id}?body=1")
            assert isinstance(found, dict)
            self.assertEqual(found["job"], job)
        # On the wire GET /qb is an array of JSON texts; the client hides that.
        self.assertEqual(self.client.fetch_batch(self.queue, batch_size=2), jobs[:2])
        self.assertEqual(self.client.fetch_batch(self.queue, batch_size=10), jobs[2:])
        self.assertEqual(self.client.push_batch(self.queue, []), [])

    def test_a_batch_too_big_for_the_id_list_header_still_gets_its_ids(self) -> None:
        # Past 4096 bytes of ids the server sends only X-presque-jobid-range.
        ids = self.client.push_batch(self.queue, list(range(2000)))
        self.assertEqual(ids, list(range(ids[0], ids[0] + 2000)))
        self.assertEqual(self.client.stats(self.queue)["job_count"], 2000)

    def test_delay_and_uniq(self) -> None:
        self.client.push(self.queue, "later", delay=60)
        self.assertIsNone(self.client.fetch(self.queue))
        in_a_moment = self.client.push(self.queue, "soon", delay=0.3)
        self.assertEqual(self.client.fetch(self.queue, wait=10), "soon")
        self.assertEqual(raw("GET", f"/q/{self.queue}/{in_a_moment}")[0], 404)
        self.client.push(self.queue, 1, uniq="user-42")
        with self.assertRaises(presque.BadRequest) as refused:
            self.client.push(self.queue, 2, uniq="user-42")
        self.assertEqual(refused.exception.message, "job already exists")
        self.assertEqual(refused.exception.status, 400)
        with self.assertRaises(presque.BadRequest):
            self.client.push(self.queue, 3, delay=1, delayed=time.time() + 5)

    def test_values_that_are_not_json_are_refused_before_sending(self) -> None:
        with self.assertRaises(ValueError):
            self.client.push(self.queue, float("nan"))
        with self.assertRaises(TypeError):
            self.client.push(self.queue, {1, 2})


class Leases(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL, worker_id="py-lease-test")
        self.queue = queue_name(self)

    def test_ack(self) -> None:
        id = self.client.push(self.queue, {"n": 1})
        lease = self.client.lease(self.queue, lease_secs=30)
        assert lease is not None
        self.assertEqual((lease.id, lease.job, lease.queue), (id, {"n": 1}, self.queue))
        self.assertTrue(lease.token.startswith(f"{id:x}."), lease.token)
        info = lease.lookup()
        self.assertEqual((info["state"], info["attempts"], info["worker_id"]), ("leased", 0, "py-lease-test"))
        lease.ack()
        with self.assertRaises(presque.NotFound) as gone:
            lease.ack()
        self.assertEqual(gone.exception.message, "job not found")

    def test_fail_keeps_the_reason_and_requeues(self) -> None:
        self.client.push(self.queue, "x")
        lease = self.client.lease(self.queue, lease_secs=30)
        assert lease is not None
        where = lease.fail("smtp timeout\nline two\x07")
        self.assertEqual(where["state"], "ready")
        self.assertEqual(where["attempts"], 1)
        [report] = where["errors"]
        self.assertEqual(report["error"], "smtp timeout\nline two\ufffd")
        self.assertEqual(report["worker_id"], "py-lease-test")
        with self.assertRaises(presque.Conflict) as lost:
            lease.ack()
        self.assertEqual(lost.exception.message, "lease is no longer held")
        again = self.client.lease(self.queue, lease_secs=30)
        assert again is not None
        self.assertEqual(again.id, lease.id)
        self.assertNotEqual(again.token, lease.token)
        delayed = again.fail(delay=60)
        self.assertEqual(delayed["state"], "delayed")
        self.assertIsNone(self.client.fetch(self.queue))

    def test_extend_keeps_a_lease_past_its_first_length(self) -> None:
        self.client.push(self.queue, "slow")
        lease = self.client.lease(self.queue, lease_secs=2)
        assert lease is not None
        # 2.1 s in all: past the first 2 s only if the extensions took.
        for _ in range(3):
            time.sleep(0.7)
            extended = lease.extend()
            self.assertEqual(extended["state"], "leased")
        self.assertIsNone(self.client.fetch(self.queue))
        lease.ack()

    def test_an_expired_lease_is_a_conflict_and_the_job_comes_back(self) -> None:
        id = self.client.push(self.queue, "x")
        lease = self.client.lease(self.queue, lease_secs=0.2)
        assert lease is not None
        self.assertEqual(lease.attempts, 0)
        again = self.client.lease(self.queue, lease_secs=30, wait=10)
        assert again is not None
        self.assertEqual(again.id, id)
        self.assertEqual(again.attempts, 1)
        with self.assertRaises(presque.Conflict):
            lease.extend(10)
        with self.assertRaises(presque.Conflict):
            lease.ack()
        self.assertEqual(again.lookup()["attempts"], 1)
        again.ack()

    def test_leased_batches(self) -> None:
        ids = self.client.push_batch(self.queue, ["a", "b", "c"])
        leases = self.client.lease_batch(self.queue, lease_secs=30, batch_size=2)
        self.assertEqual([(l.id, l.job) for l in leases], list(zip(ids[:2], ["a", "b"])))
        self.assertEqual(len({l.token for l in leases}), 2)
        self.assertEqual([l.attempts for l in leases], [0, 0])
        for lease in leases:
            lease.ack()
        self.assertEqual(self.client.fetch_batch(self.queue), ["c"])


class DeadLetters(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL)
        self.queue = queue_name(self)

    def kill(self, job: Any, reason: str) -> int:
        self.client.push(self.queue, job)
        lease = self.client.lease(self.queue, lease_secs=30)
        assert lease is not None
        self.assertEqual(lease.fail(reason)["state"], "dead")
        return lease.id

    def test_list_retry_and_purge(self) -> None:
        self.client.update_settings(self.queue, max_attempts=1)
        self.assertEqual(self.client.settings(self.queue)["max_attempts"], 1)
        first = self.kill({"n": 1}, "broken")
        second = self.kill({"n": 2}, "also broken")
        page = self.client.dead(self.queue)
        self.assertEqual([d["id"] for d in page["jobs"]], [first, second])
        self.assertEqual(page["jobs"][0]["job"], {"n": 1})
        self.assertEqual(page["jobs"][0]["reason"], "failed")
        self.assertEqual(page["jobs"][1]["errors"][0]["error"], "also broken")
        self.assertIsNone(page["next"])
        paged = self.client.dead(self.queue, limit=1)
        self.assertEqual(paged["next"], first)
        self.assertEqual([d["id"] for d in self.client.dead_letters(self.queue, page_size=1)], [first, second])

        self.assertEqual(self.client.retry_dead(self.queue, first), 1)
        self.assertEqual(self.client.fetch(self.queue), {"n": 1})
        with self.assertRaises(presque.NotFound):
            self.client.retry_dead(self.queue, first)
        self.assertEqual(self.client.purge_dead(self.queue), 1)
        self.assertEqual(self.client.dead(self.queue)["jobs"], [])
        self.kill("three", "x")
        self.assertEqual(self.client.retry_dead(self.queue), 1)
        self.assertEqual(self.client.fetch(self.queue), "three")


class Queues(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL)
        self.queue = queue_name(self)

    def test_close_open_and_delete(self) -> None:
        self.client.push(self.queue, 1)
        self.client.close(self.queue)
        self.assertFalse(self.client.is_open(self.queue))
        with self.assertRaises(presque.QueueClosed) as closed:
            self.client.fetch(self.queue)
        self.assertEqual((closed.exception.status, closed.exception.message), (404, "queue is closed"))
        self.assertIsInstance(closed.exception, presque.NotFound)
        self.client.push(self.queue, 2)
        self.client.open(self.queue)
        self.assertTrue(self.client.is_open(self.queue))
        stats = self.client.stats(self.queue)
        self.assertEqual((stats["queue_name"], stats["job_count"]), (self.queue, 2))
        self.assertIn(self.queue, self.client.queues())
        self.client.delete_queue(self.queue)
        self.assertNotIn(self.queue, self.client.queues())

    def test_names_with_reserved_characters_are_one_path_segment(self) -> None:
        name = self.queue + " ?#%é&"
        self.client.push(name, "odd")
        self.assertIn(name, self.client.queues())
        self.assertEqual(self.client.stats(name)["queue_name"], name)
        self.assertEqual(self.client.fetch(name), "odd")

    def test_workers_register_and_unregister(self) -> None:
        worker = presque.Client(URL, worker_id=f"py-{self.queue}")
        worker.register_worker(self.queue)
        self.client.push(self.queue, 1)
        self.assertEqual(worker.fetch(self.queue), 1)
        info = worker.worker_info()
        self.assertEqual((info["worker_id"], info["processed"]), (f"py-{self.queue}", 1))
        worker.unregister_worker(self.queue)
        with self.assertRaises(presque.NotFound) as gone:
            worker.worker_info()
        self.assertEqual(gone.exception.message, "worker not found")


class Errors(unittest.TestCase):
    def setUp(self) -> None:
        self.client = presque.Client(URL)

    def test_the_servers_message_and_status_come_through(self) -> None:
        with self.assertRaises(presque.BadRequest) as bad:
            self.client.push("a/b", 1)
        self.assertEqual(bad.exception.status, 400)
        self.assertEqual(bad.exception.message, "invalid queue name: must not contain '/'")
        self.assertIn("invalid queue name", str(bad.exception))
        with self.assertRaises(presque.BadRequest) as too_long:
            self.client.fetch("q", wait=3600)
        self.assertTrue(too_long.exception.message.startswith("wait must be a number of seconds"))
        with self.assertRaises(presque.BadRequest) as bad_id:
            self.client.register_worker("q", "w" * 256)
        self.assertEqual(bad_id.exception.message, "invalid worker_id: is longer than 255 bytes")
        with self.assertRaises(presque.NotFound):
            self.client.lookup("q", 999_999_999)
        with self.assertRaises(presque.BadRequest) as bad_token:
            self.client.ack("q", 1, "not-a-token")
        self.assertIn("invalid lease token", bad_token.exception.message)

    def test_no_server_is_a_connection_failure(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        nobody = presque.Client(f"http://127.0.0.1:{port}", timeout=2)
        with self.assertRaises(presque.ConnectionFailed) as failed:
            nobody.push("q", 1)
        self.assertIsNone(failed.exception.status)
        self.assertIsInstance(failed.exception, presque.PresqueError)

    def test_bad_urls_are_refused_at_once(self) -> None:
        with self.assertRaises(ValueError):
            presque.Client("ftp://127.0.0.1:5000")

    def test_a_connection_the_server_closed_while_idle_is_replaced(self) -> None:
        # Keep-alive connections idle past keep_alive_secs (5 s) are closed by the
        # server; the client sends again on a new one rather than fail.
        queue = queue_name(self)
        reuse = _transport.IDLE_REUSE_SECS
        _transport.IDLE_REUSE_SECS = 3600.0
        try:
            self.client.push(queue, 1)
            time.sleep(6)
            self.client.push(queue, 2)
        finally:
            _transport.IDLE_REUSE_SECS = reuse
        self.assertEqual(self.client.fetch_batch(queue), [1, 2])


if __name__ == "__main__":
    unittest.main()
