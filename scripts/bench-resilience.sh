#!/usr/bin/env bash
# The issue 9 measurements that `scripts/bench.sh` does not take, on a fresh local 3-node
# cluster (release build; cluster pinned to CPU 0 and the load generator to CPU 1 when the
# machine has two):
#   memory    resident memory of each node idle, with 100,000 users stored, and 30 s later
#   failover  SIGKILL one node 7 s into a 20 s users-read run, then a users-write run, with the
#             clients on the two surviving nodes: errors and the longest wait, as JSON
#
# Usage: scripts/bench-resilience.sh memory|failover
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
[[ "$what" == memory || "$what" == failover ]] || {
  echo "usage: $0 memory|failover" >&2
  exit 2
}
command -v jq >/dev/null || { echo "$0 needs jq" >&2; exit 1; }
bin=target/release/troupe
base_port=19080
urls="http://127.0.0.1:$base_port,http://127.0.0.1:$((base_port + 1)),http://127.0.0.1:$((base_port + 2))"
cargo build --release -p troupe-node --bin troupe

pin_cluster=()
pin_bench=()
if command -v taskset >/dev/null && [[ "$(nproc)" -ge 2 ]]; then
  pin_cluster=(taskset -c 0)
  pin_bench=(taskset -c 1)
fi

work="$(mktemp -d)"
cluster_pid=""
stop_cluster() {
  if [[ -n "$cluster_pid" ]] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill -TERM "$cluster_pid"
    wait "$cluster_pid" 2>/dev/null || true
  fi
  cluster_pid=""
}
trap 'stop_cluster; rm -rf "$work"' EXIT

start_cluster() {
  stop_cluster
  rm -rf "$work/cluster"
  "${pin_cluster[@]}" "$bin" local --dir "$work/cluster" --base-port "$base_port" --fresh \
    >"$work/local.log" 2>&1 &
  cluster_pid=$!
  local deadline=$((SECONDS + 60)) port
  for port in "$base_port" "$((base_port + 1))" "$((base_port + 2))"; do
    until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
      ((SECONDS < deadline)) || { echo "cluster not ready; see $work" >&2; exit 1; }
      sleep 0.5
    done
  done
}

node_pid() { pgrep -f -- "--node-id=$1 .*--data-dir=$work/cluster/" ; }

rss() {
  local node
  for node in n1 n2 n3; do
    printf '  %s: ' "$node"
    awk '/^(VmRSS|RssAnon|RssFile)/ {printf "%s %s kB  ", $1, $2} END {print ""}' \
      "/proc/$(node_pid "$node")/status"
  done
}

bench() { "${pin_bench[@]}" "$bin" bench "$@"; }

case "$what" in
  memory)
    start_cluster
    sleep 10
    echo "idle:"; rss
    bench --urls "$urls" --workload users-read --preload 100000 --clients 16 --duration 5s \
      --warmup 0s | grep throughput
    echo "100,000 users stored, after a read run:"; rss
    sleep 30
    echo "30 s later:"; rss
    du -sh "$work"/cluster/*/data
    ;;
  failover)
    two="http://127.0.0.1:$base_port,http://127.0.0.1:$((base_port + 1))"
    for workload in users-read users-write; do
      start_cluster
      bench --urls "$two" --workload "$workload" --clients 16 --duration 20s --warmup 1s \
        --timeout 10s --json >"$work/$workload.json" &
      bench_pid=$!
      sleep 7
      kill -9 "$(node_pid n3)"
      echo "$workload: n3 killed at $(date -u +%T.%N)"
      wait "$bench_pid" || true
      jq -c '{workload, requests, throughput, latency_ms, errors}' "$work/$workload.json"
    done
    ;;
esac
