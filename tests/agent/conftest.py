"""Fixtures for the guest agent's host tests: a static busybox rootfs and a katad-agent serving
--listen on a Unix socket with --no-cgroups (the host here has cgroup v1 only).

They need root (namespaces, mounts). Every agent started here is stopped, and every process it
left and every mount under the test's directory is removed, whatever the test did."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from agentwire import AgentClient, wait_socket  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APPLETS = ["sh", "echo", "sleep", "cat", "ps", "id", "hostname", "stty", "ls", "touch", "true", "false",
           "env", "pwd", "kill", "yes", "head", "mount", "wc", "dd", "grep", "mkdir", "stat"]


def find_agent():
    candidates = [os.environ.get("KATAD_AGENT"), os.path.join(REPO, "build", "katad-agent"),
                  os.path.join(REPO, "build", "agent", "katad-agent"), os.path.join(REPO, "katad-agent")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    pytest.fail("katad-agent not built (run make in build/, or set KATAD_AGENT)")


def is_static(path):
    with open(path, "rb") as f:
        return b"/lib64/ld-linux" not in f.read(1 << 16)


@pytest.fixture(scope="session")
def agent_binary():
    if os.geteuid() != 0:
        pytest.fail("the agent's host tests need root")
    return find_agent()


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory):
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox) or not is_static(busybox):
        pytest.fail("needs a static busybox (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    return str(root)


def descendants(pid):
    """Every process below pid, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def mounts_under(path):
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4]
            if mountpoint == path or mountpoint.startswith(path + "/"):
                found.append(mountpoint)
    return found


class Agent:
    def __init__(self, binary, workdir, rootfs, extra_args=()):
        self.workdir = str(workdir)
        self.rootfs = rootfs
        self.sock = os.path.join(self.workdir, "agent.sock")
        self.state_dir = os.path.join(self.workdir, "state")
        self.log = open(os.path.join(self.workdir, "agent.log"), "w+")
        self.proc = subprocess.Popen([binary, "--listen", self.sock, "--no-cgroups", "--state-dir", self.state_dir,
                                      "--debug", *extra_args], stdout=self.log, stderr=subprocess.STDOUT)
        self.clients = []
        wait_socket(self.sock, self.proc)

    def client(self, hello=True, **kw):
        c = AgentClient(self.sock, **kw)
        self.clients.append(c)
        if hello:
            c.do_hello()
        return c

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        """Stops the agent and removes whatever it left; returns a complaint or None."""
        for c in self.clients:
            c.close()
        left, complaint = [], None
        if self.proc.poll() is None:
            left = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                complaint = "the agent did not stop on SIGTERM"
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode != 0 and complaint is None:
            complaint = "the agent exited with %s" % self.proc.returncode
        # Whatever survived (nothing should), goes now.
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for mountpoint in reversed(mounts_under(self.workdir)):
            subprocess.run(["umount", "-l", mountpoint], check=False)
        self.log.close()
        return complaint


@pytest.fixture
def agent(agent_binary, rootfs, tmp_path):
    a = Agent(agent_binary, tmp_path, rootfs)
    try:
        yield a
    finally:
        log = a.log_text()
        complaint = a.stop()
        if os.environ.get("AGENT_TEST_LOG"):
            print(log)
    # Sanitizer builds (KATAD_AGENT=an ASan/UBSan build) report into the log.
    assert "Sanitizer" not in log and "runtime error" not in log, log
    assert complaint is None, complaint + "\n" + log
