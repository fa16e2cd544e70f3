"""A small client of katad's agent wire protocol (docs/agent-protocol.md), for tests.

Frames: 16-byte header (length, stream, type, reserved, id; big-endian) + payload. The client is
single-threaded: every wait pumps the socket and files frames into responses, events, stream
buffers, EOFs and credits.
"""
import errno
import json
import os
import select
import socket
import struct
import time

HELLO, REQUEST, RESPONSE, EVENT, DATA, EOF, CREDIT = range(1, 8)
HEADER = struct.Struct(">IIB3xI")


class AgentError(Exception):
    def __init__(self, errno_, message):
        super().__init__("%s (%s): %s" % (errno.errorcode.get(errno_, errno_), errno_, message))
        self.errno = errno_
        self.message = message


def frame(type_, stream=0, id_=0, payload=b""):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload).encode()
    return HEADER.pack(len(payload), stream, type_, id_) + payload


class AgentClient:
    def __init__(self, path, timeout=10.0, auto_credit=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.timeout = timeout
        self.buf = b""
        self.next_id = 1
        self.responses = {}
        self.events = []
        self.hello = None
        self.data = {}  # stream id -> bytearray received
        self.eof = set()  # output streams that ended
        self.stdin_credit = {}  # stream id -> bytes the agent lets us send
        self.auto_credit = auto_credit
        self.granted = set()  # output streams we keep granting credit on
        self.closed = False

    def close(self):
        self.sock.close()

    # ---- raw I/O ----
    def send_raw(self, data):
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def send(self, type_, stream=0, id_=0, payload=b""):
        self.send_raw(frame(type_, stream, id_, payload))

    def pump(self, timeout):
        """Reads and handles whatever arrives within timeout seconds (at least one select)."""
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        while len(self.buf) >= HEADER.size:
            length, stream, type_, id_ = HEADER.unpack_from(self.buf)
            if len(self.buf) < HEADER.size + length:
                break
            payload = self.buf[HEADER.size:HEADER.size + length]
            self.buf = self.buf[HEADER.size + length:]
            self.handle(type_, stream, id_, payload)
        return True

    def handle(self, type_, stream, id_, payload):
        if type_ == HELLO:
            self.hello = json.loads(payload)
        elif type_ == RESPONSE:
            self.responses[id_] = json.loads(payload)
        elif type_ == EVENT:
            self.events.append(json.loads(payload))
        elif type_ == DATA:
            self.data.setdefault(stream, bytearray()).extend(payload)
            if self.auto_credit and stream in self.granted:
                self.send(CREDIT, stream, 0, struct.pack(">I", len(payload)))
        elif type_ == EOF:
            self.eof.add(stream)
        elif type_ == CREDIT:
            (n,) = struct.unpack(">I", payload)
            self.stdin_credit[stream] = self.stdin_credit.get(stream, 0) + n
        else:
            raise AssertionError("unexpected frame type %d" % type_)

    def wait_for(self, predicate, timeout=None, what="condition"):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for %s" % what)
            if self.closed:
                raise ConnectionError("the agent closed the connection while waiting for %s" % what)
            self.pump(min(left, 0.2))
        return True

    # ---- protocol ----
    def do_hello(self, version=1):
        self.send(HELLO, payload={"Version": version, "Agent": "agentwire-test"})
        self.wait_for(lambda: self.hello is not None, what="HELLO")
        return self.hello

    def request(self, method, params=None):
        id_ = self.next_id
        self.next_id += 1
        body = {"Method": method}
        if params is not None:
            body["Params"] = params
        self.send(REQUEST, 0, id_, body)
        return id_

    def result(self, id_, timeout=None):
        self.wait_for(lambda: id_ in self.responses, timeout, "the answer to request %d" % id_)
        resp = self.responses.pop(id_)
        if "Error" in resp:
            raise AgentError(resp["Error"]["Errno"], resp["Error"]["Message"])
        return resp["Result"]

    def call(self, method, params=None, timeout=None):
        return self.result(self.request(method, params), timeout)

    def error(self, method, params=None, timeout=None):
        """Calls and returns the AgentError it must fail with."""
        try:
            res = self.call(method, params, timeout)
        except AgentError as e:
            return e
        raise AssertionError("%s succeeded unexpectedly: %r" % (method, res))

    # ---- streams ----
    def grant(self, stream, n=1 << 20):
        self.granted.add(stream)
        self.send(CREDIT, stream, 0, struct.pack(">I", n))

    def attach(self, streams):
        """Grants output credit on Stdout/Stderr of a Streams result and keeps granting."""
        for key in ("Stdout", "Stderr"):
            if key in streams:
                self.grant(streams[key], 65536)

    def write(self, stream, data, timeout=None):
        """Sends data on a stdin stream, never more than the agent's credit."""
        data = memoryview(bytes(data))
        while data:
            self.wait_for(lambda: self.stdin_credit.get(stream, 0) > 0, timeout, "stdin credit")
            n = min(len(data), self.stdin_credit[stream], 32768)
            self.send(DATA, stream, 0, bytes(data[:n]))
            self.stdin_credit[stream] -= n
            data = data[n:]
            self.pump(0)

    def close_stdin(self, stream):
        self.send(EOF, stream)

    def read_all(self, stream, timeout=None):
        self.wait_for(lambda: stream in self.eof, timeout, "EOF on stream %d" % stream)
        return bytes(self.data.get(stream, b""))

    def wait_event(self, predicate, timeout=None):
        found = []

        def check():
            for e in self.events:
                if predicate(e):
                    found.append(e)
                    return True
            return False

        self.wait_for(check, timeout, "an event")
        self.events.remove(found[0])
        return found[0]


def wait_socket(path, proc=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.close()
                return
            except OSError:
                pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("katad-agent exited with %s" % proc.returncode)
        time.sleep(0.02)
    raise TimeoutError("no socket at %s" % path)
