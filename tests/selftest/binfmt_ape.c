// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of binfmt_ape, the loader of Actually Portable Executables (APE):
 * Documentation/admin-guide/binfmt-ape.rst.
 *
 * The test makes its APEs from itself (it is linked static): a shell prologue
 * whose printf statement spells this CPU's ELF header, then this program's ELF
 * image at a 64 KiB boundary. Run as "binfmt_ape payload", it exits with 42.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest.h"

#define PAYLOAD_STATUS	42
#define IMAGE_BASE	0x10000	/* a multiple of every page size */
#define WINDOW		8192	/* where the kernel looks for printf statements */
#define SYSCTL_HANDLED	"/proc/sys/fs/binfmt_ape/handled"

#if defined(__x86_64__)
#define THIS_MACHINE	EM_X86_64
#define OTHER_MACHINE	EM_AARCH64
#elif defined(__aarch64__)
#define THIS_MACHINE	EM_AARCH64
#define OTHER_MACHINE	EM_X86_64
#endif

static char *self;		/* this program's ELF image */
static size_t self_size;
static char dir[32];		/* where the test APEs are made */

static void read_self(void)
{
	struct stat st;
	int fd = open("/proc/self/exe", O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		ksft_exit_fail_perror("/proc/self/exe");
	self_size = st.st_size;
	self = malloc(self_size);
	if (!self || read(fd, self, self_size) != (ssize_t)self_size)
		ksft_exit_fail_msg("cannot read /proc/self/exe\n");
	close(fd);
}

/* Appends "printf '...'" spelling @ehdr as octal escapes. */
static size_t printf_statement(char *out, const Elf64_Ehdr *ehdr)
{
	const unsigned char *b = (const unsigned char *)ehdr;
	size_t n = sprintf(out, "printf '");

	for (size_t i = 0; i < sizeof(*ehdr); i++)
		n += sprintf(out + n, "\\%03o", b[i]);
	return n + sprintf(out + n, "'\n");
}

/*
 * Writes an APE to @path: @magic, then a printf statement for each of
 * @machines (in order), then this program's image at IMAGE_BASE. @entry, if
 * not zero, replaces the entry point the statements spell.
 */
static void make_ape(const char *path, const char *magic, const int *machines,
		     int n, Elf64_Addr entry)
{
	Elf64_Ehdr ehdr;
	Elf64_Phdr *ph;
	char *prologue;
	size_t len;
	int fd;

	memcpy(&ehdr, self, sizeof(ehdr));
	ehdr.e_phoff += IMAGE_BASE;
	ehdr.e_shoff = 0;
	ehdr.e_shnum = 0;
	ehdr.e_shstrndx = 0;
	if (entry)
		ehdr.e_entry = entry;

	prologue = calloc(1, WINDOW);
	if (!prologue)
		ksft_exit_fail_msg("out of memory\n");
	len = sprintf(prologue, "%s\n'\n", magic);
	for (int i = 0; i < n; i++) {
		ehdr.e_machine = machines[i];
		len += printf_statement(prologue + len, &ehdr);
	}
	len += sprintf(prologue + len, "exit 1\n");

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	if (fd < 0 || pwrite(fd, prologue, len, 0) != (ssize_t)len)
		ksft_exit_fail_perror(path);
	/* The image, its program headers moved along with it. */
	ph = (Elf64_Phdr *)(self + ((Elf64_Ehdr *)self)->e_phoff);
	for (int i = 0; i < ((Elf64_Ehdr *)self)->e_phnum; i++)
		ph[i].p_offset += IMAGE_BASE;
	if (pwrite(fd, self, self_size, IMAGE_BASE) != (ssize_t)self_size)
		ksft_exit_fail_perror(path);
	for (int i = 0; i < ((Elf64_Ehdr *)self)->e_phnum; i++)
		ph[i].p_offset -= IMAGE_BASE;
	close(fd);
	free(prologue);
}

/* Runs @path; returns its exit status, or -errno if execve() failed. */
static int run(const char *path)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		ksft_exit_fail_perror("fork");
	if (pid == 0) {
		execve(path, (char *const []){ (char *)path, "payload", NULL },
		       (char *const []){ NULL });
		_exit(200 + errno);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -EINTR;
	status = WEXITSTATUS(status);
	return status >= 200 ? -(status - 200) : status;
}

static long handled(void)
{
	long n = -1;
	FILE *f = fopen(SYSCTL_HANDLED, "r");

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

static void expect(const char *name, const char *magic, const int *machines,
		   int n, Elf64_Addr entry, int want)
{
	char path[64];
	int got;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	make_ape(path, magic, machines, n, entry);
	got = run(path);
	if (got != want)
		ksft_print_msg("%s: got %d (%s), want %d\n", name, got,
			       got < 0 ? strerror(-got) : "exit status", want);
	ksft_test_result(got == want, "%s\n", name);
	unlink(path);
}

int main(int argc, char **argv)
{
	static const int this[] = { THIS_MACHINE };
	static const int other[] = { OTHER_MACHINE };
	static const int fat[] = { OTHER_MACHINE, THIS_MACHINE };
	long before;

	if (argc > 1 && !strcmp(argv[1], "payload"))
		return PAYLOAD_STATUS;

	ksft_print_header();
	if (access(SYSCTL_HANDLED, R_OK))
		ksft_exit_skip("binfmt_ape is not loaded (no %s)\n", SYSCTL_HANDLED);
	read_self();
	if (memcmp(self, ELFMAG, SELFMAG) || self[EI_CLASS] != ELFCLASS64 ||
	    ((Elf64_Ehdr *)self)->e_machine != THIS_MACHINE)
		ksft_exit_skip("not a 64-bit ELF for this CPU\n");
	strcpy(dir, "/tmp/binfmt_ape.XXXXXX");
	if (!mkdtemp(dir))
		ksft_exit_fail_perror("mkdtemp");
	ksft_set_plan(7);

	before = handled();
	expect("runs", "MZqFpD='", this, 1, 0, PAYLOAD_STATUS);
	ksft_test_result(handled() > before, "handled_counts\n");
	expect("jartsr_runs", "jartsr='", this, 1, 0, PAYLOAD_STATUS);
	expect("fat_runs_this_cpu", "MZqFpD='", fat, 2, 0, PAYLOAD_STATUS);
	expect("apedbg_is_not_ours", "APEDBG='", this, 1, 0, -ENOEXEC);
	expect("other_cpu_only", "MZqFpD='", other, 1, 0, -ENOEXEC);
	expect("entry_outside_text", "MZqFpD='", this, 1, 1, -ENOEXEC);

	rmdir(dir);
	ksft_finished();
}
