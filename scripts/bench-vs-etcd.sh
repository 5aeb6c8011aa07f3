#!/usr/bin/env bash
# Issue 9's reference comparison: a local 3-node Troupe cluster against a 3-member etcd cluster
# on the same machine, driven by the same `troupe-bench` with the same clients, keys and value
# bytes (etcd through its v3 JSON gateway), and the result written into docs/BENCHMARKS.md.
#
# Method (issue 9): both clusters run for the whole benchmark, pinned to CPU 0, the load
# generator to CPU 1 (taskset); one unrecorded warm-up pass; then ROUNDS rounds, each running
# Troupe's workload and then etcd's (A B A B ...): users-write vs etcd-put and users-read vs
# etcd-range, at 16 and 64 clients, with Troupe's /healthz as the baseline in every round.
# Medians with their min-max over rounds. Any non-2xx answer or socket error fails the run.
# Then the open-loop tail latency: each workload at half of its own system's best closed-loop
# median, again alternating, OPEN_ROUNDS rounds.
#
# The CPU used by processes other than the two clusters and the generator is measured per
# round (from /proc), so a run on a shared machine says so in its report.
#
# Usage: scripts/bench-vs-etcd.sh
#   DURATION=10s     measured time of each run (plus troupe-bench's 2 s warm-up per run)
#   ROUNDS=5         closed-loop rounds
#   OPEN_ROUNDS=5    open-loop rounds
#   CLIENTS="16 64"  closed-loop client counts
#   OPEN_CLIENTS=64  open loop: bound on requests in flight
#   PRELOAD=1000     users (Troupe) / keys (etcd) preloaded, the read and update key space
#   DOC=docs/BENCHMARKS.md   where the section goes (DOC= prints it only)
#   TROUPE_DATA=<dir>         where Troupe's data directories go (default: the run's temp dir,
#                             beside etcd's); TROUPE_DATA=/dev/shm measures Troupe without its
#                             disk syncs, the ceiling a write-ahead log could reach (decision 039)
# If etcd-server / etcd-client are missing they are installed from Debian (apt-get); when that
# is impossible the script prints a SKIPPED line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/doc-section.sh
source scripts/doc-section.sh

duration="${DURATION:-10s}"
rounds="${ROUNDS:-5}"
open_rounds="${OPEN_ROUNDS:-5}"
read -ra client_counts <<<"${CLIENTS:-16 64}"
open_clients="${OPEN_CLIENTS:-64}"
preload="${PRELOAD:-1000}"
doc="${DOC-docs/BENCHMARKS.md}"
pairs=("users-write etcd-put" "users-read etcd-range")

# Ports away from scripts/bench.sh (19080) and etcd's defaults (2379/2380), so a stray
# cluster of either kind cannot be measured by mistake.
troupe_base=19380
troupe_ports=("$troupe_base" "$((troupe_base + 1))" "$((troupe_base + 2))")
etcd_client_ports=(23791 23792 23793)
etcd_peer_ports=(23801 23802 23803)
troupe_urls="http://127.0.0.1:${troupe_ports[0]},http://127.0.0.1:${troupe_ports[1]},http://127.0.0.1:${troupe_ports[2]}"
etcd_urls="http://127.0.0.1:${etcd_client_ports[0]},http://127.0.0.1:${etcd_client_ports[1]},http://127.0.0.1:${etcd_client_ports[2]}"
bin="${CARGO_TARGET_DIR:-target}/release/troupe"
bench_bin="${CARGO_TARGET_DIR:-target}/release/troupe-bench"

for tool in jq curl; do
  command -v "$tool" >/dev/null || { echo "bench-vs-etcd.sh needs $tool" >&2; exit 1; }
done

# --- etcd from Debian ---------------------------------------------------------------------
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "installing etcd-server and etcd-client from Debian" >&2
  as_root=()
  ((EUID == 0)) || as_root=(sudo -n)
  install_log="$(mktemp)"
  apt_install() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client \
      >>"$install_log" 2>&1
  }
  if ! apt_install; then
    "${as_root[@]}" apt-get update >>"$install_log" 2>&1 || true
    apt_install || true
  fi
  if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "SKIPPED: etcd comparison: etcd-server/etcd-client could not be installed" \
      "(apt-get log: $install_log)"
    exit 0
  fi
  # On a machine with systemd the package starts its own single-member etcd on 2379; it
  # would compete for CPU with the clusters under test.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    echo "note: stopping the etcd.service the package just started" >&2
    "${as_root[@]}" systemctl stop etcd || true
  fi
  rm -f "$install_log"
fi

cargo build --release -p troupe-node --bin troupe -p troupe-bench --bin troupe-bench

# --- CPU pinning: servers on 0, load generator on 1 ----------------------------------------
pin_servers=()
pin_bench=()
pinning="not pinned (no taskset or fewer than 2 CPUs)"
if command -v taskset >/dev/null && [[ "$(nproc)" -ge 2 ]]; then
  pin_servers=(taskset -c 0)
  pin_bench=(taskset -c 1)
  pinning="both clusters pinned to CPU 0, the load generator to CPU 1 (taskset)"
fi

# --- clusters, stopped by the trap ---------------------------------------------------------
work="$(mktemp -d)"
troupe_data="$work/troupe"
if [[ -n "${TROUPE_DATA:-}" ]]; then
  troupe_data="$(mktemp -d "${TROUPE_DATA%/}/troupe-bench.XXXXXX")"
fi
troupe_pid=""
etcd_pids=()
stop_all() {
  if [[ -n "$troupe_pid" ]] && kill -0 "$troupe_pid" 2>/dev/null; then
    kill -TERM "$troupe_pid"         # troupe local stops its nodes on SIGTERM
    wait "$troupe_pid" 2>/dev/null || true
  fi
  local pid
  for pid in "${etcd_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${etcd_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work" "$troupe_data"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# etcd: three members on 127.0.0.1, default durability (WAL fsync on every commit), default
# raft timing; only names, URLs and the log level are set.
initial_cluster=""
for i in 0 1 2; do
  initial_cluster+="${initial_cluster:+,}e$((i + 1))=http://127.0.0.1:${etcd_peer_ports[i]}"
done
etcd_flags_doc="--initial-cluster e1..e3=http://127.0.0.1:${etcd_peer_ports[0]}..${etcd_peer_ports[2]}"
etcd_flags_doc+=" --initial-cluster-state new --initial-cluster-token troupe-bench"
etcd_flags_doc+=" --listen-client-urls/--advertise-client-urls http://127.0.0.1:${etcd_client_ports[0]}..${etcd_client_ports[2]}"
etcd_flags_doc+=" --listen-peer-urls/--initial-advertise-peer-urls http://127.0.0.1:${etcd_peer_ports[0]}..${etcd_peer_ports[2]}"
etcd_flags_doc+=" --data-dir <temp dir> --logger zap --log-level warn"
for i in 0 1 2; do
  name="e$((i + 1))"
  client="http://127.0.0.1:${etcd_client_ports[i]}"
  peer="http://127.0.0.1:${etcd_peer_ports[i]}"
  "${pin_servers[@]}" etcd --name "$name" --data-dir "$work/etcd-$name" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$initial_cluster" --initial-cluster-state new \
    --initial-cluster-token troupe-bench --logger zap --log-level warn \
    >"$work/etcd-$name.log" 2>&1 &
  etcd_pids+=($!)
done

"${pin_servers[@]}" "$bin" local --dir "$troupe_data" --base-port "$troupe_base" --fresh \
  >"$work/troupe-local.log" 2>&1 &
troupe_pid=$!

# Waits until `check` succeeds, or fails the run after 60 s printing `log`.
wait_for() {
  local what=$1 log=$2 deadline=$((SECONDS + 60))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS <= deadline)) || { cat "$log" >&2; fail "$what not ready after 60 s"; }
    sleep 0.2
  done
}
for port in "${troupe_ports[@]}"; do
  wait_for "troupe node on port $port" "$work/troupe-local.log" \
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"
done
for i in 0 1 2; do
  wait_for "etcd member e$((i + 1))" "$work/etcd-e$((i + 1)).log" \
    etcdctl --endpoints "http://127.0.0.1:${etcd_client_ports[i]}" endpoint health
  # The gateway route the bench uses answers (a range of an absent key is an empty 200).
  wait_for "etcd JSON gateway of e$((i + 1))" "$work/etcd-e$((i + 1)).log" \
    curl -sf -X POST -d '{"key":"cHJvYmU="}' "http://127.0.0.1:${etcd_client_ports[i]}/v3/kv/range"
done
etcd_version="$(curl -sf "http://127.0.0.1:${etcd_client_ports[0]}/version" | jq -r .etcdserver)"
echo "ready: troupe $troupe_urls, etcd $etcd_version $etcd_urls" >&2

# --- CPU accounting: what processes other than ours used ------------------------------------
clk_tck="$(getconf CLK_TCK)"
# Prints "busy steal ours" in clock ticks: the machine's busy time (steal excluded), its steal
# time, and the CPU time of the clusters, the finished bench runs and this shell.
cpu_sample() {
  local pids=("${etcd_pids[@]}" "$troupe_pid" $$) ours=0 pid t
  local children
  children="$(pgrep -P "$troupe_pid" || true)"
  for pid in $children; do pids+=("$pid"); done
  for pid in "${pids[@]}"; do
    # utime stime cutime cstime are fields 14-17 (after the parenthesised command name).
    t="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }')" || t=0
    ours=$((ours + ${t:-0}))
  done
  awk -v ours="$ours" '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9, ours }' /proc/stat
}
# Share of the machine (all CPUs) used by other processes between two samples, in percent.
foreign_share() {
  local b0 s0 o0 b1 s1 o1 wall=$3
  read -r b0 s0 o0 <<<"$1"
  read -r b1 s1 o1 <<<"$2"
  awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v s="$((s1 - s0))" -v w="$wall" \
    -v hz="$clk_tck" -v n="$(nproc)" \
    'BEGIN { f = (b - o) / hz / (w * n) * 100; if (f < 0) f = 0;
             printf "{\"foreign_pct\": %.1f, \"steal_pct\": %.1f}\n", f, s / hz / (w * n) * 100 }'
}

# --- runs --------------------------------------------------------------------------------
results="$work/results.jsonl"
rounds_log="$work/rounds.jsonl"
: >"$results"
: >"$rounds_log"
phase=warmup
round=0

# Runs one `troupe-bench` against `system` and appends its JSON report, tagged with the
# system, phase and round, to the results; any unexpected answer fails the whole run.
bench() {
  local system=$1 workload=$2 clients=$3 urls=$troupe_urls line
  shift 3
  [[ "$system" == etcd ]] && urls=$etcd_urls
  if ! line="$("${pin_bench[@]}" "$bench_bin" --urls "$urls" --workload "$workload" \
    --clients "$clients" --duration "$duration" --preload "$preload" --json --fail-on-error \
    "$@" 2>"$work/bench.err")"; then
    cat "$work/bench.err" >&2
    fail "$system $workload at $clients clients ($phase, round $round): non-2xx or socket error: $line"
  fi
  jq -c --arg system "$system" --arg phase "$phase" --argjson round "$round" \
    '. + {system: $system, phase: $phase, round: $round}' <<<"$line" >>"$results"
  echo "$phase $round: $system $workload, $clients clients${*:+ ($*)}:" \
    "$(jq -r '"\(.throughput | round) req/s, p99 \(.latency_ms.p99) ms"' <<<"$line")" >&2
}

# Runs `body` as one round, recording the other processes' share of the CPU during it.
measured_round() {
  local before after t0=$SECONDS
  before="$(cpu_sample)"
  "$@"
  after="$(cpu_sample)"
  foreign_share "$before" "$after" "$((SECONDS - t0))" |
    jq -c --arg phase "$phase" --argjson round "$round" '. + {phase: $phase, round: $round}' \
      >>"$rounds_log"
}

closed_round() {
  local c pair
  for c in "${client_counts[@]}"; do bench troupe healthz "$c"; done
  for pair in "${pairs[@]}"; do
    read -r a b <<<"$pair"
    for c in "${client_counts[@]}"; do
      bench troupe "$a" "$c"
      bench etcd "$b" "$c"
    done
  done
}

# jq helpers shared by every summary below: median, two decimals, median (min–max).
jq_defs='
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def f2: . * 100 | round / 100 | tostring | if test("\\.") then . else . + ".00" end
            | if test("\\.[0-9]$") then . + "0" else . end;
    def spread(f): (map(f) | median | f2) + " (" + (map(f) | min | f2) + "–" + (map(f) | max | f2) + ")";
'

# Half of the best closed-loop median req/s of `workload` (any client count), for --rate.
half_max() {
  jq -rs --arg w "$1" "$jq_defs"'
    map(select(.phase == "closed" and .workload == $w)) | group_by(.clients)
    | map(map(.throughput) | median) | max / 2 | round' "$results"
}

open_round() {
  local pair a b
  for pair in "${pairs[@]}"; do
    read -r a b <<<"$pair"
    bench troupe "$a" "$open_clients" --rate "${rate[$a]}"
    bench etcd "$b" "$open_clients" --rate "${rate[$b]}"
  done
}

# CPU ticks used so far by the given processes.
ticks_of() {
  local pid t sum=0
  for pid in "$@"; do
    t="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || t=0
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
# What each cluster costs doing nothing (gossip, raft heartbeats), since both share CPU 0
# for the whole run: percent of one CPU over 5 s.
troupe_procs=("$troupe_pid" $(pgrep -P "$troupe_pid" || true))
t0="$(ticks_of "${troupe_procs[@]}")" e0="$(ticks_of "${etcd_pids[@]}")"
sleep 5
t1="$(ticks_of "${troupe_procs[@]}")" e1="$(ticks_of "${etcd_pids[@]}")"
idle_cpu="$(awk -v t="$((t1 - t0))" -v e="$((e1 - e0))" -v hz="$clk_tck" \
  'BEGIN { printf "Troupe %.1f %%, etcd %.1f %% of one CPU", t / hz / 5 * 100, e / hz / 5 * 100 }')"

# The commit measured: taken now, since the binary was built from this tree just above.
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$rev" != unknown && -n "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no)" ]]; then
  rev="$rev (dirty)"
fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# Warm-up: every workload once, short, unrecorded.
saved_duration=$duration
duration=3s
for w in healthz users-write users-read; do bench troupe "$w" 64; done
for w in etcd-put etcd-range; do bench etcd "$w" 64; done
duration=$saved_duration
: >"$results"

# etcd-range must read real values: preloaded user 0 holds the JSON Troupe serves for it.
key="$(printf '%s' 00000000-0000-4000-8000-000000000000 | base64 -w0)"
value="$(curl -sf -X POST -d "{\"key\":\"$key\"}" "${etcd_urls%%,*}/v3/kv/range" |
  jq -r '.kvs[0].value // empty' | base64 -d)"
jq -e '.id == "00000000-0000-4000-8000-000000000000" and .name == "user 0"' <<<"$value" >/dev/null ||
  fail "etcd does not hold preloaded user 0 (got: $value)"

phase=closed
for ((round = 1; round <= rounds; round++)); do measured_round closed_round; done

declare -A rate
for pair in "${pairs[@]}"; do
  for w in $pair; do rate[$w]="$(half_max "$w")"; done
done
phase=open
for ((round = 1; round <= open_rounds; round++)); do measured_round open_round; done

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ------------------------------------------------------------------------------
mem_gib="$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
fs="$(df -T "$work" | awk 'NR == 2 { print $2 }')"
troupe_fs="$(df -T "$troupe_data" | awk 'NR == 2 { print $2 }')"
data_on="data directories on $fs"
[[ "$troupe_fs" == "$fs" ]] || data_on="Troupe's data on $troupe_fs, etcd's on $fs"
foreign="$(jq -rs 'map(.foreign_pct) | "\(min)–\(max) %"' "$rounds_log")"
steal="$(jq -rs 'map(.steal_pct) | "\(min)–\(max) %"' "$rounds_log")"

section="$work/section.md"
{
  echo "<!-- bench-vs-etcd:start (written by scripts/bench-vs-etcd.sh; a rerun replaces this section) -->"
  echo "## Troupe vs etcd (issue 9), ${started%%T*}"
  echo
  echo "Command: \`scripts/bench-vs-etcd.sh\` (ROUNDS=$rounds, OPEN_ROUNDS=$open_rounds," \
    "DURATION=$duration, CLIENTS=\"${client_counts[*]}\", OPEN_CLIENTS=$open_clients," \
    "PRELOAD=$preload). Started $started, commit $rev."
  echo
  echo "- Machine: $(nproc) CPUs ($cpu_model), $mem_gib GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME")," \
    "kernel $(uname -r), $(rustc --version | cut -d' ' -f1-2); $data_on."
  echo "- Troupe: 3-node \`troupe local\` (release build, default \`cluster.toml\`: RF 2, durable writes)."
  echo "- etcd: $(etcd --version | head -1 | cut -d' ' -f3) from Debian (\`etcd-server\`/\`etcd-client\` $(dpkg-query -W -f '${Version}' etcd-server 2>/dev/null || echo '?'))," \
    "3 members on 127.0.0.1, defaults otherwise (WAL fsync on every commit, heartbeat 100 ms," \
    "election 1000 ms, snapshot-count 100000, 2 GiB backend quota). Flags: \`$etcd_flags_doc\`." \
    "Driven through its v3 JSON gateway, linearizable ranges."
  echo "- Same generator, clients and bytes: \`etcd-put\` puts the exact JSON body \`users-write\`" \
    "sends (98 bytes for a create, ~57 for an update) under the user's id (alternately a fresh" \
    "id and one of the $preload preloaded); \`etcd-range\` reads one of $preload preloaded keys" \
    "whose value is the user JSON Troupe's preload creates (~102 bytes)."
  echo "- Method: $pinning; a 3 s unrecorded warm-up of every workload; $rounds rounds alternating" \
    "Troupe and etcd run by run (A B A B), each run ${duration} measured after troupe-bench's 2 s" \
    "warm-up; medians over rounds with min–max; the run fails on any non-2xx or socket error."
  echo "- Load: 1/5/15-min load average $load_before before, $load_after after. CPU used by other" \
    "processes than the clusters and the generator, per round: $foreign of the machine (steal $steal)." \
    "Idle cost of each cluster (both run throughout): $idle_cpu."
  echo
  echo "### Closed loop"
  echo
  jq -rs "$jq_defs"'
    map(select(.phase == "closed")) as $runs
    | ($runs | map(select(.workload == "healthz")) | group_by(.clients)
       | map({key: (.[0].clients | tostring), value: (map(.throughput) | median)}) | from_entries)
      as $healthz
    | ["healthz", "users-write", "etcd-put", "users-read", "etcd-range"] as $order
    | "| system | workload | clients | req/s median (min–max) | ratio to Troupe healthz | p50 ms | p99 ms median (min–max) | p99.9 ms | requests (all 2xx) |",
      "|---|---|---|---|---|---|---|---|---|",
      ($runs | group_by([.workload, .clients])
       | sort_by([(.[0].workload as $w | $order | index($w)), .[0].clients])[]
       | . as $g | ($g | map(.throughput) | median) as $med
       | "| \($g[0].system) | \($g[0].workload) | \($g[0].clients) | "
         + ($g | map(.throughput) | median | round | tostring) + " ("
         + ($g | map(.throughput) | min | round | tostring) + "–"
         + ($g | map(.throughput) | max | round | tostring) + ") | "
         + ($med / $healthz[$g[0].clients | tostring] | f2)
         + " | \($g | map(.latency_ms.p50) | median | f2) | \($g | spread(.latency_ms.p99))"
         + " | \($g | map(.latency_ms.p99_9) | median | f2) | \($g | map(.requests) | add) |")
  ' "$results"
  echo
  echo "Troupe ÷ etcd throughput, per round (the two runs of a pair are adjacent in time):"
  echo
  jq -rs "$jq_defs"'
    map(select(.phase == "closed")) as $runs
    | "| pair | clients | Troupe ÷ etcd median (min–max) |", "|---|---|---|",
      ([["users-write", "etcd-put"], ["users-read", "etcd-range"]][] as [$a, $b]
       | ($runs | map(select(.workload == $a)) | map(.clients) | unique)[] as $c
       | [$runs[] | select(.workload == $a and .clients == $c)] as $ta
       | [$ta[] | .round as $r | .throughput / ($runs[] | select(.workload == $b and .clients == $c and .round == $r) | .throughput)]
       | "| \($a) vs \($b) | \($c) | \(median | f2) (\(min | f2)–\(max | f2)) |")
  ' "$results"
  echo
  echo "### Open loop at half of each system's own maximum (tail latency)"
  echo
  echo "Rate = half the best closed-loop median of the same workload; latency counted from each" \
    "request's due time; at most $open_clients requests in flight."
  echo
  jq -rs "$jq_defs"'
    ["users-write", "etcd-put", "users-read", "etcd-range"] as $order
    | "| system | workload | rate req/s | achieved req/s | p50 ms | p90 ms | p99 ms median (min–max) | p99.9 ms | max ms | unsent |",
      "|---|---|---|---|---|---|---|---|---|---|",
      (map(select(.phase == "open")) | group_by(.workload)
       | sort_by(.[0].workload as $w | $order | index($w))[]
       | . as $g
       | "| \($g[0].system) | \($g[0].workload) | \($g[0].target_rate | round) | \($g | map(.throughput) | median | round)"
         + " | \($g | map(.latency_ms.p50) | median | f2) | \($g | map(.latency_ms.p90) | median | f2)"
         + " | \($g | spread(.latency_ms.p99)) | \($g | map(.latency_ms.p99_9) | median | f2)"
         + " | \($g | map(.latency_ms.max) | median | f2) | \($g | map(.unsent // 0) | add) |")
  ' "$results"
  echo
  echo "### Issue 9 targets in this run"
  echo
  jq -rs --argjson top "$(printf '%s\n' "${client_counts[@]}" | sort -n | tail -1)" "$jq_defs"'
    def pf: if . then "**met**" else "**not met**" end;
    . as $all
    | def closed($w; $c): [$all[] | select(.phase == "closed" and .workload == $w and .clients == $c)];
      def open($w): [$all[] | select(.phase == "open" and .workload == $w)];
      def rps($w; $c): closed($w; $c) | map(.throughput) | median;
      ($all | map(select(.phase == "closed")) | map(.clients) | unique) as $cs
    | "| target | measured | result |", "|---|---|---|",
      ($cs[] as $c | (rps("users-read"; $c) / rps("healthz"; $c)) as $r
       | "| users-read ≥ 50 % of healthz, \($c) clients | \($r * 100 | round) % | \($r >= 0.5 | pf) |"),
      (closed("users-read"; $top) | map(.latency_ms.p99) | median) as $p
      | "| users-read p99 ≤ 5 ms at \($top) clients (closed loop) | \($p | f2) ms | \($p <= 5 | pf) |",
      (open("users-read") | map(.latency_ms.p99) | median) as $p
      | "| users-read p99 ≤ 5 ms, open loop at half max | \($p | f2) ms | \($p <= 5 | pf) |",
      ($cs[] as $c | (rps("users-write"; $c) / rps("healthz"; $c)) as $r
       | "| users-write ≥ 20 % of healthz, \($c) clients | \($r * 100 | round) % | \($r >= 0.2 | pf) |"),
      ($cs[] as $c | (rps("users-write"; $c)) as $t | (rps("etcd-put"; $c)) as $e
       | "| users-write above etcd put, \($c) clients | \($t | round) vs \($e | round) req/s (\($t / $e | f2)×) | \($t > $e | pf) |"),
      (closed("users-write"; $top) | map(.latency_ms.p99) | median) as $p
      | "| users-write p99 ≤ 15 ms at \($top) clients (closed loop) | \($p | f2) ms | \($p <= 15 | pf) |",
      (open("users-write") | map(.latency_ms.p99) | median) as $p
      | "| users-write p99 ≤ 15 ms, open loop at half max | \($p | f2) ms | \($p <= 15 | pf) |"
  ' "$results"
  echo "<!-- bench-vs-etcd:end -->"
} >"$section"

cat "$section"
if [[ -n "$doc" ]]; then
  write_doc_section bench-vs-etcd "$section" "$doc"
fi
