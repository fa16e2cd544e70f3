"""The Unix socket: mode, group, stale files, exclusivity, socket activation, shutdown."""

import grp
import os
import shutil
import socket
import stat
import subprocess

import pytest

from conftest import Katad, container_cfg, sandbox_cfg, state_of, _short_tmpdir

ACTIVATE = "/usr/bin/systemd-socket-activate"


def sock_stat(path):
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), f"{path} is not a socket"
    return st


def test_socket_mode_0660_default_group(katad):
    k = katad()
    st = sock_stat(k.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)


@pytest.mark.parametrize("group", ["nogroup", "katad-it"])
def test_socket_group(katad, group):
    if group == "katad-it":
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True, timeout=30)
    gid = grp.getgrnam(group).gr_gid
    assert gid != os.getgid()
    k = katad(socket_group=group)
    st = sock_stat(k.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert st.st_gid == gid, f"socket group {st.st_gid}, expected {group} ({gid})"
    assert st.st_uid == os.getuid()
    assert k.ping()
    # still so after a restart (the old socket is replaced, not reused with other rights)
    k.restart()
    st = sock_stat(k.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid


def refuses_to_start(cmd, attempts=3, timeout=5):
    """Runs cmd several times (its failure path is racy): each run must exit non-zero, promptly."""
    for n in range(1, attempts + 1):
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"attempt {n}: katad neither served nor exited within {timeout} s "
                        f"(stderr: {e.stderr!r})")
        assert p.returncode != 0, f"attempt {n}: katad started (exit {p.returncode})"
        assert p.stderr, f"attempt {n}: katad said nothing about why it refused"


def test_unknown_socket_group_refused(katad):
    k = katad(socket_group="no-such-group-xyz", start=False)
    refuses_to_start(k.cmdline())
    assert not k.ping()


def test_stale_socket_is_replaced(katad):
    k = katad(start=False)
    os.makedirs(os.path.dirname(k.sock), exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(k.sock)
    s.close()  # the file stays: a stale socket nobody listens on
    assert stat.S_ISSOCK(os.stat(k.sock).st_mode)
    k.start()
    assert k.ok("GET", "/", expect=200)["Name"] == "katad"
    assert stat.S_IMODE(os.stat(k.sock).st_mode) == 0o660
    # and after kill -9 (katad could not clean up) it is replaced again
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("s"), expect=201)
    k.kill9()
    assert os.path.exists(k.sock)
    k.start()
    assert state_of(k.sandbox("s")) == "ready"


def test_second_katad_on_same_socket_refuses(katad):
    k = katad()
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("first"), expect=201)
    other = _short_tmpdir()
    try:
        cmd = [k.cmdline()[0], "--socket", k.sock, "--state-dir", os.path.join(other, "state"),
               "--run-dir", os.path.join(other, "run"), "--hypervisor", "mock"]
        refuses_to_start(cmd, attempts=5)
    finally:
        shutil.rmtree(other, ignore_errors=True)
    # the first one is still serving, on the same socket file
    assert k.running()
    assert sock_stat(k.sock)
    assert [s["ID"] for s in k.ok("GET", "/v1/sandboxes", expect=200)] == ["first"]


def test_socket_activation(katad):
    assert os.access(ACTIVATE, os.X_OK), f"{ACTIVATE} missing (package systemd)"
    root = _short_tmpdir()
    sock = os.path.join(root, "katad.sock")
    k = katad(wrapper=[ACTIVATE, "-l", sock], socket_arg=False, start=False)
    k.sock = sock
    k.start()
    assert k.ok("GET", "/", expect=200)["Name"] == "katad"
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("act", [container_cfg("c")]),
         expect=201)
    tok = k.exec("act", "c", ["exit", "6"])["Token"]
    assert k.wait("act", "c", tok) == 6
    k.stop()  # SIGTERM → exit 0

    # a later katad (plain, on the same path) finds the state
    plain = Katad(k.root)
    plain.sock = sock
    plain.runs = k.runs
    try:
        plain.start()
        st = plain.sandbox("act")
        assert state_of(st) == "running"
        assert plain.wait("act", "c", plain.exec("act", "c", ["exit", "2"])["Token"]) == 2
        plain.stop()
    finally:
        plain.terminate()
        shutil.rmtree(root, ignore_errors=True)


def test_sigterm_exits_0_and_state_survives(katad):
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("s", [container_cfg("c")]), expect=201)
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("r"), expect=201)
    before = k.snapshot()
    k.stop()
    k.start()
    assert k.snapshot() == before
    # SIGINT is a clean shutdown too
    k.proc.send_signal(2)
    assert k.proc.wait(timeout=10) == 0
    k.start()
    assert k.snapshot() == before


def test_sigterm_with_a_blocked_wait(katad):
    """A client blocked in a wait does not keep katad from shutting down (exit 0), and the
    process it waited for is still there after the restart."""
    import threading
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("s", [container_cfg("c")]), expect=201)
    tok = k.exec("s", "c", ["worker"])["Token"]
    result = {}

    def waiter():
        result["r"] = k.api("POST", f"/v1/sandboxes/s/containers/c/processes/{tok}/wait",
                            timeout=30, check=False)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    from conftest import wait_until
    wait_until(lambda: any(f"processes/{tok}/wait (uid" in ln
                           for ln in k.log_text().splitlines()),
               timeout=10, what="the wait to reach katad")
    k.stop()  # exit 0 within 10 s despite the blocked wait
    t.join(15)
    assert not t.is_alive()
    r = result["r"]
    assert r.status in (0, 503), f"the wait answered {r!r} although its process never exited"
    k.start()
    k.ok("POST", f"/v1/sandboxes/s/containers/c/processes/{tok}/signal", {"Signal": 2},
         expect=204)
    assert k.wait("s", "c", tok) == 130
