"""VM tests of katad-agent: the agent as /init of a real guest (QEMU/TCG, the project's kernel),
driven over the virtio-serial port's chardev socket, with a busybox rootfs on the 9p share. These
cover what the host cannot: cgroup v2 (limits, stats, pause/resume, update, OOM events), PID 1
duties and the power-off. They need a guest kernel: KATAD_GUEST_KERNEL or build/guest/vmlinux
(scripts/build-guest.sh --kernel-only); otherwise they are skipped. One VM serves the module."""
import errno
import os
import shutil
import subprocess
import time

import pytest

from agentwire import AgentClient
from conftest import REPO, find_agent

SHARED = "/run/katad/shared"


def guest_kernel():
    for k in (os.environ.get("KATAD_GUEST_KERNEL"), os.path.join(REPO, "build", "guest", "vmlinux")):
        if k and os.path.exists(k):
            return k
    return None


class VM:
    def __init__(self, workdir, rootfs):
        kernel = guest_kernel()
        if not kernel:
            pytest.fail("no guest kernel (set KATAD_GUEST_KERNEL or run make guest)")
        if not shutil.which("qemu-system-x86_64"):
            pytest.fail("qemu-system-x86_64 is not installed")
        self.workdir = workdir
        self.share = os.path.join(workdir, "share")
        os.makedirs(self.share)
        out = os.path.join(workdir, "initrd")
        subprocess.run([os.path.join(REPO, "scripts", "build-guest.sh"), "--initrd-only", "--agent", find_agent(),
                        "--out", out], check=True, capture_output=True)
        self.rootfs_src = rootfs
        self.sock = os.path.join(workdir, "agent.sock")
        self.console = open(os.path.join(workdir, "console.log"), "w+")
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-M", "q35", "-accel", "tcg", "-m", "256", "-smp", "2", "-nographic", "-no-reboot",
             "-kernel", kernel, "-initrd", os.path.join(out, "initrd.img"),
             "-append", "console=ttyS0 quiet panic=-1 katad.debug",
             "-device", "virtio-serial-pci",
             "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % self.sock,
             "-device", "virtserialport,chardev=agent,name=io.katad.agent.0",
             "-fsdev", "local,id=share,path=%s,security_model=none" % self.share,
             "-device", "virtio-9p-pci,fsdev=share,mount_tag=katad"],
            stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("QEMU did not start: %s" % self.console_text())
            time.sleep(0.05)
        self.client = AgentClient(self.sock, timeout=60)
        self.client.do_hello()

    def rootfs(self, cid):
        """Puts a copy of the busybox rootfs where katad would: SHARE/<cid>/rootfs."""
        dst = os.path.join(self.share, cid, "rootfs")
        shutil.copytree(self.rootfs_src, dst, symlinks=True)
        return "%s/%s/rootfs" % (SHARED, cid)

    def console_text(self):
        self.console.flush()
        self.console.seek(0)
        return self.console.read()

    def stop(self):
        self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.console.close()


@pytest.fixture(scope="module")
def vm(tmp_path_factory, rootfs):
    v = VM(str(tmp_path_factory.mktemp("vm")), rootfs)
    try:
        yield v
    finally:
        if os.environ.get("AGENT_TEST_LOG"):
            print(v.console_text())
        v.stop()


def run(c, cid, exec_id, args, **cmd):
    res = c.call("ExecProcess", {"ContainerID": cid, "ExecID": exec_id, "Cmd": dict({"Args": args}, **cmd)})
    c.attach(res["Streams"])
    c.close_stdin(res["Streams"]["Stdin"])
    code = c.call("WaitProcess", {"ContainerID": cid, "ExecID": exec_id})["ExitCode"]
    return code, c.read_all(res["Streams"]["Stdout"]) + c.read_all(res["Streams"]["Stderr"])


def test_vm_container_with_cgroups(vm):
    c = vm.client
    assert c.call("Ping")["Agent"].startswith("katad-agent")
    resources = {"memory": {"limit": 64 << 20}, "pids": {"limit": 64},
                 "cpu": {"shares": 512, "quota": 50000, "period": 100000}}
    res = c.call("CreateContainer", {"ContainerID": "cg", "Config": {"Cmd": {"Args": ["sleep", "1000"]},
                                                                      "Resources": resources},
                                     "Rootfs": vm.rootfs("cg"), "Hostname": "vmhost"})
    c.attach(res["Streams"])
    c.call("StartContainer", {"ContainerID": "cg"})
    code, out = run(c, "cg", "who", ["sh", "-c", "echo $$; hostname; cat /proc/self/cgroup; test -e /run/katad && echo visible || echo hidden"])
    lines = out.decode().split()
    assert code == 0 and int(lines[0]) > 1 and lines[1] == "vmhost" and lines[2] == "0::/katad/cg"
    assert lines[3] == "hidden"  # the VM's /run (and the share with every rootfs) is not visible

    ps = c.call("ListProcesses", {"ContainerID": "cg", "Format": "json", "Args": ["-o", "pid,comm"]})
    assert ps["Processes"] == [["1", "sleep"]]

    stats = c.call("StatsContainer", {"ContainerID": "cg"})
    cg = stats["CgroupStats"]
    assert cg["MemoryStats"]["Usage"]["Limit"] == 64 << 20 and cg["MemoryStats"]["Usage"]["Usage"] > 0
    assert cg["PidsStats"] == {"Current": 1, "Limit": 64}
    assert cg["CPUStats"]["CPUUsage"]["TotalUsage"] > 0
    assert all(n["Name"] != "lo" for n in stats["NetworkStats"])

    c.call("PauseContainer", {"ContainerID": "cg"})
    assert c.call("StatusContainer", {"ContainerID": "cg"})["State"] == "paused"
    assert c.error("ExecProcess", {"ContainerID": "cg", "ExecID": "p", "Cmd": {"Args": ["true"]}}).errno == errno.EBUSY
    assert c.error("PauseContainer", {"ContainerID": "cg"}).errno == errno.EBUSY
    c.call("ResumeContainer", {"ContainerID": "cg"})
    assert c.call("StatusContainer", {"ContainerID": "cg"})["State"] == "running"

    c.call("UpdateContainer", {"ContainerID": "cg", "Resources": {"memory": {"limit": 16 << 20}, "pids": {"limit": -1}}})
    cg = c.call("StatsContainer", {"ContainerID": "cg"})["CgroupStats"]
    assert cg["MemoryStats"]["Usage"]["Limit"] == 16 << 20 and cg["PidsStats"]["Limit"] == 0

    # The OOM killer: an event for the container, and 137 for the victim.
    code, _ = run(c, "cg", "hog", ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"])
    assert code == 137
    c.wait_event(lambda e: e == {"Type": "oom", "ContainerID": "cg"})
    assert c.call("StatsContainer", {"ContainerID": "cg"})["CgroupStats"]["MemoryStats"]["Usage"]["Failcnt"] > 0

    # Signal All reaches every process in the cgroup.
    c.call("ExecProcess", {"ContainerID": "cg", "ExecID": "bg", "Cmd": {"Args": ["sh", "-c", "sleep 999 & wait"]}})
    c.call("SignalProcess", {"ContainerID": "cg", "ExecID": "", "Signal": 9, "All": True})
    assert c.call("WaitProcess", {"ContainerID": "cg", "ExecID": ""})["ExitCode"] == 137
    assert c.call("WaitProcess", {"ContainerID": "cg", "ExecID": "bg"})["ExitCode"] == 137
    c.call("RemoveContainer", {"ContainerID": "cg"})
    assert c.call("ListContainers") == {"Containers": []}


def test_vm_pty_and_readonly(vm):
    c = vm.client
    res = c.call("CreateContainer", {"ContainerID": "ro", "Config": {
        "Cmd": {"Args": ["sh", "-c", "stty size; touch /x 2>/dev/null; echo rc=$?"], "Interactive": True},
        "ReadonlyRootfs": True}, "Rootfs": vm.rootfs("ro")})
    c.attach(res["Streams"])
    c.call("WinsizeProcess", {"ContainerID": "ro", "ExecID": "", "Height": 33, "Width": 99})
    c.call("StartContainer", {"ContainerID": "ro"})
    assert c.call("WaitProcess", {"ContainerID": "ro", "ExecID": ""})["ExitCode"] == 0
    assert c.read_all(res["Streams"]["Stdout"]).split() == [b"33", b"99", b"rc=1"]
    c.call("RemoveContainer", {"ContainerID": "ro"})


def test_vm_reconnect(vm):
    c = vm.client
    c.close()
    vm.client = c2 = AgentClient(vm.sock, timeout=60)
    c2.do_hello()
    assert c2.call("Ping")["Version"] == 1


def test_vm_shutdown(vm):
    assert vm.client.call("Shutdown") == {}
    assert vm.proc.wait(30) == 0
    assert "katad-agent: Powering off" in vm.console_text()
