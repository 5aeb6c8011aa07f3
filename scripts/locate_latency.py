#!/usr/bin/env python3
"""Simple load loop for issue 2's numbers: p50/p99 of GET /cluster/locate served locally vs
forwarded, against a running local cluster (`troupe local`). Keep-alive connection, sequential
requests, keys chosen so the asked node is (local) or is not (forwarded) the owner.

Usage: scripts/locate_latency.py [base_url] [requests_per_case]
"""
import http.client
import json
import sys
import time
from urllib.parse import urlparse

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
url = urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)


def get(path):
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"{path}: {resp.status} {body!r}")
    return json.loads(body)


me = get("/cluster")["node"]
local, remote = [], []
k = 0
while len(local) < 50 or len(remote) < 50:
    key = f"key-{k}"
    (local if get(f"/cluster/locate/user/{key}")["owner"] == me else remote).append(key)
    k += 1


def measure(keys):
    samples = []
    for i in range(n):
        start = time.perf_counter()
        get(f"/cluster/locate/user/{keys[i % len(keys)]}")
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


for _ in range(200):  # warm-up, both paths
    get(f"/cluster/locate/user/{local[0]}")
    get(f"/cluster/locate/user/{remote[0]}")
lp50, lp99 = measure(local)
fp50, fp99 = measure(remote)
print(f"asked node {me}, {n} sequential requests per case, keep-alive")
print(f"served locally: p50 {lp50:.3f} ms  p99 {lp99:.3f} ms")
print(f"forwarded:      p50 {fp50:.3f} ms  p99 {fp99:.3f} ms  (p50 ratio {fp50 / lp50:.2f}x)")
