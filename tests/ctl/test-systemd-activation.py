# SPDX-License-Identifier: MIT
"""test-systemd-activation - shmpoold started the way systemd starts it:
under systemd-socket-activate (the socket bound by the launcher, passed as
fd 3 with LISTEN_FDS; the daemon is started by the first connection),
with NOTIFY_SOCKET pointing at a datagram socket this test created.  A
client (shmpoolctl) is served, READY=1 arrives with the daemon's pid and a
STATUS= line, SIGTERM brings STOPPING=1 and exit 0, and the socket, which
belongs to the launcher, is left in place."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from ctltest import SKIP, Reporter, ctl, ctl_json, env


def main():
    if not shutil.which("systemd-socket-activate"):
        print("systemd-socket-activate is not installed (Debian package systemd): skipped")
        sys.exit(SKIP)
    if os.environ.get("SHMPOOLD_SYSTEMD") != "1":
        print("shmpoold was built without libsystemd: skipped")
        sys.exit(SKIP)
    r = Reporter()
    tmp = tempfile.mkdtemp(prefix="ctltest-sa-")
    sock = os.path.join(tmp, "shmpool.sock")
    notify_path = os.path.join(tmp, "notify")
    shm = f"/ctltest-sa-{os.getpid()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)  # a bound on a hang, not a timed assertion
    log = open(os.path.join(tmp, "log"), "w+")
    launcher = subprocess.Popen(
        ["systemd-socket-activate", "-l", sock, "-E", "NOTIFY_SOCKET",
         env("SHMPOOLD"), "--shm-name", shm, "--size", "16M", "--reset",
         "--log-level", "debug"],
        env=dict(os.environ, NOTIFY_SOCKET=notify_path), stdout=log, stderr=log)
    messages = []
    try:
        def first_client():
            for _ in range(2000):  # the launcher binds before it waits
                if os.path.exists(sock):
                    break
                launcher.poll()
                assert launcher.returncode is None, "the launcher exited"
                import time
                time.sleep(0.01)
            st = ctl_json("status", sock=sock)  # this connection starts the daemon
            assert st["daemon"]["socket"] == sock, st["daemon"]
            assert st["segment"]["name"] == shm
            # systemd-socket-activate execs the daemon: same pid
            assert st["daemon"]["pid"] == launcher.pid, (st["daemon"]["pid"], launcher.pid)
        r.check("the first connection starts the daemon, which serves it", first_client)

        def ready():
            msg = notify.recv(4096).decode()
            messages.append(msg)
            fields = dict(line.split("=", 1) for line in msg.splitlines())
            assert fields.get("READY") == "1", msg
            assert fields.get("MAINPID") == str(launcher.pid), msg
            assert sock in fields.get("STATUS", ""), msg
        r.check("READY=1 with MAINPID and STATUS on NOTIFY_SOCKET", ready)

        def serves():
            ctl("create", "activated", 128, 4, sock=sock, check=0)
            p = ctl_json("pool", "activated", sock=sock)
            assert p["curr_nr"] == 4
            ctl("check", sock=sock, check=0)
        r.check("clients use it", serves)

        def stopping():
            launcher.send_signal(signal.SIGTERM)
            msg = notify.recv(4096).decode()
            messages.append(msg)
            assert "STOPPING=1" in msg.splitlines(), msg
            assert launcher.wait(timeout=30) == 0
            assert os.path.exists(sock), "an inherited socket is not the daemon's to remove"
        r.check("SIGTERM: STOPPING=1, exit 0, the socket stays", stopping)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        log.seek(0)
        sys.stderr.write("---- launcher and daemon log ----\n" + log.read())
        log.close()
        notify.close()
        try:
            os.unlink("/dev/shm" + shm)
        except OSError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    r.finish()


main()
