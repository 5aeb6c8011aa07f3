#!/usr/bin/env bash
# Measures the disk space of users (issue 3): creates USERS users through the API of a fresh
# local 3-node cluster (replication factor 2) and compares the allocated size of the three
# nodes' data.mdb files with the bytes of the users' JSON. Prints a markdown table; with
# mdb_stat (Debian lmdb-utils) also the page use of n1.
#
# Usage: scripts/space.sh
#   USERS=20000   how many users to create
#   IDS=random    API-generated random (v4) ids; IDS=ordered: client ids that increase, as v7 do
#   NAME_PAD=0    characters added to every user's name (bigger users)
set -euo pipefail
cd "$(dirname "$0")/.."

users="${USERS:-20000}"
command -v python3 >/dev/null || { echo "$0 needs python3" >&2; exit 1; }
# shellcheck source=scripts/local-cluster.sh
source scripts/local-cluster.sh

start_cluster
raw="$("${pin_bench[@]}" python3 scripts/space_load.py "$users" "$urls")"

total=0
row=""
for node in n1 n2 n3; do
  file="$work/cluster/$node/data/data.mdb"
  bytes=$(($(stat -c %b "$file") * $(stat -c %B "$file")))
  total=$((total + bytes))
  row+=" $bytes |"
done
ratio="$(awk -v t="$total" -v r="$raw" 'BEGIN { printf "%.2f", t / r }')"
echo "| users | raw JSON (B) | data.mdb n1 | n2 | n3 | total | total ÷ raw |"
echo "|---|---|---|---|---|---|---|"
echo "| $users | $raw |$row $total | **${ratio}×** |"

# Entries written while some copy may be behind leave the full 32-entry log (decision 013).
# Sums the series of metric $1 over the nodes, whatever their labels; with $2, only the series
# whose label set contains it.
sum_metric() {
  local port total=0 value
  for port in "${ports[@]}"; do
    value="$(curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" -v l="${2:-}" '
      { name = $1; sub(/\{.*/, "", name) }
      name == m && (l == "" || index($1, l)) { s += $2 }
      END { print s + 0 }')"
    total=$((total + ${value:-0}))
  done
  echo "$total"
}
echo
echo "shard log entries written while a copy may be behind:" \
  "$(sum_metric troupe_shard_entries_untrimmed_total) of $(sum_metric troupe_shard_entries_total)" \
  "(replica behind $(sum_metric troupe_shard_entries_untrimmed_total replica_behind)," \
  "replica waiting $(sum_metric troupe_shard_entries_untrimmed_total replica_waiting)," \
  "pre-copied $(sum_metric troupe_shard_entries_untrimmed_total pre_copied))"
