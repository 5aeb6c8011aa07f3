#!/usr/bin/env python3
"""Creates users through the API and prints the bytes of user JSON the cluster returned.

Used by scripts/space.sh. Users are spread over the given nodes by several keep-alive
connections; any non-201 answer stops the run. With IDS=random (the default) every user gets an
API-generated (random v4) id; with IDS=ordered the client supplies ids that increase with the
user's number, as time-ordered (v7) ids do. NAME_PAD=N lengthens every name by N characters,
to see how the ratio moves with the size of a user.

Usage: space_load.py COUNT URL[,URL...]
"""
import http.client
import json
import os
import sys
import threading
from urllib.parse import urlparse

CONNECTIONS = 8
ORDERED = os.environ.get("IDS", "random") == "ordered"
NAME_PAD = int(os.environ.get("NAME_PAD", "0"))


def user(i):
    name = f"user {i}" + ("x" * NAME_PAD)
    fields = {"name": name, "email": f"user{i}@example.com", "group": i % 100}
    if ORDERED:
        fields["id"] = f"{i >> 16:08x}-{i & 0xFFFF:04x}-7000-8000-000000000000"
    return json.dumps(fields)


def create(count, start, step, url, totals, failures):
    target = urlparse(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    raw = 0
    for i in range(start, count, step):
        conn.request("POST", "/api/user", user(i), {"content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            failures.append(f"{url}: {response.status} {data[:200]!r}")
            return
        raw += len(data)
    totals.append(raw)


def main():
    count, urls = int(sys.argv[1]), sys.argv[2].split(",")
    totals, failures = [], []
    threads = [
        threading.Thread(
            target=create,
            args=(count, c, CONNECTIONS, urls[c % len(urls)], totals, failures),
        )
        for c in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit("creating users failed: " + "; ".join(failures))
    print(sum(totals))


if __name__ == "__main__":
    main()
