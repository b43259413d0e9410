/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for binfmt_ape's Rust code: what the kernel offers only as static inline
 * functions, which Rust cannot call, wrapped in real functions local to this module (the
 * way the kernel's rust/helpers/ does for its own crate).
 */
#ifndef BINFMT_APE_RUST_HELPERS_H
#define BINFMT_APE_RUST_HELPERS_H

#include <linux/types.h>

struct file;
struct folio;
struct linux_binprm;

loff_t binprm_file_size(struct file *file);
unsigned long binprm_file_id(struct file *file);
const void *binprm_map_cached(struct file *file, loff_t pos, size_t *len,
			     struct folio **foliop);
void binprm_unmap_cached(const void *addr, struct folio *folio);
bool binprm_gains_privilege(struct linux_binprm *bprm);

#endif
