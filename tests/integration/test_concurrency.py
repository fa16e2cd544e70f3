"""Operations on different sandboxes overlap; operations on one sandbox are serialised.

No timing thresholds: every assertion is about the order in which requests complete. A slow
sandbox boot (mock boot delay, 2 s) is the long operation the others race against."""

import json
import subprocess
import threading

import pytest

from conftest import (assert_error, container_cfg, containers_by_id, sandbox_cfg, state_of,
                      wait_until)

SLOW = {"io.katad.mock.boot_delay_ms": "2000"}


def history(k, sid):
    """The events katad kept for sandbox sid, oldest first (the stream is cut after a second)."""
    out = subprocess.run(["curl", "-sN", "--max-time", "1", "--unix-socket", str(k.sock),
                          f"http://katad/v1/events?sandbox={sid}&since=2000-01-01T00:00:00Z"],
                         capture_output=True, text=True, timeout=30).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


class Recorder:
    """Records the order in which concurrent operations complete."""

    def __init__(self):
        self.lock = threading.Lock()
        self.order = []
        self.results = {}
        self.threads = []

    def done(self, name, result):
        with self.lock:
            self.order.append(name)
            self.results[name] = result

    def run(self, name, fn):
        def body():
            try:
                res = fn()
            except BaseException as e:  # recorded, re-raised in the test by the caller
                res = e
            self.done(name, res)
        t = threading.Thread(target=body, name=name, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def join(self, timeout=30):
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), f"operation {t.name} did not complete within {timeout} s"
        for name, res in self.results.items():
            if isinstance(res, BaseException):
                raise AssertionError(f"operation {name} raised {res!r}") from res


def count_requests(k, line):
    """How many times katad logged the arrival of a request (debug log: 'METHOD PATH (uid N)')."""
    return sum(1 for ln in k.log_text().splitlines() if line in ln and "(uid " in ln
               and "->" not in ln)


def wait_arrived(k, line, n):
    """Blocks until katad has logged the n-th arrival of a request (so it is in flight)."""
    wait_until(lambda: count_requests(k, line) >= n, timeout=10,
               what=f"katad to receive request #{n} {line!r}")


@pytest.mark.timeout(60)
def test_other_sandboxes_not_blocked_by_a_boot(katad):
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("B", [container_cfg("b1")]), expect=201)
    arrived = count_requests(k, "POST /v1/sandboxes ")
    rec = Recorder()
    rec.run("create A", lambda: k.api("POST", "/v1/sandboxes",
                                      sandbox_cfg("A", [container_cfg("a1")], annotations=SLOW)))
    wait_arrived(k, "POST /v1/sandboxes ", arrived + 1)

    # while A boots: a list, and an exec + wait in B
    lst = k.ok("GET", "/v1/sandboxes", expect=200)
    rec.done("list", lst)
    p = k.exec("B", "b1", ["sh", "-c", "sleep 0.1; exit 5"])
    code = k.wait("B", "b1", p["Token"])
    rec.done("exec+wait B", code)
    st = k.ok("POST", "/v1/sandboxes/B/pause", expect=200)
    rec.done("pause B", st)
    k.ok("POST", "/v1/sandboxes/B/resume", expect=200)
    rec.join()

    assert rec.order == ["list", "exec+wait B", "pause B", "create A"], rec.order
    assert code == 5
    # a sandbox being created is hidden from the list (docs/architecture.md)
    assert [s["ID"] for s in lst] == ["B"], lst
    r = rec.results["create A"]
    assert r.status == 201, r
    assert state_of(r.body) == "ready"
    assert state_of(k.sandbox("A")) == "ready"


@pytest.mark.timeout(60)
def test_operations_on_one_sandbox_are_serialised(katad):
    k = katad()
    rec = Recorder()
    rec.run("create", lambda: k.api("POST", "/v1/sandboxes",
                                    sandbox_cfg("A", [container_cfg("a1")], annotations=SLOW)))
    wait_arrived(k, "POST /v1/sandboxes ", 1)
    # the start arrives while the create is still booting the VM: it waits, then succeeds
    rec.run("start", lambda: k.api("POST", "/v1/sandboxes/A/start"))
    wait_arrived(k, "POST /v1/sandboxes/A/start", 1)
    # then an exec, arriving after the start
    rec.run("exec", lambda: k.api("POST", "/v1/sandboxes/A/containers/a1/processes",
                                  {"Args": ["exit", "3"]}))
    wait_arrived(k, "POST /v1/sandboxes/A/containers/a1/processes", 1)
    # and a second create with the same id: refused (its id is taken, whether katad answers at
    # once or after the first create)
    rec.run("create again", lambda: k.api("POST", "/v1/sandboxes", sandbox_cfg("A")))
    rec.join()

    # The clients see responses in whatever order the wire delivers them; the order in which katad
    # carried the operations out is the order of their events, emitted under the sandbox's lock.
    types = [e["Type"] for e in history(k, "A")
             if e["Type"] in ("sandbox.create", "sandbox.start", "process.exec")]
    assert types == ["sandbox.create", "sandbox.start", "process.exec"], (types, rec.order)
    assert rec.results["create"].status == 201, rec.results["create"]
    start = rec.results["start"]
    assert start.status == 200, start
    assert state_of(start.body) == "running"
    assert state_of(containers_by_id(start.body)["a1"]) == "running"
    ex = rec.results["exec"]
    assert ex.status == 201, ex
    assert k.wait("A", "a1", ex.body["Token"]) == 3
    assert_error(rec.results["create again"], 409, "already_exists")
    assert state_of(k.sandbox("A")) == "running"


@pytest.mark.timeout(60)
def test_concurrent_creates_of_different_sandboxes_overlap(katad):
    """Two slow creates on different sandboxes: a third, fast request on a third sandbox finishes
    before both, and both slow ones succeed."""
    k = katad()
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("C"), expect=201)
    rec = Recorder()
    for sid in ("A1", "A2"):
        rec.run(sid, lambda sid=sid: k.api("POST", "/v1/sandboxes",
                                           sandbox_cfg(sid, [container_cfg("x")],
                                                       annotations=SLOW)))
    wait_arrived(k, "POST /v1/sandboxes ", 3)
    rec.done("patch C", k.ok("PATCH", "/v1/sandboxes/C/annotations", {"k": "v"}, expect=200))
    rec.join()
    assert rec.order[0] == "patch C", rec.order
    assert rec.results["A1"].status == 201 and rec.results["A2"].status == 201
    assert {s["ID"] for s in k.ok("GET", "/v1/sandboxes", expect=200)} == {"A1", "A2", "C"}


@pytest.mark.timeout(60)
def test_client_disconnect_mid_create(katad):
    k = katad(boot_delay_ms=2000)
    body = sandbox_cfg("A", [container_cfg("a1"), container_cfg("a2")],
                       annotations={"who": "gone"})
    import json
    p = subprocess.run(["curl", "-s", "--unix-socket", k.sock, "--max-time", "0.5",
                        "-H", "Content-Type: application/json", "-X", "POST",
                        "--data-binary", json.dumps(body), "http://localhost/v1/sandboxes"],
                       capture_output=True, timeout=15)
    assert p.returncode == 28, f"curl should have timed out mid-create: rc={p.returncode} " \
        f"{p.stdout!r}"

    # A request on A is serialised after the abandoned create; a create of another sandbox
    # takes a whole boot delay, so once both answered A's boot time has passed.
    r = k.api("PATCH", "/v1/sandboxes/A/annotations", {})
    assert r.status in (200, 404), r
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("later"), expect=201, timeout=20)

    def check_whole_or_nothing():
        ids = [s["ID"] for s in k.ok("GET", "/v1/sandboxes", expect=200)]
        g = k.api("GET", "/v1/sandboxes/A")
        if "A" not in ids:
            assert_error(g, 404, "sandbox_not_found")
            assert_error(k.api("GET", "/v1/sandboxes/A/containers"), 404, "sandbox_not_found")
            return None
        assert g.status == 200, g
        st = g.body
        assert state_of(st) == "ready", st
        assert sorted(containers_by_id(st)) == ["a1", "a2"], st
        assert all(state_of(c) == "ready" for c in st["ContainersStatus"]), st
        assert st["Annotations"].get("who") == "gone"
        return st

    first = check_whole_or_nothing()
    # the store agrees after a restart
    k.restart()
    again = check_whole_or_nothing()
    assert again == first
    if first is not None:
        # a finished sandbox is a usable one
        st = k.ok("POST", "/v1/sandboxes/A/start", expect=200, timeout=20)
        assert all(state_of(c) == "running" for c in st["ContainersStatus"]), st
        k.ok("POST", "/v1/sandboxes/A/stop?force=true", expect=200)
        k.ok("DELETE", "/v1/sandboxes/A", expect=204)
    else:
        # nothing left: the id is free
        k.ok("POST", "/v1/sandboxes", sandbox_cfg("A"), expect=201, timeout=20)
        k.ok("DELETE", "/v1/sandboxes/A", expect=204)


@pytest.mark.timeout(60)
def test_a_blocked_wait_does_not_hold_the_sandbox(katad):
    """A wait blocks until its process exits, without stopping other operations on the sandbox:
    the kill that ends the process answers first, then the wait."""
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true",
         sandbox_cfg("W", [container_cfg("c"), container_cfg("d")]), expect=201)
    tok = k.exec("W", "c", ["worker"])["Token"]
    rec = Recorder()
    rec.run("wait exec", lambda: k.wait("W", "c", tok))
    rec.run("wait container", lambda: k.wait("W", "c"))
    wait_arrived(k, f"POST /v1/sandboxes/W/containers/c/processes/{tok}/wait", 1)
    wait_arrived(k, "POST /v1/sandboxes/W/containers/c/processes/c/wait", 1)
    # other operations on the same sandbox go through while both waits block
    rec.done("exec d", k.wait("W", "d", k.exec("W", "d", ["exit", "1"])["Token"]))
    rec.done("pause d", k.ok("POST", "/v1/sandboxes/W/containers/d/pause", expect=200))
    rec.done("stats", k.ok("GET", "/v1/sandboxes/W/stats", expect=200))
    assert rec.order == ["exec d", "pause d", "stats"], rec.order
    rec.done("signal sent", None)  # recorded before the request: the wait may answer first
    k.ok("POST", f"/v1/sandboxes/W/containers/c/processes/{tok}/signal", {"Signal": 15},
         expect=204)
    wait_until(lambda: "wait exec" in rec.order, timeout=10, what="the exec's wait to return")
    assert "wait container" not in rec.order, rec.order
    rec.done("kill sent", None)
    k.ok("POST", "/v1/sandboxes/W/containers/c/kill", {"Signal": 9}, expect=204)
    rec.join()
    assert rec.order == ["exec d", "pause d", "stats", "signal sent", "wait exec", "kill sent",
                         "wait container"], rec.order
    assert rec.results["wait exec"] == 143
    assert rec.results["wait container"] == 137
