"""Bad input gets the documented error shape, never a 5xx, and changes nothing."""

import contextlib

import pytest

from conftest import assert_error, container_cfg, sandbox_cfg

MIB = 1 << 20


@pytest.fixture
def pk(katad):
    """A katad with a running sandbox s1 (c1, c2) and a ready sandbox s2 (c3)."""
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true",
         sandbox_cfg("s1", [container_cfg("c1"), container_cfg("c2")]), expect=201)
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("s2", [container_cfg("c3")],
                                               annotations={"keep": "me"}), expect=201)
    return k


@contextlib.contextmanager
def unchanged(k):
    before = k.snapshot()
    yield
    after = k.snapshot()
    assert after == before, "a refused request changed katad's state"


def refused(k, method, path, body=None, status=400, code=None, **kw):
    """The request is refused with (status, code) and leaves every sandbox as it was."""
    with unchanged(k):
        r = k.api(method, path, body, **kw)
        assert r.status < 500 or r.status == 501, f"{method} {path}: 5xx {r!r}"
        return assert_error(r, status, code)


def still_alive(k):
    assert k.running(), "katad died\n" + k.log_tail()
    assert k.ok("GET", "/v1", expect=200)["Name"] == "katad"


# ================================================================ bodies

@pytest.mark.parametrize("path", ["/v1/sandboxes", "/v1/sandboxes/s1/containers",
                                  "/v1/sandboxes/s1/containers/c1/processes",
                                  "/v1/sandboxes/s1/containers/c1/kill"])
@pytest.mark.parametrize("raw", ['{"ID": "x",', "{", "nul", '{"ID": "x"} trailing', "\x00",
                                 '{"ID": "x", "ID": }', "[" * 100000])
def test_malformed_json(pk, path, raw):
    refused(pk, "POST", path, raw=raw, status=400, code="invalid_json")
    still_alive(pk)


def test_malformed_json_patch(pk):
    refused(pk, "PATCH", "/v1/sandboxes/s2/annotations", raw='{"a": "b"', code="invalid_json")
    refused(pk, "PUT", "/v1/sandboxes/s1/containers/c1/resources", raw="{'memory': 1}",
            code="invalid_json")
    assert pk.ok("GET", "/v1/sandboxes/s2/annotations", expect=200).get("keep") == "me"


@pytest.mark.parametrize("method,path,body,key", [
    ("POST", "/v1/sandboxes", {"ID": 5}, "ID"),
    ("POST", "/v1/sandboxes", {"ID": "t", "Containers": [{}, {"Cmd": {"Args": "sh"}}]},
     "Containers[1].Cmd.Args"),
    ("POST", "/v1/sandboxes", {"ID": "t", "Containers": [{"ID": "a", "Cmd": {"Args": [1]}}]},
     "Containers[0].Cmd.Args[0]"),
    ("POST", "/v1/sandboxes", {"ID": "t", "Containers": {"ID": "a"}}, "Containers"),
    ("POST", "/v1/sandboxes", {"ID": "t", "Annotations": {"a": 1}}, "Annotations.a"),
    ("POST", "/v1/sandboxes", {"ID": "t", "Annotations": ["a"]}, "Annotations"),
    ("POST", "/v1/sandboxes", {"ID": "t", "VMConfig": {"Memory": "lots"}}, "VMConfig.Memory"),
    ("POST", "/v1/sandboxes", {"ID": "t", "HypervisorConfig": {"NumVCPUs": -1}},
     "HypervisorConfig.NumVCPUs"),
    ("POST", "/v1/sandboxes", {"ID": "t", "HypervisorConfig": {"Debug": "yes"}},
     "HypervisorConfig.Debug"),
    ("POST", "/v1/sandboxes", {"ID": "t", "Containers": [
        {"ID": "a", "Cmd": {"Args": ["x"], "Envs": [{"Var": 1}]}}]},
     "Containers[0].Cmd.Envs[0].Var"),
    ("POST", "/v1/sandboxes/s1/containers", {"ID": "n", "Cmd": {"Args": ["x"]}, "RootFs": 7},
     "RootFs"),
    ("POST", "/v1/sandboxes/s1/containers", {"ID": "n", "Cmd": "x"}, "Cmd"),
    ("POST", "/v1/sandboxes/s1/containers/c1/processes", {"Args": "true"}, "Args"),
    ("POST", "/v1/sandboxes/s1/containers/c1/processes", {"Args": ["a"], "Envs": "X=1"},
     "Envs"),
    ("POST", "/v1/sandboxes/s1/containers/c1/kill", {"Signal": True}, "Signal"),
    ("POST", "/v1/sandboxes/s1/containers/c1/kill", {"Signal": 9, "All": "yes"}, "All"),
    ("POST", "/v1/sandboxes/s1/containers/c1/processes/c1/signal", {"Signal": [9]}, "Signal"),
    ("POST", "/v1/sandboxes/s1/containers/c1/processes/c1/winsize",
     {"Height": "tall", "Width": 80}, "Height"),
    ("PUT", "/v1/sandboxes/s1/containers/c1/resources", {"memory": {"limit": "x"}},
     "memory.limit"),
    ("PUT", "/v1/sandboxes/s1/containers/c1/resources", {"cpu": {"cpus": 2}}, "cpu.cpus"),
    ("PATCH", "/v1/sandboxes/s2/annotations", {"keep": 5}, "keep"),
    ("PATCH", "/v1/sandboxes/s2/annotations", {"keep": {"nested": "x"}}, "keep"),
])
def test_wrong_types_name_the_key(pk, method, path, body, key):
    err = refused(pk, method, path, body, status=400, code="invalid_field")
    assert key in err["message"], f"the message does not name {key!r}: {err['message']!r}"


@pytest.mark.parametrize("raw", ["[]", "42", '"str"', "null", "true"])
def test_non_object_bodies(pk, raw):
    err = refused(pk, "POST", "/v1/sandboxes", raw=raw, status=400)
    assert err["code"] in ("invalid_field", "invalid_json", "bad_request"), err


def test_required_args(pk):
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/processes", {"Args": []},
            code="invalid_field")
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/processes", {"Envs": []},
            code="invalid_field")
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/kill", {}, code="invalid_field")


def test_required_container_cmd(pk):
    for cfg, key in [({"ID": "a", "RootFs": "/r"}, "Containers[0].Cmd.Args"),
                     ({"ID": "a", "RootFs": "/r", "Cmd": {"Args": []}}, "Containers[0].Cmd.Args"),
                     ({"ID": "a", "RootFs": "/r", "Cmd": {}}, "Containers[0].Cmd.Args")]:
        err = refused(pk, "POST", "/v1/sandboxes", sandbox_cfg("t", [cfg]), code="invalid_field")
        assert key in err["message"], err
    err = refused(pk, "POST", "/v1/sandboxes/s1/containers", {"ID": "n", "RootFs": "/r"},
                  code="invalid_field")
    assert "Cmd.Args" in err["message"], err


def test_nulls_mean_absent(pk):
    """null is accepted for slices, maps and structs, and means absent."""
    st = pk.ok("POST", "/v1/sandboxes", {"ID": "n", "Containers": None, "Annotations": None,
                                         "VMConfig": None, "HypervisorConfig": None,
                                         "NetworkConfig": None, "Volumes": None}, expect=201)
    assert st["ContainersStatus"] == [] and st["Annotations"] == {}
    st = pk.ok("POST", "/v1/sandboxes?start=true", {"ID": "n2", "Containers": [
        {"ID": "a", "RootFs": "/r", "Mounts": None, "Resources": None, "Annotations": None,
         "DeviceInfos": None,
         "Cmd": {"Args": ["x"], "Envs": None, "Capabilities": None,
                 "SupplementaryGroups": None}}]}, expect=201)
    assert st["ContainersStatus"][0]["Annotations"] == {}
    p = pk.ok("POST", "/v1/sandboxes/n2/containers/a/processes",
              {"Args": ["exit", "2"], "Envs": None, "Capabilities": None}, expect=201)
    assert pk.wait("n2", "a", p["Token"]) == 2
    out = pk.ok("PUT", "/v1/sandboxes/n2/containers/a/resources",
                {"memory": {"limit": 1048576}, "cpu": None, "pids": None}, expect=200)
    assert out["Resources"]["memory"]["limit"] == 1048576


def test_rootfs_object(pk):
    c = pk.ok("POST", "/v1/sandboxes/s1/containers",
              {"ID": "blk", "Cmd": {"Args": ["x"]},
               "RootFs": {"Source": "/dev/vdb", "Target": "/", "Type": "ext4",
                          "Options": ["ro"], "Mounted": False}}, expect=201)
    assert c["ID"] == "blk"
    assert pk.ok("POST", "/v1/sandboxes/s1/containers/blk/start", expect=200)["State"] \
        == {"state": "running"}


@pytest.mark.parametrize("sig", ["SIGNOPE", "sigterm ", 0, 65, -9, 99, 9.5, ""])
def test_bad_signals(pk, sig):
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/kill", {"Signal": sig},
            code="invalid_field")
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/processes/c1/signal", {"Signal": sig},
            code="invalid_field")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/v1/sandboxes", "/v1/sandboxes/s1/containers",
                                  "/v1/sandboxes/s2/annotations"])
def test_body_over_1mib(pk, chunked, path):
    method = "PATCH" if path.endswith("annotations") else "POST"
    raw = '{"ID": "big", "Pad": "' + "x" * MIB + '"}'
    if method == "PATCH":
        raw = '{"big": "' + "x" * MIB + '"}'
    headers = ["Transfer-Encoding: chunked"] if chunked else []
    refused(pk, method, path, raw=raw, headers=headers, status=413, code="payload_too_large")
    # much larger, so that katad must stop reading rather than buffer it
    refused(pk, method, path, raw=raw + " " * (8 * MIB), headers=headers, status=413,
            code="payload_too_large")
    still_alive(pk)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_just_under_1mib_is_read(pk, chunked):
    raw = '{"ID": "almost", "Pad": "' + "x" * (MIB - 100) + '"}'
    assert len(raw) < MIB
    headers = ["Transfer-Encoding: chunked"] if chunked else []
    st = pk.ok("POST", "/v1/sandboxes", raw=raw, headers=headers, expect=201)
    assert st["ID"] == "almost"


@pytest.mark.parametrize("ctype", ["text/plain", "multipart/form-data; boundary=x",
                                   "application/xml", "image/png"])
def test_non_json_content_type(pk, ctype):
    refused(pk, "POST", "/v1/sandboxes", raw='{"ID": "typed"}', content_type=ctype,
            status=415, code="unsupported_media_type")
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/kill", raw='{"Signal": 9}',
            content_type=ctype, status=415, code="unsupported_media_type")
    assert pk.container("s1", "c1")["State"]["state"] == "running"


@pytest.mark.parametrize("ctype", [None, "application/json", "application/json; charset=utf-8",
                                   "application/x-www-form-urlencoded"])
def test_json_content_types_accepted(pk, ctype):
    st = pk.ok("POST", "/v1/sandboxes", raw='{"ID": "typed"}', content_type=ctype, expect=201)
    assert st["ID"] == "typed"


def test_unknown_fields_ignored(pk):
    body = sandbox_cfg("u", [dict(container_cfg("c", "true"), Extra=True,
                                  Cmd={"Args": ["true"], "Nope": 1, "Envs": None})],
                       Bogus={"x": [1, 2, {"y": None}]}, Volumes=None, NetworkConfig=None)
    body["ZZZ"] = "ignored"
    st = pk.ok("POST", "/v1/sandboxes?start=true", body, expect=201)
    assert st["ID"] == "u" and st["State"]["state"] == "running"
    assert "Bogus" not in st and "ZZZ" not in st
    pk.ok("POST", "/v1/sandboxes/s1/containers/c1/kill",
          {"Signal": "SIGUSR1", "Whatever": [1]}, expect=204)
    assert pk.wait("s1", "c1") == 138


# ================================================================ ids

BAD_SANDBOX_PATHS = [
    "/v1/sandboxes/../etc",
    "/v1/sandboxes/..",
    "/v1/sandboxes/.",
    "/v1/sandboxes/a%2Fb",
    "/v1/sandboxes/%2E%2E",
    "/v1/sandboxes/%2E%2E%2Fetc",
    "/v1/sandboxes/" + "a" * 65,
    "/v1/sandboxes/" + "a" * 5000,
    "/v1/sandboxes/-dash",
    "/v1/sandboxes/_under",
    "/v1/sandboxes/sp%20ace",
    "/v1/sandboxes/%C3%A9t%C3%A9",
    "/v1/sandboxes/%F0%9F%92%A5",
    "/v1/sandboxes/%FF%FE",
    "/v1/sandboxes/s1%00",
    "/v1/sandboxes/s1%00xyz",
    "/v1/sandboxes/%00",
    "/v1/sandboxes/s1%0A",
]

SUFFIXES = ["", "/containers", "/start", "/stop", "/pause", "/stats", "/annotations"]


def _id_refused(r, what):
    assert r.status in (400, 404), f"{what}: expected 400 invalid_id or 404 route_not_found, " \
        f"got {r.status}: {r.body!r}"
    code = {400: "invalid_id", 404: "route_not_found"}[r.status]
    assert_error(r, r.status, code)


@pytest.mark.parametrize("base", BAD_SANDBOX_PATHS)
def test_bad_sandbox_ids_in_urls(pk, base):
    with unchanged(pk):
        for suffix in SUFFIXES:
            method = "GET" if suffix in ("", "/containers", "/stats", "/annotations") else "POST"
            r = pk.api(method, base + suffix, extra_curl=["--path-as-is"])
            _id_refused(r, f"{method} {base}{suffix}")
        r = pk.api("DELETE", base + "?force=true", extra_curl=["--path-as-is"])
        _id_refused(r, f"DELETE {base}?force=true")
    still_alive(pk)


@pytest.mark.parametrize("bad", ["..", "%2E%2E", "a%2Fb", "x" * 65, "%C3%A9", "c1%00", "c1%00zz",
                                 "-c1"])
def test_bad_container_and_process_ids_in_urls(pk, bad):
    with unchanged(pk):
        for method, path in [
            ("GET", f"/v1/sandboxes/s1/containers/{bad}"),
            ("POST", f"/v1/sandboxes/s1/containers/{bad}/stop?force=true"),
            ("DELETE", f"/v1/sandboxes/s1/containers/{bad}?force=true"),
            ("POST", f"/v1/sandboxes/s1/containers/{bad}/processes"),
            ("POST", f"/v1/sandboxes/s1/containers/c1/processes/{bad}/wait"),
            ("POST", f"/v1/sandboxes/s1/containers/c1/processes/{bad}/signal"),
        ]:
            body = {"Signal": 9} if path.endswith("signal") else (
                {"Args": ["true"]} if path.endswith("processes") else None)
            r = pk.api(method, path, body, extra_curl=["--path-as-is"])
            _id_refused(r, f"{method} {path}")


def test_empty_ids_in_urls(pk):
    with unchanged(pk):
        for method, path in [("GET", "/v1/sandboxes//containers"),
                             ("POST", "/v1/sandboxes//start"),
                             ("POST", "/v1/sandboxes/s1/containers//stop"),
                             ("POST", "/v1/sandboxes/s1/containers/c1/processes//wait")]:
            _id_refused(pk.api(method, path, extra_curl=["--path-as-is"]), f"{method} {path}")


@pytest.mark.parametrize("bad", ["../etc", "..", ".", "a/b", "x" * 65, "été", "💥", "-x", "a b",
                                 "a\nb", "_x", 7])
def test_bad_ids_in_bodies(pk, bad):
    code = "invalid_field" if not isinstance(bad, str) else "invalid_id"
    refused(pk, "POST", "/v1/sandboxes", {"ID": bad}, code=code)
    bad_container = {"ID": bad, "RootFs": "/srv/rootfs/x", "Cmd": {"Args": ["true"]}}
    refused(pk, "POST", "/v1/sandboxes", sandbox_cfg("fine", [bad_container]), code=code)
    refused(pk, "POST", "/v1/sandboxes/s1/containers", bad_container, code=code)
    refused(pk, "POST", "/v1/sandboxes?start=true", sandbox_cfg("fine", [bad_container]),
            code=code)


def test_ids_at_the_limits_are_fine(pk):
    long_id = "A" + "b" * 62 + "9"
    assert len(long_id) == 64
    st = pk.ok("POST", "/v1/sandboxes", sandbox_cfg(long_id, [container_cfg("x.y-z_1")]),
               expect=201)
    assert st["ID"] == long_id
    assert pk.sandbox(long_id)["ContainersStatus"][0]["ID"] == "x.y-z_1"
    pk.ok("POST", "/v1/sandboxes", sandbox_cfg("0"), expect=201)
    pk.ok("DELETE", "/v1/sandboxes/" + long_id, expect=204)


# ================================================================ routes and methods

@pytest.mark.parametrize("method,path", [
    ("GET", "/v2"), ("GET", "/v1/nope"), ("GET", "/v1/sandboxes/s1/nope"),
    ("POST", "/v1/sandboxes/s1/containers/c1/nope"), ("GET", "/v1/sandboxes/s1/containers/c1/x/y"),
    ("GET", "/favicon.ico"), ("GET", "//v1"), ("GET", "/v1/sandboxes/s1/containers/c1/processes/c1"),
    ("POST", "/v1/sandboxes/s1/containers/c1/processes/c1"), ("GET", "/v1/events/x"),
    ("GET", "/V1/sandboxes"),
])
def test_unknown_routes(pk, method, path):
    with unchanged(pk):
        r = pk.api(method, path, extra_curl=["--path-as-is"])
        assert_error(r, 404, "route_not_found")


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/v1/sandboxes", {"GET", "POST"}),
    ("DELETE", "/v1", {"GET"}),
    ("POST", "/", {"GET"}),
    ("PATCH", "/v1/sandboxes/s1", {"GET", "DELETE"}),
    ("PUT", "/v1/sandboxes/s1", {"GET", "DELETE"}),
    ("GET", "/v1/sandboxes/s1/start", {"POST"}),
    ("DELETE", "/v1/sandboxes/s1/stop", {"POST"}),
    ("POST", "/v1/sandboxes/s1/stats", {"GET"}),
    ("PUT", "/v1/sandboxes/s2/annotations", {"GET", "PATCH"}),
    ("PUT", "/v1/sandboxes/s1/containers", {"GET", "POST"}),
    ("POST", "/v1/sandboxes/s1/containers/c1", {"GET", "DELETE"}),
    ("GET", "/v1/sandboxes/s1/containers/c1/kill", {"POST"}),
    ("POST", "/v1/sandboxes/s1/containers/c1/resources", {"PUT"}),
    ("GET", "/v1/sandboxes/s1/containers/c1/processes", {"POST"}),
    ("GET", "/v1/sandboxes/s1/containers/c1/processes/c1/wait", {"POST"}),
    ("POST", "/v1/events", {"GET"}),
    ("PUT", "/v1/factory", {"GET", "POST", "DELETE"}),
])
def test_wrong_method_405_with_allow(pk, method, path, allowed):
    with unchanged(pk):
        r = pk.api(method, path)
        assert_error(r, 405, "method_not_allowed")
        allow = r.headers.get("allow")
        assert allow is not None, f"{method} {path}: 405 without an Allow header"
        got = {m.strip() for m in allow.split(",") if m.strip()}
        assert got - {"HEAD", "OPTIONS"} == allowed, f"{method} {path}: Allow: {allow}"


def test_unknown_objects_404(pk):
    with unchanged(pk):
        assert_error(pk.api("GET", "/v1/sandboxes/nope"), 404, "sandbox_not_found")
        assert_error(pk.api("DELETE", "/v1/sandboxes/nope"), 404, "sandbox_not_found")
        assert_error(pk.api("DELETE", "/v1/sandboxes/nope?force=true"), 404, "sandbox_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/nope/start"), 404, "sandbox_not_found")
        assert_error(pk.api("GET", "/v1/sandboxes/nope/stats"), 404, "sandbox_not_found")
        assert_error(pk.api("GET", "/v1/sandboxes/nope/annotations"), 404, "sandbox_not_found")
        assert_error(pk.api("PATCH", "/v1/sandboxes/nope/annotations", {"a": "b"}), 404,
                     "sandbox_not_found")
        assert_error(pk.api("GET", "/v1/sandboxes/nope/containers"), 404, "sandbox_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/nope/containers", container_cfg("z")), 404,
                     "sandbox_not_found")
        assert_error(pk.api("GET", "/v1/sandboxes/nope/containers/c1"), 404, "sandbox_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/nope/containers/c1/processes/c1/wait"), 404,
                     "sandbox_not_found")
        assert_error(pk.api("GET", "/v1/sandboxes/s1/containers/nope"), 404,
                     "container_not_found")
        assert_error(pk.api("DELETE", "/v1/sandboxes/s1/containers/nope"), 404,
                     "container_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/s1/containers/nope/start"), 404,
                     "container_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/s1/containers/nope/kill", {"Signal": 9}), 404,
                     "container_not_found")
        assert_error(pk.api("GET", "/v1/sandboxes/s1/containers/nope/stats"), 404,
                     "container_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/s1/containers/nope/processes",
                            {"Args": ["true"]}), 404, "container_not_found")
        # c3 lives in s2, not s1
        assert_error(pk.api("GET", "/v1/sandboxes/s1/containers/c3"), 404, "container_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/s1/containers/c1/processes/nope/wait"), 404,
                     "process_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/s1/containers/c1/processes/nope/signal",
                            {"Signal": 9}), 404, "process_not_found")
        assert_error(pk.api("POST", "/v1/sandboxes/s1/containers/c1/processes/nope/winsize",
                            {"Height": 1, "Width": 1}), 404, "process_not_found")
        # a process of c1 is not a process of c2
        tok = pk.exec("s1", "c1", ["worker"])["Token"]
        assert_error(pk.api("POST", f"/v1/sandboxes/s1/containers/c2/processes/{tok}/wait"), 404,
                     "process_not_found")
        pk.ok("POST", f"/v1/sandboxes/s1/containers/c1/processes/{tok}/signal", {"Signal": 9},
              expect=204)
        assert pk.wait("s1", "c1", tok) == 137


def test_duplicate_sandbox_id(pk):
    err = refused(pk, "POST", "/v1/sandboxes", sandbox_cfg("s1", [container_cfg("other")]),
                  status=409, code="already_exists")
    assert "s1" in err["message"]
    refused(pk, "POST", "/v1/sandboxes?start=true", sandbox_cfg("s2"), status=409,
            code="already_exists")
    # duplicate container ids inside one config
    r = pk.api("POST", "/v1/sandboxes", sandbox_cfg("dup", [container_cfg("x"),
                                                              container_cfg("x")]))
    assert r.status in (400, 409), r
    assert_error(r, r.status)
    assert_error(pk.api("GET", "/v1/sandboxes/dup"), 404, "sandbox_not_found")


@pytest.mark.parametrize("query", ["timeout=abc", "timeout=-1", "timeout=1e9", "force=maybe",
                                   "force=1x", "timeout=99999999999999999999"])
def test_bad_query_values(pk, query):
    refused(pk, "POST", "/v1/sandboxes/s1/stop?" + query, code="invalid_query")
    refused(pk, "POST", "/v1/sandboxes/s1/containers/c1/stop?" + query, code="invalid_query")
    refused(pk, "DELETE", "/v1/sandboxes/s1?" + query, code="invalid_query")


def test_bad_event_query(pk):
    for q in ["since=yesterday", "sandbox=..", "container=a%2Fb", "since=2026-13-01T00:00:00Z"]:
        r = pk.api("GET", "/v1/events?" + q, timeout=5)
        assert r.status == 400, f"GET /v1/events?{q}: {r!r}"
        assert_error(r, 400)
        assert r.body["code"] in ("invalid_query", "invalid_id"), r.body


# ================================================================ not implemented

@pytest.mark.parametrize("method,path,body", [
    ("GET", "/v1/sandboxes/s1/containers/c1/processes/c1/io", None),
    ("POST", "/v1/sandboxes/s1/devices", {"HostPath": "/dev/null", "DevType": "c"}),
    ("GET", "/v1/sandboxes/s1/interfaces", None),
    ("POST", "/v1/sandboxes/s1/interfaces", {"Name": "eth1"}),
    ("DELETE", "/v1/sandboxes/s1/interfaces/eth0", None),
    ("GET", "/v1/sandboxes/s1/routes", None),
    ("PUT", "/v1/sandboxes/s1/routes", [{"Dest": "0.0.0.0/0", "Gateway": "10.0.0.1"}]),
    ("GET", "/v1/factory", None),
    ("POST", "/v1/factory", {"Template": True}),
    ("DELETE", "/v1/factory", None),
])
def test_not_implemented_501(pk, method, path, body):
    with unchanged(pk):
        assert_error(pk.api(method, path, body), 501, "not_implemented")


def test_io_websocket_upgrade_is_501(pk):
    r = pk.api("GET", "/v1/sandboxes/s1/containers/c1/processes/c1/io",
               headers=["Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
    assert_error(r, 501, "not_implemented")


# ================================================================ survival

def test_garbage_on_the_socket(pk):
    """Raw non-HTTP bytes and truncated requests do not take katad down."""
    import socket
    payloads = [b"\x00\xff" * 1000 + b"\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ID\"",
                b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"b" * 200000 + b"\r\n\r\n"]
    with unchanged(pk):
        for p in payloads:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(pk.sock)
                s.sendall(p)
                s.shutdown(socket.SHUT_WR)
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    data = b""
                if data.startswith(b"HTTP/1."):
                    code = int(data.split()[1])
                    assert code < 500 or code == 505, (p[:60], data[:200])
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                s.close()
            still_alive(pk)


def test_katad_answers_after_abuse(pk):
    # (answers are checked by the other tests; here only survival matters)
    for raw in ['{"ID": "x",', "[" * 50000, '{"ID": "a/b"}', '{"ID": "../../etc"}']:
        pk.api("POST", "/v1/sandboxes", raw=raw, check=False)
    pk.api("POST", "/v1/sandboxes", raw="x" * (2 * MIB), check=False)
    pk.api("GET", "/v1/sandboxes/%00", extra_curl=["--path-as-is"], check=False)
    pk.api("GET", "/v1/sandboxes/../../etc/passwd", extra_curl=["--path-as-is"], check=False)
    pk.api("POST", "/v1/sandboxes/..%2F..%2Fetc/start", check=False)
    still_alive(pk)
    st = pk.sandbox("s1")
    assert st["State"]["state"] == "running"
    assert pk.wait("s1", "c1", pk.exec("s1", "c1", ["exit", "4"])["Token"]) == 4
    # nothing escaped the state dir through a crafted id
    import os
    for root, dirs, files in os.walk(pk.root):
        for name in dirs + files:
            assert name not in ("etc", "passwd"), os.path.join(root, name)
