#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# A guest kernel with Rust, built from Debian's linux-source and qemu/config fragments, cached.
set -euo pipefail
LOG_TAG=kernel
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-apt.sh"

usage() {
	cat <<EOF
Usage: $0
Fetches Debian's linux-source-KVER, configures it from tinyconfig plus the qemu/config
fragments (base, the arch's, the variant's), refuses a .config without CONFIG_RUST=y, and
builds the kernel image and modules (for Module.symvers). The output is cached as
  $CACHE/kernel/KVER-ARCH-VARIANT-KEY
where KEY covers the source version, the fragments and the toolchain; an unchanged rerun does
nothing. Prints the build directory on stdout. Environment:
  KVER              kernel series (default 6.12)
  ARCH              ${ALL_ARCHES// / or } (default x86_64)
  VARIANT           qemu/config/variant-VARIANT.config (default: default)
  KERNEL_TREE       a git tree to build instead of Debian's linux-source-KVER
  JOBS              make -j (default: cores + 1)
  BINFMT_APE_CACHE  the cache (default ~/.cache/binfmt-ape)
EOF
}

configure() {
	local out=$1 cfg=$BINFMT_APE_ROOT/qemu/config
	local mk=(make -s -C "$SRC" O="$out" ARCH="$KARCH" CROSS_COMPILE="$CROSS" ${LLVM:+LLVM=1})
	"${mk[@]}" rustavailable >/dev/null ||
		die "the kernel says Rust is not available (make rustavailable in $SRC)"
	"${mk[@]}" tinyconfig >/dev/null
	"$SRC"/scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" \
		"$cfg/base.config" "$cfg/$KARCH.config" "$cfg/variant-$VARIANT.config" >/dev/null
	"${mk[@]}" olddefconfig >/dev/null
	grep -qx 'CONFIG_RUST=y' "$out/.config" ||
		die "CONFIG_RUST=y was dropped from $out/.config (Kconfig found Rust unavailable)"
	# Each symbol as the last fragment sets it (a variant overrides its arch), then checked.
	local line sym missing=()
	local -A want=()
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*) want[${line%%=*}]=$line ;;
		"# CONFIG_"*" is not set") sym=${line#\# }; want[${sym%% *}]=$line ;;
		esac
	done < <(cat "$cfg/base.config" "$cfg/$KARCH.config" "$cfg/variant-$VARIANT.config")
	for sym in "${!want[@]}"; do
		# Symbols a series does not have (7.x folded PROC_SYSCTL into SYSCTL) are not missing.
		grep -rqx --include='Kconfig*' "config ${sym#CONFIG_}" "$SRC" || continue
		case "${want[$sym]}" in
		"#"*) grep -q "^$sym=" "$out/.config" && missing+=("${want[$sym]}") ;;
		*) grep -qx "${want[$sym]}" "$out/.config" || missing+=("${want[$sym]}") ;;
		esac
	done
	[ "${#missing[@]}" -eq 0 ] || log "warning: not as asked in the final .config: ${missing[*]}"
}

main() {
	case "${1:-}" in
	-h|--help) usage; exit 0 ;;
	?*) usage >&2; exit 2 ;;
	esac
	arch_facts "$ARCH"
	[ -e "$BINFMT_APE_ROOT/qemu/config/variant-$VARIANT.config" ] ||
		die "no variant '$VARIANT' (qemu/config/variant-*.config)"
	if [ -n "${KERNEL_TREE:-}" ]; then
		# A kernel tree in git (make patches' tree with the series applied): keyed by its tree.
		SRC=$KERNEL_TREE
		SRCVER=$(git -C "$SRC" rev-parse 'HEAD^{tree}')
		git -C "$SRC" diff --quiet HEAD || die "$SRC has uncommitted changes"
	else
		kernel_source
	fi
	# A variant that says so is built with clang and lld (KASAN with Rust needs it).
	LLVM=
	if grep -qx '# binfmt-ape: LLVM=1' "$BINFMT_APE_ROOT/qemu/config/variant-$VARIANT.config"; then
		LLVM=1
		export PATH=/usr/lib/llvm-19/bin:$PATH
		command -v clang >/dev/null && command -v ld.lld >/dev/null ||
			die "variant $VARIANT builds with LLVM=1: install clang-19 and lld-19 (scripts/setup.sh)"
	fi
	local key out
	key=$(kernel_key "$SRCVER")
	out=$CACHE/kernel/$KVER-$KARCH-$VARIANT-$key
	with_lock "$out.lock" build "$out"
	echo "$out"
}

# Builds the kernel into OUT unless a finished build is there (under OUT's lock).
build() {
	local out=$1
	if [ -e "$out/.done" ]; then
		log "cached: $out"
		return 0
	fi
	mkdir -p "$out"
	log "configuring $KVER ($SRCVER) for $KARCH, variant $VARIANT"
	configure "$out"
	local jobs=${JOBS:-$(($(nproc) + 1))} t0=$SECONDS
	log "building $KARCH kernel and modules (-j$jobs, ~3-4 min)"
	make -s -C "$SRC" O="$out" ARCH="$KARCH" CROSS_COMPILE="$CROSS" ${LLVM:+LLVM=1} -j"$jobs" \
		"$(basename "$IMAGE")" modules >"$out/build.log" 2>&1 ||
		{ tail -n 40 "$out/build.log" >&2; die "kernel build failed (log: $out/build.log)"; }
	[ -s "$out/Module.symvers" ] || die "no Module.symvers in $out"
	echo "$KVER $SRCVER" >"$out/.kver"
	# Modules for this kernel must be built the same way (scripts/build-module.sh reads it).
	if [ -n "$LLVM" ]; then touch "$out/.llvm"; fi
	touch "$out/.done"
	log "built $KARCH kernel in $((SECONDS - t0)) s: $out"
}

main "$@"
