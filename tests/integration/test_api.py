"""The virtcontainers lifecycle over the REST API, with curl; every answer checked by the spec."""

import pytest

from conftest import (GEN_ID_RE, ID_RE, assert_error, container_cfg, containers_by_id,
                      sandbox_cfg, state_of, wait_until)

ZERO_TIME = "0001-01-01T00:00:00Z"
STUBBORN = ["sh", "-c", "trap '' TERM; sleep infinity"]  # ignores SIGTERM
FOREVER = ["nginx", "-g", "daemon off;"]                  # runs until signalled


def sb(sid):
    return f"/v1/sandboxes/{sid}"


def ct(sid, cid):
    return f"/v1/sandboxes/{sid}/containers/{cid}"


def proc(sid, cid, pid):
    return f"/v1/sandboxes/{sid}/containers/{cid}/processes/{pid}"


def make_running(k, sid="web", containers=None):
    containers = containers or [container_cfg("app", *FOREVER), container_cfg("side", *STUBBORN)]
    k.ok("POST", "/v1/sandboxes", sandbox_cfg(sid, containers), expect=201)
    st = k.ok("POST", sb(sid) + "/start", expect=200)
    assert state_of(st) == "running"
    return st


def cpu_total(stats):
    return stats["CgroupStats"]["CPUStats"]["CPUUsage"]["TotalUsage"]


# ================================================================ daemon

def test_versions_and_info(kd):
    assert kd.ok("GET", "/", expect=200) == {"APIVersions": ["v1"], "Name": "katad"}
    info = kd.ok("GET", "/v1", expect=200)
    assert info["Name"] == "katad" and info["APIVersion"] == "v1"
    assert "mock" in info["Hypervisors"]
    assert info["DefaultHypervisor"] == "mock"
    assert info["Capabilities"] == {"iostream": False, "hotplug": False, "factory": False,
                                    "events": True}


# ================================================================ sandboxes and containers

def test_create_list_status_start(kd):
    cfg = sandbox_cfg("web", [container_cfg("app", *FOREVER), container_cfg("side", *STUBBORN)],
                      annotations={"owner": "alice"}, Hostname="web")
    st = kd.ok("POST", "/v1/sandboxes", cfg, expect=201)
    assert st["ID"] == "web"
    assert state_of(st) == "ready"
    assert st["Hypervisor"] == "mock"
    assert st["Annotations"].get("owner") == "alice"
    assert "CreatedAt" in st
    cs = containers_by_id(st)
    assert sorted(cs) == ["app", "side"]
    for c in cs.values():
        assert state_of(c) == "ready"
        assert c["StartTime"] == ZERO_TIME
        assert "ExitCode" not in c

    lst = kd.ok("GET", "/v1/sandboxes", expect=200)
    assert [s["ID"] for s in lst] == ["web"]
    assert lst[0] == st
    assert kd.sandbox("web") == st
    clist = kd.ok("GET", sb("web") + "/containers", expect=200)
    assert sorted(c["ID"] for c in clist) == ["app", "side"]
    assert kd.container("web", "app") == cs["app"]

    started = kd.ok("POST", sb("web") + "/start", expect=200)
    assert state_of(started) == "running"
    for c in started["ContainersStatus"]:
        assert state_of(c) == "running", c
        assert c["PID"] > 0
        assert c["StartTime"] != ZERO_TIME
    assert started["CreatedAt"] == st["CreatedAt"]
    assert kd.sandbox("web") == started

    # idempotence: start again, start a running container again
    again = kd.ok("POST", sb("web") + "/start", expect=200)
    assert state_of(again) == "running"
    assert again == kd.sandbox("web")
    c_again = kd.ok("POST", ct("web", "app") + "/start", expect=200)
    assert state_of(c_again) == "running"
    assert c_again["PID"] == containers_by_id(started)["app"]["PID"]


def test_run_with_start_true(kd):
    st = kd.ok("POST", "/v1/sandboxes?start=true",
               sandbox_cfg("run1", [container_cfg("c", *FOREVER)]), expect=201)
    assert state_of(st) == "running"
    assert state_of(st["ContainersStatus"][0]) == "running"
    assert state_of(kd.sandbox("run1")) == "running"


def test_generated_ids(kd):
    st = kd.ok("POST", "/v1/sandboxes", {}, expect=201)
    assert GEN_ID_RE.match(st["ID"]), st["ID"]
    st2 = kd.ok("POST", "/v1/sandboxes?start=true", {"Containers": [container_cfg(None, *FOREVER)]},
                expect=201)
    assert GEN_ID_RE.match(st2["ID"]) and st2["ID"] != st["ID"]
    cid = st2["ContainersStatus"][0]["ID"]
    assert GEN_ID_RE.match(cid), cid
    c = kd.ok("POST", sb(st2["ID"]) + "/containers", container_cfg(None, *FOREVER), expect=201)
    assert GEN_ID_RE.match(c["ID"]) and c["ID"] != cid
    p = kd.exec(st2["ID"], cid, ["true"])
    assert ID_RE.match(p["Token"]) and p["Token"] != cid
    ids = {s["ID"] for s in kd.ok("GET", "/v1/sandboxes", expect=200)}
    assert ids == {st["ID"], st2["ID"]}


# ================================================================ processes

def test_exec_and_wait(kd):
    make_running(kd)
    cases = [(["true"], 0), (["false"], 1), (["exit", "7"], 7), (["echo", "hello", "world"], 0),
             (["sh", "-c", "echo a; exit 4"], 4), (["sleep", "0.2"], 0),
             (["sh", "-c", "true; sleep 0.1; exit 42"], 42)]
    for args, code in cases:
        p = kd.exec("web", "app", args, Envs=[{"Var": "FOO", "Value": "bar"},
                                              {"Var": "PATH", "Value": "/bin"}],
                    WorkDir="/tmp", User="0")
        assert ID_RE.match(p["Token"]), p
        assert p["Pid"] > 0
        assert p["StartTime"] != ZERO_TIME
        assert kd.wait("web", "app", p["Token"]) == code, args
        # waiting again on an exited process gives the same answer
        assert kd.wait("web", "app", p["Token"]) == code, args

    # a long-running exec'd process shows in ps with its arguments
    p = kd.exec("web", "app", ["my-daemon", "--flag", "value"],
                Envs=[{"Var": "A", "Value": "b"}])
    ps = kd.ok("GET", ct("web", "app") + "/ps?format=json", expect=200)
    cmd_col = ps["Titles"].index("CMD")
    cmds = [row[cmd_col] for row in ps["Processes"]]
    assert any("my-daemon --flag value" in c for c in cmds), cmds
    # signal it by number, another by name
    kd.ok("POST", proc("web", "app", p["Token"]) + "/signal", {"Signal": 15}, expect=204)
    assert kd.wait("web", "app", p["Token"]) == 143
    p2 = kd.exec("web", "app", ["my-daemon"])
    kd.ok("POST", proc("web", "app", p2["Token"]) + "/signal", {"Signal": "SIGINT"}, expect=204)
    assert kd.wait("web", "app", p2["Token"]) == 130
    p3 = kd.exec("web", "app", ["my-daemon"], Interactive=True, Console="/dev/pts/0")
    kd.ok("POST", proc("web", "app", p3["Token"]) + "/winsize", {"Height": 40, "Width": 120},
          expect=204)
    kd.ok("POST", proc("web", "app", p3["Token"]) + "/signal", {"Signal": "KILL"}, expect=204)
    assert kd.wait("web", "app", p3["Token"]) == 137
    # the container itself is untouched by its exec'd processes' fate
    assert state_of(kd.container("web", "app")) == "running"


@pytest.mark.parametrize("script,code", [
    ("exit 3; exit 4", 3),
    ("true; false", 1),
    ("true && exit 5", 5),
    ("false && exit 5", 1),       # && runs its right side only after a success
    ("sleep 0.1; echo done; exit 300", 44),  # exit statuses are taken modulo 256
])
def test_mock_shell_statements(kd, script, code):
    make_running(kd, containers=[container_cfg("app", *FOREVER)])
    p = kd.exec("web", "app", ["sh", "-c", script])
    assert kd.wait("web", "app", p["Token"]) == code, script


def test_exec_wait_blocks_until_exit(kd):
    """wait returns only once the process has exited: a signal sent after the wait began ends it."""
    import threading
    make_running(kd)
    p = kd.exec("web", "app", ["my-daemon"])
    result = {}

    def waiter():
        result["code"] = kd.wait("web", "app", p["Token"], timeout=20)
        result["state_after"] = "done"

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    t.join(0.5)
    assert t.is_alive(), f"wait returned before the process exited: {result}"
    kd.ok("POST", proc("web", "app", p["Token"]) + "/signal", {"Signal": 9}, expect=204)
    t.join(20)
    assert not t.is_alive(), "wait did not return after the process was killed"
    assert result["code"] == 137


def test_kill_container_by_number_name_and_all(kd):
    make_running(kd, containers=[container_cfg(c, *FOREVER) for c in ("k1", "k2", "k3", "k4")])

    # by number
    kd.ok("POST", ct("web", "k1") + "/kill", {"Signal": 10}, expect=204)
    assert kd.wait("web", "k1") == 138
    c = kd.container("web", "k1")
    assert state_of(c) == "stopped" and c["ExitCode"] == 138

    # by name, with and without SIG
    kd.ok("POST", ct("web", "k2") + "/kill", {"Signal": "SIGUSR2"}, expect=204)
    assert kd.wait("web", "k2") == 140
    kd.ok("POST", ct("web", "k3") + "/kill", {"Signal": "TERM", "All": False}, expect=204)
    assert kd.wait("web", "k3") == 143
    assert kd.container("web", "k3")["ExitCode"] == 143

    # All: every process of the container gets the signal
    e1 = kd.exec("web", "k4", ["worker", "1"])
    e2 = kd.exec("web", "k4", ["worker", "2"])
    kd.ok("POST", ct("web", "k4") + "/kill", {"Signal": "SIGUSR1", "All": True}, expect=204)
    assert kd.wait("web", "k4", e1["Token"]) == 138
    assert kd.wait("web", "k4", e2["Token"]) == 138
    assert kd.wait("web", "k4") == 138
    assert state_of(kd.container("web", "k4")) == "stopped"
    # killing a stopped container's process is not a success
    r = kd.api("POST", ct("web", "k4") + "/kill", {"Signal": 9})
    assert r.status in (404, 409), r


def test_container_exit_kills_other_processes(kd):
    make_running(kd, containers=[container_cfg("main", *FOREVER)])
    e = kd.exec("web", "main", ["worker"])
    # only the container's own process gets the signal...
    kd.ok("POST", ct("web", "main") + "/kill", {"Signal": "SIGTERM", "All": False}, expect=204)
    assert kd.wait("web", "main") == 143
    c = kd.container("web", "main")
    assert state_of(c) == "stopped" and c["ExitCode"] == 143
    # ...and the exec'd process was killed when it exited, as in a PID namespace
    assert kd.wait("web", "main", e["Token"]) == 137


def test_stop_container_graceful_and_force(kd):
    make_running(kd, containers=[container_cfg("plain", *FOREVER),
                                 container_cfg("stubborn", *STUBBORN),
                                 container_cfg("forced", *FOREVER)])
    c = kd.ok("POST", ct("web", "plain") + "/stop", expect=200)
    assert state_of(c) == "stopped" and c["ExitCode"] == 143

    # SIGTERM is ignored: katad must SIGKILL it after the timeout
    c = kd.ok("POST", ct("web", "stubborn") + "/stop?timeout=1", expect=200, timeout=20)
    assert state_of(c) == "stopped"
    assert c["ExitCode"] == 137
    assert kd.container("web", "stubborn")["ExitCode"] == 137
    assert kd.wait("web", "stubborn") == 137

    c = kd.ok("POST", ct("web", "forced") + "/stop?force=true", expect=200)
    assert state_of(c) == "stopped" and c["ExitCode"] == 137

    # idempotent: stop of a stopped container answers 200 with the same status
    again = kd.ok("POST", ct("web", "plain") + "/stop", expect=200)
    assert again == kd.container("web", "plain")
    assert state_of(again) == "stopped" and again["ExitCode"] == 143
    # a stopped container cannot be started, paused or resumed
    for action in ("start", "pause", "resume"):
        assert_error(kd.api("POST", ct("web", "plain") + "/" + action), 409, "wrong_state")
    # the sandbox itself is still running
    assert state_of(kd.sandbox("web")) == "running"


def test_stop_sandbox_graceful_force_and_restart(kd):
    make_running(kd)  # app (SIGTERM ends it), side (ignores SIGTERM)
    st = kd.ok("POST", sb("web") + "/stop?timeout=1", expect=200, timeout=25)
    assert state_of(st) == "stopped"
    cs = containers_by_id(st)
    assert all(state_of(c) == "stopped" for c in cs.values()), cs
    assert cs["app"]["ExitCode"] == 143
    assert cs["side"]["ExitCode"] == 137
    again = kd.ok("POST", sb("web") + "/stop", expect=200)
    assert state_of(again) == "stopped"
    assert again == kd.sandbox("web")

    # stopped→running: boots the VM again and recreates the containers
    st = kd.ok("POST", sb("web") + "/start", expect=200)
    assert state_of(st) == "running"
    assert all(state_of(c) == "running" for c in st["ContainersStatus"]), st
    assert kd.wait("web", "app", kd.exec("web", "app", ["exit", "5"])["Token"]) == 5

    st = kd.ok("POST", sb("web") + "/stop?force=true", expect=200)
    assert state_of(st) == "stopped"
    assert containers_by_id(st)["side"]["ExitCode"] == 137


def test_pause_resume_container_and_sandbox(kd):
    make_running(kd)
    c = kd.ok("POST", ct("web", "app") + "/pause", expect=200)
    assert state_of(c) == "paused"
    assert state_of(kd.container("web", "app")) == "paused"
    assert state_of(kd.container("web", "side")) == "running"
    assert state_of(kd.ok("POST", ct("web", "app") + "/pause", expect=200)) == "paused"
    c = kd.ok("POST", ct("web", "app") + "/resume", expect=200)
    assert state_of(c) == "running"
    assert state_of(kd.container("web", "app")) == "running"
    assert state_of(kd.ok("POST", ct("web", "app") + "/resume", expect=200)) == "running"

    st = kd.ok("POST", sb("web") + "/pause", expect=200)
    assert state_of(st) == "paused"
    got = kd.sandbox("web")
    assert state_of(got) == "paused"
    assert all(state_of(c) == "paused" for c in got["ContainersStatus"]), got
    again = kd.ok("POST", sb("web") + "/pause", expect=200)
    assert state_of(again) == "paused" and again == kd.sandbox("web")

    st = kd.ok("POST", sb("web") + "/resume", expect=200)
    assert state_of(st) == "running"
    got = kd.sandbox("web")
    assert state_of(got) == "running"
    assert all(state_of(c) == "running" for c in got["ContainersStatus"]), got
    again = kd.ok("POST", sb("web") + "/resume", expect=200)
    assert state_of(again) == "running" and again == kd.sandbox("web")
    # still usable
    assert kd.wait("web", "app", kd.exec("web", "app", ["exit", "9"])["Token"]) == 9


def test_stop_paused_container(kd):
    make_running(kd)
    kd.ok("POST", ct("web", "app") + "/pause", expect=200)
    c = kd.ok("POST", ct("web", "app") + "/stop?timeout=1", expect=200, timeout=20)
    assert state_of(c) == "stopped"
    assert c["ExitCode"] in (143, 137), c
    assert kd.wait("web", "app") == c["ExitCode"]
    assert state_of(kd.container("web", "side")) == "running"


def test_paused_sandbox_stop(kd):
    make_running(kd)
    kd.ok("POST", sb("web") + "/pause", expect=200)
    st = kd.ok("POST", sb("web") + "/stop?force=true", expect=200)
    assert state_of(st) == "stopped"
    assert all(state_of(c) == "stopped" for c in st["ContainersStatus"])


def test_release_then_exec(kd):
    make_running(kd)
    st = kd.ok("POST", sb("web") + "/release", expect=200)
    assert st["ID"] == "web"
    assert state_of(st) == "running"
    # the next operation re-attaches
    p = kd.exec("web", "app", ["sh", "-c", "exit 11"])
    assert kd.wait("web", "app", p["Token"]) == 11
    got = kd.sandbox("web")
    assert state_of(got) == "running"
    assert all(state_of(c) == "running" for c in got["ContainersStatus"])
    # releasing twice is harmless
    kd.ok("POST", sb("web") + "/release", expect=200)
    kd.ok("POST", sb("web") + "/release", expect=200)
    assert kd.wait("web", "side", kd.exec("web", "side", ["true"])["Token"]) == 0


def test_stats_move_and_ps(kd):
    make_running(kd)
    s1 = kd.ok("GET", sb("web") + "/stats", expect=200)
    assert set(s1["ContainerStats"]) == {"app", "side"}
    assert s1["VM"]["VCPUs"] >= 1 and s1["VM"]["MemoryBytes"] > 0
    c1 = kd.ok("GET", ct("web", "app") + "/stats", expect=200)
    # CPU time goes on growing while the containers run (bounded wait, not a timing assertion)
    wait_until(lambda: cpu_total(kd.ok("GET", sb("web") + "/stats", expect=200)) > cpu_total(s1),
               timeout=10, what="sandbox CPU usage to grow")
    wait_until(lambda: cpu_total(kd.ok("GET", ct("web", "app") + "/stats", expect=200))
               > cpu_total(c1), timeout=10, what="container CPU usage to grow")
    # the sandbox's CgroupStats is the sum over its containers (same sample)
    s = kd.ok("GET", sb("web") + "/stats", expect=200)
    assert cpu_total(s) == sum(cpu_total(c) for c in s["ContainerStats"].values())
    # pids follow exec'd processes
    before = s["ContainerStats"]["app"]["CgroupStats"]["PidsStats"]["Current"]
    kd.exec("web", "app", ["worker"])
    after = kd.ok("GET", ct("web", "app") + "/stats", expect=200)
    assert after["CgroupStats"]["PidsStats"]["Current"] == before + 1

    ps = kd.ok("GET", ct("web", "app") + "/ps?format=json&args=-ef", expect=200)
    assert "PID" in ps["Titles"] and "CMD" in ps["Titles"]
    assert len(ps["Processes"]) == 2
    assert all(len(row) == len(ps["Titles"]) for row in ps["Processes"])
    default = kd.ok("GET", ct("web", "app") + "/ps", expect=200)
    assert isinstance(default, dict) and default["Titles"] == ps["Titles"]
    r = kd.api("GET", ct("web", "app") + "/ps?format=table&args=-ef")
    assert r.status == 200, r
    assert r.content_type.startswith("text/plain"), r.content_type
    lines = r.body.strip().splitlines()
    assert "PID" in lines[0] and "CMD" in lines[0]
    assert any("nginx -g daemon off;" in line for line in lines[1:]), lines
    assert_error(kd.api("GET", ct("web", "app") + "/ps?format=xml"), 400)


def test_update_resources_shows_in_stats(kd):
    make_running(kd)
    res = {"memory": {"limit": 268435456}, "cpu": {"quota": 50000, "period": 100000,
                                                   "shares": 512, "cpus": "0-1"},
           "pids": {"limit": 100}}
    out = kd.ok("PUT", ct("web", "app") + "/resources", res, expect=200)
    assert out["ID"] == "app"
    assert out["Resources"]["memory"]["limit"] == 268435456
    assert out["Resources"]["pids"]["limit"] == 100
    assert out["Resources"]["cpu"]["quota"] == 50000
    stats = kd.ok("GET", ct("web", "app") + "/stats", expect=200)
    assert stats["CgroupStats"]["MemoryStats"]["Usage"]["Limit"] == 268435456
    assert stats["CgroupStats"]["PidsStats"]["Limit"] == 100
    sstats = kd.ok("GET", sb("web") + "/stats", expect=200)
    assert sstats["ContainerStats"]["app"]["CgroupStats"]["MemoryStats"]["Usage"]["Limit"] \
        == 268435456
    # a later partial update keeps the other values
    out = kd.ok("PUT", ct("web", "app") + "/resources", {"memory": {"limit": 536870912}},
                expect=200)
    assert out["Resources"]["memory"]["limit"] == 536870912
    assert out["Resources"]["pids"]["limit"] == 100
    stats = kd.ok("GET", ct("web", "app") + "/stats", expect=200)
    assert stats["CgroupStats"]["MemoryStats"]["Usage"]["Limit"] == 536870912
    assert stats["CgroupStats"]["PidsStats"]["Limit"] == 100
    # null means absent: it neither clears a value nor shows up in the answer
    out = kd.ok("PUT", ct("web", "app") + "/resources",
                {"memory": None, "cpu": {"quota": None, "shares": 256}, "pids": {"limit": 7}},
                expect=200)
    assert out["Resources"]["memory"] == {"limit": 536870912}, out
    assert out["Resources"]["cpu"]["quota"] == 50000 and out["Resources"]["cpu"]["shares"] == 256
    stats = kd.ok("GET", ct("web", "app") + "/stats", expect=200)
    assert stats["CgroupStats"]["MemoryStats"]["Usage"]["Limit"] == 536870912
    assert stats["CgroupStats"]["PidsStats"]["Limit"] == 7
    # the other container is untouched
    other = kd.ok("GET", ct("web", "side") + "/stats", expect=200)
    assert other["CgroupStats"]["MemoryStats"]["Usage"].get("Limit", 0) != 536870912


def test_annotations_get_patch_null_removes(kd):
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("web", annotations={"a": "1", "b": "2"}),
          expect=201)
    ann = kd.ok("GET", sb("web") + "/annotations", expect=200)
    assert ann.get("a") == "1" and ann.get("b") == "2"
    base = {k: v for k, v in ann.items() if k not in ("a", "b")}
    out = kd.ok("PATCH", sb("web") + "/annotations", {"b": None, "c": "3", "a": "one"},
                expect=200)
    assert out == dict(base, a="one", c="3")
    assert kd.ok("GET", sb("web") + "/annotations", expect=200) == out
    assert kd.sandbox("web")["Annotations"] == out
    # removing an absent key is fine; an empty patch changes nothing
    assert kd.ok("PATCH", sb("web") + "/annotations", {"nope": None}, expect=200) == out
    assert kd.ok("PATCH", sb("web") + "/annotations", {}, expect=200) == out
    # a non-string value is refused and changes nothing
    err = assert_error(kd.api("PATCH", sb("web") + "/annotations", {"x": 5, "a": "changed"}),
                       400, "invalid_field")
    assert "x" in err["message"]
    assert kd.ok("GET", sb("web") + "/annotations", expect=200) == out


def test_container_create_delete_on_running_sandbox(kd):
    make_running(kd)
    c = kd.ok("POST", sb("web") + "/containers", container_cfg("extra", *FOREVER), expect=201)
    assert c["ID"] == "extra" and state_of(c) == "ready"
    assert sorted(x["ID"] for x in kd.ok("GET", sb("web") + "/containers", expect=200)) \
        == ["app", "extra", "side"]
    c = kd.ok("POST", ct("web", "extra") + "/start", expect=200)
    assert state_of(c) == "running"
    assert kd.wait("web", "extra", kd.exec("web", "extra", ["exit", "2"])["Token"]) == 2
    # a duplicate id is refused
    assert_error(kd.api("POST", sb("web") + "/containers", container_cfg("extra", *FOREVER)),
                 409, "already_exists")
    # running: delete needs force
    assert_error(kd.api("DELETE", ct("web", "extra")), 409, "wrong_state")
    assert state_of(kd.container("web", "extra")) == "running"
    kd.ok("DELETE", ct("web", "extra") + "?force=true", expect=204)
    assert_error(kd.api("GET", ct("web", "extra")), 404, "container_not_found")
    assert_error(kd.api("DELETE", ct("web", "extra")), 404, "container_not_found")
    # a ready container, and a stopped one, delete without force
    kd.ok("POST", sb("web") + "/containers", container_cfg("r", *FOREVER), expect=201)
    kd.ok("DELETE", ct("web", "r"), expect=204)
    kd.ok("POST", ct("web", "app") + "/stop", expect=200)
    kd.ok("DELETE", ct("web", "app"), expect=204)
    st = kd.sandbox("web")
    assert [c["ID"] for c in st["ContainersStatus"]] == ["side"]
    assert state_of(st) == "running"
    # the id of a deleted container can be used again
    kd.ok("POST", sb("web") + "/containers", container_cfg("app", *FOREVER), expect=201)


def test_wrong_states(kd):
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("web", [container_cfg("app", *FOREVER)]),
          expect=201)
    before = kd.snapshot()
    err = assert_error(kd.api("POST", sb("web") + "/pause"), 409, "wrong_state")
    assert "ready" in err["message"] and "running" in err["message"], err
    assert_error(kd.api("POST", sb("web") + "/resume"), 409, "wrong_state")
    # a container cannot start while its sandbox is not running
    assert_error(kd.api("POST", ct("web", "app") + "/start"), 409, "wrong_state")
    assert_error(kd.api("POST", ct("web", "app") + "/pause"), 409, "wrong_state")
    assert_error(kd.api("POST", ct("web", "app") + "/processes", {"Args": ["true"]}), 409,
                 "wrong_state")
    assert kd.snapshot() == before

    kd.ok("POST", sb("web") + "/start", expect=200)
    kd.ok("POST", sb("web") + "/stop", expect=200)
    # a stopped sandbox: its containers cannot start, it cannot pause
    assert_error(kd.api("POST", ct("web", "app") + "/start"), 409, "wrong_state")
    assert_error(kd.api("POST", sb("web") + "/pause"), 409, "wrong_state")
    assert state_of(kd.sandbox("web")) == "stopped"

    # delete: running needs force
    kd.ok("POST", sb("web") + "/start", expect=200)
    before = kd.snapshot()
    err = assert_error(kd.api("DELETE", sb("web")), 409, "wrong_state")
    assert "running" in err["message"], err
    assert kd.snapshot() == before
    kd.ok("DELETE", sb("web") + "?force=true", expect=204)
    assert_error(kd.api("GET", sb("web")), 404, "sandbox_not_found")
    assert kd.ok("GET", "/v1/sandboxes", expect=200) == []


def test_delete_sandbox(kd):
    make_running(kd, "a")
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("b"), expect=201)
    kd.ok("DELETE", sb("b"), expect=204)  # ready: no force needed
    assert [s["ID"] for s in kd.ok("GET", "/v1/sandboxes", expect=200)] == ["a"]
    kd.ok("POST", sb("a") + "/stop?force=true", expect=200)
    kd.ok("DELETE", sb("a"), expect=204)  # stopped: no force needed
    assert kd.ok("GET", "/v1/sandboxes", expect=200) == []
    assert_error(kd.api("DELETE", sb("a")), 404, "sandbox_not_found")
    assert_error(kd.api("GET", sb("a") + "/containers"), 404, "sandbox_not_found")
    # the id is free again
    st = kd.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("a", [container_cfg("c")]),
               expect=201)
    assert state_of(st) == "running"


def test_full_lifecycle_two_containers(kd):
    """One sandbox, two containers, from create to delete (the short tour)."""
    st = kd.ok("POST", "/v1/sandboxes",
               sandbox_cfg("tour", [container_cfg("one", *FOREVER),
                                    container_cfg("two", "sh", "-c", "sleep 0.3; exit 6")]),
               expect=201)
    assert state_of(st) == "ready"
    kd.ok("POST", sb("tour") + "/start", expect=200)
    assert kd.wait("tour", "two") == 6
    st = kd.sandbox("tour")
    cs = containers_by_id(st)
    assert state_of(cs["two"]) == "stopped" and cs["two"]["ExitCode"] == 6
    assert state_of(cs["one"]) == "running" and state_of(st) == "running"
    p = kd.exec("tour", "one", ["sh", "-c", "exit 3"], Envs=[{"Var": "X", "Value": "1"}])
    assert kd.wait("tour", "one", p["Token"]) == 3
    kd.ok("POST", ct("tour", "one") + "/kill", {"Signal": "SIGTERM"}, expect=204)
    assert kd.wait("tour", "one") == 143
    st = kd.ok("POST", sb("tour") + "/stop", expect=200)
    assert state_of(st) == "stopped"
    kd.ok("DELETE", sb("tour"), expect=204)
    assert kd.ok("GET", "/v1/sandboxes", expect=200) == []
