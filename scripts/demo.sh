#!/bin/bash
# Brings katad up on its installed defaults (as a systemd service where systemd runs, else as a
# background process) and runs a demo sandbox through it with katactl. Run as root after
# `make install`.
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
cat >/tmp/katad-demo.json <<'JSON'
{
  "ID": "demo",
  "Hostname": "demo",
  "Annotations": {"example.org/owner": "demo"},
  "Containers": [
    {"ID": "web", "Cmd": {"Args": ["sleep", "infinity"], "Envs": [{"Var": "PORT", "Value": "8080"}]}},
    {"ID": "job", "Cmd": {"Args": ["sh", "-c", "sleep 1; exit 3"]}}
  ]
}
JSON
set -x
katactl sandbox delete --force demo 2>/dev/null || true
katactl sandbox run -f /tmp/katad-demo.json
katactl sandbox list
katactl container list demo
katactl exec demo web sh -c "exit 7" || echo "exec exited with $?"
katactl wait demo job
katactl ps demo web
katactl stats demo
katactl container kill --signal SIGTERM demo web
katactl wait demo web
katactl sandbox stop demo
katactl sandbox delete demo
set +x
echo "Demo done. Events of the demo:"
timeout 2 curl -sN --unix-socket "$sock" "http://katad/v1/events?sandbox=demo&since=1970-01-01T00:00:00Z" || true
