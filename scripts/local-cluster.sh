# Sourced by the benchmark scripts: a fresh local 3-node cluster in a temporary directory, on
# CPU 0 with the load generator on CPU 1 when taskset exists and the machine has two CPUs, so
# they do not compete for the same core. Builds the release binaries first (in
# CARGO_TARGET_DIR, default `target`): the node's `troupe` unless TROUPE_BIN names one to
# measure instead (an A/B of two builds), and the load generator `troupe-bench` unless
# TROUPE_BENCH_BIN names one. Defines `bin`, `bench_bin`, `ports`, `urls`, `work`,
# `pin_cluster`, `pin_bench`, `start_cluster` and `stop_cluster`; the cluster is stopped and
# `work` removed when the script exits.

base_port="${BASE_PORT:-19080}"
ports=("$base_port" "$((base_port + 1))" "$((base_port + 2))")
urls="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]},http://127.0.0.1:${ports[2]}"
bin="${TROUPE_BIN:-${CARGO_TARGET_DIR:-target}/release/troupe}"
bench_bin="${TROUPE_BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/troupe-bench}"

command -v jq >/dev/null || { echo "$0 needs jq" >&2; exit 1; }
command -v curl >/dev/null || { echo "$0 needs curl" >&2; exit 1; }

[[ -n "${TROUPE_BIN:-}" ]] || cargo build --release -p troupe-node --bin troupe
[[ -n "${TROUPE_BENCH_BIN:-}" ]] || cargo build --release -p troupe-bench --bin troupe-bench

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
    kill -TERM "$cluster_pid"        # troupe local stops its nodes on SIGTERM
    wait "$cluster_pid" 2>/dev/null || true
  fi
  cluster_pid=""
}
trap 'stop_cluster; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Starts a fresh cluster (stopping the previous one) and waits until every node is ready.
start_cluster() {
  stop_cluster
  rm -rf "$work/cluster"
  # shellcheck disable=SC2086 # LOCAL_ARGS is a list of extra `troupe local` arguments.
  "${pin_cluster[@]}" "$bin" local --dir "$work/cluster" --base-port "$base_port" --fresh ${LOCAL_ARGS:-} \
    >"$work/local.log" 2>&1 &
  cluster_pid=$!
  local deadline=$((SECONDS + 60)) port
  for port in "${ports[@]}"; do
    until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
      if ! kill -0 "$cluster_pid" 2>/dev/null || ((SECONDS > deadline)); then
        echo "cluster not ready on port $port; troupe local log:" >&2
        cat "$work/local.log" >&2
        exit 1
      fi
      sleep 0.2
    done
  done
}
