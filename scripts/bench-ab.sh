#!/usr/bin/env bash
# A/B of two builds of `troupe` in one run (issue 32): the same 3-node `troupe local` cluster
# started from build A and from build B in turn, round by round (A B B A A B ...: each build
# goes first in half the rounds, so a drift of the machine over the run weighs on both), each
# driven by the same `troupe-bench` with the same workloads. Servers pinned to CPU 0, the load
# generator to CPU 1, as in scripts/bench-vs-etcd.sh. Prints, per workload, each build's
# median req/s and p99 with min–max over rounds, and the median of B ÷ A per round.
#
# Usage: scripts/bench-ab.sh <troupe binary A> <troupe binary B>
#   ROUNDS=6          rounds (each runs both builds)
#   DURATION=10s      measured time of each run (plus troupe-bench's 2 s warm-up)
#   RUNS="healthz:64 users-write:64 users-write:16 users-read:64"   workload:clients per build per round
#   PRELOAD=1000      users preloaded
# Needs jq, curl and a release `troupe-bench` (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
(($# == 2)) || { sed -n '2,14p' "$0" >&2; exit 2; }
bin_a=$1 bin_b=$2
rounds="${ROUNDS:-6}"
duration="${DURATION:-10s}"
read -ra runs <<<"${RUNS:-healthz:64 users-write:64 users-write:16 users-read:64}"
preload="${PRELOAD:-1000}"
for f in "$bin_a" "$bin_b"; do [[ -x "$f" ]] || { echo "not an executable: $f" >&2; exit 2; }; done

cargo build --release -p troupe-bench --bin troupe-bench
bench_bin="${CARGO_TARGET_DIR:-target}/release/troupe-bench"

pin_servers=() pin_bench=()
if command -v taskset >/dev/null && [[ "$(nproc)" -ge 2 ]]; then
  pin_servers=(taskset -c 0) pin_bench=(taskset -c 1)
fi

base=19480
urls="http://127.0.0.1:$base,http://127.0.0.1:$((base + 1)),http://127.0.0.1:$((base + 2))"
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
trap 'exit 130' INT TERM

# Starts a fresh cluster of `bin` and waits until every node is ready (60 s at most).
start_cluster() {
  local bin=$1 port deadline=$((SECONDS + 60))
  rm -rf "$work/data"
  "${pin_servers[@]}" "$bin" local --dir "$work/data" --base-port "$base" --fresh \
    >"$work/cluster.log" 2>&1 &
  cluster_pid=$!
  for port in "$base" "$((base + 1))" "$((base + 2))"; do
    until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
      ((SECONDS <= deadline)) || { cat "$work/cluster.log" >&2; echo "FAILED: $bin not ready" >&2; exit 1; }
      sleep 0.2
    done
  done
}

results="$work/results.jsonl"
: >"$results"
# One round of build `label`: a fresh cluster, every run of RUNS, the cluster stopped.
round_of() {
  local label=$1 bin=$2 round=$3 run workload clients line
  start_cluster "$bin"
  for run in "${runs[@]}"; do
    workload=${run%%:*} clients=${run##*:}
    line="$("${pin_bench[@]}" "$bench_bin" --urls "$urls" --workload "$workload" \
      --clients "$clients" --duration "$duration" --preload "$preload" --json --fail-on-error)" ||
      { echo "FAILED: $label $workload at $clients clients: $line" >&2; exit 1; }
    jq -c --arg build "$label" --argjson round "$round" '. + {build: $build, round: $round}' \
      <<<"$line" >>"$results"
    echo "round $round: $label $workload, $clients clients:" \
      "$(jq -r '"\(.throughput | round) req/s, p99 \(.latency_ms.p99) ms"' <<<"$line")" >&2
  done
  stop_cluster
}

for ((round = 1; round <= rounds; round++)); do
  if ((round % 2 == 1)); then
    round_of A "$bin_a" "$round"
    round_of B "$bin_b" "$round"
  else
    round_of B "$bin_b" "$round"
    round_of A "$bin_a" "$round"
  fi
done

echo "A: $bin_a"
echo "B: $bin_b"
echo "$rounds rounds, $duration each run, $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(date -u +%Y-%m-%d)"
echo
jq -rs '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r2: . * 100 | round / 100;
  def spread(f): "\(map(f) | median | r2) (\(map(f) | min | r2)–\(map(f) | max | r2))";
  "| workload | clients | A req/s | B req/s | B ÷ A per round | A p99 ms | B p99 ms |",
  "|---|---|---|---|---|---|---|",
  (group_by([.workload, .clients])[] as $g
   | ($g | map(select(.build == "A"))) as $a | ($g | map(select(.build == "B"))) as $b
   | [$a[] as $x | $b[] | select(.round == $x.round) | .throughput / $x.throughput] as $ratio
   | "| \($g[0].workload) | \($g[0].clients) | \($a | spread(.throughput | round)) | \($b | spread(.throughput | round)) | \($ratio | spread(.)) | \($a | spread(.latency_ms.p99)) | \($b | spread(.latency_ms.p99)) |")
' "$results"
