#!/usr/bin/env python3
"""Reads continuously through the given node URLs until STOP_FILE exists, then prints
`reads=N retried=R failed=F` and exits 1 if any read failed. Used by scripts/compose-test.sh.

    compose_reader.py STOP_FILE IDS_FILE URL...

Each read is GET /api/user/{id} for the user ids in IDS_FILE (one per line), cycling over
them, starting at the next node in turn; a read must answer 200 with that user. Like a load-balancing client, a read that meets a connection error or a 503
is retried on the following nodes for up to 1 s; it then counts as retried, not failed. A read
fails on any other status, or when no node answers 200 within that second."""
import os
import sys
import time
import urllib.error
import urllib.request

stop_file, ids_file, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(ids_file, encoding="utf-8") as f:
    ids = [line.strip() for line in f if line.strip()]
reads = retried = failed = 0
errors = {}


def attempt(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception as exc:  # noqa: BLE001 - connection errors are retried
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        return None


while not os.path.exists(stop_file):
    path = f"/api/user/{ids[reads % len(ids)]}"
    deadline, tries, status = time.monotonic() + 1.0, 0, None
    while True:
        status = attempt(urls[(reads + tries) % len(urls)] + path)
        tries += 1
        if status not in (None, 503) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    reads += 1
    if status != 200:
        failed += 1
        print(f"failed read {path}: status {status}", file=sys.stderr)
    elif tries > 1:
        retried += 1
    time.sleep(0.01)
print(f"reads={reads} retried={retried} failed={failed} connection_errors={errors}")
sys.exit(1 if failed else 0)
