#!/usr/bin/env python3
"""CPU time and thread switches per request of a local 3-node cluster under a closed loop.

  cost_per_request.py --troupe BIN --bench BENCH [--workloads users-write,users-read,healthz]
                      [--clients 64] [--seconds 8] [--base-port 29700] [--data DIR]

Starts `BIN local` (three node processes, pinned to CPU 0 as scripts/bench-vs-etcd.sh does,
the load generator to CPU 1), then for each workload runs `BENCH` in a closed loop and, over a
window in its steady middle, reads every thread of every node process from /proc:
- CPU time on the CPU (schedstat, nanoseconds), and its user and system parts (stat, ticks);
- context switches, voluntary (a thread went to sleep: it waited for another thread, a lock,
  a socket or the disk) and involuntary (it was preempted).
Each is divided by the requests the generator completed in the window. A switch per request
is a crossing between threads: a hand-off to another runtime worker, to the storage writer,
or a wait for the disk; hand-offs between tasks on one worker do not switch and show only as
CPU time. Prints a Markdown table, one row per workload.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def node_pids(parent):
    """The `troupe local` process and its children (the nodes)."""
    pids = [parent]
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except FileNotFoundError:
        pass
    return pids


def sample(pids):
    """Summed over every thread: (cpu ns, user ticks, system ticks, voluntary, involuntary)."""
    cpu = user = system = vol = invol = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                with open(f"{base}/schedstat") as f:
                    cpu += int(f.read().split()[0])
                with open(f"{base}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                    user += int(fields[11])
                    system += int(fields[12])
                with open(f"{base}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            vol += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            invol += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
    return cpu, user, system, vol, invol


def wait_ready(ports, deadline=90):
    end = time.time() + deadline
    for port in ports:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > end:
                sys.exit(f"node on port {port} not ready after {deadline} s")
            time.sleep(0.2)


def measure(args, pids, urls, workload):
    """One closed-loop run; the window starts after the generator's warm-up and preload."""
    lead, window = 4.0, float(args.seconds)
    run = subprocess.Popen(
        ["taskset", "-c", "1", args.bench, "--urls", urls, "--workload", workload,
         "--clients", str(args.clients), "--warmup", "2s",
         "--duration", f"{int(lead + window + 2)}s", "--json", "--fail-on-error"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(lead)
    before, t0 = sample(pids), time.time()
    time.sleep(window)
    after, t1 = sample(pids), time.time()
    out, err = run.communicate()
    if run.returncode != 0:
        sys.exit(f"{workload}: the generator failed: {err.strip()} {out.strip()}")
    report = json.loads(out)
    # The generator's throughput over its whole measured phase stands for the window's.
    requests = report["throughput"] * (t1 - t0)
    cpu, user, system, vol, invol = (a - b for a, b in zip(after, before))
    return {
        "workload": workload,
        "rps": report["throughput"],
        "cpu_us": cpu / 1e3 / requests,
        "user_share": user / max(user + system, 1),
        "vol": vol / requests,
        "invol": invol / requests,
        "busy": cpu / 1e9 / (t1 - t0),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--troupe", required=True)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--workloads", default="healthz,users-read,users-write")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--base-port", type=int, default=29700)
    parser.add_argument("--data", default=None, help="parent of the data dirs (e.g. /dev/shm)")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="troupe-cost.", dir=args.data)
    ports = [args.base_port + i for i in range(3)]
    urls = ",".join(f"http://127.0.0.1:{p}" for p in ports)
    log = open(os.path.join(data, "local.log"), "w")
    cluster = subprocess.Popen(
        ["taskset", "-c", "0", args.troupe, "local", "--dir", os.path.join(data, "c"),
         "--base-port", str(args.base_port), "--fresh"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(ports)
        time.sleep(1)
        pids = node_pids(cluster.pid)
        print(f"nodes: {len(pids) - 1} processes; {args.clients} clients; window {args.seconds} s;"
              f" data in {data}")
        print("| workload | req/s | CPU µs per request (all nodes) | user share | voluntary switches"
              " per request | involuntary per request | node CPUs busy |")
        print("|---|---|---|---|---|---|---|")
        for workload in args.workloads.split(","):
            r = measure(args, pids, urls, workload)
            print(f"| {r['workload']} | {r['rps']:.0f} | {r['cpu_us']:.1f} | {r['user_share']:.0%}"
                  f" | {r['vol']:.2f} | {r['invol']:.2f} | {r['busy']:.2f} |", flush=True)
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
