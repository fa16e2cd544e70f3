#!/usr/bin/python3
"""Exec round trip: in one running sandbox, exec `true` (POST …/containers/{cid}/processes) and
wait for it (POST …/processes/{pid}/wait), over one persistent keep-alive HTTP/1.1 connection on
katad's Unix socket. Baseline in the same run, on the same connection, interleaved with the execs:
a GET /v1 round trip (the API floor: HTTP parsing, routing, JSON, no VM involved).

The client is raw HTTP on AF_UNIX in Python; its own cost is measured (the client thread's CPU
time per round trip) and reported beside the wall-clock times.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=200, help="measured round trips (default 200, at least 100)")
    ap.add_argument("--warmup", type=int, default=20, help="unmeasured round trips first (default 20)")
    ap.add_argument("--memory", type=int, default=256, help="guest MiB (default 256, katad's default)")
    ap.add_argument("--agent-debug", action="store_true",
                    help="boot the guest with katad.debug (the agent then logs every request on the console)")
    ap.add_argument("--katad", default=B.DEFAULT_KATAD)
    ap.add_argument("--kernel", default=B.DEFAULT_KERNEL)
    ap.add_argument("--initrd", default=B.DEFAULT_INITRD)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.runs < 100:
        ap.error("--runs must be at least 100")
    B.check_inputs([args.katad, args.kernel, args.initrd, B.DEFAULT_BUSYBOX])

    with B.Workspace(keep=args.keep) as ws:
        rootfs = B.make_rootfs(ws.path("rootfs"))
        k = B.Katad(ws, katad=args.katad, kernel=args.kernel, initrd=args.initrd,
                    kernel_params=B.KERNEL_PARAMS_DEBUG if args.agent_debug else "")
        sid, cid = "exec", "c1"
        h = B.HttpUnix(k.socket)
        t = B.now()
        k.run_sandbox(sid, [{"ID": cid, "RootFs": rootfs, "Cmd": {"Args": ["sleep", "1000000"]}}],
                      memory=args.memory, http=h)
        boot = B.now() - t
        qpid = k.qemu_pid(sid)
        connects_before = h.connects
        procs = "/v1/sandboxes/%s/containers/%s/processes" % (sid, cid)
        body = ('{"Args":["true"]}').encode()

        floor, floor_cpu, ex, wt, rt, rt_cpu = [], [], [], [], [], []
        pc, tc = time.perf_counter, time.thread_time
        for i in range(args.warmup + args.runs):
            if i == args.warmup:
                cpu0 = (cpu_ticks(k.pid), cpu_ticks(qpid), pc())
            # the floor
            c0, t0 = tc(), pc()
            status = h.request("GET", "/v1")[0]
            t1, c1 = pc(), tc()
            if status != 200:
                raise RuntimeError("GET /v1: %d" % status)
            # exec + wait
            c2, t2 = tc(), pc()
            status, _, data = h.request("POST", procs, body)
            t3 = pc()
            if status != 201:
                raise RuntimeError("exec: %d %s" % (status, data[:200]))
            token = data.split(b'"Token":"', 1)[1].split(b'"', 1)[0].decode()
            status, _, data = h.request("POST", "%s/%s/wait" % (procs, token))
            t4, c4 = pc(), tc()
            if status != 200 or b'"ExitCode":0' not in data:
                raise RuntimeError("wait: %d %s" % (status, data[:200]))
            if i >= args.warmup:
                floor.append(t1 - t0)
                floor_cpu.append(c1 - c0)
                ex.append(t3 - t2)
                wt.append(t4 - t3)
                rt.append(t4 - t2)
                rt_cpu.append(c4 - c2)
        cpu1 = (cpu_ticks(k.pid), cpu_ticks(qpid), pc())
        if h.connects != connects_before:
            print("warning: the connection was re-opened %d times" % (h.connects - connects_before), file=sys.stderr)
        hz = os.sysconf("SC_CLK_TCK")
        per = lambda ticks: ticks * 1000.0 / hz / args.runs  # noqa: E731
        elapsed = cpu1[2] - cpu0[2]
        h.close()
        k.delete_sandbox(sid)

        ms = lambda x: "%.2f" % (x * 1000)  # noqa: E731
        us = lambda x: "%.0f" % (x * 1e6)  # noqa: E731
        fp50 = B.percentile(floor, 50)
        rows = []
        for label, xs, cpu in (("GET /v1 (API floor)", floor, floor_cpu), ("exec: POST …/processes", ex, None),
                               ("wait: POST …/processes/{pid}/wait", wt, None), ("exec + wait", rt, rt_cpu)):
            p50 = B.percentile(xs, 50)
            rows.append([label, ms(p50), ms(B.percentile(xs, 90)), ms(B.percentile(xs, 99)), ms(max(xs)),
                         "%.1f" % (p50 / fp50), us(B.percentile(cpu, 50)) if cpu else "(in exec + wait)"])
        print("katad %s (pid %d), one sandbox (%d MiB, TCG, booted in %.2f s), container `sleep`, exec `true`, "
              "%d round trips after %d warm-up, one keep-alive connection%s"
              % (args.katad, k.pid, args.memory, boot, args.runs, args.warmup,
                 ", katad.debug" if args.agent_debug else ""))
        print()
        print(B.table(rows, ["round trip", "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "p50 × floor",
                             "client CPU p50 (µs)"]))
        print()
        print("CPU per iteration (one GET /v1 + one exec + wait), from /proc over %.1f s: katad %.2f ms, QEMU %.2f ms"
              % (elapsed, per(cpu1[0] - cpu0[0]), per(cpu1[1] - cpu0[1])))
        p50 = B.percentile(rt, 50)
        print("client (Python) CPU: %.0f µs per exec + wait, %.0f µs per GET /v1 (%.1f%% of the exec + wait p50)"
              % (B.percentile(rt_cpu, 50) * 1e6, B.percentile(floor_cpu, 50) * 1e6,
                 100 * B.percentile(rt_cpu, 50) / p50))
        print("exec + wait p50 = %.2f ms; goal under TCG ≤ 30 ms → %s" % (p50 * 1000, "met" if p50 <= 0.030 else "NOT met"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
