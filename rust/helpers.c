// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for binfmt_ape's Rust code (see helpers.h). Going through the kernel's own
 * inline functions also keeps the module out of the page-cache API's churn: the same calls
 * build against every supported series.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/binfmts.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/xattr.h>

#include "helpers.h"

/*
 * binfmt_misc puts itself at the head of the list of formats when it registers. modprobe
 * loading it before us keeps us ahead of it (the module's init asks for it too, for insmod).
 */
MODULE_SOFTDEP("pre: binfmt_misc");

/* binfmt_ape's own log budget: a loop of bad APEs mutes only binfmt_ape's messages. */
static DEFINE_RATELIMIT_STATE(binfmt_ape_log_rs, DEFAULT_RATELIMIT_INTERVAL,
			      DEFAULT_RATELIMIT_BURST);

/*
 * Printed from C, not with the kernel crate's pr_info!: that passes its arguments as %pA,
 * which only kernels built with CONFIG_RUST understand (others print a WARN), and binfmt_ape
 * also runs on those.
 */
void binfmt_ape_log_declined(const char *path, const char *why, size_t why_len)
{
	if (__ratelimit(&binfmt_ape_log_rs))
		pr_info("%s: not run natively: %.*s\n", path, (int)min_t(size_t, why_len, INT_MAX), why);
}

loff_t binfmt_ape_i_size(struct file *file)
{
	return i_size_read(file_inode(file));
}

/*
 * Maps the byte at @pos of @file, if the page cache holds it up to date, for reading without
 * a copy: returns its address, and in @len the bytes mapped from there (to the end of its
 * folio, or of its page with highmem). Returns NULL when it is not cached (also for DAX and
 * for overlayfs, whose own mappings hold no folios): the caller reads the file instead.
 * Undo with binfmt_ape_unmap_cached(), in reverse order of mapping.
 */
const void *binfmt_ape_map_cached(struct file *file, loff_t pos, size_t *len,
				  struct folio **foliop)
{
	struct folio *folio;
	size_t off;

	if (pos < 0)
		return NULL;
	folio = filemap_get_folio(file->f_mapping, pos >> PAGE_SHIFT);
	if (IS_ERR(folio))
		return NULL;
	if (!folio_test_uptodate(folio)) {
		folio_put(folio);
		return NULL;
	}
	off = offset_in_folio(folio, pos);
	*len = folio_size(folio) - off;
	if (folio_test_highmem(folio))
		*len = min(*len, PAGE_SIZE - offset_in_page(pos));
	*foliop = folio;
	return kmap_local_folio(folio, off);
}

void binfmt_ape_unmap_cached(const void *addr, struct folio *folio)
{
	kunmap_local(addr);
	folio_put(folio);
}

/*
 * Whether running @bprm's file as an ELF would change credentials: a set-user-ID file, a
 * set-group-ID one with group execute (what bprm_fill_uid() honours), or one with file
 * capabilities, on a mount that allows them and for a task that may gain privileges. A
 * foreign mount, which the kernel treats as nosuid, counts as one that allows them (we
 * cannot call mnt_may_suid()): the answer errs towards "yes", which declines.
 */
bool binfmt_ape_gains_privilege(struct linux_binprm *bprm)
{
	struct file *file = bprm->file;
	struct inode *inode = file_inode(file);
	umode_t mode = READ_ONCE(inode->i_mode);

	if ((file->f_path.mnt->mnt_flags & MNT_NOSUID) || task_no_new_privs(current))
		return false;
	if ((mode & S_ISUID) || (mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		return true;
	/* S_NOSEC: the VFS found no security attributes since the inode was last changed. */
	if (IS_NOSEC(inode) || !(inode->i_opflags & IOP_XATTR))
		return false;
	return __vfs_getxattr(file->f_path.dentry, inode, XATTR_NAME_CAPS, NULL, 0) > 0;
}
