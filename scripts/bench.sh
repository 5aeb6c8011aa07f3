#!/usr/bin/env bash
# Benchmarks a fresh local 3-node cluster with `troupe-bench`, prints a markdown table and
# writes it, with the date, the commit and the machine, into docs/BENCHMARKS.md (replacing the
# previous run's section).
#
# The cluster is pinned to CPU 0 and the load generator to CPU 1 (when taskset exists and the
# machine has two CPUs), so they do not compete for the same core. Every workload runs at 16
# and 64 clients, ROUNDS times, the workload order alternating between rounds; the table
# shows the median req/s (with min-max over rounds) and the ratio to healthz at the same
# number of clients. Workloads whose route does not exist yet (404) are skipped with a note.
#
# Usage: scripts/bench.sh
#   DURATION=10s   measured time of each run (warm-up is troupe-bench's default, 2s)
#   ROUNDS=1       rounds over all workloads
#   WORKLOADS="healthz users-read users-write sessions jobs-create parties-join mixed"
#   CLIENTS="16 64"
#   DOC=docs/BENCHMARKS.md   where the section goes (DOC= prints it only)
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-10s}"
rounds="${ROUNDS:-1}"
read -ra workloads <<<"${WORKLOADS:-healthz users-read users-write sessions jobs-create parties-join mixed}"
read -ra client_counts <<<"${CLIENTS:-16 64}"
doc="${DOC-docs/BENCHMARKS.md}"
# shellcheck source=scripts/local-cluster.sh
source scripts/local-cluster.sh
# shellcheck source=scripts/doc-section.sh
source scripts/doc-section.sh

# Sends one POST and prints its status code.
post_status() {
  curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    ${2:+--data "$2"} "http://127.0.0.1:${ports[0]}$1"
}

# Whether the routes a workload needs exist (anything but 404).
route_exists() {
  case "$1" in
    healthz | users-read | users-write) return 0 ;;
    sessions)
      [[ "$(post_status '/add-session?user_id=bench-probe')" != 404 ]] || return 1
      post_status '/remove-session?user_id=bench-probe' >/dev/null ;;
    jobs-create) [[ "$(post_status /jobs '{"object_id":"bench-probe"}')" != 404 ]] ;;
    parties-join) [[ "$(post_status /parties '{"device_id":"bench-probe"}')" != 404 ]] ;;
    mixed) route_exists sessions && route_exists jobs-create ;;
    *) echo "unknown workload $1" >&2; return 1 ;;
  esac
}

start_cluster
echo "cluster ready: $urls" >&2

available=()
for w in "${workloads[@]}"; do
  if route_exists "$w"; then
    available+=("$w")
  else
    echo "note: skipping $w (its route answers 404 on this build)" >&2
  fi
done

results="$work/results.jsonl"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
: >"$results"
for ((round = 1; round <= rounds; round++)); do
  order=("${available[@]}")
  if ((round % 2 == 0)); then   # alternate the order so no workload always runs on a warmer cluster
    order=()
    for ((i = ${#available[@]} - 1; i >= 0; i--)); do order+=("${available[i]}"); done
  fi
  for w in "${order[@]}"; do
    for c in "${client_counts[@]}"; do
      echo "round $round: $w, $c clients" >&2
      "${pin_bench[@]}" "$bench_bin" --urls "$urls" --workload "$w" --clients "$c" \
        --duration "$duration" --json >>"$results"
    done
  done
done

mem_gib="$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$rev" != unknown && -n "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no)" ]]; then
  rev="$rev (dirty)"
fi
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
section="$work/section.md"
{
echo "<!-- bench:start (written by scripts/bench.sh; a rerun replaces this section) -->"
echo "## \`scripts/bench.sh\`, $(date -u +%Y-%m-%d)"
echo
echo "Command: \`scripts/bench.sh\` (ROUNDS=$rounds, DURATION=$duration, CLIENTS=\"${client_counts[*]}\")." \
  "Started $started, commit $rev."
echo "Machine: $(nproc) CPUs (${cpu_model:-unknown}), ${mem_gib} GiB RAM; 3-node \`troupe local\`," \
  "release build, default \`cluster.toml\`; the cluster pinned to CPU 0 and the load generator to" \
  "CPU 1 when the machine has two. Medians over rounds, min–max in brackets."
echo
jq -rs --arg order "${available[*]}" '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r2: . * 100 | round / 100;
  def fixed2: r2 | tostring | if test("\\.") then . else . + ".00" end
            | if test("\\.[0-9]$") then . + "0" else . end;
  ($order | split(" ")) as $order
  | (map(select(.workload == "healthz")) | group_by(.clients)
     | map({key: (.[0].clients | tostring), value: (map(.throughput) | median)}) | from_entries)
    as $healthz
  | group_by([.workload, .clients])
  | sort_by([(.[0].workload as $w | $order | index($w)), .[0].clients])
  | "| workload | clients | req/s | ratio to healthz | p50 ms | p99 ms | p99.9 ms | errors |",
    "|---|---|---|---|---|---|---|---|",
    (.[] | . as $runs
     | ($runs | map(.throughput)) as $rps
     | ($rps | median) as $med
     | $healthz[$runs[0].clients | tostring] as $base
     | ([$runs[].errors | to_entries[]] | group_by(.key)
        | map("\(.[0].key): \(map(.value) | add)") | join(", ")) as $errors
     | "| \($runs[0].workload) | \($runs[0].clients) | \($med | round)"
       + (if ($rps | length) > 1 then " (\($rps | min | round)–\($rps | max | round))" else "" end)
       + " | " + (if $base then ($med / $base | fixed2) else "–" end)
       + " | \($runs | map(.latency_ms.p50) | median | fixed2)"
       + " | \($runs | map(.latency_ms.p99) | median | fixed2)"
       + " | \($runs | map(.latency_ms.p99_9) | median | fixed2)"
       + " | \(if $errors == "" then "0" else $errors end) |")
' "$results"
echo "<!-- bench:end -->"
} >"$section"

cat "$section"
if [[ -n "$doc" ]]; then
  write_doc_section bench "$section" "$doc"
fi
