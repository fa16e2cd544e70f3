#!/bin/bash
# Builds the libFuzzer targets with clang (ASan + UBSan) straight from the sources and runs each
# for FUZZ_SECONDS (default 30) on a copy of its seed corpus. Exits non-zero on any crash, leak or
# sanitizer report.
#
# Usage: tests/fuzz/run.sh [BUILD_DIR]    (default: a temporary directory, removed afterwards)
# Environment: FUZZ_SECONDS, CC (default clang-14, else clang), FUZZ_TARGETS (default: every target:
# body websocket agent_client qmp agent_frames)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-body websocket agent_client qmp agent_frames}

if [[ $# -ge 1 ]]; then
        build=$1
        mkdir -p "$build"
        build=$(cd "$build" && pwd)
else
        build=$(mktemp -d "${TMPDIR:-/tmp}/katad-fuzz.XXXXXX")
        trap 'rm -rf "$build"' EXIT
fi

if [[ -z ${CC:-} ]]; then
        if command -v clang-14 >/dev/null; then CC=clang-14; else CC=clang; fi
fi

cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -I. -Icommon
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
        -Wall -Wextra -Wno-unused-parameter -Werror)
read -r -a jansson_cflags <<<"$(pkg-config --cflags jansson 2>/dev/null || true)"
read -r -a jansson_libs <<<"$(pkg-config --libs jansson 2>/dev/null || echo -ljansson)"
read -r -a crypto_libs <<<"$(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)"

common_sources=(core/schema.c core/error.c core/types.c common/util.c common/log.c common/json-util.c
                common/websocket.c)
read -r -a event_flags <<<"$(pkg-config --cflags --libs libevent libevent_pthreads 2>/dev/null || echo -levent -levent_pthreads)"

# Each target: its source, and what it needs beyond the common sources.
declare -A target_source=(
        [body]=tests/fuzz/fuzz_body.c
        [websocket]=tests/fuzz/fuzz_websocket.c
        [agent_client]=tests/fuzz/fuzz_agent_client.c
        [qmp]=tests/fuzz/fuzz_qmp.c
        [agent_frames]=tests/agent/fuzz_agent_frames.c
)
declare -A target_extra=(
        [agent_client]="agent/client.c agent/protocol.c agent/agent.c -pthread"
        [qmp]="vmm/qmp.c -pthread ${event_flags[*]}"
        [agent_frames]="agent/guest/session.c agent/guest/rpc.c agent/guest/spec.c agent/protocol.c"
)
declare -A target_corpus=(
        [agent_frames]=tests/agent/corpus/agent_frames
)

cd "$root"
for t in $targets; do
        echo "== building fuzz_$t"
        read -r -a extra <<<"${target_extra[$t]:-}"
        "$CC" "${cflags[@]}" "${jansson_cflags[@]}" -o "$build/fuzz_$t" "${target_source[$t]}" \
                "${common_sources[@]}" "${extra[@]}" "${jansson_libs[@]}" "${crypto_libs[@]}"
done

# Key names and tokens help libFuzzer reach deep schema paths quickly.
cat >"$build/body.dict" <<'EOF'
"{"
"}"
"["
"]"
":"
","
"null"
"true"
"false"
"-1"
"65"
"\"ID\""
"\"RootFs\""
"\"Source\""
"\"Options\""
"\"Cmd\""
"\"Args\""
"\"Envs\""
"\"Var\""
"\"Capabilities\""
"\"bounding\""
"\"Containers\""
"\"HypervisorConfig\""
"\"KernelParams\""
"\"NumVCPUs\""
"\"Annotations\""
"\"Mounts\""
"\"DeviceInfos\""
"\"Resources\""
"\"memory\""
"\"cpu\""
"\"devices\""
"\"unified\""
"\"Signal\""
"\"SIGTERM\""
"\"All\""
"\"Height\""
"\"Width\""
EOF

status=0
for t in $targets; do
        corpus="$build/corpus-$t"
        rm -rf "$corpus"
        mkdir -p "$corpus" "$build/artifacts-$t"
        seeds=$root/${target_corpus[$t]:-tests/fuzz/corpus/$t}
        [[ -d $seeds ]] && cp -r "$seeds/." "$corpus/"
        dict=()
        [[ -f $build/$t.dict ]] && dict=(-dict="$build/$t.dict")
        echo "== running fuzz_$t for ${seconds}s"
        if ! (cd "$build" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                ./"fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$build/artifacts-$t/" "${dict[@]}" "$corpus"); then
                echo "fuzz_$t FAILED; reproducers:" >&2
                ls -l "$build/artifacts-$t" >&2 || true
                if [[ $# -eq 0 ]]; then
                        # Keep the reproducers: the temporary build directory is about to go.
                        keep=$(mktemp -d "${TMPDIR:-/tmp}/katad-fuzz-crash.XXXXXX")
                        cp -r "$build/artifacts-$t" "$keep/"
                        echo "copied to $keep" >&2
                fi
                status=1
        fi
done

exit $status
