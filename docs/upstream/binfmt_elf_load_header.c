static int load_elf_binary(struct linux_binprm *bprm)
{
	return __load_elf_binary(bprm, (struct elfhdr *)bprm->buf);
}

#if !ELF_COMPAT
/**
 * binfmt_elf_load_header() - Load a file as the ELF image that a header describes.
 * @bprm: The exec in progress.
 * @ehdr: The ELF header to use instead of the file's first bytes.
 *
 * For binary formats that wrap an ELF image behind a header of their own, such
 * as binfmt_ape: loads @bprm's file the way binfmt_elf loads an ELF file, with
 * @ehdr in place of the header, and leaves @bprm->buf as it is.
 *
 * Return: 0 on success. -ENOEXEC if binfmt_elf refused @ehdr before changing
 * anything, so that the exec may go on to the next format. Another error code
 * otherwise.
 */
int binfmt_elf_load_header(struct linux_binprm *bprm, const struct elfhdr *ehdr)
{
	struct elfhdr elf_ex = *ehdr;

	return __load_elf_binary(bprm, &elf_ex);
}
EXPORT_SYMBOL_GPL(binfmt_elf_load_header);
#endif
