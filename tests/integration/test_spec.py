"""katad's router against api/openapi.yaml (tests/spec/check_routes.py), both ways."""

import re
import subprocess

import pytest

from conftest import KATAD_BIN, REPO, SPEC_PATH

CHECK = str(REPO / "tests" / "spec" / "check_routes.py")
PY = "/usr/bin/python3"


def list_routes():
    p = subprocess.run([KATAD_BIN, "--list-routes"], capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def check_routes(text):
    p = subprocess.run([PY, CHECK, str(SPEC_PATH), "-"], input=text.encode(),
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def test_list_routes_matches_the_spec():
    rc, out = check_routes(list_routes())
    assert rc == 0, out
    assert "OK" in out


def test_list_routes_does_not_start_a_daemon(tmp_path):
    sock = tmp_path / "k.sock"
    p = subprocess.run([KATAD_BIN, "--list-routes", "--socket", str(sock), "--state-dir",
                        str(tmp_path / "st"), "--run-dir", str(tmp_path / "run")],
                       capture_output=True, timeout=10)
    assert p.returncode == 0
    assert not sock.exists()


def _doctor(text, fn):
    return "\n".join(fn([ln for ln in text.splitlines() if ln.strip()])) + "\n"


@pytest.mark.parametrize("how,expect_rc,needle", [
    ("drop", 1, "not routed"),
    ("extra", 1, "missing from"),
    ("rename-param", 1, "parameter names differ"),
    ("wrong-method", 1, "not routed"),
    ("malformed", 2, "not 'METHOD /path'"),
    ("duplicate", 2, "duplicate route"),
    ("empty", 2, "no routes"),
])
def test_check_routes_catches_a_doctored_list(how, expect_rc, needle):
    routes = list_routes()
    assert "GET /v1/sandboxes/{sid}" in routes.splitlines()
    doctored = {
        "drop": lambda ls: [ln for ln in ls if ln != "GET /v1/sandboxes/{sid}/stats"],
        "extra": lambda ls: ls + ["POST /v1/sandboxes/{sid}/explode"],
        "rename-param": lambda ls: [re.sub(r"\{cid\}", "{container}", ln) for ln in ls],
        "wrong-method": lambda ls: [ln.replace("PATCH ", "PUT ", 1) for ln in ls],
        "malformed": lambda ls: ls + ["GET"],
        "duplicate": lambda ls: ls + [ls[0]],
        "empty": lambda ls: [],
    }[how]
    rc, out = check_routes(_doctor(routes, doctored))
    assert rc == expect_rc, out
    assert needle in out, out


def test_every_listed_route_is_routed(katad):
    """Each route katad lists reaches a handler (no route_not_found / method_not_allowed)."""
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true", {"ID": "s", "Containers": [
        {"ID": "c", "RootFs": "/r", "Cmd": {"Args": ["sleep", "infinity"]}}]}, expect=201)
    for line in list_routes().splitlines():
        if not line.strip():
            continue
        method, path = line.split()
        if path == "/v1/events":
            continue  # a stream; test_events.py covers it
        concrete = (path.replace("{sid}", "s").replace("{cid}", "c").replace("{pid}", "c")
                    .replace("{name}", "eth0"))
        if concrete.endswith("/wait") or concrete.endswith("/stop") or \
                concrete.endswith("/kill") or concrete.endswith("/signal") or \
                method == "DELETE":
            concrete = concrete.replace("/v1/sandboxes/s", "/v1/sandboxes/other")
        body = {} if method in ("POST", "PUT", "PATCH") else None
        r = k.api(method, concrete, body, timeout=10)
        assert r.status != 0, f"{method} {concrete}: no answer ({r.content_type})"
        if isinstance(r.body, dict) and "code" in r.body:
            assert r.body["code"] not in ("route_not_found", "method_not_allowed"), \
                f"{line}: {r.body}"
        assert r.status < 500 or r.status in (501,), f"{method} {concrete}: {r.status} {r.body}"
