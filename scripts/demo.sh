#!/bin/bash
# Brings katad up on its installed defaults (as a systemd service where systemd runs, else as a
# background process) and runs a demo sandbox through it with katactl: a busybox container in a
# VM prints its `uname -r` (the guest kernel). Run as root after `make install install-guest`.
set -euo pipefail

sock=/run/katad/katad.sock
katactl() { command katactl --socket "$sock" "$@"; }

if [ -d /run/systemd/system ]; then
        systemd-sysusers
        systemd-tmpfiles --create
        systemctl daemon-reload
        systemctl enable --now katad.socket
        echo "katad is socket-activated by systemd (katad.socket, katad.service)"
elif ! command katactl --socket "$sock" info >/dev/null 2>&1; then
        mkdir -p /run/katad /var/log
        nohup katad >>/var/log/katad.log 2>&1 &
        for _ in $(seq 50); do
                command katactl --socket "$sock" info >/dev/null 2>&1 && break
                sleep 0.1
        done
        echo "katad runs in the background (pid $!, log /var/log/katad.log); stop it with: kill $!"
fi

katactl info

# A busybox root filesystem for the demo's containers.
rootfs=/var/lib/katad-demo/rootfs
if [ ! -x "$rootfs/bin/busybox" ]; then
        mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/tmp"
        cp /bin/busybox "$rootfs/bin/busybox"
        for applet in sh echo sleep cat ps id hostname uname true false ls; do
                ln -sf busybox "$rootfs/bin/$applet"
        done
        echo 'root:x:0:0:root:/:/bin/sh' >"$rootfs/etc/passwd"
        echo 'root:x:0:' >"$rootfs/etc/group"
fi

cat >/tmp/katad-demo.json <<JSON
{
  "ID": "demo",
  "Hostname": "demo",
  "Annotations": {"example.org/owner": "demo"},
  "Containers": [
    {"ID": "hello", "RootFs": "$rootfs",
     "Cmd": {"Args": ["uname", "-r"], "Envs": [{"Var": "PATH", "Value": "/bin"}]}},
    {"ID": "web", "RootFs": "$rootfs",
     "Cmd": {"Args": ["sleep", "1000"], "Envs": [{"Var": "PATH", "Value": "/bin"}]}}
  ]
}
JSON
set -x
katactl sandbox delete --force demo 2>/dev/null || true
katactl sandbox run -f /tmp/katad-demo.json
katactl wait demo hello
katactl logs demo hello
katactl container list demo
katactl exec demo web sh -c "exit 7" || echo "exec exited with $?"
katactl ps demo web
katactl stats demo
katactl sandbox stop --timeout 2 demo
katactl sandbox delete demo
set +x
echo "Demo done: the container printed the guest kernel's release above. Events of the demo:"
timeout 2 curl -sN --unix-socket "$sock" "http://katad/v1/events?sandbox=demo&since=1970-01-01T00:00:00Z" || true
