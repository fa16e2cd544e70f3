"""The QEMU backend against real VMs under TCG (see conftest.py): boot to the agent's HELLO,
QMP pause/resume, stats, graceful and forced stop leaving nothing behind, re-attaching from the
stored handle in a new process (a restarted katad), refusing a recycled pid, and noticing a
QEMU killed with SIGKILL within 2 s."""

import json
import os
import signal
import time

import pytest

ENOENT, ESRCH, EOPNOTSUPP = 2, 3, 95


def ops(lines, name):
    return [line for line in lines if line["op"] == name]


def one(lines, name):
    found = ops(lines, name)
    assert len(found) == 1, f"{name}: {lines}"
    return found[0]


def assert_ok(lines, *names):
    for name in names:
        for op in ops(lines, name):
            assert op["r"] == 0, f"{name} failed: {op}; all: {lines}"


def assert_nothing_left(handle):
    from conftest import pid_running
    assert not pid_running(handle["Pid"], handle["PidStartTime"]), "QEMU still runs"
    for key in ("QMPSocket", "AgentSocket", "PidFile"):
        assert not os.path.exists(handle[key]), f"{handle[key]} left behind"


def test_boot_pause_resume_stop_leaves_nothing(qemu):
    rd = qemu.run_dir("vm1")
    lines = qemu.run([f"boot:vm1:{rd}", "ping", "probe9p", "pause", "stats", "resume", "stats", "ping",
                      "hotplug", "template", "stop"])
    assert_ok(lines, "new", "boot", "ping", "probe9p", "pause", "resume", "stats", "stop")
    boot = one(lines, "boot")
    handle = boot["handle"]
    print(f"boot to agent HELLO: {boot['ms']} ms")
    assert handle["Hypervisor"] == "qemu" and handle["RunDir"] == rd
    assert handle["Accelerator"] == "tcg"
    assert handle["RootPorts"] == ["rp1", "rp2", "rp3", "rp4"]
    assert handle["VCPUs"] == 1 and handle["MemoryMiB"] == 256
    assert ops(lines, "ping")[0]["result"]["Version"] == 1
    paused, running = ops(lines, "stats")
    assert paused["stats"]["Status"] == "paused" and running["stats"]["Status"] == "running"
    s = running["stats"]
    assert s["Pid"] == handle["Pid"] and s["VCPUs"] == 1 and s["MemoryBytes"] == 256 << 20
    assert s["Host"]["RssBytes"] > 0 and s["Host"]["PssBytes"] > 0 and s["Host"]["CpuTimeNs"] > 0
    assert one(lines, "hotplug")["r"] == -EOPNOTSUPP
    tpl = one(lines, "template")
    assert tpl["r"] == -EOPNOTSUPP and tpl["boot_from_template"] == -EOPNOTSUPP
    # The 9p share carried the guest's file to the host.
    with open(os.path.join(rd, "shared", "from-guest")) as f:
        assert f.read() == "from-guest\n"
    assert_nothing_left(handle)
    # A graceful stop asked the guest (the test init logs the Shutdown RPC).
    with open(handle["ConsoleLog"], errors="replace") as f:
        assert "test-init: shutting down" in f.read()
    assert one(lines, "done")["exits"] == 0, "a requested stop is not an unexpected exit"


def test_force_stop_leaves_nothing(qemu):
    rd = qemu.run_dir("vm2")
    lines = qemu.run([f"boot:vm2:{rd}", "stop-force"])
    assert_ok(lines, "boot", "stop-force")
    handle = one(lines, "boot")["handle"]
    assert_nothing_left(handle)
    with open(handle["ConsoleLog"], errors="replace") as f:
        assert "test-init: shutting down" not in f.read()


def test_attach_after_restart(qemu, tmp_path):
    rd = qemu.run_dir("vm3")
    hf = str(tmp_path / "handle.json")
    # "katad" 1 boots and releases: the VM keeps running without it.
    lines = qemu.run([f"boot:vm3:{rd}", f"save:{hf}", "release"])
    assert_ok(lines, "boot", "save")
    handle = json.load(open(hf))
    from conftest import pid_running
    assert pid_running(handle["Pid"], handle["PidStartTime"])
    assert os.path.exists(handle["QMPSocket"]) and os.path.exists(handle["AgentSocket"])
    # "katad" 2 attaches, uses the VM and leaves it paused.
    lines = qemu.run([f"attach:vm3:{hf}", "ping", "pause", "release"])
    assert_ok(lines, "attach", "ping", "pause")
    # "katad" 3 attaches to the paused VM (its agent cannot answer until resumed) and stops it.
    lines = qemu.run([f"attach:vm3:{hf}", "stats", "resume", "ping", "stop"])
    assert_ok(lines, "attach", "stats", "resume", "ping", "stop")
    assert one(lines, "stats")["stats"]["Status"] == "paused"
    assert_nothing_left(handle)
    # "katad" 4 finds it gone.
    lines = qemu.run([f"attach:vm3:{hf}"])
    assert one(lines, "attach")["r"] == -ESRCH


def test_katad_killed_keeps_vm(qemu, tmp_path):
    rd = qemu.run_dir("vm4")
    hf = str(tmp_path / "handle.json")
    h = qemu.spawn([f"boot:vm4:{rd}", f"save:{hf}", "sleep:600000"])
    assert h.until("boot")["r"] == 0
    assert h.until("save")["r"] == 0
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait(timeout=10)
    handle = json.load(open(hf))
    time.sleep(0.5)
    from conftest import pid_running
    assert pid_running(handle["Pid"], handle["PidStartTime"]), "QEMU died with katad"
    lines = qemu.run([f"attach:vm4:{hf}", "ping", "stop"])
    assert_ok(lines, "attach", "ping", "stop")
    assert_nothing_left(handle)


def test_attach_refuses_other_processes(qemu, tmp_path):
    rd = qemu.run_dir("vm5")
    hf = str(tmp_path / "handle.json")
    lines = qemu.run([f"boot:vm5:{rd}", f"save:{hf}", "release"])
    assert_ok(lines, "boot", "save")
    handle = json.load(open(hf))
    # The same pid with another start time is a recycled pid.
    recycled = dict(handle, PidStartTime=handle["PidStartTime"] + 1)
    (tmp_path / "recycled.json").write_text(json.dumps(recycled))
    # A live process that is not QEMU (this test) with its true start time.
    with open(f"/proc/{os.getpid()}/stat") as f:
        data = f.read()
    mine = dict(handle, Pid=os.getpid(), PidStartTime=int(data[data.rindex(")") + 2:].split()[19]))
    (tmp_path / "mine.json").write_text(json.dumps(mine))
    # The right QEMU under another VM's name.
    lines = qemu.run([f"attach:vm5:{tmp_path / 'recycled.json'}", f"attach:vm5:{tmp_path / 'mine.json'}",
                      f"attach:other:{hf}", f"attach:vm5:{hf}", "stop-force"])
    results = [op["r"] for op in ops(lines, "attach")]
    assert results == [-ESRCH, -ESRCH, -ESRCH, 0], lines
    assert_ok(lines, "stop-force")
    assert_nothing_left(handle)


def test_kill9_detected_within_2s(qemu):
    rd = qemu.run_dir("vm6")
    h = qemu.spawn([f"boot:vm6:{rd}", "wait-exit:20", "stop"])
    boot = h.until("boot")
    assert boot["r"] == 0
    handle = boot["handle"]
    h.until("waiting")
    killed_ns = time.monotonic_ns()
    os.kill(handle["Pid"], signal.SIGKILL)
    waited = h.until("wait-exit", timeout=30)
    assert waited["r"] == 0, waited
    assert waited["vm_id"] == "vm6" and waited["exits"] == 1
    delay_ms = (waited["exit_ns"] - killed_ns) / 1e6
    print(f"kill -9 noticed after {delay_ms:.1f} ms")
    assert delay_ms < 2000
    # Stopping a VM that died by itself cleans up without reporting it again.
    lines = h.finish()
    assert one(lines, "stop")["r"] == 0
    assert one(lines, "done")["exits"] == 1
    assert_nothing_left(handle)


def test_boot_failures_leave_nothing(qemu, tmp_path):
    # A kernel QEMU cannot load: QEMU exits during start-up.
    bad = tmp_path / "not-a-kernel"
    bad.write_bytes(b"\x7fELF garbage" * 100)
    rd = qemu.run_dir("vm7")
    lines = qemu.run([f"boot:vm7:{rd}"], options=["--kernel", str(bad)])
    assert one(lines, "boot")["r"] < 0
    # A guest that panics (no init): QEMU exits, the agent never answers.
    rd2 = qemu.run_dir("vm8")
    lines = qemu.run([f"boot:vm8:{rd2}"], options=["--params", "rdinit=/nonexistent init=/nonexistent",
                                                    "--boot-timeout-ms", "60000"])
    assert one(lines, "boot")["r"] < 0
    for d in (rd, rd2):
        for name in ("qmp.sock", "agent.sock", "qemu.pid"):
            assert not os.path.exists(os.path.join(d, name)), f"{d}/{name} left behind"
    assert qemu.cleanup() == [], "a QEMU outlived its failed boot"


def test_boot_times_out_when_agent_is_silent(qemu):
    # The guest runs but nobody answers on the agent port: boot gives up at its deadline.
    rd = qemu.run_dir("vm9")
    start = time.monotonic()
    lines = qemu.run([f"boot:vm9:{rd}"], options=["--params", "katad.test=silent", "--boot-timeout-ms", "1500"])
    assert one(lines, "boot")["r"] < 0
    assert time.monotonic() - start < 30
    assert qemu.cleanup() == []


def test_long_run_dir(qemu):
    # Deeper than a Unix socket path may be: QEMU binds relative names, katad goes through /proc/self/fd.
    rd = qemu.run_dir("d" * 60 + "/" + "e" * 60 + "/vm10")
    assert len(rd + "/agent.sock") > 108
    lines = qemu.run([f"boot:vm10:{rd}", "ping", "stop"])
    assert_ok(lines, "boot", "ping", "stop")
    assert_nothing_left(one(lines, "boot")["handle"])


@pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm: auto means TCG without probing")
def test_accel_auto_probes_kvm(qemu):
    rd = qemu.run_dir("vm11")
    start = time.monotonic()
    lines = qemu.run([f"boot:vm11:{rd}", "ping", "stop-force"], options=["--accel", "auto"])
    assert_ok(lines, "boot", "ping", "stop-force")
    accel = one(lines, "boot")["handle"]["Accelerator"]
    assert accel in ("kvm", "tcg")
    log = qemu.harness_log()
    assert "KVM" in log, log
    print(f"accel=auto chose {accel} in {time.monotonic() - start:.1f} s (boot included)")
