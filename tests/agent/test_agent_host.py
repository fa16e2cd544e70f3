"""Host tests of katad-agent: `katad-agent --listen SOCK --no-cgroups` driven over its socket with
the real wire format (docs/agent-protocol.md). Cgroup features (pause, resume, update, stats
numbers, OOM events) need cgroup v2 and are tested in the VM; here they must answer EOPNOTSUPP
or zeros. Run as root: python3 -m pytest tests/agent (KATAD_AGENT=path/to/katad-agent)."""
import errno
import os
import signal
import socket
import struct
import time

import pytest

from agentwire import CREDIT, DATA, EOF, HELLO, REQUEST, AgentClient, frame
from conftest import descendants, mounts_under


def create(c, rootfs, cid, args, config=None, hostname=None, **cmd):
    cfg = {"Cmd": dict({"Args": args}, **cmd)}
    cfg.update(config or {})
    params = {"SandboxID": "sb", "ContainerID": cid, "Config": cfg, "Rootfs": rootfs}
    if hostname:
        params["Hostname"] = hostname
    res = c.call("CreateContainer", params)
    c.attach(res["Streams"])
    return res


def start_sleeper(c, rootfs, cid="c1", **kw):
    """A running container whose init sleeps; returns its CreateContainer result."""
    res = create(c, rootfs, cid, ["sleep", "1000"], **kw)
    c.call("StartContainer", {"ContainerID": cid})
    return res


def execute(c, cid, exec_id, args, stdin=None, timeout=10, **cmd):
    """Runs a process in the container; returns (exit code, stdout, stderr)."""
    res = c.call("ExecProcess", {"ContainerID": cid, "ExecID": exec_id, "Cmd": dict({"Args": args}, **cmd)})
    streams = res["Streams"]
    c.attach(streams)
    if stdin is not None:
        c.write(streams["Stdin"], stdin)
    c.close_stdin(streams["Stdin"])
    code = c.call("WaitProcess", {"ContainerID": cid, "ExecID": exec_id}, timeout=timeout)["ExitCode"]
    out = c.read_all(streams["Stdout"])
    err = c.read_all(streams["Stderr"]) if "Stderr" in streams else b""
    return code, out, err


def kill_and_remove(c, cid):
    try:
        c.call("SignalProcess", {"ContainerID": cid, "ExecID": "", "Signal": 9, "All": True})
    except Exception:
        pass
    c.call("WaitProcess", {"ContainerID": cid, "ExecID": ""})
    c.call("RemoveContainer", {"ContainerID": cid})


def test_hello_ping(agent):
    c = agent.client()
    assert c.hello["Version"] == 1
    assert c.hello["Agent"].startswith("katad-agent")
    assert c.call("Ping") == {"Version": 1, "Agent": c.hello["Agent"]}
    assert c.call("ListContainers") == {"Containers": []}


def test_container_lifecycle(agent, rootfs):
    c = agent.client()
    res = create(c, rootfs, "web", ["sh", "-c", "echo pid=$$ host=$(hostname); echo err >&2; exit 7"],
                 hostname="myhost")
    assert set(res["Streams"]) == {"Stdin", "Stdout", "Stderr"}
    assert c.call("StatusContainer", {"ContainerID": "web"})["State"] == "created"
    assert c.error("StartContainer", {"ContainerID": "nope"}).errno == errno.ENOENT
    started = c.call("StartContainer", {"ContainerID": "web"})
    assert started["Pid"] == res["Pid"] and "StartTime" in started
    assert c.call("WaitProcess", {"ContainerID": "web", "ExecID": ""})["ExitCode"] == 7
    assert c.read_all(res["Streams"]["Stdout"]) == b"pid=1 host=myhost\n"
    assert c.read_all(res["Streams"]["Stderr"]) == b"err\n"
    ev = c.wait_event(lambda e: e["Type"] == "process-exit")
    assert ev == {"Type": "process-exit", "ContainerID": "web", "ExecID": "", "Pid": res["Pid"], "ExitCode": 7}
    status = c.call("StatusContainer", {"ContainerID": "web"})
    assert status == {"ID": "web", "State": "stopped", "Pid": res["Pid"], "Exited": True, "ExitCode": 7}
    assert c.error("StartContainer", {"ContainerID": "web"}).errno == errno.EBUSY
    # Waiting again still answers: exited processes are kept until the container goes.
    assert c.call("WaitProcess", {"ContainerID": "web", "ExecID": "web"})["ExitCode"] == 7
    assert os.path.exists(os.path.join(agent.state_dir, "containers", "web.json"))
    c.call("RemoveContainer", {"ContainerID": "web"})
    assert not os.path.exists(os.path.join(agent.state_dir, "containers", "web.json"))
    assert c.error("StatusContainer", {"ContainerID": "web"}).errno == errno.ENOENT


def test_exec_env_user_cwd(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    code, out, err = execute(c, "c1", "e1", ["sh", "-c", "echo $FOO; id -u; id -g; pwd; echo $HOME"],
                             Envs=[{"Var": "FOO", "Value": "bar"}], User="1000:1000", WorkDir="/tmp")
    assert (code, out, err) == (0, b"bar\n1000\n1000\n/tmp\n/home/app\n", b"")
    # A user name resolves through the container's /etc/passwd and /etc/group, with its groups.
    code, out, _ = execute(c, "c1", "e2", ["sh", "-c", "id -u; id -g; id -G"], User="app")
    uid, gid, groups = out.decode().splitlines()
    assert code == 0 and (uid, gid) == ("1000", "1000") and "2000" in groups.split()
    code, out, _ = execute(c, "c1", "e3", ["id", "-G"], User="app", PrimaryGroup="extra", SupplementaryGroups=["0"])
    assert code == 0 and sorted(out.split()) == [b"0", b"2000"]
    assert c.error("ExecProcess", {"ContainerID": "c1", "ExecID": "e4",
                                   "Cmd": {"Args": ["id"], "User": "nobody"}}).errno == errno.ENOENT
    # PATH defaults when the request has none; a missing command is ENOENT, as a shell says 127.
    code, out, _ = execute(c, "c1", "e5", ["sh", "-c", "echo $PATH"])
    assert out == b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    e = c.error("ExecProcess", {"ContainerID": "c1", "ExecID": "e6", "Cmd": {"Args": ["no-such-command"]}})
    assert e.errno == errno.ENOENT and "not found" in e.message
    assert c.error("ExecProcess", {"ContainerID": "c1", "ExecID": "e1",
                                   "Cmd": {"Args": ["true"]}}).errno == errno.EEXIST
    kill_and_remove(c, "c1")


def test_wait_exit_codes_and_signals(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    assert execute(c, "c1", "three", ["sh", "-c", "exit 3"])[0] == 3
    for exec_id, sig in (("term", signal.SIGTERM), ("kill", signal.SIGKILL), ("usr1", signal.SIGUSR1)):
        c.call("ExecProcess", {"ContainerID": "c1", "ExecID": exec_id, "Cmd": {"Args": ["sleep", "1000"]}})
        e = c.error("WaitProcess", {"ContainerID": "c1", "ExecID": exec_id, "TimeoutMs": 100})
        assert e.errno == errno.ETIMEDOUT
        c.call("SignalProcess", {"ContainerID": "c1", "ExecID": exec_id, "Signal": int(sig)})
        assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": exec_id})["ExitCode"] == 128 + sig
        ev = c.wait_event(lambda e, x=exec_id: e.get("ExecID") == x)
        assert ev["ExitCode"] == 128 + sig
        assert c.error("SignalProcess", {"ContainerID": "c1", "ExecID": exec_id, "Signal": 15}).errno == errno.ESRCH
    # Signal names are accepted as well as numbers.
    c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "named", "Cmd": {"Args": ["sleep", "1000"]}})
    c.call("SignalProcess", {"ContainerID": "c1", "ExecID": "named", "Signal": "SIGINT"})
    assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "named"})["ExitCode"] == 130
    assert c.error("SignalProcess", {"ContainerID": "c1", "ExecID": "", "Signal": 0}).errno == errno.EINVAL
    kill_and_remove(c, "c1")


def test_fast_exits(agent, rootfs):
    """A command that exits at once may be reaped before the agent reads that it executed."""
    c = agent.client()
    for i in range(10):
        cid = "fast%d" % i
        create(c, rootfs, cid, ["true"])
        assert c.call("StartContainer", {"ContainerID": cid})["Pid"] > 0
        assert c.call("WaitProcess", {"ContainerID": cid, "ExecID": ""})["ExitCode"] == 0
        c.call("RemoveContainer", {"ContainerID": cid})
    start_sleeper(c, rootfs)
    ids = [c.request("ExecProcess", {"ContainerID": "c1", "ExecID": "t%d" % i, "Cmd": {"Args": ["false"]}})
           for i in range(20)]
    for id_ in ids:
        assert "Pid" in c.result(id_)
    for i in range(20):
        assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "t%d" % i})["ExitCode"] == 1
    # At most 128 exited execs are kept per container: the oldest go first.
    for i in range(20, 130):
        c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "t%d" % i, "Cmd": {"Args": ["true"]}})
        c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "t%d" % i})
    assert c.error("WaitProcess", {"ContainerID": "c1", "ExecID": "t0"}).errno == errno.ENOENT
    assert c.error("WaitProcess", {"ContainerID": "c1", "ExecID": "t1"}).errno == errno.ENOENT
    assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "t2"})["ExitCode"] == 1
    kill_and_remove(c, "c1")


def test_signal_all(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "bg", "Cmd": {"Args": ["sh", "-c", "sleep 1000 & wait"]}})
    time.sleep(0.2)
    c.call("SignalProcess", {"ContainerID": "c1", "ExecID": "", "Signal": 9, "All": True})
    assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": ""})["ExitCode"] == 137
    assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "bg"})["ExitCode"] == 137
    assert c.call("StatusContainer", {"ContainerID": "c1"})["State"] == "stopped"
    e = c.error("SignalProcess", {"ContainerID": "c1", "ExecID": "", "Signal": 9, "All": True})
    assert e.errno == errno.ESRCH
    assert c.error("ExecProcess", {"ContainerID": "c1", "ExecID": "late",
                                   "Cmd": {"Args": ["true"]}}).errno == errno.EBUSY
    c.call("RemoveContainer", {"ContainerID": "c1"})
    assert descendants(agent.proc.pid) == []


def test_stdio_through_credits(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    assert execute(c, "c1", "cat", ["cat"], stdin=b"hi\n") == (0, b"hi\n", b"")
    # More than every buffer on the way (pipe, agent, credit window) in both directions.
    payload = os.urandom(3 << 20)
    code, out, _ = execute(c, "c1", "big", ["cat"], stdin=payload, timeout=60)
    assert code == 0 and out == payload
    code, out, _ = execute(c, "c1", "wc", ["wc", "-c"], stdin=payload, timeout=60)
    assert code == 0 and out.strip() == str(len(payload)).encode()
    kill_and_remove(c, "c1")


def test_slow_reader_blocks_only_itself(agent, rootfs):
    c = agent.client(auto_credit=False)
    start_sleeper(c, rootfs)
    # A flood nobody reads: no credit is granted for its stdout.
    res = c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "flood",
                                 "Cmd": {"Args": ["sh", "-c", "yes | head -c 20000000"]}})
    flood = res["Streams"]["Stdout"]
    time.sleep(0.5)
    t0 = time.monotonic()
    assert c.call("Ping")["Version"] == 1
    assert time.monotonic() - t0 < 1
    assert c.error("WaitProcess", {"ContainerID": "c1", "ExecID": "flood", "TimeoutMs": 200}).errno == errno.ETIMEDOUT
    assert len(c.data.get(flood, b"")) == 0  # nothing was sent without credit
    # Another process's streams flow meanwhile.
    res2 = c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "quick", "Cmd": {"Args": ["echo", "quick"]}})
    c.grant(res2["Streams"]["Stdout"], 1000)
    assert c.read_all(res2["Streams"]["Stdout"]) == b"quick\n"
    # Granting credit drains the flood, and only as far as granted.
    c.grant(flood, 1000)
    c.wait_for(lambda: len(c.data.get(flood, b"")) == 1000, what="1000 bytes")
    time.sleep(0.2)
    c.pump(0.1)
    assert len(c.data[flood]) == 1000
    c.auto_credit = True
    c.grant(flood, 1 << 20)
    assert len(c.read_all(flood, timeout=60)) == 20000000
    assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "flood"})["ExitCode"] == 0
    kill_and_remove(c, "c1")


def test_pty_winsize(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    res = c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "tty",
                                 "Cmd": {"Args": ["sh"], "Interactive": True, "Envs": [{"Var": "PS1", "Value": "$ "}]}})
    streams = res["Streams"]
    assert set(streams) == {"Stdin", "Stdout"}
    c.attach(streams)
    c.call("WinsizeProcess", {"ContainerID": "c1", "ExecID": "tty", "Height": 40, "Width": 123})
    c.write(streams["Stdin"], b"stty size; tty; echo $TERM; exit 5\n")
    assert c.call("WaitProcess", {"ContainerID": "c1", "ExecID": "tty"})["ExitCode"] == 5
    out = c.read_all(streams["Stdout"])
    assert b"40 123" in out and b"/dev/pts/0" in out and b"xterm" in out, out
    assert c.error("WinsizeProcess", {"ContainerID": "c1", "ExecID": "tty", "Height": 1, "Width": 1}).errno == errno.ESRCH
    assert c.error("WinsizeProcess", {"ContainerID": "c1", "ExecID": "", "Height": 1, "Width": 1}).errno == errno.ENOTTY
    kill_and_remove(c, "c1")


def test_pty_init(agent, rootfs):
    c = agent.client()
    res = create(c, rootfs, "t", ["sh", "-c", "stty size; stat -c %t /dev/console; tty"], Interactive=True)
    assert set(res["Streams"]) == {"Stdin", "Stdout"}
    c.call("WinsizeProcess", {"ContainerID": "t", "ExecID": "", "Height": 24, "Width": 80})
    c.call("StartContainer", {"ContainerID": "t"})
    assert c.call("WaitProcess", {"ContainerID": "t", "ExecID": ""})["ExitCode"] == 0
    assert c.read_all(res["Streams"]["Stdout"]).split() == [b"24", b"80", b"88", b"/dev/pts/0"]  # 0x88: pts
    c.call("RemoveContainer", {"ContainerID": "t"})


def test_readonly_rootfs_and_mounts(agent, rootfs, tmp_path):
    c = agent.client()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")
    mounts = [
        {"Source": "", "Destination": "/data", "Type": "tmpfs", "Options": ["nosuid", "size=1m", "mode=0700"]},
        {"Source": str(shared), "Destination": "/mnt/shared", "Type": "bind", "Options": ["rbind"], "ReadOnly": True},
        {"Source": str(shared), "Destination": "/mnt/rw", "Type": "bind", "Options": ["bind"]},
    ]
    script = ("touch /x 2>/dev/null; echo root=$?; touch /data/y && echo data=ok; stat -c %a /data; "
              "cat /mnt/shared/hello; touch /mnt/shared/z 2>/dev/null; echo shared=$?; "
              "echo w > /mnt/rw/written && echo rw=ok; echo dev > /dev/null && echo devnull=ok")
    res = create(c, rootfs, "ro", ["sh", "-c", script], config={"ReadonlyRootfs": True, "Mounts": mounts})
    c.call("StartContainer", {"ContainerID": "ro"})
    assert c.call("WaitProcess", {"ContainerID": "ro", "ExecID": ""})["ExitCode"] == 0
    out = c.read_all(res["Streams"]["Stdout"]).decode()
    assert out == "root=1\ndata=ok\n700\nfrom the host\nshared=1\nrw=ok\ndevnull=ok\n", out
    assert (shared / "written").read_text() == "w\n"
    c.call("RemoveContainer", {"ContainerID": "ro"})
    assert mounts_under(rootfs) == [] and mounts_under(str(tmp_path)) == []


def test_devices_and_capabilities(agent, rootfs):
    c = agent.client()
    devices = [{"ContainerPath": "/dev/mynull", "DevType": "c", "Major": 1, "Minor": 3, "FileMode": 0o640,
                "UID": 1000, "GID": 1000}]
    start_sleeper(c, rootfs, config={"DeviceInfos": devices})
    code, out, _ = execute(c, "c1", "dev", ["stat", "-c", "%F %t:%T %a %u:%g", "/dev/mynull"])
    assert out == b"character special file 1:3 640 1000:1000\n"
    code, out, _ = execute(c, "c1", "caps", ["grep", "-E", "^(CapBnd|CapEff|NoNewPrivs)", "/proc/self/status"])
    assert out.split() == [b"NoNewPrivs:", b"0", b"CapEff:", b"00000000a80425fb", b"CapBnd:", b"00000000a80425fb"] or \
        sorted(out.split()) == sorted([b"NoNewPrivs:", b"0", b"CapEff:", b"00000000a80425fb", b"CapBnd:",
                                       b"00000000a80425fb"]), out
    caps = {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"],
            "inheritable": [], "ambient": []}
    code, out, _ = execute(c, "c1", "caps2", ["grep", "-E", "^(CapBnd|NoNewPrivs)", "/proc/self/status"],
                           Capabilities=caps, NoNewPrivileges=True)
    assert sorted(out.split()) == sorted([b"NoNewPrivs:", b"1", b"CapBnd:", b"0000000000000021"]), out
    e = c.error("ExecProcess", {"ContainerID": "c1", "ExecID": "bad",
                                "Cmd": {"Args": ["true"], "Capabilities": {"bounding": ["CAP_NOPE"]}}})
    assert e.errno == errno.EINVAL
    kill_and_remove(c, "c1")


def test_pid_namespace_and_ps(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    code, out, _ = execute(c, "c1", "pid", ["sh", "-c", "echo $$"])
    assert code == 0 and int(out) > 1
    c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "bg", "Cmd": {"Args": ["sleep", "999"], "User": "app"}})
    res = c.call("ListProcesses", {"ContainerID": "c1", "Format": "json", "Args": ["-ef"]})
    assert res["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = {r[7]: r for r in res["Processes"]}
    assert rows["sleep 1000"][:3] == ["root", "1", "0"]
    assert rows["sleep 999"][0] == "app" and int(rows["sleep 999"][1]) > 1
    res = c.call("ListProcesses", {"ContainerID": "c1", "Format": "json", "Args": ["-o", "pid,user,comm,args"]})
    assert res["Titles"] == ["PID", "USER", "COMMAND", "COMMAND"]
    assert ["1", "root", "sleep", "sleep 1000"] in res["Processes"]
    table = c.call("ListProcesses", {"ContainerID": "c1", "Format": "table", "Args": []})["Output"]
    lines = table.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"] and len(lines) == 3
    assert c.error("ListProcesses", {"ContainerID": "c1", "Format": "xml"}).errno == errno.EINVAL
    assert c.error("ListProcesses", {"ContainerID": "c1", "Args": ["-o", "pid,bogus"]}).errno == errno.EINVAL
    assert c.error("ListProcesses", {"ContainerID": "c1", "Args": ["aux"]}).errno == errno.EINVAL
    kill_and_remove(c, "c1")


def test_no_cgroups_answers(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    assert c.error("PauseContainer", {"ContainerID": "c1"}).errno == errno.EOPNOTSUPP
    assert c.error("ResumeContainer", {"ContainerID": "c1"}).errno == errno.EBUSY
    assert c.error("UpdateContainer", {"ContainerID": "c1", "Resources": {"memory": {"limit": 1 << 26}}}).errno == \
        errno.EOPNOTSUPP
    stats = c.call("StatsContainer", {"ContainerID": "c1"})
    cg = stats["CgroupStats"]
    assert set(cg) == {"CPUStats", "MemoryStats", "PidsStats", "BlkioStats"}
    assert set(cg["CPUStats"]["CPUUsage"]) == {"TotalUsage", "PercpuUsage", "UsageInKernelmode", "UsageInUsermode"}
    assert set(cg["CPUStats"]["ThrottlingData"]) == {"Periods", "ThrottledPeriods", "ThrottledTime"}
    assert set(cg["MemoryStats"]["Usage"]) == {"Usage", "MaxUsage", "Failcnt", "Limit"}
    assert cg["PidsStats"] == {"Current": 1, "Limit": 0}
    assert isinstance(stats["NetworkStats"], list)
    assert all(n["Name"] != "lo" and "RxBytes" in n and "TxDropped" in n for n in stats["NetworkStats"])
    kill_and_remove(c, "c1")


def test_remove_leaves_nothing(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "x", "Cmd": {"Args": ["sleep", "1000"]}})
    assert c.error("RemoveContainer", {"ContainerID": "c1"}).errno == errno.EBUSY
    assert len(descendants(agent.proc.pid)) >= 2
    # Created and never started: removable at once, and its waiting init goes with it.
    create(c, rootfs, "idle", ["sleep", "1000"])
    c.call("RemoveContainer", {"ContainerID": "idle"})
    kill_and_remove(c, "c1")
    assert c.call("ListContainers") == {"Containers": []}
    assert descendants(agent.proc.pid) == []
    assert mounts_under(rootfs) == []
    assert os.listdir(os.path.join(agent.state_dir, "containers")) == []
    assert not [e for e in c.events if e.get("ContainerID") == "idle"]


def test_bad_requests(agent, rootfs):
    c = agent.client()
    cases = [
        ("CreateContainer", {"ContainerID": "../x", "Config": {"Cmd": {"Args": ["true"]}}, "Rootfs": rootfs}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": []}}, "Rootfs": rootfs}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": ["true"]}}, "Rootfs": "relative"}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": ["true"]}}, "Rootfs": rootfs + "/../x"}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": ["true"]},
                                                            "Mounts": [{"Destination": "/x/../../etc", "Type": "tmpfs"}]},
                             "Rootfs": rootfs}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": ["true"]},
                                                            "Mounts": [{"Destination": "/x", "Type": "ext4"}]},
                             "Rootfs": rootfs}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": ["true"], "User": "a;b"}}, "Rootfs": rootfs}),
        ("CreateContainer", {"ContainerID": "a", "Config": {"Cmd": {"Args": ["true"], "Envs": [{"Var": "A=B"}]}},
                             "Rootfs": rootfs}),
        ("ExecProcess", {"ContainerID": "a", "ExecID": "", "Cmd": {"Args": ["true"]}}),
        ("WaitProcess", {"ContainerID": 5}),
        ("WinsizeProcess", {"ContainerID": "a", "Height": -1}),
        ("UpdateContainer", {"ContainerID": "a"}),
    ]
    for method, params in cases:
        e = c.error(method, params)
        assert e.errno == errno.EINVAL, (method, params, e)
    assert c.error("Frobnicate", {}).errno == errno.EOPNOTSUPP
    assert c.error("StatusContainer", {"ContainerID": "missing"}).errno == errno.ENOENT
    # A payload that is not JSON is answered, not fatal.
    c.send(REQUEST, 0, 99, b"{not json")
    e = pytest.raises(Exception, c.result, 99).value
    assert e.errno == errno.EINVAL
    create(c, rootfs, "dup", ["true"])
    assert c.error("CreateContainer", {"ContainerID": "dup", "Config": {"Cmd": {"Args": ["true"]}},
                                       "Rootfs": rootfs}).errno == errno.EEXIST
    e = c.error("CreateContainer", {"ContainerID": "norootfs", "Config": {"Cmd": {"Args": ["true"]}},
                                    "Rootfs": rootfs + "-missing"})
    assert e.errno == errno.ENOENT
    c.call("RemoveContainer", {"ContainerID": "dup"})
    assert c.call("ListContainers") == {"Containers": []}


def test_protocol_errors_and_reconnect(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    wait_id = c.request("WaitProcess", {"ContainerID": "c1", "ExecID": ""})
    # A new connection replaces the old one (as a host reconnecting on virtio-serial would).
    c2 = agent.client()
    c.wait_for(lambda: c.closed, what="the old connection to close")
    assert c2.call("ListContainers")["Containers"][0]["State"] == "running"
    # A malformed header ends the connection; the next one works.
    c2.send_raw(struct.pack(">IIB3xI", 10, 0, 42, 0) + b"x" * 10)
    c2.wait_for(lambda: c2.closed, what="the agent to drop the connection")
    # Frames before HELLO are a protocol error too.
    c3 = agent.client(hello=False)
    c3.send(REQUEST, 0, 1, {"Method": "Ping"})
    c3.wait_for(lambda: c3.closed, what="the agent to drop the connection")
    # A HELLO with another version is answered with ours; the host then hangs up.
    c4 = agent.client(hello=False)
    assert c4.do_hello(version=2)["Version"] == 1
    c5 = agent.client()
    assert c5.call("Ping")["Version"] == 1
    # Events of the old connections are not replayed; the new one sees new ones.
    c5.call("SignalProcess", {"ContainerID": "c1", "ExecID": "", "Signal": 9})
    ev = c5.wait_event(lambda e: e["Type"] == "process-exit")
    assert ev["ExitCode"] == 137 and wait_id not in c5.responses
    c5.call("RemoveContainer", {"ContainerID": "c1"})


def test_stdin_credit_is_enforced(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    res = c.call("ExecProcess", {"ContainerID": "c1", "ExecID": "cat", "Cmd": {"Args": ["sleep", "1000"]}})
    stdin = res["Streams"]["Stdin"]
    c.wait_for(lambda: c.stdin_credit.get(stdin) == 65536, what="the initial stdin credit")
    c.send(DATA, stdin, 0, b"x" * 65537)  # one byte over the grant: a protocol error
    c.wait_for(lambda: c.closed, what="the agent to drop the connection")
    c2 = agent.client()
    # The new connection gets stdin credit again for the open stream (minus what is buffered).
    c2.wait_for(lambda: c2.stdin_credit.get(stdin, 0) > 0, what="stdin credit on the new connection")
    kill_and_remove(c2, "c1")


def test_shutdown(agent, rootfs):
    c = agent.client()
    start_sleeper(c, rootfs)
    assert c.call("Shutdown") == {}
    assert agent.proc.wait(10) == 0
    assert descendants(agent.proc.pid) == []
