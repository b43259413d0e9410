// SPDX-License-Identifier: GPL-2.0

//! The APE decoder's named test cases: each a small file and the verdict expected on each CPU.
//!
//! One table for two runners: the KUnit suite `binfmt_ape_decoder`, one test per case, and host
//! tests, which also hold a reference model of Cosmopolitan's `ape/loader.c` to it. So, like the
//! decoder, it has no kernel or `std` dependency and never allocates: a case writes its file into a
//! buffer of [`LEN`] bytes the runner provides, and [`verdict`] runs the decoder on it the way
//! binfmt_ape does. Each file is the magic line, the case's `printf` statements, newlines up to
//! [`X86_PHOFF`], then one valid program header table per CPU (a PT_LOAD holding the entry, and a
//! PT_NOTE), past the window, as cosmocc lays out its APEs.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::as_conversions
    )
)]

use crate::ape;

/// The size of every case's file.
pub(crate) const LEN: usize = 0x3200;
/// Where the x86-64 header's program header table lies.
pub(crate) const X86_PHOFF: usize = 0x3000;
/// Where the AArch64 header's program header table lies.
pub(crate) const ARM_PHOFF: usize = 0x3100;
/// The page size the cases are decoded for.
pub(crate) const PAGE: u64 = 4096;

const X86: u16 = ape::EM_X86_64;
const ARM: u16 = ape::EM_AARCH64;
const MZ: &[u8] = b"MZqFpD='";

/// `Ok(index)` of the header statement chosen, counted among the window's header statements,
/// or the name of the refusal ([`ape::Error::name`]).
pub(crate) type Want = Result<usize, &'static str>;

/// A named case: how to write its file, and the verdict on each CPU.
pub(crate) struct Case {
    /// The case's name, as the host tests print it (the KUnit test has `_` for `-`).
    #[cfg_attr(
        CONFIG_BINFMT_APE,
        expect(dead_code, reason = "KUnit names each test after it")
    )]
    pub(crate) name: &'static str,
    /// Writes the file.
    pub(crate) file: fn(&mut File<'_>),
    /// The verdict for x86-64.
    pub(crate) x86: Want,
    /// The verdict for AArch64.
    pub(crate) arm: Want,
}

/// A file being written into a buffer; a write past its end makes the file [`None`].
pub(crate) struct File<'a> {
    buf: &'a mut [u8],
    len: usize,
    fits: bool,
}

impl<'a> File<'a> {
    /// An empty file in `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            fits: true,
        }
    }

    /// The bytes written, or `None` if they did not fit.
    pub(crate) fn contents(&self) -> Option<&[u8]> {
        if self.fits {
            self.buf.get(..self.len)
        } else {
            None
        }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.put(self.len, b);
        self
    }

    /// Writes `b` at `at`, extending the file if needed.
    fn put(&mut self, at: usize, b: &[u8]) {
        let end = at.checked_add(b.len());
        match end.and_then(|e| Some((e, self.buf.get_mut(at..e)?))) {
            Some((e, dst)) => {
                dst.copy_from_slice(b);
                self.len = self.len.max(e);
            }
            None => self.fits = false,
        }
    }

    /// Pads the file with `b` up to `at`; a file already longer does not fit the case.
    fn fill_to(&mut self, at: usize, b: u8) {
        match self.buf.get_mut(self.len..at) {
            Some(dst) => {
                dst.fill(b);
                self.len = at;
            }
            None => self.fits = false,
        }
    }

    /// `\` and the octal digits of `v` (below 0o1000), at least `digits` of them.
    fn octal(&mut self, v: u16, digits: usize) {
        let digit =
            |shift: u32| b'0' | u8::try_from(v.checked_shr(shift).unwrap_or(0) & 7).unwrap_or(0);
        let all = [digit(6), digit(3), digit(0)];
        let needed = if v >= 0o100 {
            3
        } else if v >= 0o10 {
            2
        } else {
            1
        };
        self.bytes(b"\\");
        self.bytes(
            all.get(3usize.saturating_sub(needed.max(digits))..)
                .unwrap_or_default(),
        );
    }

    /// The bytes of `h` as three-digit escapes, as cosmocc spells them.
    fn escapes(&mut self, h: &[u8]) {
        for &b in h {
            self.octal(u16::from(b), 3);
        }
    }

    /// `printf '` and `body`, spelling `h` byte by byte, and the closing `'`.
    fn printf(&mut self, h: &[u8; 64], body: fn(&mut Self, usize, u8)) {
        self.bytes(b"printf '");
        for (i, &b) in h.iter().enumerate() {
            body(self, i, b);
        }
        self.bytes(b"'\n");
    }

    /// The statement that spells `h`, as cosmocc writes it.
    fn stmt(&mut self, h: &[u8; 64]) -> &mut Self {
        self.printf(h, |f, _, b| f.escapes(&[b]));
        self
    }

    /// A statement whose body is `body`, verbatim.
    fn raw(&mut self, body: &[u8]) -> &mut Self {
        self.bytes(b"printf '").bytes(body).bytes(b"'\n")
    }

    /// A statement spelling the first 63 bytes of `h`: one short of a header.
    fn short(&mut self, h: &[u8; 64]) -> &mut Self {
        self.bytes(b"printf '");
        self.escapes(h.get(..63).unwrap_or_default());
        self.bytes(b"'\n")
    }

    /// The magic line an APE starts with.
    fn magic(&mut self, m: &[u8]) -> &mut Self {
        self.bytes(m).bytes(b"\n'\n")
    }

    /// Newlines up to the tables, and the two tables.
    fn tables(&mut self) {
        self.fill_to(X86_PHOFF, b'\n');
        for start in [X86_PHOFF, ARM_PHOFF] {
            // A text PT_LOAD (R+X) holding the entry, then a PT_NOTE.
            self.put(start, &phdr(1, 5, 0x400000, 0x2000));
            self.put(start.saturating_add(56), &phdr(4, 4, 0, 0));
        }
        self.fill_to(LEN, 0);
    }

    /// A program header of the tables whose `p_type` is `ty`.
    fn entry_type(&mut self, table: usize, entry: usize, ty: u32) {
        let at = entry.checked_mul(56).and_then(|e| e.checked_add(table));
        self.put(at.unwrap_or(usize::MAX), &ty.to_le_bytes());
    }
}

/// A 56-byte program header at file offset 0.
fn phdr(ty: u32, flags: u32, vaddr: u64, size: u64) -> [u8; 56] {
    let mut p = [0; 56];
    set(&mut p, 0, &ty.to_le_bytes());
    set(&mut p, 4, &flags.to_le_bytes());
    set(&mut p, 16, &vaddr.to_le_bytes());
    set(&mut p, 24, &vaddr.to_le_bytes());
    set(&mut p, 32, &size.to_le_bytes());
    set(&mut p, 40, &size.to_le_bytes());
    set(&mut p, 48, &0x10000u64.to_le_bytes());
    p
}

fn set(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(dst) = at.checked_add(v.len()).and_then(|e| b.get_mut(at..e)) {
        dst.copy_from_slice(v);
    }
}

/// A valid header for `machine`, pointing at its table: ET_EXEC, entry 0x401000, two entries.
fn hdr(machine: u16) -> [u8; 64] {
    let phoff = if machine == X86 { X86_PHOFF } else { ARM_PHOFF };
    let mut h = [0; 64];
    set(&mut h, 0, b"\x7fELF\x02\x01\x01");
    set(&mut h, 16, &2u16.to_le_bytes());
    set(&mut h, 18, &machine.to_le_bytes());
    set(&mut h, 20, &1u32.to_le_bytes());
    set(&mut h, 24, &0x401000u64.to_le_bytes());
    set(&mut h, 32, &u64::try_from(phoff).unwrap_or(0).to_le_bytes());
    set(&mut h, 52, &64u16.to_le_bytes());
    set(&mut h, 54, &56u16.to_le_bytes());
    set(&mut h, 56, &2u16.to_le_bytes());
    h
}

/// `hdr(machine)` with `v` at `at`.
fn hdr_with(machine: u16, at: usize, v: &[u8]) -> [u8; 64] {
    let mut h = hdr(machine);
    set(&mut h, at, v);
    h
}

/// Another CPU's header: `hdr(machine)` with an `e_machine` of neither.
fn other(machine: u16) -> [u8; 64] {
    hdr_with(machine, 18, &0x1234u16.to_le_bytes())
}

/// Both CPUs' headers with `v` at `at`, x86-64's first.
fn fat_with(f: &mut File<'_>, at: usize, v: &[u8]) {
    f.magic(MZ)
        .stmt(&hdr_with(X86, at, v))
        .stmt(&hdr_with(ARM, at, v))
        .tables();
}

/// Both headers with three program headers, the second and third of types `types`.
fn typed(f: &mut File<'_>, types: [u32; 2]) {
    fat_with(f, 56, &3u16.to_le_bytes());
    let [second, third] = types;
    for table in [X86_PHOFF, ARM_PHOFF] {
        f.entry_type(table, 1, second);
        f.entry_type(table, 2, third);
    }
}

/// The x86-64 header's statement alone, starting at `off`.
fn x86_at(f: &mut File<'_>, off: usize) {
    f.magic(MZ).fill_to(off, b'#');
    f.stmt(&hdr(X86)).tables();
}

/// Where the x86-64 statement starts so that its closing quote is at 8191.
const STMT_QUOTE_AT_8191: usize = 8191 - (8 + 64 * 4);
/// Where the x86-64 statement starts so that its last escape is at 8188 (the last place for
/// one: decoding needs four bytes in view).
const STMT_ESCAPE_AT_8188: usize = 8188 - (8 + 63 * 4);
/// One byte later: no longer decoded.
const STMT_ESCAPE_AT_8189: usize = STMT_ESCAPE_AT_8188 + 1;

macro_rules! cases {
    ($($id:ident = $case:expr;)*) => {
        $(
            #[doc = concat!("The case `", stringify!($id), "`.")]
            pub(crate) const $id: Case = $case;
        )*
        /// Every case, in table order.
        #[cfg_attr(CONFIG_BINFMT_APE, expect(dead_code, reason = "KUnit runs each case by name"))]
        pub(crate) const ALL: &[Case] = &[$($id),*];
    };
}

cases! {
    FAT_X86_64_FIRST = Case {
        name: "fat-x86_64-first",
        file: |f| f.magic(MZ).stmt(&hdr(X86)).stmt(&hdr(ARM)).tables(),
        x86: Ok(0),
        arm: Ok(1),
    };
    FAT_AARCH64_FIRST = Case {
        name: "fat-aarch64-first",
        file: |f| f.magic(MZ).stmt(&hdr(ARM)).stmt(&hdr(X86)).tables(),
        x86: Ok(1),
        arm: Ok(0),
    };
    JARTSR = Case {
        name: "jartsr",
        file: |f| f.magic(b"jartsr='").stmt(&hdr(X86)).stmt(&hdr(ARM)).tables(),
        x86: Ok(0),
        arm: Ok(1),
    };
    DEBUG_MAGIC = Case {
        name: "debug-magic",
        file: |f| f.magic(b"APEDBG='").stmt(&hdr(X86)).stmt(&hdr(ARM)).tables(),
        x86: Err("debug-magic"),
        arm: Err("debug-magic"),
    };
    EMPTY = Case {
        name: "empty",
        file: |_| {},
        x86: Err("not-ape"),
        arm: Err("not-ape"),
    };
    MAGIC_7_BYTES = Case {
        name: "magic-7-bytes",
        file: |f| {
            f.bytes(b"MZqFpD=");
        },
        x86: Err("not-ape"),
        arm: Err("not-ape"),
    };
    MAGIC_ONLY = Case {
        name: "magic-only",
        file: |f| {
            f.bytes(MZ);
        },
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    ELF = Case {
        name: "elf",
        file: |f| {
            f.bytes(&hdr(X86));
        },
        x86: Err("not-ape"),
        arm: Err("not-ape"),
    };
    EXACT_FIT_HEADER = Case {
        name: "exact-fit-header",
        // Each byte in as few digits as it takes.
        file: |f| {
            f.magic(MZ).printf(&hdr(X86), |f, _, b| f.octal(u16::from(b), 1));
            f.tables();
        },
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    ONE_BYTE_SHORT = Case {
        name: "one-byte-short",
        file: |f| f.magic(MZ).short(&hdr(X86)).tables(),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    QUOTE_MISSING = Case {
        name: "quote-missing",
        file: |f| {
            f.magic(MZ).bytes(b"printf '").escapes(&hdr(X86));
            f.tables();
        },
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    ESCAPE_0_00_000 = Case {
        name: "escape-0-00-000",
        file: |f| {
            f.magic(MZ).printf(&hdr(X86), |f, i, b| match (b, i.checked_rem(3)) {
                (0, Some(0)) => f.octal(0, 1),
                (0, Some(1)) => f.octal(0, 2),
                _ => f.octal(u16::from(b), 3),
            });
            f.tables();
        },
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    ESCAPE_1234_IS_TWO_BYTES = Case {
        // \1234 is \123 then a literal '4': one byte too many, so the header shifts.
        name: "escape-1234-is-two-bytes",
        file: |f| {
            f.magic(MZ).bytes(b"printf '\\1234").escapes(&hdr(X86));
            f.bytes(b"'\n").tables();
        },
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    ESCAPE_8_IS_LITERAL = Case {
        name: "escape-8-is-literal",
        file: |f| f.magic(MZ).raw(b"\\8\\177ELF").tables(),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    ESCAPE_400_WRAPS = Case {
        name: "escape-400-wraps",
        file: |f| {
            f.magic(MZ)
                .printf(&hdr(X86), |f, _, b| f.octal(u16::from(b) | 0x100, 3));
            f.tables();
        },
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    ESCAPE_510_IS_0X48 = Case {
        name: "escape-510-is-0x48",
        file: |f| {
            f.magic(MZ).printf(&hdr_with(X86, 8, &[0x48]), |f, i, b| {
                f.octal(if i == 8 { 0o510 } else { u16::from(b) }, 3)
            });
            f.tables();
        },
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    DECOY_PRINTF_FIRST = Case {
        // Indices count ELF statements only.
        name: "decoy-printf-first",
        file: |f| f.magic(MZ).raw(b"hello\\n").stmt(&hdr(X86)).stmt(&hdr(ARM)).tables(),
        x86: Ok(0),
        arm: Ok(1),
    };
    DECOY_ELF_MAGIC_SHORT = Case {
        name: "decoy-elf-magic-short",
        file: |f| f.magic(MZ).raw(b"\\177ELF").stmt(&hdr(ARM)).tables(),
        x86: Err("no-machine"),
        arm: Ok(0),
    };
    CLASS32 = Case {
        name: "class32",
        file: |f| fat_with(f, 4, &[1]),
        x86: Err("class"),
        arm: Err("class"),
    };
    BIG_ENDIAN = Case {
        name: "big-endian",
        file: |f| fat_with(f, 5, &[2]),
        x86: Err("data"),
        arm: Err("data"),
    };
    VERSION_0 = Case {
        name: "version-0",
        file: |f| fat_with(f, 6, &[0]),
        x86: Err("version"),
        arm: Err("version"),
    };
    E_VERSION_2 = Case {
        name: "e_version-2",
        file: |f| fat_with(f, 20, &2u32.to_le_bytes()),
        x86: Err("version"),
        arm: Err("version"),
    };
    TYPE_REL = Case {
        name: "type-rel",
        file: |f| fat_with(f, 16, &1u16.to_le_bytes()),
        x86: Err("type"),
        arm: Err("type"),
    };
    TYPE_DYN = Case {
        name: "type-dyn",
        file: |f| fat_with(f, 16, &3u16.to_le_bytes()),
        x86: Ok(0),
        arm: Ok(1),
    };
    PHENTSIZE_55 = Case {
        name: "phentsize-55",
        file: |f| fat_with(f, 54, &55u16.to_le_bytes()),
        x86: Err("phentsize"),
        arm: Err("phentsize"),
    };
    PHNUM_0 = Case {
        name: "phnum-0",
        file: |f| fat_with(f, 56, &0u16.to_le_bytes()),
        x86: Err("phnum"),
        arm: Err("phnum"),
    };
    PHNUM_19 = Case {
        name: "phnum-19",
        file: |f| fat_with(f, 56, &19u16.to_le_bytes()),
        x86: Err("phnum"),
        arm: Err("phnum"),
    };
    PHNUM_HUGE = Case {
        name: "phnum-huge",
        file: |f| fat_with(f, 56, &0xffffu16.to_le_bytes()),
        x86: Err("phnum"),
        arm: Err("phnum"),
    };
    PHOFF_PAST_EOF = Case {
        name: "phoff-past-eof",
        file: |f| fat_with(f, 32, &(1u64 << 20).to_le_bytes()),
        x86: Err("phoff"),
        arm: Err("phoff"),
    };
    PHOFF_MAX = Case {
        name: "phoff-max",
        file: |f| fat_with(f, 32, &u64::MAX.to_le_bytes()),
        x86: Err("phoff"),
        arm: Err("phoff"),
    };
    ENTRY_OUTSIDE = Case {
        name: "entry-outside",
        file: |f| fat_with(f, 24, &0x10u64.to_le_bytes()),
        x86: Err("entry"),
        arm: Err("entry"),
    };
    BOTH_FOR_X86_64 = Case {
        name: "both-for-x86_64",
        file: |f| f.magic(MZ).stmt(&hdr(X86)).stmt(&hdr(X86)).tables(),
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    SKIP_UNREADABLE_THEN_VALID = Case {
        name: "skip-unreadable-then-valid",
        file: |f| {
            let bad = hdr_with(X86, 32, &(1u64 << 30).to_le_bytes());
            f.magic(MZ).stmt(&bad).stmt(&hdr(X86)).tables();
        },
        x86: Ok(1),
        arm: Err("no-machine"),
    };
    FATAL_STOPS_SCAN = Case {
        name: "fatal-stops-scan",
        file: |f| {
            let bad = hdr_with(X86, 54, &57u16.to_le_bytes());
            f.magic(MZ).stmt(&bad).stmt(&hdr(X86)).tables();
        },
        x86: Err("phentsize"),
        arm: Err("no-machine"),
    };
    // Found by the differential fuzzer: with both, the first in table order names the reason.
    DYNAMIC_THEN_INTERP = Case {
        name: "dynamic-then-interp",
        file: |f| typed(f, [2, 3]),
        x86: Err("dynamic"),
        arm: Err("dynamic"),
    };
    INTERP_THEN_DYNAMIC = Case {
        name: "interp-then-dynamic",
        file: |f| typed(f, [3, 2]),
        x86: Err("interp"),
        arm: Err("interp"),
    };
    // Window-edge cases: a statement at a precise offset.
    QUOTE_AT_8191 = Case {
        name: "quote-at-8191",
        file: |f| x86_at(f, STMT_QUOTE_AT_8191),
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    LAST_ESCAPE_AT_8188 = Case {
        name: "last-escape-at-8188",
        file: |f| x86_at(f, STMT_ESCAPE_AT_8188),
        x86: Ok(0),
        arm: Err("no-machine"),
    };
    LAST_ESCAPE_AT_8189 = Case {
        name: "last-escape-at-8189",
        file: |f| x86_at(f, STMT_ESCAPE_AT_8189),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    PRINTF_AT_8184_EMPTY_BODY = Case {
        name: "printf-at-8184-empty-body",
        file: |f| x86_at(f, 8184),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    PRINTF_AT_8185_NOT_FOUND = Case {
        name: "printf-at-8185-not-found",
        file: |f| x86_at(f, 8185),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    // The decoder reads another CPU's header only as far as its first 24 bytes, and decodes
    // the rest only when the verdict depends on it: whether it is a whole header at all.
    SHORT_OTHER_THEN_NOTHING = Case {
        name: "short-other-then-nothing",
        file: |f| f.magic(MZ).short(&hdr(X86)).short(&hdr(ARM)).tables(),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    };
    SHORT_OTHER_THEN_WHOLE_OTHER = Case {
        name: "short-other-then-whole-other",
        file: |f| {
            f.magic(MZ).short(&hdr(X86)).stmt(&other(X86)).short(&hdr(ARM)).tables();
        },
        x86: Err("no-machine"),
        arm: Err("no-machine"),
    };
    WHOLE_OTHER_THEN_SHORT_OTHER = Case {
        name: "whole-other-then-short-other",
        file: |f| {
            f.magic(MZ).stmt(&other(X86)).short(&hdr(X86)).short(&hdr(ARM)).tables();
        },
        x86: Err("no-machine"),
        arm: Err("no-machine"),
    };
    SHORT_OTHER_THEN_BAD_CLASS = Case {
        name: "short-other-then-bad-class",
        file: |f| f.magic(MZ).short(&hdr(X86)).stmt(&hdr_with(X86, 4, &[1])).tables(),
        x86: Err("class"),
        arm: Err("class"),
    };
    BAD_CLASS_TWICE_THEN_SHORT = Case {
        name: "bad-class-twice-then-short",
        file: |f| {
            let h = hdr_with(X86, 4, &[1]);
            f.magic(MZ).stmt(&h).stmt(&h).short(&hdr(ARM)).short(&hdr(X86)).tables();
        },
        x86: Err("class"),
        arm: Err("class"),
    };
    MANY_OTHERS_THEN_FAT = Case {
        name: "many-others-then-fat",
        file: |f| {
            f.magic(MZ);
            for _ in 0..12 {
                f.stmt(&other(X86));
            }
            f.stmt(&hdr(X86)).stmt(&hdr(ARM)).tables();
        },
        x86: Ok(12),
        arm: Ok(13),
    };
}

/// Reads the program header tables past the window from the whole file.
struct Whole<'a>(&'a [u8]);

impl ape::Source for Whole<'_> {
    type Error = core::convert::Infallible;

    fn read_exact_at(&mut self, pos: u64, len: usize) -> Result<Option<&[u8]>, Self::Error> {
        let start = usize::try_from(pos).ok();
        Ok(start.and_then(|s| self.0.get(s..s.checked_add(len)?)))
    }
}

/// The decoder's verdict on `file` for `machine`, from its first [`ape::WINDOW`] bytes as
/// binfmt_ape reads them, with tables past them read from the file.
pub(crate) fn verdict(file: &[u8], machine: u16) -> Want {
    let window = file.get(..ape::WINDOW).unwrap_or(file);
    match ape::select(window, machine, PAGE, &mut Whole(file)) {
        Ok(Ok(s)) => Ok(ape::header_index(window, &s)),
        Ok(Err(e)) => Err(e.name()),
        Err(never) => match never {},
    }
}
