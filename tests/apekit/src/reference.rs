// SPDX-License-Identifier: GPL-2.0

//! An independent model of APE header selection, for differential tests against `ape`.
//!
//! Written from the rules in the decoder's documentation (cosmopolitan's specification.md and
//! loader.c), in a deliberately different style: it decodes every statement into a `Vec`
//! first, parses headers into plain structs, and indexes freely. It shares no code with the
//! decoder. Its verdict is a string naming the outcome, compared against `ape::Error::name`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Index (among ELF statements) and decoded header, or the reason for refusal.
    pub result: Result<(usize, [u8; 64]), &'static str>,
}

struct Hdr {
    class: u8,
    data: u8,
    ident_version: u8,
    e_type: u16,
    machine: u16,
    version: u32,
    entry: u64,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
}

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    (0..n)
        .rev()
        .fold(0u64, |acc, i| (acc << 8) | u64::from(b[at + i]))
}

fn parse(h: &[u8]) -> Hdr {
    Hdr {
        class: h[4],
        data: h[5],
        ident_version: h[6],
        e_type: le(h, 16, 2) as u16,
        machine: le(h, 18, 2) as u16,
        version: le(h, 20, 4) as u32,
        entry: le(h, 24, 8),
        phoff: le(h, 32, 8),
        phentsize: le(h, 54, 2) as u16,
        phnum: le(h, 56, 2) as u16,
    }
}

/// Every statement's decoded bytes, in file order, with no filtering.
fn decode_all(win: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let end = win.len();
    let mut p = 0usize;
    while p + 8 <= end {
        if &win[p..p + 8] != b"printf '" {
            p += 1;
            continue;
        }
        p += 8;
        let mut bytes = Vec::new();
        while p + 3 < end {
            let c = win[p];
            p += 1;
            if c == b'\'' {
                break;
            }
            if c != b'\\' || !(b'0'..=b'7').contains(&win[p]) {
                bytes.push(c);
                continue;
            }
            let mut v: u32 = 0;
            let mut k = 0;
            while k < 3 && (b'0'..=b'7').contains(&win[p]) {
                v = v * 8 + u32::from(win[p] - b'0');
                p += 1;
                k += 1;
            }
            bytes.push((v & 0xff) as u8);
        }
        out.push(bytes);
        p += 1;
    }
    out
}

/// The reasons for which loader.c moves on to the next statement: `ape::Field::skips` must
/// say the same (`tests/decoder.rs`, `skip_lists_agree`).
pub const SKIP: &[&str] = &[
    "class", "data", "version", "type", "machine", "phoff", "interp", "dynamic",
];

fn check_loads(h: &Hdr, table: &[u8], page: u64) -> Result<(), &'static str> {
    let n = h.phnum as usize;
    let ents: Vec<&[u8]> = (0..n).map(|i| &table[i * 56..i * 56 + 56]).collect();
    // In table order: the first PT_INTERP or PT_DYNAMIC names the reason.
    for e in &ents {
        match le(e, 0, 4) {
            3 => return Err("interp"),
            2 => return Err("dynamic"),
            _ => {}
        }
    }
    let mut entry_ok = false;
    for e in ents {
        let (ty, fl, off, va, fs, ms) = (
            le(e, 0, 4),
            le(e, 4, 4),
            le(e, 8, 8),
            le(e, 16, 8),
            le(e, 32, 8),
            le(e, 40, 8),
        );
        if ty != 1 || ms == 0 {
            continue;
        }
        if fs > ms {
            return Err("filesz");
        }
        if va % page != off % page {
            return Err("align");
        }
        let (vend, fend) = (
            u128::from(va) + u128::from(ms),
            u128::from(off) + u128::from(fs),
        );
        if vend + u128::from(page - 1) > u128::from(u64::MAX)
            || fend + u128::from(page - 1) > u128::from(u64::MAX)
        {
            return Err("overflow");
        }
        if fl & 1 == 1 && u128::from(h.entry) >= u128::from(va) && u128::from(h.entry) < vend {
            entry_ok = true;
        }
    }
    if entry_ok {
        Ok(())
    } else {
        Err("entry")
    }
}

/// The reference verdict for `file` on `machine` with pages of `page` bytes.
pub fn select(file: &[u8], machine: u16, page: u64) -> Verdict {
    let win = &file[..file.len().min(8192)];
    let magic = if win.len() >= 8 { &win[..8] } else { &b""[..] };
    let result = match magic {
        b"APEDBG='" => Err("debug-magic"),
        b"MZqFpD='" | b"jartsr='" => pick(file, win, machine, page),
        _ => Err("not-ape"),
    };
    Verdict { result }
}

fn pick(
    file: &[u8],
    win: &[u8],
    machine: u16,
    page: u64,
) -> Result<(usize, [u8; 64]), &'static str> {
    let headers: Vec<Vec<u8>> = decode_all(win)
        .into_iter()
        .filter(|b| b.len() >= 64 && b.starts_with(b"\x7fELF"))
        .collect();
    if headers.is_empty() {
        return Err("no-printf");
    }
    let mut last: &'static str = "no-machine";
    for (idx, bytes) in headers.iter().enumerate() {
        let h = parse(bytes);
        let why = if h.class != 2 {
            Some("class")
        } else if h.data != 1 {
            Some("data")
        } else if h.ident_version != 1 || h.version != 1 {
            Some("version")
        } else if h.e_type != 2 && h.e_type != 3 {
            Some("type")
        } else if h.machine != machine {
            Some("machine")
        } else if h.phentsize != 56 {
            Some("phentsize")
        } else if h.phnum == 0 || h.phnum as usize * 56 > 1024 {
            Some("phnum")
        } else {
            None
        };
        let verdict = match why {
            Some(w) => Err(w),
            None => {
                let start = h.phoff as u128;
                let stop = start + h.phnum as u128 * 56;
                if stop > file.len() as u128 {
                    Err("phoff")
                } else {
                    check_loads(&h, &file[start as usize..stop as usize], page)
                }
            }
        };
        match verdict {
            Ok(()) => {
                let mut out = [0u8; 64];
                out.copy_from_slice(&bytes[..64]);
                return Ok((idx, out));
            }
            Err("machine") => {}
            Err(w) if SKIP.contains(&w) => last = w,
            Err(w) => return Err(w),
        }
    }
    Err(last)
}
