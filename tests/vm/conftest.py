"""Fixtures and helpers of katad's real-VM tests: katad with the QEMU hypervisor under TCG, the
project's guest kernel and agent (build/guest/vmlinux, build/guest/initrd.img), containers on a
busybox root file system the suite builds itself.

    def test_x(kd, sb):                      # the session's katad, the module's shared sandbox
        code = kd.run(sb.id, "main", ["sh", "-c", "exit 3"])          # exec + wait -> 3
        st = kd.ok("GET", f"/v1/sandboxes/{sb.id}")
    def test_y(katad_factory):
        k = katad_factory()                  # a katad of its own (restart tests)

`api()` uses curl over the Unix socket, as a user would, and validates every response against
api/openapi.yaml with tests/integration/openapi_schema.py (as tests/integration does).

Inputs: $KATAD_BIN (default build/katad), $KATAD_GUEST_KERNEL / $KATAD_GUEST_INITRD (default
build/guest/vmlinux and build/guest/initrd.img), /bin/busybox (busybox-static), QEMU. They are
copied into the session directory first, so that a rebuild running meanwhile cannot change them
under the suite. A missing input fails the tests; nothing is skipped.

Cleanup: every path the suite hands to katad lies in one unique session directory
(/tmp/kvm-XXXXXXXX), which is on the command line of every katad (its binary, its flags) and every
QEMU (its run directory). Fixtures delete their sandboxes and stop their katad; at the end of the
session any process whose command line holds the session directory is killed by pid, any mount
below it is unmounted, and the session fails when there was anything left (the check runs in the
teardown of a session fixture, and again from pytest_sessionfinish and atexit for interrupted runs).
"""

import atexit
import datetime
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
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "tests" / "integration"))
import openapi_schema  # noqa: E402

SPEC = openapi_schema.load_spec(str(REPO / "api" / "openapi.yaml"))
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}

KATAD_SRC = os.environ.get("KATAD_BIN") or str(REPO / "build" / "katad")
KERNEL_SRC = os.environ.get("KATAD_GUEST_KERNEL") or str(REPO / "build" / "guest" / "vmlinux")
INITRD_SRC = os.environ.get("KATAD_GUEST_INITRD") or str(REPO / "build" / "guest" / "initrd.img")
KERNEL_CONFIG = Path(KERNEL_SRC).with_name("kernel.config")
BUSYBOX = os.environ.get("KATAD_TEST_BUSYBOX", "/bin/busybox")
QEMU = "/usr/bin/qemu-system-x86_64"

DEFAULT_PHASE_TIMEOUT = 90  # seconds per setup / call / teardown phase
READY_TIMEOUT = 15          # katad answers on its socket within this
STOP_TIMEOUT = 20           # SIGTERM -> exit, else SIGKILL
CURL_TIMEOUT = 60           # --max-time of one request (a boot under load takes a few seconds)

APPLETS = ("sh echo sleep cat ps id hostname uname true false stty ls dd head yes tr mount touch "
           "wc grep rm kill pwd env mkdir test seq cut").split()

# One unique directory for everything of this session (short: Unix socket paths).
SESSION_DIR = tempfile.mkdtemp(prefix="kvm-", dir="/tmp")


# ================================================================ time discipline

class PhaseTimeout(Exception):
    pass


def _phase(item, phase):
    m = item.get_closest_marker("timeout")
    limit = int(m.args[0]) if m and m.args else DEFAULT_PHASE_TIMEOUT

    def on_alarm(signum, frame):
        raise PhaseTimeout(f"{item.nodeid}: {phase} exceeded {limit} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    return old


def _wrap(item, phase):
    old = _phase(item, phase)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _wrap(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _wrap(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _wrap(item, "teardown")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# ================================================================ leftovers: processes, mounts

def procs_matching(needle):
    """[(pid, argv)] of every process (not us) whose command line contains needle."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # zombies are already dead (their parent reaps them)
        if stat.rsplit(b")", 1)[-1].split()[0:1] == [b"Z"]:
            continue
        if needle.encode() in raw:
            found.append((int(entry), [a.decode(errors="replace") for a in raw.split(b"\0") if a]))
    return found


def qemu_procs(needle):
    return [(pid, argv) for pid, argv in procs_matching(needle)
            if argv and "qemu" in os.path.basename(argv[0])]


def _unescape_mount(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts_under(prefix):
    """Mount points at or below prefix in our mount namespace (/proc/self/mountinfo)."""
    prefix = prefix.rstrip("/")
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape_mount(line.split()[4])
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return out


def sweep(prefix=SESSION_DIR):
    """Kills every process whose command line holds prefix (by pid) and unmounts every mount
    below it. Returns a description of what was found (empty: clean)."""
    found = []
    for _ in range(5):
        procs = procs_matching(prefix)
        if not procs:
            break
        for pid, argv in procs:
            found.append(f"process {pid}: {' '.join(argv)[:300]}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    for _ in range(64):
        mps = mounts_under(prefix)
        if not mps:
            break
        mp = max(mps, key=len)
        found.append(f"mount {mp}")
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)
    return sorted(set(found))


_swept = False


def _final_sweep():
    global _swept
    if _swept:
        return
    _swept = True
    left = sweep()
    if left:
        sys.stderr.write("katad vm tests: cleaned up leftovers at exit:\n  " + "\n  ".join(left) + "\n")
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


atexit.register(_final_sweep)


def pytest_sessionfinish(session, exitstatus):
    # Normally the session fixture already checked and cleaned; this catches interrupted runs.
    left = sweep()
    if left:
        sys.stderr.write("katad vm tests: leftovers at session end (killed/unmounted):\n  "
                         + "\n  ".join(left) + "\n")
        session.exitstatus = 1
    _final_sweep()


# ================================================================ small helpers

def wait_until(predicate, timeout=10.0, what="condition", interval=0.05):
    """Polls predicate() until truthy (returned); fails after timeout (a liveness bound)."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def rfc3339_now(offset_s=0.0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_of(obj):
    return obj["State"]["state"]


def kernel_release():
    """The guest kernel's release from build/guest/kernel.config (header + LOCALVERSION)."""
    text = KERNEL_CONFIG.read_text()
    m = re.search(r"^# Linux/\S+ (\S+) Kernel Configuration", text, re.M)
    assert m, f"no version header in {KERNEL_CONFIG}"
    lv = re.search(r'^CONFIG_LOCALVERSION="(.*)"', text, re.M)
    return m.group(1) + (lv.group(1) if lv else "")


class Resp(tuple):
    """(status, body) with .headers (lower-case names), .text and .content_type."""

    def __new__(cls, status, body, headers, text, content_type):
        r = super().__new__(cls, (status, body))
        r.headers, r.text, r.content_type = headers, text, content_type
        return r

    @property
    def status(self):
        return self[0]

    @property
    def body(self):
        return self[1]


def _parse_headers(raw):
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw) if b.strip()]
    headers = {}
    for block in blocks:
        lines = block.splitlines()
        if not lines or not lines[0].startswith("HTTP/"):
            continue
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
    return headers


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
        assert body.get("status") == status, body
    if tmpl is None:
        assert status >= 400, f"{method} {p} is not in api/openapi.yaml but answered {status}"
        return
    ct = None
    if content_type and not content_type.startswith("application/json"):
        ct = content_type
    openapi_schema.validate_response(SPEC, method, tmpl, status, body, content_type=ct)


def curl_api(sock, method, path, body=None, timeout=CURL_TIMEOUT, check=True, tmpdir=None):
    fd, hdr_path = tempfile.mkstemp(prefix="hdr-", dir=tmpdir)
    os.close(fd)
    try:
        cmd = ["curl", "-s", "-S", "--unix-socket", sock, "-X", method, "-w", "\n%{http_code}",
               "-D", hdr_path, "--max-time", str(timeout)]
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            cmd += ["--data-binary", "@-", "-H", "Content-Type: application/json"]
        cmd.append("http://localhost" + path)
        p = subprocess.run(cmd, input=data or b"", capture_output=True, timeout=timeout + 15)
        out = p.stdout.decode("utf-8", errors="replace")
        text, _, code = out.rpartition("\n")
        status = int(code) if code.strip().isdigit() else 0
        with open(hdr_path, encoding="latin-1") as f:
            hdrs = _parse_headers(f.read())
    finally:
        os.unlink(hdr_path)
    if status == 0:
        return Resp(0, None, hdrs, text,
                    f"curl exit {p.returncode}: {p.stderr.decode(errors='replace').strip()}")
    ctype = hdrs.get("content-type", "")
    parsed = None
    if text:
        if ctype.startswith("application/json"):
            try:
                parsed = json.loads(text)
            except ValueError as e:
                raise AssertionError(f"{method} {path} -> {status}: invalid JSON ({e}): {text[:300]!r}")
        else:
            parsed = text
    if check:
        validate(method, path, status, parsed, ctype or None)
    return Resp(status, parsed, hdrs, text, ctype)


# ================================================================ inputs

def _snapshot(src, name):
    if not os.path.exists(src):
        pytest.fail(f"missing {src} (build it: cd build && make -j2 && make guest)")
    dst = os.path.join(SESSION_DIR, "bin", name)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if not os.path.exists(dst):
        shutil.copy2(src, dst)
    return dst


@pytest.fixture(scope="session")
def inputs():
    """The binaries and guest image, copied into the session directory."""
    if not os.access(QEMU, os.X_OK):
        pytest.fail(f"{QEMU} is missing (apt-get install qemu-system-x86)")
    return {"katad": _snapshot(KATAD_SRC, "katad"),
            "kernel": _snapshot(KERNEL_SRC, "vmlinux"),
            "initrd": _snapshot(INITRD_SRC, "initrd.img")}


def make_rootfs(path):
    """A busybox root file system: /bin/busybox + applets, /etc/passwd with root and u (1000)."""
    if not os.access(BUSYBOX, os.X_OK):
        pytest.fail(f"{BUSYBOX} missing (apt-get install busybox-static)")
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True).stdout
    assert "statically linked" in out or "static-pie" in out, f"{BUSYBOX} is not static: {out}"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "data", "ro"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for a in APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", a))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000:user:/:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nu:x:1000:\nstaff:x:50:u\n")
    return path


@pytest.fixture(scope="session")
def rootfs(inputs):
    return make_rootfs(os.path.join(SESSION_DIR, "rootfs"))


# ================================================================ katad

class Katad:
    """One katad (QEMU hypervisor, TCG); its directories outlive restarts."""

    def __init__(self, root, inputs):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.sock = os.path.join(root, "s")
        self.state_dir = os.path.join(root, "state")
        self.run_dir = os.path.join(root, "run")
        self.conf = os.path.join(root, "katad.conf")
        self.katad = inputs["katad"]
        with open(self.conf, "w") as f:
            f.write(f"[guest]\nkernel = {inputs['kernel']}\ninitrd = {inputs['initrd']}\n"
                    "[hypervisor]\naccelerator = tcg\n")
        self.proc = None
        self.runs = 0

    def cmdline(self):
        return [self.katad, "--config", self.conf, "--hypervisor", "qemu", "--socket", self.sock,
                "--state-dir", self.state_dir, "--run-dir", self.run_dir, "--log-level", "debug"]

    def log_path(self, n=None):
        return os.path.join(self.root, f"katad.{n or self.runs}.log")

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "katad already running"
        self.runs += 1
        with open(self.log_path(), "wb") as log:
            self.proc = subprocess.Popen(self.cmdline(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None:
                pytest.fail(f"katad exited with {self.proc.returncode} before answering\n"
                            + self.log_tail())
            if time.monotonic() > deadline:
                pytest.fail(f"katad did not answer within {READY_TIMEOUT} s\n" + self.log_tail())
            time.sleep(0.05)
        return self

    def ping(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.sock)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        assert self.running(), "katad is not running"
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self):
        """SIGTERM; SIGKILL after STOP_TIMEOUT. Returns (status, killed)."""
        if not self.running():
            return (self.proc.returncode if self.proc else None), False
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT), False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10), True

    def log_text(self):
        out = []
        for n in range(1, self.runs + 1):
            try:
                with open(self.log_path(n), errors="replace") as f:
                    out.append(f"--- katad run {n} ---\n" + f.read())
            except OSError:
                pass
        return "\n".join(out)

    def log_tail(self, lines=60):
        return "katad log (tail):\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def console_tail(self, sid, lines=30):
        p = os.path.join(self.run_dir, "sandboxes", sid, "console.log")
        try:
            with open(p, errors="replace") as f:
                return f"console of {sid}:\n" + "\n".join(f.read().splitlines()[-lines:])
        except OSError:
            return f"(no console log for {sid})"

    # ---------------------------------------------------------------- API

    def api(self, method, path, body=None, timeout=CURL_TIMEOUT, check=True):
        return curl_api(self.sock, method, path, body=body, timeout=timeout, check=check,
                        tmpdir=self.root)

    def ok(self, method, path, body=None, expect=None, **kw):
        r = self.api(method, path, body, **kw)
        if expect is None:
            good = 200 <= r.status < 300
        else:
            good = r.status == expect
        assert good, f"{method} {path} -> {r.status} (expected {expect or '2xx'}): {r.body!r}" \
            + ("\n" + self.log_tail(30) if r.status >= 500 or r.status == 0 else "")
        return r.body

    def sandbox(self, sid):
        return self.ok("GET", f"/v1/sandboxes/{sid}", expect=200)

    def container(self, sid, cid):
        return self.ok("GET", f"/v1/sandboxes/{sid}/containers/{cid}", expect=200)

    def run_sandbox(self, sid, containers=(), **extra):
        cfg = {"ID": sid, "Containers": list(containers)}
        cfg.update(extra)
        st = self.ok("POST", "/v1/sandboxes?start=true", cfg, expect=201)
        assert state_of(st) == "running", st
        assert st["Hypervisor"] == "qemu", st
        return st

    def add_container(self, sid, cfg, start=True):
        st = self.ok("POST", f"/v1/sandboxes/{sid}/containers", cfg, expect=201)
        assert state_of(st) == "ready", st
        if start:
            st = self.ok("POST", f"/v1/sandboxes/{sid}/containers/{cfg['ID']}/start", expect=200)
        return st

    def exec(self, sid, cid, args, **cmd):
        cmd["Args"] = list(args)
        p = self.ok("POST", f"/v1/sandboxes/{sid}/containers/{cid}/processes", cmd, expect=201)
        assert p["Token"] and p["Pid"] > 0, p
        return p

    def wait(self, sid, cid, pid=None, timeout=CURL_TIMEOUT):
        body = self.ok("POST", f"/v1/sandboxes/{sid}/containers/{cid}/processes/{pid or cid}/wait",
                       expect=200, timeout=timeout)
        return body["ExitCode"]

    def run(self, sid, cid, args, timeout=CURL_TIMEOUT, **cmd):
        """exec + wait: the exit code."""
        return self.wait(sid, cid, self.exec(sid, cid, args, **cmd)["Token"], timeout=timeout)

    def sh(self, sid, cid, script, **cmd):
        return self.run(sid, cid, ["sh", "-c", script], **cmd)

    def logs(self, sid, cid):
        """GET …/logs: asserts 200 text/plain, returns the text; validated against the spec after
        the content checks of the caller (see check_logs_spec)."""
        path = f"/v1/sandboxes/{sid}/containers/{cid}/logs"
        r = self.api("GET", path, check=False)
        assert r.status == 200, f"GET {path} -> {r.status}: {r.body!r}"
        assert r.content_type.startswith("text/plain"), f"GET {path}: Content-Type {r.content_type!r}"
        return r.text

    def container_stats(self, sid, cid):
        return self.ok("GET", f"/v1/sandboxes/{sid}/containers/{cid}/stats", expect=200)

    def delete_all(self):
        """Force-deletes every sandbox (teardown)."""
        problems = []
        r = self.api("GET", "/v1/sandboxes", check=False)
        if r.status != 200:
            return [f"GET /v1/sandboxes -> {r.status} {r.body!r}"]
        for s in r.body:
            d = self.api("DELETE", f"/v1/sandboxes/{s['ID']}?force=true", check=False)
            if d.status != 204:
                problems.append(f"DELETE {s['ID']}?force=true -> {d.status} {d.body!r}")
        return problems

    def shutdown(self):
        """Teardown: delete every sandbox, SIGTERM (must exit 0), nothing left behind."""
        problems = []
        if self.running():
            problems += self.delete_all()
            rc, killed = self.terminate()
            if killed:
                problems.append(f"katad did not exit within {STOP_TIMEOUT} s of SIGTERM")
            elif rc != 0:
                problems.append(f"katad exited {rc} after SIGTERM")
        left = qemu_procs(self.root)
        if left:
            problems.append(f"QEMU processes left after deleting every sandbox: {left}")
        mps = mounts_under(self.root)
        if mps:
            problems.append(f"mounts left after deleting every sandbox: {mps}")
        return problems


@pytest.fixture(scope="session", autouse=True)
def _session_guard():
    """Last to tear down: fails the session when a QEMU, a katad or a mount is left over."""
    yield
    left = sweep()
    if left:
        pytest.fail("leftovers at the end of the session (now killed/unmounted):\n  "
                    + "\n  ".join(left))


_made = []


@pytest.fixture(scope="session")
def katad_factory(_session_guard, inputs, rootfs):
    """katad_factory() -> a started Katad of its own (teardown: delete all, stop, check)."""
    made = []

    def factory():
        k = Katad(os.path.join(SESSION_DIR, f"k{len(_made)}"), inputs)
        made.append(k)
        _made.append(k)
        return k.start()

    yield factory
    problems = []
    for k in made:
        problems += [f"{k.root}: {p}" for p in k.shutdown()]
    if problems:
        pytest.fail("\n".join(problems) + "\n" + "\n".join(k.log_tail(40) for k in made))


@pytest.fixture(scope="session")
def kd(katad_factory):
    """The session's shared katad."""
    return katad_factory()


@pytest.fixture
def own_katad(katad_factory, request):
    """A katad for one test only (stopped and checked right after the test)."""
    k = katad_factory()
    yield k
    problems = k.shutdown()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        sys.stderr.write(k.log_tail(80) + "\n")
    if problems:
        pytest.fail("\n".join(problems) + "\n" + k.log_tail(40))


class Sandbox:
    def __init__(self, kd, sid, rootfs):
        self.kd, self.id, self.rootfs = kd, sid, rootfs

    def cfg(self, cid, args, **extra):
        c = {"ID": cid, "RootFs": self.rootfs, "Cmd": {"Args": list(args)}}
        c.update(extra)
        return c


_sid_counter = [0]


def unique_sid(prefix):
    _sid_counter[0] += 1
    return f"{prefix}-{os.getpid()}-{_sid_counter[0]}"


@pytest.fixture
def fresh_sandbox(kd, rootfs, request):
    """fresh_sandbox(containers=(), **cfg) -> Sandbox: a new running sandbox on the shared katad,
    force-deleted after the test."""
    made = []

    def factory(prefix="sb", containers=(), **extra):
        sid = unique_sid(prefix)
        made.append(sid)
        sb = Sandbox(kd, sid, rootfs)
        kd.run_sandbox(sid, [sb.cfg(*c[:2], **(c[2] if len(c) > 2 else {})) for c in containers],
                       **extra)
        return sb

    yield factory
    rep = getattr(request.node, "rep_call", None)
    for sid in made:
        if rep is not None and rep.failed:
            sys.stderr.write(kd.console_tail(sid) + "\n")
        r = kd.api("DELETE", f"/v1/sandboxes/{sid}?force=true", check=False)
        assert r.status in (204, 404), f"DELETE {sid}: {r.status} {r.body!r}"


# ================================================================ event streams

class EventStream:
    """GET /v1/events over a raw HTTP/1.1 connection (NDJSON, chunked or not).

    next(timeout) -> the next event (a dict, not yet validated) or None on timeout."""

    def __init__(self, sock_path, query="", timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(sock_path)
        self.path = "/v1/events" + (("?" + query) if query else "")
        self.s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n"
                       "Accept: application/x-ndjson\r\n\r\n".encode())
        self.buf = b""
        self.body = b""
        self.eof = False
        self.seen = []
        head = self._read_until(b"\r\n\r\n", timeout)
        assert head is not None, f"no response headers from {self.path}"
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        assert self.status == 200, f"{self.path} -> {self.status}"
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

    def _pump(self, deadline):
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
        while True:
            while b"\n" not in self.body:
                if not self._pump(deadline):
                    return None
            line, _, self.body = self.body.partition(b"\n")
            if line.strip():
                ev = json.loads(line.decode())
                self.seen.append(ev)
                return ev

    def wait_for(self, pred, timeout=15.0, what="event"):
        """The first event for which pred holds; fails after timeout (a liveness bound)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.0, deadline - time.monotonic()))
            if ev is None:
                pytest.fail(f"{self.path}: no {what} within {timeout} s; got "
                            f"{[(e.get('Type'), e.get('ContainerID')) for e in self.seen]}")
            if pred(ev):
                return ev

    def validate_seen(self):
        """Every event received so far against the spec's Event schema."""
        openapi_schema.validate_response(SPEC, "GET", "/v1/events", 200, self.seen,
                                         content_type="application/x-ndjson")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
