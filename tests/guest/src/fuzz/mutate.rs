// SPDX-License-Identifier: GPL-2.0

//! The fuzzer's mutations of seed files, deterministic from the run's seed and the exec's
//! index: byte flips, splices of other seeds' statements, statements moved across the module's
//! read boundaries, escapes cut, program header tables moved and resized, truncations, magics.

use apekit::ape;

/// The module's read boundaries: its first read, and the window it reads when that does not
/// decide (`FIRST_READ` in src/binfmt_ape_main.rs, `ape::WINDOW`).
pub const FIRST_READ: usize = 2048;
const PRINTF: &[u8] = b"printf '";
const MAGICS: [&[u8; 8]; 3] = [b"MZqFpD='", b"jartsr='", b"APEDBG='"];

/// xoshiro256** seeded through splitmix64: small, fast and the same on every host.
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    /// The generator of exec `index` of the run seeded `seed` (`stream` tells phases apart).
    pub fn for_exec(seed: u64, stream: u64, index: u64) -> Self {
        Self::new(seed ^ stream.rotate_left(32) ^ index.wrapping_mul(0xd605_bbb5_8c8a_bbab))
    }

    pub fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// A file the fuzzer starts from.
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A `printf '` statement of a file: where it starts, where its body starts, and where it
/// ends (one past its closing quote, or the end of the window).
#[derive(Clone, Copy, Debug)]
struct Stmt {
    start: usize,
    body: usize,
    end: usize,
}

fn window(file: &[u8]) -> &[u8] {
    &file[..file.len().min(ape::WINDOW)]
}

/// Every `printf '` statement in the window.
fn statements(file: &[u8]) -> Vec<Stmt> {
    let w = window(file);
    let mut v = Vec::new();
    let mut at = 0;
    while let Some(p) = w
        .get(at..)
        .and_then(|r| r.windows(PRINTF.len()).position(|x| x == PRINTF))
    {
        let start = at + p;
        let body = start + PRINTF.len();
        let end = w[body..]
            .iter()
            .position(|&b| b == b'\'')
            .map_or(w.len(), |q| body + q + 1);
        v.push(Stmt { start, body, end });
        at = body;
    }
    v
}

/// The statements that decode to an ELF header, each with its header.
fn headers(file: &[u8]) -> Vec<(Stmt, [u8; 64])> {
    let all = statements(file);
    ape::statements(window(file))
        .filter_map(|s| {
            let st = all.iter().find(|t| t.start == s.offset)?;
            Some((*st, s.ehdr.0))
        })
        .collect()
}

/// Writes `bytes` at `at`, growing the file if they reach past its end.
fn put(file: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if file.len() < at + bytes.len() {
        file.resize(at + bytes.len(), b' ');
    }
    file[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A 64-byte header as a `printf '...'` statement, in one of the styles loader.c reads:
/// printable bytes plain and the rest escaped as briefly as they can be, every byte escaped
/// with three digits, or escapes over 255 (loader.c keeps the low eight bits).
fn encode(h: &[u8; 64], rng: &mut Rng) -> Vec<u8> {
    let style = rng.below(4);
    let mut out = PRINTF.to_vec();
    for (i, &b) in h.iter().enumerate() {
        let plain = (0x20..0x7f).contains(&b) && b != b'\\' && b != b'\'';
        if plain && style != 1 {
            out.push(b);
            continue;
        }
        let next_digit = h.get(i + 1).is_some_and(|n| (b'0'..=b'7').contains(n));
        let v = if style == 2 && b < 0o100 {
            u32::from(b) + 0o400
        } else {
            u32::from(b)
        };
        let s = if style == 1 || next_digit {
            format!("\\{v:03o}")
        } else {
            format!("\\{v:o}")
        };
        out.extend_from_slice(s.as_bytes());
    }
    out.push(b'\'');
    out
}

/// Replaces statement `s` with `h` encoded, blanking what is left of the old statement.
fn rewrite(file: &mut Vec<u8>, s: Stmt, h: &[u8; 64], rng: &mut Rng) {
    let enc = encode(h, rng);
    if enc.len() < s.end - s.start {
        put(
            file,
            s.start + enc.len(),
            &vec![b' '; s.end - s.start - enc.len()],
        );
    }
    put(file, s.start, &enc);
}

fn u16_at(h: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or([0; 8]))
}

const E_PHOFF: usize = 32;
const E_PHNUM: usize = 56;

/// Interesting offsets of a file: the read boundaries, the page, its statements' starts and
/// ends, its program header tables' starts and ends, and its segments' ends.
fn interesting(file: &[u8], page: usize) -> Vec<usize> {
    let mut v = vec![0, 1, 7, 8, 9, 63, 64, 255, 256];
    for b in [FIRST_READ, page, 4096, ape::WINDOW] {
        v.extend([b - 1, b, b + 1]);
    }
    for s in statements(file) {
        v.extend([s.start, s.start + 1, s.body, s.end - 1, s.end]);
    }
    for (_, h) in headers(file) {
        let (off, n) = (
            u64_at(&h, E_PHOFF) as usize,
            usize::from(u16_at(&h, E_PHNUM)),
        );
        let end = off.saturating_add(n * ape::PHDR_SIZE);
        v.extend([
            off,
            off.saturating_add(1),
            end.saturating_sub(1),
            end,
            end.saturating_add(1),
        ]);
        for i in 0..n.min(18) {
            let p = off.saturating_add(i * ape::PHDR_SIZE);
            if let Some(e) = file.get(p..p.saturating_add(ape::PHDR_SIZE)) {
                let end = u64_at(e, 8).saturating_add(u64_at(e, 32)) as usize;
                v.extend([end.saturating_sub(1), end]);
            }
        }
    }
    v.push(file.len().saturating_sub(1));
    v.retain(|&o| o < file.len());
    v
}

/// Applies one to four mutations to `file` (a copy of `seeds[own]`), named in the returned
/// description. `page` is the guest's page size.
pub fn mutate(file: &mut Vec<u8>, seeds: &[Seed], rng: &mut Rng, page: usize) -> Vec<String> {
    let mut done = Vec::new();
    let n =
        1 + usize::from(rng.one_in(2)) + usize::from(rng.one_in(4)) + usize::from(rng.one_in(8));
    for _ in 0..n {
        let d = match rng.below(10) {
            0 => flip(file, rng),
            1 => set(file, rng),
            2 => splice(file, seeds, rng),
            3 => move_statement(file, rng, page),
            4 => cut_escape(file, rng),
            5 => phdr_near_end(file, rng),
            6 => phdr_overlap(file, rng, page),
            7 => truncate(file, rng, page),
            8 => magic(file, rng),
            _ => field(file, rng, page),
        };
        done.push(d);
    }
    done
}

/// Flips bits in one to four bytes, mostly in the window, often in a statement.
fn flip(file: &mut [u8], rng: &mut Rng) -> String {
    let mut at = Vec::new();
    let stmts = statements(file);
    for _ in 0..1 + rng.below(4) {
        let p = match rng.below(10) {
            0 if !file.is_empty() => rng.below(file.len()),
            1..=3 if !stmts.is_empty() => {
                let s = rng.pick(&stmts);
                s.start + rng.below(s.end - s.start)
            }
            _ => rng.below(window(file).len()),
        };
        if let Some(b) = file.get_mut(p) {
            *b ^= 1 << rng.below(8);
            at.push(p);
        }
    }
    format!("flip{at:?}")
}

/// Sets one to four bytes of a statement, or of the window, to a byte the decoder treats
/// specially.
fn set(file: &mut [u8], rng: &mut Rng) -> String {
    const SPECIAL: &[u8] = b"\\'01234567789p\x00\xff\x7fE";
    let mut at = Vec::new();
    let stmts = statements(file);
    for _ in 0..1 + rng.below(4) {
        let p = match stmts.is_empty() || rng.one_in(3) {
            true => rng.below(window(file).len()),
            false => {
                let s = rng.pick(&stmts);
                s.body + rng.below(s.end - s.body)
            }
        };
        let v = *rng.pick(SPECIAL);
        if let Some(b) = file.get_mut(p) {
            *b = v;
            at.push((p, v));
        }
    }
    format!("set{at:?}")
}

/// Writes a header statement of another seed (or of this file) over one of this file's
/// statements, or anywhere in the window.
fn splice(file: &mut Vec<u8>, seeds: &[Seed], rng: &mut Rng) -> String {
    let donor = rng.pick(seeds);
    let hs = headers(&donor.bytes);
    if hs.is_empty() {
        return format!("splice(none in {})", donor.name);
    }
    let (s, _) = *rng.pick(&hs);
    let text = donor.bytes[s.start..s.end].to_vec();
    let own = statements(file);
    let at = if own.is_empty() || rng.one_in(3) {
        8 + rng.below(window(file).len().saturating_sub(8).max(1))
    } else {
        rng.pick(&own).start
    };
    put(file, at, &text);
    format!("splice({}@{:#x} -> {at:#x})", donor.name, s.start)
}

/// Moves (or copies) a header statement so that it straddles the first read's end, the page's
/// end or the window's end, each byte of it in turn.
fn move_statement(file: &mut Vec<u8>, rng: &mut Rng, page: usize) -> String {
    let hs = headers(file);
    if hs.is_empty() {
        return flip(file, rng);
    }
    let (s, _) = *rng.pick(&hs);
    let text = file[s.start..s.end].to_vec();
    let boundary = *rng.pick(&[FIRST_READ, page.min(ape::WINDOW), 4096, ape::WINDOW]);
    let before = rng.below(text.len() + 1);
    let Some(at) = boundary.checked_sub(before).filter(|&a| a >= 8) else {
        return format!("move(no room at {boundary})");
    };
    let keep = rng.one_in(3);
    if !keep {
        put(file, s.start, &vec![b' '; text.len()]);
    }
    put(file, at, &text);
    let how = if keep { "copy" } else { "move" };
    format!(
        "{how}({:#x} -> {at:#x}, {before} bytes before {boundary})",
        s.start
    )
}

/// Cuts a header statement at one of its bytes: the file ends there, a quote closes it there,
/// or it is moved so that the window, or the first read, ends there.
fn cut_escape(file: &mut Vec<u8>, rng: &mut Rng) -> String {
    let hs = headers(file);
    if hs.is_empty() {
        return truncate(file, rng, 4096);
    }
    let (s, _) = *rng.pick(&hs);
    let p = s.body + rng.below(s.end - s.body);
    match rng.below(4) {
        0 => {
            file.truncate(p);
            format!("cut(file ends at {p:#x})")
        }
        1 => {
            if let Some(b) = file.get_mut(p) {
                *b = b'\'';
            }
            format!("cut(quote at {p:#x})")
        }
        b => {
            let boundary = if b == 2 { ape::WINDOW } else { FIRST_READ };
            let text = file[s.start..s.end].to_vec();
            let Some(at) = boundary.checked_sub(p - s.start).filter(|&a| a >= 8) else {
                return format!("cut(no room before {boundary})");
            };
            put(file, s.start, &vec![b' '; text.len()]);
            put(file, at, &text);
            format!(
                "cut({:#x} at {boundary}, {} bytes before)",
                s.start,
                p - s.start
            )
        }
    }
}

/// Points a header's `e_phoff` near or past the end of the file, or changes `e_phnum`.
fn phdr_near_end(file: &mut Vec<u8>, rng: &mut Rng) -> String {
    let hs = headers(file);
    if hs.is_empty() {
        return magic(file, rng);
    }
    let (s, mut h) = *rng.pick(&hs);
    let len = file.len() as u64;
    let table = u64::from(u16_at(&h, E_PHNUM)) * ape::PHDR_SIZE as u64;
    let what = if rng.one_in(3) {
        let n: u16 = *rng.pick(&[
            0,
            1,
            2,
            17,
            18,
            19,
            0xffff,
            u16_at(&h, E_PHNUM).wrapping_add(1),
        ]);
        h[E_PHNUM..E_PHNUM + 2].copy_from_slice(&n.to_le_bytes());
        format!("e_phnum={n}")
    } else {
        let off = match rng.below(3) {
            0 => len.wrapping_sub(*rng.pick(&[0, 1, 55, 56, 57, table, table.wrapping_sub(1)])),
            1 => len + *rng.pick(&[0, 1, 4096, 1 << 20]),
            _ => *rng.pick(&[
                u64::MAX,
                u64::MAX - 55,
                u64::MAX - 56,
                i64::MAX as u64,
                i64::MAX as u64 - 55,
                1 << 63,
                (1 << 32) - 1,
            ]),
        };
        h[E_PHOFF..E_PHOFF + 8].copy_from_slice(&off.to_le_bytes());
        format!("e_phoff={off:#x}")
    };
    rewrite(file, s, &h, rng);
    format!("phdr({:#x}: {what})", s.start)
}

/// Copies a header's program header table so that it straddles the first read's end, the
/// page's end, the window's end or the file's end, and points the header at the copy.
fn phdr_overlap(file: &mut Vec<u8>, rng: &mut Rng, page: usize) -> String {
    let hs = headers(file);
    if hs.is_empty() {
        return flip(file, rng);
    }
    let (s, mut h) = *rng.pick(&hs);
    let off = u64_at(&h, E_PHOFF) as usize;
    let len = usize::from(u16_at(&h, E_PHNUM)) * ape::PHDR_SIZE;
    let Some(table) = file.get(off..off.saturating_add(len)).map(<[u8]>::to_vec) else {
        return format!("overlap(no table at {off:#x})");
    };
    if table.is_empty() {
        return "overlap(empty table)".into();
    }
    let boundary = *rng.pick(&[FIRST_READ, page.min(1 << 20), ape::WINDOW, file.len()]);
    let at = boundary.saturating_sub(1 + rng.below(table.len()));
    if at < 8 || (at < s.end && at + table.len() > s.start) {
        return format!("overlap(would cover its statement at {at:#x})");
    }
    if boundary == file.len() {
        // The table runs past the end of the file.
        file.truncate(at);
        file.extend_from_slice(&table[..boundary - at]);
    } else {
        put(file, at, &table);
    }
    h[E_PHOFF..E_PHOFF + 8].copy_from_slice(&(at as u64).to_le_bytes());
    rewrite(file, s, &h, rng);
    format!(
        "overlap({:#x}: table {off:#x} -> {at:#x} across {boundary})",
        s.start
    )
}

/// Truncates the file at an interesting offset.
fn truncate(file: &mut Vec<u8>, rng: &mut Rng, page: usize) -> String {
    let v = interesting(file, page);
    let at = if v.is_empty() || rng.one_in(5) {
        rng.below(file.len() + 1)
    } else {
        *rng.pick(&v)
    };
    if at < file.len() {
        file.truncate(at);
    }
    format!("truncate({at:#x})")
}

/// Sets the magic to another APE magic (the debug one included), or to a near miss.
fn magic(file: &mut Vec<u8>, rng: &mut Rng) -> String {
    let mut m = **rng.pick(&MAGICS);
    let near = rng.one_in(6);
    if near {
        m[rng.below(8)] ^= 1 << rng.below(8);
    }
    put(file, 0, &m);
    format!("magic({})", String::from_utf8_lossy(&m).escape_debug())
}

/// Sets one field of a header, or of one of its program headers, to a value the checks look
/// at.
fn field(file: &mut Vec<u8>, rng: &mut Rng, page: usize) -> String {
    let hs = headers(file);
    if hs.is_empty() {
        return set(file, rng);
    }
    let (s, mut h) = *rng.pick(&hs);
    if rng.one_in(2) {
        let (at, v): (usize, u64) = match rng.below(7) {
            0 => (4, *rng.pick(&[0, 1, 2, 3])),
            1 => (5, *rng.pick(&[0, 1, 2])),
            2 => (6, *rng.pick(&[0, 1, 2])),
            3 => (16, *rng.pick(&[0, 1, 2, 3, 4])),
            4 => (18, *rng.pick(&[62, 183, 0, 3, 40])),
            5 => (54, *rng.pick(&[0, 55, 56, 57, 64])),
            _ => {
                let e = u64_at(&h, 24);
                let v = *rng.pick(&[
                    0,
                    1,
                    e.wrapping_add(1),
                    e.wrapping_sub(1),
                    e.wrapping_add(page as u64),
                    u64::MAX,
                ]);
                h[24..32].copy_from_slice(&v.to_le_bytes());
                rewrite(file, s, &h, rng);
                return format!("field({:#x}: e_entry={v:#x})", s.start);
            }
        };
        let w = if at == 16 || at == 18 || at == 54 {
            2
        } else {
            1
        };
        h[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
        rewrite(file, s, &h, rng);
        return format!("field({:#x}: byte {at} = {v})", s.start);
    }
    let off = u64_at(&h, E_PHOFF) as usize;
    let n = usize::from(u16_at(&h, E_PHNUM)).min(18);
    if n == 0 {
        return "field(no program headers)".into();
    }
    let p = off.saturating_add(rng.below(n) * ape::PHDR_SIZE);
    let Some(e) = file
        .get(p..p.saturating_add(ape::PHDR_SIZE))
        .map(<[u8]>::to_vec)
    else {
        return format!("field(no table at {off:#x})");
    };
    let (at, v): (usize, u64) = match rng.below(6) {
        0 => (0, *rng.pick(&[0, 1, 2, 3, 4, 0x6474_e553, 0x6474_e551])),
        1 => (
            4,
            u64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]]) ^ 1),
        ),
        2 => (8, u64_at(&e, 8) ^ *rng.pick(&[1, 0x800, page as u64])),
        3 => (16, u64_at(&e, 16) ^ *rng.pick(&[1, 0x1000, page as u64])),
        4 => (
            32,
            *rng.pick(&[u64_at(&e, 40).wrapping_add(1), u64::MAX, 0]),
        ),
        _ => (
            40,
            *rng.pick(&[0, u64::MAX - 1, u64::MAX - page as u64, 1 << 47]),
        ),
    };
    let w = if at <= 4 { 4 } else { 8 };
    put(file, p.saturating_add(at), &v.to_le_bytes()[..w]);
    format!("field(phdr at {p:#x}: byte {at} = {v:#x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_decodes_back() {
        let mut rng = Rng::new(1);
        for i in 0..64 {
            let mut h = [0u8; 64];
            h.iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (i * 7 + j * 13) as u8);
            h[..4].copy_from_slice(b"\x7fELF");
            let mut file = b"MZqFpD='\n".to_vec();
            file.extend(encode(&h, &mut rng));
            file.extend_from_slice(b"\n\n\n\n\n\n\n\n");
            let got: Vec<_> = ape::statements(&file).collect();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].ehdr.0, h);
        }
    }
}

#[cfg(test)]
mod seeds_tests {
    use super::*;

    /// Mutations of every fixture and corpus case (`BINFMT_APE_FIXTURES`, as make fixtures
    /// leaves them) and the real APEs (`BINFMT_APE_REAL`) end without a panic: a panic would
    /// end a guest's run.
    #[test]
    fn mutations_do_not_panic() {
        let Ok(dir) = std::env::var("BINFMT_APE_FIXTURES") else {
            return;
        };
        let mut seeds = Vec::new();
        if let Ok(real) = std::env::var("BINFMT_APE_REAL") {
            for n in ["ent.com", "pledge"] {
                let bytes = std::fs::read(format!("{real}/{n}")).unwrap();
                seeds.push(Seed {
                    name: n.into(),
                    bytes,
                });
            }
        }
        for sub in ["fix", "corpus"] {
            for e in std::fs::read_dir(format!("{dir}/{sub}")).unwrap().flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "ape") {
                    let bytes = std::fs::read(&p).unwrap();
                    let name = p.display().to_string();
                    seeds.push(Seed { name, bytes });
                }
            }
        }
        for n in 0..50000 {
            let mut rng = Rng::for_exec(7, 1, n);
            let mut f = seeds[rng.below(seeds.len())].bytes.clone();
            mutate(
                &mut f,
                &seeds,
                &mut rng,
                [4096, 16384, 65536][n as usize % 3],
            );
        }
    }
}
