#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench.py - run every benchmark program of tests/bench and print one table.

Usage:
    bench.py [--build DIR] [--quick] [--reps N] [--iters N] [--trace-ops N]
             [--no-callgrind] [--output FILE]

The driver runs each program (see meson.build) --reps times, interleaved (run
1 of every program, then run 2 ...), so that a slow minute of this shared
machine spreads over all allocators instead of hitting one.  Each program
prints RESULT lines (bench-util.h); the table shows the median of the runs
and their range, and for every row its ratio to shmpool's row of the same
case.  shmpool's programs run against a fresh shmpoold per run, which the
driver starts on a private socket and segment and stops afterwards.
bench-shmpool runs twice: with its per-thread magazines (the cached path,
rows shmpool-*) and with --locked (magazines off, rows shmpool-*-locked).

In full mode (the default) it also counts instructions per alloc+free pair
with valgrind --tool=callgrind (two run lengths, the difference divided by
the difference in pairs, so that start-up cancels out), which a noisy
machine cannot blur.

--quick is the smoke test (meson test --suite bench): few iterations, one
run, no callgrind, and it checks only that every program ran and printed
well-formed results -- never how fast anything was.

--output FILE writes the table, the targets of issue 5 and the machine into
FILE between the markers <!-- bench:begin --> and <!-- bench:end -->; text
outside the markers (the hand-written analysis) is kept.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = (64, 256, 4096)
BATCHES = (1, 256)
MALLOCS = ("glibc", "jemalloc", "mimalloc", "tcmalloc")
BOOSTS = ("boost-managed", "boost-node", "boost-private", "boost-cached")
SHMPOOL = ("shmpool-pool", "shmpool-cache", "shmpool-malloc")
# the same calls with the per-thread magazines off (bench-shmpool --locked)
LOCKED = tuple(a + "-locked" for a in SHMPOOL)
BULK = ("shmpool-pool-bulk", "shmpool-cache-bulk")
LISTS = ("lockedlist", "mutex-only", "lockedlist-pi", "mutex-only-pi")
PAIR_ORDER = SHMPOOL + LOCKED + BULK + MALLOCS + BOOSTS + LISTS

DAEMON_SIZE = "128M"
BEGIN = "<!-- bench:begin"
END = "<!-- bench:end -->"


class Program:
    """One run of a benchmark executable: which parts (--parts), the peer
    entry of bench-peers.json that says whether it was built, how many
    RESULT lines it must print and its own extra arguments."""

    def __init__(self, key, binary, peer, daemon, parts, expect, args=()):
        self.key, self.binary, self.peer = key, binary, peer
        self.daemon, self.parts, self.expect = daemon, parts, expect
        self.args = list(args)


# The mixed trace runs in a process (and against a daemon) of its own, so that
# it starts from a fresh heap and leaves no heap shaped by it to the pairs.
# bench-shmpool runs twice: with its per-thread magazines (the cached path,
# the shmpool-* rows: pairs 3 sizes x 2 batches x 3 allocators + 3 x 2 bulk,
# scale 2 x 2, prodcons 1) and with --locked (magazines off, the
# shmpool-*-locked rows: 18 pairs, 4 scale).
PROGRAMS = [
    Program("shmpool", "bench-shmpool", "shmpool", True, "pair,scale,prodcons", 29),
    Program("shmpool-locked", "bench-shmpool", "shmpool", True, "pair,scale", 22,
            args=["--locked"]),
    Program("shmpool-trace", "bench-shmpool", "shmpool", True, "trace", 1),
    Program("control", "bench-control", "shmpool", True, None, 13),
    Program("lockedlist", "bench-lockedlist", "lockedlist", False, None, 10),
    # the same list under a robust priority-inheritance mutex, shmpool's kind
    Program("lockedlist-pi", "bench-lockedlist", "lockedlist", False, "pair,mutex", 7,
            args=["--pi"]),
]
for _m in MALLOCS:
    PROGRAMS += [Program(_m, "bench-malloc-" + _m, _m, False, "pair,scale", 8),
                 Program(_m + "-trace", "bench-malloc-" + _m, _m, False, "trace", 1)]
PROGRAMS.append(Program("boost", "bench-boost", "boost", False, None, 24))

# --one arguments of the callgrind runs: allocator row -> (program key, name)
CALLGRIND = [
    ("shmpool-pool", "shmpool", "pool"),
    ("shmpool-cache", "shmpool", "cache"),
    ("shmpool-malloc", "shmpool", "malloc"),
    ("shmpool-pool-locked", "shmpool-locked", "pool"),
    ("shmpool-cache-locked", "shmpool-locked", "cache"),
    ("shmpool-malloc-locked", "shmpool-locked", "malloc"),
] + [(m, m, "malloc") for m in MALLOCS] + [
    ("boost-managed", "boost", "managed"),
    ("boost-node", "boost", "node"),
    ("boost-private", "boost", "private"),
    ("boost-cached", "boost", "cached"),
    ("lockedlist", "lockedlist", "list"),
    ("mutex-only", "lockedlist", "mutex"),
    ("lockedlist-pi", "lockedlist-pi", "list"),
    ("mutex-only-pi", "lockedlist-pi", "mutex"),
]
CG_SHORT, CG_LONG = 8192, 73728  # multiples of 8 * 256: warm-up is exactly n / 8


def die(msg):
    print("bench.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ---- the daemon ---------------------------------------------------------------


class Daemon:
    """A shmpoold on a private socket and a fresh segment."""

    counter = 0

    def __init__(self, binary, tmp):
        Daemon.counter += 1
        self.dir = tempfile.mkdtemp(prefix="d", dir=tmp)
        self.sock = os.path.join(self.dir, "shmpool.sock")
        self.shm = "/shmpool-bench-%d-%d" % (os.getpid(), Daemon.counter)
        self.log = os.path.join(self.dir, "shmpoold.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [binary, "--socket", self.sock, "--shm-name", self.shm, "--size",
                 DAEMON_SIZE, "--reset", "--log-level", "warn"],
                stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                die("shmpoold exited at start:\n" + self.tail())
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                s.close()
                return
            except OSError:
                time.sleep(0.005)
        self.stop()
        die("shmpoold did not listen on %s within 20 s:\n%s" % (self.sock, self.tail()))

    def tail(self):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink("/dev/shm" + self.shm)
        except OSError:
            pass


# ---- running the programs -------------------------------------------------------


def check_result(prog, r, line):
    """A RESULT object must name its part, allocator, unit and a finite value."""
    for key, typ in (("part", str), ("alloc", str), ("unit", str)):
        if not isinstance(r.get(key), typ) or not r[key]:
            die("%s: RESULT without %s: %s" % (prog.binary, key, line))
    v = r.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
        die("%s: RESULT with a bad value: %s" % (prog.binary, line))
    if r["part"] in ("pair", "scale", "prodcons", "trace", "connect", "stats") and v <= 0:
        die("%s: RESULT with a zero measurement: %s" % (prog.binary, line))


def run_program(prog, path, args, daemon_bin, tmp, timeout):
    daemon = Daemon(daemon_bin, tmp) if prog.daemon else None
    cmd = [path] + args + prog.args + (["--parts", prog.parts] if prog.parts else []) + (
        ["--socket", daemon.sock] if daemon else [])
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        die("%s did not finish within %d s" % (" ".join(cmd), timeout))
    finally:
        if daemon:
            daemon.stop()
    if p.returncode != 0:
        die("%s failed (exit %d):\n%s%s" % (" ".join(cmd), p.returncode, p.stderr,
                                            daemon.tail() if daemon else ""))
    results = []
    for line in p.stdout.splitlines():
        if not line.startswith("RESULT "):
            continue
        try:
            r = json.loads(line[len("RESULT "):])
        except json.JSONDecodeError as e:
            die("%s: malformed RESULT line (%s): %s" % (prog.binary, e, line))
        if not isinstance(r, dict):
            die("%s: RESULT is not an object: %s" % (prog.binary, line))
        check_result(prog, r, line)
        results.append(r)
    if len(results) != prog.expect:
        die("%s printed %d RESULT lines, expected %d:\n%s" % (
            prog.binary, len(results), prog.expect, p.stdout))
    return results


def key_of(r):
    """What identifies a measurement across runs."""
    return tuple((k, r[k]) for k in ("part", "alloc", "case", "size", "batch", "procs",
                                     "clients", "held") if k in r)


def callgrind_ir(path, args, tmp):
    out = os.path.join(tmp, "callgrind.out")
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                        path] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=900)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if p.returncode != 0 or not m:
        die("callgrind %s %s failed:\n%s" % (path, " ".join(args), p.stderr[-2000:]))
    return int(m.group(1))


# ---- the machine ---------------------------------------------------------------------


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(build):
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1") or platform.processor()
    pkgs = []
    for pkg in ("libc6", "libjemalloc2", "libmimalloc2.0", "libtcmalloc-minimal4",
                "libboost1.74-dev", "libboost-dev", "valgrind"):
        v = sh("dpkg-query -W -f='${Version}' %s 2>/dev/null" % pkg)
        if v:
            pkgs.append("%s %s" % (pkg, v))
    opts = {}
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            for o in json.load(f):
                if o["name"] in ("buildtype", "optimization", "debug", "b_ndebug",
                                 "debug_checks", "bench", "b_sanitize"):
                    opts[o["name"]] = o["value"]
    except (OSError, ValueError, KeyError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "cc": sh("cc --version | head -1"),
        "cxx": sh("c++ --version | head -1"),
        "packages": ", ".join(pkgs),
        "build": ", ".join("%s=%s" % kv for kv in sorted(opts.items())),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": "%.2f %.2f %.2f" % os.getloadavg(),
        "nice": os.nice(0),
    }


# ---- the table ------------------------------------------------------------------------


def fmt(v):
    if v is None:
        return "—"
    if v >= 1000:
        return "%.0f" % v
    if v >= 100:
        return "%.1f" % v
    if v >= 10:
        return "%.2f" % v
    return "%.3g" % v


class Table:
    """Rows of (part, case, allocator, median, unit, ratio, note)."""

    def __init__(self, data, nr_runs, peers):
        self.data, self.nr_runs, self.peers, self.rows = data, nr_runs, peers, []

    def values(self, **k):
        """The runs' values of the one measurement whose key has these members."""
        want = set(k.items())
        keys = [key for key in self.data
                if isinstance(key[0], tuple) and want <= set(key)]
        if len(keys) > 1:
            die("ambiguous lookup %r: %r" % (k, keys))
        return self.data[keys[0]] if keys else None

    def median(self, **k):
        v = self.values(**k)
        return statistics.median(v) if v else None

    def note_of(self, alloc, vals):
        peer = peer_of(alloc)
        if not vals and peer and self.peers.get(peer, "built") != "built":
            return self.peers[peer]
        if not vals:
            return "no result"
        if len(vals) > 1:
            return "%d runs: %s–%s" % (len(vals), fmt(min(vals)), fmt(max(vals)))
        return "1 run"

    def add(self, section, row_case, alloc, unit, ref, note=None, **k):
        vals = self.values(alloc=alloc, **k)
        med = statistics.median(vals) if vals else None
        ratio = "%.2f" % (med / ref) if med is not None and ref else "—"
        self.rows.append((section, row_case, alloc, fmt(med), unit, ratio,
                          note or self.note_of(alloc, vals)))
        return med

    def add_value(self, section, case, alloc, med, unit, ratio, note):
        self.rows.append((section, case, alloc, fmt(med), unit, ratio, note))

    def markdown(self):
        head = ("Part", "Case", "Allocator", "Median", "Unit", "Ratio to shmpool", "Note")
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in self.rows:
            lines.append("| " + " | ".join(str(x) for x in r) + " |")
        return "\n".join(lines)


def peer_of(alloc):
    if alloc in MALLOCS:
        return alloc
    if alloc.startswith("boost"):
        return "boost"
    if alloc in LISTS:
        return "lockedlist"
    return "shmpool"


def build_table(t, cg):
    # 1. pairs
    for size in SIZES:
        for batch in BATCHES:
            case = "%s B, batch %d" % (size if size < 4096 else "4 Ki", batch)
            case = case.replace("4 Ki B", "4 KiB")
            ref = t.median(part="pair", alloc="shmpool-pool", size=size, batch=batch)
            for alloc in PAIR_ORDER:
                if alloc.startswith("mutex-only") and (size, batch) != (64, 1):
                    continue
                if alloc in BULK and batch == 1:
                    continue
                note = None
                if alloc.startswith("mutex-only"):
                    note = "two robust%s-mutex lock+unlock, no list; " % (
                        " PI" if alloc.endswith("-pi") else "") + t.note_of(
                        alloc, t.values(part="pair", alloc=alloc, size=size, batch=batch))
                t.add("1 pairs", case, alloc, "ns/pair", ref, note=note, part="pair",
                      size=size, batch=batch)
    # 1b. instruction counts
    for batch in BATCHES:
        ref = cg.get(("shmpool-pool", batch))
        for alloc, _, _ in CALLGRIND:
            v = cg.get((alloc, batch))
            note = "callgrind" if v is not None else (
                "valgrind not run" if not cg else t.note_of(alloc, []))
            t.add_value("1 instructions", "64 B, batch %d" % batch, alloc, v, "instr/pair",
                        "%.2f" % (v / ref) if v is not None and ref else "—", note)
    # 2. two processes
    scalers = ("shmpool-pool", "shmpool-cache", "shmpool-pool-locked", "shmpool-cache-locked",
               "lockedlist") + MALLOCS
    for procs in (1, 2):
        ref = t.median(part="scale", alloc="shmpool-pool", procs=procs)
        for alloc in scalers:
            t.add("2 processes", "64 B pairs, %d process%s" % (procs, "es" if procs > 1 else ""),
                  alloc, "Mpairs/s", ref, part="scale", procs=procs, size=64)
    ref = None
    for alloc in scalers:
        one = t.median(part="scale", alloc=alloc, procs=1)
        two = t.median(part="scale", alloc=alloc, procs=2)
        sc = two / one if one and two else None
        if alloc == "shmpool-pool":
            ref = sc
        how = ("private heaps: no sharing" if alloc in MALLOCS else
               "one shared pool, every call locked" if alloc.endswith("-locked") else
               "one shared list" if alloc == "lockedlist" else
               "one shared pool, per-thread magazines")
        t.add_value("2 processes", "aggregate: 2 ÷ 1 process", alloc, sc, "×",
                    "%.2f" % (sc / ref) if sc and ref else "—", how)
    # 3. producer/consumer
    ref = t.median(part="prodcons", alloc="shmpool-pool")
    for alloc in ("shmpool-pool", "lockedlist"):
        t.add("3 producer/consumer", "64 B, alloc in A, free in B", alloc, "Mitems/s", ref,
              part="prodcons", size=64)
    # 4. mixed trace
    ref = t.median(part="trace", alloc="shmpool-malloc")
    trace_allocs = ("shmpool-malloc",) + MALLOCS
    for alloc in trace_allocs:
        t.add("4 mixed trace", "time", alloc, "ns/op", ref, part="trace")
    fp = {}
    for alloc in trace_allocs:
        rs = t.data.get(("trace-fp", alloc), [])
        fp[alloc] = statistics.median(rs) if rs else None
    for alloc in trace_allocs:
        v, r = fp[alloc], fp["shmpool-malloc"]
        how = "buddy pages used" if alloc == "shmpool-malloc" else "RSS growth"
        t.add_value("4 mixed trace", "peak footprint ÷ peak live", alloc, v, "×",
                    "%.2f" % (v / r) if v and r else "—",
                    t.peers.get(alloc, "built") if alloc in MALLOCS and
                    t.peers.get(alloc, "built") != "built" else how)
    # 5. control plane
    ref = t.median(part="connect", alloc="shmpool", case="shmp_connect")
    t.add("5 control", "shmp_connect (connect + Hello + attach)", "shmpool", "µs", ref,
          part="connect", case="shmp_connect")
    t.add("5 control", "bare connect + 64 B round trip", "bare-socket", "µs", ref,
          part="connect", case="connect + round trip")
    t.add("5 control", "bare 64 B round trip, open connection", "bare-socket", "µs", ref,
          part="connect", case="round trip")
    ref = t.median(part="stats", alloc="shmpool", clients=1)
    for n in (1, 16, 256):
        t.add("5 control", "Stats, %d concurrent client%s" % (n, "s" if n > 1 else ""),
              "shmpool", "requests/s", ref, part="stats", clients=n)
    ref = t.median(part="release", alloc="shmpool", case="used nothing")
    held = [dict(key)["held"] for key in t.data if isinstance(key[0], tuple) and
            ("part", "release") in key and "held" in dict(key)]
    t.add("5 control", "disconnect after one alloc+free in a cache of %s held objects" % (
        "{:,}".format(int(held[0])) if held else "many"), "shmpool", "µs", ref,
          part="release", case="used the cache")
    t.add("5 control", "disconnect, nothing used", "shmpool", "µs", ref,
          part="release", case="used nothing")
    # geometry
    for case in ("named cache", "pool cache", "kmalloc-64", "kmalloc-256", "kmalloc-4096"):
        vals = t.values(part="geometry", alloc="shmpool", case=case)
        geo = t.data.get(("geometry-shape", case))
        t.add_value("slab geometry", case, "shmpool", vals[0] if vals else None,
                    "% object bytes", "—", geo or "no result")


def targets(t, cg):
    """The targets of issue 5, each with the measured ratio."""
    out = []

    def line(ok, text):
        out.append("- %s %s" % ("**met**" if ok else "**missed**", text) if ok is not None
                   else "- **not measured** " + text)

    def ratio(a, b):
        return a / b if a is not None and b else None

    def instr(alloc, ref, batch):
        ci = ratio(cg.get((alloc, batch)), cg.get((ref, batch)))
        return "; instructions %s vs %s = **%.2f×**" % (
            fmt(cg.get((alloc, batch))), fmt(cg.get((ref, batch))), ci) if ci else ""

    for batch in BATCHES:
        pool = t.median(part="pair", alloc="shmpool-pool", size=64, batch=batch)
        peers = [(t.median(part="pair", alloc=m, size=64, batch=batch), m) for m in MALLOCS]
        peers = [p for p in peers if p[0] is not None]
        if pool is None or not peers:
            line(None, "cached pool pair vs fastest malloc, batch %d" % batch)
            continue
        best = min(peers)
        r = pool / best[0]
        line(r <= 1.0, "cached pool alloc+free pair (magazines) ≤ 1.0× the fastest malloc "
             "peer, 64 B batch %d: %s vs %s %s ns = **%.2f×**%s" % (
                 batch, fmt(pool), best[1], fmt(best[0]), r, instr("shmpool-pool", best[1],
                                                                   batch)))
    for alloc, extra in (("shmpool-pool", ""), ("shmpool-pool-locked", " (extra row: locked)")):
        one = t.median(part="scale", alloc=alloc, procs=1)
        two = t.median(part="scale", alloc=alloc, procs=2)
        r = ratio(two, one)
        text = ("two processes ≥ 1.8× one process (%s, one pool, 64 B pairs): %s → %s "
                "Mpairs/s = **%s×**" % (alloc, fmt(one), fmt(two), "%.2f" % r if r else "—"))
        if extra:
            out.append("- %s%s" % (text, extra))  # not a target of its own
        else:
            line(None if r is None else r >= 1.8, text)
    pool = t.median(part="pair", alloc="shmpool-pool", size=64, batch=1)
    for alloc, want in (("boost-managed", 20.0), ("boost-private", 3.0)):
        b = t.median(part="pair", alloc=alloc, size=64, batch=1)
        r = ratio(b, pool)
        line(None if r is None else r >= want,
             "cached pool ≥ %.0f× faster than %s (64 B batch 1): %s vs %s ns = **%s×**%s" % (
                 want, alloc, fmt(b), fmt(pool), "%.2f" % r if r else "—",
                 instr(alloc, "shmpool-pool", 1)))
    ll = t.median(part="pair", alloc="lockedlist", size=64, batch=1)
    llpi = t.median(part="pair", alloc="lockedlist-pi", size=64, batch=1)
    for alloc in LOCKED:
        v = t.median(part="pair", alloc=alloc, size=64, batch=1)
        r = ratio(v, ll)
        rpi = ratio(v, llpi)
        line(None if r is None else r <= 1.2,
             "locked path (magazines off) ≤ 1.2× a bare robust-mutex free list (%s, 64 B "
             "batch 1): %s vs %s ns = **%s×**%s; against the same list under a robust PI "
             "mutex, shmpool's kind of lock: %s ns = %s×%s" % (
                 alloc, fmt(v), fmt(ll), "%.2f" % r if r else "—",
                 instr(alloc, "lockedlist", 1), fmt(llpi), "%.2f" % rpi if rpi else "—",
                 instr(alloc, "lockedlist-pi", 1)))
    vals = t.values(part="geometry", alloc="shmpool", case="named cache")
    eff = vals[0] if vals else None
    line(None if eff is None else eff >= 97.0,
         "slab space efficiency ≥ 97%% for 64 B objects: **%s%%** (%s)" % (
             fmt(eff), t.data.get(("geometry-shape", "named cache"), "")))
    rs = t.data.get(("trace-fp", "shmpool-malloc"))
    fpr = statistics.median(rs) if rs else None
    line(None if fpr is None else fpr <= 1.25,
         "mixed-size peak pages ÷ peak live ≤ 1.25 (shmp_malloc): **%s**" % (
             "%.2f" % fpr if fpr else "—"))
    con = t.median(part="connect", alloc="shmpool", case="shmp_connect")
    bare = t.median(part="connect", alloc="bare-socket", case="connect + round trip")
    rt = t.median(part="connect", alloc="bare-socket", case="round trip")
    r = ratio(con, bare)
    line(None if r is None else r <= 3.0,
         "connect + attach ≤ 3× a bare socket connect + round trip: %s vs %s µs = **%s×** "
         "(%s× a round trip on an open connection)" % (
             fmt(con), fmt(bare), "%.2f" % r if r else "—",
             "%.1f" % ratio(con, rt) if ratio(con, rt) else "—"))
    return "\n".join(out)


def write_output(path, text):
    block = "%s (written by tests/bench/bench.py; edits between the markers are lost) -->" \
        "\n%s\n%s" % (BEGIN, text, END)
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ("# shmpool performance\n\n" + "" + block + "\n")
        with open(path, "w") as f:
            f.write(old)
        return
    b, e = old.find(BEGIN), old.find(END)
    if b < 0 or e < b:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    else:
        new = old[:b] + block + old[e + len(END):]
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-bench", help="the meson build dir (-Dbench=true)")
    ap.add_argument("--quick", action="store_true", help="smoke test: few iterations, one run")
    ap.add_argument("--reps", type=int, help="runs of every program (default 5; quick 1)")
    ap.add_argument("--iters", type=int, help="alloc+free pairs per case")
    ap.add_argument("--trace-ops", type=int, help="operations of the mixed trace")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--output", help="write the results into this markdown file")
    a = ap.parse_args()

    # bench-shmpool chooses its path itself (--locked); an inherited
    # SHMPOOL_MAGAZINES=0 would turn the cached rows into locked ones
    os.environ.pop("SHMPOOL_MAGAZINES", None)
    build = os.path.abspath(a.build)
    bench_dir = os.path.join(build, "tests", "bench")
    daemon_bin = os.path.join(build, "daemon", "shmpoold")
    try:
        with open(os.path.join(bench_dir, "bench-peers.json")) as f:
            peers = json.load(f)
    except (OSError, ValueError) as e:
        die("cannot read %s/bench-peers.json (configure with -Dbench=true): %s" % (bench_dir, e))
    reps = a.reps or (1 if a.quick else 5)
    args = ["--quick"] if a.quick else []
    if a.iters:
        args += ["--iters", str(a.iters)]
    if a.trace_ops:
        args += ["--trace-ops", str(a.trace_ops)]
    timeout = 120 if a.quick else 1800
    start_load = "%.2f %.2f %.2f" % os.getloadavg()
    t0 = time.monotonic()

    progs = []
    for p in PROGRAMS:
        state = peers.get(p.peer, "not built: unknown to meson.build")
        path = os.path.join(bench_dir, p.binary)
        if state == "built":
            if not os.access(path, os.X_OK):
                die("%s is listed as built but %s is missing: run meson compile" % (p.key, path))
            progs.append((p, path))
        else:
            print("# skipping %s: %s" % (p.key, state))

    data = {}
    with tempfile.TemporaryDirectory(prefix="shmpool-bench-") as tmp:
        for rep in range(reps):
            for p, path in progs:
                ts = time.monotonic()
                for r in run_program(p, path, args, daemon_bin, tmp, timeout):
                    data.setdefault(key_of(r), []).append(r["value"])
                    if r["part"] == "trace":
                        data.setdefault(("trace-fp", r["alloc"]), []).append(
                            r["peak_footprint"] / r["peak_live"])
                    if r["part"] == "geometry":
                        data[("geometry-shape", r["case"])] = "%d objects of %d B in %d page%s" % (
                            r["objperslab"], r["size"], r["pagesperslab"],
                            "s" if r["pagesperslab"] > 1 else "")
                print("# run %d/%d: %-10s %.1f s" % (rep + 1, reps, p.key, time.monotonic() - ts),
                      flush=True)

        cg = {}
        if not a.quick and not a.no_callgrind:
            if not shutil.which("valgrind"):
                print("# valgrind not found: no instruction counts")
            else:
                built = {p.key: (p, path) for p, path in progs}
                daemon = Daemon(daemon_bin, tmp) if any(
                    p.daemon for p, _ in built.values()) else None
                try:
                    for alloc, key, name in CALLGRIND:
                        if key not in built:
                            continue
                        for batch in BATCHES:
                            ir = []
                            prog, path = built[key]
                            for n in (CG_SHORT, CG_LONG):
                                extra = prog.args + (["--socket", daemon.sock]
                                                     if prog.daemon else [])
                                ir.append(callgrind_ir(
                                    path, ["--one", "%s:64:%d:%d" % (name, batch, n)] + extra,
                                    tmp))
                            cg[(alloc, batch)] = (ir[1] - ir[0]) / ((CG_LONG - CG_SHORT) * 9 / 8)
                            print("# callgrind %-15s batch %3d: %.0f instructions/pair" % (
                                alloc, batch, cg[(alloc, batch)]), flush=True)
                finally:
                    if daemon:
                        daemon.stop()

    t = Table(data, reps, peers)
    build_table(t, cg)
    m = machine(build)
    cmd = " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    text = "\n".join([
        "## Results",
        "",
        "Medians of %d run%s of every program (interleaved), one table from one run of "
        "the driver.  *Ratio to shmpool* divides a row's median by shmpool's median of the "
        "same case (the `shmpool-pool` row in parts 1–3, `shmpool-malloc` in part 4, "
        "`shmp_connect` and one client in part 5): for ns, µs and instructions lower is "
        "better, for Mpairs/s, Mitems/s and requests/s higher is better.  The `shmpool-*` "
        "rows are the cached path (per-thread magazines, the default); the "
        "`shmpool-*-locked` rows are the same calls with the magazines off "
        "(`bench-shmpool --locked`: every session connects with "
        "`SHMP_CONNECT_NO_MAGAZINES`, so every call takes the locks), measured in the "
        "same run against a daemon of their own." % (
            reps, "s" if reps > 1 else ""),
        "",
        t.markdown(),
        "",
        "## Targets of issue 5 (from this run)",
        "",
        targets(t, cg),
        "",
        "## Machine and command",
        "",
        "- command: `%s` (run from the source root; `make bench` runs it with "
        "`--output docs/PERFORMANCE.md`)" % cmd,
        "- date: %s; took %.0f s" % (m["date"], time.monotonic() - t0),
        "- CPU: %s, %s cores; kernel %s" % (m["cpu"], m["cores"], m["kernel"]),
        "- load average at start %s, at end %s (this machine is shared: other work ran "
        "alongside); the driver ran at nice %d" % (start_load, m["load"], m["nice"]),
        "- compilers: %s; %s" % (m["cc"], m["cxx"] or "no C++ compiler"),
        "- packages: %s" % m["packages"],
        "- build-bench options: %s" % m["build"],
        "- shmpool: through libshmpool's public API against a fresh `shmpoold --size %s` "
        "per run (pools with 16 elements in reserve, slab backing)" % DAEMON_SIZE,
    ])
    print()
    print(text)
    if a.output:
        write_output(a.output, text)
        print("\n# wrote %s" % a.output)


if __name__ == "__main__":
    main()
