"""GET /v1/events: NDJSON over HTTP/1.1 and WebSocket text frames."""

import datetime
import json
import os
import socket

import pytest
import websocket

import openapi_schema
from conftest import SPEC, EventStream, container_cfg, sandbox_cfg

FOREVER = ["nginx", "-g", "daemon off;"]
REQUEST_CAUSED = {"sandbox.create", "sandbox.start", "sandbox.stop", "sandbox.pause",
                  "container.stop", "sandbox.resume", "sandbox.delete", "sandbox.release", "sandbox.annotations",
                  "container.create", "container.start", "container.pause", "container.resume",
                  "container.kill", "container.update", "container.delete", "process.exec",
                  "process.signal"}


def rfc3339_now(delta_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_scenario(k, sid="ev"):
    """create, start, exec (exit 3), kill c1 (SIGTERM), stop, delete. Returns the exec token."""
    k.ok("POST", "/v1/sandboxes", sandbox_cfg(sid, [container_cfg("c1", *FOREVER),
                                                     container_cfg("c2", *FOREVER)]), expect=201)
    k.ok("POST", f"/v1/sandboxes/{sid}/start", expect=200)
    tok = k.exec(sid, "c1", ["sh", "-c", "exit 3"])["Token"]
    assert k.wait(sid, "c1", tok) == 3
    k.ok("POST", f"/v1/sandboxes/{sid}/containers/c1/kill", {"Signal": "SIGTERM"}, expect=204)
    assert k.wait(sid, "c1") == 143
    k.ok("POST", f"/v1/sandboxes/{sid}/stop", expect=200)
    k.ok("DELETE", f"/v1/sandboxes/{sid}", expect=204)
    return tok


def is_delete_of(sid):
    return lambda e: e["Type"] == "sandbox.delete" and e.get("SandboxID") == sid


def find_in_order(events, wanted):
    """Index of each wanted predicate, matched in order (a subsequence); fails if one is missing."""
    idx = []
    pos = 0
    for desc, pred in wanted:
        while pos < len(events) and not pred(events[pos]):
            pos += 1
        assert pos < len(events), f"event {desc} missing (or out of order) in " \
            f"{[(e['Type'], e.get('ContainerID'), e.get('ProcessID')) for e in events]}"
        idx.append(pos)
        pos += 1
    return idx


def check_scenario_events(events, sid, tok):
    uid = os.getuid()

    def ev(t, cid=None, **attrs):
        def pred(e):
            if e["Type"] != t or e.get("SandboxID") != sid:
                return False
            if cid is not None and e.get("ContainerID") != cid:
                return False
            return all(e.get(k) == v for k, v in attrs.items())
        return (f"{t} {cid or ''} {attrs or ''}".strip(), pred)

    find_in_order(events, [
        ev("sandbox.create"),
        ev("container.create", "c1"),
        ev("container.create", "c2"),
        ev("sandbox.start"),
        ev("process.exec", "c1", ProcessID=tok),
        ev("process.exit", "c1", ProcessID=tok, ExitCode=3),
        ev("container.kill", "c1"),
        ev("process.exit", "c1", ProcessID="c1", ExitCode=143),
        ev("sandbox.stop"),
        ev("sandbox.delete"),
    ])
    starts = [e for e in events if e["Type"] == "container.start"]
    assert sorted(e["ContainerID"] for e in starts) == ["c1", "c2"]
    assert events[-1]["Type"] == "sandbox.delete"
    kill = next(e for e in events if e["Type"] == "container.kill")
    assert kill["Signal"] in (15, "SIGTERM", "TERM"), kill
    for e in events:
        assert e.get("SandboxID") == sid, e
        if e["Type"].startswith(("container.", "process.")):
            assert e.get("ContainerID") in ("c1", "c2"), e
        if e["Type"].startswith("process."):
            assert "ProcessID" in e, e
        if e["Type"] in REQUEST_CAUSED:
            assert e.get("UID") == uid, f"request-caused event without the peer's uid: {e}"
    # the exec'd process exited on its own: nobody's request caused that
    natural = next(e for e in events if e["Type"] == "process.exit" and e.get("ProcessID") == tok)
    assert "UID" not in natural, natural
    times = [e["Time"] for e in events]
    assert times == sorted(times, key=_time_key), "events out of time order"


def _time_key(s):
    base, _, frac = s.rstrip("Z").partition(".")
    return (base, frac.ljust(9, "0"))


def test_replay_since_and_live_stream_agree(kd):
    since = rfc3339_now(-2)
    with EventStream(kd.sock) as live:
        assert live.status == 200
        assert live.headers.get("content-type", "").startswith("application/x-ndjson")
        tok = run_scenario(kd)
        live_events = live.collect_until(is_delete_of("ev"), timeout=15)
    check_scenario_events(live_events, "ev", tok)

    with EventStream(kd.sock, f"since={since}") as replay:
        replay_events = replay.collect_until(is_delete_of("ev"), timeout=15)
    assert replay_events == live_events


def test_without_since_nothing_is_replayed(kd):
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("old"), expect=201)
    with EventStream(kd.sock) as es:
        kd.ok("POST", "/v1/sandboxes", sandbox_cfg("new"), expect=201)
        first = es.next(timeout=10)
    assert first is not None, "no event"
    assert (first["Type"], first["SandboxID"]) == ("sandbox.create", "new"), first


def test_since_in_the_future_replays_nothing(kd):
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("old"), expect=201)
    with EventStream(kd.sock, f"since={rfc3339_now(3600)}") as es:
        kd.ok("PATCH", "/v1/sandboxes/old/annotations", {"a": "b"}, expect=200)
        first = es.next(timeout=10)
    assert first is not None
    assert first["Type"] == "sandbox.annotations" and first["SandboxID"] == "old", first


def test_sandbox_and_container_filters(kd):
    since = rfc3339_now(-2)
    for sid in ("A", "B"):
        kd.ok("POST", "/v1/sandboxes?start=true",
              sandbox_cfg(sid, [container_cfg("x", *FOREVER), container_cfg("y", *FOREVER)]),
              expect=201)
    with EventStream(kd.sock, f"sandbox=A&since={since}") as only_a, \
            EventStream(kd.sock, f"sandbox=A&container=y&since={since}") as only_ay:
        for sid in ("B", "A"):
            kd.ok("POST", f"/v1/sandboxes/{sid}/containers/x/kill", {"Signal": 9}, expect=204)
            kd.ok("POST", f"/v1/sandboxes/{sid}/containers/y/kill", {"Signal": 9}, expect=204)
            kd.ok("DELETE", f"/v1/sandboxes/{sid}?force=true", expect=204)
        a_events = only_a.collect_until(is_delete_of("A"), timeout=15)
        ay_events = only_ay.collect_until(
            lambda e: e["Type"] == "process.exit" and e.get("ProcessID") == "y", timeout=15)
    assert all(e.get("SandboxID") == "A" for e in a_events), a_events
    assert {e["Type"] for e in a_events} >= {"sandbox.create", "sandbox.start",
                                             "container.kill", "sandbox.delete"}
    assert any(e.get("ContainerID") == "x" for e in a_events)
    assert all(e.get("SandboxID") == "A" and e.get("ContainerID") == "y" for e in ay_events), \
        ay_events
    assert [e["Type"] for e in ay_events][:2] == ["container.create", "container.start"]


def _ws_connect(sock_path, path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    ws = websocket.WebSocket()
    ws.connect("ws://localhost" + path, socket=s, timeout=timeout)
    return ws


def ws_collect_until(ws, pred, timeout=15):
    ws.settimeout(timeout)
    got = []
    while True:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            pytest.fail(f"WebSocket: no matching event within {timeout} s; got "
                        f"{[e['Type'] for e in got]}")
        assert opcode == websocket.ABNF.OPCODE_TEXT, f"not a text frame: opcode {opcode}"
        text = data.decode("utf-8")
        assert "\n" not in text.strip(), f"one event per frame: {text!r}"
        e = json.loads(text)
        openapi_schema.validate_response(SPEC, "GET", "/v1/events", 200, [e],
                                         content_type="application/x-ndjson")
        got.append(e)
        if pred(e):
            return got


def test_websocket_gets_the_same_events(kd):
    since = rfc3339_now(-2)
    ws_live = _ws_connect(kd.sock, "/v1/events")
    try:
        assert ws_live.getstatus() == 101
        tok = run_scenario(kd, "wsev")
        live = ws_collect_until(ws_live, is_delete_of("wsev"))
    finally:
        ws_live.close()
    check_scenario_events(live, "wsev", tok)

    ws = _ws_connect(kd.sock, f"/v1/events?sandbox=wsev&since={since}")
    try:
        replay = ws_collect_until(ws, is_delete_of("wsev"))
    finally:
        ws.close()
    with EventStream(kd.sock, f"sandbox=wsev&since={since}") as es:
        ndjson = es.collect_until(is_delete_of("wsev"))
    assert replay == live == ndjson


def test_stream_ends_when_katad_stops(kd):
    es = EventStream(kd.sock)
    try:
        kd.ok("POST", "/v1/sandboxes", sandbox_cfg("s"), expect=201)
        assert es.next(10)["Type"] == "sandbox.create"
        kd.stop()  # asserts exit 0 after SIGTERM, with the stream still open
        assert es.next(10) is None
        assert es.eof, "katad exited but the stream was not closed"
    finally:
        es.close()
    kd.start()


def test_events_for_pause_resume_annotations_update(kd):
    kd.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("p", [container_cfg("c", *FOREVER)]),
          expect=201)
    with EventStream(kd.sock, "sandbox=p") as es:
        kd.ok("POST", "/v1/sandboxes/p/pause", expect=200)
        kd.ok("POST", "/v1/sandboxes/p/resume", expect=200)
        kd.ok("POST", "/v1/sandboxes/p/containers/c/pause", expect=200)
        kd.ok("POST", "/v1/sandboxes/p/containers/c/resume", expect=200)
        kd.ok("PATCH", "/v1/sandboxes/p/annotations", {"k": "v"}, expect=200)
        kd.ok("PUT", "/v1/sandboxes/p/containers/c/resources", {"pids": {"limit": 5}}, expect=200)
        kd.ok("POST", "/v1/sandboxes/p/release", expect=200)
        tok = kd.exec("p", "c", ["worker"])["Token"]
        kd.ok("POST", f"/v1/sandboxes/p/containers/c/processes/{tok}/signal", {"Signal": 9},
              expect=204)
        kd.ok("DELETE", "/v1/sandboxes/p?force=true", expect=204)
        got = es.collect_until(is_delete_of("p"))
    uid = os.getuid()
    find_in_order(got, [(t, (lambda t: lambda e: e["Type"] == t and e.get("UID") == uid)(t))
                        for t in ("sandbox.pause", "sandbox.resume", "container.pause",
                                  "container.resume", "sandbox.annotations", "container.update",
                                  "sandbox.release", "process.exec", "process.signal",
                                  "sandbox.delete")])
    sig = next(e for e in got if e["Type"] == "process.signal")
    assert sig["ProcessID"] == tok and sig["Signal"] in (9, "SIGKILL", "KILL"), sig
    ex = next(e for e in got if e["Type"] == "process.exit" and e.get("ProcessID") == tok)
    assert ex["ExitCode"] == 137


def _raw_request(sock_path, method, path, body):
    """One request on a fresh connection, without curl (fast, for bulk event generation)."""
    data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                  .encode() + data)
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    status = int(resp.split(b" ", 2)[1])
    return status


@pytest.mark.timeout(90)
def test_replay_keeps_the_last_1024_events(kd):
    since = rfc3339_now(-2)
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("many"), expect=201)  # evicted below
    n = 1100
    for i in range(n):
        assert _raw_request(kd.sock, "PATCH", "/v1/sandboxes/many/annotations",
                            {"n": str(i)}) == 200
    with EventStream(kd.sock, f"since={since}") as es:
        kd.ok("DELETE", "/v1/sandboxes/many", expect=204)
        got = es.collect_until(is_delete_of("many"), timeout=30)
    replayed, live = got[:-1], got[-1]
    assert len(replayed) == 1024, f"replayed {len(replayed)} events"
    assert all(e["Type"] == "sandbox.annotations" for e in replayed)
    assert live["Type"] == "sandbox.delete"


@pytest.mark.parametrize("since", ["{base}.5Z", "{base}.123456789Z", "{base}%2B00:00"])
def test_since_accepts_rfc3339_forms(kd, since):
    kd.ok("POST", "/v1/sandboxes", sandbox_cfg("x"), expect=201)
    base = rfc3339_now(-60)[:-1]
    with EventStream(kd.sock, "since=" + since.format(base=base)) as es:
        assert es.status == 200, es.status_line
        first = es.next(10)
    assert first is not None and first["Type"] == "sandbox.create", first
