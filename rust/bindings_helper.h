/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Header that bindgen turns into binfmt_ape's bindings, against the target
 * kernel's own headers and C flags (see Kbuild). Only what the wrappers in
 * rust/kernel/ need is allowlisted there.
 */

#include <linux/binfmts.h>
#include <linux/elf.h>
#include <linux/fs.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/sysctl.h>

#include "helpers.h"
