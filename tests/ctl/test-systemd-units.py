# SPDX-License-Identifier: MIT
"""test-systemd-units - the units as `meson install` puts them into a
DESTDIR: `systemd-analyze verify --root=DESTDIR` accepts them without a
single warning (and does catch a missing ExecStart binary),
`systemd-analyze security` rates the service OK (the sandboxing is
there, PrivateDevices= is not: it would hide /dev/shm), the sysusers.d
file creates the shmpool user, and the installed daemon starts with the
installed configuration file."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ctltest import SKIP, Daemon, Reporter, ctl, find, meson_install


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def main():
    if not shutil.which("systemd-analyze"):
        print("systemd-analyze is not installed (Debian package systemd): skipped")
        sys.exit(SKIP)
    r = Reporter()
    root = tempfile.mkdtemp(prefix="ctltest-units-")
    try:
        meson_install(root)
        service = find(root, "shmpoold.service")
        sock = find(root, "shmpoold.socket")
        assert len(service) == 1 and len(sock) == 1, (service, sock)
        service, sock = service[0], sock[0]
        # verify needs the targets the units depend on inside the root
        targets = os.path.join(root, "usr/lib/systemd/system")
        os.makedirs(targets, exist_ok=True)
        for t in glob.glob("/lib/systemd/system/*.target") + \
                glob.glob("/usr/lib/systemd/system/*.target"):
            if not os.path.exists(os.path.join(targets, os.path.basename(t))):
                shutil.copy(t, targets)
        in_root = ["/" + os.path.relpath(p, root) for p in (service, sock)]

        def verify():
            v = run("systemd-analyze", "verify", "--man=no", f"--root={root}", *in_root)
            assert v.returncode == 0 and not v.stdout.strip() and not v.stderr.strip(), \
                f"exit {v.returncode}\n{v.stdout}\n{v.stderr}"
        r.check("systemd-analyze verify: no error, no warning", verify)

        def verify_catches():
            exe = find(root, "shmpoold")[0]
            os.rename(exe, exe + ".away")
            try:
                v = run("systemd-analyze", "verify", "--man=no", f"--root={root}", in_root[0])
            finally:
                os.rename(exe + ".away", exe)
            assert v.returncode != 0 and "shmpoold" in v.stderr, v.stderr
        r.check("verify notices a missing ExecStart binary", verify_catches)

        def content():
            with open(service) as f:
                text = f.read()
            for want in ("Type=notify", "Restart=on-failure", "RuntimeDirectory=shmpool",
                         "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
                         "PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX",
                         "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes",
                         "LockPersonality=yes", "RestrictRealtime=yes", "User=shmpool"):
                assert re.search("^" + re.escape(want) + "$", text, re.M), want
            for never in ("PrivateDevices=yes", "RemoveIPC=yes", "DynamicUser=yes",
                          "ProtectProc=invisible", "PrivateUsers=yes"):
                assert not re.search("^" + re.escape(never), text, re.M), never
            m = re.search(r"^ExecStart=(\S+) --config (\S+)$", text, re.M)
            assert m and os.path.exists(root + m.group(1)), "ExecStart names the daemon"
            assert os.path.exists(root + m.group(2)), "ExecStart names the installed config"
            with open(sock) as f:
                s = f.read()
            for want in ("ListenStream=/run/shmpool/shmpool.sock", "SocketMode=0660",
                         "SocketGroup=shmpool"):
                assert want in s, want
        r.check("sandboxing present, PrivateDevices absent", content)

        def security():
            v = run("systemd-analyze", "security", "--offline=yes", f"--root={root}",
                    "--no-pager", in_root[0])
            m = re.search(r"Overall exposure level for shmpoold\.service: ([0-9.]+) (\w+)",
                          v.stdout + v.stderr)
            assert m, v.stdout + v.stderr
            print(f"# systemd-analyze security: {m.group(1)} {m.group(2)}")
            assert float(m.group(1)) <= 2.0, m.group(0)
        r.check("systemd-analyze security rates it OK", security)

        def sysusers():
            if not shutil.which("systemd-sysusers"):
                return
            conf = find(root, "shmpool.conf")
            conf = [c for c in conf if "sysusers.d" in c]
            assert len(conf) == 1, conf
            os.makedirs(os.path.join(root, "etc"), exist_ok=True)
            v = run("systemd-sysusers", f"--root={root}", conf[0])
            assert v.returncode == 0, v.stderr
            with open(os.path.join(root, "etc/passwd")) as f:
                assert re.search(r"^shmpool:", f.read(), re.M)
            with open(os.path.join(root, "etc/group")) as f:
                assert re.search(r"^shmpool:", f.read(), re.M)
        r.check("sysusers.d creates the shmpool user and group", sysusers)

        def config():
            sample = [p for p in find(root, "shmpoold.conf.sample") if "/shmpool/" in p]
            conf = [p for p in find(root, "shmpoold.conf") if "/shmpool/" in p]
            assert len(sample) == 1 and len(conf) == 1, (sample, conf)
            with open(conf[0]) as f:
                text = f.read()
            with open(sample[0]) as f:
                assert f.read() == text
            try:
                import grp
                grp.getgrnam("shmpool")
            except KeyError:  # no such group here: the sysusers file makes it
                text = re.sub(r"^allow_groups = shmpool$", "", text, flags=re.M)
            test_conf = os.path.join(root, "test.conf")
            with open(test_conf, "w") as f:
                f.write(text)
            exe = find(root, "shmpoold")[0]
            with Daemon(exe=exe, extra=["--config", test_conf]) as d:
                ctl("status", sock=d.sock, check=0)
        r.check("the installed daemon starts with the installed config", config)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    r.finish()


main()
