#!/bin/bash
# Installs every Debian 12 package katad needs to build, run and test. Idempotent; run as root.
set -euo pipefail

packages=(
        # build
        build-essential autoconf automake libtool pkg-config
        libmicrohttpd-dev libjansson-dev libevent-dev libsqlite3-dev libsystemd-dev libssl-dev
        libinih-dev libleveldb-dev libcurl4-openssl-dev check
        # run: QEMU, and the guest kernel's source and build tools (make guest)
        curl systemd qemu-system-x86 busybox-static
        linux-source-6.1 bc bison flex libelf-dev xz-utils cpio
        # tests: integration, spec, sanitizers, fuzzing
        python3 python3-pytest python3-yaml python3-jsonschema python3-websocket
        nodejs npm clang libfuzzer-14-dev libclang-rt-14-dev valgrind
)

if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: run as root (it uses apt-get)" >&2
        exit 1
fi
missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A machine may already have node and npm from elsewhere; Debian's would conflict with them.
if command -v node >/dev/null && command -v npm >/dev/null; then
        missing=("${missing[@]/nodejs/}")
        missing=("${missing[@]/npm/}")
fi
read -r -a missing <<<"${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
fi
