"""Containers and processes on a real VM: one sandbox (module fixture `sb`) holds every container
of this file; each test adds the containers it needs (unique ids) and removes them.

Exec output is not retrievable over the API (IO streams are 501), so what a process sees inside
the guest is turned into its exit code (`sh -c 'test ... || exit N'`), or read from the host side of
a file on the shared rootfs, or from the container's logs (its own process only)."""
import os
import time

import pytest

from conftest import EventStream, Sandbox, kernel_release, rfc3339_now, state_of, unique_sid, \
    validate, wait_until

HOSTNAME = "vmtest-host"


@pytest.fixture(scope="module")
def sb(kd, rootfs):
    """A running sandbox with two long-running containers: main (sleep 100001), peer (sleep 100002)."""
    sid = unique_sid("shared")
    s = Sandbox(kd, sid, rootfs)
    kd.run_sandbox(sid, [s.cfg("main", ["sleep", "100001"]), s.cfg("peer", ["sleep", "100002"])],
                   Hostname=HOSTNAME)
    yield s
    r = kd.api("DELETE", f"/v1/sandboxes/{sid}?force=true", check=False)
    assert r.status in (204, 404), f"DELETE {sid}: {r.status} {r.body!r}\n" + kd.log_tail(30)


def remove(kd, sid, cid):
    kd.ok("DELETE", f"/v1/sandboxes/{sid}/containers/{cid}?force=true", expect=204)
    assert kd.api("GET", f"/v1/sandboxes/{sid}/containers/{cid}").status == 404


def ps(kd, sid, cid, args, fmt="json"):
    from urllib.parse import quote
    r = kd.api("GET", f"/v1/sandboxes/{sid}/containers/{cid}/ps?format={fmt}&args={quote(args)}")
    assert r.status == 200, r.body
    return r


def ps_args(kd, sid, cid):
    """{container pid: args} of the container's processes (zombies show as their comm)."""
    body = ps(kd, sid, cid, "-o pid,args").body
    return {int(p[0]): p[1] for p in body["Processes"]}


def host_lines(path):
    try:
        with open(path) as f:
            return f.read().count("\n")
    except FileNotFoundError:
        return 0


def read_logs_until(kd, sid, cid, expect, timeout=10.0):
    """The container's logs once they equal expect (output may trail the exit by a little: the
    deadline is a liveness bound); returns the last text either way."""
    deadline = time.monotonic() + timeout
    while True:
        text = kd.logs(sid, cid)
        if text == expect or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def check_logs_spec(kd, sid, cid):
    """The logs route must be in api/openapi.yaml and its response valid there."""
    path = f"/v1/sandboxes/{sid}/containers/{cid}/logs"
    r = kd.api("GET", path, check=False)
    validate("GET", path, r.status, r.body, r.content_type)


# ================================================================ logs, kernel, namespaces

def test_uname_container_logs_equal_guest_kernel_release(kd, sb):
    release = kernel_release()
    # What the guest runs, independently of the logs feature: exit 0 only if uname -r matches.
    assert kd.sh(sb.id, "main", f'test "$(uname -r)" = "{release}"') == 0, \
        f"the guest's uname -r is not {release}"
    kd.add_container(sb.id, sb.cfg("uname", ["uname", "-r"]))
    assert kd.wait(sb.id, "uname") == 0
    st = kd.container(sb.id, "uname")
    assert state_of(st) == "stopped" and st["ExitCode"] == 0, st
    assert read_logs_until(kd, sb.id, "uname", release + "\n") == release + "\n"
    check_logs_spec(kd, sb.id, "uname")
    remove(kd, sb.id, "uname")


def test_logs_hold_stdout_and_stderr_of_the_container_process_only(kd, sb):
    kd.add_container(sb.id, sb.cfg("talk", ["sh", "-c", "echo to-out; echo to-err >&2; "
                                            "sleep 100003"]))
    # exec'd processes are not the container's own process: their output is not in its logs
    assert kd.sh(sb.id, "talk", "echo exec-noise; echo exec-noise >&2; exit 0") == 0
    wait_until(lambda: sorted(kd.logs(sb.id, "talk").splitlines()) == ["to-err", "to-out"],
               timeout=10, what="both lines in the logs")
    text = kd.logs(sb.id, "talk")
    assert sorted(text.splitlines()) == ["to-err", "to-out"] and text.endswith("\n"), repr(text)
    assert "exec-noise" not in text
    kd.ok("POST", f"/v1/sandboxes/{sb.id}/containers/talk/stop?force=true", expect=200)
    assert kd.wait(sb.id, "talk") == 137
    # the logs stay readable after the container stopped
    assert sorted(kd.logs(sb.id, "talk").splitlines()) == ["to-err", "to-out"]
    remove(kd, sb.id, "talk")


def test_two_containers_own_pid_namespaces_same_hostname(kd, sb):
    own = {"main": "100001", "peer": "100002"}
    for cid, mine in own.items():
        other = own["peer" if cid == "main" else "main"]
        # PID 1 of the container is its own process
        assert kd.sh(sb.id, cid, f'test "$(tr "\\0" " " < /proc/1/cmdline)" = "sleep {mine} "') \
            == 0, f"{cid}: /proc/1 is not its own sleep {mine}"
        # the other container's process is not visible (the pattern is built at run time, so the
        # script's own command line does not match it)
        script = (f'n={other[:-1]}; n="sleep $n{other[-1]}"; for f in /proc/[0-9]*/cmdline; do '
                  'case "$(tr "\\0" " " < $f)" in "$n "*) exit 9;; esac; done; exit 0')
        assert kd.sh(sb.id, cid, script) == 0, f"{cid} sees the process of the other container"
        # the exec'd shell itself is not PID 1
        assert kd.sh(sb.id, cid, 'test $$ -gt 1') == 0
        # same hostname: the sandbox's
        assert kd.sh(sb.id, cid, f'test "$(hostname)" = {HOSTNAME}') == 0, f"{cid}: hostname"
        # ps of the container (PID column in its namespace): only its own process
        assert ps_args(kd, sb.id, cid) == {1: f"sleep {mine}"}
    # two different processes of the VM
    pids = {kd.container(sb.id, c)["PID"] for c in own}
    assert len(pids) == 2 and 0 not in pids, pids


# ================================================================ exec

def test_exec_env_user_cwd_exit_codes(kd, sb):
    s, c = sb.id, "main"
    # exit codes
    assert kd.sh(s, c, "exit 0") == 0
    assert kd.sh(s, c, "exit 3") == 3
    assert kd.run(s, c, ["false"]) == 1
    assert kd.sh(s, c, "kill -KILL $$") == 128 + 9
    assert kd.sh(s, c, "kill -USR1 $$") == 128 + 10
    # environment
    env = [{"Var": "FOO", "Value": "bar baz"}, {"Var": "EMPTY", "Value": ""}]
    assert kd.sh(s, c, 'test "$FOO" = "bar baz" && test "${EMPTY+set}" = set', Envs=env) == 0
    assert kd.sh(s, c, 'test -z "$FOO"') == 0, "an earlier exec's environment leaked"
    assert kd.sh(s, c, 'test -n "$PATH"') == 0
    # user: default root, numeric, numeric with group, by name from the rootfs's /etc/passwd
    ids = 'test "$(id -u)" = {u} || exit 10; test "$(id -g)" = {g} || exit 11; exit 0'
    assert kd.sh(s, c, ids.format(u=0, g=0)) == 0
    assert kd.sh(s, c, ids.format(u=1234, g=0), User="1234") == 0
    assert kd.sh(s, c, ids.format(u=1234, g=2345), User="1234:2345") == 0
    assert kd.sh(s, c, ids.format(u=1000, g=1000), User="u") == 0
    assert kd.sh(s, c, ids.format(u=1000, g=50), User="u", PrimaryGroup="staff") == 0
    # a non-root user cannot write where root can
    assert kd.run(s, c, ["touch", "/bin/not-yours"], User="u") != 0
    # working directory
    assert kd.sh(s, c, 'test "$(pwd)" = /tmp', WorkDir="/tmp") == 0
    assert kd.sh(s, c, 'test "$(pwd)" = /etc', WorkDir="/etc") == 0
    # an unknown user or a missing executable is refused (no process)
    r = kd.api("POST", f"/v1/sandboxes/{s}/containers/{c}/processes",
               {"Args": ["true"], "User": "nosuchuser"})
    assert 400 <= r.status < 500, r
    r = kd.api("POST", f"/v1/sandboxes/{s}/containers/{c}/processes", {"Args": ["/no/such/bin"]})
    assert 400 <= r.status < 500, r


def test_signal_process(kd, sb):
    s, c = sb.id, "main"
    p = kd.exec(s, c, ["sleep", "100005"])
    kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/processes/{p['Token']}/signal",
          {"Signal": "SIGUSR1"}, expect=204)
    assert kd.wait(s, c, p["Token"]) == 128 + 10
    p = kd.exec(s, c, ["sleep", "100006"])
    kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/processes/{p['Token']}/signal",
          {"Signal": 15}, expect=204)
    assert kd.wait(s, c, p["Token"]) == 128 + 15
    # the container's own process was not touched
    assert state_of(kd.container(s, c)) == "running"
    r = kd.api("POST", f"/v1/sandboxes/{s}/containers/{c}/processes/nosuchproc/signal",
               {"Signal": 9})
    assert r.status == 404 and r.body["code"] == "process_not_found", r


def test_kill_container_all_reaches_every_process(kd, sb):
    s, c = sb.id, "ka"
    # PID 1 is a shell that reaps; two background sleeps; one exec'd sleep
    kd.add_container(s, sb.cfg(c, ["sh", "-c", "sleep 100011 & sleep 100012 & "
                                   "while :; do wait; sleep 1; done"]))
    p = kd.exec(s, c, ["sleep", "100014"])

    def sleeps():
        return sorted(a for a in ps_args(kd, s, c).values() if a.startswith("sleep 1000"))
    wait_until(lambda: sleeps() == ["sleep 100011", "sleep 100012", "sleep 100014"],
               timeout=10, what="the container's three sleeps")
    # SIGTERM to all: every process but the namespace's init (no handler for TERM: the kernel
    # does not deliver it) dies
    kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/kill", {"Signal": "SIGTERM", "All": True},
          expect=204)
    assert kd.wait(s, c, p["Token"]) == 128 + 15
    wait_until(lambda: sleeps() == [], timeout=10, what="the background sleeps to die")
    assert state_of(kd.container(s, c)) == "running"
    # SIGKILL to all: the container ends
    kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/kill", {"Signal": "SIGKILL", "All": True},
          expect=204)
    assert kd.wait(s, c) == 137
    st = kd.container(s, c)
    assert state_of(st) == "stopped" and st["ExitCode"] == 137, st
    remove(kd, s, c)


def test_stop_sigkills_a_container_ignoring_sigterm(kd, sb):
    s = sb.id
    kd.add_container(s, sb.cfg("noterm", ["sh", "-c", 'trap "" TERM; while :; do sleep 1; done']))
    kd.add_container(s, sb.cfg("term", ["sh", "-c", 'trap "exit 0" TERM; '
                                        'while :; do sleep 0.2; done']))
    st = kd.ok("POST", f"/v1/sandboxes/{s}/containers/noterm/stop?timeout=1", expect=200)
    assert state_of(st) == "stopped", st
    st = kd.container(s, "noterm")
    assert st["ExitCode"] == 137, st
    assert kd.wait(s, "noterm") == 137
    # a container that handles SIGTERM ends by itself before the timeout
    st = kd.ok("POST", f"/v1/sandboxes/{s}/containers/term/stop?timeout=60", expect=200)
    st = kd.container(s, "term")
    assert state_of(st) == "stopped" and st["ExitCode"] == 0, st
    remove(kd, s, "noterm")
    remove(kd, s, "term")


# ================================================================ pause / resume

def test_pause_resume_container(kd, sb):
    s, c = sb.id, "counter"
    host_file = os.path.join(sb.rootfs, "tmp", f"count-{c}-{os.getpid()}")
    guest_file = "/tmp/" + os.path.basename(host_file)
    if os.path.exists(host_file):
        os.unlink(host_file)
    kd.add_container(s, sb.cfg(c, ["sh", "-c", f"while :; do echo x >> {guest_file}; sleep 0.1; done"]))
    try:
        wait_until(lambda: host_lines(host_file) >= 3, timeout=15, what="the counter to run")
        st = kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/pause", expect=200)
        assert state_of(st) == "paused", st
        assert state_of(kd.container(s, c)) == "paused"
        n1 = host_lines(host_file)
        time.sleep(1.5)  # fifteen periods of the loop
        n2 = host_lines(host_file)
        assert n2 == n1, f"the counter advanced while paused: {n1} -> {n2}"
        # the other containers of the sandbox are not paused
        assert kd.sh(s, "main", "exit 0") == 0
        st = kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/resume", expect=200)
        assert state_of(st) == "running", st
        wait_until(lambda: host_lines(host_file) > n2, timeout=15, what="the counter to go on")
        # the container itself sees it too
        assert kd.sh(s, c, f'test "$(wc -l < {guest_file})" -gt {n2}') == 0
    finally:
        remove(kd, s, c)
        if os.path.exists(host_file):
            os.unlink(host_file)


# ================================================================ stats, resources, OOM

def test_stats_cpu_and_memory_move(kd, sb):
    s, c = sb.id, "stats"
    kd.add_container(s, sb.cfg(c, ["sleep", "100021"]))

    def cpu():
        return kd.container_stats(s, c)["CgroupStats"]["CPUStats"]["CPUUsage"]["TotalUsage"]

    def mem():
        return kd.container_stats(s, c)["CgroupStats"]["MemoryStats"]["Usage"]["Usage"]

    c0 = cpu()
    busy = kd.exec(s, c, ["sh", "-c", "while :; do :; done"])
    wait_until(lambda: cpu() >= c0 + 300_000_000, timeout=30,
               what="CPU TotalUsage to grow by 0.3 s of CPU during a busy loop")
    kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/processes/{busy['Token']}/signal",
          {"Signal": "SIGKILL"}, expect=204)
    assert kd.wait(s, c, busy["Token"]) == 137

    m0 = mem()
    assert kd.run(s, c, ["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1048576", "count=16"]) == 0
    m1 = mem()
    assert m1 >= m0 + 15 * 2**20, f"memory usage {m0} -> {m1} after 16 MiB in /dev/shm"
    assert kd.run(s, c, ["rm", "/dev/shm/fill"]) == 0
    m2 = mem()
    assert m2 <= m1 - 8 * 2**20, f"memory usage {m1} -> {m2} after removing the 16 MiB"

    # the sandbox's stats: the container, and the VM
    st = kd.ok("GET", f"/v1/sandboxes/{s}/stats", expect=200)
    assert c in st["ContainerStats"] and "main" in st["ContainerStats"], sorted(st["ContainerStats"])
    assert st["VM"]["Pid"] > 0 and st["VM"]["MemoryBytes"] > 0, st["VM"]
    remove(kd, s, c)


def test_memory_limit_update_then_oom_kill_and_event(kd, sb):
    s, c = sb.id, "oom"
    kd.add_container(s, sb.cfg(c, ["sleep", "100022"]))
    since = rfc3339_now(-1)
    body = kd.ok("PUT", f"/v1/sandboxes/{s}/containers/{c}/resources",
                 {"memory": {"limit": 33554432}}, expect=200)
    assert body["ID"] == c and body["Resources"]["memory"]["limit"] == 33554432, body
    lim = kd.container_stats(s, c)["CgroupStats"]["MemoryStats"]["Usage"]["Limit"]
    assert lim == 33554432, f"the guest's memory.max is {lim}"
    with EventStream(kd.sock, f"sandbox={s}&since={since}") as live:
        hog = kd.exec(s, c, ["sh", "-c", 'x=$(head -c 64000000 /dev/zero | tr "\\0" a); exit 0'])
        assert kd.wait(s, c, hog["Token"], timeout=120) == 137, "the allocation was not OOM-killed"
        ev = live.wait_for(lambda e: e.get("Type") == "container.oom", timeout=15,
                           what="container.oom")
        assert ev.get("SandboxID") == s and ev.get("ContainerID") == c, ev
        live.validate_seen()
    # replayed from history for a late subscriber with since
    with EventStream(kd.sock, f"sandbox={s}&since={since}") as late:
        ev = late.wait_for(lambda e: e.get("Type") == "container.oom", timeout=10,
                           what="container.oom (replayed)")
        assert ev.get("ContainerID") == c, ev
    # the container's own small process survived
    assert state_of(kd.container(s, c)) == "running"
    assert kd.sh(s, c, "exit 0") == 0
    remove(kd, s, c)


# ================================================================ ps

def test_ps_json_and_table(kd, sb):
    s, c = sb.id, "main"
    p = kd.exec(s, c, ["sleep", "100030"])
    try:
        body = wait_until(lambda: (lambda b: b if len(b["Processes"]) == 2 else None)(
            ps(kd, s, c, "-o pid,comm").body), timeout=10, what="two processes in ps")
        assert body["Titles"] == ["PID", "COMMAND"], body
        assert sorted(body["Processes"])[0] == ["1", "sleep"], body
        assert [r[1] for r in body["Processes"]] == ["sleep", "sleep"], body
        assert all(int(r[0]) > 1 for r in sorted(body["Processes"])[1:]), body
        assert sorted(ps_args(kd, s, c).values()) == ["sleep 100001", "sleep 100030"]
        r = ps(kd, s, c, "-o pid,comm", fmt="table")
        assert r.content_type.startswith("text/plain"), r.content_type
        rows = [line.split() for line in r.text.splitlines() if line.strip()]
        assert rows[0] == ["PID", "COMMAND"], r.text
        assert sorted(rows[1:]) == sorted(body["Processes"]), r.text
        # default arguments (-ef)
        d = ps(kd, s, c, "-ef").body
        assert "PID" in d["Titles"] and len(d["Processes"]) == 2, d
    finally:
        kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/processes/{p['Token']}/signal",
              {"Signal": "SIGKILL"}, expect=204)
        assert kd.wait(s, c, p["Token"]) == 137


# ================================================================ rootfs and mounts

def test_readonly_rootfs_with_tmpfs(kd, sb):
    s, c = sb.id, "ro"
    marker = f"rofile-{os.getpid()}"
    kd.add_container(s, sb.cfg(c, ["sleep", "100040"], ReadonlyRootfs=True,
                               Mounts=[{"Source": "tmpfs", "Destination": "/tmp", "Type": "tmpfs",
                                        "Options": ["rw", "nosuid", "nodev"]}]))
    assert kd.run(s, c, ["touch", f"/{marker}"]) != 0, "a write into / of a read-only rootfs worked"
    assert kd.run(s, c, ["touch", f"/etc/{marker}"]) != 0
    assert not os.path.exists(os.path.join(sb.rootfs, marker))
    assert kd.sh(s, c, f'echo hi > /tmp/{marker} && test "$(cat /tmp/{marker})" = hi') == 0
    assert not os.path.exists(os.path.join(sb.rootfs, "tmp", marker)), "/tmp is not a tmpfs"
    # a container on the same rootfs without ReadonlyRootfs can write
    assert kd.run(s, "main", ["touch", f"/{marker}"]) == 0
    assert os.path.exists(os.path.join(sb.rootfs, marker))
    os.unlink(os.path.join(sb.rootfs, marker))
    remove(kd, s, c)


def test_bind_mounts_rw_and_ro(kd, sb):
    from conftest import SESSION_DIR
    s, c = sb.id, "binds"
    rw = os.path.join(SESSION_DIR, "bind-rw")
    ro = os.path.join(SESSION_DIR, "bind-ro")
    for d, m in ((rw, "marker-rw"), (ro, "marker-ro")):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "marker"), "w") as f:
            f.write(m + "\n")
    kd.add_container(s, sb.cfg(c, ["sleep", "100041"], Mounts=[
        {"Source": rw, "Destination": "/data", "Type": "bind", "Options": ["rbind", "rw"]},
        {"Source": ro, "Destination": "/ro", "Type": "bind", "Options": ["rbind"], "ReadOnly": True},
        {"Source": ro, "Destination": "/ro2", "Type": "bind", "Options": ["rbind", "ro"]},
    ]))
    assert kd.sh(s, c, 'test "$(cat /data/marker)" = marker-rw') == 0
    assert kd.sh(s, c, 'echo from-guest > /data/written') == 0
    with open(os.path.join(rw, "written")) as f:
        assert f.read() == "from-guest\n"
    for d in ("/ro", "/ro2"):
        assert kd.sh(s, c, f'test "$(cat {d}/marker)" = marker-ro') == 0, d
        assert kd.run(s, c, ["touch", f"{d}/new"]) != 0, f"{d}: a read-only bind was writable"
        assert kd.sh(s, c, f"echo x >> {d}/marker") != 0, d
    assert sorted(os.listdir(ro)) == ["marker"]
    with open(os.path.join(ro, "marker")) as f:
        assert f.read() == "marker-ro\n"
    remove(kd, s, c)


def test_winsize_of_an_interactive_exec(kd, sb):
    s, c = sb.id, "main"
    # the process ends by itself only once its terminal has the size the API set
    p = kd.exec(s, c, ["sh", "-c", 'while [ "$(stty size)" != "33 111" ]; do sleep 0.1; done'],
                Interactive=True)
    kd.ok("POST", f"/v1/sandboxes/{s}/containers/{c}/processes/{p['Token']}/winsize",
          {"Height": 33, "Width": 111}, expect=204)
    assert kd.wait(s, c, p["Token"], timeout=30) == 0
