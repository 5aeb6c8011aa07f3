#!/usr/bin/env python3
"""Where two builds' instructions per request differ, from scripts/cpu-per-request.sh dumps.

callgrind_diff.py [-i] [--crate] [--file REGEX] [-k K] --na N --a LOAD.. --a-idle IDLE..
                  --nb N --b LOAD.. --b-idle IDLE..
Prints, largest difference first, each function's (b - b_idle)/nb - (a - a_idle)/na: the
change of its instructions per request. Exclusive counts by default; -i inclusive (recursion
counts twice); --crate sums by the crate or file the code comes from (after inlining);
--file keeps only functions whose source file matches REGEX. Example, the edge node of two runs:
  scripts/callgrind_diff.py --crate --na 3000 --a old/cg.n2.1 --a-idle old/cg.n2.2 \
      --nb 3000 --b new/cg.n2.1 --b-idle new/cg.n2.2
"""
import subprocess, sys, re, collections, argparse
p = argparse.ArgumentParser()
p.add_argument("-i", action="store_true")
p.add_argument("--na", type=float, default=1); p.add_argument("--nb", type=float, default=1)
p.add_argument("-k", type=int, default=60)
p.add_argument("--a", nargs="*", default=[]); p.add_argument("--a-idle", nargs="*", default=[])
p.add_argument("--b", nargs="*", default=[]); p.add_argument("--b-idle", nargs="*", default=[])
p.add_argument("--short", action="store_true")
p.add_argument("--crate", action="store_true")
p.add_argument("--file", default=None)
a = p.parse_args()
line = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(?:\*\s+)?(.*?)(?: \[[^\]]*\])?$")
def load(files):
    c = collections.Counter()
    for f in files:
        out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", f"--inclusive={'yes' if a.i else 'no'}", f], capture_output=True, text=True).stdout
        body = out.split("file:function", 1)[-1]
        for l in body.splitlines():
            m = line.match(l)
            if not m: continue
            name = re.sub(r" \([\d,]+x\)$", "", m.group(2))
            if "=>" in l: continue
            if "PROGRAM TOTALS" in name: continue
            if a.file and (":" not in name or not re.search(a.file, name.split(":",1)[0])): continue
            if a.crate:
                f = name.split(":", 1)[0]
                m2 = re.search(r"index.crates.io-[0-9a-f]+/([^/]+)/", f)
                if m2: name = re.sub(r"-[0-9.]+(\+.*)?$", "", m2.group(1))
                elif "/work/wt/" in f: name = "/".join(f.split("/")[3:5])
                elif "/rustc/" in f: name = "rust-std:" + f.split("/library/")[-1].split("/")[0]
                else: name = f.split("/")[-1]
            elif ":" in name and "/" in name.split(":")[0]:
                name = name.split(":", 1)[1]
            c[name] += int(m.group(1).replace(",", ""))
    return c
A = load(a.a); Ai = load(a.a_idle); B = load(a.b); Bi = load(a.b_idle)
keys = set(A) | set(B) | set(Ai) | set(Bi)
rows = []
for k in keys:
    va = (A[k] - Ai[k]) / a.na; vb = (B[k] - Bi[k]) / a.nb
    rows.append((vb - va, va, vb, k))
tot_a = sum(r[1] for r in rows); tot_b = sum(r[2] for r in rows)
if not a.i: print(f"total per request: a {tot_a:,.0f}  b {tot_b:,.0f}  diff {tot_b-tot_a:,.0f}")
rows.sort(key=lambda r: -abs(r[0]))
for d, va, vb, k in rows[:a.k]:
    print(f"{d:>10,.0f} {va:>10,.0f} {vb:>10,.0f}  {k[:200]}")
