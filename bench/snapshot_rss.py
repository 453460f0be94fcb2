#!/usr/bin/env python3
"""Peak RSS while presque takes a snapshot, and what a job really costs in memory.

usage: bench/snapshot_rss.py BINARY JOBS BODY_BYTES

Starts BINARY on a fresh data directory, fills one queue with JOBS jobs of BODY_BYTES
bytes through /qb (1,000 per request), waits for RSS to settle, resets the peak
(/proc/PID/clear_refs), sends SIGTERM (the graceful stop takes a final snapshot) and
samples VmRSS/VmHWM every 5 ms until the process is gone. Prints RSS before the fill,
after it, the peak during the snapshot, and the snapshot's size.
"""
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def main():
    binary, jobs, body_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    port = 5099
    work = tempfile.mkdtemp(prefix="presque-rss-")
    with open(os.path.join(work, "presque.toml"), "w") as f:
        f.write(f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\nmax_body_bytes = 67108864\n'
                f'[storage]\ndata_dir = "{work}/data"\nsnapshot_interval_secs = 86400\n')
    proc = subprocess.Popen([binary, "--config", os.path.join(work, "presque.toml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", "/status")
            c.getresponse().read()
            break
        except OSError:
            time.sleep(0.05)
    pid = proc.pid
    rss0 = status_kib(pid, "VmRSS")
    conn = http.client.HTTPConnection("127.0.0.1", port)
    started = time.time()
    n = 0
    while n < jobs:
        size = min(1000, jobs - n)
        parts = []
        for i in range(n, n + size):
            head = '{"n":%d,"p":"' % i
            parts.append(head + "x" * (body_bytes - len(head) - 2) + '"}')
        payload = '{"jobs":[%s]}' % ",".join(parts)
        conn.request("POST", "/qb/fill", payload, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 201, (r.status, n)
        n += size
    fill_secs = time.time() - started
    time.sleep(3)  # the log's fsync and writer buffers settle
    rss1 = status_kib(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    hwm_reset = status_kib(pid, "VmHWM")
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    peak_rss, peak_hwm = rss1, hwm_reset
    while proc.poll() is None:
        rss, hwm = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        if rss:
            peak_rss = max(peak_rss, rss)
        if hwm:
            peak_hwm = max(peak_hwm, hwm)
        time.sleep(0.005)
    stop_secs = time.time() - started
    snaps = [f for f in os.listdir(f"{work}/data") if f.startswith("snapshot-") and f.endswith(".presque")]
    snap_bytes = max(os.path.getsize(f"{work}/data/{f}") for f in snaps) if snaps else 0
    mib = lambda kib: kib / 1024
    print(f"jobs={jobs} body={body_bytes} fill={fill_secs:.1f}s")
    print(f"rss_start={mib(rss0):.0f}MiB rss_filled={mib(rss1):.0f}MiB "
          f"per_job={(rss1 - rss0) * 1024 / jobs:.0f}B (body {body_bytes}B)")
    print(f"snapshot peak: VmRSS={mib(peak_rss):.0f}MiB VmHWM={mib(peak_hwm):.0f}MiB "
          f"= {peak_hwm / rss1:.2f}x filled RSS; stop took {stop_secs:.1f}s; snapshot {snap_bytes / 2**20:.0f}MiB")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
