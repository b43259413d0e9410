#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Writes one step of the upstream series into a kernel tree, from this repository's sources.

Usage: intree.py STEP REPO KTREE   (STEP: elf | binfmt | sysctl | module | docs | selftest |
maintainers; see scripts/patches.sh, which commits each step)

The out-of-tree module and the in-tree driver are the same files. What differs is mechanical
and done here: the in-tree tree has the kernel crate's `binfmt` and `sysctl` modules and
binfmt_elf's entry point (`CONFIG_BINFMT_APE` is set), so the module's out-of-tree scaffolding
(its own bindgen, the backports for older series, the bench build, the `bprm->buf` rewrite) is
dropped, and the C helpers become the kernel crate's `rust_helper_*` functions.
"""
import os
import re
import subprocess
import sys
from pathlib import Path


def die(msg):
    sys.exit(f"intree.py: {msg}")


def replace(text, old, new, what):
    if old not in text:
        die(f"{what}: cannot find {old[:70]!r}")
    return text.replace(old, new, 1)


def drop_item(lines, i, dropped=(), what=None):
    """Removes the item whose first line (after its attributes) follows lines[i], with the
    comments, doc comments and attributes just above it; returns the index where scanning
    resumes. A plain `//` comment so removed at module level, where one may head several
    items, must be the item's alone: the item is followed by a blank line, the end of a block,
    another comment or another dropped item (one of `dropped`)."""
    start = i
    while start > 0 and re.match(r"\s*(//|#\[)", lines[start - 1]):
        start -= 1
    depth, end, opened = 0, i + 1, False
    while end < len(lines):
        line = lines[end]
        depth += line.count("{") - line.count("}")
        opened = opened or "{" in line
        end += 1
        if depth == 0 and (opened or line.rstrip().endswith(";")):
            break
    after = lines[end].strip() if end < len(lines) else ""
    if (any(re.match(r"//(?![/!])", l) for l in lines[start:i])
            and after and not after.startswith(("}", "//")) and after not in dropped):
        item = lines[i + 1].strip() if i + 1 < len(lines) else ""
        die(f"{what or 'a file'}: the comment above {item!r} also covers"
            f" {after!r}, which stays in tree: end the dropped item's paragraph before it")
    # The blank line an item leaves behind.
    if end < len(lines) and start > 0 and not lines[end].strip() and not lines[start - 1].strip():
        end += 1
    del lines[start:end]
    return start


def resolve_cfgs(text, on, off, single_line_off=(), what=None):
    """Keeps code under `#[cfg(on)]` (dropping the attribute) and drops items under
    `#[cfg(off)]` or `#[cfg(single_line_off)]` (which need not occur), each with the comments
    just above it. With `what`, each cfg of `on` and `off` must occur."""
    if what:
        for cfg in set(on) | set(off):
            if cfg not in text:
                die(f"{what}: no {cfg} (the marker of code kept or dropped in tree)")
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s in on:
            del lines[i]
        elif s in off or s in single_line_off:
            i = drop_item(lines, i, set(off) | set(single_line_off), what)
        else:
            i += 1
    return "\n".join(lines)


def wrap_c_decl(head, params, width=100):
    """`head(` followed by the parameters, wrapped at `width` columns (tabs are 8) and aligned
    to the parenthesis."""
    out, line = [], head + "("
    indent = len(line.expandtabs(8))
    for n, p in enumerate(params):
        piece = p + ("," if n + 1 < len(params) else ")")
        if line.endswith("(") or len(line.expandtabs(8)) + 1 + len(piece) <= width:
            line += ("" if line.endswith("(") else " ") + piece
        else:
            out.append(line)
            line = "\t" * (indent // 8) + " " * (indent % 8) + piece
    out.append(line)
    return "\n".join(out)


def wrap_calls(c, width=100):
    """Rewraps the C statements `name(args);` of one line that are longer than `width`."""
    def split_args(args):
        out, depth, quoted, cur = [], 0, False, ""
        for i, ch in enumerate(args):
            if quoted:
                quoted = not (ch == '"' and args[i - 1] != "\\")
            elif ch == '"':
                quoted = True
            elif ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "," and depth == 0:
                out.append(cur.strip())
                cur = ""
                continue
            cur += ch
        return out + [cur.strip()]

    def wrap(m):
        if len(m.group(0).expandtabs(8)) <= width:
            return m.group(0)
        return wrap_c_decl(m.group(1) + m.group(2), split_args(m.group(3))) + ";"

    return re.sub(r"^(\t+)(\w+)\((.*)\);$", wrap, c, flags=re.M)


OUT_OF_TREE_CFGS = {
    "on": {"#[cfg(CONFIG_BINFMT_APE)]"},
    "off": {"#[cfg(not(CONFIG_BINFMT_APE))]"},
}


def drop_doc_blocks(text, what):
    """Removes the lines of `//!` docs between `<!-- out-of-tree -->` and
    `<!-- end out-of-tree -->` (HTML comments, which rustdoc does not show); there must be one."""
    # With the empty doc line after it, so that no two are left in a row.
    text, n = re.subn(r"^//! <!-- out-of-tree -->\n(?://!.*\n)*?//! <!-- end out-of-tree -->\n"
                      r"(?://!\n)?", "", text, flags=re.M)
    if n == 0 or "out-of-tree -->" in text:
        die(f"{what}: no `//! <!-- out-of-tree -->` ... `//! <!-- end out-of-tree -->` block")
    return text


def module(repo, tree):
    src = (repo / "src/binfmt_ape_main.rs").read_text()
    what = "src/binfmt_ape_main.rs"
    src = drop_doc_blocks(src, what)
    # The kernel crate has binfmt and sysctl, 7.3 needs no backports, the bindings are the
    # kernel's, and there is no bench build in tree: all of that is under cfgs.
    src = resolve_cfgs(src, OUT_OF_TREE_CFGS["on"], OUT_OF_TREE_CFGS["off"],
                       {"#[cfg(ape_bench)]"}, what)
    if re.search(r"ape_bench|CONFIG_BINFMT_APE\)|compat::|#\[path", src):
        die(f"{what}: out-of-tree scaffolding left")
    # The decoder's KUnit suite and its cases, with CONFIG_BINFMT_APE_KUNIT_TEST.
    src = replace(src, "\npub mod ape;\n",
                  "\npub mod ape;\n#[cfg(CONFIG_BINFMT_APE_KUNIT_TEST)]\nmod ape_kunit;\n"
                  "#[cfg(CONFIG_BINFMT_APE_KUNIT_TEST)]\nmod ape_test_cases;\n", what)
    d = tree / "fs/binfmt_ape"
    d.mkdir(parents=True, exist_ok=True)
    (d / "binfmt_ape.rs").write_text(src)
    # The decoder and its test cases, as they are.
    for f in ("ape.rs", "scan.rs", "ape_test_cases.rs"):
        (d / f).write_text((repo / "src" / f).read_text())
    (d / "ape_kunit.rs").write_text(kunit_suite((repo / "src/ape_test_cases.rs").read_text()))
    for f in ("binfmt_ape.rs", "ape_kunit.rs"):
        rustfmt(tree, d / f)
    (d / "Makefile").write_text(
        "# SPDX-License-Identifier: GPL-2.0\n\n"
        "obj-$(CONFIG_BINFMT_APE) += binfmt_ape.o\n\n"
        "# The decoder runs on every APE exec: build it for speed also in kernels built for\n"
        "# size (CONFIG_CC_OPTIMIZE_FOR_SIZE gives Rust -Copt-level=s), as lib/lz4 does.\n"
        "rustflags-y += -Copt-level=2\n")

    # What tools/testing/kunit/kunit.py needs for the suite: kunit.py run --kunitconfig=fs/binfmt_ape
    # (no SPDX line, as no .kunitconfig has one).
    (d / ".kunitconfig").write_text(
        "CONFIG_KUNIT=y\nCONFIG_RUST=y\nCONFIG_BINFMT_ELF=y\nCONFIG_BINFMT_APE=y\n"
        "CONFIG_BINFMT_APE_KUNIT_TEST=y\n")

    kconfig = tree / "fs/Kconfig.binfmt"
    k = kconfig.read_text()
    k = replace(k, "config BINFMT_MISC\n", (repo / "docs/upstream/Kconfig.binfmt_ape").read_text()
                + "\nconfig BINFMT_MISC\n", "fs/Kconfig.binfmt")
    kconfig.write_text(k)
    mk = tree / "fs/Makefile"
    m = mk.read_text()
    m = replace(m, "obj-$(CONFIG_BINFMT_ELF)\t+= binfmt_elf.o\n",
                "obj-$(CONFIG_BINFMT_ELF)\t+= binfmt_elf.o\nobj-$(CONFIG_BINFMT_APE)\t+= binfmt_ape/\n",
                "fs/Makefile")
    mk.write_text(m)


KUNIT_SUITE = """\
// SPDX-License-Identifier: GPL-2.0

//! KUnit tests for binfmt_ape's decoder: each named case of `ape_test_cases.rs` is one test.
//!
//! Each test writes its case's file into a buffer of its own and decodes it for x86-64 and for
//! AArch64 with 4 KiB pages, as binfmt_ape does on an exec.

use kernel::prelude::*;

#[kunit_tests(binfmt_ape_decoder)]
mod tests {
    use crate::ape_test_cases::{self as cases, Case, File, Want};
    use crate::ape::{EM_AARCH64, EM_X86_64};
    use kernel::prelude::*;

    /// The decoder's verdicts on `case`'s file for x86-64 and AArch64.
    ///
    /// The tests assert: `#[kunit_tests]` maps `assert_eq!` to KUnit's in test functions only.
    fn verdicts(case: &Case) -> Result<(Want, Want)> {
        let mut buf = KVec::from_elem(0u8, cases::LEN, GFP_KERNEL)?;
        let mut file = File::new(&mut buf);
        (case.file)(&mut file);
        // A file that does not fit its buffer fails the test.
        let file = file.contents().ok_or(EINVAL)?;
        Ok((cases::verdict(file, EM_X86_64), cases::verdict(file, EM_AARCH64)))
    }
@TESTS@}
"""


def kunit_suite(cases):
    """The KUnit suite of the decoder's test cases: one test per case, named after it."""
    what = "src/ape_test_cases.rs"
    found = re.findall(r'^    ([A-Z][A-Z0-9_]*) = Case \{\n(?:\s*//.*\n)*\s*name: "([^"]+)",$', cases,
                       flags=re.M)
    if not found or len(found) != cases.count(" = Case {"):
        die(f"{what}: a case is not `NAME = Case {{` followed by its `name:`")
    tests = ""
    for ident, name in found:
        if ident.lower() != name.replace("-", "_"):
            die(f"{what}: case {ident} is named {name!r}: the KUnit test could not be named after it")
        tests += (f"\n    #[test]\n    fn {ident.lower()}() -> Result {{\n"
                  f"        let (x86, arm) = verdicts(&cases::{ident})?;\n"
                  f"        assert_eq!(x86, cases::{ident}.x86);\n"
                  f"        assert_eq!(arm, cases::{ident}.arm);\n"
                  f"        Ok(())\n    }}\n")
    return KUNIT_SUITE.replace("@TESTS@", tests)


def add_line_sorted(path, line, pattern):
    """Adds `line` to the lines of `path` matching `pattern`, in sorted position. Attributes
    (`#[...]`) and preprocessor conditionals between them belong to the list; an attribute or
    an opening conditional stays with the line below it."""
    lines = path.read_text().split("\n")
    if line in lines:
        return
    glue = r"\s*(#\[|#if|#else|#endif)"
    # The longest run of matching lines, and the glue between them, is the list.
    runs, run = [], []
    for i, l in enumerate(lines):
        if re.match(pattern, l):
            run.append(i)
        elif run and not re.match(glue, l):
            runs.append(run)
            run = []
    runs.append(run)
    matches = max(runs, key=len)
    if not matches:
        die(f"{path}: nothing matches {pattern}")
    at = next((i for i in matches if lines[i] > line), matches[-1] + 1)
    while at > matches[0] and re.match(r"\s*(#\[|#if)", lines[at - 1]):
        at -= 1
    lines.insert(at, line)
    path.write_text("\n".join(lines))


def rustfmt(tree, path):
    """Formats `path` as the tree's `make rustfmt` would (its .rustfmt.toml): what intree.py
    rewrites, such as `use kernel::` becoming `use crate::`, may move in the sort order."""
    subprocess.run(["rustfmt", "--config-path", str(tree / ".rustfmt.toml"), str(path)],
                   check=True)


def kernel_crate_file(text):
    """An abstraction of this repository as a file of the kernel crate."""
    text = text.replace("use kernel::", "use crate::")
    text = re.sub(r"use crate::\{bindings, compat\};", "use crate::bindings;", text)
    text = text.replace("compat::try_ffi_init(", "Opaque::try_ffi_init(")
    return text


def binfmt(repo, tree):
    rs = kernel_crate_file((repo / "rust/kernel/binfmt.rs").read_text())
    # In the kernel crate, binfmt_elf's entry point is there whenever binfmt_elf is.
    # In tree, set-id APEs get exec's own rules: the module's policy and its helper go.
    what = "rust/kernel/binfmt.rs"
    rs = resolve_cfgs(rs, set(), OUT_OF_TREE_CFGS["off"], what=what)
    if "#[cfg(CONFIG_BINFMT_APE)]" not in rs:
        die(f"{what}: no #[cfg(CONFIG_BINFMT_APE)] (the marker of binfmt_elf's entry point)")
    rs = rs.replace("#[cfg(CONFIG_BINFMT_APE)]", "#[cfg(CONFIG_BINFMT_ELF)]")
    (tree / "rust/kernel/binfmt.rs").write_text(rs)
    rustfmt(tree, tree / "rust/kernel/binfmt.rs")
    add_line_sorted(tree / "rust/kernel/lib.rs", "pub mod binfmt;", r"pub mod \w+;$")

    c = orig_c = (repo / "rust/helpers.c").read_text()
    c = c.replace('\n#include "helpers.h"\n', "")
    # The out-of-tree block, with the comment just above it.
    c, n = re.subn(r"(?:/\*[^\n]*\*/\n)?#ifndef CONFIG_BINFMT_APE\n.*?#endif /\* !CONFIG_BINFMT_APE \*/\n\n?",
                   "", c, flags=re.S)
    if n == 0 or "CONFIG_BINFMT_APE" in c:
        die("rust/helpers.c: no `#ifndef CONFIG_BINFMT_APE` ... `#endif /* !CONFIG_BINFMT_APE */`")
    # rust/helpers/helpers.c includes every helper file into one unit, where pr_fmt is already
    # defined: the messages spell their prefix themselves.
    m = re.search(r'^#define pr_fmt\(fmt\) "([^"]*)" fmt\n\n', c, flags=re.M)
    if m:
        c = c[:m.start()] + c[m.end():]
        c = wrap_calls(re.sub(r'\b(pr_\w+)\("', lambda p: f'{p.group(1)}("{m.group(1)}', c))

    def helper(m):
        ret, name, params = m.group(1), m.group(2), m.group(3)
        ps = [p.strip() for p in re.sub(r"\s+", " ", params).split(",")]
        return wrap_c_decl(f"__rust_helper {ret}rust_helper_{name}", ps) + "\n{"

    c = re.sub(r"^((?:const )?(?:unsigned )?\w+ \*?)((?:binprm|binfmt_ape)_\w+)\(([^)]*)\)\n\{",
               helper, c, flags=re.M)
    c = re.sub(r"\b((?:binprm|binfmt_ape)_\w+)\(\)", r"rust_helper_\1()", c)
    # binfmt_ape's own helpers (its message, with its ratelimit state) are built only with it:
    # each, with the comment above it, if any.
    c, n = re.subn(r"\n((?:/\*\n(?: \*[^\n]*\n)* \*/\n)?__rust_helper \w+ rust_helper_binfmt_ape_.*?\n\}\n)",
                   r"\n#if IS_ENABLED(CONFIG_BINFMT_APE)\n\1#endif\n", c, flags=re.S)
    if n == 0 or n != len(re.findall(r"^\w[^(\n]* \*?binfmt_ape_\w+\(", orig_c, flags=re.M)):
        die("rust/helpers.c: a binfmt_ape_* helper is not where intree.py looks for one")
    (tree / "rust/helpers/binfmt.c").write_text(c)
    add_line_sorted(tree / "rust/helpers/helpers.c", '#include "binfmt.c"',
                    r'#include "[\w/-]+\.c"$')
    for h in ("linux/binfmts.h", "linux/elf.h"):
        add_line_sorted(tree / "rust/bindings/bindings_helper.h", f"#include <{h}>",
                        r"#include <linux/")


def sysctl(repo, tree):
    rs = kernel_crate_file((repo / "rust/kernel/sysctl.rs").read_text())
    (tree / "rust/kernel/sysctl.rs").write_text(rs)
    rustfmt(tree, tree / "rust/kernel/sysctl.rs")
    lib = tree / "rust/kernel/lib.rs"
    text = lib.read_text()
    if "pub mod sysctl;" not in text:
        add_line_sorted(lib, "pub mod sysctl;", r"pub mod \w+;$")
        lib.write_text(lib.read_text().replace("pub mod sysctl;",
                                               "#[cfg(CONFIG_SYSCTL)]\npub mod sysctl;"))
    add_line_sorted(tree / "rust/bindings/bindings_helper.h", "#include <linux/sysctl.h>",
                    r"#include <linux/")


def elf(repo, tree):
    p = tree / "fs/binfmt_elf.c"
    c = p.read_text()
    what = "fs/binfmt_elf.c"
    c = replace(c, "static int load_elf_binary(struct linux_binprm *bprm)\n{\n",
                "static int __load_elf_binary(struct linux_binprm *bprm, struct elfhdr *elf_ex)\n{\n",
                what)
    c = replace(c, "\tstruct elfhdr *elf_ex = (struct elfhdr *)bprm->buf;\n", "", what)
    start = c.index("static int __load_elf_binary(")
    end = c.index("\n}\n", start) + 3
    c = c[:end] + "\n" + (repo / "docs/upstream/binfmt_elf_load_header.c").read_text() + c[end:]
    p.write_text(c)
    h = tree / "include/linux/elf.h"
    t = h.read_text()
    t = replace(t, "struct file;\nstruct coredump_params;\n",
                "struct file;\nstruct coredump_params;\nstruct linux_binprm;\n\n"
                "int binfmt_elf_load_header(struct linux_binprm *bprm, const struct elfhdr *ehdr);\n",
                "include/linux/elf.h")
    h.write_text(t)


def docs(repo, tree):
    # What only the module built out of tree has lies between `.. out-of-tree:` and
    # `.. end out-of-tree` (rst comments).
    rst = re.sub(r"\n\.\. out-of-tree:\n.*?\n\.\. end out-of-tree\n", "",
                 (repo / "docs/binfmt-ape.rst").read_text(), flags=re.S)
    if "out-of-tree" in rst or "setid" in rst:
        die("docs/binfmt-ape.rst: out-of-tree text left outside its markers")
    (tree / "Documentation/admin-guide/binfmt-ape.rst").write_text(rst)
    idx = tree / "Documentation/admin-guide/index.rst"
    t = idx.read_text()
    t = replace(t, "   binfmt-misc\n", "   binfmt-ape\n   binfmt-misc\n", "index.rst")
    idx.write_text(t)


def selftest(repo, tree):
    d = tree / "tools/testing/selftests/exec"
    (d / "binfmt_ape.c").write_text((repo / "tests/selftest/binfmt_ape.c").read_text())
    mk = d / "Makefile"
    t = mk.read_text()
    t = replace(t, "TEST_GEN_PROGS += null-argv\n",
                "TEST_GEN_PROGS += null-argv\n"
                "# Static: it makes its test APEs from its own ELF image.\n"
                "TEST_GEN_PROGS += binfmt_ape\n", "exec/Makefile")
    t = t.rstrip("\n") + ("\n\n$(OUTPUT)/binfmt_ape: binfmt_ape.c ../kselftest.h\n"
                          "\t$(CC) $(CFLAGS) $(LDFLAGS) -static $< -o $@\n")
    mk.write_text(t)
    gi = d / ".gitignore"
    if gi.exists():
        add_line_sorted(gi, "binfmt_ape", r"[a-z]")


def maintainers(repo, tree):
    p = tree / "MAINTAINERS"
    t = p.read_text()
    author = os.environ.get("PATCH_AUTHOR") or die("PATCH_AUTHOR names no maintainer")
    entry = (repo / "docs/upstream/MAINTAINERS").read_text().rstrip("\n")
    entry = entry.replace("@AUTHOR@", author)
    title = entry.split("\n")[0]
    # Sections are sorted by title: before the first one that sorts after ours.
    lines = t.split("\n")
    begin = lines.index("Maintainers List") if "Maintainers List" in lines else 0
    for i in range(begin + 1, len(lines) - 1):
        if (lines[i] and not lines[i - 1] and re.match(r"[A-Z0-9]", lines[i])
                and re.match(r"[A-Z]:\t", lines[i + 1]) and lines[i] > title):
            lines[i:i] = entry.split("\n") + [""]
            break
    else:
        die("MAINTAINERS: no place for the entry")
    p.write_text("\n".join(lines))


STEPS = {"elf": elf, "binfmt": binfmt, "sysctl": sysctl, "module": module, "docs": docs,
         "selftest": selftest, "maintainers": maintainers}

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__.strip())
        sys.exit(0)
    if len(sys.argv) != 4 or sys.argv[1] not in STEPS:
        die(__doc__.split("\n\n")[1])
    STEPS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
