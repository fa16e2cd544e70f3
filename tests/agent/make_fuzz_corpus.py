#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_agent_frames (tests/agent/corpus/agent_frames): conversations a
host really has with the agent, plus a few broken ones. Byte 0 of each file is the fuzzer's
control byte (transport and read size), the rest is the byte stream."""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentwire import CREDIT, DATA, EOF, HELLO, REQUEST, frame  # noqa: E402

HELLO_FRAME = frame(HELLO, payload={"Version": 1, "Agent": "katad 0.1.0"})


def req(id_, method, params=None):
    body = {"Method": method}
    if params is not None:
        body["Params"] = params
    return frame(REQUEST, 0, id_, body)


CONFIG = {
    "Cmd": {"Args": ["sh", "-c", "echo hi"], "Envs": [{"Var": "A", "Value": "b"}], "WorkDir": "/tmp",
            "User": "app:app", "PrimaryGroup": "app", "SupplementaryGroups": ["1", "wheel"], "Interactive": True,
            "NoNewPrivileges": True,
            "Capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CHOWN"], "inheritable": [],
                             "permitted": ["CAP_CHOWN"], "ambient": []}},
    "Mounts": [{"Source": "/run/katad/shared/c/mounts/0", "Destination": "/data", "Type": "bind",
                "Options": ["rbind", "ro", "nosuid"], "ReadOnly": True},
               {"Destination": "/scratch", "Type": "tmpfs", "Options": ["size=1m", "mode=0755", "noexec"]},
               {"Destination": "/dev/pts2", "Type": "devpts", "Options": ["newinstance", "ptmxmode=0666"]}],
    "DeviceInfos": [{"ContainerPath": "/dev/xvda", "DevType": "b", "Major": 202, "Minor": 0, "FileMode": 0o660,
                     "UID": 0, "GID": 6}],
    "ReadonlyRootfs": True,
    "Resources": {"memory": {"limit": 67108864, "reservation": 1048576, "swap": 134217728},
                  "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
                  "pids": {"limit": 100}},
}

SEEDS = {
    "lifecycle": HELLO_FRAME + req(1, "Ping") + req(2, "CreateContainer", {
        "SandboxID": "sb", "ContainerID": "c1", "Config": CONFIG, "Rootfs": "/run/katad/shared/c1/rootfs",
        "Hostname": "web"}) + req(3, "StartContainer", {"ContainerID": "c1"}) +
    req(4, "ExecProcess", {"ContainerID": "c1", "ExecID": "e1", "Cmd": CONFIG["Cmd"]}) +
    req(5, "WaitProcess", {"ContainerID": "c1", "ExecID": "e1", "TimeoutMs": 100}) +
    req(6, "SignalProcess", {"ContainerID": "c1", "ExecID": "", "Signal": "SIGTERM", "All": True}) +
    req(7, "WinsizeProcess", {"ContainerID": "c1", "ExecID": "e1", "Height": 24, "Width": 80}) +
    req(8, "PauseContainer", {"ContainerID": "c1"}) + req(9, "ResumeContainer", {"ContainerID": "c1"}) +
    req(10, "StatsContainer", {"ContainerID": "c1"}) +
    req(11, "UpdateContainer", {"ContainerID": "c1", "Resources": CONFIG["Resources"]}) +
    req(12, "ListProcesses", {"ContainerID": "c1", "Format": "table", "Args": ["-eo", "pid,user,args=CMD"]}) +
    req(13, "RemoveContainer", {"ContainerID": "c1"}) + req(14, "StatusContainer", {"ContainerID": "c1"}) +
    req(15, "ListContainers") + req(16, "Shutdown"),
    "stdio": HELLO_FRAME + frame(DATA, 1, 0, b"hello\n") + frame(EOF, 1) + frame(CREDIT, 2, 0, struct.pack(">I", 4096)) +
    frame(DATA, 3, 0, b"x" * 70000) + req(1, "Ping"),
    "rehello": HELLO_FRAME + req(1, "WaitProcess", {"ContainerID": "c1"}) + HELLO_FRAME + req(2, "Ping"),
    "garbage_then_hello": b"\x00\x00\x00\x05garbage-garbage" + HELLO_FRAME + req(1, "Ping"),
    "before_hello": req(1, "Ping") + HELLO_FRAME + req(2, "Ping"),
    "bad_json": HELLO_FRAME + frame(REQUEST, 0, 1, b"{\"Method\":") + frame(REQUEST, 0, 2, b"[1,2]") +
    req(3, "Nope", {}) + req(4, "ListProcesses", {"ContainerID": "c", "Args": ["-o"]}),
    "version2": frame(HELLO, payload={"Version": 2}) + req(1, "Ping"),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "agent_frames")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        for control, suffix in ((0x00, "port"), (0x01, "socket"), (0x0e, "port-small-reads")):
            with open(os.path.join(out, "%s-%s" % (name, suffix)), "wb") as f:
                f.write(bytes([control]) + data)


if __name__ == "__main__":
    main()
