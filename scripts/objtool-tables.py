#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Check that an x86_64 module's objtool tables list every thunk branch of its code.

What: for each MODULE.ko, every branch in code to __x86_return_thunk must have an entry in
.return_sites, every branch to a retpoline thunk (__x86_indirect_*) one in .retpoline_sites,
and, where objtool made .call_sites (call depth tracking), every direct call one there. Entries
pointing anywhere but at such a branch are reported too.

Why: the kernel patches these sites when it loads the module (module_finalize() ->
apply_returns(), apply_retpolines(), callthunks_patch_module_calls()). A thunk branch missing
from its table is never patched: the code runs the build's default thunk, unmitigated or
wrongly mitigated for the CPU ("Unpatched return thunk in use"). In bundled mode the kernel's
crates are partially linked with --gc-sections (rust/Kbuild.bundled, rust/bundle.lds), which
can drop tables objtool wrote for them; this is the test that it did not.

How: the .ko is parsed directly (ELF64 little-endian, ET_REL): section headers, .symtab and
the RELA sections. A thunk branch is a PC32/PLT32 relocation, addend -4, in an executable
section (what objtool decodes: not .altinstr_replacement/.altinstr_aux/.discard.*), preceded
by a call/jmp opcode (e8/e9) or a Jcc (0f 8x); the instruction starts there. A table entry is
a 32-bit PC-relative relocation in .rela.<table>; its symbol plus addend is the instruction.
Both sides become (section index, offset) pairs, compared as sets. Calls left out of
.call_sites as objtool leaves them out (static call trampolines __SCT__*, __fentry__, and
retpolines, which have their own table) are not required there.

Usage: objtool-tables.py [--config KERNEL_CONFIG] MODULE.ko...
  --config: the kernel's .config; with CONFIG_MITIGATION_CALL_DEPTH_TRACKING=y the calls are
  checked even when the module has no .call_sites (a missing table is then a failure).
Exit status: 0 when every module passes (or has nothing to check), 1 otherwise.
"""
import gzip
import lzma
import struct
import sys

EM_X86_64, ET_REL = 62, 1
SHT_SYMTAB, SHT_RELA, SHT_SYMTAB_SHNDX = 2, 4, 18
SHF_EXECINSTR = 0x4
SHN_UNDEF, SHN_LORESERVE, SHN_XINDEX = 0, 0xff00, 0xffff
R_X86_64_PC32, R_X86_64_PLT32 = 2, 4
NOT_DECODED = (".altinstr_replacement", ".altinstr_aux", ".discard.")

# Each kind of site: its table, and what the table must point at.
TABLES = {"return": ".return_sites", "retpoline": ".retpoline_sites", "call": ".call_sites"}
WHAT = {"return": "a branch to __x86_return_thunk", "retpoline": "a branch to a retpoline thunk",
        "call": "a call"}


class Elf:
    """The sections, symbols and relocations of an ELF64 LE relocatable object."""

    def __init__(self, data):
        self.data = data
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError("not an ELF64 little-endian object")
        (self.type, self.machine, _, _, _, shoff, _, _, _, _,
         shentsize, shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        hdr = lambda i: struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        # More than 0xff00 sections (function sections!): the counts live in section 0.
        if shnum == 0:
            shnum = hdr(0)[5]
        if shstrndx == SHN_XINDEX:
            shstrndx = hdr(0)[6]
        self.shdrs = [hdr(i) for i in range(shnum)]
        self.names = [self.cstr(self.shdrs[shstrndx][4] + s[0]) for s in self.shdrs]
        self.syms = self.read_symbols()
        self.relocs = list(self.read_relocations())

    def cstr(self, off):
        return self.data[off:self.data.index(b"\0", off)].decode(errors="replace")

    def section(self, i):
        s = self.shdrs[i]
        return memoryview(self.data)[s[4]:s[4] + s[5]]

    def find(self, name):
        return self.names.index(name) if name in self.names else None

    def read_symbols(self):
        """(name, section index, value) per symbol; a section symbol is named by its section."""
        symtab = next((i for i, s in enumerate(self.shdrs) if s[1] == SHT_SYMTAB), None)
        if symtab is None:
            raise ValueError("no symbol table")
        strtab = self.shdrs[self.shdrs[symtab][6]][4]
        xi = next((self.section(i) for i, s in enumerate(self.shdrs)
                   if s[1] == SHT_SYMTAB_SHNDX and s[6] == symtab), b"")
        syms = []
        for n, (name, info, _, shndx, value, _) in enumerate(
                struct.iter_unpack("<IBBHQQ", self.section(symtab))):
            if shndx == SHN_XINDEX:
                shndx = struct.unpack_from("<I", xi, 4 * n)[0]
            elif shndx >= SHN_LORESERVE:
                shndx = SHN_UNDEF  # Absolute or common: no place in a section.
            label = self.cstr(strtab + name)
            if info & 0xf == 3 and shndx < len(self.names):  # STT_SECTION
                label = self.names[shndx]
            syms.append((label, shndx, value))
        return syms

    def read_relocations(self):
        """(target section index, r_offset, symbol, type, addend) of every RELA section."""
        for i, s in enumerate(self.shdrs):
            if s[1] != SHT_RELA:
                continue
            for off, info, addend in struct.iter_unpack("<QQq", self.section(i)):
                yield s[7], off, self.syms[info >> 32], info & 0xffffffff, addend


def branch_at(code, off):
    """The kind and start of the branch whose rel32 is at OFF, or None."""
    if off >= 1 and code[off - 1] in (0xe8, 0xe9):
        return ("call" if code[off - 1] == 0xe8 else "jmp"), off - 1
    if off >= 2 and code[off - 2] == 0x0f and 0x80 <= code[off - 1] <= 0x8f:
        return "jcc", off - 2
    return None


def thunk_branches(elf):
    """{kind: {(section, offset): description}} of the branches objtool must list."""
    found = {kind: {} for kind in TABLES}
    for sec, off, (sym, _, _), rtype, addend in elf.relocs:
        name = elf.names[sec]
        if (not elf.shdrs[sec][2] & SHF_EXECINSTR or name.startswith(NOT_DECODED)
                or rtype not in (R_X86_64_PC32, R_X86_64_PLT32) or addend != -4):
            continue
        branch = branch_at(elf.section(sec), off)
        if branch is None:
            continue  # An address of the thunk taken, not a branch to it.
        op, start = branch
        if sym == "__x86_return_thunk":
            kind = "return"
        elif sym.startswith("__x86_indirect_"):
            kind = "retpoline"
        elif op == "call" and not sym.startswith("__SCT__") and sym != "__fentry__":
            kind = "call"
        else:
            continue
        found[kind][(sec, start)] = "%s %s" % (op, sym)
    return found


def table_entries(elf, table, problems):
    """{(section, offset)} listed in TABLE; entries that point nowhere go to PROBLEMS."""
    i = elf.find(table)
    if i is None:
        return None
    count = elf.shdrs[i][5] // 4
    entries = {}
    for sec, off, (sym, shndx, value), rtype, addend in elf.relocs:
        if sec == i:
            entries[off // 4] = (sym, shndx, value + addend, rtype)
    places = set()
    for n in range(count):
        if n not in entries:
            problems.append("%s[%d]: no relocation, points nowhere" % (table, n))
            continue
        sym, shndx, off, rtype = entries[n]
        if (rtype != R_X86_64_PC32 or shndx == SHN_UNDEF or shndx >= len(elf.shdrs)
                or not elf.shdrs[shndx][2] & SHF_EXECINSTR or not 0 <= off < elf.shdrs[shndx][5]):
            problems.append("%s[%d]: points at %s+%#x, not into code" % (table, n, sym, off))
            continue
        places.add((shndx, off))
    return places


def wants_call_sites(config):
    try:
        with open(config) as f:
            return any(line.strip() in ("CONFIG_MITIGATION_CALL_DEPTH_TRACKING=y",
                                        "CONFIG_CALL_DEPTH_TRACKING=y") for line in f)
    except OSError as e:
        sys.exit("objtool-tables: %s" % e)


def read_module(path):
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path[path.rfind("."):], open)
    with opener(path, "rb") as f:
        return f.read()


def check(path, config_calls):
    """Checks one module, prints its figures and problems; returns False if it fails."""
    try:
        elf = Elf(read_module(path))
    except (OSError, ValueError, IndexError, lzma.LZMAError, struct.error) as e:
        print("%s: cannot read: %s" % (path, e))
        return False
    if elf.machine != EM_X86_64 or elf.type != ET_REL:
        print("%s: not an x86_64 module (e_machine %d, e_type %d), skipped" %
              (path, elf.machine, elf.type))
        return True
    branches = thunk_branches(elf)
    if elf.find(".call_sites") is None and not config_calls:
        del branches["call"]  # Objtool lists calls only for call depth tracking.
    problems, figures = [], []
    for kind, sites in branches.items():
        table = TABLES[kind]
        listed = table_entries(elf, table, problems)
        present = listed is not None
        if not present:
            listed = set()
            if sites:
                problems.append("no %s: objtool did not make it for this code, or the link "
                                "dropped it" % table)
        missing = sorted(set(sites) - listed)
        for sec, off in missing:
            problems.append("not in %s: %s+%#x (%s)" %
                            (table, elf.names[sec], off, sites[sec, off]))
        # Entries of the thunk tables must be thunk branches; .call_sites also lists calls
        # the assembler resolved itself (no relocation), so only their opcode is checked.
        for sec, off in sorted(listed - set(sites)):
            code = elf.section(sec)
            if kind != "call" or code[off] != 0xe8:
                problems.append("%s lists %s+%#x, which is not %s (%s)" %
                                (table, elf.names[sec], off, WHAT[kind], code[off:off + 5].hex()))
        where = "in %s (%d entries)" % (table, len(listed)) if present else "(no %s)" % table
        figures.append("%s %d/%d %s" % (kind, len(sites) - len(missing), len(sites), where))
    if "call" not in branches:
        figures.append("calls unchecked (no .call_sites, no call depth tracking)")
    print("%s: %s" % (path, ", ".join(figures)))
    for p in problems:
        print("  " + p)
    if not branches["return"] and not branches["retpoline"]:
        print("  no thunk branches (built without RETHUNK/RETPOLINE): nothing to check")
    return not problems


def main(argv):
    config_calls = False
    if argv[:1] == ["--config"] and len(argv) > 1:
        config_calls = wants_call_sites(argv[1])
        argv = argv[2:]
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__[__doc__.index("Usage:"):__doc__.index("Exit status")].rstrip())
    results = [check(path, config_calls) for path in argv]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
