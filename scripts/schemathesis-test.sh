#!/usr/bin/env bash
# Contract test: schemathesis against a live 3-node cluster, driven by the cluster's own
# /openapi.json. Fails on any 5xx answer, any status the document does not list for the route,
# any content type or body that breaks the document. Prints a SKIPPED line only when pip cannot
# install schemathesis.
#
#   scripts/schemathesis-test.sh                       # after `cargo build` (or cargo test)
#   SCHEMATHESIS_MAX_EXAMPLES=200 SCHEMATHESIS_SEED=7 scripts/schemathesis-test.sh
#
# Uses the debug `troupe` binary the cargo tests built (under $CARGO_TARGET_DIR when set), or
# TROUPE_BIN. Starts real nodes: on a shared machine run it under
# `flock /tmp/troupe-cluster.lock`.
set -euo pipefail
cd "$(dirname "$0")/.."

schemathesis_version="4.32.5"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
# A fixed seed, so a finding reproduces; change it to explore other inputs.
seed="${SCHEMATHESIS_SEED:-20261207}"
bin="${TROUPE_BIN:-${CARGO_TARGET_DIR:-target}/debug/troupe}"

if [ ! -x "$bin" ]; then
  echo "FAILED: schemathesis test: no troupe binary at $bin (run cargo build first)"
  exit 1
fi

work="$(mktemp -d)"
cluster_pid=""
# Stops the cluster gracefully (troupe local stops its nodes on SIGTERM), then kills whatever
# of its process group is left, and removes the run's files.
cleanup() {
  if [ -n "$cluster_pid" ]; then
    kill -TERM "$cluster_pid" 2>/dev/null || true
    for _ in $(seq 1 120); do
      kill -0 "$cluster_pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

venv="${SCHEMATHESIS_VENV:-$work/venv}"
if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version 2>/dev/null | grep -q "$schemathesis_version"; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$schemathesis_version"; } >"$work/pip.log" 2>&1; then
    tail -5 "$work/pip.log"
    echo "SKIPPED: schemathesis test (pip could not install schemathesis==$schemathesis_version)"
    exit 0
  fi
fi

# A base port whose nine derived ports (HTTP base..+2, gossip +100.., RPC +200..) are all free.
base_port="$(python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 40000)
    ports = [base + offset + i for offset in (0, 100, 200) for i in range(3)]
    try:
        socks = []
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", port))
            socks.append(s)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", port))
            socks.append(u)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
else:
    raise SystemExit("no free base port")
PY
)"
url="http://127.0.0.1:$base_port"

echo "== starting a 3-node cluster on $url ($bin)"
# Its own process group (setsid), so cleanup can end every node whatever happens.
setsid "$bin" local --nodes 3 --base-port "$base_port" --dir "$work/cluster" --fresh \
  >"$work/local.log" 2>&1 &
cluster_pid=$!

deadline=$((SECONDS + 180))
until grep -q "nodes ready" "$work/local.log" 2>/dev/null; do
  if ! kill -0 "$cluster_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "FAILED: schemathesis test: the cluster did not become ready"
    tail -30 "$work/local.log"
    exit 1
  fi
  sleep 0.5
done

# Entities that exist, so that half the generated ids name something real: without them every
# read, join and leave of a given id is a 404 and their handlers' own logic goes untested.
config="$work/schemathesis.toml"
python3 - "$url" "$config" <<'PY'
import json, sys, urllib.request
url, config = sys.argv[1], sys.argv[2]

def post(path, body):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.load(response)

user = post("/api/user", {"name": "Ada", "email": "ada@example.com", "group": 1})
job = post("/jobs", {"object_id": "schemathesis-seed"})
party = post("/parties", {"device_id": "seed-device", "participant_name": "Seed", "lat": 53.3, "lng": -6.2})
post(f"/parties/{party['party_code']}/participants", {"device_id": "seed-guest", "participant_name": "Guest"})
dictionaries = {
    "users": [user["id"]],
    "jobs": [job["message"]["job_id"]],
    "parties": [party["party_code"]],
    "devices": ["seed-device", "seed-guest"],
}
bindings = {"path.id": "users", "path.job_id": "jobs", "path.code": "parties", "path.device_id": "devices"}
with open(config, "w", encoding="utf-8") as out:
    for name, values in dictionaries.items():
        out.write(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n\n")
    out.write("[parameters]\n")
    for key, name in bindings.items():
        out.write(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}\n')
PY

echo "== schemathesis $schemathesis_version against $url/openapi.json (seed $seed, at most $max_examples examples per operation)"
status=0
# One worker: with two, hypothesis parses lambdas' source on both threads at once, which
# CPython 3.11's parser does not survive ("AST constructor recursion depth mismatch"). Run from
# the run's directory: schemathesis keeps a cache (.schemathesis/) where it runs.
(cd "$work" && "$venv/bin/st" --config-file "$config" run "$url/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --workers 1 \
  --request-timeout 20 \
  --generation-database none \
  --no-color) || status=$?

if [ "$status" -ne 0 ]; then
  echo "FAILED: schemathesis found responses that break /openapi.json (exit $status; SCHEMATHESIS_SEED=$seed reproduces); node logs:"
  for log in "$work"/cluster/*.log; do
    echo "--- $log"
    grep -E "ERROR|WARN|panicked" "$log" | tail -20 || true
  done
  exit "$status"
fi
echo "schemathesis test passed"
