"""Fixtures of the QEMU backend tests: real VMs under TCG, driven through vmm-harness.

    def test_x(qemu):
        ops = qemu.run(["boot:vm1:" + qemu.run_dir("vm1"), "ping", "stop"])   # list of JSON lines
        p = qemu.spawn([...])                 # a running harness; p.next() reads its next line

Kernel and initrd: $KATAD_TEST_KERNEL and $KATAD_TEST_INITRD; otherwise the project's guest kernel
(build/guest/vmlinux, everything built in) with the test init's initrd; otherwise Debian's packaged
kernel with an initrd carrying its modules. No kernel, or no QEMU: the tests are skipped with the
reason (install qemu-system-x86 and linux-image-amd64, or run scripts/build-guest.sh).

Cleanup: every VM of a test runs with its run directory under one unique temporary directory, which
appears on the QEMU command line (-fsdev path=...). At teardown, even after a failure, every
process whose command line holds that directory is killed by pid, every harness is killed, and the
directory is removed. The same sweep runs at interpreter exit.
"""

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QEMU = os.environ.get("KATAD_TEST_QEMU", "/usr/bin/qemu-system-x86_64")
_markers = set()


def _kill_by_marker(marker):
    """Kills, one pid at a time, every process whose command line contains marker."""
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
            except ProcessLookupError:
                pass
    return killed


def _sweep():
    for marker in list(_markers):
        _kill_by_marker(marker)
        shutil.rmtree(marker, ignore_errors=True)
        _markers.discard(marker)


atexit.register(_sweep)


def pid_running(pid, start_time=None):
    """True while pid exists, is not a zombie and (if given) started at start_time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    if not os.access(QEMU, os.X_OK):
        pytest.fail(f"{QEMU} is missing (apt-get install qemu-system-x86)")
    out = tmp_path_factory.mktemp("qemu-build")
    subprocess.run([str(REPO / "tests/qemu/build.sh"), str(out)], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    kernel = os.environ.get("KATAD_TEST_KERNEL")
    initrd = os.environ.get("KATAD_TEST_INITRD")
    if not kernel:
        guest = Path(os.environ.get("KATAD_GUEST_DIR", REPO / "build/guest"))
        if (guest / "vmlinux").exists():
            kernel, initrd = str(guest / "vmlinux"), initrd or str(out / "initrd.img")
        elif (out / "vmlinuz-debian").exists():
            kernel, initrd = str(out / "vmlinuz-debian"), initrd or str(out / "initrd-debian.img")
        else:
            pytest.fail("no guest kernel: run make guest, or apt-get install linux-image-amd64")
    return {"harness": str(out / "vmm-harness"), "kernel": kernel, "initrd": initrd or str(out / "initrd.img")}


class Harness:
    """One vmm-harness process whose JSON lines are read as they come."""

    def __init__(self, argv, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        self.lines = []
        self.buf = b""

    def next(self, timeout=120):
        """The next JSON line, or an AssertionError after timeout seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        # Raw reads with our own buffer: a buffered readline could hold a line that select() then
        # waits for in vain.
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no output from the harness within {timeout} s; so far {self.lines}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"the harness ended; so far {self.lines}"
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        op = json.loads(line)
        self.lines.append(op)
        return op

    def until(self, name, timeout=120):
        while True:
            op = self.next(timeout)
            if op["op"] == name:
                return op

    def finish(self, timeout=120):
        rest = []
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        finally:
            self.kill()
        # Nonzero means a crash or a sanitizer report (see harness.log).
        assert self.proc.returncode == 0, f"the harness exited with {self.proc.returncode}"
        for line in (self.buf + out).splitlines():
            rest.append(json.loads(line))
        self.lines.extend(rest)
        return self.lines

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


class QemuEnv:
    def __init__(self, artifacts, base):
        self.artifacts = artifacts
        self.base = base
        self.harnesses = []
        self.log_path = os.path.join(base, "harness.log")

    def run_dir(self, name):
        d = os.path.join(self.base, name)
        os.makedirs(d, exist_ok=True)
        return d

    def argv(self, ops, options=()):
        a = self.artifacts
        return [a["harness"], "--kernel", a["kernel"], "--initrd", a["initrd"], *options, *ops]

    def spawn(self, ops, options=()):
        h = Harness(self.argv(ops, options), self.log_path)
        self.harnesses.append(h)
        return h

    def run(self, ops, options=(), timeout=180):
        """Runs the harness to its end; returns its operations by name (a list when repeated)."""
        lines = self.spawn(ops, options).finish(timeout)
        return lines

    def harness_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def cleanup(self):
        for h in self.harnesses:
            h.kill()
        killed = _kill_by_marker(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        _markers.discard(self.base)
        return killed


@pytest.fixture
def qemu(artifacts, request):
    base = tempfile.mkdtemp(prefix="katad-qemu-test-")
    _markers.add(base)
    env = QemuEnv(artifacts, base)
    yield env
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print("---- harness log ----\n" + env.harness_log())
    env.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
