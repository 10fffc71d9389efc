# SPDX-License-Identifier: MIT
"""test-install - `meson install` into a DESTDIR puts everything in place
(binaries, shared and static library, shmpool.h, shmpool.pc, the three
man pages, units, sysusers file, sample config); the client example is
compiled against the installed header and library with
`pkg-config --cflags --libs shmpool` (PKG_CONFIG_PATH into the DESTDIR,
prefix redefined), and the installed daemon, shmpoolctl and the example
programs run together."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ctltest import Daemon, Reporter, ctl, ctl_json, env, find, meson_install


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def main():
    r = Reporter()
    root = tempfile.mkdtemp(prefix="ctltest-install-")
    try:
        opts = meson_install(root)
        prefix = root + opts["prefix"]
        libdir = os.path.join(prefix, opts["libdir"])
        files = {}

        def layout():
            want = {
                "shmpoold": os.path.join(prefix, opts["sbindir"], "shmpoold"),
                "shmpoolctl": os.path.join(prefix, opts["bindir"], "shmpoolctl"),
                "header": os.path.join(prefix, opts["includedir"], "shmpool.h"),
                "static": os.path.join(libdir, "libshmpool.a"),
                "shared": os.path.join(libdir, "libshmpool.so"),
                "pc": os.path.join(libdir, "pkgconfig", "shmpool.pc"),
                "man1": os.path.join(prefix, opts["mandir"], "man1", "shmpoolctl.1"),
                "man3": os.path.join(prefix, opts["mandir"], "man3", "shmpool.3"),
                "man8": os.path.join(prefix, opts["mandir"], "man8", "shmpoold.8"),
            }
            for k, p in want.items():
                assert os.path.exists(p), f"{k}: {p} is missing"
            files.update(want)
            assert os.readlink(want["shared"]).startswith("libshmpool.so.")
            for name in ("shmpoold.service", "shmpoold.socket", "shmpoold.conf.sample"):
                assert len(find(root, name)) == 1, name
            assert [p for p in find(root, "shmpool.conf") if "sysusers.d" in p]
            with open(want["man1"]) as f:
                man = f.read()
            assert man.startswith(".") and "shmpoolctl" in man and ".SH" in man
        r.check("every file in its place", layout)

        flags = []

        def pkgconfig():
            pc = files["pc"]
            with open(pc) as f:
                text = f.read()
            assert re.search(r"^Name: shmpool$", text, re.M)
            assert re.search(r"^Libs: .*-lshmpool", text, re.M)
            assert re.search(r"^Cflags: .*-I\$\{includedir\}", text, re.M)
            e = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pc))
            e.pop("PKG_CONFIG_LIBDIR", None)
            v = run("pkg-config", f"--define-variable=prefix={prefix}", "--cflags", "--libs",
                    "shmpool", env=e)
            assert v.returncode == 0, v.stderr
            flags.extend(v.stdout.split())
            assert f"-I{prefix}/{opts['includedir']}" in flags, flags
            assert f"-L{libdir}" in flags and "-lshmpool" in flags, flags
            m = run("pkg-config", "--modversion", "shmpool", env=e)
            assert m.stdout.strip() == ctl("--version").stdout.split()[1], m.stdout
        r.check("pkg-config --cflags --libs shmpool points into the DESTDIR", pkgconfig)

        progs = {}

        def compile_example():
            src = env("SHMP_PRODUCER_SRC")
            cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
            san = opts.get("b_sanitize", "none")
            # an instrumented libshmpool needs its runtime first: build the same way
            extra = [f"-fsanitize={san}"] if san and san != "none" else []
            for name in ("producer", "consumer"):
                out = os.path.join(root, "shmp-" + name)
                # only the installed header: the examples' own ring.h sits beside them
                v = run(cc, "-std=c11", "-Wall", "-Werror", "-o", out,
                        os.path.join(src, name + ".c"), f"-iquote{src}", *extra, *flags)
                assert v.returncode == 0, v.stderr
                progs[name] = out
            ldd = run("ldd", progs["producer"],
                      env=dict(os.environ, LD_LIBRARY_PATH=libdir))
            assert libdir in ldd.stdout, ldd.stdout
        r.check("the example compiles against the installed header", compile_example)

        def run_example():
            lib_env = dict(os.environ, LD_LIBRARY_PATH=libdir)
            with Daemon(exe=files["shmpoold"]) as d:
                prod = subprocess.Popen([progs["producer"], "-n", "3000", "-s", d.sock],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=lib_env)
                line = prod.stdout.readline()
                m = re.search(r"shmp-consumer (0x[0-9a-f]+)", line)
                assert m, line + prod.stderr.read()
                # options first: built without _GNU_SOURCE, getopt does not permute
                cons = run(progs["consumer"], "-s", d.sock, m.group(1), env=lib_env)
                if cons.returncode:
                    prod.kill()
                    prod.communicate()
                    raise AssertionError(f"consumer: exit {cons.returncode}: {cons.stderr}")
                out, err = prod.communicate(timeout=60)
                assert "consumer: 3000 items, 0 bad" in cons.stdout, cons.stdout
                assert prod.returncode == 0, err
                assert "producer: done, 3000 items" in out, out
                st = ctl_json("status", sock=d.sock, exe=files["shmpoolctl"])
                assert st["clients"]["dead"] == 0 and st["clients"]["orphans"]["objects"] == 0
                ctl("check", sock=d.sock, exe=files["shmpoolctl"], check=0)
        r.check("the installed daemon, shmpoolctl and the example work together", run_example)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    r.finish()


main()
