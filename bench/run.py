#!/usr/bin/env python3
"""presque's benchmark: presque against the fastest actix-web handler (the ceiling)
and the peers people would pick instead, in one run, with one load generator.

Started by `bench/run` (which builds the release binaries first). Every server runs
pinned to core 0 with one worker; wrk runs pinned to core 1 with 32 keep-alive
connections. Each scenario runs BENCH_RUNS times (default 3) and reports medians of
requests/s, p50/p99 latency and the server's CPU time per request (user+sys from
/proc/PID/stat before and after, divided by requests: far steadier than requests/s
on a shared machine).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK_DIR = os.path.join(ROOT, "bench", "wrk")
PRESQUE = os.path.join(ROOT, "target", "release", "presque")
CEILING = os.path.join(ROOT, "target", "release", "examples", "ceiling")
CEILING_MIMALLOC = os.path.join(ROOT, "target", "release", "examples", "ceiling_mimalloc")
SERVER_CORE, LOAD_CORE = "0", "1"
CONNECTIONS = 32
DURATION = os.environ.get("BENCH_DURATION", "5s")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIG = 1_000_000

started = []  # every process we start, stopped at exit whatever happens


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def start(cmd, port, log_path=None, env=None):
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE] + cmd,
        stdout=subprocess.DEVNULL,
        stderr=out,
        env={**os.environ, **(env or {})},
    )
    started.append(proc)
    wait_port(port, proc)
    return proc


def stop(proc, sig="TERM", timeout=120):
    if proc.poll() is None:
        subprocess.run(["kill", f"-{sig}", str(proc.pid)], check=False)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in started:
        started.remove(proc)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line; 12 and 13 after ")".
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def http(method, url, body=None, content_type="application/json", headers=None):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def job(n):
    head = '{"n":%d,"pad":"' % n
    return head + "x" * (100 - len(head) - 2) + '"}'


def fill(base, queue, count, start_n=0):
    """Adds `count` 100-byte jobs through /qb, 1,000 per request."""
    n = start_n
    while n < start_n + count:
        size = min(1000, start_n + count - n)
        jobs = ",".join(job(i) for i in range(n, n + size))
        status, _ = http("POST", f"{base}/qb/{queue}", '{"jobs":[%s]}' % jobs)
        assert status == 201, status
        n += size


def ready(base, queue):
    _, body = http("GET", f"{base}/status/{queue}")
    return json.loads(body)["size"]


def wrk(url, script, duration=None):
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration or DURATION}",
         "--timeout", "10s", "-s", os.path.join(WRK_DIR, script), url],
        capture_output=True, text=True, env={**os.environ, "BENCH_WRK_DIR": WRK_DIR},
        check=True,
    ).stdout
    m = re.search(r"RESULT (.*)", out)
    if not m:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out}")
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def measure(proc, url, script, per_request=1, before_each=None, check=None, duration=None):
    """Runs a wrk scenario RUNS times; returns medians."""
    rates, p50s, p99s, cpus = [], [], [], []
    for _ in range(RUNS):
        if before_each:
            before_each()
        cpu0 = cpu_seconds(proc.pid)
        r = wrk(url, script, duration)
        cpu1 = cpu_seconds(proc.pid)
        if r["non2xx"] or r["errors"]:
            raise RuntimeError(f"{url} {script}: {r['non2xx']} non-2xx answers, {r['errors']} errors")
        if check:
            check()
        seconds = r["duration_us"] / 1e6
        rates.append(r["requests"] * per_request / seconds)
        p50s.append(r["p50_us"])
        p99s.append(r["p99_us"])
        cpus.append((cpu1 - cpu0) * 1e6 / r["requests"])
    return {
        "rate": statistics.median(rates),
        "p50": statistics.median(p50s),
        "p99": statistics.median(p99s),
        "cpu": statistics.median(cpus),
    }


def presque(data_dir, fsync="everysec", extra=()):
    port = free_port()
    log_path = os.path.join(data_dir, "server.log")
    proc = start(
        [PRESQUE, "--bind", f"127.0.0.1:{port}", "--data-dir", os.path.join(data_dir, "data"),
         "--fsync", fsync, *extra],
        port, log_path,
        env={"RUST_LOG": "info"},
    )
    # The port is bound before recovery runs (early clients wait in the backlog): the
    # server is ready when it says so.
    deadline = time.time() + 120
    while True:
        with open(log_path) as f:
            if "listening on" in f.read():
                break
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("presque did not start")
        time.sleep(0.01)
    return proc, f"http://127.0.0.1:{port}", log_path


def log_field(path, marker, key):
    with open(path) as f:
        lines = [l for l in f if marker in l]
    if not lines:
        return float("nan")
    m = re.search(rf"{key}=(\d+)", lines[-1])
    return float(m.group(1)) if m else float("nan")


def main():
    rows = []  # (scenario, target, result dict, unit)
    results = {}
    work = tempfile.mkdtemp(prefix="presque-bench-")
    config = os.path.join(work, "presque.toml")
    with open(config, "w") as f:
        f.write("[server]\nworkers = 1\nmax_body_bytes = 16777216\n"
                "[storage]\nsnapshot_interval_secs = 3600\n")

    def record(scenario, target, result, unit="requests/s"):
        rows.append((scenario, target, result, unit))
        results[(scenario, target)] = result
        log(f"  {scenario:<28} {target:<10} {result['rate']:>12.0f} {unit:<11} "
            f"p50 {result['p50']:>6} µs  p99 {result['p99']:>6} µs  cpu {result['cpu']:>6.1f} µs/req")

    # --- the ceiling ---------------------------------------------------------------
    log("ceiling (minimal actix-web handler, 1 worker)")
    port = free_port()
    ceiling = start([CEILING, f"127.0.0.1:{port}", "1"], port)
    base = f"http://127.0.0.1:{port}"
    record("enqueue (POST /q)", "ceiling", measure(ceiling, f"{base}/q/bench", "post.lua"))
    record("dequeue (GET /q)", "ceiling", measure(ceiling, f"{base}/q/bench", "get.lua"))
    stop(ceiling)
    log("ceiling built with mimalloc (presque's allocator)")
    port = free_port()
    ceiling = start([CEILING_MIMALLOC, f"127.0.0.1:{port}", "1"], port)
    base = f"http://127.0.0.1:{port}"
    record("enqueue (POST /q)", "ceiling+mi", measure(ceiling, f"{base}/q/bench", "post.lua"))
    record("dequeue (GET /q)", "ceiling+mi", measure(ceiling, f"{base}/q/bench", "get.lua"))
    stop(ceiling)

    # --- presque -------------------------------------------------------------------
    def presque_run(fsync="everysec"):
        d = tempfile.mkdtemp(dir=work)
        return presque(d, fsync, extra=("--config", config))

    log("presque (1 worker, fsync=everysec unless stated)")
    proc, base, _ = presque_run()
    record("enqueue (POST /q)", "presque", measure(proc, f"{base}/q/bench", "post.lua"))

    def top_up(queue="deq", target=800_000):
        have = ready(base, queue)
        if have < target:
            fill(base, queue, target - have)

    def never_dry(queue="deq"):
        if ready(base, queue) == 0:
            raise RuntimeError("the dequeue queue ran dry: the figure would count 404s")

    record("dequeue (GET /q)", "presque",
           measure(proc, f"{base}/q/deq", "get.lua", before_each=top_up, check=never_dry))
    http("POST", f"{base}/w/deq", headers={"X-presque-workerid": "bench-worker"})
    record("dequeue by a registered worker", "presque",
           measure(proc, f"{base}/q/deq", "get_worker.lua", before_each=top_up, check=never_dry))
    fill(base, "mixed", 200_000)
    record("mixed 50/50 (one queue)", "presque", measure(proc, f"{base}/q/mixed", "mixed.lua"))
    record("enqueue over 64 queues", "presque", measure(proc, f"{base}/q/x", "queues64.lua"))
    record("enqueue with X-presque-workerid", "presque",
           measure(proc, f"{base}/q/bench", "post_worker.lua"))
    record("batch enqueue (/qb, 100/req)", "presque",
           measure(proc, f"{base}/qb/batch", "batch_post.lua", per_request=100), "jobs/s")
    # Batch fetching drains millions of jobs a second: a short run from a deep queue,
    # checked not to have run dry (404s would count as requests).
    top = lambda: top_up("bfetch", 4_000_000)
    record("batch fetch (/qb, 100/req)", "presque",
           measure(proc, f"{base}/qb/bfetch?batch_size=100", "get.lua", per_request=100,
                   before_each=top, check=lambda: never_dry("bfetch"), duration="1s"), "jobs/s")
    stop(proc)

    for fsync in ("always", "everysec", "no"):
        proc, base, _ = presque_run(fsync)
        record(f"enqueue, fsync={fsync}", "presque", measure(proc, f"{base}/q/bench", "post.lua"))
        stop(proc)

    # 1,000,000 jobs: memory, snapshot, recovery.
    log("presque with 1,000,000 jobs of 100 bytes")
    proc, base, log_path = presque_run("no")
    rss0 = rss_bytes(proc.pid)
    fill(base, "big", BIG)
    rss1 = rss_bytes(proc.pid)
    t0 = time.time()
    stop(proc)
    shutdown_s = time.time() - t0
    write_ms = log_field(log_path, "snapshot written", "write_ms")
    stall_us = log_field(log_path, "snapshot written", "longest_stall_us")
    snap_bytes = log_field(log_path, "snapshot written", "bytes")
    data_dir = os.path.dirname(log_path)
    t0 = time.time()
    proc, base, log_path = presque(data_dir, "no", extra=("--config", config))
    start_s = time.time() - t0
    recovered_ms = log_field(log_path, "recovered", "elapsed_ms")
    assert ready(base, "big") == BIG, "jobs lost across the restart"
    stop(proc)
    per_job = (rss1 - rss0) / BIG

    # --- peers ---------------------------------------------------------------------
    redis_port = None
    redis = None
    if shutil.which("redis-server"):
        redis_port = free_port()
        redis = start(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                      redis_port)
    else:
        log("redis-server missing: skipping Redis and Ocypod (apt-get install -y redis-server redis-tools)")

    if redis and shutil.which("redis-benchmark"):
        log("raw Redis (redis-benchmark LPUSH/RPOP, 32 connections)")
        for op in ("lpush", "rpop"):
            rates = []
            cpus = []
            for _ in range(RUNS):
                n = 400_000
                cpu0 = cpu_seconds(redis.pid)
                out = subprocess.run(
                    ["taskset", "-c", LOAD_CORE, "redis-benchmark", "-p", str(redis_port),
                     "-c", str(CONNECTIONS), "-n", str(n), "-t", op, "--csv", "-d", "100"],
                    capture_output=True, text=True, check=True).stdout
                cpu1 = cpu_seconds(redis.pid)
                row = [l for l in out.splitlines() if l.upper().startswith('"' + op.upper())][0]
                cells = [c.strip('"') for c in row.split(",")]
                rates.append(float(cells[1]))
                cpus.append((cpu1 - cpu0) * 1e6 / n)
            name = "enqueue (POST /q)" if op == "lpush" else "dequeue (GET /q)"
            record(name, "redis", {"rate": statistics.median(rates), "p50": "-", "p99": "-",
                                   "cpu": statistics.median(cpus)})
    elif redis:
        log("redis-benchmark missing: skipping raw Redis (apt-get install -y redis-tools)")

    ocypod_bin = shutil.which("ocypod-server")
    if redis and ocypod_bin:
        log("Ocypod 0.8 (threads = 1, over redis-server)")
        port = free_port()
        oconf = os.path.join(work, "ocypod.toml")
        with open(oconf, "w") as f:
            f.write(f'[server]\nhost = "127.0.0.1"\nport = {port}\nthreads = 1\n'
                    f'log_level = "warn"\n[redis]\nurl = "redis://127.0.0.1:{redis_port}"\n')
        ocy = start([ocypod_bin, oconf], port, env={"RUST_LOG": "warn"})
        obase = f"http://127.0.0.1:{port}"
        http("PUT", f"{obase}/queue/bench", "{}")
        record("enqueue (POST /q)", "ocypod",
               measure(ocy, f"{obase}/queue/bench/job", "ocypod_post.lua"))

        def size():
            return json.loads(http("GET", f"{obase}/queue/bench/size")[1])

        def before():
            # Refill first (untimed): Ocypod dequeues faster than it enqueues.
            wrk(f"{obase}/queue/bench/job", "ocypod_post.lua")
            wrk(f"{obase}/queue/bench/job", "ocypod_post.lua")

        def after():
            # Ocypod answers 204 on an empty queue, which wrk counts as success.
            if size() == 0:
                raise RuntimeError("Ocypod's queue ran dry: the figure would count 204s")

        record("dequeue (GET /q)", "ocypod",
               measure(ocy, f"{obase}/queue/bench/job", "get.lua", before_each=before, check=after))
        stop(ocy)
    elif redis:
        log("ocypod-server missing: skipping Ocypod (cargo install ocypod --locked)")
    if redis:
        stop(redis)

    # --- the table -------------------------------------------------------------------
    print()
    print(f"| scenario | target | rate | p50 | p99 | server CPU per request |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for scenario, target, r, unit in rows:
        p50 = r["p50"] if r["p50"] == "-" else f"{r['p50']} µs"
        p99 = r["p99"] if r["p99"] == "-" else f"{r['p99']} µs"
        print(f"| {scenario} | {target} | {r['rate']:,.0f} {unit} | {p50} | {p99} | {r['cpu']:.1f} µs |")
    print()
    print("| target | measured | ratio | goal |")
    print("| --- | --- | ---: | --- |")

    def ratio(label, a, b, goal, invert=False):
        if a in results and b in results:
            x = results[a]["cpu" if invert else "rate"] / results[b]["cpu" if invert else "rate"]
            print(f"| {label} | {a[1]} / {b[1]} | {x:.2f} | {goal} |")

    enq, deq = "enqueue (POST /q)", "dequeue (GET /q)"
    ratio("enqueue requests/s vs ceiling POST", (enq, "presque"), (enq, "ceiling"), ">= 0.85")
    ratio("dequeue requests/s vs ceiling GET", (deq, "presque"), (deq, "ceiling"), ">= 0.85")
    ratio("enqueue CPU/request vs ceiling POST", (enq, "presque"), (enq, "ceiling"), "<= 1.2", True)
    ratio("dequeue CPU/request vs ceiling GET", (deq, "presque"), (deq, "ceiling"), "<= 1.2", True)
    ratio("enqueue requests/s vs ceiling+mimalloc POST", (enq, "presque"), (enq, "ceiling+mi"), "(reference)")
    ratio("dequeue requests/s vs ceiling+mimalloc GET", (deq, "presque"), (deq, "ceiling+mi"), "(reference)")
    ratio("enqueue CPU/request vs ceiling+mimalloc POST", (enq, "presque"), (enq, "ceiling+mi"), "(reference)", True)
    ratio("dequeue CPU/request vs ceiling+mimalloc GET", (deq, "presque"), (deq, "ceiling+mi"), "(reference)", True)
    ratio("enqueue vs Ocypod", (enq, "presque"), (enq, "ocypod"), ">= 15")
    ratio("dequeue vs Ocypod", (deq, "presque"), (deq, "ocypod"), ">= 15")
    ratio("enqueue vs Redis LPUSH", (enq, "presque"), (enq, "redis"), ">= 1")
    ratio("dequeue vs Redis RPOP", (deq, "presque"), (deq, "redis"), ">= 1")
    ratio("enqueue fsync=always vs fsync=no", ("enqueue, fsync=always", "presque"),
          ("enqueue, fsync=no", "presque"), ">= 0.5")
    if ("batch enqueue (/qb, 100/req)", "presque") in results:
        b = results[("batch enqueue (/qb, 100/req)", "presque")]["rate"]
        f = results[("batch fetch (/qb, 100/req)", "presque")]["rate"]
        print(f"| batch jobs/s (enqueue, fetch) | presque | {b:,.0f}, {f:,.0f} | >= 1,000,000 |")
    print(f"| RSS per 100-byte job (1,000,000 jobs) | presque | {per_job:.0f} bytes = {per_job / 100:.2f}x payload | <= 2x |")
    print(f"| snapshot write, 1,000,000 jobs ({snap_bytes / 1e6:.0f} MB) | presque | {write_ms:.0f} ms | |")
    print(f"| longest queue stall while its image is taken | presque | {stall_us:.0f} µs | a few ms |")
    print(f"| graceful shutdown with final snapshot | presque | {shutdown_s:.2f} s | |")
    print(f"| recovery of 1,000,000 jobs | presque | {recovered_ms:.0f} ms (start to listening {start_s:.2f} s) | < 2 s |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in list(started):
            try:
                stop(p, timeout=30)
            except Exception:  # a failed stop must not hide the first error
                p.kill()
