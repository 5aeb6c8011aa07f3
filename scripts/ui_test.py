"""Dashboard browser test, run by scripts/ui-test.sh (which installs what it needs).

Starts a real 3-node cluster (`troupe local`), opens /ui of node n1 in headless Chromium,
checks that the page shows 3 live nodes, 64+ shards and every node's own request rates,
SIGKILLs node n3 and waits until the page shows it dead, and saves screenshots: healthy,
shards moving (if caught while they move), one node dead.

Every process it starts is in one process group, killed on the way out whatever happens.

    python3 scripts/ui_test.py BINARY CHROMIUM CHROMEDRIVER ARTIFACT_DIR
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

NODES = 3
VICTIM = "n3"
READY_WITHIN = 120
# Death needs the failure detector (phi 8 over 500 ms gossip): seconds on an idle machine,
# more on a loaded one.
DEAD_WITHIN = 90
SETTLE_WITHIN = 60


def log(message):
    print(f"ui-test: {message}", flush=True)


def free_base_port():
    """A base whose HTTP (base+i), gossip (UDP, base+100+i) and RPC (base+200+i) ports are free."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        try:
            for i in range(NODES):
                for offset, kind in ((0, socket.SOCK_STREAM), (100, socket.SOCK_DGRAM),
                                     (200, socket.SOCK_STREAM)):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", base + offset + i))
            return base
        except OSError:
            continue
    raise RuntimeError("no free base port found")


def wait_until(what, within, probe, interval=0.25):
    """Polls `probe` until it returns a true value; fails naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(interval)


def children_of(pid):
    """(pid, command line) of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found.append((int(entry), f.read().replace(b"\0", b" ").decode()))
        except (OSError, ValueError, IndexError):
            continue
    return found


class Traffic(threading.Thread):
    """A few requests a second to every node (creates, reads, misses), so rates show."""

    def __init__(self, urls):
        super().__init__(daemon=True)
        self.urls = urls
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            url = self.urls[i % len(self.urls)]
            uid = f"00000000-0000-4000-8000-{i:012d}"
            body = json.dumps({"id": uid, "name": f"user {i}", "email": f"u{i}@example.com",
                               "group": i % 7}).encode()
            requests = [
                urllib.request.Request(url + "/api/user", data=body, method="POST",
                                       headers={"content-type": "application/json"}),
                urllib.request.Request(url + "/api/user/" + uid),
                urllib.request.Request(url + "/api/user/00000000-0000-4000-8000-ffffffffffff"),
            ]
            for request in requests:
                try:
                    urllib.request.urlopen(request, timeout=2).read()
                except (urllib.error.URLError, OSError):
                    pass
            self.stop.wait(0.1)


def dom(driver, script):
    return driver.execute_script(script)


STATE = """
const nodes = [...document.querySelectorAll('.node')].map(n => ({
  id: n.dataset.node, live: n.dataset.live, status: n.dataset.status,
  report: !n.querySelector('[data-role=rates]').classList.contains('err'),
  rates: n.querySelector('[data-role=rates]').textContent}));
return {
  nodes,
  nodeCount: +document.getElementById('node-count').dataset.count,
  shardCount: +document.getElementById('shard-count').dataset.count,
  shardRows: document.querySelectorAll('tr.shard').length,
  transit: [...document.querySelectorAll('tr.shard')]
    .filter(r => r.dataset.transit !== '').map(r => r.dataset.shard + ':' + r.dataset.transit),
  moved: document.querySelectorAll('tr.shard[data-moved=true]').length,
  routes: document.querySelectorAll('#routes tr[data-route]').length,
  events: [...document.querySelectorAll('#events li[data-kind]')].map(e => e.dataset.kind),
  conn: document.getElementById('conn').textContent,
};
"""


def main():
    binary, chromium, chromedriver, artifacts = sys.argv[1:5]
    os.makedirs(artifacts, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="troupe-ui-test-")
    base = free_base_port()
    urls = [f"http://127.0.0.1:{base + i}" for i in range(NODES)]
    cluster_log = open(os.path.join(workdir, "local.log"), "w", encoding="utf-8")
    # Its own process group: the nodes `troupe local` starts inherit it, so one killpg ends
    # them all, even if `troupe local` itself is gone.
    cluster = subprocess.Popen(
        [binary, "local", "--nodes", str(NODES), "--base-port", str(base), "--dir",
         os.path.join(workdir, "cluster"), "--fresh"],
        stdout=cluster_log, stderr=subprocess.STDOUT, start_new_session=True)
    with open(os.path.join(artifacts, "cluster.pgid"), "w", encoding="utf-8") as f:
        f.write(str(cluster.pid))
    driver = None
    traffic = Traffic(urls)
    failed = True
    try:
        log(f"starting {NODES} nodes from {binary} at base port {base} in {workdir}")

        def ready():
            if cluster.poll() is not None:
                raise AssertionError(f"troupe local exited ({cluster.returncode})")
            with open(cluster_log.name, encoding="utf-8") as f:
                return "nodes ready" in f.read()
        wait_until("the cluster to be ready", READY_WITHIN, ready, interval=0.5)
        traffic.start()

        options = Options()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1400,1500", "--hide-scrollbars"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        driver.set_page_load_timeout(30)
        driver.get(urls[0] + "/ui")
        log(f"opened {urls[0]}/ui")

        def healthy():
            s = dom(driver, STATE)
            ok = (s["nodeCount"] == NODES and s["shardCount"] >= 64 and s["shardRows"] >= 64
                  and len(s["nodes"]) == NODES
                  and all(n["live"] == "true" and n["status"] == "ready" and n["report"]
                          for n in s["nodes"])
                  and s["routes"] > 0 and not s["transit"])
            return s if ok else None
        state = wait_until("3 live nodes, 64+ shards and every node's report in the DOM", 90,
                           healthy)
        # For the picture: a full window (the page has polled for 10 s), past the start-up's
        # 503s (/readyz while joining) if the machine lets the cluster serve without errors
        # (not asserted).
        def pictured():
            s = healthy()
            full = dom(driver, "return document.getElementById('window').textContent") == "10 s"
            return s if s and full and all(" 0 errors" in n["rates"] for n in s["nodes"]) else None
        try:
            state = wait_until("a full window without errors", 40, pictured)
        except AssertionError as error:
            log(f"{error}; taking the picture with the errors shown")
        log(f"healthy: {state['nodeCount']} nodes, {state['shardCount']} shards, "
            f"{state['routes']} route rows, events {state['events'][:5]}")
        shot(driver, artifacts, "dashboard-healthy.png")

        victim = [pid for pid, cmd in children_of(cluster.pid) if f"--node-id={VICTIM}" in cmd]
        assert len(victim) == 1, f"cannot find node {VICTIM} among {children_of(cluster.pid)}"
        os.kill(victim[0], signal.SIGKILL)
        killed_at = time.monotonic()
        log(f"SIGKILLed {VICTIM} (pid {victim[0]})")

        moving = dead = None
        deadline = killed_at + DEAD_WITHIN
        while time.monotonic() < deadline and (moving is None or dead is None):
            s = dom(driver, STATE)
            victim_node = next(n for n in s["nodes"] if n["id"] == VICTIM)
            if dead is None and victim_node["live"] == "false":
                dead = time.monotonic() - killed_at
                log(f"{VICTIM} shown dead {dead:.1f} s after the kill")
                shot(driver, artifacts, "dashboard-node-dead.png")
                deadline = min(deadline, time.monotonic() + 20)
            if moving is None and s["transit"]:
                moving = s["transit"]
                log(f"shards in transit: {' '.join(moving[:8])}")
                shot(driver, artifacts, "dashboard-shards-moving.png")
            time.sleep(0.2)
        assert dead is not None, f"{VICTIM} not shown dead within {DEAD_WITHIN} s"
        if moving is None:
            log("no shard caught in transit (moves finished between two polls); "
                "no dashboard-shards-moving.png")

        def settled():
            s = dom(driver, STATE)
            return s if not s["transit"] and not s["moved"] and "died" in s["events"] else None
        state = wait_until("the shards to settle on the survivors", SETTLE_WITHIN, settled)
        took_over = dom(driver, f"return document.querySelectorAll("
                                f"'#events li[data-kind=sealed][data-old-owner={VICTIM}]').length")
        assert took_over > 0, f"no shard shown sealed away from {VICTIM}: {state['events'][:10]}"
        log(f"settled: events {state['events'][:8]}")
        shot(driver, artifacts, "dashboard-node-dead.png")
        failed = False
        log("PASSED")
    finally:
        traffic.stop.set()
        if driver is not None:
            if failed:
                try:
                    shot(driver, artifacts, "dashboard-failure.png")
                except Exception as error:  # pylint: disable=broad-except
                    log(f"no failure screenshot: {error}")
            driver.quit()
        try:
            os.killpg(cluster.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cluster.wait()
        cluster_log.close()
        if failed:
            for name in sorted(os.listdir(os.path.join(workdir, "cluster"))):
                if name.endswith(".log"):
                    with open(os.path.join(workdir, "cluster", name), encoding="utf-8") as f:
                        tail = f.read().splitlines()[-15:]
                    log(f"--- last lines of {name}:\n" + "\n".join(tail))
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def shot(driver, artifacts, name):
    path = os.path.join(artifacts, name)
    driver.save_screenshot(path)
    log(f"screenshot {path}")


if __name__ == "__main__":
    # SIGTERM (the shell script's cleanup) unwinds through main's `finally`, which stops the
    # cluster and the browser.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except AssertionError as error:
        log(f"FAILED: {error}")
        sys.exit(1)
