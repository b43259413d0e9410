// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for binfmt_ape: what its Rust code needs of the kernel's static and inline
 * functions and macros, which Rust cannot call.
 */

#define pr_fmt(fmt) "binfmt_ape: " fmt

#include <linux/binfmts.h>
#include <linux/dcache.h>
#include <linux/fs.h>
#include <linux/printk.h>
#include <linux/ratelimit.h>

#include "helpers.h"

/* Only the module built out of tree has a set-id policy of its own (see binfmt_ape's setid). */
#ifndef CONFIG_BINFMT_APE
#include <linux/mount.h>
#include <linux/security.h>
#include <linux/xattr.h>

/*
 * Whether exec would give the new program credentials other than the caller's, by the rules
 * of bprm_fill_uid() and commoncap, evaluated on the file the credentials come from (as
 * bprm_creds_from_file() picks it: bprm->executable for a binfmt_misc rule with the C flag,
 * else the file being loaded). Set-user-ID, set-group-ID with group execute, or file
 * capabilities count, unless a nosuid mount or no_new_privs (LSM_UNSAFE_NO_NEW_PRIVS) rules
 * them out. Errs towards yes where a module cannot evaluate the rule: a mount that
 * mnt_may_suid() would refuse only for its namespace, a tracer that ptracer_capable() would
 * refuse. An LSM's transition on exec (SELinux, AppArmor, Smack) is out of its scope: run
 * natively, the APE's own label decides it, where the shell's way went by /bin/sh's.
 */
bool binprm_gains_privilege(struct linux_binprm *bprm)
{
	struct file *file = bprm->execfd_creds ? bprm->executable : bprm->file;
	struct inode *inode = file_inode(file);
	umode_t mode = READ_ONCE(inode->i_mode);

	if ((bprm->unsafe & LSM_UNSAFE_NO_NEW_PRIVS) ||
	    (file->f_path.mnt->mnt_flags & MNT_NOSUID))
		return false;
	if ((mode & S_ISUID) || (mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		return true;
	/* S_NOSEC: the VFS found no security attributes since the inode was last changed. */
	if (IS_NOSEC(inode) || !(inode->i_opflags & IOP_XATTR))
		return false;
	return __vfs_getxattr(file->f_path.dentry, inode, XATTR_NAME_CAPS, NULL, 0) > 0;
}
#endif /* !CONFIG_BINFMT_APE */

/*
 * Says why an APE is not run natively, under the kernel's default rate limit (binfmt_ape's
 * own state, as pr_info_ratelimited() keeps one per call site). The file is named by its
 * dentry, with anything unprintable escaped (%pE): a file name may hold a newline.
 */
void binfmt_ape_log_decline(struct linux_binprm *bprm, const char *why, int len)
{
	static DEFINE_RATELIMIT_STATE(rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST);
	struct name_snapshot name;

	if (!__ratelimit(&rs))
		return;
	take_dentry_name_snapshot(&name, bprm->file->f_path.dentry);
	pr_info("%*pE: not run natively: %.*s\n", (int)name.name.len, name.name.name, len, why);
	release_dentry_name_snapshot(&name);
}
