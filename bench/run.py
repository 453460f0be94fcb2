#!/usr/bin/env python3
"""presque's benchmark: presque against the fastest actix-web handler (the ceiling)
and the peers people would pick instead, in one run, with one load generator.

Started by `bench/run` (which builds the release binaries first). Every server runs
pinned to core 0 with one worker; wrk runs pinned to core 1 with 32 keep-alive
connections. Each scenario runs BENCH_RUNS times (default 3) and reports medians of
requests/s, p50/p99 latency and the server's CPU time per request (user+sys from
/proc/PID/stat before and after, divided by requests: far steadier than requests/s
on a shared machine).

Every scenario also reports how busy the rest of the host was while it ran: the CPU
time of all CPUs (/proc/stat, idle and iowait excluded, steal included) minus the
server's, the load generator's (rusage of the finished child) and this script's own,
over the run's wall time, in % of one core. Rows above BUSY_PCT are marked `busy`:
the host was not quiet and they are not headline figures.

The beanstalkd section drives both servers with bench/loadgen.rs (the project's own
closed-loop client, HTTP/1.1 and the beanstalkd protocol) at three durability levels;
see BENCHMARKS.md, "Against beanstalkd". BENCH_ONLY=beanstalkd runs that section alone
(BENCH_ONLY takes a comma-separated list of: ceiling, presque, million, peers,
beanstalkd).
"""

import json
import os
import re
import resource
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
# Where cargo put the binaries: CARGO_TARGET_DIR (relative to the root, as bench/run
# runs cargo there) when set, else target/.
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target", "release")
PRESQUE = os.path.join(TARGET, "presque")
CEILING = os.path.join(TARGET, "examples", "ceiling")
CEILING_MIMALLOC = os.path.join(TARGET, "examples", "ceiling_mimalloc")
LOADGEN = os.path.join(TARGET, "examples", "loadgen")
SERVER_CORE, LOAD_CORE = "0", "1"
CONNECTIONS = 32
DURATION = os.environ.get("BENCH_DURATION", "5s")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIG = 1_000_000
BUSY_PCT = 15  # other processes' CPU, % of one core, above which a row is marked busy
SECTIONS = ("ceiling", "presque", "million", "peers", "beanstalkd")
ONLY = [x.strip() for x in os.environ.get("BENCH_ONLY", ",".join(SECTIONS)).split(",") if x.strip()]
for _name in ONLY:
    if _name not in SECTIONS:
        sys.exit(f"BENCH_ONLY: unknown section {_name!r} (known: {', '.join(SECTIONS)})")


def seconds(text):
    """wrk's duration syntax (5s, 500ms, 1m) in seconds."""
    for suffix, scale in (("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)

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


def host_busy_seconds():
    """CPU time of all CPUs, not idle: user nice system irq softirq steal (guest is
    inside user). Steal counts: time the hypervisor gave to someone else is load too."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def own_seconds():
    """This script's CPU plus that of its finished children (the load generators)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def snapshot(pids):
    return time.time(), host_busy_seconds(), own_seconds(), sum(cpu_seconds(p) for p in pids)


def other_pct(before, after):
    """CPU used by other processes between two snapshots, in % of one core."""
    wall = after[0] - before[0]
    other = (after[1] - before[1]) - (after[2] - before[2]) - (after[3] - before[3])
    return max(0.0, other) / wall * 100 if wall > 0 else 0.0


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


def measure(proc, url, script, per_request=1, before_each=None, check=None, duration=None,
            also_pids=()):
    """Runs a wrk scenario RUNS times; returns medians. `also_pids`: processes that
    belong to the server (Ocypod's Redis), so their CPU is not counted as other load."""
    rates, p50s, p99s, cpus, others = [], [], [], [], []
    for _ in range(RUNS):
        if before_each:
            before_each()
        s0 = snapshot([proc.pid, *also_pids])
        cpu0 = cpu_seconds(proc.pid)
        r = wrk(url, script, duration)
        cpu1 = cpu_seconds(proc.pid)
        others.append(other_pct(s0, snapshot([proc.pid, *also_pids])))
        if r["non2xx"] or r["errors"]:
            raise RuntimeError(f"{url} {script}: {r['non2xx']} non-2xx answers, {r['errors']} errors")
        if check:
            check()
        seconds = r["duration_us"] / 1e6
        rates.append(r["requests"] * per_request / seconds)
        p50s.append(r["p50_us"])
        p99s.append(r["p99_us"])
        cpus.append((cpu1 - cpu0) * 1e6 / r["requests"])
    return medians(rates, p50s, p99s, cpus, others)


def medians(rates, p50s, p99s, cpus, others):
    """A row's figures: the median of each over its runs."""
    return {
        "rate": statistics.median(rates),
        "p50": statistics.median(p50s),
        "p99": statistics.median(p99s),
        "cpu": statistics.median(cpus),
        "other": statistics.median(others),
    }


def loadgen(args):
    """One run of bench/loadgen.rs pinned to the load core; its RESULT line as ints."""
    cmd = ["taskset", "-c", LOAD_CORE, LOADGEN, *[str(a) for a in args]]
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"RESULT (.*)", p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"loadgen {' '.join(cmd[3:])} failed ({p.returncode}):\n{p.stderr}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["stderr"] = p.stderr
    return r


def measure_lg(server, args, before_each=None, label=""):
    """Runs a loadgen scenario RUNS times against `server` ({"proc", "addr"}: a
    `before_each` may restart the server) and returns medians, per job. Any unexpected
    answer (a queue that ran dry included) fails the row: the figure would be wrong."""
    rates, p50s, p99s, cpus, others = [], [], [], [], []
    for _ in range(RUNS):
        if before_each:
            before_each()
        pid = server["proc"].pid
        s0 = snapshot([pid])
        r = loadgen(["--addr", server["addr"], "-d", DURATION, *args])
        s1 = snapshot([pid])
        if r["errors"] or not r["jobs"]:
            raise RuntimeError(f"{label}: {r['errors']} unexpected answers, {r['jobs']} jobs:\n"
                               f"{r['stderr']}")
        rates.append(r["jobs"] / (r["duration_us"] / 1e6))
        p50s.append(r["p50_us"])
        p99s.append(r["p99_us"])
        cpus.append((s1[3] - s0[3]) * 1e6 / r["jobs"])
        others.append(other_pct(s0, s1))
    return medians(rates, p50s, p99s, cpus, others)


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


def beanstalkd(mode, binlog_dir):
    """beanstalkd on core 0 and a free port. `mode`: "memory" (no -b), "nofsync"
    (-b DIR -F), "fsync" (-b DIR -f 0: an fsync after every binlog write)."""
    port = free_port()
    cmd = ["beanstalkd", "-l", "127.0.0.1", "-p", str(port), "-z", "65536"]
    if mode == "nofsync":
        cmd += ["-b", binlog_dir, "-F"]
    elif mode == "fsync":
        cmd += ["-b", binlog_dir, "-f", "0"]
    return {"proc": start(cmd, port), "addr": f"127.0.0.1:{port}"}


def beanstalk_ready(addr, tube):
    """current-jobs-ready of a tube (0 when the tube does not exist yet)."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"stats-tube {tube}\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n")
        if head.startswith(b"NOT_FOUND"):
            return 0
        size = int(head.split()[1])
        while len(rest) < size:
            rest += s.recv(65536)
    m = re.search(rb"current-jobs-ready: (\d+)", rest)
    return int(m.group(1))


def against_beanstalkd(work, presque_run, record_bs):
    """presque (HTTP) against beanstalkd (its own protocol), both driven by
    bench/loadgen.rs: server on core 0, client on core 1, 32 connections, 100-byte jobs,
    each (level, test, server) on a fresh server and data directory."""
    dur = seconds(DURATION)
    # presque's fsync setting for each level; levels 1 and 2 share presque's figures
    # (beanstalkd without a binlog has no presque equivalent: presque always logs).
    levels = [
        ("memory / log, no fsync", "memory", "no"),
        ("log, no fsync", "nofsync", "no"),
        ("fsync every write", "fsync", "always"),
    ]
    tests = ["enqueue", "dequeue", "lease", "cycle"]
    rates = {}  # (side, test) -> [rates so far], to size the prefill

    def per_run_need(side, test):
        """Jobs a dequeue or lease run may take: 1.5x the fastest rate seen for this
        test (or, before its first run, 1.5x the fastest enqueue) for the run's length.
        A run that takes more fails loudly (404 / TIMED_OUT), it is never counted."""
        seen = rates.get((side, test)) or [1.5 * r for r in rates.get((side, "enqueue"), [])]
        est = max(seen or [150_000])
        return int(est * dur * 1.5) + 10_000

    presque_figures = {}
    for fsync in ("no", "always"):
        log(f"presque --fsync {fsync}, driven by bench/loadgen (32 connections)")
        for test in tests:
            proc, base, _ = presque_run(fsync)
            server = {"proc": proc, "addr": base.split("//")[1]}
            need = per_run_need("presque", test)

            def top_up(queue=test, need=need, base=base):
                have = ready(base, queue)
                if have < need:
                    fill(base, queue, need - have)

            before = top_up if test in ("dequeue", "lease") else None
            r = measure_lg(server, ["--proto", "http", "--op", test, "--queue", test], before,
                           f"presque --fsync {fsync} {test}")
            rates.setdefault(("presque", test), []).append(r["rate"])
            presque_figures[(fsync, test)] = r
            stop(proc)
        if fsync == "no":
            # Pipelining as the issue measured it: 8 connections, 16 requests per write.
            proc, base, _ = presque_run(fsync)
            server = {"proc": proc, "addr": base.split("//")[1]}
            presque_figures[("no", "pipelined")] = measure_lg(
                server, ["--proto", "http", "--op", "enqueue", "--queue", "pipe",
                         "-c", "8", "--pipeline", "16"], None, "presque pipelined enqueue")
            stop(proc)

    for level, mode, fsync in levels:
        log(f"beanstalkd, {level} ({mode}), driven by bench/loadgen (32 connections)")
        for test in tests:
            binlog = tempfile.mkdtemp(dir=work)
            server = beanstalkd(mode, binlog)
            need = per_run_need("beanstalkd", test)

            def top_up(server=server, test=test, need=need, mode=mode, binlog=binlog):
                have = beanstalk_ready(server["addr"], test)
                if have >= need:
                    return
                target = need
                if mode == "fsync":
                    # A fill at an fsync per put would take minutes: fill the same binlog
                    # without fsync, then restart with -f 0 (it replays the binlog). Half
                    # again as many, so the next run (fsync-bound, slow) needs no refill.
                    target = need * 3 // 2
                    stop(server["proc"])
                    server.update(beanstalkd("nofsync", binlog))
                # Reserved jobs come back when the load generator's connections close,
                # so only dequeue runs use jobs up.
                loadgen(["--addr", server["addr"], "--proto", "beanstalk", "--op", "fill",
                         "--queue", test, "-c", "8", "--pipeline", "100",
                         "--jobs", target - have])
                if mode == "fsync":
                    stop(server["proc"])
                    server.update(beanstalkd("fsync", binlog))

            before = top_up if test in ("dequeue", "lease") else None
            r = measure_lg(server, ["--proto", "beanstalk", "--op", test, "--queue", test],
                           before, f"beanstalkd {mode} {test}")
            rates.setdefault(("beanstalkd", test), []).append(r["rate"])
            stop(server["proc"])
            shutil.rmtree(binlog, ignore_errors=True)
            record_bs(level, test, presque_figures[(fsync, test)], r)
    return presque_figures


def main():
    rows = []  # (scenario, target, result dict, unit)
    results = {}
    bs_rows = []  # (level, test, presque result, beanstalkd result)
    work = tempfile.mkdtemp(prefix="presque-bench-")
    config = os.path.join(work, "presque.toml")
    with open(config, "w") as f:
        f.write("[server]\nworkers = 1\nmax_body_bytes = 16777216\n"
                "[storage]\nsnapshot_interval_secs = 3600\n")

    def record(scenario, target, result, unit="requests/s"):
        rows.append((scenario, target, result, unit))
        results[(scenario, target)] = result
        log(f"  {scenario:<28} {target:<10} {result['rate']:>12.0f} {unit:<11} "
            f"p50 {result['p50']:>6} µs  p99 {result['p99']:>6} µs  cpu {result['cpu']:>6.1f} µs/req"
            f"  other {result['other']:>4.0f}%")

    def record_bs(level, test, p, b):
        bs_rows.append((level, test, p, b))
        log(f"  {level:<24} {test:<8} presque {p['rate']:>9.0f} jobs/s  beanstalkd {b['rate']:>9.0f}"
            f" jobs/s  ratio {p['rate'] / b['rate']:.2f}  cpu {p['cpu']:.1f}/{b['cpu']:.1f} µs/job"
            f"  other {p['other']:.0f}%/{b['other']:.0f}%")

    def presque_run(fsync="everysec"):
        d = tempfile.mkdtemp(dir=work)
        return presque(d, fsync, extra=("--config", config))

    # --- the ceiling ---------------------------------------------------------------
    if "ceiling" in ONLY:
        for target, binary, what in (
            ("ceiling", CEILING, "minimal actix-web handler, 1 worker"),
            ("ceiling+mi", CEILING_MIMALLOC, "the same built with presque's allocator, mimalloc"),
        ):
            log(f"{target} ({what})")
            port = free_port()
            ceiling = start([binary, f"127.0.0.1:{port}", "1"], port)
            base = f"http://127.0.0.1:{port}"
            record("enqueue (POST /q)", target, measure(ceiling, f"{base}/q/bench", "post.lua"))
            record("dequeue (GET /q)", target, measure(ceiling, f"{base}/q/bench", "get.lua"))
            stop(ceiling)

    # --- presque -------------------------------------------------------------------
    if "presque" in ONLY:
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
        top = lambda: top_up("bfetch", 8_000_000)
        record("batch fetch (/qb, 100/req)", "presque",
               measure(proc, f"{base}/qb/bfetch?batch_size=100", "get.lua", per_request=100,
                       before_each=top, check=lambda: never_dry("bfetch"), duration="1s"), "jobs/s")
        stop(proc)

        for fsync in ("always", "everysec", "no"):
            proc, base, _ = presque_run(fsync)
            record(f"enqueue, fsync={fsync}", "presque", measure(proc, f"{base}/q/bench", "post.lua"))
            stop(proc)

    # 1,000,000 jobs: memory, snapshot, recovery.
    if "million" in ONLY:
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
    if "peers" in ONLY and shutil.which("redis-server"):
        redis_port = free_port()
        redis = start(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                      redis_port)
    elif "peers" in ONLY:
        log("redis-server missing: skipping Redis and Ocypod (apt-get install -y redis-server redis-tools)")

    if redis and shutil.which("redis-benchmark"):
        log("raw Redis (redis-benchmark LPUSH/RPOP, 32 connections)")
        for op in ("lpush", "rpop"):
            rates = []
            cpus = []
            others = []
            for _ in range(RUNS):
                n = 400_000
                s0 = snapshot([redis.pid])
                cpu0 = cpu_seconds(redis.pid)
                out = subprocess.run(
                    ["taskset", "-c", LOAD_CORE, "redis-benchmark", "-p", str(redis_port),
                     "-c", str(CONNECTIONS), "-n", str(n), "-t", op, "--csv", "-d", "100"],
                    capture_output=True, text=True, check=True).stdout
                cpu1 = cpu_seconds(redis.pid)
                others.append(other_pct(s0, snapshot([redis.pid])))
                row = [l for l in out.splitlines() if l.upper().startswith('"' + op.upper())][0]
                cells = [c.strip('"') for c in row.split(",")]
                rates.append(float(cells[1]))
                cpus.append((cpu1 - cpu0) * 1e6 / n)
            name = "enqueue (POST /q)" if op == "lpush" else "dequeue (GET /q)"
            record(name, "redis", {"rate": statistics.median(rates), "p50": "-", "p99": "-",
                                   "cpu": statistics.median(cpus),
                                   "other": statistics.median(others)})
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
               measure(ocy, f"{obase}/queue/bench/job", "ocypod_post.lua", also_pids=[redis.pid]))

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
               measure(ocy, f"{obase}/queue/bench/job", "get.lua", before_each=before, check=after,
                       also_pids=[redis.pid]))
        stop(ocy)
    elif redis:
        log("ocypod-server missing: skipping Ocypod (cargo install ocypod --locked)")
    if redis:
        stop(redis)

    # --- beanstalkd ------------------------------------------------------------------
    presque_figures = {}
    if "beanstalkd" in ONLY:
        if not shutil.which("beanstalkd"):
            raise RuntimeError("beanstalkd missing (bench/run installs it: apt-get install -y beanstalkd)")
        presque_figures = against_beanstalkd(work, presque_run, record_bs)

    # --- the tables ------------------------------------------------------------------
    def other_cell(*results):
        pcts = [r["other"] for r in results]
        cell = "/".join(f"{p:.0f}%" for p in pcts)
        return cell + (" busy" if max(pcts) > BUSY_PCT else "")

    busy = False
    if rows:
        print()
        print("| scenario | target | rate | p50 | p99 | server CPU per request | other CPU |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for scenario, target, r, unit in rows:
            p50 = r["p50"] if r["p50"] == "-" else f"{r['p50']:.0f} µs"
            p99 = r["p99"] if r["p99"] == "-" else f"{r['p99']:.0f} µs"
            busy |= r["other"] > BUSY_PCT
            print(f"| {scenario} | {target} | {r['rate']:,.0f} {unit} | {p50} | {p99} | "
                  f"{r['cpu']:.1f} µs | {other_cell(r)} |")

    if bs_rows:
        names = {
            "enqueue": "enqueue (POST vs put)",
            "dequeue": "dequeue (GET vs reserve+delete)",
            "lease": "lease (GET ?lease vs reserve)",
            "cycle": "cycle (POST, lease, ack vs put, reserve, delete)",
        }
        print()
        print("| durability | test | presque jobs/s | beanstalkd jobs/s | ratio (>= 1.0) "
              "| presque CPU/job | beanstalkd CPU/job | CPU ratio (<= 1.0) "
              "| presque p50/p99 | beanstalkd p50/p99 | other CPU (presque/beanstalkd) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for level, test, p, b in bs_rows:
            busy |= max(p["other"], b["other"]) > BUSY_PCT
            print(f"| {level} | {names[test]} | {p['rate']:,.0f} | {b['rate']:,.0f} | "
                  f"{p['rate'] / b['rate']:.2f} | {p['cpu']:.1f} µs | {b['cpu']:.1f} µs | "
                  f"{p['cpu'] / b['cpu']:.2f} | {p['p50']:.0f}/{p['p99']:.0f} µs | "
                  f"{b['p50']:.0f}/{b['p99']:.0f} µs | {other_cell(p, b)} |")
        pipe, seq = presque_figures.get(("no", "pipelined")), presque_figures.get(("no", "enqueue"))
        if pipe and seq:
            busy |= pipe["other"] > BUSY_PCT
            print(f"| presque --fsync no | pipelined enqueue (8 connections x 16 per write) | "
                  f"{pipe['rate']:,.0f} | | {pipe['rate'] / seq['rate']:.2f} of sequential "
                  f"(>= 1.0) | {pipe['cpu']:.1f} µs | | | {pipe['p50']:.0f}/{pipe['p99']:.0f} µs "
                  f"per batch | | {other_cell(pipe)} |")
    if busy:
        print()
        print(f"Rows marked busy ran while other processes used more than {BUSY_PCT}% of a core:"
              " the host was not quiet, so they are not headline figures.")

    targets = []  # the lines of the targets table, printed when there are any

    def ratio(label, a, b, goal, invert=False):
        if a in results and b in results:
            x = results[a]["cpu" if invert else "rate"] / results[b]["cpu" if invert else "rate"]
            targets.append(f"| {label} | {a[1]} / {b[1]} | {x:.2f} | {goal} |")

    enq, deq = "enqueue (POST /q)", "dequeue (GET /q)"
    ratio("enqueue requests/s vs ceiling POST", (enq, "presque"), (enq, "ceiling"), ">= 0.85")
    ratio("dequeue requests/s vs ceiling GET", (deq, "presque"), (deq, "ceiling"), ">= 0.85")
    ratio("enqueue CPU/request vs ceiling POST", (enq, "presque"), (enq, "ceiling"), "<= 1.2", True)
    ratio("dequeue CPU/request vs ceiling GET", (deq, "presque"), (deq, "ceiling"), "<= 1.2", True)
    if (enq, "presque") in results and (enq, "ceiling") in results:
        x = results[(enq, "presque")]["p99"] / results[(enq, "ceiling")]["p99"]
        targets.append(f"| enqueue p99 vs ceiling POST p99 (32 connections) | presque / ceiling | {x:.2f} | <= 2.0 |")
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
        targets.append(f"| batch jobs/s (enqueue, fetch) | presque | {b:,.0f}, {f:,.0f} | >= 1,000,000 |")
    if "million" in ONLY:
        targets.append(f"| RSS per 100-byte job (1,000,000 jobs) | presque | {per_job:.0f} bytes = {per_job / 100:.2f}x payload | <= 2x |")
        targets.append(f"| snapshot write, 1,000,000 jobs ({snap_bytes / 1e6:.0f} MB) | presque | {write_ms:.0f} ms | |")
        targets.append(f"| longest queue stall while its image is taken | presque | {stall_us:.0f} µs | a few ms |")
        targets.append(f"| graceful shutdown with final snapshot | presque | {shutdown_s:.2f} s | |")
        targets.append(f"| recovery of 1,000,000 jobs | presque | {recovered_ms:.0f} ms (start to listening {start_s:.2f} s) | < 2 s |")
    if targets:
        print()
        print("| target | measured | ratio | goal |")
        print("| --- | --- | ---: | --- |")
        print("\n".join(targets))
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
