# SPDX-License-Identifier: MIT
"""test-metrics - `shmpoolctl metrics` against a live daemon, parsed by the
Prometheus text-format parser of python3-prometheus-client and by a strict
line-by-line check of the exposition format (HELP/TYPE before samples,
families contiguous, no duplicate series, counters named _total, escaped
label values); the values asserted against what the test created and
against `status --json`.  Unreachable: exit 3 with "shmpool_up 0"."""
import math
import os
import re

from ctltest import Daemon, Reporter, ctl, ctl_json

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    raise SystemExit("python3-prometheus-client is missing: scripts/deps.sh installs it "
                     "(apt-get install python3-prometheus-client)")

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? (\S+)$")
HELP = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")


def strict(text):
    """The exposition format, line by line; returns {(name, labels): value}."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types, helped, series, done = {}, set(), {}, set()
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        if m := HELP.match(line):
            helped.add(m.group(1))
            continue
        if m := TYPE.match(line):
            name = m.group(1)
            assert name not in types, f"line {n}: a second TYPE for {name}"
            assert name in helped, f"line {n}: TYPE of {name} before its HELP"
            if current:
                done.add(current)
            types[name], current = m.group(2), name
            if m.group(2) == "counter":
                assert name.endswith("_total"), f"line {n}: counter {name} lacks _total"
            continue
        assert not line.startswith("#"), f"line {n}: a stray comment: {line}"
        m = SAMPLE.match(line)
        assert m, f"line {n}: not a sample: {line!r}"
        name, labels, value = m.groups()
        assert name in types, f"line {n}: sample of {name} before its TYPE"
        assert name == current and name not in done, f"line {n}: {name} is not contiguous"
        v = float(value)
        assert math.isfinite(v) and v >= 0, f"line {n}: value {value}"
        key = (name, labels or "")
        assert key not in series, f"line {n}: duplicate series {key}"
        series[key] = v
    return series


def parsed(text):
    """The same text through prometheus_client's parser: {(name, labels): value}."""
    out = {}
    fams = list(text_string_to_metric_families(text))
    assert fams, "no metric family parsed"
    for fam in fams:
        assert fam.type in ("counter", "gauge"), f"{fam.name}: type {fam.type}"
        assert fam.documentation, f"{fam.name}: no HELP"
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def main():
    r = Reporter()
    with Daemon() as d:
        ctl("create", "alpha", 256, 8, "--max", 64, "--reclaim-on-exit", sock=d.sock, check=0)
        ctl("create", "beta", "1000", 4, sock=d.sock, check=0)
        ctl("create", "pages.big", "16K", 2, "--pages", sock=d.sock, check=0)
        res = ctl("metrics", sock=d.sock)
        text = res.stdout
        status = ctl_json("status", sock=d.sock)

        r.check("exit 0", lambda: res.returncode == 0 or (_ for _ in ()).throw(
            AssertionError(res.stderr)))
        series = {}
        r.check("strict exposition format", lambda: series.update(strict(text)))
        p = {}
        r.check("prometheus_client parses it", lambda: p.update(parsed(text)))

        def values():
            def v(name, **labels):
                return p[(name, tuple(sorted(labels.items())))]
            assert v("shmpool_up") == 1
            assert v("shmpool_segment_size_bytes") == 16 << 20
            assert v("shmpool_pools") == 3
            assert v("shmpool_pool_min_nr", pool="alpha") == 8
            assert v("shmpool_pool_max_nr", pool="alpha") == 64
            assert v("shmpool_pool_elem_size_bytes", pool="beta") == 1000
            assert v("shmpool_pool_reserve_elements", pool="beta") == 4
            assert v("shmpool_pool_out_elements", pool="beta") == 0
            assert v("shmpool_pool_reserve_elements", pool="pages.big") == 2
            # counters: the parser strips _total from the family, not the sample
            assert v("shmpool_pool_allocations_total", pool="alpha") == 0
            assert v("shmpool_cache_active_objects", cache="pool.alpha", kind="pool") == 8
            assert v("shmpool_cache_object_size_bytes", cache="pool.beta", kind="pool") == 1000
            pages = status["pages"]
            assert v("shmpool_pages", state="free") + v("shmpool_pages", state="used") == \
                pages["total"]
            free = sum(val * (1 << int(dict(lbl)["order"]))
                       for (name, lbl), val in p.items() if name == "shmpool_buddy_free_blocks")
            assert free == v("shmpool_pages", state="free")
            assert v("shmpool_clients", state="alive") == 1  # this shmpoolctl
            assert v("shmpool_clients", state="dead") == 0
            assert v("shmpool_orphaned_objects") == 0
            assert v("shmpool_daemon_uptime_seconds") >= 0
            layout = str(status["segment"]["layout_version"])
            assert layout == re.search(r"SP_LAYOUT_VERSION\s+(\d+)u",
                                       open(os.path.join(os.environ["SHMPOOL_SOURCE_ROOT"],
                                                         "shared/layout.h")).read()).group(1)
            assert v("shmpool_info", segment=d.shm, layout=layout,
                     daemon_version=status["daemon"]["version"], offline="false") == 1
        r.check("values match what was created", values)

        def unreachable():
            u = ctl("metrics", sock=d.dir + "/none.sock")
            assert u.returncode == 3, u.returncode
            assert d.dir + "/none.sock" in u.stderr
            fam = {f.name: f for f in text_string_to_metric_families(u.stdout)}
            assert fam["shmpool_up"].samples[0].value == 0
            strict(u.stdout)
        r.check("unreachable: exit 3, shmpool_up 0", unreachable)
    r.finish()


main()
