# SPDX-License-Identifier: GPL-2.0
#
# binfmt_ape: build the module against a kernel tree, or run the QEMU demo and tests.
#
#   make [KDIR=...] [MO=...] [ARCH=...] [CROSS_COMPILE=...] [LLVM=1]   build binfmt_ape.ko
#   make modules_install | clean | preflight [KDIR=...] [MODE=kernel|bundled] [KSRC=...]
#   make demo [ARCH=arm64] [APE=file ARGS="..."]               run APEs in a QEMU guest
#   make check [GUESTS=...] [DEB_KERNELS=...]                  every test, host and guests
#   make distro-check DEB_KERNEL=7.3.4+deb13-arm64             the guest suite on a Debian kernel
#   make bench [ARCH=x86_64|arm64] [KVER=...]                  exec latency: table, JSON, chart
#   make soak [SOAK_SECONDS=N] [ARCH=...] [KVER=...]           exec storm against load/unload
#   make fuzz-guest [FUZZ_SECONDS=N] [KVER= ARCH= VARIANT=]    fuzzed files through execve (debug kernel)
#   make dkms-install | dkms-uninstall                         register with DKMS, as root
#   make deb                                                   binfmt-ape-dkms and -utils .debs
#   make patches [KSRC=pristine 7.3 tree]                      the upstream series, build/patches/
#   make fixtures | fuzz [FUZZ_SECONDS=N] | setup

KDIR ?= /lib/modules/$(shell uname -r)/build
FUZZ_SECONDS ?= 60
export ARCHES VARIANT GUESTS DEB_KERNELS DKMS_KERNELS FUZZ_SECONDS FUZZ_SANITIZER
kbuild_args := $(if $(ARCH),ARCH=$(ARCH)) $(if $(CROSS_COMPILE),CROSS_COMPILE=$(CROSS_COMPILE)) \
	$(if $(LLVM),LLVM=$(LLVM)) $(if $(CLIPPY),CLIPPY=$(CLIPPY)) $(if $(APE_BENCH),APE_BENCH=$(APE_BENCH))

# MO=DIR puts everything the build generates in DIR, leaving the sources untouched. Kbuild
# does that itself from 6.13 on; for older kernels DIR gets a fresh copy of the sources first.
ifdef MO
mo := $(abspath $(MO))
kbuild_has_mo := $(shell grep -qs KBUILD_EXTMOD_OUTPUT $(KDIR)/Makefile \
	$$(sed -n 's/^include //p' $(KDIR)/Makefile 2>/dev/null) && echo y)
ifeq ($(kbuild_has_mo),y)
kbuild := $(MAKE) -C $(KDIR) M=$(CURDIR) MO=$(mo) $(kbuild_args)
else
# Only into a new or empty directory, or one this did before (it replaces the copy).
kbuild := { [ ! -e $(mo) ] || [ -e $(mo)/.binfmt-ape-copy ] || [ -z "$$(ls -A $(mo) | grep -v '^linux-source-')" ] || \
	{ echo "MO=$(mo) is neither empty nor an earlier output directory" >&2; exit 1; }; } && \
	rm -rf $(mo)/Kbuild $(mo)/src $(mo)/rust && mkdir -p $(mo) && touch $(mo)/.binfmt-ape-copy && \
	cp -R Kbuild src rust $(mo)/ && $(MAKE) -C $(KDIR) M=$(mo) $(kbuild_args)
endif
else
kbuild := $(MAKE) -C $(KDIR) M=$(CURDIR) $(kbuild_args)
endif

# Where to find the kernel's Rust crates' source when they are bundled (see scripts/preflight.sh).
KSRC ?=
MODE ?=

.PHONY: all modules modules_install preflight dkms-src dkms-install dkms-uninstall deb clean setup demo check distro-check patches bench soak fixtures fuzz fuzz-guest test-host

# Checks the build's needs first and chooses the build mode (scripts/preflight.sh).
preflight_out := $(or $(mo),$(CURDIR)/build)
preflight := KSRC=$(KSRC) MODE=$(MODE) scripts/preflight.sh $(KDIR) $(preflight_out)

all modules:
	@vars=$$($(preflight)) && $(kbuild) modules $$vars

modules_install:
	@vars=$$($(preflight)) && $(kbuild) modules_install $$vars

preflight:
	@PREFLIGHT_VERBOSE=1 $(preflight) >/dev/null

# DKMS: the sources DKMS builds from (also what binfmt-ape-dkms installs), and their version.
version := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DKMS_SRC ?= /usr/src/binfmt-ape-$(version)

dkms-src:
	install -d $(DKMS_SRC)/scripts
	cp -r Kbuild Makefile src rust $(DKMS_SRC)/
	install -m 755 scripts/preflight.sh $(DKMS_SRC)/scripts/

dkms-install: dkms-src
	sed 's/#MODULE_VERSION#/$(version)/' dkms.conf >$(DKMS_SRC)/dkms.conf
	dkms add binfmt-ape/$(version)
	dkms install binfmt-ape/$(version)

dkms-uninstall:
	dkms remove binfmt-ape/$(version) --all
	rm -rf /usr/src/binfmt-ape-$(version)

deb:
	scripts/deb.sh

clean:
	$(kbuild) clean
	rm -rf build

setup:
	scripts/setup.sh

demo:
	KVER=$(or $(KVER),6.12) ARCH=$(or $(ARCH),x86_64) scripts/demo.sh $(if $(APE),"$(APE)") $(ARGS)

check:
	$(if $(KVER),KVER=$(KVER)) scripts/check.sh

distro-check:
	@[ -n "$(DEB_KERNEL)" ] || { echo "usage: make distro-check DEB_KERNEL=<Debian release, e.g. 6.12.118+deb13-arm64-16k>" >&2; exit 2; }
	GUESTS=none HOST_TESTS=0 DKMS_KERNELS=none DEB_KERNELS="$(DEB_KERNEL)" scripts/check.sh

patches:
	scripts/setup.sh
	$(if $(KSRC),KSRC=$(KSRC)) scripts/patches.sh

bench:
	scripts/setup.sh
	KVER=$(or $(KVER),6.12) $(if $(ARCH),ARCH=$(ARCH)) scripts/bench.sh

soak:
	scripts/setup.sh
	KVER=$(or $(KVER),7.3) ARCH=$(or $(ARCH),x86_64) $(if $(SOAK_SECONDS),SOAK_SECONDS=$(SOAK_SECONDS)) scripts/soak.sh

fixtures:
	scripts/fixtures.sh

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

fuzz-guest:
	scripts/setup.sh
	$(if $(KVER),KVER=$(KVER)) $(if $(ARCH),ARCH=$(ARCH)) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz-guest.sh
