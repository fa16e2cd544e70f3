"""The lifecycle through katactl (docs/katactl.md): output, exit statuses, errors, usage."""

import json
import os
import re
import select
import subprocess
import time

import pytest

from conftest import (KATACTL_BIN, KATACTL_BIN_SRC, container_cfg, run_katactl, sandbox_cfg,
                      state_of)

FOREVER = ["nginx", "-g", "daemon off;"]


def write_json(k, name, obj):
    path = os.path.join(str(k.root), name)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def ok(k, *args, **kw):
    rc, out, err = k.katactl(*args, **kw)
    assert rc == 0, f"katactl {' '.join(map(str, args))}: exit {rc}\nstdout: {out}\nstderr: {err}"
    return out


def requests_seen(k):
    return sum(1 for ln in k.log_text().splitlines() if "(uid " in ln and "->" not in ln)


def test_binary_exists():
    assert os.access(KATACTL_BIN, os.X_OK), f"katactl not built: {KATACTL_BIN_SRC}"


def test_version():
    rc, out, err = run_katactl("--version", socket_path="/nonexistent/katad.sock")
    assert rc == 0, err
    assert re.match(r"^katactl \S+\n?$", out), out


def test_lifecycle(katad):
    k = katad()
    cfg = write_json(k, "web.json", sandbox_cfg("web", [
        container_cfg("app", *FOREVER),
        container_cfg("side", "sh", "-c", "sleep 0.3; exit 4")], annotations={"gone": "x"}))

    assert ok(k, "sandbox", "create", "-f", cfg).strip() == "web"
    assert state_of(k.sandbox("web")) == "ready"

    out = ok(k, "sandbox", "list")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "STATE", "HYPERVISOR", "CONTAINERS", "CREATED"], lines
    row = lines[1].split()
    assert row[:3] == ["web", "ready", "mock"], lines
    assert len(lines) == 2
    listed = json.loads(ok(k, "-o", "json", "sandbox", "list"))
    assert [s["ID"] for s in listed] == ["web"]
    assert json.loads(ok(k, "--output", "json", "sandbox", "ls")) == listed

    status = ok(k, "sandbox", "status", "web")
    fields = dict(re.split(r":\s*", ln.strip(), maxsplit=1) for ln in status.strip().splitlines()
                  if ":" in ln)
    assert fields.get("ID") == "web" and fields.get("State") == "ready", status
    assert "app=ready" in fields.get("Containers", ""), status
    assert "gone=x" in fields.get("Annotations", ""), status
    st_json = json.loads(ok(k, "-o", "json", "sandbox", "inspect", "web"))
    assert st_json["ID"] == "web" and state_of(st_json) == "ready"

    assert ok(k, "sandbox", "start", "web").strip() == "web"
    assert state_of(k.sandbox("web")) == "running"

    # exec: the exit status propagates
    rc, out, err = k.katactl("exec", "web", "app", "sh", "-c", "exit 3")
    assert rc == 3, (rc, out, err)
    rc, _, err = k.katactl("exec", "-e", "A=b", "--env", "C=d", "-w", "/tmp", "-u", "0",
                           "web", "app", "true")
    assert rc == 0, err
    rc, out, err = k.katactl("-o", "json", "exec", "web", "app", "sh", "-c", "exit 5")
    assert rc == 5, (rc, out, err)
    ex = json.loads(out)
    assert ex["ExitCode"] == 5 and "Token" in ex and "Pid" in ex, ex
    # words after CID belong to the command, even if they look like options
    rc, _, err = k.katactl("exec", "web", "app", "exit", "--help")
    assert rc != 2, f"exec parsed the command's own arguments: {err}"

    # detached exec, signal, wait
    tok = ok(k, "exec", "-d", "web", "app", "worker").strip()
    assert re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", tok), tok
    assert ok(k, "signal", "--signal", "KILL", "web", "app", tok).strip() == tok
    assert ok(k, "wait", "web", "app", tok).strip() == "137"
    # the side container exits on its own
    assert ok(k, "wait", "web", "side").strip() == "4"

    # ps, stats, update, annotations
    out = ok(k, "ps", "web", "app")
    assert "PID" in out.splitlines()[0] and "nginx" in out, out
    ps = json.loads(ok(k, "-o", "json", "container", "ps", "web", "app"))
    assert "CMD" in ps["Titles"]
    out = ok(k, "stats", "web")
    assert "CONTAINER" in out and "app" in out, out
    ok(k, "container", "stats", "web", "app")
    assert ok(k, "container", "update", "web", "app", "--memory", "256M", "--pids", "50") \
        .strip() == "app"
    cs = k.ok("GET", "/v1/sandboxes/web/containers/app/stats", expect=200)
    assert cs["CgroupStats"]["MemoryStats"]["Usage"]["Limit"] == 256 << 20
    assert cs["CgroupStats"]["PidsStats"]["Limit"] == 50
    out = ok(k, "sandbox", "annotations", "web", "b=2", "a=1", "--remove", "gone")
    lines = out.strip().splitlines()
    assert "a=1" in lines and "b=2" in lines and not any(ln.startswith("gone=") for ln in lines)
    assert lines == sorted(lines)
    assert k.ok("GET", "/v1/sandboxes/web/annotations", expect=200).get("gone") is None

    # containers: create on the running sandbox, start, list, kill, stop, delete
    assert ok(k, "container", "create", "web", "--id", "extra", "--rootfs", "/srv/x", "--",
              "nginx", "-g", "daemon off;").strip() == "extra"
    c = k.container("web", "extra")
    assert state_of(c) == "ready" and c["RootFs"] == "/srv/x"
    assert ok(k, "container", "start", "web", "extra").strip() == "extra"
    out = ok(k, "container", "list", "web")
    hdr = out.strip().splitlines()[0].split()
    assert hdr == ["ID", "STATE", "PID", "STARTED"], out
    rows = {ln.split()[0]: ln.split() for ln in out.strip().splitlines()[1:]}
    assert rows["extra"][1] == "running" and rows["side"][1] == "stopped", out
    assert ok(k, "container", "kill", "--signal", "USR1", "web", "app").strip() == "app"
    assert ok(k, "wait", "web", "app").strip() == "138"
    assert ok(k, "container", "stop", "--timeout", "1", "web", "extra").strip() == "extra"
    assert k.container("web", "extra")["ExitCode"] == 143
    out = ok(k, "container", "status", "web", "extra")
    assert re.search(r"Exit code:\s*143", out), out
    assert ok(k, "container", "rm", "web", "extra").strip() == "extra"
    assert [c["ID"] for c in k.ok("GET", "/v1/sandboxes/web/containers", expect=200)] \
        == ["app", "side"]

    # pause/resume/release/stop/delete
    assert ok(k, "sandbox", "pause", "web").strip() == "web"
    assert state_of(k.sandbox("web")) == "paused"
    assert ok(k, "sandbox", "resume", "web").strip() == "web"
    assert ok(k, "sandbox", "release", "web").strip() == "web"
    assert ok(k, "sandbox", "stop", "--force", "web").strip() == "web"
    assert state_of(k.sandbox("web")) == "stopped"
    assert ok(k, "sandbox", "delete", "web").strip() == "web"
    assert json.loads(ok(k, "-o", "json", "sandbox", "list")) == []
    assert ok(k, "sandbox", "list").strip().splitlines()[0].split()[0] == "ID"


def test_create_options(katad):
    k = katad()
    # no -f: {} and a generated id
    sid = ok(k, "sandbox", "create").strip()
    assert re.match(r"^[0-9a-f]{32}$", sid), sid
    # --id overrides the file's ID; --start starts it
    cfg = write_json(k, "s.json", sandbox_cfg("fromfile", [container_cfg("c", *FOREVER)]))
    assert ok(k, "sandbox", "create", "--start", "-f", cfg, "--id", "override").strip() \
        == "override"
    assert state_of(k.sandbox("override")) == "running"
    assert k.api("GET", "/v1/sandboxes/fromfile").status == 404
    # run, reading the file from stdin, options after positional-less verbs in any order
    out = ok(k, "sandbox", "run", "--id=ran", "-f", "-",
             input=json.dumps(sandbox_cfg("x", [container_cfg("c", *FOREVER)])))
    assert out.strip() == "ran"
    assert state_of(k.sandbox("ran")) == "running"
    # -o json create prints the API's answer
    st = json.loads(ok(k, "-o", "json", "sandbox", "create", "--id", "j"))
    assert st["ID"] == "j" and state_of(st) == "ready"
    # a delete with --force after the SID
    assert ok(k, "sandbox", "rm", "ran", "--force").strip() == "ran"


def test_errors_exit_1(katad):
    k = katad()
    k.ok("POST", "/v1/sandboxes", sandbox_cfg("web", [container_cfg("app", *FOREVER)]),
         expect=201)
    rc, out, err = k.katactl("sandbox", "status", "nope")
    assert rc == 1, (rc, out, err)
    assert out == ""
    assert err.startswith("katactl: ") and "(sandbox_not_found)" in err and "nope" in err, err
    rc, out, err = k.katactl("sandbox", "pause", "web")
    assert rc == 1 and "(wrong_state)" in err, (rc, err)
    rc, out, err = k.katactl("container", "start", "web", "app")
    assert rc == 1 and "(wrong_state)" in err, (rc, err)
    rc, out, err = k.katactl("sandbox", "create", "--id", "web")
    assert rc == 1 and "(already_exists)" in err, (rc, err)
    rc, out, err = k.katactl("-o", "json", "sandbox", "status", "nope")
    assert rc == 1 and "(sandbox_not_found)" in err, (rc, err)
    rc, out, err = k.katactl("factory", "status")
    assert rc == 1 and "(not_implemented)" in err, (rc, err)
    rc, out, err = k.katactl("interface", "list", "web")
    assert rc == 1 and "(not_implemented)" in err, (rc, err)
    # an input file that is not JSON: its line and column, exit 1, nothing sent
    bad = write_json(k, "bad.json", '{\n  "ID": "x",\n  oops\n}\n')
    seen = requests_seen(k)
    rc, out, err = k.katactl("sandbox", "create", "-f", bad)
    assert rc == 1, (rc, out, err)
    assert re.search(r"bad\.json:3:\d+|line\D*3\D+column", err), err
    rc, out, err = k.katactl("sandbox", "create", "-f", write_json(k, "arr.json", "[1, 2]"))
    assert rc == 1, (rc, out, err)
    rc, out, err = k.katactl("sandbox", "create", "-f", os.path.join(str(k.root), "missing"))
    assert rc == 1, (rc, out, err)
    assert requests_seen(k) == seen, "katactl sent a request for an invalid input file"
    assert k.snapshot()[0]["ID"] == "web" and len(k.snapshot()) == 1


def test_unreachable_socket_125(katad, tmp_path):
    rc, out, err = run_katactl("sandbox", "list", socket_path="/nonexistent/katad.sock")
    assert rc == 125, (rc, out, err)
    assert err.startswith("katactl: cannot reach katad at /nonexistent/katad.sock: "), err
    # a socket file nobody listens on (katad killed)
    k = katad()
    k.kill9()
    rc, out, err = k.katactl("sandbox", "list")
    assert rc == 125, (rc, out, err)
    assert f"cannot reach katad at {k.sock}" in err
    # version prints the client's version even then
    rc, out, err = k.katactl("version")
    assert rc == 125, (rc, out, err)
    assert re.search(r"Client version", out), out
    # KATAD_SOCKET is the default socket
    k.start()
    rc, out, err = run_katactl("-o", "json", "sandbox", "list", env={"KATAD_SOCKET": k.sock})
    assert rc == 0 and json.loads(out) == [], (rc, out, err)


HELP_PATHS = [
    [], ["sandbox"], ["container"], ["sandbox", "create"], ["sandbox", "run"],
    ["sandbox", "list"], ["sandbox", "status"], ["sandbox", "start"], ["sandbox", "stop"],
    ["sandbox", "pause"], ["sandbox", "resume"], ["sandbox", "release"], ["sandbox", "delete"],
    ["sandbox", "stats"], ["sandbox", "annotations"], ["container", "create"],
    ["container", "list"], ["container", "status"], ["container", "start"],
    ["container", "pause"], ["container", "resume"], ["container", "stop"],
    ["container", "delete"], ["container", "kill"], ["container", "stats"],
    ["container", "update"], ["container", "ps"], ["ps"], ["exec"], ["wait"], ["signal"],
    ["winsize"], ["stats"], ["events"], ["version"], ["device"], ["device", "add"],
    ["interface"], ["interface", "list"], ["interface", "add"], ["interface", "remove"],
    ["route"], ["route", "list"], ["route", "update"], ["factory"], ["factory", "status"],
    ["factory", "init"], ["factory", "destroy"],
]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: "-".join(p) or "top")
def test_help_at_every_level(path):
    for argv in ([*path, "--help"], [*path, "-h"], ["help", *path]):
        rc, out, err = run_katactl(*argv, socket_path="/nonexistent/katad.sock")
        assert rc == 0, f"katactl {' '.join(argv)}: exit {rc}\n{err}"
        assert "Usage" in out or "usage" in out, f"katactl {' '.join(argv)}: {out!r}"
        assert "cannot reach" not in err


@pytest.mark.parametrize("argv", [
    ["bogus"],
    ["--bogus-option", "sandbox", "list"],
    ["sandbox"],
    ["sandbox", "bogus"],
    ["sandbox", "status"],
    ["sandbox", "status", "a", "b"],
    ["sandbox", "start", "../etc"],
    ["sandbox", "status", "a/b"],
    ["sandbox", "status", "x" * 65],
    ["sandbox", "stop", "--timeout", "abc", "web"],
    ["sandbox", "stop", "--bogus", "web"],
    ["container", "kill", "--signal", "NOPE", "web", "app"],
    ["container", "kill", "--signal", "65", "web", "app"],
    ["container", "kill", "web"],
    ["container", "update", "web", "app"],
    ["container", "update", "web", "app", "--memory", "lots"],
    ["exec", "web", "app"],
    ["exec", "web"],
    ["wait"],
    ["winsize", "web", "app", "p", "70000", "80"],
    ["winsize", "web", "app", "p", "-1", "80"],
    ["signal", "web", "app"],
    ["-o", "yaml", "sandbox", "list"],
    ["container", "create", "web", "--id", "bad/id"],
    ["events", "--sandbox", ".."],
])
def test_usage_errors_exit_2(katad, argv):
    k = katad()
    seen = requests_seen(k)
    rc, out, err = k.katactl(*argv)
    assert rc == 2, f"katactl {' '.join(argv)}: exit {rc} (expected 2)\n{out}\n{err}"
    assert "sage" in err, f"no usage on stderr: {err!r}"
    assert requests_seen(k) == seen, "a usage error reached katad"


def _popen_katactl(k, *args):
    from conftest import track
    return track(subprocess.Popen([KATACTL_BIN, "--socket", k.sock, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))


_pending = {}  # pid -> bytes read from its stdout but not yet returned as lines


def _readline(p, timeout=10):
    """The next line of p's stdout, or None after timeout (unbuffered, select-safe)."""
    deadline = time.monotonic() + timeout
    buf = _pending.get(p.pid, b"")
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        r, _, _ = select.select([p.stdout.fileno()], [], [], max(0.0, remaining))
        if not r:
            _pending[p.pid] = buf
            return None
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            _pending[p.pid] = b""
            return buf.decode() or None
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    _pending[p.pid] = rest
    return line.decode() + "\n"


def test_exec_exit_status_after_a_signal(katad):
    from conftest import EventStream, untrack
    k = katad()
    k.ok("POST", "/v1/sandboxes?start=true", sandbox_cfg("web", [container_cfg("app", *FOREVER)]),
         expect=201)
    with EventStream(k.sock, "sandbox=web&container=app") as es:
        p = _popen_katactl(k, "exec", "web", "app", "my-daemon", "--serve")
        try:
            ev = es.collect_until(lambda e: e["Type"] == "process.exec", timeout=10)[-1]
            k.ok("POST", f"/v1/sandboxes/web/containers/app/processes/{ev['ProcessID']}/signal",
                 {"Signal": "SIGTERM"}, expect=204)
            rc = p.wait(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            untrack(p)
    assert rc == 143, (rc, p.stderr.read())


def test_events_command(katad):
    from conftest import untrack
    k = katad()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    p = _popen_katactl(k, "events", "--sandbox", "ev", "--since", since)
    pj = _popen_katactl(k, "-o", "json", "events", "--since", since, "--sandbox", "ev")
    try:
        k.ok("POST", "/v1/sandboxes", sandbox_cfg("ev", [container_cfg("c", *FOREVER)]),
             expect=201)
        first = _readline(pj)
        assert first is not None, "katactl -o json events printed nothing"
        assert json.loads(first)["Type"] == "sandbox.create"
        k.ok("POST", "/v1/sandboxes/ev/start", expect=200)
        k.ok("POST", "/v1/sandboxes/ev/containers/c/kill", {"Signal": 9}, expect=204)
        lines = []
        while not any(" process.exit " in ln for ln in lines):
            ln = _readline(p)
            assert ln, f"katactl events stopped early: {lines}"
            lines.append(ln)
        create = next(ln for ln in lines if " sandbox.create " in ln)
        cols = create.split()
        assert cols[1:4] == ["sandbox.create", "ev", "-"], create
        assert "uid=%d" % os.getuid() in create
        kill = next(ln for ln in lines if " container.kill " in ln)
        assert kill.split()[2:4] == ["ev", "c"] and "signal=9" in kill, kill
        ex = next(ln for ln in lines if " process.exit " in ln)
        assert "exit=137" in ex and "process=c" in ex, ex
        more = [_readline(pj) for _ in range(3)]
        assert all(m and json.loads(m)["SandboxID"] == "ev" for m in more), more
        # katad ends the stream when it stops: katactl exits 0
        k.stop()
        assert p.wait(timeout=10) == 0
        assert pj.wait(timeout=10) == 0
    finally:
        for q in (p, pj):
            if q.poll() is None:
                q.kill()
                q.wait(5)
            untrack(q)
    k.start()
