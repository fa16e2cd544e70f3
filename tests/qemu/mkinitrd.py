#!/usr/bin/python3
"""Builds the test initrd (an uncompressed newc cpio): /init is tests/qemu/test-init, and with
--modules-from a Debian kernel release (e.g. 6.1.0-56-amd64) the modules the test needs are added
with their dependencies, listed in load order in /etc/katad-test-modules.

Usage: mkinitrd.py --init PATH --out PATH [--modules-from RELEASE]
"""
import argparse
import os
import stat

WANTED = ["virtio_pci", "virtio_console", "9pnet_virtio", "9p"]


def module_order(release):
    base = f"/lib/modules/{release}"
    deps = {}
    with open(f"{base}/modules.dep") as f:
        for line in f:
            path, _, rest = line.strip().partition(":")
            deps[path] = rest.split()
    by_name = {os.path.basename(p).split(".ko")[0].replace("-", "_"): p for p in deps}
    order = []

    def visit(path):
        if path in order:
            return
        # modules.dep lists a module's dependencies so that the last must load first.
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in WANTED:
        if name in by_name:
            visit(by_name[name])
    return [(f"{base}/{p}", f"/lib/modules/{p}") for p in order]


class Cpio:
    def __init__(self):
        self.data = bytearray()
        self.ino = 1

    def add(self, name, mode, content=b""):
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(content), 0, 0, 0, 0, len(name_b), 0]
        self.ino += 1
        self.data += b"070701" + b"".join(b"%08X" % v for v in fields) + name_b
        self.data += b"\0" * (-len(self.data) % 4)
        self.data += content
        self.data += b"\0" * (-len(self.data) % 4)

    def trailer(self):
        self.add("TRAILER!!!", 0)
        self.data += b"\0" * (-len(self.data) % 512)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--modules-from")
    args = ap.parse_args()

    cpio = Cpio()
    dirs = set()

    def add_dirs(path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                cpio.add(d, stat.S_IFDIR | 0o755)

    for d in ["dev", "proc", "sys", "etc", "shared"]:
        add_dirs(d + "/x")
    with open(args.init, "rb") as f:
        cpio.add("init", stat.S_IFREG | 0o755, f.read())
    if args.modules_from:
        listing = []
        for src, dst in module_order(args.modules_from):
            add_dirs(dst)
            with open(src, "rb") as f:
                cpio.add(dst.lstrip("/"), stat.S_IFREG | 0o644, f.read())
            listing.append(dst)
        cpio.add("etc/katad-test-modules", stat.S_IFREG | 0o644, ("\n".join(listing) + "\n").encode())
    cpio.trailer()
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(cpio.data)
    os.rename(tmp, args.out)


if __name__ == "__main__":
    main()
