#!/usr/bin/env python3
"""Reads continuously through the given node URLs until STOP_FILE exists, then prints
`reads=N retried=R failed=F` and exits 1 if any read failed. Used by scripts/compose-test.sh.

    compose_reader.py STOP_FILE IDS_FILE URL...

Each read is GET /api/user/{id} for the user ids in IDS_FILE (one per line), cycling over
them, starting at the next node in turn; a read must answer 200 with that user. Like a
load-balancing client, a read that meets a connection error or a 503 is retried on the
following nodes until 1 s has passed and every node has been tried; it then counts as retried,
not failed. Every node gets its try because one attempt at a stopping node can take longer
than that second to fail (a connection to a node going down can hang before it is reset). A read fails on any other status,
or when no node answered 200 by then. A failed read, and one that needed more than the second,
prints each of its attempts (node, outcome, milliseconds) so the cause can be told from the log."""
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
    """Returns (status or None, what happened)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, str(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code, f"{exc.code} {exc.read()[:200]!r}"
    except Exception as exc:  # noqa: BLE001 - connection errors are retried
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        return None, f"{type(exc).__name__}: {exc}"


while not os.path.exists(stop_file):
    path = f"/api/user/{ids[reads % len(ids)]}"
    deadline, tries, status, log, tried = time.monotonic() + 1.0, 0, None, [], set()
    while True:
        url = urls[(reads + tries) % len(urls)]
        started = time.monotonic()
        status, outcome = attempt(url + path)
        took = time.monotonic() - started
        log.append(f"{url} at {time.strftime('%H:%M:%S')}: {outcome} after {took * 1000:.0f} ms")
        tries += 1
        tried.add(url)
        overtime = time.monotonic() > deadline
        if status not in (None, 503) or (overtime and len(tried) == len(urls)):
            break
        time.sleep(0.02)
    reads += 1
    if status != 200:
        failed += 1
        print(f"failed read {path}: status {status}", file=sys.stderr)
    elif tries > 1:
        retried += 1
    if status != 200 or overtime:
        print(f"read {path} ({'failed' if status != 200 else 'answered after the second'}):", file=sys.stderr)
        shown = log if len(log) <= 9 else log[:3] + [f"... {len(log) - 9} more"] + log[-6:]
        for line in shown:
            print(f"  attempt {line}", file=sys.stderr)
    time.sleep(0.01)
print(f"reads={reads} retried={retried} failed={failed} connection_errors={errors}")
sys.exit(1 if failed else 0)
