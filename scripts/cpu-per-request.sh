#!/usr/bin/env bash
# CPU per request, as user-space instructions counted by callgrind (noise-free, unlike wall
# time on a shared machine; kernel time is not counted). Starts three nodes of BIN, each under
# `valgrind --tool=callgrind` with instrumentation off, creates 200 users and keeps those n2
# does not own, then counts instructions on every node while N reads of them are sent to n2
# (so each read is forwarded over the RPC to its owner), on CONNS keep-alive connections. The
# same is counted again over the same wall time with no requests, and the difference divided
# by N is printed per node: the edge node (n2) and the owners (n1, n3).
#
# Usage: scripts/cpu-per-request.sh BIN OUTDIR [N=2000] [CONNS=1] [BASE_PORT=29080]
#   CONFIG=path/cluster.toml   a config for the nodes (e.g. a longer gossip interval, which
#                              makes the idle background smaller and the estimate steadier)
#   HOLD=1                     first hold n2's in-flight places with a POST whose body never
#                              comes: with http.max_in_flight = 1 in CONFIG every read is then
#                              refused, and the count is the cost of one refusal
# The callgrind files stay in OUTDIR (cg.nI.1 under load, cg.nI.2 idle); compare two builds
# function by function with scripts/callgrind_diff.py. Needs valgrind, curl, python3, bc.
set -euo pipefail
bin=$1; out=$2; n=${3:-2000}; conns=${4:-1}; base=${5:-29080}
tools=$(dirname "$0")
rm -rf "$out"; mkdir -p "$out"
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$out/secret"
export TROUPE_SECRET_FILE="$out/secret"
extra=()
if [[ -n "${CONFIG:-}" ]]; then extra=(--config="$CONFIG"); fi
pids=()
regions=(eu-west-1 us-east-1 ap-southeast-1)
for i in 0 1 2; do
  seeds=""
  for j in 0 1 2; do [[ $j == $i ]] || seeds+="${seeds:+,}127.0.0.1:$((base+100+j))"; done
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.n$((i+1))" \
    "$bin" node --node-id=n$((i+1)) --region=${regions[i]} --http-listen=127.0.0.1:$((base+i)) \
    --gossip-listen=127.0.0.1:$((base+100+i)) --rpc-listen=127.0.0.1:$((base+200+i)) \
    --data-dir="$out/d$((i+1))" --seeds=$seeds "${extra[@]}" >"$out/n$((i+1)).log" 2>&1 &
  pids+=($!)
done
holder=""
trap 'kill -TERM ${pids[*]} $holder 2>/dev/null; wait' EXIT
for i in 0 1 2; do
  until curl -sf -o /dev/null "http://127.0.0.1:$((base+i))/readyz"; do sleep 1; done
done
# shards open just after readiness
until [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data '{"name":"p","email":"p@e.com","group":0}' http://127.0.0.1:$base/api/user) == 201 ]]; do sleep 1; done
python3 "$tools/cpu_per_request.py" prepare $base 1 200 "$out/ids"
if [[ -n "${HOLD:-}" ]]; then
  # Holds n2's only in-flight place: a POST whose body never comes.
  python3 -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $((base+1))))
s.sendall(b'POST /api/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n')
time.sleep(900)" &
  holder=$!
  sleep 2
fi
python3 "$tools/cpu_per_request.py" read $base 1 "$out/ids" 400 $conns   # warm-up
sleep 2
t0=$(date +%s.%N)
for p in ${pids[*]}; do callgrind_control -i on $p >/dev/null; done
python3 "$tools/cpu_per_request.py" read $base 1 "$out/ids" $n $conns
for p in ${pids[*]}; do callgrind_control -i off $p >/dev/null; done
t1=$(date +%s.%N)
for p in ${pids[*]}; do callgrind_control -d load $p >/dev/null; done
# idle baseline over the same wall time
for p in ${pids[*]}; do callgrind_control -z $p >/dev/null; callgrind_control -i on $p >/dev/null; done
sleep "$(echo "$t1 - $t0" | bc)"
for p in ${pids[*]}; do callgrind_control -i off $p >/dev/null; done
for p in ${pids[*]}; do callgrind_control -d idle $p >/dev/null; done
echo "wall $(echo "$t1 - $t0" | bc) s"
sum=0
for i in 1 2 3; do
  load=$(awk '/^totals:/ {print $2}' "$out/cg.n$i.1"); idle=$(awk '/^totals:/ {print $2}' "$out/cg.n$i.2")
  per=$(( (load - idle) / n )); sum=$((sum + per))
  echo "n$i: $load instructions under load, $idle idle, $per per request"
done
echo "all nodes: $sum instructions per request"
