# SPDX-License-Identifier: MIT
"""ctltest - helpers for the Python tests of tests/ctl (metrics, systemd,
install): a private shmpoold on a temporary socket and a unique segment,
shmpoolctl runs, meson install into a DESTDIR, and a small TAP-like
reporter whose last line is "N passed, N failed".

Every wait is a bounded poll; nothing asserts how long anything takes.
Paths come from meson through the environment: SHMPOOLD, SHMPOOLCTL,
SHMPOOL_BUILD_ROOT, SHMPOOL_SOURCE_ROOT, MESON.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


def env(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"${name} is not set (meson sets it)")
    return v


class Daemon:
    """A shmpoold of its own: temporary directory, socket and segment."""

    counter = 0

    def __init__(self, exe=None, extra=(), env_add=None):
        Daemon.counter += 1
        self.exe = exe or env("SHMPOOLD")
        self.dir = tempfile.mkdtemp(prefix="ctltest-")
        self.sock = os.path.join(self.dir, "shmpool.sock")
        self.shm = f"/ctltest-{os.getpid()}-{Daemon.counter}"
        self.log = os.path.join(self.dir, "shmpoold.log")
        self.extra = list(extra)
        self.env = dict(os.environ, **(env_add or {}))
        self.proc = None

    def start(self):
        args = [self.exe, "--socket", self.sock, "--shm-name", self.shm, "--size", "16M",
                "--log-level", "debug"] + self.extra
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=self.env)
        wait_for_socket(self.sock, self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        try:
            with open(self.log, errors="replace") as f:
                sys.stderr.write(f"---- shmpoold log ----\n{f.read()}---- end ----\n")
        except OSError:
            pass
        try:
            os.unlink("/dev/shm" + self.shm)
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def wait_for_socket(path, proc=None, polls=2000):
    """Poll until something accepts on @path (at most @polls * 10 ms)."""
    for _ in range(polls):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} before listening")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    raise RuntimeError(f"nothing listens on {path}")


def ctl(*args, sock=None, check=None, exe=None, env_add=None):
    """Run shmpoolctl; returns the CompletedProcess (text)."""
    cmd = [exe or env("SHMPOOLCTL")]
    if sock:
        cmd += ["--socket", sock]
    cmd += [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, **(env_add or {})))
    if check is not None and r.returncode != check:
        raise AssertionError(f"{' '.join(cmd)}: exit {r.returncode}, expected {check}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def ctl_json(*args, sock=None, exe=None):
    return json.loads(ctl("--json", *args, sock=sock, check=0, exe=exe).stdout)


def meson_install(destdir):
    """meson install of the build tree into @destdir; returns the prefix inside it."""
    build = env("SHMPOOL_BUILD_ROOT")
    meson = os.environ.get("MESON") or "meson"
    r = subprocess.run([meson, "install", "-C", build, "--destdir", destdir, "--no-rebuild",
                        "--quiet"], capture_output=True, text=True, timeout=100)
    if r.returncode:
        raise AssertionError(f"meson install failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
        opts = {o["name"]: o["value"] for o in json.load(f)}
    return opts


def find(root, name):
    """Every path under @root whose file name is @name."""
    hits = []
    for d, _, files in os.walk(root):
        if name in files:
            hits.append(os.path.join(d, name))
    return hits


class Reporter:
    """ok()/fail() per check; finish() prints "N passed, N failed" and exits."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # report and go on with the next check
            import traceback
            self.failed += 1
            print(f"not ok - {name}: {e}")
            traceback.print_exc(file=sys.stdout)
        else:
            self.passed += 1
            print(f"ok - {name}")
        sys.stdout.flush()

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed or not self.passed else 0)
