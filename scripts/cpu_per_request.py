#!/usr/bin/env python3
"""The load of scripts/cpu-per-request.sh: forwarded reads against one node.

  cpu_per_request.py prepare BASE_PORT EDGE_INDEX COUNT OUT
      creates users through the first node until COUNT of them are owned by another node than
      node EDGE_INDEX (0-based), and writes their ids to OUT
  cpu_per_request.py read BASE_PORT EDGE_INDEX IDS N [CONNS]
      N reads of those ids from node EDGE_INDEX, round-robin, on CONNS keep-alive connections
"""
import http.client, json, sys, threading

def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=120)

def prepare(base, edge, count, out):
    c = conn(base)
    ids = []
    edge_node = f"n{edge+1}"
    made = 0
    while len(ids) < count:
        body = json.dumps({"name": f"user{made}", "email": f"u{made}@example.com", "group": made % 7})
        c.request("POST", "/api/user", body, {"content-type": "application/json"})
        r = c.getresponse(); data = r.read()
        made += 1
        if r.status != 201:
            print("create", r.status, data, file=sys.stderr); continue
        uid = json.loads(data)["id"]
        c.request("GET", f"/cluster/locate/user/{uid}")
        r = c.getresponse(); loc = json.loads(r.read())
        if loc["owner"] != edge_node:
            ids.append(uid)
    with open(out, "w") as f:
        f.write("\n".join(ids))
    print(f"made {made}, kept {len(ids)} not owned by {edge_node}")

def read(base, edge, idsfile, n, conns=1):
    ids = open(idsfile).read().split()
    port = base + edge
    bad = [0]
    def worker(k):
        c = conn(port)
        for i in range(k, n, conns):
            c.request("GET", f"/api/user/{ids[i % len(ids)]}")
            r = c.getresponse(); r.read()
            if r.status != 200:
                bad[0] += 1
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(f"read {n}, non-200 {bad[0]}")

if __name__ == "__main__":
    a = sys.argv
    if a[1] == "prepare":
        prepare(int(a[2]), int(a[3]), int(a[4]), a[5])
    else:
        read(int(a[2]), int(a[3]), a[4], int(a[5]), int(a[6]) if len(a) > 6 else 1)
