// SPDX-License-Identifier: GPL-2.0

//! The decoder's fast statement scanning: finding `printf '`, decoding escapes a word at a time
//! and finding where a statement ends, all bounded by the window.
//!
//! Nothing here decides anything: `ape.rs` states the rules and makes the choice, and this
//! module implements the rules' "Statements" and "Escapes" items eight bytes at a time. The host
//! tests hold it to the reference model, which reads one byte at a time.
//!
//! # Loads
//!
//! The scans look at the window through [`Window`], whose loads of eight bytes at any offset
//! come in one of two builds, chosen by `cfg`:
//!
//! - plain unaligned loads (x86-64, where they cost what an aligned one does);
//! - aligned words joined by shifts (arm64, whose kernel target is `strict-align`: there rustc
//!   makes a load at an unknown alignment one load per byte). The host tests build this one
//!   too, with `--cfg ape_aligned_loads`.
//!
//! The search for quotes reads aligned words in both builds.

use super::{Ehdr, EHDR_SIZE};

/// What starts a statement.
pub(super) const PRINTF: &[u8; 8] = b"printf '";
/// Where the quote of [`PRINTF`] is.
const PRINTF_QUOTE: usize = 7;

/// A statement body decoded so far.
#[derive(Clone, Copy)]
pub(super) struct Decoded {
    /// Bytes decoded, up to 64 (a statement's length past its header is not counted).
    pub(super) n: usize,
    /// The bytes decoded: the first `n` are this statement's (a [`Decoded`] is reused, and
    /// past `n` are an earlier statement's, which nothing reads).
    pub(super) out: Ehdr,
    /// Where decoding goes on in the window.
    pub(super) pos: usize,
    /// Whether the statement ended: its quote was read, or the window ran out.
    pub(super) ended: bool,
}

impl Decoded {
    /// Decoding from `pos`, nothing decoded yet.
    pub(super) fn at(pos: usize) -> Self {
        Self {
            n: 0,
            out: Ehdr([0; EHDR_SIZE]),
            pos,
            ended: false,
        }
    }

    /// Starts decoding at `pos` again; the bytes decoded before stay until overwritten.
    pub(super) fn restart(&mut self, pos: usize) {
        (self.n, self.pos, self.ended) = (0, pos, false);
    }
}

/// The value of the octal digits at bits 0, 8 and 16 of each half of `digits`, `64a + 8b + c`,
/// at bit 16 of the half (nine bits: keep the low eight for the value modulo 256).
///
/// One multiplication adds each half shifted by 22, 11 and 0 places: the digits' other
/// products land below bit 14 or above bit 26 of the half, and none carries into the value.
fn octal_value(digits: u64) -> u64 {
    digits.wrapping_mul((1 << 22) | (1 << 11) | 1)
}

/// `\ddd\ddd` (a backslash, then three bytes 0x30 to 0x37, twice), read as a little-endian word,
/// is [`TWO_ESCAPES`] once masked with this.
const TWO_ESCAPES_MASK: u64 = 0xf8f8_f8ff_f8f8_f8ff;
/// See [`TWO_ESCAPES_MASK`].
const TWO_ESCAPES: u64 = 0x3030_305c_3030_305c;

/// The bits of the eight bytes `x` (little-endian) that do not fit `\ddd\ddd`: zero where the
/// word is two escapes of three octal digits, and in its low half where the first one is.
fn not_escapes(x: u64) -> u64 {
    (x & TWO_ESCAPES_MASK) ^ TWO_ESCAPES
}

/// The bytes that two escapes of three octal digits, `\abc\def` read as a little-endian word,
/// stand for, each modulo 256.
fn three_digit_escapes(x: u64) -> [u8; 2] {
    let [_, _, a, _, _, _, b, _] = octal_value((x >> 8) & 0x0007_0707_0007_0707).to_le_bytes();
    [a, b]
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
        if not_escapes(x) != 0 {
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

/// The first [`crate::ape::WINDOW`] bytes of a file, as the scans load them.
#[derive(Clone, Debug)]
pub(super) struct Window<'a> {
    bytes: &'a [u8],
    /// The whole aligned words of `bytes`, from `bytes[lead]` on.
    words: &'a [u64],
    lead: usize,
}

impl<'a> Window<'a> {
    /// The window of `bytes`, which the caller has cut to at most [`crate::ape::WINDOW`] bytes.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        // SAFETY: Every bit pattern is a valid `u64`, and `align_to` hands out only the aligned
        // middle of `bytes` as words.
        let (head, words, _) = unsafe { bytes.align_to::<u64>() };
        Self {
            bytes,
            words,
            lead: head.len(),
        }
    }

    /// The eight bytes at `at`, as a little-endian word, from the bytes themselves.
    fn unaligned_word(&self, at: usize) -> Option<u64> {
        let bytes = self.bytes.get(at..).and_then(<[u8]>::first_chunk::<8>)?;
        Some(u64::from_le_bytes(*bytes))
    }

    /// The four bytes at `at`, as a little-endian word, from the bytes themselves.
    fn unaligned_word32(&self, at: usize) -> Option<u32> {
        let bytes = self.bytes.get(at..).and_then(<[u8]>::first_chunk::<4>)?;
        Some(u32::from_le_bytes(*bytes))
    }

    /// Decodes on from `d` until `d.n` reaches `want` (at most [`EHDR_SIZE`]: the bytes past
    /// the header only count, [`Window::decode_statement`]), the closing quote is read (then
    /// `d.pos` is one past it) or the window runs out.
    pub(super) fn decode_to(&self, d: &mut Decoded, want: usize) {
        if d.ended {
            return;
        }
        let want = want.min(EHDR_SIZE);
        let (mut n, mut pos) = (d.n, d.pos);
        let ended = loop {
            // Keep four bytes in view: a byte, and if it is a backslash, up to three digits.
            // Escapes are taken one at a time from the eight bytes at `pos` while
            // `Self::ROOM` of them are left, then reloaded (near the window's end: from the
            // four at `pos`, one escape per load).
            let (eight, room) = match self.word(pos) {
                Some(w) => (w, Self::ROOM),
                None => match self.word32(pos) {
                    Some(y) => (u64::from(y), 0),
                    None => break true,
                },
            };
            if n >= want {
                break false;
            }
            // Headers are usually all three-digit escapes: take a run of them two at a time.
            if not_escapes(eight) & 0xffff_ffff == 0 {
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
        let done = escape_pairs(dst.chunks_exact_mut(2), self.words_from(pos));
        // At most a header's worth, so these cannot wrap.
        (done.wrapping_mul(2), done.wrapping_mul(8))
    }

    /// Decodes the statement at `d` to its header's end, then only finds where it ends:
    /// `d.n` is its length up to [`EHDR_SIZE`], and `d.pos` one past where decoding stopped.
    pub(super) fn decode_statement(&self, d: &mut Decoded) {
        self.decode_to(d, EHDR_SIZE);
        if !d.ended {
            d.pos = self.finish(d.pos);
            d.ended = true;
        }
    }

    /// Whether the statement body at `body`, whose magic was seen, decodes to a whole header.
    pub(super) fn is_header(&self, body: usize) -> bool {
        let mut d = Decoded::at(body);
        self.decode_to(&mut d, EHDR_SIZE);
        d.n >= EHDR_SIZE
    }

    /// Where decoding from `pos` on would stop, without decoding: one past the first quote.
    ///
    /// An escape consumes only octal digits, never a quote, so decoding reaches the first
    /// quote at or after `pos` if it lies before the last three bytes of the window; past
    /// that, or with no quote, this steps through to find out.
    pub(super) fn finish(&self, pos: usize) -> usize {
        let end = self.bytes.len().saturating_sub(3);
        if let Some(q) = self.find_quote(pos).filter(|&q| q < end) {
            return q.saturating_add(1);
        }
        let mut pos = pos;
        // Four bytes remain at `pos`, so these cannot wrap.
        while let Some(&four) = self.bytes.get(pos..).and_then(<[u8]>::first_chunk::<4>) {
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
    pub(super) fn find_printf(&self, from: usize) -> Option<usize> {
        let head = u64::from_le_bytes(*PRINTF);
        // The statement starting at `s` has its quote at `s + 7`.
        let mut q = from.checked_add(PRINTF_QUOTE)?;
        loop {
            q = self.find_quote(q)?;
            let s = q.checked_sub(PRINTF_QUOTE)?;
            // Most quotes of a shell script follow something other than a space.
            let space = self.bytes.get(q.wrapping_sub(1)) == Some(&b' ');
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
        let w = self.bytes;
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
            if self.bytes.get(q) == Some(&b'\'') {
                return Some(q);
            }
            hits &= hits.wrapping_sub(1);
        }
        None
    }
}

/// Plain loads at any offset: x86-64, where an unaligned load costs what an aligned one does.
#[cfg(not(any(target_arch = "aarch64", ape_aligned_loads)))]
impl Window<'_> {
    /// Bytes [`Window::decode_to`] may use of a load before it loads again: with a load as cheap
    /// at any offset, one escape or byte per load.
    const ROOM: u32 = 0;

    /// The eight bytes at `at`, as a little-endian word, if the window holds them.
    fn word(&self, at: usize) -> Option<u64> {
        self.unaligned_word(at)
    }

    /// The four bytes at `at`, as a little-endian word, if the window holds them.
    fn word32(&self, at: usize) -> Option<u32> {
        self.unaligned_word32(at)
    }

    /// The window's bytes from `pos` on, eight at a time, as little-endian words.
    fn words_from(&self, pos: usize) -> impl Iterator<Item = u64> + '_ {
        let rest = self.bytes.get(pos..).unwrap_or_default().chunks_exact(8);
        rest.map(|c| c.first_chunk().map_or(0, |c| u64::from_le_bytes(*c)))
    }
}

/// Loads through the aligned words that hold the bytes: arm64, whose kernel target is
/// `strict-align`, where a load at an unknown alignment is a load of each byte.
#[cfg(any(target_arch = "aarch64", ape_aligned_loads))]
impl Window<'_> {
    /// Bytes [`Window::decode_to`] may use of a load before it loads again: a load at any offset
    /// joins two words, so it takes escapes from it while four bytes of it are left.
    const ROOM: u32 = 4;

    /// The eight bytes at `at`, as a little-endian word, if the window holds them (joined from
    /// the aligned words that hold them where there are such).
    fn word(&self, at: usize) -> Option<u64> {
        if let Some(rel) = at.checked_sub(self.lead) {
            let (i, shift) = (rel >> 3, u32::try_from(rel & 7).ok()?.wrapping_mul(8));
            if let Some(&lo) = self.words.get(i) {
                let lo = u64::from_le(lo);
                if shift == 0 {
                    return Some(lo);
                }
                if let Some(&hi) = self.words.get(i.wrapping_add(1)) {
                    return Some(join(lo, u64::from_le(hi), shift));
                }
            }
        }
        self.unaligned_word(at)
    }

    /// The four bytes at `at`, as a little-endian word, if the window holds them.
    fn word32(&self, at: usize) -> Option<u32> {
        match self.word(at).map(u64::to_le_bytes) {
            Some([a, b, c, d, ..]) => Some(u32::from_le_bytes([a, b, c, d])),
            None => self.unaligned_word32(at),
        }
    }

    /// The window's bytes from `pos` on, eight at a time, as little-endian words joined from
    /// the aligned words that hold them, one new word per step; none before the first aligned
    /// word, and the bytes in the last one are left to loads of their own.
    fn words_from(&self, pos: usize) -> Joined<'_> {
        let rel = pos.checked_sub(self.lead);
        let mut rest = rel
            .and_then(|r| self.words.get(r >> 3..))
            .unwrap_or_default()
            .iter();
        let lo = rest.next().map_or(0, |&w| u64::from_le(w));
        let shift = rel.map_or(0, |r| u32::try_from(r & 7).unwrap_or(0).wrapping_mul(8));
        Joined { lo, rest, shift }
    }
}

/// Words of eight bytes at a fixed offset into aligned words (see [`Window::words_from`]).
#[cfg(any(target_arch = "aarch64", ape_aligned_loads))]
struct Joined<'a> {
    lo: u64,
    rest: core::slice::Iter<'a, u64>,
    /// The offset, in bits.
    shift: u32,
}

#[cfg(any(target_arch = "aarch64", ape_aligned_loads))]
impl Iterator for Joined<'_> {
    type Item = u64;

    #[inline(always)]
    fn next(&mut self) -> Option<u64> {
        let hi = u64::from_le(*self.rest.next()?);
        let x = join(self.lo, hi, self.shift);
        self.lo = hi;
        Some(x)
    }
}

/// The eight bytes `shift / 8` bytes into the little-endian word `lo`, the rest from the next
/// word `hi` (`hi << (64 - shift)` in two steps, so that a shift of 0 takes none of `hi`).
#[cfg(any(target_arch = "aarch64", ape_aligned_loads))]
#[inline(always)]
fn join(lo: u64, hi: u64, shift: u32) -> u64 {
    lo.wrapping_shr(shift) | (hi << 1).wrapping_shl(63u32.wrapping_sub(shift))
}
