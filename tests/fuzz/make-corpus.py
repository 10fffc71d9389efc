#!/usr/bin/env python3
"""make-corpus.py - write the seed corpus of the fuzz targets.

    tests/fuzz/make-corpus.py        # rewrites tests/fuzz/corpus/{rpc,segment}/

Deterministic: the same files every run, so the corpus in the repository is
this script's output.  The input formats are described at the top of
fuzz-rpc.c and fuzz-segment.c; requests are encoded by hand below (proto3
wire format, field numbers from proto/shmpool.proto), so no protobuf
package is needed.
"""
import os
import random
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- protobuf wire format --------------------------------------------------


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fv(num, n):                       # varint field
    return varint(num << 3) + varint(n)


def fb(num, data):                    # length-delimited field
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def f64(num, n):                      # fixed64 field
    return varint(num << 3 | 1) + struct.pack("<Q", n)


OPS = {"hello": 10, "pool_create": 11, "pool_open": 12, "pool_destroy": 13,
       "pool_resize": 14, "cache_create": 15, "cache_open": 16, "cache_destroy": 17,
       "list": 18, "stats": 19, "check": 20, "reclaim": 21, "goodbye": 22}


def request(rid, op, body=b""):
    return fv(1, rid) + fb(OPS[op], body)


def hello(name="fuzz", version=1, resume=False, slot=0, token=0):
    b = fv(1, version) + fb(2, name) + fv(3, 42)
    if resume:
        b += fv(4, 1) + fv(5, slot) + f64(6, token)
    return b


def pool_create(name, elem_size, min_nr, max_nr=0, backing=0, flags=0, cache_flags=0,
                align=0, mode=0):
    b = fb(1, name) + fv(2, elem_size) + fv(3, min_nr)
    for num, v in ((4, max_nr), (5, backing), (6, flags), (7, cache_flags), (8, align),
                   (9, mode)):
        if v:
            b += fv(num, v)
    return b


def cache_create(name, obj_size, align=0, flags=0, template=b"", mode=0):
    b = fb(1, name) + fv(2, obj_size)
    if align:
        b += fv(3, align)
    if flags:
        b += fv(4, flags)
    if template:
        b += fb(5, template)
    if mode:
        b += fv(6, mode)
    return b


def name_ref(name):
    return fb(1, name)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


# ---- fuzz-rpc inputs: [flags] then chunks [hdr:2][bytes] -------------------


def chunk(data, peer=0):
    out = b""
    while True:                        # a chunk carries at most 0x7fff bytes
        part, data = data[:0x7FFF], data[0x7FFF:]
        out += struct.pack(">H", (peer << 15) | len(part)) + part
        if not data:
            return out


def rpc_input(flags, *chunks):
    return bytes([flags]) + b"".join(chunks)


def session(*reqs, peer=0, split=None):
    """Frames of @reqs (op, body) numbered from 1, as one chunk or split."""
    data = b"".join(frame(request(i + 1, op, body)) for i, (op, body) in enumerate(reqs))
    if split:
        return b"".join(chunk(data[i:i + split], peer) for i in range(0, len(data), split))
    return chunk(data, peer)


def rpc_corpus():
    H = ("hello", hello())
    c = {}
    c["hello"] = rpc_input(0, session(H))
    c["hello-goodbye"] = rpc_input(0, session(H, ("goodbye", b"")))
    c["pool-lifecycle"] = rpc_input(0, session(
        H, ("pool_create", pool_create("p.one", 64, 4, max_nr=16)),
        ("pool_open", name_ref("p.one")), ("pool_resize", fb(1, "p.one") + fv(2, 8)),
        ("stats", b""), ("pool_destroy", name_ref("p.one")), ("goodbye", b"")))
    c["pool-pages"] = rpc_input(0, session(
        H, ("pool_create", pool_create("p.pages", 9000, 2, backing=1, flags=1)),
        ("list", b""), ("check", b"")))
    c["pool-debug"] = rpc_input(0, session(
        H, ("pool_create", pool_create("p.dbg", 40, 3, cache_flags=7, align=64, mode=0o644)),
        ("pool_resize", fb(1, "p.dbg") + fv(2, 0)), ("pool_destroy", name_ref("p.dbg"))))
    c["pool-too-big"] = rpc_input(0, session(
        H, ("pool_create", pool_create("p.big", 1 << 40, 1)),
        ("pool_create", pool_create("p.many", 4096, 100000)),
        ("pool_create", pool_create("p.cap", 64, 10, max_nr=5)),
        ("pool_create", pool_create("p.flags", 64, 1, backing=7, flags=0xff, cache_flags=0x100))))
    c["pool-table-full"] = rpc_input(0, session(
        H, *[("pool_create", pool_create("p%d" % i, 16, 1)) for i in range(6)], ("list", b"")))
    c["cache-lifecycle"] = rpc_input(0, session(
        H, ("cache_create", cache_create("c.tmpl", 16, 8, 6, b"0123456789abcdef", 0o604)),
        ("cache_open", name_ref("c.tmpl")), ("stats", b""),
        ("cache_destroy", name_ref("c.tmpl"))))
    c["cache-bad"] = rpc_input(0, session(
        H, ("cache_create", cache_create("c.bad", 16, template=b"short")),
        ("cache_create", cache_create("c.align", 16, align=3)),
        ("cache_create", cache_create("c.huge", 1 << 30)),
        ("cache_create", cache_create("c.mode", 16, mode=0o7777)),
        ("cache_open", name_ref("nope")), ("cache_destroy", name_ref("nope"))))
    c["cache-table-full"] = rpc_input(0, session(
        H, *[("cache_create", cache_create("c%d" % i, 32)) for i in range(6)]))
    c["views"] = rpc_input(0, session(H, ("list", b""), ("stats", b""), ("check", b"")))
    c["bad-names"] = rpc_input(0, session(
        H, ("pool_create", pool_create("", 8, 1)),
        ("pool_create", pool_create("a" * 64, 8, 1)),
        ("pool_create", pool_create("bad name\n", 8, 1)),
        ("pool_open", name_ref("\xff\x00x")), ("pool_destroy", b""),
        ("pool_resize", fv(2, 3))))
    c["reclaim"] = rpc_input(0, session(
        H, ("reclaim", fv(1, 0)), ("reclaim", fv(1, 1)), ("reclaim", fv(1, 99999))))
    c["before-hello"] = rpc_input(0, session(("list", b""), ("pool_open", name_ref("x")), H))
    c["hello-twice"] = rpc_input(0, session(H, H))
    c["hello-version"] = rpc_input(0, session(("hello", hello(version=2)), H))
    c["hello-resume"] = rpc_input(0, session(
        ("hello", hello(resume=True, slot=0, token=0x1234)),
        ("hello", hello(resume=True, slot=70000, token=1)), H))
    c["after-goodbye"] = rpc_input(0, session(H, ("goodbye", b""), ("list", b"")))
    c["not-allowed"] = rpc_input(2, session(H, ("list", b"")))
    c["non-root"] = rpc_input(1, session(H, ("pool_open", name_ref("shared"))),
                              session(H, ("pool_create", pool_create("shared", 32, 2)),
                                      peer=1),
                              session(("pool_open", name_ref("shared")),
                                      ("pool_destroy", name_ref("shared")),
                                      ("pool_resize", fb(1, "shared") + fv(2, 1)),
                                      ("reclaim", fv(1, 1))))
    c["two-clients"] = rpc_input(0, session(H, peer=0), session(H, peer=1),
                                 session(("stats", b""), ("goodbye", b""), peer=1),
                                 session(("stats", b""), ("check", b"")))
    c["byte-by-byte"] = rpc_input(0, session(
        H, ("pool_create", pool_create("p.split", 24, 2)), ("list", b""), split=1))
    c["split-7"] = rpc_input(0, session(H, ("stats", b""), split=7))
    c["oversize-frame"] = rpc_input(0, chunk(struct.pack(">I", 65537) + b"x" * 16))
    c["huge-length"] = rpc_input(0, chunk(b"\xff\xff\xff\xff"))
    c["max-frame"] = rpc_input(0, chunk(frame(request(1, "hello", hello("x" * 65000)))))
    c["partial-frame"] = rpc_input(0, chunk(frame(request(1, "hello", hello()))[:9]))
    c["empty-frame"] = rpc_input(0, chunk(frame(b"")), session(H))
    c["malformed"] = rpc_input(0, chunk(frame(b"\x0a\xff\xff\xff\xff\x0f")))
    c["unknown-op"] = rpc_input(0, session(H), chunk(frame(fv(1, 7) + fb(99, b"zz"))),
                                chunk(frame(fv(1, 8))))
    c["wrong-types"] = rpc_input(0, session(H), chunk(frame(fv(1, 9) + fv(11, 5))),
                                 chunk(frame(fb(1, b"x") + fb(10, fb(1, b"abc")))))
    return c


# ---- fuzz-segment inputs: [flags] then [region:1][off:4 LE][len:1][bytes] --

REGIONS = ["header", "clients", "caches", "pools", "chash", "phash", "pages", "data", "all"]


def seg_patch(region, off, data):
    return bytes([REGIONS.index(region)]) + struct.pack("<IB", off, len(data)) + data


def segment_corpus():
    c = {"unpatched": b"\x00", "unpatched-resum": b"\x01"}
    ones = b"\xff" * 8
    for r in REGIONS:
        c["ff-" + r] = b"\x00" + seg_patch(r, 0, ones)
        c["zero-" + r] = b"\x00" + seg_patch(r, 24, b"\x00" * 16)
    # header geometry with the checksum recomputed: every field's own check
    for off in (8, 16, 32, 56, 64, 72, 88, 96, 112, 160):
        c["hdr-%d-resum" % off] = b"\x01" + seg_patch("header", off, b"\xff\xff\x0f\x00")
    c["hdr-mutable"] = b"\x00" + seg_patch("header", 600, b"\x07" * 64)
    rng = random.Random(6)
    for i in range(12):
        patches = b"".join(
            seg_patch(rng.choice(REGIONS[1:8]), rng.randrange(1 << 20),
                      bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8)))))
            for _ in range(rng.randrange(1, 6)))
        c["random-%02d" % i] = b"\x00" + patches
    return c


def write(target, corpus):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in sorted(corpus.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds in %s" % (target, len(corpus), os.path.relpath(d)))


def main():
    write("rpc", rpc_corpus())
    write("segment", segment_corpus())
    return 0


if __name__ == "__main__":
    sys.exit(main())
