"""katad restarts (graceful and kill -9) with every store backend and finds everything back."""

import copy
import os
import datetime
import threading
import time

import pytest

from conftest import (assert_error, container_cfg, containers_by_id, sandbox_cfg, state_of,
                      wait_until)

STORES = ["sqlite", "fs", "leveldb"]
SHORT_S = 1.5  # the "short" container's process exits after this long


def parse_time(s):
    # RFC 3339 with up to nanoseconds → aware datetime (microsecond precision is enough here)
    m = s.rstrip("Z")
    frac = ""
    if "." in m:
        m, frac = m.split(".", 1)
    dt = datetime.datetime.strptime(m, "%Y-%m-%dT%H:%M:%S")
    if frac:
        dt += datetime.timedelta(microseconds=int((frac + "000000")[:6]))
    return dt.replace(tzinfo=datetime.timezone.utc)


def setup_two_sandboxes(k):
    k.ok("POST", "/v1/sandboxes?start=true",
         sandbox_cfg("run", [container_cfg("long"),
                             container_cfg("short", "sh", "-c", f"sleep {SHORT_S}; exit 7"),
                             container_cfg("frozen")],
                     annotations={"role": "running"}), expect=201)
    k.ok("POST", "/v1/sandboxes/run/containers/frozen/pause", expect=200)
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("idle", [container_cfg("c")],
                                               annotations={"role": "ready"}), expect=201)
    p = k.exec("run", "long", ["worker"])
    return p["Token"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kill9", [False, True], ids=["graceful", "kill9"])
@pytest.mark.parametrize("store", STORES)
def test_restart_keeps_everything(katad, store, kill9):
    k = katad(store=store)
    info = k.ok("GET", "/v1", expect=200)
    assert info["Store"] == store
    worker = setup_two_sandboxes(k)
    before = k.snapshot()
    short = containers_by_id(before[[s["ID"] for s in before].index("run")])["short"]
    assert state_of(short) == "running", short  # it must exit while katad is down
    exit_at = parse_time(short["StartTime"]) + datetime.timedelta(seconds=SHORT_S)

    if kill9:
        k.kill9()
    else:
        k.stop()
    # stay down until the short container's process is due to have exited
    while datetime.datetime.now(datetime.timezone.utc) < exit_at + datetime.timedelta(seconds=0.3):
        time.sleep(0.05)
    k.start()

    after = k.snapshot()
    expected = copy.deepcopy(before)
    for s in expected:
        for c in s["ContainersStatus"]:
            if s["ID"] == "run" and c["ID"] == "short":
                c["State"] = {"state": "stopped"}
                c["ExitCode"] = 7
    assert after == expected
    assert k.ok("GET", "/v1", expect=200)["Store"] == store

    # the running sandbox still works: exec + wait, the old exec'd process, the container's own
    assert k.wait("run", "short") == 7
    p = k.exec("run", "long", ["sh", "-c", "exit 12"])
    assert k.wait("run", "long", p["Token"]) == 12
    k.ok("POST", f"/v1/sandboxes/run/containers/long/processes/{worker}/signal", {"Signal": 15},
         expect=204)
    assert k.wait("run", "long", worker) == 143
    assert k.ok("GET", "/v1/sandboxes/run/annotations", expect=200)["role"] == "running"
    # the paused container is still paused, and can be resumed
    assert state_of(k.container("run", "frozen")) == "paused"
    assert state_of(k.ok("POST", "/v1/sandboxes/run/containers/frozen/resume", expect=200)) \
        == "running"
    k.ok("POST", "/v1/sandboxes/run/containers/frozen/kill", {"Signal": 15}, expect=204)
    assert k.wait("run", "frozen") == 143
    # the ready one can still be started
    st = k.ok("POST", "/v1/sandboxes/idle/start", expect=200)
    assert state_of(st) == "running"
    assert state_of(containers_by_id(st)["c"]) == "running"
    # and the state after those changes survives one more restart
    before2 = k.snapshot()
    k.restart(kill9=kill9)
    assert k.snapshot() == before2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("store", STORES)
def test_kill9_mid_create_leaves_no_half_sandbox(katad, store):
    k = katad(store=store)
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("keep", [container_cfg("c")]), expect=201)
    before = k.snapshot()
    result = {}

    def create():
        result["r"] = k.api("POST", "/v1/sandboxes",
                            sandbox_cfg("half", [container_cfg("h1"), container_cfg("h2")],
                                        annotations={"io.katad.mock.boot_delay_ms": "3000"}),
                            check=False)

    t = threading.Thread(target=create, daemon=True)
    t.start()
    wait_until(lambda: sum(1 for ln in k.log_text().splitlines()
                           if "POST /v1/sandboxes (uid" in ln) >= 2,
               timeout=10, what="the slow create to reach katad")
    k.kill9()
    t.join(15)
    assert not t.is_alive()
    assert result["r"].status == 0, f"the create answered although katad was killed: " \
        f"{result['r']!r}"
    k.start()

    ids = [s["ID"] for s in k.ok("GET", "/v1/sandboxes", expect=200)]
    g = k.api("GET", "/v1/sandboxes/half")
    if "half" not in ids:
        assert_error(g, 404, "sandbox_not_found")
        assert k.snapshot() == before
        st = k.ok("POST", "/v1/sandboxes?start=true",
                  sandbox_cfg("half", [container_cfg("h1")]), expect=201)
        assert state_of(st) == "running"
    else:
        # kept: then it must be whole and usable
        assert g.status == 200, g
        assert sorted(containers_by_id(g.body)) == ["h1", "h2"], g.body
        st = k.ok("POST", "/v1/sandboxes/half/start", expect=200, timeout=20)
        assert state_of(st) == "running"
        assert all(state_of(c) == "running" for c in st["ContainersStatus"]), st
    assert [s for s in k.snapshot() if s["ID"] == "keep"] == before
    # and a graceful restart after that changes nothing
    snap = k.snapshot()
    k.restart()
    assert k.snapshot() == snap


@pytest.mark.timeout(60)
@pytest.mark.parametrize("store", STORES)
def test_sigterm_mid_create(katad, store):
    """SIGTERM while a create boots: katad exits 0, and the sandbox is whole or absent after."""
    k = katad(store=store)
    result = {}

    def create():
        result["r"] = k.api("POST", "/v1/sandboxes",
                            sandbox_cfg("mid", [container_cfg("m1")],
                                        annotations={"io.katad.mock.boot_delay_ms": "2000"}),
                            check=False, timeout=30)

    t = threading.Thread(target=create, daemon=True)
    t.start()
    wait_until(lambda: any("POST /v1/sandboxes (uid" in ln for ln in k.log_text().splitlines()),
               timeout=10, what="the slow create to reach katad")
    k.stop()  # SIGTERM: must exit 0 within 10 s
    t.join(15)
    assert not t.is_alive()
    r = result["r"]
    assert r.status in (0, 201, 503), r
    if r.status == 503:
        assert r.body["code"] == "unavailable", r.body
    k.start()
    g = k.api("GET", "/v1/sandboxes/mid")
    if r.status == 201:
        assert g.status == 200 and state_of(g.body) == "ready", g
    if g.status == 404:
        assert_error(g, 404, "sandbox_not_found")
        assert k.ok("GET", "/v1/sandboxes", expect=200) == []
    else:
        assert g.status == 200, g
        assert [c["ID"] for c in g.body["ContainersStatus"]] == ["m1"]
        st = k.ok("POST", "/v1/sandboxes/mid/start", expect=200, timeout=20)
        assert state_of(st) == "running"


@pytest.mark.timeout(60)
def test_vm_gone_while_katad_was_down(katad):
    """A VM that disappeared while katad was down: its sandbox comes back stopped, with a
    sandbox.vm-exited event; the other sandbox is untouched and the stopped one can start again."""
    from conftest import EventStream
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("gone", [container_cfg("c")]),
         expect=201)
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("stays", [container_cfg("c")]),
         expect=201)
    since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    k.kill9()
    vm_state = os.path.join(k.state_dir, "mock", "gone.json")  # docs/mock.md
    assert os.path.exists(vm_state), os.listdir(os.path.join(k.state_dir, "mock"))
    os.unlink(vm_state)
    k.start()
    st = k.sandbox("gone")
    assert state_of(st) == "stopped", st
    assert all(state_of(c) == "stopped" for c in st["ContainersStatus"]), st
    assert state_of(k.sandbox("stays")) == "running"
    assert k.wait("stays", "c", k.exec("stays", "c", ["exit", "1"])["Token"]) == 1
    with EventStream(k.sock, f"sandbox=gone&since={since}") as es:
        got = es.collect_until(lambda e: e["Type"] == "sandbox.vm-exited", timeout=10)
    assert got[-1]["SandboxID"] == "gone" and "UID" not in got[-1], got[-1]
    st = k.ok("POST", "/v1/sandboxes/gone/start", expect=200, timeout=20)
    assert state_of(st) == "running"
    assert state_of(st["ContainersStatus"][0]) == "running"
