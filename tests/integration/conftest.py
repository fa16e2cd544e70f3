"""Fixtures and helpers of katad's integration tests.

Every test talks to a real katad (mock hypervisor) started on a fresh socket, state dir and run dir:

    def test_x(katad):
        k = katad()                       # or katad("--store", "fs", boot_delay_ms=2000)
        status, body = k.api("POST", "/v1/sandboxes", {"ID": "web"})
        rc, out, err = k.katactl("sandbox", "list")
        k.restart()                       # SIGTERM (must exit 0), then the same command line
        k.restart(kill9=True)             # SIGKILL, then the same command line

`api()` uses curl, as a user would, and validates every response body against api/openapi.yaml
(the operation found for the method and path, the HTTP status; errors of undocumented routes
against the `Error` schema) and that an error body's `status` is the HTTP status.

Binaries: $KATAD_BIN (default <repo>/build/katad), $KATACTL_BIN (default <repo>/build/katactl).
A missing binary fails the tests that need it; nothing is skipped.

Time discipline: each test phase runs under SIGALRM (60 s, or @pytest.mark.timeout(N)); every
subprocess, socket read and poll loop has its own bound; every katad process is tracked and killed
at teardown, even when the test failed, and at interpreter exit.
"""

import atexit
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_schema  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KATAD_BIN_SRC = os.environ.get("KATAD_BIN") or str(REPO / "build" / "katad")
KATACTL_BIN_SRC = os.environ.get("KATACTL_BIN") or str(REPO / "build" / "katactl")

# The binaries under test are copied once per session, so that a rebuild running concurrently
# (make in build/) cannot swap or truncate them in the middle of the run.
_BIN_DIR = tempfile.mkdtemp(prefix="katad-it-bin-")
atexit.register(shutil.rmtree, _BIN_DIR, True)


def _snapshot(path):
    if not os.access(path, os.X_OK):
        return path  # missing: the tests that need it fail with its original path
    dst = os.path.join(_BIN_DIR, os.path.basename(path))
    shutil.copy2(path, dst)
    return dst


KATAD_BIN = _snapshot(KATAD_BIN_SRC)
KATACTL_BIN = _snapshot(KATACTL_BIN_SRC)
SPEC_PATH = REPO / "api" / "openapi.yaml"
SPEC = openapi_schema.load_spec(str(SPEC_PATH))
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}

DEFAULT_PHASE_TIMEOUT = 60  # seconds, per setup / call / teardown phase
READY_TIMEOUT = 10          # katad must answer on its socket within this
STOP_TIMEOUT = 10           # SIGTERM → exit, else SIGKILL
CURL_TIMEOUT = 30           # default --max-time of api()
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GEN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


# ================================================================ time discipline

class PhaseTimeout(Exception):
    pass


def _phase_limit(item):
    m = item.get_closest_marker("timeout")
    return int(m.args[0]) if m and m.args else DEFAULT_PHASE_TIMEOUT


def _run_with_alarm(item, phase):
    limit = _phase_limit(item)

    def on_alarm(signum, frame):
        raise PhaseTimeout(f"{item.nodeid}: {phase} exceeded {limit} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    return old


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    old = _run_with_alarm(item, "setup")
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = _run_with_alarm(item, "call")
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    old = _run_with_alarm(item, "teardown")
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ================================================================ process tracking

_LIVE = {}  # pid -> Popen of every process the suite started that may outlive a test
_LIVE_LOCK = threading.Lock()


def track(proc):
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc
    return proc


def untrack(proc):
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)


def _kill_all_tracked():
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
        _LIVE.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass


atexit.register(_kill_all_tracked)


def pytest_sessionfinish(session, exitstatus):
    _kill_all_tracked()


# ================================================================ small helpers

def wait_until(predicate, timeout=10.0, what="condition", interval=0.05):
    """Polls predicate() until it returns a truthy value (returned); fails after timeout.

    The timeout is a bound against hanging, not an assertion about speed."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def container_cfg(cid, *args, **extra):
    """A ContainerConfig running Cmd.Args=args (default: runs until signalled)."""
    cfg = {"ID": cid, "RootFs": "/srv/rootfs/" + (cid or "gen"),
           "Cmd": {"Args": list(args) or ["sleep", "infinity"]}}
    cfg.update(extra)
    if cid is None:
        del cfg["ID"]
    return cfg


def sandbox_cfg(sid, containers=(), annotations=None, **extra):
    cfg = {"ID": sid, "HypervisorType": "mock", "Containers": list(containers)}
    if annotations is not None:
        cfg["Annotations"] = annotations
    cfg.update(extra)
    if sid is None:
        del cfg["ID"]
    return cfg


def state_of(obj):
    return obj["State"]["state"]


def containers_by_id(sandbox_status):
    return {c["ID"]: c for c in sandbox_status["ContainersStatus"]}


def assert_error(resp, status, code=None):
    """resp is (status, body): an error of the documented shape with this status/code."""
    st, body = resp[0], resp[1]
    assert st == status, f"expected HTTP {status}{' ' + code if code else ''}, got {st}: {body!r}"
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert set(body) == {"code", "message", "status"}, f"error body keys: {sorted(body)}"
    assert body["status"] == status, body
    assert isinstance(body["message"], str) and body["message"], body
    if code is not None:
        assert body["code"] == code, f"expected code {code}, got {body['code']}: {body['message']}"
    return body


class Resp(tuple):
    """(status, body) with .headers (lower-case names), .text and .content_type."""

    def __new__(cls, status, body, headers, text, content_type):
        r = super().__new__(cls, (status, body))
        r.headers = headers
        r.text = text
        r.content_type = content_type
        return r

    @property
    def status(self):
        return self[0]

    @property
    def body(self):
        return self[1]


def _parse_headers(raw):
    """Last header block of a curl -D dump (skips 1xx interim responses)."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw) if b.strip()]
    headers = {}
    status_line = ""
    for block in blocks:
        lines = block.splitlines()
        if not lines or not lines[0].startswith("HTTP/"):
            continue
        status_line = lines[0]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
    return status_line, headers


def validate(method, path, status, body, content_type=None):
    """Validates a response against the spec (or the Error schema for undocumented routes)."""
    p = path.split("?", 1)[0]
    try:
        tmpl, _ = openapi_schema.find_operation(SPEC, method, p)
    except AssertionError:
        tmpl = None
    if status >= 400:
        assert isinstance(body, dict), f"{method} {path} -> {status}: error body not JSON: {body!r}"
        openapi_schema.validate_schema(SPEC, ERROR_SCHEMA, body, f"{method} {path} -> {status}")
        assert body.get("status") == status, \
            f"{method} {path}: HTTP {status} but the error body says {body.get('status')}"
    if tmpl is None:
        assert status >= 400, f"{method} {path} is not in the spec but answered {status}"
        return
    ct = None
    if content_type and not content_type.startswith("application/json"):
        ct = content_type
    openapi_schema.validate_response(SPEC, method, tmpl, status, body, content_type=ct)


# ================================================================ katad

class Katad:
    """One katad instance (its directories outlive restarts)."""

    def __init__(self, root, extra=(), store=None, boot_delay_ms=None, socket_group=None,
                 wrapper=None, socket_arg=True, log_level="debug"):
        self.root = Path(root)
        self.sock = str(self.root / "katad.sock")
        self.state_dir = str(self.root / "state")
        self.run_dir = str(self.root / "run")
        self.store = store
        self.extra = list(extra)
        self.boot_delay_ms = boot_delay_ms
        self.socket_group = socket_group
        self.wrapper = list(wrapper or [])
        self.socket_arg = socket_arg
        self.log_level = log_level
        self.proc = None
        self.runs = 0
        self.expect_clean_exit = True

    # ---------------------------------------------------------------- process

    def cmdline(self):
        cmd = [KATAD_BIN]
        if self.socket_arg:
            cmd += ["--socket", self.sock]
        cmd += ["--state-dir", self.state_dir, "--run-dir", self.run_dir, "--hypervisor", "mock",
                "--log-level", self.log_level]
        if self.store:
            cmd += ["--store", self.store]
        if self.boot_delay_ms is not None:
            cmd += ["--mock-boot-delay-ms", str(self.boot_delay_ms)]
        if self.socket_group:
            cmd += ["--socket-group", self.socket_group]
        return self.wrapper + cmd + self.extra

    @property
    def log_path(self):
        return self.root / f"katad.{self.runs}.log"

    def start(self, wait=True):
        if not os.access(KATAD_BIN, os.X_OK):
            pytest.fail(f"katad binary not found or not executable: {KATAD_BIN_SRC} "
                        "(build it: cd build && make -j2, or set KATAD_BIN)")
        assert self.proc is None or self.proc.poll() is not None, "katad already running"
        self.runs += 1
        log = open(self.log_path, "wb")
        try:
            self.proc = track(subprocess.Popen(self.cmdline(), stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"katad exited with {self.proc.returncode} before answering\n"
                            + self.log_tail())
            if self.ping():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"katad did not answer on {self.sock} within {timeout} s\n"
                            + self.log_tail())
            time.sleep(0.02)

    def ping(self, timeout=2.0):
        """True when GET / answers 200 on the socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(self.sock)
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM; SIGKILL after timeout. Returns (exit status, whether SIGKILL was needed)."""
        if self.proc is None:
            return None, False
        if self.proc.poll() is not None:
            untrack(self.proc)
            return self.proc.returncode, False
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
            killed = False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
            killed = True
        untrack(self.proc)
        return rc, killed

    def stop(self):
        """Graceful stop: SIGTERM must make katad exit 0 within STOP_TIMEOUT."""
        rc, killed = self.terminate()
        assert not killed, f"katad did not exit within {STOP_TIMEOUT} s of SIGTERM\n" \
            + self.log_tail()
        assert rc == 0, f"katad exited with {rc} after SIGTERM\n" + self.log_tail()

    def kill9(self):
        assert self.running(), "katad is not running"
        self.proc.kill()
        self.proc.wait(timeout=10)
        untrack(self.proc)

    def restart(self, kill9=False):
        if kill9:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def log_text(self):
        out = []
        for n in range(1, self.runs + 1):
            p = self.root / f"katad.{n}.log"
            try:
                out.append(f"--- katad run {n} ({p}) ---\n" + p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def log_tail(self, lines=40):
        text = self.log_text().splitlines()
        return "katad log (tail):\n" + "\n".join(text[-lines:])

    # ---------------------------------------------------------------- API

    def api(self, method, path, body=None, headers=None, raw=None, timeout=CURL_TIMEOUT,
            content_type="application/json", check=True, extra_curl=()):
        """One request with curl. Returns Resp (status, parsed JSON or text or None).

        body: a JSON-able value; raw: str/bytes sent as is. content_type: None to let curl pick
        its default. check: validate against the spec. The status is 0 when curl failed."""
        return curl_api(self.sock, method, path, body=body, headers=headers, raw=raw,
                        timeout=timeout, content_type=content_type, check=check,
                        extra_curl=extra_curl, tmpdir=str(self.root))

    def ok(self, method, path, body=None, expect=None, **kw):
        """api() that must succeed (2xx, or exactly `expect`); returns the body."""
        r = self.api(method, path, body, **kw)
        if expect is None:
            assert 200 <= r.status < 300, f"{method} {path} -> {r.status}: {r.body!r}"
        else:
            assert r.status == expect, f"{method} {path} -> {r.status} (expected {expect}): " \
                f"{r.body!r}"
        return r.body

    def snapshot(self):
        """Full GET /v1/sandboxes, sorted, with CreatedAt kept (for before/after comparisons)."""
        st, body = self.api("GET", "/v1/sandboxes")
        assert st == 200, body
        return sorted(body, key=lambda s: s["ID"])

    # shortcuts
    def sandbox(self, sid):
        return self.ok("GET", f"/v1/sandboxes/{sid}", expect=200)

    def container(self, sid, cid):
        return self.ok("GET", f"/v1/sandboxes/{sid}/containers/{cid}", expect=200)

    def exec(self, sid, cid, args, **cmd):
        cmd["Args"] = list(args)
        return self.ok("POST", f"/v1/sandboxes/{sid}/containers/{cid}/processes", cmd,
                       expect=201)

    def wait(self, sid, cid, pid=None, timeout=CURL_TIMEOUT):
        body = self.ok("POST", f"/v1/sandboxes/{sid}/containers/{cid}/processes/{pid or cid}/wait",
                       expect=200, timeout=timeout)
        return body["ExitCode"]

    # ---------------------------------------------------------------- katactl

    def katactl(self, *args, input=None, timeout=30, socket_path=None, env=None):
        return run_katactl(*args, socket_path=socket_path or self.sock, input=input,
                           timeout=timeout, env=env)


def curl_api(sock, method, path, body=None, headers=None, raw=None, timeout=CURL_TIMEOUT,
             content_type="application/json", check=True, extra_curl=(), tmpdir=None):
    fd, hdr_path = tempfile.mkstemp(prefix="hdr-", dir=tmpdir)
    os.close(fd)
    try:
        cmd = ["curl", "-s", "-S", "--unix-socket", sock, "-X", method, "-w", "\n%{http_code}",
               "-D", hdr_path, "--max-time", str(timeout)]
        hdrs = list(headers or [])
        data = None
        if body is not None and raw is not None:
            raise ValueError("body and raw are exclusive")
        if body is not None:
            data = json.dumps(body).encode()
        elif raw is not None:
            data = raw.encode() if isinstance(raw, str) else bytes(raw)
        if data is not None:
            cmd += ["--data-binary", "@-"]
            if content_type and not any(h.lower().startswith("content-type:") for h in hdrs):
                hdrs.append("Content-Type: " + content_type)
        for h in hdrs:
            cmd += ["-H", h]
        cmd += list(extra_curl)
        cmd.append("http://localhost" + path)
        p = subprocess.run(cmd, input=data if data is not None else b"", capture_output=True,
                           timeout=timeout + 15)
        out = p.stdout.decode("utf-8", errors="replace")
        text, _, code = out.rpartition("\n")
        status = int(code) if code.strip().isdigit() else 0
        with open(hdr_path, encoding="latin-1") as f:
            _, hdrs_in = _parse_headers(f.read())
    finally:
        os.unlink(hdr_path)
    if status == 0:
        # curl failed (connection refused, timeout...): no HTTP answer to check.
        return Resp(0, None, hdrs_in, text,
                    f"curl exit {p.returncode}: {p.stderr.decode(errors='replace').strip()}")
    ctype = hdrs_in.get("content-type", "")
    parsed = None
    if ctype.startswith("text/"):
        parsed = text  # an empty text body is still a (empty) string
    elif text:
        if ctype.startswith("application/json"):
            try:
                parsed = json.loads(text)
            except ValueError as e:
                raise AssertionError(f"{method} {path} -> {status}: invalid JSON ({e}): "
                                     f"{text[:300]!r}")
        else:
            parsed = text
    if check:
        validate(method, path, status, parsed, ctype or None)
    return Resp(status, parsed, hdrs_in, text, ctype)


def run_katactl(*args, socket_path=None, input=None, timeout=30, env=None):
    if not os.access(KATACTL_BIN, os.X_OK):
        pytest.fail(f"katactl binary not found or not executable: {KATACTL_BIN_SRC} "
                    "(build it: cd build && make -j2, or set KATACTL_BIN)")
    cmd = [KATACTL_BIN]
    if socket_path:
        cmd += ["--socket", socket_path]
    cmd += [str(a) for a in args]
    e = dict(os.environ)
    e.pop("KATAD_SOCKET", None)
    if env:
        e.update(env)
    p = subprocess.run(cmd, input=input.encode() if isinstance(input, str) else input,
                       capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# ================================================================ fixtures

def _short_tmpdir():
    # Unix socket paths are limited to 107 bytes: keep them short and out of pytest's tmp_path.
    return tempfile.mkdtemp(prefix="katad-it-", dir="/tmp")


@pytest.fixture
def katad(request):
    """Factory: katad(*extra_flags, store=, boot_delay_ms=, socket_group=, wrapper=) -> Katad.

    Teardown: SIGTERM each instance still running and assert it exited 0 (SIGKILL after 10 s)."""
    made = []

    def factory(*extra, start=True, **kw):
        k = Katad(_short_tmpdir(), extra, **kw)
        made.append(k)
        if start:
            k.start()
        return k

    yield factory

    problems = []
    for k in made:
        if k.proc is None:
            continue
        was_running = k.proc.poll() is None
        rc, killed = k.terminate()
        if not k.expect_clean_exit:
            continue
        if killed:
            problems.append(f"katad {k.root}: did not exit within {STOP_TIMEOUT} s of SIGTERM\n"
                            + k.log_tail())
        elif was_running and rc != 0:
            problems.append(f"katad {k.root}: exited {rc} after SIGTERM\n" + k.log_tail())
        elif not was_running and rc != 0 and rc != -signal.SIGKILL:
            problems.append(f"katad {k.root}: had died during the test with status {rc}\n"
                            + k.log_tail())
    failed = getattr(request.node, "rep_call", None)
    for k in made:
        if failed is not None and failed.failed:
            # Keep the logs of a failed test in the report.
            sys.stderr.write(k.log_tail(60) + "\n")
        shutil.rmtree(k.root, ignore_errors=True)
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def kd(katad):
    """One default katad (sqlite store unless the daemon's default differs)."""
    return katad()


# ================================================================ event streams

class EventStream:
    """GET /v1/events over a raw HTTP/1.1 connection on the Unix socket (NDJSON, chunked or not).

    next(timeout) returns the next event (dict), or None when the timeout passes."""

    def __init__(self, sock_path, query="", timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(sock_path)
        self.path = "/v1/events" + (("?" + query) if query else "")
        self.s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n"
                       "Accept: application/x-ndjson\r\n\r\n".encode())
        self.buf = b""
        self.body = b""   # decoded body bytes not yet split into lines
        self.chunked = False
        self.eof = False
        self.raw_lines = []
        head = self._read_until(b"\r\n\r\n", timeout)
        if head is None:
            raise AssertionError(f"no response headers from {self.path}")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()

    def _recv(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([self.s], [], [], remaining)
        if not r:
            return False
        data = self.s.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if self.eof or not self._recv(deadline):
                return None
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _pump_body(self, deadline):
        """Moves decoded body bytes from buf to body; False when nothing more arrives in time."""
        if not self.chunked:
            if not self.buf and not self._recv(deadline):
                return False
            self.body += self.buf
            self.buf = b""
            return True
        while True:
            if b"\r\n" in self.buf:
                size_line, _, rest = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.eof = True
                    return False
                if len(rest) >= size + 2:
                    self.body += rest[:size]
                    self.buf = rest[size + 2:]
                    return True
            if self.eof or not self._recv(deadline):
                return False

    def next(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.body:
            if not self._pump_body(deadline):
                return None
        line, _, self.body = self.body.partition(b"\n")
        text = line.decode("utf-8")
        self.raw_lines.append(text)
        if not text.strip():
            return self.next(max(0.0, deadline - time.monotonic()))
        ev = json.loads(text)
        openapi_schema.validate_response(SPEC, "GET", "/v1/events", 200, [ev],
                                         content_type="application/x-ndjson")
        return ev

    def collect_until(self, pred, timeout=15.0):
        """Events up to and including the first for which pred(ev) holds; fails on timeout."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            ev = self.next(max(0.0, deadline - time.monotonic()))
            if ev is None:
                pytest.fail(f"event stream {self.path}: no matching event within {timeout} s; "
                            f"got {[e['Type'] for e in got]}")
            got.append(ev)
            if pred(ev):
                return got

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def quote(s):
    return urllib.parse.quote(s, safe="")
