#!/usr/bin/python3
"""Idle memory of one sandbox with a 128 MiB guest: the PSS of its QEMU (/proc/PID/smaps_rollup)
plus katad's share (the growth of katad's anonymous PSS from 0 to 1 sandbox), broken down from
/proc/PID/smaps into the guest RAM actually touched (the anonymous mapping of the guest's size),
the TCG code cache (the large anonymous executable mapping), and QEMU's own rest. Baseline in the
same run: the same bare QEMU (vmm/qemu.c's command line) idle after its guest booted.

Both guests boot with katad.debug: the bare QEMU is "booted" when /init's first line
("katad-agent: Starting", printed only with katad.debug) is on its console; katad's sandbox is
booted when POST ?start=true returns (its container runs `sleep`). Both are then left idle for
--settle seconds before --samples samples, one second apart.

--tb-sizes N,M,... also boots the bare QEMU with '-machine q35 -accel tcg,tb-size=N' (MiB of TCG
code cache; QEMU refuses -accel together with -machine accel=) and reports what it changes.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

KEYS = ("pss", "rss", "uss", "anon_pss", "ram_size", "ram_rss", "ram_pss", "ram_thp", "code_size", "code_rss", "code_pss", "code_thp",
        "image_pss", "image_rss", "rest_pss", "rest_anon_pss", "file_pss", "file_rss", "heap_pss")


def sample(pid, memory, args):
    time.sleep(args.settle)
    got = []
    for i in range(args.samples):
        if i:
            time.sleep(1)
        got.append(B.qemu_breakdown(pid, memory))
    return {k: B.median([g[k] for g in got]) for k in KEYS}


def bare_idle(ws, args, tag, accel_opts=None, thp_disable=False):
    run_dir = ws.path("bare-" + tag)
    os.makedirs(run_dir)
    argv = B.bare_qemu_argv(run_dir, qemu=args.qemu, kernel=args.kernel, initrd=args.initrd, memory=args.memory,
                            kernel_params=B.KERNEL_PARAMS_DEBUG, name="bare-" + tag, accel_opts=accel_opts)
    watch = B.FileWatcher(os.path.join(run_dir, "console.log"), B.AGENT_FIRST_LINE)
    t0 = B.now()
    p = B.start_bare_qemu(ws, run_dir, argv, thp_disable=thp_disable)
    try:
        while not watch.poll():
            if p.poll() is not None:
                with open(os.path.join(run_dir, "qemu.log"), errors="replace") as f:
                    raise RuntimeError("bare QEMU exited (%s): %s" % (p.returncode, f.read()[-500:]))
            if B.now() - t0 > args.timeout:
                raise RuntimeError("bare QEMU: no agent line within %d s" % args.timeout)
            time.sleep(0.005)
        boot = watch.found_at - t0
        m = sample(p.pid, args.memory, args)
        m["boot"] = boot
        return m
    finally:
        watch.close()
        B.stop_bare_qemu(p)


def katad_idle(k, args, rootfs, i):
    sid = "idle%d" % i
    t0 = B.now()
    k.run_sandbox(sid, [{"ID": "c1", "RootFs": rootfs, "Cmd": {"Args": ["sleep", "1000000"]}}], memory=args.memory)
    boot = B.now() - t0
    qpid = k.qemu_pid(sid)
    m = sample(qpid, args.memory, args)
    m["boot"] = boot
    roll = B.read_rollup(k.pid)
    m["katad_pss"], m["katad_anon"] = roll["Pss"], roll["Pss_Anon"]
    k.delete_sandbox(sid)
    time.sleep(0.5)
    roll = B.read_rollup(k.pid)
    m["katad_after"], m["katad_after_anon"] = roll["Pss"], roll["Pss_Anon"]
    return m


def med(runs, key):
    return B.median([r[key] for r in runs])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=3, help="VMs measured on each side (default 3; medians)")
    ap.add_argument("--memory", type=int, default=128, help="guest MiB, VMConfig.Memory (default 128)")
    ap.add_argument("--settle", type=float, default=10.0, help="idle seconds after boot before sampling (default 10)")
    ap.add_argument("--samples", type=int, default=3, help="samples per VM, 1 s apart (default 3; median)")
    ap.add_argument("--tb-sizes", default="", help="comma-separated tb-size values (MiB) to try on the bare QEMU")
    ap.add_argument("--thp-off", action="store_true",
                    help="also boot the bare QEMU with transparent huge pages disabled (PR_SET_THP_DISABLE)")
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--katad", default=B.DEFAULT_KATAD)
    ap.add_argument("--qemu", default=B.DEFAULT_QEMU)
    ap.add_argument("--kernel", default=B.DEFAULT_KERNEL)
    ap.add_argument("--initrd", default=B.DEFAULT_INITRD)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    tb_sizes = [int(x) for x in args.tb_sizes.split(",") if x.strip()]
    B.check_inputs([args.katad, args.qemu, args.kernel, args.initrd, B.DEFAULT_BUSYBOX])

    with B.Workspace(keep=args.keep) as ws:
        rootfs = B.make_rootfs(ws.path("rootfs"))
        k = B.Katad(ws, katad=args.katad, kernel=args.kernel, initrd=args.initrd,
                    kernel_params=B.KERNEL_PARAMS_DEBUG)
        time.sleep(0.5)
        roll = B.read_rollup(k.pid)
        katad0, katad0_anon = roll["Pss"], roll["Pss_Anon"]
        bare, kat = [], []
        for i in range(args.runs):
            order = ("bare", "katad") if i % 2 == 0 else ("katad", "bare")
            for what in order:
                if what == "bare":
                    bare.append(bare_idle(ws, args, str(i)))
                    r = bare[-1]
                else:
                    kat.append(katad_idle(k, args, rootfs, i))
                    r = kat[-1]
                print("  run %d %s: QEMU PSS %s MiB (guest RAM Rss %s, code cache Rss %s, rest %s)%s"
                      % (i + 1, what, B.mib(r["pss"]), B.mib(r["ram_rss"]), B.mib(r["code_rss"]),
                         B.mib(r["rest_pss"]),
                         ", katad PSS %s MiB" % B.mib(r["katad_pss"]) if what == "katad" else ""), flush=True)
        katad1 = med(kat, "katad_pss")
        katad_after = med(kat, "katad_after")
        katad1_anon, katad_after_anon = med(kat, "katad_anon"), med(kat, "katad_after_anon")
        # katad's share of a sandbox: the growth of its anonymous (private) PSS. Its whole PSS also
        # moves with how many other processes share its libraries at that moment; shown for reference.
        share = katad1_anon - katad0_anon
        share_pss = katad1 - katad0

        def row(label, key, kat_extra=0, bare_extra=0):
            b, kk = med(bare, key) + bare_extra, med(kat, key) + kat_extra
            return [label, B.mib(b), B.mib(kk), "%.2f" % (kk / b) if b else "-"]

        print()
        print("one idle sandbox, %d MiB guest, TCG, medians of %d VMs × %d samples after %g s idle (MiB; each row is "
              "its own median, so rows need not add up exactly):" % (args.memory, args.runs, args.samples, args.settle))
        rows = [
            row("QEMU PSS (smaps_rollup)", "pss"),
            row("  guest RAM touched: Pss of the %d MiB region" % args.memory, "ram_pss"),
            row("    (its Rss)", "ram_rss"),
            row("    (transparent huge pages in it)", "ram_thp"),
            row("  TCG code cache: Pss", "code_pss"),
            row("    (its Rss; mapping size %s MiB)" % B.mib(med(bare, "code_size")), "code_rss"),
            row("  QEMU's own rest (PSS − guest RAM − code cache)", "rest_pss"),
            row("    anonymous: heap, other RAM blocks (firmware, ROMs), stacks", "rest_anon_pss"),
            row("      of which [heap]", "heap_pss"),
            row("    file mappings: qemu binary, libraries, vmlinux", "file_pss"),
            row("      (their Rss: the PSS above depends on other processes sharing them)", "file_rss"),
            row("      of which vmlinux/initrd (private file mapping kept by QEMU)", "image_pss"),
            row("QEMU USS (Private_Clean + Private_Dirty)", "uss"),
            row("QEMU anonymous PSS (Pss_Anon: what each further sandbox adds; file pages are shared)", "anon_pss"),
            ["katad's share (anonymous PSS with 1 sandbox − with 0)", "-", B.mib(share), "-"],
            row("total per sandbox (QEMU PSS + katad's share)", "pss", kat_extra=share),
        ]
        print(B.table(rows, ["", "bare QEMU", "katad", "katad × bare"]))
        total = med(kat, "pss") + share
        print()
        print(B.table([["0 sandboxes (fresh)", B.mib(katad0), B.mib(katad0_anon)],
                       ["1 idle sandbox", B.mib(katad1), B.mib(katad1_anon)],
                       ["0 again (after DELETE)", B.mib(katad_after), B.mib(katad_after_anon)],
                       ["delta 0 → 1", B.mib(share_pss), B.mib(share)]],
                      ["katad's own memory", "PSS (MiB)", "anonymous PSS (MiB)"]))
        print()
        print("per sandbox: %s MiB (QEMU %s + katad %s); bare QEMU %s MiB; goal ≤ 64 MiB → %s"
              % (B.mib(total), B.mib(med(kat, "pss")), B.mib(share), B.mib(med(bare, "pss")),
                 "met" if total <= 64 * 1024 else "NOT met"))

        variants = [("-accel tcg,tb-size=%d" % n, "tb-size=%d" % n, False) for n in tb_sizes]
        if args.thp_off:
            variants.append(("THP off (prctl PR_SET_THP_DISABLE)", None, True))
            if tb_sizes:
                variants.append(("THP off + tb-size=%d" % min(tb_sizes), "tb-size=%d" % min(tb_sizes), True))
        if variants:
            def vrow(label, runs):
                return [label, B.mib(med(runs, "code_size")), B.mib(med(runs, "code_rss")), B.mib(med(runs, "ram_rss")),
                        B.mib(med(runs, "pss")), "%.3f" % med(runs, "boot"), "%.2f" % (med(runs, "pss") / med(bare, "pss"))]
            rows = [vrow("default (-machine q35,accel=tcg)", bare)]
            for j, (label, accel, thp_off) in enumerate(variants):
                runs = [bare_idle(ws, args, "v%d-%d" % (j, r), accel_opts=accel, thp_disable=thp_off)
                        for r in range(args.runs)]
                rows.append(vrow(label, runs))
                print("  %s: QEMU PSS %s MiB, code cache Rss %s MiB, guest RAM Rss %s MiB"
                      % (label, B.mib(med(runs, "pss")), B.mib(med(runs, "code_rss")), B.mib(med(runs, "ram_rss"))),
                      flush=True)
            print()
            print("variants of the bare QEMU (report only: katad sets neither; tb-size needs "
                  "'-machine q35 -accel tcg,tb-size=N'):")
            print(B.table(rows, ["bare QEMU", "code cache mapping (MiB)", "code cache Rss (MiB)", "guest RAM Rss (MiB)",
                                 "QEMU PSS (MiB)", "boot to /init's line (s)", "PSS × default"]))

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
