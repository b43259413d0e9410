// SPDX-License-Identifier: GPL-2.0

//! Decoder for Actually Portable Executable headers, a pure function of the file's first bytes.
//!
//! An APE (Cosmopolitan Libc's format, see cosmopolitan's `ape/specification.md`) starts with a
//! shell prologue. For each CPU it holds one `printf '...'` statement whose octal escapes spell
//! a 64-byte `Elf64_Ehdr`; the program headers and segments it names lie elsewhere in the file.
//! This module finds the header for one machine the way cosmopolitan's `ape/loader.c` does, so
//! the caller can hand it to binfmt_elf (see
//! [`include/linux/binfmts.h`](srctree/include/linux/binfmts.h)). The
//! reference is loader.c version 1.10, the loader current APEs extract and run.
//!
//! It has no kernel or `std` dependency and never allocates: the crate root of `binfmt_ape`
//! and the host tests, fuzzers and `apeinfo` all include this one file.
//!
//! This file is the specification: the rules below, each with its source, and the code that
//! applies them (the header and program header checks, the scan, the choice). How statements
//! are found and decoded eight bytes at a time lives apart, in `scan.rs`, and a reader checking
//! this file against `ape/specification.md` need not read it. The executable specification is
//! the host tests' reference model (`tests/apekit/src/reference.rs` in binfmt_ape's repository),
//! which reads one byte at a time as loader.c does; the differential tests and fuzz target
//! (`tests/apekit/tests/differential.rs`, `tests/fuzz/fuzz_targets/differential.rs`) are the
//! proof that the two agree, for both CPUs, three page sizes and both builds of `scan.rs`.
//!
//! # Rules (reason, source)
//!
//! - Magic: `MZqFpD='` or `jartsr='` in bytes 0..8 are run; `APEDBG='` is declined because
//!   debug builds expect to be run under the shell's own loader (specification.md).
//! - Window: every statement must lie in the first [`WINDOW`] bytes (specification.md: "all elf
//!   printf lines must exist in the first 8192 bytes"; loader.c reads exactly that much).
//! - Statements: every occurrence of `printf '` in the window, in file order. Decoding stops at
//!   the closing quote, or when fewer than four bytes of the window remain, which keeps a
//!   three-digit escape inside the window (loader.c). Scanning resumes one byte after the place
//!   where decoding stopped (loader.c's loop increments past it).
//! - Escapes: a backslash followed by one to three octal digits is that number modulo 256
//!   (`\510` is 0x48: loader.c stores the low 8 bits into a `char`); any other byte, including
//!   a backslash not followed by an octal digit, stands for itself.
//! - A statement is a header only if it decodes to at least 64 bytes starting `\x7fELF`.
//! - Skipped, and the scan goes on (loader.c treats these as "not this header"): a class other
//!   than ELFCLASS64, data other than little-endian, `EI_VERSION` or `e_version` other than
//!   EV_CURRENT, `e_type` other than ET_EXEC or ET_DYN, another `e_machine`; program headers
//!   that cannot be read in full; a PT_INTERP or PT_DYNAMIC entry (APEs are static, and
//!   loader.c refuses them).
//! - Refused, ending the scan (loader.c exits on these once the machine matched):
//!   `e_phentsize` other than 56; `e_phnum` of 0 or a table over [`MAX_PHDR_TABLE`] bytes
//!   (loader.c 1.10's buffer, 18 headers; loader 1.5 took 4096 bytes); and for each
//!   non-empty PT_LOAD, `p_filesz > p_memsz`,
//!   `p_offset` and `p_vaddr` incongruent modulo the page size, `p_vaddr + p_memsz` or
//!   `p_offset + p_filesz` overflowing once rounded up to a page; and no PF_X PT_LOAD that
//!   contains `e_entry`. binfmt_elf would find most of these only after the point of no return
//!   and kill the process; refusing them here gives the caller a clean `ENOEXEC`.
//! - Left to binfmt_elf, which is the authority on mapping: overlapping PT_LOADs (it maps the
//!   later one over the earlier), segments beyond the task size (it refuses them), segments
//!   that extend past the end of the file (they fault when touched, as for any ELF).

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

// The fast statement scanning, apart so that this file reads as the specification.
#[path = "scan.rs"]
mod scan;
use scan::{Decoded, Window, PRINTF};

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_machine` of AArch64.
pub const EM_AARCH64: u16 = 183;
/// How many bytes of the file hold every header statement.
pub const WINDOW: usize = 8192;
/// Size of an `Elf64_Ehdr`.
pub const EHDR_SIZE: usize = 64;
/// Size of an `Elf64_Phdr`.
pub const PHDR_SIZE: usize = 56;
/// Largest program header table accepted, in bytes (loader.c 1.10's buffer, 18 headers).
pub const MAX_PHDR_TABLE: usize = 1024;

const ELFMAG: &[u8; 4] = b"\x7fELF";
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;

/// The magic an APE starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    /// `MZqFpD='`: the usual APE, also a valid DOS/PE executable.
    Mz,
    /// `jartsr='`: an APE without the PE part.
    Jartsr,
    /// `APEDBG='`: a debug build, left to the shell.
    Debug,
}

impl Magic {
    /// The magic at the start of `buf`, if any.
    ///
    /// This runs on every exec on the machine, so it is one 8-byte load and three compares.
    pub fn of(buf: &[u8]) -> Option<Self> {
        let head = u64::from_le_bytes(*buf.first_chunk::<8>()?);
        [Self::Mz, Self::Jartsr, Self::Debug]
            .into_iter()
            .find(|m| u64::from_le_bytes(*m.bytes()) == head)
    }

    /// The eight magic bytes.
    pub fn bytes(self) -> &'static [u8; 8] {
        match self {
            Self::Mz => b"MZqFpD='",
            Self::Jartsr => b"jartsr='",
            Self::Debug => b"APEDBG='",
        }
    }
}

/// Why a file gets no header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The file does not start with an APE magic.
    NotApe,
    /// The file starts with `APEDBG='`.
    DebugMagic,
    /// No `printf` statement decodes to an ELF header.
    NoPrintf,
    /// ELF headers exist, but none usable for the requested machine.
    NoMachine,
    /// The header for this machine has a field that makes the file unloadable.
    Invalid(Field),
}

/// The field that made a header unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `e_ident[EI_CLASS]` is not ELFCLASS64.
    Class,
    /// `e_ident[EI_DATA]` is not little-endian.
    Data,
    /// `e_ident[EI_VERSION]` or `e_version` is not EV_CURRENT.
    Version,
    /// `e_type` is neither ET_EXEC nor ET_DYN.
    Type,
    /// `e_machine` is another CPU's.
    Machine,
    /// `e_phentsize` is not 56.
    Phentsize,
    /// `e_phnum` is 0 or the table exceeds [`MAX_PHDR_TABLE`].
    Phnum,
    /// The program header table is not within the file.
    Phoff,
    /// A PT_INTERP entry: APEs are static.
    Interp,
    /// A PT_DYNAMIC entry: APEs are static.
    Dynamic,
    /// A PT_LOAD has `p_filesz > p_memsz`.
    Filesz,
    /// A PT_LOAD's `p_offset` and `p_vaddr` differ modulo the page size.
    Align,
    /// A PT_LOAD's extent overflows.
    Overflow,
    /// `e_entry` is in no executable PT_LOAD.
    Entry,
}

impl Field {
    /// Every field, in declaration order (for tools, and the test that holds the reference
    /// model's skip list to [`Field::skips`]).
    pub const ALL: [Self; 14] = [
        Self::Class,
        Self::Data,
        Self::Version,
        Self::Type,
        Self::Machine,
        Self::Phentsize,
        Self::Phnum,
        Self::Phoff,
        Self::Interp,
        Self::Dynamic,
        Self::Filesz,
        Self::Align,
        Self::Overflow,
        Self::Entry,
    ];

    /// Whether loader.c moves on to the next statement (rather than refusing the file).
    pub fn skips(self) -> bool {
        matches!(
            self,
            Self::Class
                | Self::Data
                | Self::Version
                | Self::Type
                | Self::Machine
                | Self::Phoff
                | Self::Interp
                | Self::Dynamic
        )
    }

    /// A short lowercase name, for logs and tools.
    pub fn name(self) -> &'static str {
        match self {
            Self::Class => "class",
            Self::Data => "data",
            Self::Version => "version",
            Self::Type => "type",
            Self::Machine => "machine",
            Self::Phentsize => "phentsize",
            Self::Phnum => "phnum",
            Self::Phoff => "phoff",
            Self::Interp => "interp",
            Self::Dynamic => "dynamic",
            Self::Filesz => "filesz",
            Self::Align => "align",
            Self::Overflow => "overflow",
            Self::Entry => "entry",
        }
    }
}

impl Error {
    /// A short lowercase name, for logs and tools.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotApe => "not-ape",
            Self::DebugMagic => "debug-magic",
            Self::NoPrintf => "no-printf",
            Self::NoMachine => "no-machine",
            Self::Invalid(f) => f.name(),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |c| u16::from_le_bytes(*c))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |c| u32::from_le_bytes(*c))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |c| u64::from_le_bytes(*c))
}

/// A decoded 64-byte ELF header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ehdr(pub [u8; EHDR_SIZE]);

impl Ehdr {
    /// `e_type`.
    pub fn e_type(&self) -> u16 {
        u16_at(&self.0, 16)
    }
    /// `e_machine`.
    pub fn e_machine(&self) -> u16 {
        u16_at(&self.0, 18)
    }
    /// `e_version`.
    pub fn e_version(&self) -> u32 {
        u32_at(&self.0, 20)
    }
    /// `e_entry`.
    pub fn e_entry(&self) -> u64 {
        u64_at(&self.0, 24)
    }
    /// `e_phoff`.
    pub fn e_phoff(&self) -> u64 {
        u64_at(&self.0, 32)
    }
    /// `e_phentsize`.
    pub fn e_phentsize(&self) -> u16 {
        u16_at(&self.0, 54)
    }
    /// `e_phnum`.
    pub fn e_phnum(&self) -> u16 {
        u16_at(&self.0, 56)
    }

    /// Size of the program header table, once [`Ehdr::check`] accepted the header.
    pub fn phdr_table_len(&self) -> usize {
        usize::from(self.e_phnum()).saturating_mul(PHDR_SIZE)
    }

    /// Checks the header for `machine`: `Err` names the first field that disqualifies it.
    pub fn check(&self, machine: u16) -> Result<(), Field> {
        let id = &self.0;
        // The order follows loader.c, so a header's verdict matches the reference's.
        if id.get(4) != Some(&2) {
            return Err(Field::Class);
        }
        if id.get(5) != Some(&1) {
            return Err(Field::Data);
        }
        if id.get(6) != Some(&1) || self.e_version() != 1 {
            return Err(Field::Version);
        }
        if !matches!(self.e_type(), 2 | 3) {
            return Err(Field::Type);
        }
        if self.e_machine() != machine {
            return Err(Field::Machine);
        }
        if usize::from(self.e_phentsize()) != PHDR_SIZE {
            return Err(Field::Phentsize);
        }
        if self.e_phnum() == 0 || self.phdr_table_len() > MAX_PHDR_TABLE {
            return Err(Field::Phnum);
        }
        Ok(())
    }
}

/// One `printf` statement that decodes to an ELF header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement {
    /// File offset of the `p` of `printf '`.
    pub offset: usize,
    /// The first 64 decoded bytes.
    pub ehdr: Ehdr,
}

/// Iterator over the header statements of a window, in file order.
#[derive(Clone, Debug)]
pub struct Statements<'a> {
    window: Window<'a>,
    pos: usize,
}

/// The header statements in `window` (at most the first [`WINDOW`] bytes are looked at).
pub fn statements(window: &[u8]) -> Statements<'_> {
    let window = window.get(..WINDOW).unwrap_or(window);
    Statements {
        window: Window::new(window),
        pos: 0,
    }
}

impl Iterator for Statements<'_> {
    type Item = Statement;

    fn next(&mut self) -> Option<Statement> {
        loop {
            let offset = self.window.find_printf(self.pos)?;
            let mut d = Decoded::at(offset.saturating_add(PRINTF.len()));
            self.window.decode_statement(&mut d);
            self.pos = d.pos.saturating_add(1);
            if d.n >= EHDR_SIZE && d.out.0.starts_with(ELFMAG) {
                return Some(Statement {
                    offset,
                    ehdr: d.out,
                });
            }
        }
    }
}

/// Where program header tables that lie outside the window are read from.
pub trait Source {
    /// Error of a failed read.
    type Error;
    /// The `len` bytes at file offset `pos` (`len` is at most [`MAX_PHDR_TABLE`]), or `None`
    /// when the file ends first.
    fn read_exact_at(&mut self, pos: u64, len: usize) -> Result<Option<&[u8]>, Self::Error>;
}

/// How many decoded bytes decide most statements that are not this machine's header:
/// `e_ident`, `e_type`, `e_machine` and `e_version`, the fields [`Ehdr::check`] looks at first.
const PEEK: usize = 24;

/// Checks a program header table (`table.len()` is `e_phnum * 56`) for `ehdr`.
pub fn check_phdrs(ehdr: &Ehdr, table: &[u8], page_size: u64) -> Result<(), Field> {
    let entries = || table.chunks_exact(PHDR_SIZE);
    // PT_INTERP and PT_DYNAMIC make loader.c try the next statement, whatever else is wrong.
    for p in entries() {
        match u32_at(p, 0) {
            PT_INTERP => return Err(Field::Interp),
            PT_DYNAMIC => return Err(Field::Dynamic),
            _ => {}
        }
    }
    let mask = page_size.wrapping_sub(1);
    let entry = ehdr.e_entry();
    let mut found_entry = false;
    for p in entries() {
        let (flags, offset, vaddr) = (u32_at(p, 4), u64_at(p, 8), u64_at(p, 16));
        let (filesz, memsz) = (u64_at(p, 32), u64_at(p, 40));
        // loader.c drops empty PT_LOADs before it looks at them.
        if u32_at(p, 0) != PT_LOAD || memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(Field::Filesz);
        }
        if (vaddr ^ offset) & mask != 0 {
            return Err(Field::Align);
        }
        let vend = vaddr.checked_add(memsz).ok_or(Field::Overflow)?;
        vend.checked_add(mask).ok_or(Field::Overflow)?;
        let fend = offset.checked_add(filesz).ok_or(Field::Overflow)?;
        fend.checked_add(mask).ok_or(Field::Overflow)?;
        if flags & PF_X != 0 && vaddr <= entry && entry < vend {
            found_entry = true;
        }
    }
    if found_entry {
        Ok(())
    } else {
        Err(Field::Entry)
    }
}

/// Chooses the header for `machine` in the file whose first bytes are `window`.
///
/// `window` holds the file's first `min(size, WINDOW)` bytes; `src` supplies program header
/// tables that extend past it. `page_size` is the page size the header will be loaded with.
/// The outer `Err` is a failed read; the inner result is the verdict.
pub fn select<S: Source>(
    window: &[u8],
    machine: u16,
    page_size: u64,
    src: &mut S,
) -> Result<Result<Statement, Error>, S::Error> {
    resume(window, Resume::START, machine, page_size, src)
}

/// What [`select_prefix`] found in the first bytes of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// The verdict, the one [`select`] gives for the whole window.
    Decided(Result<Statement, Error>),
    /// It may depend on bytes past the prefix: go on with [`resume`] over the whole window.
    Undecided(Resume),
}

/// Where a scan that ran out of prefix goes on, and what it had found before that point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Offset of the first statement not known to lie wholly in the prefix.
    from: usize,
    /// The verdict so far.
    verdict: Error,
    /// Body offset of another CPU's header statement met while the verdict was `NoPrintf`,
    /// which makes it `NoMachine` if it decodes to 64 bytes (found out only if it matters).
    other: Option<usize>,
}

impl Resume {
    /// A scan from the start of the window.
    pub const START: Self = Self {
        from: 0,
        verdict: Error::NoPrintf,
        other: None,
    };
}

/// As [`select`], from the first bytes of the window only. Real APEs spell their headers early
/// (cosmocc's before byte 1500), so the caller can usually decide without reading the rest.
///
/// A header decoded inside the prefix has the same 64 bytes in any longer window (decoding
/// keeps a backslash and three digits in view, so a cut never changes an escape that was
/// read), and the scan up to it saw the same bytes; so a header chosen or refused there is
/// final. Running out of statements in the prefix is not: then the scan goes on from the
/// last statement it saw, whose end may lie past the prefix.
pub fn select_prefix<S: Source>(
    prefix: &[u8],
    machine: u16,
    page_size: u64,
    src: &mut S,
) -> Result<Prefix, S::Error> {
    if prefix.len() < PRINTF.len() {
        return Ok(Prefix::Undecided(Resume::START));
    }
    scan(prefix, false, Resume::START, machine, page_size, src)
}

/// Goes on with a scan that [`select_prefix`] left undecided, over the whole window.
pub fn resume<S: Source>(
    window: &[u8],
    at: Resume,
    machine: u16,
    page_size: u64,
    src: &mut S,
) -> Result<Result<Statement, Error>, S::Error> {
    match scan(window, true, at, machine, page_size, src)? {
        Prefix::Decided(verdict) => Ok(verdict),
        // A complete window always decides.
        Prefix::Undecided(_) => Ok(Err(Error::NoPrintf)),
    }
}

fn scan<S: Source>(
    window: &[u8],
    complete: bool,
    at: Resume,
    machine: u16,
    page_size: u64,
    src: &mut S,
) -> Result<Prefix, S::Error> {
    match Magic::of(window) {
        None => return Ok(Prefix::Decided(Err(Error::NotApe))),
        Some(Magic::Debug) => return Ok(Prefix::Decided(Err(Error::DebugMagic))),
        Some(Magic::Mz | Magic::Jartsr) => {}
    }
    let window = window.get(..WINDOW).unwrap_or(window);
    let complete = complete || window.len() == WINDOW;
    let Resume {
        mut from,
        mut verdict,
        mut other,
    } = at;
    let scan = Window::new(window);
    let mut last = at;
    // One for every statement: decoding overwrites what it reads, and only that is looked at.
    let mut d = Decoded::at(0);
    while let Some(offset) = scan.find_printf(from) {
        last = Resume {
            from: offset,
            verdict,
            other,
        };
        let body = offset.saturating_add(PRINTF.len());
        // Most statements are another CPU's, and their first bytes tell. When the verdict
        // cannot depend on the rest, the rest is skipped to the closing quote, not decoded.
        d.restart(body);
        scan.decode_to(&mut d, PEEK);
        if d.n == PEEK && d.out.0.starts_with(ELFMAG) && d.out.e_machine() != machine {
            let skip = match d.out.check(machine) {
                Err(Field::Machine) => {
                    if verdict == Error::NoPrintf {
                        match other {
                            Some(o) if scan.is_header(o) => verdict = Error::NoMachine,
                            _ => other = Some(body),
                        }
                    }
                    true
                }
                // These fields lie in the first PEEK bytes: the verdict would stay as it is.
                Err(f @ (Field::Class | Field::Data | Field::Version | Field::Type)) => {
                    verdict == Error::Invalid(f)
                }
                _ => false,
            };
            if skip {
                from = scan.finish(d.pos).saturating_add(1);
                continue;
            }
        }
        scan.decode_statement(&mut d);
        from = d.pos.saturating_add(1);
        if d.n < EHDR_SIZE || !d.out.0.starts_with(ELFMAG) {
            continue;
        }
        let ehdr = d.out;
        if verdict == Error::NoPrintf {
            verdict = Error::NoMachine;
        }
        match ehdr.check(machine) {
            Ok(()) => {}
            Err(Field::Machine) => continue,
            Err(f) if f.skips() => {
                verdict = Error::Invalid(f);
                continue;
            }
            Err(f) => return Ok(Prefix::Decided(Err(Error::Invalid(f)))),
        }
        let (off, len) = (ehdr.e_phoff(), ehdr.phdr_table_len());
        let in_window = usize::try_from(off)
            .ok()
            .and_then(|s| window.get(s..s.checked_add(len)?));
        let table = match in_window {
            Some(t) => Some(t),
            None => src.read_exact_at(off, len)?,
        };
        let Some(table) = table else {
            verdict = Error::Invalid(Field::Phoff);
            continue;
        };
        match check_phdrs(&ehdr, table, page_size) {
            Ok(()) => return Ok(Prefix::Decided(Ok(Statement { offset, ehdr }))),
            Err(f) if f.skips() => verdict = Error::Invalid(f),
            Err(f) => return Ok(Prefix::Decided(Err(Error::Invalid(f)))),
        }
    }
    if !complete {
        // Every statement before the last one seen ended before it, so within the prefix;
        // the last one, and whatever follows, may not have.
        return Ok(Prefix::Undecided(last));
    }
    if verdict == Error::NoPrintf && other.is_some_and(|o| scan.is_header(o)) {
        verdict = Error::NoMachine;
    }
    Ok(Prefix::Decided(Err(verdict)))
}

/// Index of `statement` among the header statements of `window` (for tools).
pub fn header_index(window: &[u8], statement: &Statement) -> usize {
    statements(window)
        .take_while(|s| s.offset < statement.offset)
        .count()
}
