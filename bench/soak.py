#!/usr/bin/env python3
"""Soak: mixed load on the real server under `fsync = "always"`, with a SIGKILL and a
restart on the same data every KILL_EVERY seconds, plus bad input and slow clients,
then an audit. Started by `bench/soak`; the figures go in RELIABILITY.md.

What it checks at the end, after draining the queue:
  - lost: a job whose POST was answered 201 that was never acked, taken or drained,
    beyond what requests cut by a kill explain: an ack cut short (its job may be gone,
    as acked) or a plain GET cut short (at most once: its job may be gone with it, as
    the README says), which are counted;
  - twice: a job handed out by a plain GET (at most once) more than once, or acked
    (204) more than once, or both acked and handed out by a plain GET;
  - RSS: the server's resident memory, sampled every second, stays bounded.
Requests cut by a kill have no known outcome and are not counted either way.
"""

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "presque")
SECS = int(os.environ.get("SOAK_SECS", "600"))
KILL_EVERY = int(os.environ.get("SOAK_KILL_EVERY", "45"))
PRODUCERS, LEASERS, TAKERS = 6, 3, 2
QUEUE = "soak"


class Server:
    def __init__(self, data):
        self.data, self.proc, self.port = data, None, None
        self.lock = threading.Lock()
        self.rss_max = 0
        self.restarts = 0

    def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [BIN, "--bind", f"127.0.0.1:{port}", "--data-dir", self.data, "--fsync", "always"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(os.path.dirname(self.data), "server.log"), "a"),
            # Its own directory: no ./config.toml of the checkout is read.
            cwd=os.path.dirname(self.data))
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/status/")
                if c.getresponse().status == 200:
                    self.port = port
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self):
        with self.lock:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.restarts += 1
            self.start()

    def sample_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss_max = max(self.rss_max, int(line.split()[1]) * 1024)
        except OSError:
            pass


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.posted = set()      # 201-answered job numbers
        self.acked = {}          # number -> count of 204 acks
        self.taken = {}          # number -> count of plain-GET hand-outs
        self.maybe_acked = set() # jobs whose ack a kill cut short
        self.cut_takes = 0       # plain GETs a kill cut short (their job unknown)
        self.counts = {"post": 0, "lease": 0, "ack": 0, "take": 0, "bad": 0, "slow": 0,
                       "cut": 0}

    def add(self, table, n):
        with self.lock:
            table[n] = table.get(n, 0) + 1


class Down(Exception):
    """The server was not listening: nothing was sent."""


def request(server, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        try:
            c.connect()
        except OSError as e:
            time.sleep(0.05)
            raise Down() from e
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def request_retrying(server, method, path, body=None, headers=None):
    """As `request`, waiting out a restart (an ack must reach the server that holds
    the lease, or its successor)."""
    deadline = time.time() + 120
    while True:
        try:
            return request(server, method, path, body, headers)
        except Down:
            if time.time() > deadline:
                raise


def producer(server, ledger, stop, start_n, step):
    n = start_n
    while not stop.is_set():
        try:
            status, _, _ = request(server, "POST", f"/q/{QUEUE}", json.dumps({"n": n}),
                                   {"Content-Type": "application/json"})
            if status == 201:
                with ledger.lock:
                    ledger.posted.add(n)
                    ledger.counts["post"] += 1
        except Down:
            continue
        except OSError:
            ledger.counts["cut"] += 1
        n += step


def leaser(server, ledger, stop):
    while not stop.is_set():
        try:
            status, body, headers = request(server, "GET", f"/q/{QUEUE}?lease=5&wait=1")
            if status != 200:
                continue
            ledger.counts["lease"] += 1
            job = json.loads(body)["n"]
            jid, token = headers["x-presque-jobid"], headers["x-presque-lease"]
        except Down:
            continue
        except (OSError, KeyError, ValueError):
            ledger.counts["cut"] += 1
            continue
        try:
            status, _, _ = request_retrying(server, "DELETE", f"/q/{QUEUE}/{jid}",
                                            headers={"X-presque-lease": token})
            if status == 204:
                ledger.add(ledger.acked, job)
                ledger.counts["ack"] += 1
        except OSError:
            ledger.counts["cut"] += 1
            with ledger.lock:
                ledger.maybe_acked.add(job)


def taker(server, ledger, stop):
    while not stop.is_set():
        try:
            status, body, _ = request(server, "GET", f"/q/{QUEUE}?wait=1")
            if status == 200:
                ledger.add(ledger.taken, json.loads(body)["n"])
                ledger.counts["take"] += 1
        except Down:
            continue
        except (OSError, ValueError):
            ledger.counts["cut"] += 1
            with ledger.lock:
                ledger.cut_takes += 1


def noise(server, ledger, stop):
    bad = [("POST", f"/q/{QUEUE}", b"{not json", {"Content-Type": "application/json"}),
           ("POST", "/q/%ff", b"1", {"Content-Type": "application/json"}),
           ("GET", f"/q/{QUEUE}?lease=-1", None, {}),
           ("POST", f"/q/{QUEUE}?bogus=1", b"1", {"Content-Type": "application/json"}),
           ("DELETE", f"/q/{QUEUE}/1", None, {"X-presque-lease": "zz"})]
    slow = []
    while not stop.is_set():
        method, path, body, headers = random.choice(bad)
        try:
            request(server, method, path, body, headers)
            ledger.counts["bad"] += 1
            # A slow client: headers and half a body, then silence.
            s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
            s.sendall(f"POST /q/{QUEUE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 100\r\n\r\n{\"n\":".encode())
            slow.append(s)
            ledger.counts["slow"] += 1
        except (OSError, Down):
            pass
        while len(slow) > 50:
            slow.pop(0).close()
        time.sleep(0.05)
    for s in slow:
        s.close()


def drain(server, ledger):
    """Everything left: plain GETs until the queue is empty, twice, with a wait for
    leases handed out before the last kill to run out and come back."""
    drained = {}
    for _ in range(2):
        while True:
            status, body, _ = request_retrying(server, "GET", f"/q/{QUEUE}")
            if status != 200:
                break
            n = json.loads(body)["n"]
            drained[n] = drained.get(n, 0) + 1
        time.sleep(6)
    return drained


def main():
    work = tempfile.mkdtemp(prefix="presque-soak-")
    server = Server(os.path.join(work, "data"))
    server.start()
    ledger, stop = Ledger(), threading.Event()
    threads = [threading.Thread(target=producer, args=(server, ledger, stop, i, PRODUCERS))
               for i in range(PRODUCERS)]
    threads += [threading.Thread(target=leaser, args=(server, ledger, stop)) for _ in range(LEASERS)]
    threads += [threading.Thread(target=taker, args=(server, ledger, stop)) for _ in range(TAKERS)]
    threads.append(threading.Thread(target=noise, args=(server, ledger, stop)))
    for t in threads:
        # Daemons: if the audit itself fails, the process still ends.
        t.daemon = True
        t.start()
    started, last_kill = time.time(), time.time()
    while time.time() - started < SECS:
        time.sleep(1)
        server.sample_rss()
        if time.time() - last_kill >= KILL_EVERY:
            server.kill()
            last_kill = time.time()
    stop.set()
    for t in threads:
        t.join()
    drained = drain(server, ledger)
    seen = set(ledger.acked) | set(ledger.taken) | set(drained)
    missing = sorted(ledger.posted - seen - ledger.maybe_acked)
    unexplained = max(0, len(missing) - ledger.cut_takes)

    def handed_twice(n):
        plain = ledger.taken.get(n, 0) + drained.get(n, 0)
        acked = ledger.acked.get(n, 0)
        return acked > 1 or plain > 1 or (acked and plain)

    twice = sorted(n for n in seen if handed_twice(n))
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait()
    print(json.dumps({
        "seconds": SECS, "kills": server.restarts, "requests": ledger.counts,
        "posted_201": len(ledger.posted), "acked": len(ledger.acked), "taken": len(ledger.taken),
        "drained": len(drained), "missing": len(missing), "missing_sample": missing[:10],
        "acks_cut": len(ledger.maybe_acked), "plain_gets_cut": ledger.cut_takes,
        "lost_unexplained": unexplained,
        "twice": len(twice), "twice_sample": twice[:10],
        "rss_max_mib": round(server.rss_max / 2**20, 1),
        "exit_code": server.proc.returncode,
    }, indent=1))
    sys.exit(1 if unexplained or twice else 0)


if __name__ == "__main__":
    main()
