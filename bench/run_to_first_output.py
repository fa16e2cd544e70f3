#!/usr/bin/python3
"""Run to first output: katad's POST /v1/sandboxes?start=true until the container's first line is
in its log, against a bare QEMU boot of the same kernel, initrd, devices and accelerator until the
guest's /init prints its first line on the serial console.

katad-agent (the initrd's /init) prints nothing under `quiet` unless the kernel command line has
katad.debug; its first line is then "katad-agent: Starting". So both sides boot with katad.debug:
the bare QEMU on its -append, katad through [guest] kernel_params.

Runs alternate (bare, katad, katad, bare, ...) so that the machine's load hits both alike.
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

CONTAINER_LINE = b"first-line"


def bare_run(ws, args, i):
    run_dir = ws.path("bare", str(i))
    argv = B.bare_qemu_argv(run_dir, qemu=args.qemu, kernel=args.kernel, initrd=args.initrd, memory=args.memory,
                            kernel_params=B.KERNEL_PARAMS_DEBUG, name="bare%d" % i)
    os.makedirs(run_dir)
    watch = B.FileWatcher(os.path.join(run_dir, "console.log"), B.AGENT_FIRST_LINE)
    t0 = B.now()
    p = B.start_bare_qemu(ws, run_dir, argv)
    try:
        while not watch.poll():
            if p.poll() is not None:
                raise RuntimeError("bare QEMU exited (%s) before the agent's line; see %s" % (p.returncode, run_dir))
            if B.now() - t0 > args.timeout:
                raise RuntimeError("bare QEMU: no agent line within %d s" % args.timeout)
            time.sleep(args.poll_ms / 1000.0)
        return watch.found_at - t0, argv
    finally:
        watch.close()
        B.stop_bare_qemu(p)


def probe_log_route(k):
    h = B.HttpUnix(k.socket)
    try:
        status, _, body = h.request("GET", "/v1/sandboxes/no-such-sandbox/containers/c/logs")
    finally:
        h.close()
    try:
        code = B.HttpError(status, body).code()
    except Exception:  # noqa: BLE001
        code = None
    return status != 404 or code != "route_not_found"


# Lines of katad-agent (with katad.debug) on katad's VM console, in the order they come.
CONSOLE_MARKERS = [
    (B.AGENT_FIRST_LINE, "agent: Starting (/init's first line)"),
    (b"katad-agent: Serving on", "agent: serving on the virtio-serial port"),
    (b"katad-agent: Host connected", "agent: katad's HELLO answered"),
    (b"CreateContainer", "agent: CreateContainer request"),
    (b"StartContainer", "agent: StartContainer request"),
]


def katad_run(ws, args, k, i, use_route, rootfs):
    sid, cid = "rtfo%d" % i, "c1"
    sb_dir = k.sandbox_dir(sid)
    console = B.Timeline(os.path.join(sb_dir, "console.log"), [m for m, _ in CONSOLE_MARKERS])
    logfile = B.FileWatcher(os.path.join(sb_dir, "logs", cid + ".log"), CONTAINER_LINE)
    post = {"conn": B.HttpUnix(k.socket)}
    route = {"at": None, "errors": set(), "max_rtt": 0.0, "polls": 0, "stop": False}
    container = {"ID": cid, "RootFs": rootfs,
                 "Cmd": {"Args": ["sh", "-c", "echo first-line; sleep 1000"]}}

    def do_post():
        try:
            k.run_sandbox(sid, [container], memory=args.memory, http=post["conn"])
        except Exception as e:  # noqa: BLE001
            post["error"] = e
        post["done"] = B.now()

    def do_route():
        # Its own thread and connection: a GET that katad holds back must not stall the file polls.
        try:
            h = B.HttpUnix(k.socket)
            try:
                while not route["stop"]:
                    t = B.now()
                    status, _, body = h.request("GET", "/v1/sandboxes/%s/containers/%s/logs" % (sid, cid))
                    route["max_rtt"] = max(route["max_rtt"], B.now() - t)
                    route["polls"] += 1
                    if status == 200 and CONTAINER_LINE in body:
                        route["at"] = B.now()
                        return
                    if status != 200:
                        route["errors"].add(status)
                    time.sleep(args.poll_ms / 1000.0)
            finally:
                h.close()
        except Exception as e:  # noqa: BLE001
            route["error"] = e

    th = threading.Thread(target=do_post, daemon=True)
    rt = threading.Thread(target=do_route, daemon=True) if use_route else None
    t0 = B.now()
    th.start()
    if rt:
        rt.start()
    try:
        while True:
            console.poll()
            logfile.poll()
            found = route["at"] if use_route else logfile.found_at
            if found is not None:
                break
            if "error" in post:
                raise RuntimeError("POST /v1/sandboxes?start=true failed: %s" % post["error"])
            if "error" in route:
                raise RuntimeError("GET .../logs failed: %s" % route["error"])
            if B.now() - t0 > args.timeout:
                raise RuntimeError("katad: no %r in the container's log within %d s (route answers %s; file %s)"
                                   % (CONTAINER_LINE.decode(), args.timeout, sorted(route["errors"]) or "-",
                                      "exists" if logfile.fd is not None else "missing"))
            time.sleep(args.poll_ms / 1000.0)
        th.join(args.timeout)
        if "error" in post:
            raise RuntimeError("POST failed after the first line: %s" % post["error"])
        console.poll()
        logfile.poll()
        qpid = k.qemu_pid(sid)
        qargv = B.proc_cmdline(qpid)
        td = B.now()
        k.delete_sandbox(sid)
        t_del = B.now() - td
        gone_deadline = B.now() + 5
        while B.pid_alive(qpid) and B.now() < gone_deadline:
            time.sleep(0.01)
        if B.pid_alive(qpid):
            print("warning: QEMU %d of %s still runs after DELETE ?force=true" % (qpid, sid), file=sys.stderr)
        rel = lambda t: None if t is None else t - t0  # noqa: E731
        return {"first": found - t0, "route": rel(route["at"]), "file": rel(logfile.found_at),
                "qemu": rel(console.opened_at), "marks": {m: rel(t) for m, t in console.seen.items()},
                "console": rel(console.found_at), "post": rel(post.get("done")), "delete": t_del, "argv": qargv,
                "route_max_rtt": route["max_rtt"] if use_route else None, "route_polls": route["polls"]}
    finally:
        route["stop"] = True
        if rt:
            rt.join(5)
        console.close()
        logfile.close()
        post["conn"].close()


def fmt(x):
    return "-" if x is None else "%.3f" % x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=7, help="measured runs of each (default 7, at least 5)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs of each first (default 1)")
    ap.add_argument("--memory", type=int, default=256, help="guest MiB for both (default 256, katad's default)")
    ap.add_argument("--log-source", choices=("auto", "route", "file"), default="auto",
                    help="where katad's first line is looked for: the logs route, the log file, or the route "
                         "when katad has it (default)")
    ap.add_argument("--poll-ms", type=float, default=2.0, help="polling period (default 2 ms)")
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--katad", default=B.DEFAULT_KATAD)
    ap.add_argument("--qemu", default=B.DEFAULT_QEMU)
    ap.add_argument("--kernel", default=B.DEFAULT_KERNEL)
    ap.add_argument("--initrd", default=B.DEFAULT_INITRD)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    B.check_inputs([args.katad, args.qemu, args.kernel, args.initrd, B.DEFAULT_BUSYBOX])

    with B.Workspace(keep=args.keep) as ws:
        rootfs = B.make_rootfs(ws.path("rootfs"))
        k = B.Katad(ws, katad=args.katad, kernel=args.kernel, initrd=args.initrd,
                    kernel_params=B.KERNEL_PARAMS_DEBUG)
        has_route = probe_log_route(k)
        if args.log_source == "route" and not has_route:
            sys.exit("katad has no GET .../containers/{cid}/logs route")
        use_route = has_route and args.log_source != "file"
        print("katad %s (pid %d), QEMU %s, kernel %s, initrd %s, %d MiB, TCG, katad.debug on both sides"
              % (args.katad, k.pid, args.qemu, args.kernel, args.initrd, args.memory))
        print("katad's first line: %s" % ("GET /v1/sandboxes/SID/containers/CID/logs (polled every %g ms; "
                                          "the log file is watched too)" % args.poll_ms if use_route else
                                          "RUN_DIR/sandboxes/SID/logs/CID.log (polled every %g ms)%s"
                                          % (args.poll_ms, "" if has_route else "; katad has no logs route")))
        bare, kat = [], []
        argv_checked = False
        total = args.warmup + args.runs
        for i in range(total):
            order = ("bare", "katad") if i % 2 == 0 else ("katad", "bare")
            for what in order:
                if what == "bare":
                    t, bare_argv = bare_run(ws, args, i)
                    if i >= args.warmup:
                        bare.append(t)
                else:
                    r = katad_run(ws, args, k, i, use_route, rootfs)
                    if not argv_checked and r["argv"]:
                        diffs = B.compare_argv(r["argv"], B.bare_qemu_argv(
                            ws.path("bare", "X"), qemu=args.qemu, kernel=args.kernel, initrd=args.initrd,
                            memory=args.memory, kernel_params=B.KERNEL_PARAMS_DEBUG))
                        print("QEMU command line, katad vs bare: %s" %
                              ("identical but for -name and the run directory" if not diffs else "; ".join(diffs)))
                        argv_checked = True
                    if i >= args.warmup:
                        kat.append(r)
            label = "warm-up" if i < args.warmup else "run %d" % (i - args.warmup + 1)
            last = kat[-1] if i >= args.warmup else r
            print("  %s: bare %.3f s, katad %.3f s (agent line %s, POST returned %s, delete %.3f s)"
                  % (label, t, last["first"], fmt(last["console"]), fmt(last["post"]), last["delete"]), flush=True)

        rows = []
        for n, r in enumerate(kat):
            rows.append([str(n + 1), "%.3f" % bare[n], "%.3f" % r["first"], "%.2f" % (r["first"] / bare[n]),
                         fmt(r["console"]), fmt(r["file"]), fmt(r["post"]), "%.3f" % r["delete"]])
        print()
        print(B.table(rows, ["run", "bare: QEMU start → agent line (s)", "katad: POST → first-line (s)", "ratio",
                             "katad: agent line on its console (s)", "katad: first-line in log file (s)",
                             "katad: POST returned (s)", "katad: DELETE ?force (s)"]))
        mb, mk = B.median(bare), B.median([r["first"] for r in kat])
        ratio = mk / mb
        print()
        print(B.table([
            ["bare QEMU → /init's first line", "%.3f" % mb, "%.3f" % min(bare), "%.3f" % max(bare), "1.00"],
            ["katad → container's first line (%s)" % ("logs route" if use_route else "log file"), "%.3f" % mk,
             "%.3f" % min(r["first"] for r in kat), "%.3f" % max(r["first"] for r in kat), "%.2f" % ratio],
        ], ["median of %d runs (s)" % args.runs, "median", "min", "max", "× bare"]))
        # Where katad's time goes: medians of the moments each step was first seen, from the POST.
        steps = [("QEMU started (console.log created)", [r["qemu"] for r in kat])]
        for m, label in CONSOLE_MARKERS:
            steps.append((label, [r["marks"].get(m) for r in kat]))
        steps.append(("first-line in the log file", [r["file"] for r in kat]))
        if use_route:
            steps.append(("first-line through GET …/logs", [r["route"] for r in kat]))
        steps.append(("POST ?start=true returned", [r["post"] for r in kat]))
        rows, prev = [], 0.0
        timed = [(B.median([x for x in xs if x is not None]), label) for label, xs in steps
                 if any(x is not None for x in xs)]
        for m, label in sorted(timed):
            rows.append([label, "%.3f" % m, "%+.3f" % (m - prev)])
            prev = m
        rows += [[label, "-", "-"] for label, xs in steps if all(x is None for x in xs)]
        print()
        print("katad's run, step by step (median time since the POST; steps seen on the VM console or the host):")
        print(B.table(rows, ["step", "at (s)", "Δ (s)"]))
        if use_route:
            print("GET …/logs while the sandbox was being created: longest round trip %.3f s (median over runs), "
                  "%d polls per run (median)" % (B.median([r["route_max_rtt"] for r in kat]),
                                                  B.median([r["route_polls"] for r in kat])))
        print()
        print("ratio katad/bare = %.2f×; goal ≤ 1.25× → %s" % (ratio, "met" if ratio <= 1.25 else "NOT met"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
