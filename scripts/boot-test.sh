#!/bin/bash
# Boots katad's guest kernel under QEMU/TCG with a tiny test /init
# (agent/guest/test-init.c) and checks what the guest sees: the console marker,
# the agent's virtio-serial port, the PCIe root ports, the 9p share, and
# optionally a PCIe hot-plugged disk. Reports the wall-clock time from starting
# QEMU to the marker line. See docs/guest.md.
#
# Usage: scripts/boot-test.sh [--out DIR] [--debian-kernel] [--runs N] [--hotplug]
#                             [--smp N] [--timeout SECONDS] [--qemu PATH]
#                             [--qemu-arg ARG]... [--append KERNEL-ARGS] [--show-console]
#                             [--kernel VMLINUX]
#
# --out DIR        where build-guest.sh put vmlinux (default $KATAD_GUEST_DIR or build/guest);
#                  vmlinux is built there first if it is missing or stale
# --kernel FILE    boot this PVH vmlinux as it is (no build)
# --debian-kernel  boot Debian's packaged kernel (bzImage + modules in the initrd) instead
# --runs N         boot N times and report each time and the median (default 1)
# --hotplug        after boot, hot-add a virtio-blk disk into root port rp1 over QMP
#                  and check that the guest binds it (PCIe native hotplug, no ACPI)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${KATAD_GUEST_DIR:-$repo/build/guest}
debian=0
runs=1
hotplug=0
smp=1
timeout=60
qemu="qemu-system-x86_64"
marker="katad-test-init: reached /init"
extra_args=()
more_append=
show_console=0
kernel_file=

while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?}; shift 2 ;;
	--debian-kernel) debian=1; shift ;;
	--runs) runs=${2:?}; shift 2 ;;
	--hotplug) hotplug=1; shift ;;
	--smp) smp=${2:?}; shift 2 ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	--qemu) qemu=${2:?}; shift 2 ;;
	--qemu-arg) extra_args+=("${2:?}"); shift 2 ;;
	--show-console) show_console=1; shift ;;
	--kernel) kernel_file=${2:?}; shift 2 ;;
	--append) more_append="$more_append ${2:?}"; shift 2 ;;
	-h|--help) sed -n "/^# Usage:/,/^#$/p" "$0" | sed "/^#$/d; s/^# \{0,1\}//"; exit 0 ;;
	*) echo "boot-test: unknown argument: $1" >&2; exit 2 ;;
	esac
done

log() { echo "boot-test: $*" >&2; }
die() { echo "boot-test: error: $*" >&2; exit 1; }
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/katad-boot-test.XXXXXX")
qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	exec 3<&- 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The test /init: static, so it runs from a bare initramfs.
gcc -static -O2 -Wall -o "$tmp/katad-test-init" "$repo/agent/guest/test-init.c"

if [ "$debian" = 1 ]; then
	"$repo/scripts/build-guest.sh" --debian-kernel --agent "$tmp/katad-test-init" --out "$tmp" 2>"$tmp/build.log" \
		|| { cat "$tmp/build.log" >&2; die "build-guest.sh --debian-kernel failed"; }
	kernel=$tmp/kernel-debian
	initrd=$tmp/initrd-debian.img
	path_name="Debian kernel (bzImage + modules)"
else
	[ -n "$kernel_file" ] || "$repo/scripts/build-guest.sh" --kernel-only --out "$out" >&2
	"$repo/scripts/build-guest.sh" --initrd-only --agent "$tmp/katad-test-init" --out "$tmp" 2>"$tmp/build.log" \
		|| { cat "$tmp/build.log" >&2; die "build-guest.sh --initrd-only failed"; }
	kernel=${kernel_file:-$out/vmlinux}
	initrd=$tmp/initrd.img
	path_name="PVH vmlinux"
fi

mkdir -p "$tmp/share"
echo "from-host" >"$tmp/share/hello"
append="console=ttyS0 quiet panic=-1$more_append"
extra=("${extra_args[@]}")
if [ "$hotplug" = 1 ]; then
	append="$append katad.test=hotplug"
	truncate -s 8M "$tmp/disk.img"
	extra+=(-qmp "unix:$tmp/qmp.sock,server=on,wait=off"
		-drive "file=$tmp/disk.img,if=none,id=hd0,format=raw")
fi

# Hot-adds virtio-blk into root port rp1 through QMP.
qmp_hotplug() {
	python3 - "$tmp/qmp.sock" <<-'EOF'
	import json, socket, sys
	s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
	f = s.makefile("rw")
	def cmd(c, **a):
	    f.write(json.dumps({"execute": c, "arguments": a}) + "\n"); f.flush()
	    while True:
	        r = json.loads(f.readline())
	        if "return" in r or "error" in r:
	            if "error" in r: sys.exit("qmp %s: %s" % (c, r["error"]))
	            return r
	json.loads(f.readline())  # greeting
	cmd("qmp_capabilities")
	cmd("device_add", driver="virtio-blk-pci", drive="hd0", bus="rp1", id="vblk0")
	EOF
}

# boot_once N: boots; sets res to "SECONDS QEMU_EXIT" (or "fail" without a marker) and
# keeps the console in $tmp/console.N. Runs in this shell, so the EXIT trap knows qemu_pid.
boot_once() {
	local n=$1 con="$tmp/console.$1" line t0 t_marker="" t_ready="" deadline rc
	rm -f "$tmp/con.fifo" "$tmp/agent.sock"
	mkfifo "$tmp/con.fifo"
	t0=$EPOCHREALTIME
	"$qemu" -M q35 -accel tcg -m 128 -smp "$smp" -nographic -no-reboot \
		-kernel "$kernel" -initrd "$initrd" -append "$append" \
		-device virtio-serial-pci \
		-chardev "socket,id=agent,path=$tmp/agent.sock,server=on,wait=off" \
		-device virtserialport,chardev=agent,name=io.katad.agent.0 \
		-fsdev "local,id=share,path=$tmp/share,security_model=none" \
		-device virtio-9p-pci,fsdev=share,mount_tag=katad-share \
		-device pcie-root-port,id=rp1,chassis=1,slot=1 \
		-device pcie-root-port,id=rp2,chassis=2,slot=2 \
		"${extra[@]}" </dev/null >"$tmp/con.fifo" 2>"$tmp/qemu.stderr.$n" &
	qemu_pid=$!
	exec 3<"$tmp/con.fifo"
	deadline=$((${t0%.*} + timeout))
	: >"$con"
	while :; do
		local left=$((deadline - ${EPOCHREALTIME%.*}))
		if [ "$left" -le 0 ]; then
			log "run $n: timeout after ${timeout}s"
			break
		fi
		local st=0
		IFS= read -r -t "$left" line <&3 || st=$?
		if [ "$st" -ne 0 ]; then
			if [ "$st" -gt 128 ]; then
				log "run $n: timeout after ${timeout}s, killing QEMU"
				kill -KILL "$qemu_pid" 2>/dev/null || true
			fi
			break  # EOF: QEMU exited
		fi
		line=${line%$'\r'}
		printf '%s\n' "$line" >>"$con"
		if [ -z "$t_marker" ] && [[ "$line" == *"$marker"* ]]; then
			t_marker=$EPOCHREALTIME
		fi
		if [ -z "$t_ready" ] && [[ "$line" == *"katad-test-init: 9p: ok"* ]]; then
			t_ready=$EPOCHREALTIME
		fi
		if [ "$hotplug" = 1 ] && [[ "$line" == *"katad-test-init: hotplug: waiting"* ]]; then
			qmp_hotplug 2>>"$con" || log "run $n: QMP hotplug failed"
		fi
	done
	exec 3<&-
	# QEMU exits by itself after the guest reboots (-no-reboot); give it a moment.
	for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$qemu_pid" 2>/dev/null; then
		log "run $n: QEMU still running, killing it"
		kill -KILL "$qemu_pid" 2>/dev/null || true
	fi
	rc=0
	{ wait "$qemu_pid"; } 2>/dev/null || rc=$?
	qemu_pid=
	if [ -z "$t_marker" ]; then res=fail; return 0; fi
	res=$(awk -v a="$t_marker" -v r="${t_ready:-$t0}" -v b="$t0" -v rc="$rc" \
		'BEGIN { printf "%.3f %.3f %d", a - b, r - b, rc }')
}

check_console() {
	local con=$1 ok=1
	grep -qF "$marker" "$con" || { log "missing: marker line"; ok=0; }
	grep -qE 'katad-test-init: virtio-port: .* name=io\.katad\.agent\.0$' "$con" \
		|| { log "missing: virtio-serial port io.katad.agent.0"; ok=0; }
	[ "$(grep -cE 'katad-test-init: pci: .* 1b36:000c class=0x0604' "$con")" -ge 2 ] \
		|| { log "missing: the two pcie-root-port devices in /sys/bus/pci"; ok=0; }
	grep -qF 'katad-test-init: 9p: ok hello=from-host' "$con" || { log "missing: 9p share"; ok=0; }
	[ -f "$tmp/share/from-guest" ] || { log "missing: file written by the guest into the 9p share"; ok=0; }
	if [ "$hotplug" = 1 ]; then
		grep -qF 'katad-test-init: hotplug: new device seen; /sys/block/vda present' "$con" \
			|| { log "missing: hot-plugged virtio-blk (vda)"; ok=0; }
	fi
	grep -qF 'katad-test-init: done, rebooting' "$con" || { log "missing: clean reboot"; ok=0; }
	[ "$ok" = 1 ]
}

log "$path_name: $kernel ($(stat -c %s "$kernel") bytes), initrd $(stat -c %s "$initrd") bytes, -smp $smp"
times=()
readies=()
failed=0
for n in $(seq "$runs"); do
	rm -f "$tmp/share/from-guest"
	boot_once "$n"
	if [ "$res" = fail ]; then
		log "run $n: marker not seen; console:"
		sed 's/^/  | /' "$tmp/console.$n" >&2
		sed 's/^/  qemu: /' "$tmp/qemu.stderr.$n" >&2
		failed=1
		continue
	fi
	read -r secs ready rc <<<"$res"
	if ! check_console "$tmp/console.$n" || [ "$rc" != 0 ]; then
		log "run $n: FAILED (qemu exit $rc); console:"
		sed 's/^/  | /' "$tmp/console.$n" >&2
		failed=1
		continue
	fi
	times+=("$secs")
	readies+=("$ready")
	log "run $n: ok, marker after ${secs}s, devices ready (modules loaded, 9p mounted) after ${ready}s"
	if [ "$show_console" = 1 ]; then
		sed 's/^/  | /' "$tmp/console.$n" >&2
	elif [ "$n" = 1 ]; then
		sed -n 's/^katad-test-init: /  guest: /p' "$tmp/console.$n" >&2
	fi
done
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
if [ ${#times[@]} -gt 0 ]; then
	echo "boot-test: $path_name: ${#times[@]}/$runs runs ok, -smp $smp;" \
		"/init marker (s): ${times[*]}, median $(printf '%s\n' "${times[@]}" | median);" \
		"ready (s): ${readies[*]}, median $(printf '%s\n' "${readies[@]}" | median)"
fi
[ "$failed" = 0 ] || die "$path_name: boot test failed"
