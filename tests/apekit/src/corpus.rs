// SPDX-License-Identifier: GPL-2.0

//! The malformed-APE corpus: named mutations of valid APEs, each with the outcome expected on
//! each CPU, and under a binfmt_misc rule for the APE magics (`sentinel` when binfmt_ape must
//! decline with `bprm->buf` untouched so that the later handler still sees the magic).
//!
//! Outcomes: `run` (the payload runs and reports this CPU), an errno name (`ENOEXEC`) for a
//! failed `execve`, or a signal name for a process killed after the point of no return;
//! `elf:ENOEXEC` when binfmt_ape hands the header over and binfmt_elf refuses it.
//! `with_misc` applies on the CPUs where the outcome is `ENOEXEC`: `sentinel` when binfmt_misc
//! then gets the file with its magic intact, `same` when nothing changes.

use crate::ape::Magic;
use crate::elf::{self, eh, get16, get32, get64, ph, put16, put32, put64};
use crate::mkape::{printf_statement, Ape};

/// One corpus file.
pub struct Case {
    pub name: &'static str,
    pub mutation: &'static str,
    pub x86_64: &'static str,
    pub aarch64: &'static str,
    /// Outcome on both CPUs with binfmt_misc rules for the magics, or `same`.
    pub with_misc: &'static str,
    pub bytes: Vec<u8>,
}

impl Ape {
    /// Regenerates every statement from its image's header.
    pub fn restate(&mut self) {
        self.statements = self
            .images
            .iter()
            .map(|i| printf_statement(&i.ehdr))
            .collect();
    }

    /// Applies `f` to every image's `printf` header.
    pub fn headers(mut self, f: impl Fn(&mut [u8; 64])) -> Self {
        self.images.iter_mut().for_each(|i| f(&mut i.ehdr));
        self.restate();
        self
    }

    /// Applies `f` to every program header of every image (in the image bytes).
    pub fn phdrs(mut self, f: impl Fn(&mut [u8])) -> Self {
        for img in &mut self.images {
            let at = get64(&img.ehdr, eh::PHOFF) as usize - img.base;
            for i in 0..get16(&img.ehdr, eh::PHNUM) as usize {
                f(&mut img.bytes[at + i * 56..at + i * 56 + 56]);
            }
        }
        self
    }
}

/// Whether a program header is a PT_LOAD with all of `flags`.
fn is_load(p: &[u8], flags: u32) -> bool {
    get32(p, ph::TYPE) == elf::PT_LOAD && get32(p, ph::FLAGS) & flags == flags
}

/// The file with each image's program header table copied to the end, `extra` PT_NULL entries
/// added, and the headers pointing there (outside every PT_LOAD, as in real APEs).
fn table_at_eof(ape: Ape, extra: usize, phnum_override: Option<u16>) -> Vec<u8> {
    table_at_eof_with(ape, extra, phnum_override, |_| [0; 56])
}

/// As [`table_at_eof`], with the extra entries made by `entry` from the image's table.
fn table_at_eof_with(
    mut ape: Ape,
    extra: usize,
    phnum_override: Option<u16>,
    entry: impl Fn(&[u8]) -> [u8; 56],
) -> Vec<u8> {
    let mut tail = Vec::new();
    let file_len = ape.render().len();
    for img in &mut ape.images {
        let at = get64(&img.ehdr, eh::PHOFF) as usize - img.base;
        let n = get16(&img.ehdr, eh::PHNUM) as usize;
        let mut table = img.bytes[at..at + n * 56].to_vec();
        for _ in 0..extra {
            let e = entry(&img.bytes[at..at + n * 56]);
            table.extend_from_slice(&e);
        }
        put64(&mut img.ehdr, eh::PHOFF, (file_len + tail.len()) as u64);
        put16(
            &mut img.ehdr,
            eh::PHNUM,
            phnum_override.unwrap_or((n + extra) as u16),
        );
        tail.extend_from_slice(&table);
    }
    ape.restate();
    let mut out = ape.render();
    out.extend_from_slice(&tail);
    out
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// A statement spelling `bytes` with escapes chosen by `esc`.
fn statement_with(bytes: &[u8], esc: impl Fn(u8) -> String) -> Vec<u8> {
    let mut s = b"printf '".to_vec();
    for &b in bytes {
        s.extend_from_slice(esc(b).as_bytes());
    }
    s.extend_from_slice(b"'\n");
    s
}

/// Pads the script so that the first statement starts at file offset `at`.
fn first_statement_at(mut ape: Ape, at: usize) -> Ape {
    let head = 8 + 3 + ape.script.len();
    assert!(
        at >= head + 2,
        "cannot move the statement before the script"
    );
    let pad = at - head;
    ape.script.push('#');
    ape.script.push_str(&"-".repeat(pad - 2));
    ape.script.push('\n');
    ape
}

/// Every corpus case, from prepared ET_EXEC payloads for x86_64 and aarch64.
pub fn cases(x86: &[u8], arm: &[u8]) -> Vec<Case> {
    let fat = || Ape::new(Magic::Mz, &[x86.to_vec(), arm.to_vec()]);
    let fat_ax = || Ape::new(Magic::Mz, &[arm.to_vec(), x86.to_vec()]);
    let mut v = Vec::new();
    let mut add = |name, mutation, x86_64, aarch64, with_misc, bytes: Vec<u8>| {
        v.push(Case {
            name,
            mutation,
            x86_64,
            aarch64,
            with_misc,
            bytes,
        });
    };
    let e = "ENOEXEC";

    add(
        "valid-fat",
        "unmodified fat APE (x86_64 first)",
        "run",
        "run",
        "same",
        fat().render(),
    );
    add(
        "valid-fat-aarch64-first",
        "unmodified fat APE (aarch64 first)",
        "run",
        "run",
        "same",
        fat_ax().render(),
    );
    add(
        "magic-only",
        "the 8 magic bytes alone",
        e,
        e,
        "sentinel",
        b"MZqFpD='".to_vec(),
    );
    let mut b = fat().render();
    b[8] = b'x';
    add(
        "magic-no-newline",
        "byte 8 (newline after the magic) is 'x'",
        "run",
        "run",
        "same",
        b,
    );
    let mut f = fat();
    f.magic = Magic::Debug;
    add(
        "debug-magic",
        "APEDBG=' magic: left to the shell",
        e,
        e,
        "sentinel",
        f.render(),
    );
    add(
        "not-quite-magic",
        "MZqFpD=x: not an APE, but binfmt_misc's M::MZ still matches",
        e,
        e,
        "sentinel",
        {
            let mut b = fat().render();
            b[7] = b'x';
            b
        },
    );
    add(
        "no-printf",
        "every 'printf '' renamed 'printg ''",
        e,
        e,
        "sentinel",
        replace_all(&fat().render(), b"printf '", b"printg '"),
    );
    let mut f = fat();
    let s = &mut f.statements[0];
    let n = s.len();
    s.truncate(n - 2);
    s.push(b'\n');
    add("printf-no-closing-quote", "the x86_64 statement lacks its closing quote: it runs on to the next statement's quote, which swallows the aarch64 header", "run", e, "sentinel", f.render());
    let len = fat().statements[0].len();
    let f = first_statement_at(fat(), 8192 - len - 70);
    add(
        "printf-crossing-8192",
        "the aarch64 statement starts 70 bytes before 8192 and is cut by the window",
        "run",
        e,
        "sentinel",
        f.render(),
    );
    let mut f = first_statement_at(fat(), 8190);
    f.statements.truncate(1);
    add(
        "printf-at-8190",
        "the only statement starts at 8190: 'printf '' does not fit the window",
        e,
        e,
        "sentinel",
        f.render(),
    );
    let mut f = fat();
    for s in &mut f.statements {
        let n = s.len();
        s.drain(n - 6..n - 2);
    }
    add(
        "header-63-bytes",
        "each statement spells 63 bytes",
        e,
        e,
        "sentinel",
        f.render(),
    );
    // Header fields: each makes every CPU's header unusable, and binfmt_ape declines.
    type HeaderCase = (&'static str, &'static str, fn(&mut [u8; 64]));
    let header_cases: [HeaderCase; 12] = [
        ("class32", "EI_CLASS = ELFCLASS32", |h| h[eh::CLASS] = 1),
        ("big-endian", "EI_DATA = ELFDATA2MSB", |h| h[eh::DATA] = 2),
        ("ident-version-0", "EI_VERSION = 0", |h| h[eh::VERSION] = 0),
        ("type-rel", "e_type = ET_REL", |h| put16(h, eh::TYPE, 1)),
        ("type-core", "e_type = ET_CORE", |h| put16(h, eh::TYPE, 4)),
        ("phentsize-55", "e_phentsize = 55", |h| {
            put16(h, eh::PHENTSIZE, 55)
        }),
        ("phentsize-57", "e_phentsize = 57", |h| {
            put16(h, eh::PHENTSIZE, 57)
        }),
        ("phnum-0", "e_phnum = 0", |h| put16(h, eh::PHNUM, 0)),
        ("phnum-65535", "e_phnum = 0xffff", |h| {
            put16(h, eh::PHNUM, 0xffff)
        }),
        (
            "phoff-overflow",
            "e_phoff + table size overflows u64",
            |h| put64(h, eh::PHOFF, u64::MAX - 16),
        ),
        (
            "phoff-past-loff",
            "e_phoff = 2^63 - 16: the table ends past loff_t (found by make fuzz-guest)",
            |h| put64(h, eh::PHOFF, (1 << 63) - 16),
        ),
        (
            "entry-not-executable",
            "e_entry = 0x10 (in no PF_X PT_LOAD)",
            |h| put64(h, eh::ENTRY, 0x10),
        ),
    ];
    for (name, mutation, f) in header_cases {
        add(name, mutation, e, e, "sentinel", fat().headers(f).render());
    }
    add(
        "phnum-18",
        "table moved to EOF and padded to 18 entries, the most loader.c 1.10 accepts (1024 bytes)",
        "run",
        "run",
        "same",
        table_at_eof(fat(), 18, Some(18)),
    );
    add(
        "phnum-19",
        "table at EOF with 19 entries: over loader.c 1.10's 1024-byte buffer",
        e,
        e,
        "sentinel",
        table_at_eof(fat(), 19, Some(19)),
    );
    add(
        "phdrs-at-eof",
        "program headers at the end of the file, past the 8 KiB window (read with kernel_read)",
        "run",
        "run",
        "same",
        table_at_eof(fat(), 0, None),
    );
    add(
        "phdrs-truncated",
        "tables at EOF, file cut 8 bytes short: the aarch64 table (last) is incomplete",
        "run",
        e,
        "sentinel",
        {
            let mut b = table_at_eof(fat(), 0, None);
            let n = b.len();
            b.truncate(n - 8);
            b
        },
    );
    add(
        "phoff-past-eof",
        "e_phoff = file size + 4096",
        e,
        e,
        "sentinel",
        {
            let f = fat();
            let n = f.render().len() as u64;
            f.headers(|h| put64(h, eh::PHOFF, n + 4096)).render()
        },
    );
    add(
        "x86_64-only",
        "only the x86_64 image",
        "run",
        e,
        "sentinel",
        Ape::new(Magic::Mz, &[x86.to_vec()]).render(),
    );
    add(
        "aarch64-only",
        "only the aarch64 image",
        e,
        "run",
        "sentinel",
        Ape::new(Magic::Mz, &[arm.to_vec()]).render(),
    );
    add(
        "same-arch-twice",
        "two x86_64 images: the first statement wins",
        "run",
        e,
        "sentinel",
        Ape::new(Magic::Mz, &[x86.to_vec(), x86.to_vec()]).render(),
    );
    add(
        "skip-to-second",
        "first x86_64 header's table is past EOF (skipped, as loader.c does); the second is valid",
        "run",
        e,
        "sentinel",
        {
            let mut f = Ape::new(Magic::Mz, &[x86.to_vec(), x86.to_vec()]);
            put64(&mut f.images[0].ehdr, eh::PHOFF, 1 << 40);
            f.restate();
            f.render()
        },
    );
    let mut f = fat();
    f.statements
        .insert(0, b"printf 'hello, decoy\\n'\n".to_vec());
    add(
        "decoy-printf-first",
        "a non-ELF printf statement comes first",
        "run",
        "run",
        "same",
        f.render(),
    );
    // Program header fields, in every image's table.
    type PhdrCase = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        fn(&mut [u8]),
    );
    let phdr_cases: [PhdrCase; 6] = [
        ("pt-interp", "the writable PT_LOAD turned into PT_INTERP", e, "sentinel", |p| {
            if is_load(p, elf::PF_W) {
                put32(p, ph::TYPE, elf::PT_INTERP);
            }
        }),
        ("pt-dynamic", "the writable PT_LOAD turned into PT_DYNAMIC", e, "sentinel", |p| {
            if is_load(p, elf::PF_W) {
                put32(p, ph::TYPE, elf::PT_DYNAMIC);
            }
        }),
        ("filesz-gt-memsz", "writable PT_LOAD with p_filesz = p_memsz + 1", e, "sentinel", |p| {
            if is_load(p, elf::PF_W) {
                put64(p, ph::FILESZ, get64(p, ph::MEMSZ) + 1);
            }
        }),
        ("incongruent", "executable PT_LOAD with p_offset + 1 (p_vaddr unchanged)", e, "sentinel", |p| {
            if is_load(p, elf::PF_X) {
                put64(p, ph::OFFSET, get64(p, ph::OFFSET) + 1);
            }
        }),
        ("vaddr-overflow", "writable PT_LOAD with p_memsz = 2^64 - 16: p_vaddr + p_memsz overflows", e, "sentinel", |p| {
            if is_load(p, elf::PF_W) {
                put64(p, ph::MEMSZ, u64::MAX - 16);
            }
        }),
        (
            "beyond-task-size",
            "writable PT_LOAD moved to 2^52: binfmt_elf fails to map it after the point of no return",
            "SIGSEGV",
            "same",
            |p| {
                if is_load(p, elf::PF_W) {
                    put64(p, ph::VADDR, (1 << 52) | (get64(p, ph::VADDR) & 0xffff));
                }
            },
        ),
    ];
    for (name, mutation, outcome, misc, f) in phdr_cases {
        add(
            name,
            mutation,
            outcome,
            outcome,
            misc,
            fat().phdrs(f).render(),
        );
    }
    add("overlapping-loads", "table at EOF with the executable PT_LOAD listed twice: overlaps are left to binfmt_elf, which maps the later over the earlier", "run", "run", "same", table_at_eof_with(fat(), 1, None, |t| {
        let mut e = [0; 56];
        if let Some(x) = t.chunks_exact(56).find(|p| is_load(p, elf::PF_X)) {
            e.copy_from_slice(x);
        }
        e
    }));
    add(
        "truncated-x86_64-text",
        "aarch64 first; the file ends where the x86_64 text segment starts: its pages fault",
        "SIGBUS",
        "run",
        "same",
        {
            let f = fat_ax();
            let img = &f.images[1];
            let text = (0..get16(&img.ehdr, eh::PHNUM) as usize)
                .map(|i| get64(&img.ehdr, eh::PHOFF) as usize - img.base + i * 56)
                .find(|&p| is_load(&img.bytes[p..p + 56], elf::PF_X))
                .map(|p| get64(&img.bytes, p + ph::OFFSET) as usize)
                .unwrap_or(0);
            let mut b = f.render();
            b.truncate(text.max(img.base + 0x1000));
            b
        },
    );
    add(
        "truncated-aarch64-text",
        "the file ends 0x100 bytes into the aarch64 image, inside its first (text) page: the rest reads as zeros (UDF)",
        "run",
        "SIGILL",
        "same",
        {
            let f = fat();
            let base = f.images[1].base;
            let mut b = f.render();
            b.truncate(base + 0x100);
            b
        },
    );
    add("zero-length", "an empty file", e, e, e, Vec::new());
    add(
        "printf-flood",
        "magic then 8 KiB of 'printf '' repeated",
        e,
        e,
        "sentinel",
        {
            let mut b = b"MZqFpD='\n'\n".to_vec();
            while b.len() < 8300 {
                b.extend_from_slice(b"printf '");
            }
            b
        },
    );
    add(
        "backslash-flood",
        "magic, 'printf '', then 8 KiB of backslashes",
        e,
        e,
        "sentinel",
        {
            let mut b = b"MZqFpD='\n'\nprintf '".to_vec();
            b.resize(8300, b'\\');
            b
        },
    );
    add(
        "octal-777-everywhere",
        "magic then 8 KiB of printf statements of \\777",
        e,
        e,
        "sentinel",
        {
            let mut b = b"MZqFpD='\n'\n".to_vec();
            while b.len() < 8300 {
                b.extend_from_slice(&statement_with(&[0xff; 64], |_| "\\777".into()));
            }
            b
        },
    );
    let mut f = fat();
    f.statements = f
        .images
        .iter()
        .map(|i| statement_with(&i.ehdr, |b| format!("\\{:o}", u16::from(b) + 256)))
        .collect();
    add(
        "octal-plus-256",
        "every byte escaped as its value + 256 (\\577 for 0x7f): the low 8 bits count",
        "run",
        "run",
        "same",
        f.render(),
    );
    let mut f = fat();
    f.statements = f
        .images
        .iter()
        .map(|i| {
            let mut s = b"printf '".to_vec();
            for &b in &i.ehdr {
                if b.is_ascii_alphabetic() {
                    s.push(b);
                } else {
                    s.extend_from_slice(format!("\\{b:o}").as_bytes());
                }
            }
            s.extend_from_slice(b"'\n");
            s
        })
        .collect();
    add(
        "short-escapes-and-literals",
        "letters literal, other bytes as the shortest octal escape (\\0, \\12, \\177)",
        "run",
        "run",
        "same",
        f.render(),
    );
    let mut f = fat();
    f.statements = f
        .images
        .iter()
        .map(|i| {
            let mut s = printf_statement(&i.ehdr);
            let n = s.len();
            s.splice(n - 2..n - 2, b"\\8\\9\\".iter().copied());
            s
        })
        .collect();
    add(
        "trailing-non-octal-escapes",
        "\\8, \\9 and a lone backslash after the 64 header bytes are literal",
        "run",
        "run",
        "same",
        f.render(),
    );
    let mut f = fat();
    f.magic = Magic::Jartsr;
    add(
        "jartsr-magic",
        "jartsr=' magic",
        "run",
        "run",
        "same",
        f.render(),
    );
    // binfmt_ape hands this header over (loader.c ignores PT_GNU_PROPERTY); arm64's binfmt_elf
    // takes at most 1 KiB of properties and refuses the file, and binfmt_ape's tail handler
    // puts the file's own first bytes back in `bprm->buf`.
    add(
        "gnu-property-too-big",
        "the PT_GNU_STACK entry made a 2 KiB PT_GNU_PROPERTY",
        "run",
        "elf:ENOEXEC",
        "same",
        fat()
            .phdrs(|p| {
                if get32(p, ph::TYPE) == elf::PT_GNU_STACK {
                    put32(p, ph::TYPE, elf::PT_GNU_PROPERTY);
                    put64(p, ph::FILESZ, 2048);
                }
            })
            .render(),
    );
    v
}

/// The manifest: a header line, then one tab-separated line per case.
pub fn manifest(cases: &[Case]) -> String {
    let mut s = String::from("# name\tx86_64\taarch64\twith_misc\tmutation\n");
    for c in cases {
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            c.name, c.x86_64, c.aarch64, c.with_misc, c.mutation
        ));
    }
    s
}
