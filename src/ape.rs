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

/// Whether loads of bytes at an unknown alignment go through the aligned words that hold them.
/// The kernel's arm64 target is `strict-align`, where rustc makes such a load a load of each
/// byte; elsewhere a plain load is cheaper. The host tests build both (`ape_aligned_loads`).
const ALIGNED_LOADS: bool = cfg!(any(target_arch = "aarch64", ape_aligned_loads));

const PRINTF: &[u8; 8] = b"printf '";
const ELFMAG: &[u8; 4] = b"\x7fELF";
/// Where the quote of [`PRINTF`] is.
const PRINTF_QUOTE: usize = 7;
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

/// The value of the octal digits at bits 0, 8 and 16 of each half of `digits`, `64a + 8b + c`,
/// at bit 16 of the half (nine bits: keep the low eight for the value modulo 256).
///
/// One multiplication adds each half shifted by 22, 11 and 0 places: the digits' other
/// products land below bit 14 or above bit 26 of the half, and none carries into the value.
fn octal_value(digits: u64) -> u64 {
    digits.wrapping_mul((1 << 22) | (1 << 11) | 1)
}

/// The bytes that two escapes of three octal digits, `\abc\def` read as a little-endian word,
/// stand for, each modulo 256.
fn three_digit_escapes(x: u64) -> [u8; 2] {
    let [_, _, a, _, _, _, b, _] = octal_value((x >> 8) & 0x0007_0707_0007_0707).to_le_bytes();
    [a, b]
}

/// Two escapes of three octal digits, `\ddd\ddd` read as a little-endian word, are
/// [`TWO_ESCAPES`] once masked with [`TWO_ESCAPES_MASK`] (a backslash, then bytes 0x30 to 0x37).
const TWO_ESCAPES_MASK: u64 = 0xf8f8_f8ff_f8f8_f8ff;
/// See [`TWO_ESCAPES_MASK`].
const TWO_ESCAPES: u64 = 0x3030_305c_3030_305c;

/// The eight bytes `shift / 8` bytes into the little-endian word `lo`, the rest from the next
/// word `hi` (`hi << (64 - shift)` in two steps, so that a shift of 0 takes none of `hi`).
#[inline(always)]
fn join(lo: u64, hi: u64, shift: u32) -> u64 {
    lo.wrapping_shr(shift) | (hi << 1).wrapping_shl(63u32.wrapping_sub(shift))
}

/// Decodes pairs of three-digit escapes, each word of `src` (eight bytes, little-endian) into a
/// pair of bytes of `dst`, until either runs out or a word is not two such escapes; returns the
/// pairs decoded.
fn escape_pairs<'a>(
    dst: impl Iterator<Item = &'a mut [u8]>,
    src: impl Iterator<Item = u64>,
) -> usize {
    let mut done = 0usize;
    for (o, x) in dst.zip(src) {
        if x & TWO_ESCAPES_MASK != TWO_ESCAPES {
            break;
        }
        if let Some(o) = o.first_chunk_mut() {
            *o = three_digit_escapes(x);
        }
        // At most a header's worth, so this cannot wrap.
        done = done.wrapping_add(1);
    }
    done
}

/// The byte that the escape starting at a backslash stands for, and the escape's length:
/// `y` holds the backslash and the next three bytes, little-endian. Up to three octal digits
/// follow, their value kept modulo 256 as loader.c's `char` keeps it; without any, the
/// backslash stands for itself.
fn escape(y: u32) -> (u8, u32) {
    // Bytes 1 to 3 become 0 to 7 where they are octal digits.
    let t = y ^ 0x3030_3000;
    let not_digits = u64::from(t & 0xf8f8_f800) | (1 << 32);
    // The digits are the bytes before the first that is not one: 0 to 3.
    let digits = (not_digits >> 8).trailing_zeros() / 8;
    if digits == 0 {
        return (b'\\', 1);
    }
    // All three bytes as digits, then only the first `digits` of them.
    let all = (octal_value(u64::from(t >> 8) & 0x07_0707) >> 16) & 0x1ff;
    let [v, ..] = (all >> (3u32.wrapping_sub(digits).wrapping_mul(3))).to_le_bytes();
    (v, digits.wrapping_add(1))
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

/// A statement body decoded so far.
#[derive(Clone, Copy)]
struct Decoded {
    /// Bytes decoded, up to 64 (a statement's length past its header is not counted).
    n: usize,
    /// The bytes decoded: the first `n` are this statement's (a [`Decoded`] is reused, and
    /// past `n` are an earlier statement's, which nothing reads).
    out: Ehdr,
    /// Where decoding goes on in the window.
    pos: usize,
    /// Whether the statement ended: its quote was read, or the window ran out.
    ended: bool,
}

impl Decoded {
    /// Starts decoding at `pos` again; the bytes decoded before stay until overwritten.
    fn restart(&mut self, pos: usize) {
        (self.n, self.pos, self.ended) = (0, pos, false);
    }

    fn at(pos: usize) -> Self {
        Self {
            n: 0,
            out: Ehdr([0; EHDR_SIZE]),
            pos,
            ended: false,
        }
    }
}

/// Iterator over the header statements of a window, in file order.
#[derive(Clone, Debug)]
pub struct Statements<'a> {
    window: &'a [u8],
    /// The whole aligned words of `window`, from `window[lead]` on. The kernel's arm64 target
    /// is `strict-align`, so a load of bytes at an unknown alignment becomes a load of each
    /// byte; the scans below load these words instead.
    words: &'a [u64],
    lead: usize,
    pos: usize,
}

/// The header statements in `window` (at most the first [`WINDOW`] bytes are looked at).
pub fn statements(window: &[u8]) -> Statements<'_> {
    let window = window.get(..WINDOW).unwrap_or(window);
    // SAFETY: Every bit pattern is a valid `u64`, and `align_to` hands out only the aligned
    // middle of `window` as words.
    let (head, words, _) = unsafe { window.align_to::<u64>() };
    Statements {
        window,
        words,
        lead: head.len(),
        pos: 0,
    }
}

impl Statements<'_> {
    /// The eight bytes at `at`, as a little-endian word, if the window holds them (with
    /// [`ALIGNED_LOADS`], from the aligned words that hold them where there are such).
    fn word(&self, at: usize) -> Option<u64> {
        if let Some(rel) = at.checked_sub(self.lead).filter(|_| ALIGNED_LOADS) {
            let (i, shift) = (rel >> 3, u32::try_from(rel & 7).ok()?.wrapping_mul(8));
            if let Some(&lo) = self.words.get(i) {
                let lo = u64::from_le(lo);
                if shift == 0 {
                    return Some(lo);
                }
                if let Some(&hi) = self.words.get(i.wrapping_add(1)) {
                    let hi = u64::from_le(hi).wrapping_shl(64u32.wrapping_sub(shift));
                    return Some(lo.wrapping_shr(shift) | hi);
                }
            }
        }
        let bytes = self.window.get(at..).and_then(<[u8]>::first_chunk::<8>)?;
        Some(u64::from_le_bytes(*bytes))
    }

    /// The four bytes at `at`, as a little-endian word, if the window holds them.
    fn word32(&self, at: usize) -> Option<u32> {
        if ALIGNED_LOADS {
            if let Some([a, b, c, d, ..]) = self.word(at).map(u64::to_le_bytes) {
                return Some(u32::from_le_bytes([a, b, c, d]));
            }
        }
        let bytes = self.window.get(at..).and_then(<[u8]>::first_chunk::<4>)?;
        Some(u32::from_le_bytes(*bytes))
    }

    /// Decodes on from `d` until `d.n` reaches `want` (at most [`EHDR_SIZE`]: the bytes past
    /// the header only count, [`Statements::decode_statement`]), the closing quote is read
    /// (then `d.pos` is one past it) or the window runs out.
    fn decode(&self, d: &mut Decoded, want: usize) {
        if d.ended {
            return;
        }
        let want = want.min(EHDR_SIZE);
        let (mut n, mut pos) = (d.n, d.pos);
        // Headers are usually all three-digit escapes: the common spans in one go.
        let block = match (n, want) {
            (0, PEEK) => self.escape_block::<{ PEEK / 2 }>(pos, &mut d.out.0, n),
            (PEEK, EHDR_SIZE) => {
                self.escape_block::<{ (EHDR_SIZE - PEEK) / 2 }>(pos, &mut d.out.0, n)
            }
            (0, EHDR_SIZE) => self.escape_block::<{ EHDR_SIZE / 2 }>(pos, &mut d.out.0, n),
            _ => None,
        };
        if let Some(end) = block {
            (d.n, d.pos) = (want, end);
            return;
        }
        let ended = loop {
            // Keep four bytes in view: a byte, and if it is a backslash, up to three digits.
            // With [`ALIGNED_LOADS`], where a load at any offset joins two words, escapes are
            // taken one at a time from the eight bytes at `pos` while four of them remain;
            // elsewhere one per load is cheaper (near the window's end: from the four at `pos`).
            let (eight, room) = match self.word(pos) {
                Some(w) => (w, if ALIGNED_LOADS { 4 } else { 0 }),
                None => match self.word32(pos) {
                    Some(y) => (u64::from(y), 0),
                    None => break true,
                },
            };
            if n >= want {
                break false;
            }
            // The first escape: the low half of the pattern.
            if eight & TWO_ESCAPES_MASK & 0xffff_ffff == TWO_ESCAPES & 0xffff_ffff {
                let (k, m) = self.three_digit_run(&mut d.out.0, n, want, pos);
                if m > 0 {
                    // Within the header and the window, so these cannot wrap.
                    (n, pos) = (n.wrapping_add(k), pos.wrapping_add(m));
                    continue;
                }
            }
            let mut used = 0u32;
            let quote = loop {
                // At most eight bytes are used, so the shift is in range.
                let y = u32::try_from(eight.wrapping_shr(used.wrapping_mul(8)) & 0xffff_ffff)
                    .unwrap_or(0);
                let [c, ..] = y.to_le_bytes();
                let (v, len) = match c {
                    b'\'' => break true,
                    b'\\' => escape(y),
                    c => (c, 1),
                };
                if let Some(slot) = d.out.0.get_mut(n) {
                    *slot = v;
                }
                // Within the header and the eight bytes, so these cannot wrap.
                (n, used) = (n.wrapping_add(1), used.wrapping_add(len));
                if n >= want || used > room {
                    break false;
                }
            };
            // Within the window, so these cannot wrap.
            pos = pos.wrapping_add(usize::try_from(used).unwrap_or(0));
            if quote {
                pos = pos.wrapping_add(1);
                break true;
            }
        };
        (d.n, d.pos, d.ended) = (n, pos, ended);
    }

    /// Decodes `2 * W` escapes of three digits at `pos` into `out`, from `out[n]` on, if
    /// the `8 * W` bytes at `pos` are such escapes and four more bytes follow them in the
    /// window (so decoding would go on after them); returns where decoding goes on.
    ///
    /// Only with [`ALIGNED_LOADS`], where it saves joining each word twice: elsewhere a load
    /// at any offset is as cheap, the run loop is as fast, and the words kept here would be a
    /// `memcpy` (which x86-64 kernels do with `rep movsb`).
    fn escape_block<const W: usize>(
        &self,
        pos: usize,
        out: &mut [u8; EHDR_SIZE],
        n: usize,
    ) -> Option<usize> {
        if !ALIGNED_LOADS {
            return None;
        }
        let len = W.checked_mul(8)?;
        let end = pos.checked_add(len)?;
        self.window.get(end..end.checked_add(4)?)?;
        let escapes = |x: u64| (x & TWO_ESCAPES_MASK) ^ TWO_ESCAPES;
        // Most headers that are not spelled this way tell at once.
        if escapes(self.word(pos)?) != 0 {
            return None;
        }
        let mut words = [0u64; W];
        let rel = pos.checked_sub(self.lead)?;
        let src = self.words.get(rel >> 3..)?.get(..W.checked_add(1)?)?;
        let shift = u32::try_from(rel & 7).ok()?.wrapping_mul(8);
        for (w, pair) in words.iter_mut().zip(src.windows(2)) {
            if let &[lo, hi] = pair {
                *w = join(u64::from_le(lo), u64::from_le(hi), shift);
            }
        }
        if words.iter().fold(0, |acc, &x| acc | escapes(x)) != 0 {
            return None;
        }
        let dst = out.get_mut(n..n.checked_add(W.checked_mul(2)?)?)?;
        for (o, &x) in dst.chunks_exact_mut(2).zip(&words) {
            if let Some(o) = o.first_chunk_mut() {
                *o = three_digit_escapes(x);
            }
        }
        Some(end)
    }

    /// Decodes a run of escapes of three digits at `pos` into `out[n..want]`, two per eight
    /// bytes (which keeps each escape before the window's last four bytes). Returns the bytes
    /// decoded and the bytes read: none where fewer than two escapes or bytes are left.
    fn three_digit_run(
        &self,
        out: &mut [u8; EHDR_SIZE],
        n: usize,
        want: usize,
        pos: usize,
    ) -> (usize, usize) {
        let Some(dst) = out.get_mut(n..want) else {
            return (0, 0);
        };
        let pairs = dst.chunks_exact_mut(2);
        let done = if ALIGNED_LOADS {
            self.escape_pairs_in_words(pairs, pos)
        } else {
            let src = self.window.get(pos..).unwrap_or_default().chunks_exact(8);
            escape_pairs(
                pairs,
                src.map(|c| c.first_chunk().map_or(0, |c| u64::from_le_bytes(*c))),
            )
        };
        // At most a header's worth, so these cannot wrap.
        (done.wrapping_mul(2), done.wrapping_mul(8))
    }

    /// [`escape_pairs`] from the aligned words: each eight bytes from `pos` on joined from the
    /// two words that hold them, one new word per pair. (A pair in the last word is left to the
    /// caller's escape-at-a-time path.)
    fn escape_pairs_in_words(
        &self,
        pairs: core::slice::ChunksExactMut<'_, u8>,
        pos: usize,
    ) -> usize {
        let Some(rel) = pos.checked_sub(self.lead) else {
            return 0;
        };
        let mut words = self.words.get(rel >> 3..).unwrap_or_default().iter();
        let Some(&first) = words.next() else {
            return 0;
        };
        let shift = u32::try_from(rel & 7).map_or(0, |r| r.wrapping_mul(8));
        let mut lo = u64::from_le(first);
        let joined = words.map(|&hi| {
            let hi = u64::from_le(hi);
            let x = join(lo, hi, shift);
            lo = hi;
            x
        });
        escape_pairs(pairs, joined)
    }

    /// Decodes the statement at `d` to its header's end, then only finds where it ends:
    /// `d.n` is its length up to [`EHDR_SIZE`], and `d.pos` one past where decoding stopped.
    fn decode_statement(&self, d: &mut Decoded) {
        self.decode(d, EHDR_SIZE);
        if !d.ended {
            d.pos = self.finish(d.pos);
            d.ended = true;
        }
    }

    /// Whether the statement body at `body`, whose magic was seen, decodes to a whole header.
    fn is_header(&self, body: usize) -> bool {
        let mut d = Decoded::at(body);
        self.decode(&mut d, EHDR_SIZE);
        d.n >= EHDR_SIZE
    }

    /// Where decoding from `pos` on would stop, without decoding: one past the first quote.
    ///
    /// An escape consumes only octal digits, never a quote, so decoding reaches the first
    /// quote at or after `pos` if it lies before the last three bytes of the window; past
    /// that, or with no quote, this steps through to find out.
    fn finish(&self, pos: usize) -> usize {
        let end = self.window.len().saturating_sub(3);
        if let Some(q) = self.find_quote(pos).filter(|&q| q < end) {
            return q.saturating_add(1);
        }
        let mut pos = pos;
        // Four bytes remain at `pos`, so these cannot wrap.
        while let Some(&four) = self.window.get(pos..).and_then(<[u8]>::first_chunk::<4>) {
            pos = match four {
                [b'\'', ..] => return pos.wrapping_add(1),
                [b'\\', ..] => {
                    let len = escape(u32::from_le_bytes(four)).1;
                    pos.wrapping_add(usize::try_from(len).unwrap_or(1))
                }
                _ => pos.wrapping_add(1),
            };
        }
        pos
    }

    /// The offset of the next `printf '` at or after `from`.
    fn find_printf(&self, from: usize) -> Option<usize> {
        let head = u64::from_le_bytes(*PRINTF.first_chunk::<8>()?);
        // The statement starting at `s` has its quote at `s + 7`.
        let mut q = from.checked_add(PRINTF_QUOTE)?;
        loop {
            q = self.find_quote(q)?;
            let s = q.checked_sub(PRINTF_QUOTE)?;
            // Most quotes of a shell script follow something other than a space.
            let space = self.window.get(q.wrapping_sub(1)) == Some(&b' ');
            if space && self.word(s) == Some(head) {
                return Some(s);
            }
            q = q.checked_add(1)?;
        }
    }

    /// The offset of the next quote at or after `from`.
    ///
    /// Every exec of an APE scans its prologue, so this looks at the window's aligned words, two
    /// at a time, for the quote, the rarest byte of a statement in a shell script.
    fn find_quote(&self, from: usize) -> Option<usize> {
        let w = self.window;
        // The bytes before the aligned words, one at a time.
        let head = self.lead.min(w.len());
        if let Some(at) = w
            .get(from..head)
            .and_then(|h| h.iter().position(|&c| c == b'\''))
        {
            return from.checked_add(at);
        }
        // The word holding `start`, ignoring its bytes before `start`.
        let start = from.max(self.lead);
        let rel = start.wrapping_sub(self.lead);
        let mut at = self.lead.wrapping_add(rel & !7);
        let mut words = self.words.get(rel >> 3..).unwrap_or_default().iter();
        if let Some(&word) = words.next() {
            let skip = u64::MAX.wrapping_shl(u32::try_from(rel & 7).ok()?.wrapping_mul(8));
            if let Some(q) = self.first_quote(at, quotes_in(u64::from_le(word)) & skip) {
                return Some(q);
            }
            // Within the window, so these cannot wrap.
            at = at.wrapping_add(8);
            let rest = words.as_slice();
            let mut pairs = rest.chunks_exact(2);
            for pair in pairs.by_ref() {
                if let &[a, b] = pair {
                    let (a, b) = (u64::from_le(a) ^ QUOTES, u64::from_le(b) ^ QUOTES);
                    if may_have_zero(a) | may_have_zero(b) != 0 {
                        if let Some(q) = self.first_quote(at, zero_bytes(a)) {
                            return Some(q);
                        }
                        if let Some(q) = self.first_quote(at.wrapping_add(8), zero_bytes(b)) {
                            return Some(q);
                        }
                    }
                }
                at = at.wrapping_add(16);
            }
            if let &[a] = pairs.remainder() {
                if let Some(q) = self.first_quote(at, quotes_in(u64::from_le(a))) {
                    return Some(q);
                }
            }
        }
        // The bytes after the words, one at a time.
        let tail = start.max(self.lead.saturating_add(self.words.len().saturating_mul(8)));
        let at = w.get(tail..)?.iter().position(|&c| c == b'\'')?;
        tail.checked_add(at)
    }

    /// The first quote among the candidates `hits` ([`quotes_in`]) of the eight bytes at `at`.
    fn first_quote(&self, at: usize, mut hits: u64) -> Option<usize> {
        while hits != 0 {
            let byte = usize::try_from(hits.trailing_zeros() / 8).ok()?;
            let q = at.checked_add(byte)?;
            if self.window.get(q) == Some(&b'\'') {
                return Some(q);
            }
            hits &= hits.wrapping_sub(1);
        }
        None
    }
}

const QUOTES: u64 = u64::from_le_bytes([b'\''; 8]);
const LOW: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// Non-zero if `x` may have a zero byte, and always if it has one (a byte of 0x81 or more may
/// also set it): the cheap first half of [`zero_bytes`].
fn may_have_zero(x: u64) -> u64 {
    x.wrapping_sub(LOW) & HIGH
}

/// The zero bytes of `x` (little-endian), as their high bits: the classic SWAR test, exact for
/// the first zero byte and possibly wrong above it (the caller checks each candidate).
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LOW) & !x & HIGH
}

/// The bytes of `word` (little-endian) that may be quotes, as their high bits ([`zero_bytes`]
/// of `word` xor quotes).
fn quotes_in(word: u64) -> u64 {
    zero_bytes(word ^ QUOTES)
}

impl Iterator for Statements<'_> {
    type Item = Statement;

    fn next(&mut self) -> Option<Statement> {
        loop {
            let offset = self.find_printf(self.pos)?;
            let mut d = Decoded::at(offset.saturating_add(PRINTF.len()));
            self.decode_statement(&mut d);
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
    let scan = statements(window);
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
        scan.decode(&mut d, PEEK);
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
