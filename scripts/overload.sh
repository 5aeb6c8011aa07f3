#!/usr/bin/env bash
# Overload benchmark of issue 28 (decision 021): on a fresh local 3-node release cluster,
# measures the maximum of a workload (closed loop, 64 clients), its p99 at half that rate (open
# loop), then drives it open loop at FACTOR times the maximum, and prints: how many requests
# were refused with 503 and how fast, the p99 of the accepted ones, the nodes' summed RSS before
# and after, and the lease lapses the node logs report.
#
# The offered rate is capped at RATE_CAP: one core of this machine's load generator cannot
# offer much more, and an open loop it cannot keep up with measures the generator's own lag.
#
# Usage: scripts/overload.sh
#   WORKLOADS="users-read users-write"   FACTOR=10   DURATION=10s   CLIENTS=1024
#   RATE_CAP=25000   MAX_IN_FLIGHT=64 (http.max_in_flight of the cluster; empty = the default)
set -euo pipefail
cd "$(dirname "$0")/.."

read -ra workloads <<<"${WORKLOADS:-users-read users-write}"
factor="${FACTOR:-10}"
duration="${DURATION:-10s}"
clients="${CLIENTS:-1024}"
rate_cap="${RATE_CAP:-25000}"
max_in_flight="${MAX_IN_FLIGHT-64}"
# shellcheck source=scripts/local-cluster.sh
source scripts/local-cluster.sh
if [[ -n "$max_in_flight" ]]; then
  sed "s/^max_in_flight = .*/max_in_flight = $max_in_flight/" cluster.toml >"$work/overload.toml"
  LOCAL_ARGS="--config $work/overload.toml"
fi

# Summed resident set of the cluster's node processes, in MiB.
cluster_rss_mib() {
  local total=0 pid kb
  for pid in $(pgrep -P "$cluster_pid"); do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + kb))
  done
  echo $((total / 1024))
}

bench() {
  "${pin_bench[@]}" "$bench_bin" --urls "$urls" --json --duration "$duration" "$@"
}

ulimit -n "$(ulimit -Hn)"
echo "http.max_in_flight: ${max_in_flight:-default}, $clients clients in overload, rate capped at $rate_cap req/s"
echo
echo "| workload | max req/s (closed, 64) | p99 ms at half max | offered req/s | answered req/s | accepted | accepted p99 ms | rejected (503) | rejected p50 / p99 ms | other errors | RSS MiB before → after | lease lapses |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
# Waits until a write is acknowledged (shards open just after readiness).
wait_writable() {
  local deadline=$((SECONDS + 60)) status
  until status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data '{"name":"probe","email":"p@example.com","group":0}' "http://127.0.0.1:${ports[0]}/api/user") &&
    [[ "$status" == 201 ]]; do
    ((SECONDS < deadline)) || { echo "cluster not writable: $status" >&2; exit 1; }
    sleep 0.5
  done
}

for w in "${workloads[@]}"; do
  start_cluster
  wait_writable
  max=$(bench --workload "$w" --clients 64 | jq '.throughput')
  half=$(jq -n "$max / 2")
  calm=$(bench --workload "$w" --clients 64 --rate "$half")
  rss_before=$(cluster_rss_mib)
  rate=$(jq -n "[$max * $factor, $rate_cap] | min | floor")
  over=$(bench --workload "$w" --clients "$clients" --rate "$rate" --timeout 10s)
  rss_after=$(cluster_rss_mib)
  lapses=$(cat "$work"/cluster/*.log | grep -c "lease lapsed" || true)
  jq -r --argjson calm "$calm" --arg w "$w" --arg max "$max" --arg rate "$rate" \
    --arg rss "$rss_before → $rss_after" --arg lapses "$lapses" '
    (.rejected.count // 0) as $rej
    | ([.errors | to_entries[] | select(.key != "503") | .value] | add // 0) as $other
    | "| \($w) | \($max) | \($calm.latency_ms.p99) | \($rate) | \(.throughput) | \(.requests - $rej - $other) | \(.latency_ms.p99) | \($rej) | \(.rejected.latency_ms.p50 // "-") / \(.rejected.latency_ms.p99 // "-") | \($other) | \($rss) | \($lapses) |"
  ' <<<"$over"
  echo "$over" >"$work/$w-overload.json"
  jq -c '{unsent, errors}' <<<"$over" >&2
done
