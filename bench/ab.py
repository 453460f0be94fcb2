#!/usr/bin/env python3
"""Interleaved A/B between two presque binaries: POST /q (enqueue) at every fsync
policy, then GET /q by a registered worker (dequeue, with the worker's counters) under
`everysec`. Started by `bench/ab`. Same harness as `bench/run` (server pinned to core 0
with one worker, wrk on core 1 with 32 connections); each round runs the base, then
this build, so drift in the host's load hits both alike. Prints medians and the
ratio this/base (requests/s: above 1 is faster; CPU per request: below 1 is cheaper).
"""

import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared harness)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    base_bin, base_rev = sys.argv[1], sys.argv[2]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    this_bin = os.path.join(target, "release", "presque")
    work = tempfile.mkdtemp(prefix="presque-ab-")
    config = os.path.join(work, "presque.toml")
    with open(config, "w") as f:
        f.write("[server]\nworkers = 1\n[storage]\nsnapshot_interval_secs = 3600\n")
    runs = run.RUNS
    run.RUNS = 1
    print(f"enqueue (POST /q, 100-byte jobs): this build vs {base_rev}, {runs} interleaved rounds")
    print(f"{'fsync':<9} {'base req/s':>11} {'this req/s':>11} {'ratio':>6}   "
          f"{'base p99':>8} {'this p99':>8}   {'base cpu':>8} {'this cpu':>8} {'ratio':>6}")
    try:
        for fsync in ("always", "everysec", "no"):
            ab_row(fsync, base_bin, this_bin, work, config, runs, enqueue)
        print("dequeue (GET /q by a registered worker, 100-byte jobs), fsync=everysec")
        ab_row("everysec", base_bin, this_bin, work, config, runs, dequeue)
    finally:
        for proc in list(run.started):
            run.stop(proc, "KILL")
        # Each round's data directory holds gigabytes of log: never left behind.
        shutil.rmtree(work, ignore_errors=True)


def enqueue(proc, url):
    return run.measure(proc, f"{url}/q/bench", "post.lua")


def dequeue(proc, url):
    run.http("POST", f"{url}/w/deq", headers={"X-presque-workerid": "bench-worker"})
    run.fill(url, "deq", 1_000_000)
    result = run.measure(proc, f"{url}/q/deq", "get_worker.lua")
    if run.ready(url, "deq") == 0:
        raise RuntimeError("the dequeue queue ran dry: the figure would count 404s")
    return result


def ab_row(fsync, base_bin, this_bin, work, config, runs, scenario):
    """One table row: `runs` rounds of base then this, medians and ratios."""
    got = {"base": [], "this": []}
    for _ in range(runs):
        for name, binary in (("base", base_bin), ("this", this_bin)):
            run.PRESQUE = binary
            d = tempfile.mkdtemp(dir=work)
            proc, url, _ = run.presque(d, fsync, extra=("--config", config))
            got[name].append(scenario(proc, url))
            run.stop(proc)
            shutil.rmtree(d, ignore_errors=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("rate", "p99", "cpu")}
           for k, v in got.items()}
    b, t = med["base"], med["this"]
    print(f"{fsync:<9} {b['rate']:>11.0f} {t['rate']:>11.0f} {t['rate'] / b['rate']:>5.2f}x   "
          f"{b['p99']:>6.0f}µs {t['p99']:>6.0f}µs   {b['cpu']:>6.1f}µs {t['cpu']:>6.1f}µs "
          f"{t['cpu'] / b['cpu']:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
