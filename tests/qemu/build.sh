#!/bin/bash
# Builds what tests/qemu needs, outside automake so it works before the build system knows the
# QEMU backend: the vmm harness (vmm/qemu.c + qmp.c + the agent client), the static test init, and
# its initrds (plain, for the project's all-built-in vmlinux; with modules, for Debian's kernel).
# Usage: tests/qemu/build.sh [OUT_DIR]   (default build/tests/qemu; CC and EXTRA_CFLAGS honoured)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$repo/build/tests/qemu}
cc=${CC:-gcc}
mkdir -p "$out"

config_h=$out/config.h
if [ ! -f "$config_h" ]; then
	printf '#ifndef _GNU_SOURCE\n#define _GNU_SOURCE 1\n#endif\n' > "$config_h"
fi
cflags=(-std=gnu11 -g -O1 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
	-Wno-unused-parameter -Werror -pthread -include "$config_h" -I"$repo" -I"$repo/common"
	-DDATADIR=\"/usr/share\")
# shellcheck disable=SC2206
extra=(${EXTRA_CFLAGS:-})
read -r -a libs <<<"$(pkg-config --cflags --libs jansson libevent libevent_pthreads)"

"$cc" "${cflags[@]}" "${extra[@]}" -o "$out/vmm-harness" \
	"$repo/tests/qemu/vmm-harness.c" \
	"$repo/vmm/qemu.c" "$repo/vmm/qmp.c" "$repo/vmm/vmm.c" \
	"$repo/agent/client.c" "$repo/agent/agent.c" "$repo/agent/protocol.c" \
	"$repo/common/log.c" "$repo/common/util.c" "$repo/common/json-util.c" "${libs[@]}"

gcc -std=gnu11 -Os -static -Wall -Wextra -Werror -include "$config_h" -I"$repo" -o "$out/test-init" \
	"$repo/tests/qemu/test-init.c" "$repo/agent/protocol.c"

/usr/bin/python3 "$repo/tests/qemu/mkinitrd.py" --init "$out/test-init" --out "$out/initrd.img"
release=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' 2>/dev/null | sed 's/^vmlinuz-//' | sort -V | tail -1)
if [ -n "$release" ] && [ -d "/lib/modules/$release" ]; then
	/usr/bin/python3 "$repo/tests/qemu/mkinitrd.py" --init "$out/test-init" --out "$out/initrd-debian.img" \
		--modules-from "$release"
	ln -sf "/boot/vmlinuz-$release" "$out/vmlinuz-debian"
fi
echo "$out"
