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
# shellcheck source=scripts/local-cluster.sh
source scripts/local-cluster.sh

node_pid() { pgrep -f -- "--node-id=$1 .*--data-dir=$work/cluster/" ; }

rss() {
  local node
  for node in n1 n2 n3; do
    printf '  %s: ' "$node"
    awk '/^(VmRSS|RssAnon|RssFile)/ {printf "%s %s kB  ", $1, $2} END {print ""}' \
      "/proc/$(node_pid "$node")/status"
  done
}

bench() { "${pin_bench[@]}" "$bench_bin" "$@"; }

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
    two="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]}"
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
