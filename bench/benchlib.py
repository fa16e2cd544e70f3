"""Shared helpers of katad's benchmarks (stdlib only, /usr/bin/python3).

- HttpUnix: a raw HTTP/1.1 client on an AF_UNIX socket, one persistent keep-alive connection.
- Workspace: one temporary directory per benchmark run; everything the benchmark starts (katad,
  bare QEMUs, katad's detached QEMUs) is found again through it and killed by pid at exit, also on
  Ctrl-C, SIGTERM, SIGHUP and failures.
- bare_qemu_argv: the QEMU command line of vmm/qemu.c build_command_line, for the baselines.
- smaps parsing (PSS, guest RAM region, TCG code cache).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build")
DEFAULT_KATAD = os.path.join(BUILD, "katad")
DEFAULT_KERNEL = os.path.join(BUILD, "guest", "vmlinux")
DEFAULT_INITRD = os.path.join(BUILD, "guest", "initrd.img")
DEFAULT_QEMU = "/usr/bin/qemu-system-x86_64"
DEFAULT_BUSYBOX = "/bin/busybox"
# What katad-agent prints first on the console as PID 1 (agent/guest/main.c: log_info("Starting")).
# log_info is below the agent's default level (warning): it reaches the console only when the kernel
# command line has katad.debug (init_debug_requested), so the benchmarks that watch the console pass
# katad.debug to the bare QEMU and to katad ([guest] kernel_params) alike.
AGENT_FIRST_LINE = b"katad-agent: Starting"
KERNEL_PARAMS_DEBUG = "katad.debug"


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------- HTTP over AF_UNIX

class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__("HTTP %d: %s" % (status, body[:300].decode(errors="replace")))
        self.status = status
        self.body = body

    def code(self):
        try:
            return json.loads(self.body).get("code")
        except ValueError:
            return None


class HttpUnix:
    """One persistent HTTP/1.1 connection; reconnects only when asked to (reconnect())."""

    def __init__(self, path, timeout=120.0):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.reconnect()

    def reconnect(self):
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s
        self.buf = b""
        self.connects = getattr(self, "connects", 0) + 1

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("katad closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def request(self, method, target, body=None):
        """Returns (status, headers dict lower-case, body bytes). Keeps the connection."""
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        head = "%s %s HTTP/1.1\r\nHost: katad\r\n" % (method, target)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        status = int(parts[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "content-length" in headers:
            data = self._exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                data += self._exact(size)
                self._exact(2)
        else:  # read to EOF
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            data, self.buf = self.buf, b""
            self.close()
        if headers.get("connection", "").lower() == "close" and self.sock:
            self.close()
        return status, headers, data

    def call(self, method, target, body=None, ok=(200, 201, 204)):
        if self.sock is None:
            self.reconnect()
        status, headers, data = self.request(method, target, body)
        if status not in ok:
            raise HttpError(status, data)
        if data and headers.get("content-type", "").startswith("application/json"):
            return json.loads(data)
        return data


# ---------------------------------------------------------------------------- statistics

def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(xs, p):
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = []
    out.append("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------- processes, cleanup

def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def pids_mentioning(token):
    """Pids of processes whose command line contains token (our unique workspace path)."""
    tok = token.encode()
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        argv = proc_cmdline(int(name))
        if argv and any(tok in a for a in argv):
            out.append(int(name))
    return out


def kill_pid(pid, grace=3.0):
    """SIGTERM, then SIGKILL after grace seconds; waits until the process is gone or a zombie."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = now() + grace
    while now() < deadline and pid_alive(pid):
        time.sleep(0.02)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = now() + 3
        while now() < deadline and pid_alive(pid):
            time.sleep(0.02)


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


class Workspace:
    """A temporary directory that owns everything started under it. Use as a context manager."""

    def __init__(self, keep=False, prefix="katad-bench-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.keep = keep
        self.children = []  # Popen objects we started
        self.katads = []

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _raise_exit)
        # Ctrl-C raises KeyboardInterrupt even when we were started with SIGINT ignored (a
        # background job of a non-interactive shell).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc):
        # Ignore further Ctrl-C while cleaning up.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.cleanup()
        finally:
            signal.signal(signal.SIGINT, old)
        return False

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def popen(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.children.append(p)
        return p

    def cleanup(self):
        for k in self.katads:
            k.shutdown()
        for p in self.children:
            if p.poll() is None:
                kill_pid(p.pid)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Detached QEMUs of katad (init adopted them) and anything else that names our directory.
        for _ in range(3):
            left = pids_mentioning(self.dir)
            if not left:
                break
            for pid in left:
                kill_pid(pid, grace=1.0)
        left = pids_mentioning(self.dir)
        if left:
            print("warning: processes still running under %s: %s" % (self.dir, left), file=sys.stderr)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept %s" % self.dir, file=sys.stderr)


# ---------------------------------------------------------------------------- rootfs, katad

def make_rootfs(dest, busybox=DEFAULT_BUSYBOX):
    """A container rootfs: /bin/busybox (static) and a symlink per applet."""
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a == "busybox":
            continue
        link = os.path.join(dest, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    return dest


class Katad:
    """katad on QEMU/TCG in its own session (so a Ctrl-C reaches only this script, which then deletes
    the sandboxes through the API before it stops katad)."""

    def __init__(self, ws, katad=DEFAULT_KATAD, kernel=DEFAULT_KERNEL, initrd=DEFAULT_INITRD,
                 kernel_params="", name="katad", log_level=None, extra_config=""):
        self.ws = ws
        self.base = ws.path(name)
        os.makedirs(self.base)
        self.socket = os.path.join(self.base, "k.sock")
        self.state_dir = os.path.join(self.base, "state")
        self.run_dir = os.path.join(self.base, "run")
        self.config = os.path.join(self.base, "katad.conf")
        with open(self.config, "w") as f:
            f.write("[guest]\nkernel = %s\ninitrd = %s\n" % (kernel, initrd))
            if kernel_params:
                f.write("kernel_params = %s\n" % kernel_params)
            f.write("\n[hypervisor]\naccelerator = tcg\n")
            f.write(extra_config)
        argv = [katad, "--hypervisor", "qemu", "--socket", self.socket, "--state-dir", self.state_dir,
                "--run-dir", self.run_dir, "--config", self.config]
        if log_level:
            argv += ["--log-level", log_level]
        self.log = open(os.path.join(self.base, "katad.log"), "wb")
        self.proc = ws.popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        ws.katads.append(self)
        self.sandboxes = set()
        deadline = now() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("katad exited with %s; log:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                self.http = HttpUnix(self.socket)
                self.http.call("GET", "/v1")
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if now() > deadline:
                    raise RuntimeError("katad did not answer within 20 s")
                time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.base, "katad.log"), "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def sandbox_dir(self, sid):
        return os.path.join(self.run_dir, "sandboxes", sid)

    def qemu_pid(self, sid):
        with open(os.path.join(self.sandbox_dir(sid), "qemu.pid")) as f:
            return int(f.read().strip())

    def run_sandbox(self, sid, containers, memory=None, http=None):
        body = {"ID": sid, "Containers": containers}
        if memory:
            body["VMConfig"] = {"Memory": memory}
        self.sandboxes.add(sid)
        return (http or self.http).call("POST", "/v1/sandboxes?start=true", body, ok=(201,))

    def delete_sandbox(self, sid, http=None):
        h = http or self.http
        try:
            h.call("DELETE", "/v1/sandboxes/%s?force=true" % sid, ok=(204, 404))
        finally:
            self.sandboxes.discard(sid)

    def shutdown(self):
        if self.proc.poll() is None:
            try:
                h = HttpUnix(self.socket, timeout=60)
                for sid in list(self.sandboxes):
                    try:
                        self.delete_sandbox(sid, http=h)
                    except Exception as e:  # noqa: BLE001 - best effort, the pid sweep follows
                        print("warning: deleting sandbox %s: %s" % (sid, e), file=sys.stderr)
                h.close()
            except OSError:
                pass
            kill_pid(self.proc.pid, grace=10)
        try:
            self.http.close()
        except Exception:  # noqa: BLE001
            pass
        self.log.close()


# ---------------------------------------------------------------------------- the bare QEMU

def bare_qemu_argv(run_dir, qemu=DEFAULT_QEMU, kernel=DEFAULT_KERNEL, initrd=DEFAULT_INITRD, memory=256,
                   vcpus=1, kernel_params="", root_ports=4, name="bench", accel_opts=None):
    """vmm/qemu.c build_command_line under TCG, byte for byte except -name (and, when accel_opts is
    given, '-machine q35 -accel tcg,OPTS' instead of '-machine q35,accel=tcg': QEMU refuses both)."""
    shared = os.path.join(run_dir, "shared").replace(",", ",,")
    argv = [qemu, "-name", "katad-%s,debug-threads=on" % name]
    if accel_opts:
        argv += ["-machine", "q35", "-accel", "tcg," + accel_opts]
    else:
        argv += ["-machine", "q35,accel=tcg"]
    argv += ["-cpu", "max", "-m", str(memory), "-smp", str(vcpus), "-nodefaults", "-no-user-config", "-nographic",
             "-no-reboot", "-kernel", kernel]
    if initrd:
        argv += ["-initrd", initrd]
    argv += ["-append", "console=ttyS0 quiet panic=-1" + (" " + kernel_params if kernel_params else ""),
             "-serial", "file:console.log", "-qmp", "unix:qmp.sock,server=on,wait=off", "-pidfile", "qemu.pid",
             "-device", "virtio-serial-pci,id=virtio-serial0",
             "-chardev", "socket,id=agent,path=agent.sock,server=on,wait=off",
             "-device", "virtserialport,chardev=agent,id=agent0,name=io.katad.agent.0",
             "-fsdev", "local,id=shared,path=%s,security_model=none" % shared,
             "-device", "virtio-9p-pci,id=shared0,fsdev=shared,mount_tag=katad"]
    for i in range(1, root_ports + 1):
        argv += ["-device", "pcie-root-port,id=rp%d,chassis=%d,slot=%d,bus=pcie.0" % (i, i, i)]
    return argv


def _thp_disable():
    import ctypes
    PR_SET_THP_DISABLE = 41
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
        os._exit(127)


def start_bare_qemu(ws, run_dir, argv, thp_disable=False):
    """Starts QEMU as katad does: working directory the run dir, stdin/stdout /dev/null, stderr
    qemu.log, its own session. thp_disable: prctl(PR_SET_THP_DISABLE) first (inherited by exec), so
    that no mapping of QEMU gets transparent huge pages. Returns the Popen."""
    os.makedirs(os.path.join(run_dir, "shared"), exist_ok=True)
    err = open(os.path.join(run_dir, "qemu.log"), "wb")
    try:
        return ws.popen(argv, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                        start_new_session=True, preexec_fn=_thp_disable if thp_disable else None)
    finally:
        err.close()


def stop_bare_qemu(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def compare_argv(katad_argv, bare_argv):
    """Differences between two QEMU command lines once paths and -name are normalised."""
    def norm(argv):
        out = []
        for a in argv:
            a = a.decode() if isinstance(a, bytes) else a
            if a.startswith("katad-") and ",debug-threads=on" in a:
                a = "katad-ID,debug-threads=on"
            if a.startswith("local,id=shared,path="):
                a = "local,id=shared,path=RUN_DIR/shared,security_model=none"
            out.append(a)
        return [a for a in out if a != ""]
    a, b = norm(katad_argv), norm(bare_argv)
    if a == b:
        return []
    diffs = []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "<none>"
        y = b[i] if i < len(b) else "<none>"
        if x != y:
            diffs.append("arg %d: katad %r, bare %r" % (i, x, y))
    return diffs


class FileWatcher:
    """Polls a file that may not exist yet for a byte string (cheap: one read of what is new)."""

    def __init__(self, path, needle):
        self.path = path
        self.needle = needle
        self.fd = None
        self.data = b""
        self.found_at = None
        self.opened_at = None

    def poll(self):
        if self.found_at is not None:
            return True
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
            self.opened_at = now()
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.data += chunk
        if self.needle in self.data:
            self.found_at = now()
            return True
        return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Timeline(FileWatcher):
    """A FileWatcher that notes when each of several markers first appears (keeps reading after
    the needle)."""

    def __init__(self, path, markers):
        super().__init__(path, markers[0])
        self.markers = list(markers)
        self.seen = {}

    def poll(self):
        if len(self.seen) == len(self.markers):
            return True
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
            self.opened_at = now()
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.data += chunk
        t = now()
        for m in self.markers:
            if m not in self.seen and m in self.data:
                self.seen[m] = t
        if self.found_at is None and self.needle in self.seen:
            self.found_at = self.seen[self.needle]
        return self.found_at is not None


# ---------------------------------------------------------------------------- memory

def read_rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def read_smaps(pid):
    """List of regions: dict(start, end, perms, path, size, rss, pss, anon_huge) (kB)."""
    regions = []
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                start, end = (int(x, 16) for x in parts[0].split("-"))
                cur = {"start": start, "end": end, "perms": parts[1],
                       "path": parts[5] if len(parts) > 5 else "", "size": 0, "rss": 0, "pss": 0, "anon_huge": 0}
                regions.append(cur)
            elif cur is not None:
                parts = line.split()
                key = parts[0].rstrip(":")
                if key == "Size":
                    cur["size"] = int(parts[1])
                elif key == "Rss":
                    cur["rss"] = int(parts[1])
                elif key == "Pss":
                    cur["pss"] = int(parts[1])
                elif key == "AnonHugePages":
                    cur["anon_huge"] = int(parts[1])
    return regions


def qemu_breakdown(pid, memory_mib):
    """PSS of a QEMU split into guest RAM, TCG code cache, the rest (kB)."""
    regs = read_smaps(pid)
    roll = read_rollup(pid)
    ram_kb = memory_mib * 1024
    anon = [r for r in regs if r["path"] == "" or r["path"].startswith("[anon")]
    # Guest RAM: the anonymous rw mapping of exactly the guest's size (QEMU may round it up to its
    # alignment, so take the smallest anonymous rw region of at least that size).
    ram_cands = [r for r in anon if r["perms"].startswith("rw") and "x" not in r["perms"] and r["size"] >= ram_kb]
    ram = min(ram_cands, key=lambda r: r["size"]) if ram_cands else None
    # TCG code cache: the large anonymous executable mapping (rwx, or r-x + rw- twins with split w^x).
    code = [r for r in anon if "x" in r["perms"] and r["size"] >= 1024]
    code_rss = sum(r["rss"] for r in code)
    code_pss = sum(r["pss"] for r in code)
    code_size = sum(r["size"] for r in code)
    kernel_map = [r for r in regs if r["path"].endswith("vmlinux") or r["path"].endswith("initrd.img")]
    counted = set(id(r) for r in code)
    if ram:
        counted.add(id(ram))
    other_anon = [r for r in regs if id(r) not in counted and not r["path"].startswith("/")]
    return {
        "pss": roll["Pss"], "rss": roll["Rss"], "uss": roll["Private_Clean"] + roll["Private_Dirty"],
        "anon_pss": roll.get("Pss_Anon", 0),
        "ram_size": ram["size"] if ram else 0, "ram_rss": ram["rss"] if ram else 0,
        "ram_pss": ram["pss"] if ram else 0, "ram_thp": ram["anon_huge"] if ram else 0,
        "code_size": code_size, "code_rss": code_rss, "code_pss": code_pss,
        "code_thp": sum(r["anon_huge"] for r in code),
        "image_pss": sum(r["pss"] for r in kernel_map), "image_rss": sum(r["rss"] for r in kernel_map),
        "rest_pss": roll["Pss"] - (ram["pss"] if ram else 0) - code_pss,
        "rest_anon_pss": sum(r["pss"] for r in other_anon),
        "file_pss": sum(r["pss"] for r in regs if r["path"].startswith("/")),
        "file_rss": sum(r["rss"] for r in regs if r["path"].startswith("/")),
        "heap_pss": sum(r["pss"] for r in regs if r["path"] == "[heap]"),
    }


def mib(kb):
    return "%.1f" % (kb / 1024.0)


def check_inputs(paths):
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        sys.exit("missing: %s (build with: cd build && make -j2 && make guest)" % ", ".join(missing))
