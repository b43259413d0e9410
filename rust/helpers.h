/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for binfmt_ape's Rust code: what the kernel offers only as static or inline
 * functions and macros, which Rust cannot call, in real functions local to this module (the
 * way the kernel's rust/helpers/ does for its own crate).
 */
#ifndef BINFMT_APE_RUST_HELPERS_H
#define BINFMT_APE_RUST_HELPERS_H

#include <linux/types.h>

struct linux_binprm;

bool binprm_gains_privilege(struct linux_binprm *bprm);
void binfmt_ape_log_decline(struct linux_binprm *bprm, const char *why, int len);

#endif
