# SPDX-License-Identifier: GPL-2.0
#
# binfmt_ape: build the module against a kernel tree, or run the QEMU demo and tests.
#
#   make [KDIR=...] [ARCH=...] [CROSS_COMPILE=...] [LLVM=1]   build binfmt_ape.ko
#   make modules_install | clean
#   make demo [ARCH=arm64] [APE=file ARGS="..."]               run APEs in a QEMU guest
#   make check                                                 every test, host and guests
#   make fixtures | fuzz [FUZZ_SECONDS=N] | setup

KDIR ?= /lib/modules/$(shell uname -r)/build
KVER ?= 6.12
FUZZ_SECONDS ?= 60
export KVER ARCHES VARIANT FUZZ_SECONDS FUZZ_SANITIZER
kbuild := $(MAKE) -C $(KDIR) M=$(CURDIR) $(if $(ARCH),ARCH=$(ARCH)) \
	$(if $(CROSS_COMPILE),CROSS_COMPILE=$(CROSS_COMPILE)) $(if $(LLVM),LLVM=$(LLVM))

.PHONY: all modules modules_install clean setup demo check fixtures fuzz test-host

all modules:
	$(kbuild) modules

modules_install:
	$(kbuild) modules_install

clean:
	$(kbuild) clean
	rm -rf build

setup:
	scripts/setup.sh

demo:
	KVER=$(KVER) ARCH=$(or $(ARCH),x86_64) scripts/demo.sh $(if $(APE),"$(APE)") $(ARGS)

check:
	KVER=$(KVER) scripts/check.sh

fixtures:
	scripts/fixtures.sh

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh
