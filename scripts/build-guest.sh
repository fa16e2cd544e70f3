#!/bin/bash
# Builds katad's guest image: a minimal PVH kernel (vmlinux) from Debian's
# linux-source-6.1 plus agent/guest/kernel.fragment, and an initrd whose /init is
# the static guest agent. With --debian-kernel, uses Debian's packaged kernel
# instead and puts the needed modules into the initrd. See docs/guest.md.
#
# Usage: scripts/build-guest.sh [--out DIR] [--cache DIR] [--kernel-only|--initrd-only]
#                               [--agent PATH] [--debian-kernel] [--jobs N] [--fragment FILE]
#
# Outputs (in OUT, default $KATAD_GUEST_DIR or <repo>/build/guest):
#   vmlinux, vmlinux.key, kernel.config   the PVH kernel, its cache key and config
#   initrd.img                            gzip'ed newc cpio, /init = the agent
#   kernel-debian, initrd-debian.img      with --debian-kernel (bzImage + modules)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self="$repo/scripts/build-guest.sh"
fragment="$repo/agent/guest/kernel.fragment"
src_pkg=linux-source-6.1
src_tarball=/usr/src/linux-source-6.1.tar.xz

out=${KATAD_GUEST_DIR:-$repo/build/guest}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/katad/kernel
agent=$repo/build/agent/katad-agent
do_kernel=1
do_initrd=1
debian=0
jobs=$(nproc)

usage() {
	sed -n "/^# Usage:/,/^#$/p" "$self" | sed "/^#$/d" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}
die() { echo "build-guest: error: $*" >&2; exit 1; }
log() { echo "build-guest: $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?--out needs a directory}; shift 2 ;;
	--out=*) out=${1#*=}; shift ;;
	--cache) cache=${2:?--cache needs a directory}; shift 2 ;;
	--cache=*) cache=${1#*=}; shift ;;
	--agent) agent=${2:?--agent needs a path}; shift 2 ;;
	--agent=*) agent=${1#*=}; shift ;;
	--jobs|-j) jobs=${2:?}; shift 2 ;;
	--fragment) fragment=${2:?}; shift 2 ;;
	--kernel-only) do_initrd=0; shift ;;
	--initrd-only) do_kernel=0; shift ;;
	--debian-kernel) debian=1; shift ;;
	-h|--help) usage 0 ;;
	*) echo "build-guest: unknown argument: $1" >&2; usage ;;
	esac
done
[ "$do_kernel$do_initrd" != 00 ] || die "--kernel-only and --initrd-only exclude each other"
mkdir -p "$out" "$cache"
out=$(cd "$out" && pwd)
cache=$(cd "$cache" && pwd)

# ---------------------------------------------------------------- dependencies
# Installs missing Debian packages when root; otherwise names them and stops.
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
			|| missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing packages: ${missing[*]} (run: apt-get install ${missing[*]})"
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2 || {
		apt-get update -o DPkg::Lock::Timeout=600 >&2
		apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
	}
}

src_version() { dpkg-query -W -f='${Version}' "$src_pkg"; }

# Extracts the kernel source once per linux-source package version.
ensure_source() {
	ensure_packages "$src_pkg" xz-utils
	local ver stamp
	ver=$(src_version)
	src="$cache/linux-source-6.1"
	stamp="$cache/.source-$ver"
	if [ ! -f "$stamp" ]; then
		log "extracting $src_tarball ($src_pkg $ver)"
		rm -rf "$src" "$cache"/.source-*
		tar -C "$cache" -xf "$src_tarball"
		touch "$stamp"
	fi
}

# usr/gen_init_cpio from the kernel tree writes device nodes into the archive
# from a text list, so no root (mknod) is needed.
ensure_gen_init_cpio() {
	ensure_packages "$src_pkg" xz-utils gcc libc6-dev
	local ver tool c
	ver=$(src_version)
	tool="$cache/tools/gen_init_cpio-$ver"
	if [ ! -x "$tool" ]; then
		mkdir -p "$cache/tools"
		c="$cache/linux-source-6.1/usr/gen_init_cpio.c"
		if [ ! -f "$c" ] || [ ! -f "$cache/.source-$ver" ]; then
			tar -C "$cache/tools" -xf "$src_tarball" linux-source-6.1/usr/gen_init_cpio.c
			c="$cache/tools/linux-source-6.1/usr/gen_init_cpio.c"
		fi
		gcc -O2 -o "$tool.tmp" "$c"
		mv "$tool.tmp" "$tool"
	fi
	gen_init_cpio=$tool
}

# >>> kernel-section (its text is part of the kernel cache key)
kernel_key() {
	{
		echo "fragment:"; cat "$fragment"
		echo "source: $src_pkg $(src_version)"
		echo "gcc: $(gcc -dumpfullversion) $(ld --version | head -1)"
		echo "script:"; sed -n '/^# >>> kernel-section/,/^# <<< kernel-section/p' "$self"
	} | sha256sum | cut -d' ' -f1
}

# Checks that every option the fragment sets has that value in .config (Kconfig
# silently drops an option whose dependencies are not met).
verify_config() {
	local config=$1 line sym bad=()
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qxF -- "$line" "$config" || bad+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$config" || echo absent))")
			;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }; sym=${sym%% *}
			if grep -qE "^$sym=" "$config"; then bad+=("$line (got: $(grep -E "^$sym=" "$config"))"); fi
			;;
		esac
	done <"$fragment"
	if [ ${#bad[@]} -gt 0 ]; then
		echo "build-guest: error: these fragment options did not survive olddefconfig:" >&2
		printf '  %s\n' "${bad[@]}" >&2
		echo "build-guest: add their dependencies to $fragment" >&2
		exit 1
	fi
}

build_kernel() {
	# tinyconfig + vmlinux need: make, gcc, bc (timeconst), bison/flex (kconfig),
	# libelf-dev (objtool, always on for x86_64). No libssl (no module signing),
	# no dwarves (no BTF), no cpio (no IKHEADERS).
	ensure_packages "$src_pkg" make gcc libc6-dev bc bison flex libelf-dev xz-utils
	[ -f "$fragment" ] || die "no fragment at $fragment"
	local key
	key=$(kernel_key)
	if [ -f "$out/vmlinux" ] && [ -f "$out/vmlinux.key" ] && [ "$(cat "$out/vmlinux.key")" = "$key" ]; then
		log "kernel up to date ($out/vmlinux)"
		return 0
	fi
	# One build at a time per cache (two would share obj/); a kernel already built for this key by
	# any checkout is reused.
	exec {lock_fd}>"$cache/.lock"
	flock "$lock_fd"
	local built="$cache/built/$key"
	if [ -f "$built/vmlinux" ] && [ -f "$built/kernel.config" ]; then
		cp "$built/vmlinux" "$out/vmlinux.tmp"
		mv "$out/vmlinux.tmp" "$out/vmlinux"
		cp "$built/kernel.config" "$out/kernel.config"
		echo "$key" >"$out/vmlinux.key"
		flock -u "$lock_fd"
		log "kernel taken from the cache ($built)"
		return 0
	fi
	ensure_source
	local obj="$cache/obj" start=$SECONDS
	mkdir -p "$obj"
	log "configuring: tinyconfig + $(basename "$fragment")"
	make -s -C "$src" O="$obj" tinyconfig >/dev/null
	# -n: allnoconfig semantics, so options the fragment makes visible stay off
	# unless named (olddefconfig would turn on their defaults: VT, input, IPv6...).
	(cd "$src" && ./scripts/kconfig/merge_config.sh -n -O "$obj" "$obj/.config" "$fragment") >"$obj/merge.log" 2>&1 \
		|| { cat "$obj/merge.log" >&2; die "merge_config.sh failed"; }
	verify_config "$obj/.config"
	log "building vmlinux with -j$jobs (log: $obj/build.log)"
	if ! make -C "$src" O="$obj" -j"$jobs" vmlinux >"$obj/build.log" 2>&1; then
		tail -n 40 "$obj/build.log" >&2
		die "kernel build failed (full log: $obj/build.log)"
	fi
	rm -rf "$cache/built"
	mkdir -p "$built"
	cp "$obj/vmlinux" "$built/vmlinux"
	cp "$obj/.config" "$built/kernel.config"
	flock -u "$lock_fd"
	cp "$built/vmlinux" "$out/vmlinux.tmp"
	mv "$out/vmlinux.tmp" "$out/vmlinux"
	cp "$built/kernel.config" "$out/kernel.config"
	echo "$key" >"$out/vmlinux.key"
	log "kernel built in $((SECONDS - start)) s: $out/vmlinux ($(stat -c %s "$out/vmlinux") bytes)"
}
# <<< kernel-section

# ---------------------------------------------------------------- initrd
check_agent() {
	[ -f "$agent" ] || die "no agent binary at $agent (build it, or pass --agent PATH)"
	[ -x "$agent" ] || die "agent $agent is not executable"
	if LC_ALL=C readelf -l "$agent" 2>/dev/null | grep -q 'Requesting program interpreter'; then
		die "agent $agent is dynamically linked; /init must be static"
	fi
}

# Writes the common skeleton of the cpio list to stdout.
skeleton_list() {
	cat <<-EOF
	dir /dev 0755 0 0
	nod /dev/console 0600 0 0 c 5 1
	nod /dev/null 0666 0 0 c 1 3
	dir /proc 0555 0 0
	dir /sys 0555 0 0
	dir /run 0755 0 0
	dir /tmp 1777 0 0
	dir /etc 0755 0 0
	file /init $agent 0755 0 0
	EOF
}

# make_cpio LIST OUTPUT: gzip'ed newc archive, reproducible (fixed mtime, no gzip name).
make_cpio() {
	ensure_gen_init_cpio
	"$gen_init_cpio" -t "${SOURCE_DATE_EPOCH:-0}" "$1" | gzip -n -9 >"$2.tmp"
	mv "$2.tmp" "$2"
}

build_initrd() {
	check_agent
	local list
	list=$(mktemp)
	skeleton_list >"$list"
	make_cpio "$list" "$out/initrd.img"
	rm -f "$list"
	log "initrd: $out/initrd.img ($(stat -c %s "$out/initrd.img") bytes, /init = $agent)"
}

# ---------------------------------------------------------------- Debian kernel fallback
# Modules the guest needs from Debian's generic kernel, in this order; their
# dependencies are added from modules.dep. Debian builds pciehp, 8250 and
# devtmpfs in. crc32c_generic is only a soft dependency of ext4/jbd2 (a crypto
# algorithm looked up by name), which modules.dep does not list.
debian_modules=(virtio_pci virtio_console virtio_blk virtio_net 9pnet_virtio 9p
	overlay crc32c_generic ext4 vmw_vsock_virtio_transport)

# Finds Debian's kernel: the newest installed /boot/vmlinuz-* with its modules,
# else the linux-image package that linux-image-amd64 depends on, downloaded
# and unpacked into the cache (nothing is installed into /boot).
find_debian_kernel() {
	local v boot=${KATAD_BOOT_DIR:-/boot}  # KATAD_BOOT_DIR=/nonexistent forces the download
	for v in $(find "$boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' 2>/dev/null | sed 's/^vmlinuz-//' | sort -rV); do
		if [ -f "/lib/modules/$v/modules.dep" ]; then
			deb_version=$v deb_vmlinuz=$boot/vmlinuz-$v deb_modroot=/lib/modules/$v
			return 0
		fi
	done
	local pkg dir
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	if [ -z "$pkg" ]; then
		[ "$(id -u)" -eq 0 ] && apt-get update >&2
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	fi
	[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package"
	dir="$cache/debian/$pkg"
	if [ ! -d "$dir/root" ]; then
		log "downloading $pkg (unpacked into $dir, not installed)"
		rm -rf "$dir"
		mkdir -p "$dir"
		(cd "$dir" && apt-get download "$pkg" >&2)
		dpkg-deb -x "$dir"/*.deb "$dir/root.tmp"
		rm -f "$dir"/*.deb
		mv "$dir/root.tmp" "$dir/root"
	fi
	v=${pkg#linux-image-}
	deb_version=$v deb_vmlinuz=$dir/root/boot/vmlinuz-$v deb_modroot=$dir/root/lib/modules/$v
	[ -f "$deb_vmlinuz" ] || die "$pkg has no /boot/vmlinuz-$v"
	if [ ! -f "$deb_modroot/modules.dep" ]; then
		depmod -b "$dir/root" "$v" || die "depmod failed for $pkg"
	fi
}

# Prints the module paths (relative to the modules dir) in load order.
resolve_modules() {
	local modroot=$1; shift
	awk -v want="$*" '
	function norm(p,   n) { n = p; sub(/.*\//, "", n); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", n); gsub(/-/, "_", n); return n }
	function visit(p,   i, n, d) {
		if (p in done) return
		done[p] = 1
		n = split(deps[p], d, " ")
		for (i = 1; i <= n; i++) visit(d[i])
		print p
	}
	FILENAME ~ /modules\.builtin$/ { builtin[norm($1)] = 1; next }
	{
		p = $1; sub(/:$/, "", p)
		deps[p] = ""
		for (i = 2; i <= NF; i++) deps[p] = deps[p] " " $i
		path[norm(p)] = p
	}
	END {
		n = split(want, w, " ")
		for (i = 1; i <= n; i++) {
			m = w[i]; gsub(/-/, "_", m)
			if (m in builtin) continue
			if (!(m in path)) { print "missing module " m > "/dev/stderr"; exit 1 }
			visit(path[m])
		}
	}' "$modroot/modules.builtin" "$modroot/modules.dep"
}

build_debian() {
	check_agent
	ensure_packages kmod xz-utils zstd
	find_debian_kernel
	log "Debian kernel $deb_version ($deb_vmlinuz)"
	local mods stage list rel dst
	mods=$(resolve_modules "$deb_modroot" "${debian_modules[@]}") || die "module resolution failed"
	stage=$(mktemp -d)
	list="$stage/list"
	skeleton_list >"$list"
	{
		echo "dir /lib 0755 0 0"
		echo "dir /lib/modules 0755 0 0"
		echo "dir /lib/modules/$deb_version 0755 0 0"
	} >>"$list"
	: >"$stage/katad-modules"
	declare -A dirs=()
	while IFS= read -r rel; do
		dst=${rel%.xz}; dst=${dst%.zst}; dst=${dst%.gz}
		local d=${dst%/*} acc=/lib/modules/$deb_version part
		IFS=/ read -r -a parts <<<"$d"
		for part in "${parts[@]}"; do
			acc="$acc/$part"
			if [ -z "${dirs[$acc]:-}" ]; then dirs[$acc]=1; echo "dir $acc 0755 0 0" >>"$list"; fi
		done
		mkdir -p "$stage/m/${dst%/*}"
		case "$rel" in
		*.xz) xz -dc "$deb_modroot/$rel" >"$stage/m/$dst" ;;
		*.zst) zstd -qdc "$deb_modroot/$rel" >"$stage/m/$dst" ;;
		*.gz) gzip -dc "$deb_modroot/$rel" >"$stage/m/$dst" ;;
		*) cp "$deb_modroot/$rel" "$stage/m/$dst" ;;
		esac
		echo "file /lib/modules/$deb_version/$dst $stage/m/$dst 0644 0 0" >>"$list"
		echo "/lib/modules/$deb_version/$dst" >>"$stage/katad-modules"
	done <<<"$mods"
	echo "file /etc/katad-modules $stage/katad-modules 0644 0 0" >>"$list"
	make_cpio "$list" "$out/initrd-debian.img"
	cp "$deb_vmlinuz" "$out/kernel-debian.tmp"
	mv "$out/kernel-debian.tmp" "$out/kernel-debian"
	log "modules (load order, /etc/katad-modules): $(sed 's#.*/##' "$stage/katad-modules" | tr '\n' ' ')"
	rm -rf "$stage"
	log "Debian kernel: $out/kernel-debian; initrd: $out/initrd-debian.img ($(stat -c %s "$out/initrd-debian.img") bytes)"
}

# ---------------------------------------------------------------- main
if [ "$debian" = 1 ]; then
	build_debian
	exit 0
fi
[ "$do_kernel" = 1 ] && build_kernel
[ "$do_initrd" = 1 ] && build_initrd
exit 0
