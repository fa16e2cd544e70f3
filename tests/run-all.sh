#!/bin/bash
# Runs every test of katad on a Debian 12 machine, installing what it needs first:
# build with warnings as errors, unit tests (check), the OpenAPI contract, integration tests
# against real katad processes, one more pass of unit + integration tests under ASan/UBSan,
# a short libFuzzer run of every parser, systemd unit verification, and make distcheck.
# Usage: tests/run-all.sh   (as root; FUZZ_SECONDS and JOBS may be set)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=${JOBS:-$(nproc)}
export FUZZ_SECONDS=${FUZZ_SECONDS:-30}
python=/usr/bin/python3

stage() { printf '\n==== %s (%ds elapsed)\n' "$*" "$SECONDS"; }

stage "Installing packages"
scripts/install-deps.sh

stage "Building (warnings are errors)"
[ -x configure ] || ./autogen.sh
mkdir -p build
(cd build && { [ -f Makefile ] || ../configure --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run; } && make -j"$jobs")

stage "Unit tests"
(cd build && make -j"$jobs" check) || { cat build/tests/unit/*.log; exit 1; }

stage "OpenAPI contract"
npm ci --prefix tests/spec --no-audit --no-fund --silent
node tests/spec/validate.mjs api/openapi.yaml
build/katad --list-routes | $python tests/spec/check_routes.py api/openapi.yaml -

stage "Integration tests (mock hypervisor)"
KATAD_BIN=$top/build/katad KATACTL_BIN=$top/build/katactl $python -m pytest -q -p no:cacheprovider tests/integration

stage "Guest image: kernel (cached by content) and initrd"
(cd build && make guest)
export KATAD_GUEST_DIR=$top/build/guest KATAD_GUEST_KERNEL=$top/build/guest/vmlinux
export KATAD_AGENT=$top/build/agent/katad-agent

stage "Guest agent: on the host, and as PID 1 of a VM"
$python -m pytest -q -p no:cacheprovider tests/agent

stage "QEMU driver against real VMs"
$python -m pytest -q -p no:cacheprovider tests/qemu

stage "katad on real VMs: every sandbox, container and process operation"
KATAD_BIN=$top/build/katad KATACTL_BIN=$top/build/katactl $python -m pytest -q -p no:cacheprovider tests/vm

stage "Unit and integration tests under AddressSanitizer and UBSan"
mkdir -p build-asan
(cd build-asan && { [ -f Makefile ] || ../configure --enable-sanitizers --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run; } && make -j"$jobs")
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=66
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && make -j"$jobs" check) || { cat build-asan/tests/unit/*.log; exit 1; }
KATAD_BIN=$top/build-asan/katad KATACTL_BIN=$top/build-asan/katactl $python -m pytest -q -p no:cacheprovider tests/integration
unset ASAN_OPTIONS UBSAN_OPTIONS

stage "Fuzzing every parser for ${FUZZ_SECONDS}s each"
tests/fuzz/run.sh

stage "systemd units"
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
sed -e "s|@sbindir@|$top/build|" -e "s|@sysconfdir@|/etc|" -e "s|@docdir@|/usr/share/doc/katad|" \
        systemd/katad.service.in > "$units/katad.service"
cp systemd/katad.socket "$units/"
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$units/katad.socket" "$units/katad.service"

stage "make distcheck"
if ! (cd build && make -j"$jobs" distcheck >distcheck.log 2>&1); then
        tail -n 40 build/distcheck.log
        for log in build/katad-*/_build/sub/tests/unit/*.log; do
                grep -q -E '^(FAIL|ERROR)' "$log" 2>/dev/null && cat "$log"
        done
        exit 1
fi

stage "All tests passed"
