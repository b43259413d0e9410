// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for kernel::binfmt (see helpers.h): what it needs of the page cache and of the
 * credential rules of exec, which the kernel offers as inline functions that Rust cannot call.
 */

#include <linux/binfmts.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/pagemap.h>
#include <linux/sched.h>
#include <linux/xattr.h>

#include "helpers.h"

loff_t binprm_file_size(struct file *file)
{
	return i_size_read(file_inode(file));
}

/* The address of @file's inode: the same for every open of the file while it is in memory. */
unsigned long binprm_file_id(struct file *file)
{
	return (unsigned long)file_inode(file);
}

/*
 * Maps the byte at @pos of @file, if the page cache holds it up to date, for reading without
 * a copy: returns its address, and in @len the bytes mapped from there (to the end of its
 * folio, or of its page with highmem). Returns NULL when it is not cached (also for DAX and
 * for overlayfs, whose own mappings hold no folios): the caller reads the file instead.
 * Undo with binprm_unmap_cached(), in reverse order of mapping.
 */
const void *binprm_map_cached(struct file *file, loff_t pos, size_t *len,
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

void binprm_unmap_cached(const void *addr, struct folio *folio)
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
bool binprm_gains_privilege(struct linux_binprm *bprm)
{
	struct file *file = bprm->file;
	struct inode *inode = file_inode(file);
	umode_t mode = READ_ONCE(inode->i_mode);

	if ((file->f_path.mnt->mnt_flags & MNT_NOSUID) || task_no_new_privs(current))
		return false;
	/* 0010: group execute, without which bprm_fill_uid() ignores S_ISGID. */
	if ((mode & S_ISUID) || (mode & (S_ISGID | 0010)) == (S_ISGID | 0010))
		return true;
	/* S_NOSEC: the VFS found no security attributes since the inode was last changed. */
	if (IS_NOSEC(inode) || !(inode->i_opflags & IOP_XATTR))
		return false;
	return __vfs_getxattr(file->f_path.dentry, inode, XATTR_NAME_CAPS, NULL, 0) > 0;
}
