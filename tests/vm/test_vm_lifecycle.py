"""Sandboxes on real VMs: pause/resume of the whole VM, katad killed and restarted under running
VMs, a QEMU killed behind katad's back, and stop + delete leaving nothing on the host."""
import os
import signal
import time

from conftest import EventStream, mounts_under, qemu_procs, rfc3339_now, state_of, wait_until


def sandbox_dir(kd, sid):
    return os.path.join(kd.run_dir, "sandboxes", sid)


def host_lines(path):
    try:
        with open(path) as f:
            return f.read().count("\n")
    except FileNotFoundError:
        return 0


def vm_pid(kd, sid):
    pid = kd.ok("GET", f"/v1/sandboxes/{sid}/stats", expect=200)["VM"]["Pid"]
    assert pid > 0
    return pid


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_pause_resume_sandbox(kd, fresh_sandbox, rootfs):
    host_file = os.path.join(rootfs, "tmp", f"count-sbpause-{os.getpid()}")
    if os.path.exists(host_file):
        os.unlink(host_file)
    loop = f"while :; do echo x >> /tmp/{os.path.basename(host_file)}; sleep 0.1; done"
    sb = fresh_sandbox("pause", [("c", ["sh", "-c", loop])])
    s = sb.id
    try:
        wait_until(lambda: host_lines(host_file) >= 3, timeout=15, what="the counter to run")
        st = kd.ok("POST", f"/v1/sandboxes/{s}/pause", expect=200)
        assert state_of(st) == "paused", st
        st = kd.sandbox(s)
        assert state_of(st) == "paused", st
        time.sleep(0.2)  # a 9p request QEMU had in hand at the stop settles first
        n1 = host_lines(host_file)
        r = kd.api("POST", f"/v1/sandboxes/{s}/containers/c/processes", {"Args": ["true"]})
        assert r.status == 409, f"exec in a paused sandbox: {r.status} {r.body!r}"
        assert r.body["code"] == "wrong_state", r.body
        time.sleep(1.0)
        n2 = host_lines(host_file)
        assert n2 == n1, f"the counter advanced while the sandbox was paused: {n1} -> {n2}"
        st = kd.ok("POST", f"/v1/sandboxes/{s}/resume", expect=200)
        assert state_of(st) == "running", st
        assert state_of(kd.sandbox(s)) == "running"
        assert kd.run(s, "c", ["true"]) == 0
        assert kd.sh(s, "c", "exit 5") == 5
        wait_until(lambda: host_lines(host_file) > n2, timeout=15, what="the counter to go on")
    finally:
        if os.path.exists(host_file):
            os.unlink(host_file)


def test_katad_kill9_and_restart_keeps_sandboxes(own_katad, rootfs):
    k = own_katad
    sids = ["rs-a", "rs-b"]
    pids = {}
    for sid in sids:
        k.run_sandbox(sid, [{"ID": "c", "RootFs": rootfs, "Cmd": {"Args": ["sleep", "100050"]}}])
        assert k.sh(sid, "c", "exit 0") == 0
        pids[sid] = vm_pid(k, sid)
    k.kill9()
    for sid in sids:
        assert pid_alive(pids[sid]), f"the QEMU of {sid} died with katad"
    k.start()
    for sid in sids:
        st = k.sandbox(sid)
        assert state_of(st) == "running", st
        assert state_of(k.container(sid, "c")) == "running"
    for sid in sids:
        assert k.sh(sid, "c", "exit 0") == 0
        assert k.sh(sid, "c", "exit 6") == 6
        assert k.sh(sid, "c", 'test "$(tr "\\0" " " < /proc/1/cmdline)" = "sleep 100050 "') == 0
        st = k.ok("GET", f"/v1/sandboxes/{sid}/stats", expect=200)
        assert st["VM"]["Pid"] == pids[sid], (st["VM"], pids[sid])
        assert "c" in st["ContainerStats"], st
        cs = k.container_stats(sid, "c")
        assert cs["CgroupStats"]["CPUStats"]["CPUUsage"]["TotalUsage"] > 0, cs
    # still fully operable: a new container after the restart
    k.add_container("rs-a", {"ID": "d", "RootFs": rootfs, "Cmd": {"Args": ["sh", "-c", "exit 4"]}})
    assert k.wait("rs-a", "d") == 4
    for sid in sids:
        k.ok("DELETE", f"/v1/sandboxes/{sid}?force=true", expect=204)
        assert not pid_alive(pids[sid])
    assert qemu_procs(k.run_dir) == []
    assert mounts_under(k.run_dir) == []


def test_qemu_killed_is_noticed(kd, fresh_sandbox):
    since = rfc3339_now(-1)
    sb = fresh_sandbox("qkill", [("c", ["sleep", "100060"])])
    s = sb.id
    pid = vm_pid(kd, s)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read()
    assert b"qemu" in argv and sandbox_dir(kd, s).encode() in argv, \
        f"VM.Pid {pid} is not this sandbox's QEMU: {argv[:200]!r}"
    with EventStream(kd.sock, f"sandbox={s}&since={since}") as ev:
        os.kill(pid, signal.SIGKILL)
        e = ev.wait_for(lambda e: e.get("Type") == "sandbox.vm-exited", timeout=10,
                        what="sandbox.vm-exited")
        assert e.get("SandboxID") == s, e
        ev.validate_seen()
    wait_until(lambda: state_of(kd.sandbox(s)) == "stopped", timeout=10,
               what="the sandbox to be stopped")
    st = kd.sandbox(s)
    for c in st["ContainersStatus"]:
        assert state_of(c) == "stopped", st
    r = kd.api("POST", f"/v1/sandboxes/{s}/containers/c/processes", {"Args": ["true"]})
    assert r.status in (409, 503), f"exec after the VM died: {r.status} {r.body!r}"
    kd.ok("DELETE", f"/v1/sandboxes/{s}", expect=204)
    assert not os.path.exists(sandbox_dir(kd, s))
    assert mounts_under(sandbox_dir(kd, s)) == []


def test_stop_and_delete_leave_nothing(kd, fresh_sandbox, rootfs):
    from conftest import SESSION_DIR
    bind = os.path.join(SESSION_DIR, "bind-leak")
    os.makedirs(bind, exist_ok=True)
    sb = fresh_sandbox("clean", [
        ("c", ["sleep", "100070"], {"Mounts": [{"Source": bind, "Destination": "/data",
                                                "Type": "bind"}]}),
        ("d", ["sleep", "100071"])])
    s = sb.id
    d = sandbox_dir(kd, s)
    assert len(qemu_procs(d)) == 1, qemu_procs(d)
    assert mounts_under(d), "expected the container mounts under the sandbox's run dir"
    pid = vm_pid(kd, s)
    # timeout=1: the containers' sleeps (PID 1 of their namespaces) ignore SIGTERM
    st = kd.ok("POST", f"/v1/sandboxes/{s}/stop?timeout=1", expect=200)
    assert state_of(st) == "stopped", st
    assert not pid_alive(pid), "QEMU still runs after stop"
    assert qemu_procs(d) == []
    kd.ok("DELETE", f"/v1/sandboxes/{s}", expect=204)
    assert kd.api("GET", f"/v1/sandboxes/{s}").status == 404
    assert qemu_procs(d) == []
    assert mounts_under(d) == [], mounts_under(d)
    assert not os.path.exists(d), f"{d} still exists: {os.listdir(d)}"
    # the host directories lent to the sandbox are untouched
    assert os.path.isdir(bind) and os.path.isfile(os.path.join(rootfs, "bin", "busybox"))


def test_create_start_release_stop_start_again(kd, rootfs):
    """CreateSandbox without start, StartSandbox, Release (the VM keeps running, the next
    operation re-attaches), StopSandbox, StartSandbox again (a new VM, the containers recreated)."""
    from conftest import unique_sid
    s = unique_sid("life")
    try:
        cfg = {"ID": s, "Hostname": "life",
               "Containers": [{"ID": "c", "RootFs": rootfs, "Cmd": {"Args": ["sleep", "100080"]}}]}
        st = kd.ok("POST", "/v1/sandboxes", cfg, expect=201)
        assert state_of(st) == "ready", st
        assert s in [x["ID"] for x in kd.ok("GET", "/v1/sandboxes", expect=200)]
        st = kd.ok("POST", f"/v1/sandboxes/{s}/start", expect=200)
        assert state_of(st) == "running", st
        cs = kd.ok("GET", f"/v1/sandboxes/{s}/containers", expect=200)
        assert [(c["ID"], state_of(c)) for c in cs] == [("c", "running")], cs
        assert kd.sh(s, "c", 'test "$(hostname)" = life') == 0
        pid1 = vm_pid(kd, s)

        st = kd.ok("POST", f"/v1/sandboxes/{s}/release", expect=200)
        assert pid_alive(pid1), "release stopped the VM"
        assert kd.sh(s, "c", "exit 2") == 2
        assert vm_pid(kd, s) == pid1

        st = kd.ok("POST", f"/v1/sandboxes/{s}/stop?timeout=1", expect=200)
        assert state_of(st) == "stopped", st
        assert all(state_of(c) == "stopped" for c in st["ContainersStatus"]), st
        assert not pid_alive(pid1)
        r = kd.api("POST", f"/v1/sandboxes/{s}/containers/c/processes", {"Args": ["true"]})
        assert r.status == 409, f"exec in a stopped sandbox: {r.status} {r.body!r}"

        st = kd.ok("POST", f"/v1/sandboxes/{s}/start", expect=200)
        assert state_of(st) == "running", st
        pid2 = vm_pid(kd, s)
        assert pid2 != pid1 and pid_alive(pid2)
        assert state_of(kd.container(s, "c")) == "running"
        assert kd.sh(s, "c", 'test "$(tr "\\0" " " < /proc/1/cmdline)" = "sleep 100080 "') == 0
        assert len(qemu_procs(sandbox_dir(kd, s))) == 1
    finally:
        r = kd.api("DELETE", f"/v1/sandboxes/{s}?force=true", check=False)
        assert r.status in (204, 404), r
    assert qemu_procs(sandbox_dir(kd, s)) == []
    assert not os.path.exists(sandbox_dir(kd, s))
