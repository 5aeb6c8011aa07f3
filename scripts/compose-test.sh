#!/usr/bin/env bash
# Compose test: brings up docker-compose.yml from scratch on this machine's Docker engine and
# checks convergence, the seed's stop/sleep/start under reads of every user, a network partition
# (the cut-off node refuses writes, nothing diverges), a rolling restart under reads, and that
# `down -v` leaves nothing behind. Prints a SKIPPED line when there is no engine.
#
#   scripts/compose-test.sh               # STOP_SECONDS=60 for the seed's full safety check
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "SKIPPED: compose test (no Docker engine reachable: docker info failed)"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
project="troupe-test-$$"
export TROUPE_N1_PORT="${TROUPE_N1_PORT:-28181}" TROUPE_N2_PORT="${TROUPE_N2_PORT:-28182}" TROUPE_N3_PORT="${TROUPE_N3_PORT:-28183}"
stop_seconds="${STOP_SECONDS:-10}"
urls=("http://127.0.0.1:$TROUPE_N1_PORT" "http://127.0.0.1:$TROUPE_N2_PORT" "http://127.0.0.1:$TROUPE_N3_PORT")
dc() { "${compose[@]}" -p "$project" "$@"; }
# A secret of this run's own, in a file only it knows (docker-compose.yml mounts it).
secret_file=$(mktemp)
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$secret_file"
export TROUPE_SECRET_PATH="$secret_file"
cleanup() { dc down -v --remove-orphans >/dev/null 2>&1 || true; rm -f "$secret_file"; }
trap cleanup EXIT
step() { echo "== $*"; }

# Waits (up to $2 seconds) until node URL $1 lists exactly the live ready members "$3" (space
# separated) and every node it lists as live agrees on the shard table.
wait_members() {
  local url=$1 within=$2 expected=$3 deadline=$((SECONDS + $2))
  until python3 - "$url" "$expected" <<'PY' 2>/dev/null; do
import json, sys, urllib.request
view = json.load(urllib.request.urlopen(sys.argv[1] + "/cluster", timeout=2))
live = sorted(m["node_id"] for m in view["members"] if m["live"] and m["status"] == "ready")
owners = {s["owner"] for s in view["shards"]}
sys.exit(0 if live == sorted(sys.argv[2].split()) and owners <= set(live) else 1)
PY
    if [ "$SECONDS" -ge "$deadline" ]; then echo "FAILED: $url did not see members [$expected] within ${within}s"; dc logs --tail 30; exit 1; fi
    sleep 0.5
  done
}

start_reader() { rm -f "$stop_file"; python3 scripts/compose_reader.py "$stop_file" "$ids_file" "$@" & reader=$!; }
stop_reader() {
  touch "$stop_file"
  if ! wait "$reader"; then echo "FAILED: reads failed during: $1"; dc logs --timestamps --tail 200; exit 1; fi
}
stop_file=$(mktemp -u)
ids_file=$(mktemp)

# Creates $2 users through node URL $1, appending their ids to $ids_file; any status but 201 fails.
create_users() {
  python3 - "$1" "$2" "$ids_file" <<'PY'
import json, sys, urllib.request, uuid
url, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "a", encoding="utf-8") as out:
    for i in range(n):
        uid = str(uuid.uuid4())
        body = json.dumps({"id": uid, "name": f"user {i}", "email": f"u{i}@example.com", "group": i}).encode()
        req = urllib.request.Request(url + "/api/user", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201, resp.status
        out.write(uid + "\n")
PY
}

# Succeeds when every node lists the same digest for every copy of every shard it holds as
# owner or replica (compared per shard across nodes).
copies_agree() {
  python3 - "$@" <<'PY'
import json, sys, urllib.request
digests = {}
for url in sys.argv[1:]:
    for copy in json.load(urllib.request.urlopen(url + "/cluster/shards", timeout=5)):
        if copy["role"] in ("owner", "replica"):
            digests.setdefault(copy["shard"], set()).add(copy["digest"])
sys.exit(0 if digests and all(len(d) == 1 for d in digests.values()) else 1)
PY
}

step "build the image FROM scratch"
scripts/build-image.sh | tail -1

step "bring up 3 nodes"
dc up -d
for url in "${urls[@]}"; do wait_members "$url" 60 "n1 n2 n3"; done
echo "converged"
create_users "${urls[0]}" 200
echo "200 users created"

step "seed safety check: stop n2, wait ${stop_seconds}s, start it, while reading through n1 and n3"
start_reader "${urls[0]}" "${urls[2]}"
dc stop n2
wait_members "${urls[0]}" 30 "n1 n3"
sleep "$stop_seconds"
dc start n2
wait_members "${urls[0]}" 60 "n1 n2 n3"
wait_members "${urls[1]}" 60 "n1 n2 n3"
stop_reader "stop/start of n2"
deadline=$((SECONDS + 60))
until copies_agree "${urls[@]}"; do
  if [ "$SECONDS" -ge "$deadline" ]; then echo "FAILED: copies differ after n2 came back"; exit 1; fi
  sleep 1
done
echo "n2 caught up: every copy of every shard matches"

step "partition: disconnect n3 from the network, then reconnect"
network="${project//[^a-z0-9_-]/}_default"
container=$(dc ps -q n3)
docker network disconnect "$network" "$container"
wait_members "${urls[0]}" 30 "n1 n2"
wait_members "${urls[1]}" 30 "n1 n2"
# The cut-off node sees no majority: it must refuse writes rather than diverge. Without its
# network the host cannot reach it through the published port, so ask it from inside its own
# network namespace (nsenter), where its HTTP edge still listens on 127.0.0.1.
wait_members_dead_on_n3() {
  local pid=$1 deadline=$((SECONDS + 30))
  until nsenter -t "$pid" -n curl -s -m 2 http://127.0.0.1:8080/cluster | python3 -c '
import json, sys
view = json.load(sys.stdin)
sys.exit(0 if not any(m["live"] for m in view["members"] if m["node_id"] != "n3") else 1)' 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "FAILED: n3 still sees live peers while cut off"; exit 1; fi
    sleep 0.5
  done
}
if command -v nsenter >/dev/null && command -v curl >/dev/null; then
  pid=$(docker inspect -f '{{.State.Pid}}' "$container")
  wait_members_dead_on_n3 "$pid"
  status=$(nsenter -t "$pid" -n curl -s -o /dev/null -w '%{http_code}' -m 20 -X POST \
    http://127.0.0.1:8080/api/user -d '{"name":"minority","email":"m@example.com","group":1}' || true)
  if [ "$status" != "503" ]; then echo "FAILED: the partitioned node answered a write with $status, expected 503"; exit 1; fi
  echo "partitioned n3 refused a write with 503"
else
  echo "note: nsenter or curl missing: the cut-off node's refusal is not checked directly"
fi
create_users "${urls[0]}" 20
docker network connect --alias n3 "$network" "$container"
for url in "${urls[@]}"; do wait_members "$url" 60 "n1 n2 n3"; done
deadline=$((SECONDS + 60))
until copies_agree "${urls[@]}"; do
  if [ "$SECONDS" -ge "$deadline" ]; then echo "FAILED: copies differ after the partition healed"; exit 1; fi
  sleep 1
done
count=$(curl -s "${urls[2]}/api/user/count")
if [ "$count" != '{"count":220}' ]; then echo "FAILED: count through n3 is $count, expected 220"; exit 1; fi
echo "healed: copies match, count 220 through n3"

step "rolling restart of every node while reading through all of them"
start_reader "${urls[@]}"
for node in n1 n2 n3; do
  dc restart "$node"
  for url in "${urls[@]}"; do wait_members "$url" 60 "n1 n2 n3"; done
  echo "restarted $node"
done
stop_reader "rolling restart"
# Restarts the test asked for are not counted; a node that crashed and was brought back by
# the restart policy is.
for node in n1 n2 n3; do
  restarts=$(docker inspect -f '{{.RestartCount}}' "$(dc ps -q "$node")")
  if [ "$restarts" != "0" ]; then echo "FAILED: $node crashed and was restarted $restarts time(s)"; dc logs --timestamps --tail 100 "$node"; exit 1; fi
done
echo "no node crashed"

step "down -v leaves nothing behind"
dc down -v --remove-orphans
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; docker volume ls -q --filter "label=com.docker.compose.project=$project")
if [ -n "$left" ]; then echo "FAILED: left behind: $left"; exit 1; fi
trap - EXIT
rm -f "$ids_file"
echo "compose test: 5 passed, 0 failed"
