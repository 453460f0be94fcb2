#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: repeatable
# whatever else the machine is doing, unlike requests/s or CPU time. Kernel work (TCP,
# syscalls) is not counted.
#
#   bench/callgrind.sh            # POST /q and GET /q: the ceiling, then presque
#
# Needs valgrind (apt-get install -y valgrind) and wrk. Builds with the `profiling`
# profile (release code with full debug info, in target/profiling/), so that
# callgrind_annotate on a kept output names files and lines; the release profile
# keeps no debug info.
#   CALLGRIND_PORT=5311 bench/callgrind.sh   # another port base (four ports from it),
#                                            # so two runs at once do not collide
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile profiling --bin presque --example ceiling >/dev/null
bin=${CARGO_TARGET_DIR:-target}/profiling
p=${CALLGRIND_PORT:-5211}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[server]\nworkers = 1\n[storage]\nsnapshot_interval_secs = 3600\n' > "$work/presque.toml"

count() { # NAME PORT SCRIPT PATH CMD...
  local name=$1 port=$2 script=$3 path=$4; shift 4
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$name.out" --instr-atstart=no \
    "$@" >/dev/null 2>"$work/cg.$name.err" &
  local vpid=$!
  for _ in $(seq 1 120); do
    sleep 0.5
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/nothing" && break
  done
  if [ "$script" = get.lua ]; then
    # A queue deep enough never to run dry during the count.
    python3 -c "import sys; sys.path.insert(0, 'bench'); import run; run.fill('http://127.0.0.1:$port', 'cg', 200000)" 2>/dev/null || true
  fi
  callgrind_control -i on $vpid >/dev/null 2>&1
  callgrind_control -z $vpid >/dev/null 2>&1
  local r
  r=$(BENCH_WRK_DIR=bench/wrk wrk -t1 -c8 -d10s -s "bench/wrk/$script" "http://127.0.0.1:$port$path" | grep RESULT)
  callgrind_control -i off $vpid >/dev/null 2>&1
  callgrind_control -d $vpid >/dev/null 2>&1
  sleep 1
  kill $vpid; wait $vpid 2>/dev/null || true
  local n ir
  n=$(echo "$r" | sed 's/.*requests=\([0-9]*\).*/\1/')
  ir=$(grep -h "^totals:" "$work"/cg.$name.out* | awk '{s+=$2} END {print s}')
  rm -f "$work"/cg.$name.out*
  echo "| $name | ${script%.lua} | $n | $((ir / n)) |"
}

echo "| target | request | requests counted | user-space instructions per request |"
echo "| --- | --- | ---: | ---: |"
count ceiling "$p" post.lua /q/cg "$bin/examples/ceiling" "127.0.0.1:$p" 1
count presque $((p + 1)) post.lua /q/cg "$bin/presque" --config "$work/presque.toml" \
  --bind "127.0.0.1:$((p + 1))" --data-dir "$work/post"
count ceiling $((p + 2)) get.lua /q/cg "$bin/examples/ceiling" "127.0.0.1:$((p + 2))" 1
count presque $((p + 3)) get.lua /q/cg "$bin/presque" --config "$work/presque.toml" \
  --bind "127.0.0.1:$((p + 3))" --data-dir "$work/get"
