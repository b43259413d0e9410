// SPDX-License-Identifier: GPL-2.0
//! Differential property tests: the decoder and the reference model agree on random and
//! mutated files, for both CPUs and three page sizes. Deterministic (seeded xorshift).

mod common;
use common::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&[u8]] = &[
    b"printf '",
    b"'",
    b"\\",
    b"\\0",
    b"\\177",
    b"\\777",
    b"\\8",
    b"ELF",
    b"\n",
    b"\\510",
];

fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let limit = f.len().clamp(1, 8192);
        match rng.below(8) {
            0 => {
                let i = rng.below(limit);
                if let Some(b) = f.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            1 => {
                let i = rng.below(limit);
                let t = TOKENS[rng.below(TOKENS.len())];
                f.splice(i.min(f.len())..i.min(f.len()), t.iter().copied());
            }
            2 => {
                let i = rng.below(limit);
                if i < f.len() {
                    f.remove(i);
                }
            }
            3 => {
                // An octal digit in an escape: changes one header byte.
                let i = rng.below(limit);
                if let Some(b) = f.get_mut(i) {
                    if (b'0'..=b'7').contains(b) {
                        *b = b'0' + rng.below(8) as u8;
                    }
                }
            }
            4 => {
                let n = rng.below(f.len() + 1);
                f.truncate(n.max(f.len() / 2));
            }
            5 => {
                // Anywhere in a program header table past the window.
                let i = 8192 + rng.below(f.len().saturating_sub(8192).max(1));
                if let Some(b) = f.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            6 => {
                let i = rng.below(limit);
                let s = stmt(&hdr(if rng.below(2) == 0 { X86 } else { ARM }));
                f.splice(i.min(f.len())..i.min(f.len()), s);
            }
            _ => {
                let i = rng.below(limit);
                f.splice(
                    i.min(f.len())..i.min(f.len()),
                    std::iter::repeat_n(b'\\', rng.below(16)),
                );
            }
        }
    }
}

fn agree(f: &[u8], what: &str) {
    for m in [X86, ARM] {
        for page in [4096, 16384, 65536] {
            let got = verdict(f, m, page);
            let want = apekit::reference::select(f, m, page).result;
            assert_eq!(got, want, "{what}: machine {m}, page {page}");
        }
        prefix_agrees(f, m, what);
    }
}

/// A verdict from the first bytes of the window alone (the kernel module's first read) is the
/// verdict of the whole window, a complete prefix always has one, and a scan resumed where the
/// prefix left off reaches the whole window's verdict.
fn prefix_agrees(f: &[u8], m: u16, what: &str) {
    let full = apekit::select(f, m, PAGE).map(|s| s.statement);
    let window = f.len().min(apekit::ape::WINDOW);
    // The module's first read, a page, a few cuts that fall inside statements, and the whole
    // window.
    for n in [
        2048,
        4096,
        7,
        256,
        700,
        1000,
        1300,
        window.saturating_sub(1),
        window,
    ] {
        let (early, resumed) = apekit::select_prefix(f, n, m, PAGE);
        match early {
            Some(v) => assert_eq!(v, full, "{what}: machine {m}, first {n} bytes"),
            None => assert!(
                n < window,
                "{what}: machine {m}: no verdict from the whole window"
            ),
        }
        assert_eq!(
            resumed, full,
            "{what}: machine {m}, resumed after {n} bytes"
        );
    }
}

fn fuzz(seed: u64, base: &[u8], rounds: usize, what: &str) -> usize {
    let mut rng = Rng(seed);
    let mut accepted = 0;
    for r in 0..rounds {
        let mut f = base.to_vec();
        mutate(&mut rng, &mut f);
        agree(&f, &format!("{what} round {r}"));
        accepted += usize::from(verdict(&f, X86, PAGE).is_ok());
    }
    accepted
}

#[test]
fn synthetic_mutations() {
    let ok = fuzz(0x5eed_0001, &fat(), 30_000, "synthetic");
    // The mutations must leave some files valid, or the property says little.
    assert!(ok > 1000, "only {ok} mutated files still selected a header");
}

#[test]
fn real_ape_mutations() {
    let mut f = std::fs::read(real_dir().join("ent.com")).unwrap();
    f.truncate(64 * 1024);
    let ok = fuzz(0x5eed_0002, &f, 10_000, "ent.com");
    assert!(ok > 300, "only {ok} mutated files still selected a header");
}

#[test]
fn corpus_mutations() {
    let dir = fixtures_dir().join("corpus");
    let mut seed = 0x5eed_1000;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ape") {
            let f = std::fs::read(&p).unwrap();
            agree(&f, &p.display().to_string());
            seed += 1;
            fuzz(seed, &f, 300, &p.display().to_string());
        }
    }
}

#[test]
fn random_bytes_after_magic() {
    let mut rng = Rng(0x5eed_0003);
    for r in 0..20_000 {
        let mut f = if r % 2 == 0 {
            b"MZqFpD='".to_vec()
        } else {
            b"jartsr='".to_vec()
        };
        let n = rng.below(9000);
        f.extend((0..n).map(|_| {
            let t = rng.below(6);
            if t == 0 {
                b'\\'
            } else if t == 1 {
                b'0' + rng.below(8) as u8
            } else {
                rng.next() as u8
            }
        }));
        agree(&f, &format!("random {r}"));
    }
}

/// Where the body of each `printf '` statement of `f` starts.
fn statement_bodies(f: &[u8]) -> Vec<usize> {
    f.windows(8)
        .enumerate()
        .filter(|(_, w)| w == b"printf '")
        .map(|(i, _)| i + 8)
        .collect()
}

#[test]
fn every_escape() {
    // A backslash and any three of these, in each CPU's statement, as the header's first
    // byte, the low byte of `e_machine`, and its last byte (where any value leaves a valid
    // header, so the value shows): digits, the bytes either side of them, a backslash, a
    // quote, and bytes with the high bit set.
    const ALPHABET: &[u8] = b"0134789/:\\'a\x00\xb0\xb7\xff";
    let base = fat();
    let statements = statement_bodies(&base);
    assert_eq!(statements.len(), 2, "the fat fixture has two statements");
    let mut n = 0;
    for &body in &statements {
        // The fixture spells every byte as a backslash and three digits.
        for byte in [0, 18, 63] {
            let at = body + 4 * byte;
            assert_eq!(base[at], b'\\');
            for &a in ALPHABET {
                for &b in ALPHABET {
                    for &c in ALPHABET {
                        let mut f = base.clone();
                        f[at + 1..at + 4].copy_from_slice(&[a, b, c]);
                        agree(&f, &format!("escape \\{:?} at byte {byte}", [a, b, c]));
                        n += 1;
                    }
                }
            }
        }
    }
    assert_eq!(n, 6 * ALPHABET.len().pow(3));
}

#[test]
fn headers_spelled_every_way() {
    // Real APEs spell headers compactly (`\177ELF\2\1\1\11\0...`): literal bytes and escapes
    // of one to three digits, so each kind of escape starts at every offset of the words the
    // decoder loads. Each round spells one statement's header anew, byte by byte, and sometimes
    // ends the file inside it or just after it (decoding stops where fewer than four bytes
    // remain).
    let base = fat();
    let bodies = statement_bodies(&base);
    let mut rng = Rng(0x5eed_0005);
    for round in 0..3000 {
        let body = bodies[rng.below(bodies.len())];
        // The fixture spells every byte as a backslash and three digits.
        let header: Vec<u8> = base[body..body + 256]
            .chunks(4)
            .map(|e| {
                e[1..]
                    .iter()
                    .fold(0u8, |v, d| v.wrapping_mul(8) + (d - b'0'))
            })
            .collect();
        // Fields nobody checks (e_shoff to e_ehsize, e_shentsize to e_shstrndx) take any value,
        // so the header's last bytes may be spelled as they come.
        let mut header = header;
        for i in (40..54).chain(58..64) {
            if rng.below(2) == 0 {
                header[i] = rng.next() as u8;
            }
        }
        let mut spelled = Vec::new();
        for &v in &header {
            let digits = match rng.below(4) {
                0 if v.is_ascii_graphic() && v != b'\\' && v != b'\'' => 0,
                1 if v < 8 => 1,
                2 if v < 64 => 2,
                _ => 3,
            };
            if digits == 0 {
                spelled.push(v);
            } else {
                spelled.push(b'\\');
                spelled.extend(format!("{v:03o}").bytes().skip(3 - digits));
            }
        }
        let mut f = base[..body].to_vec();
        f.extend(&spelled);
        f.extend(&base[body + 256..]);
        match rng.below(4) {
            0 => f.truncate(body + rng.below(spelled.len() + 8)),
            // Its last bytes among the window's last few, where the end rule decides.
            1 => f.truncate(body + spelled.len() + rng.below(8)),
            _ => {}
        }
        agree(
            &f,
            &format!(
                "round {round}: header spelled {:?}",
                String::from_utf8_lossy(&spelled)
            ),
        );
    }
}

/// The verdicts on `f` where it starts at each offset from an aligned address are the reference
/// model's: the scans load aligned words where they can, and bytes around them.
fn agree_at_every_alignment(f: &[u8], what: &str) {
    let mut buf = vec![0u8; f.len() + 16];
    let aligned = buf.as_ptr().align_offset(8);
    for m in [X86, ARM] {
        let want = apekit::reference::select(f, m, PAGE).result;
        for k in 0..8 {
            let at = aligned + k;
            buf[at..at + f.len()].copy_from_slice(f);
            let got = verdict(&buf[at..at + f.len()], m, PAGE);
            assert_eq!(got, want, "{what}: machine {m}, {k} bytes past alignment");
        }
    }
}

#[test]
fn alignment_does_not_matter() {
    let mut files = vec![("fat".to_string(), fat())];
    let mut ent = std::fs::read(real_dir().join("ent.com")).unwrap();
    ent.truncate(64 * 1024);
    files.push(("ent.com".into(), ent));
    for dir in ["fix", "corpus", "bench"] {
        for e in std::fs::read_dir(fixtures_dir().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ape") {
                let mut f = std::fs::read(&p).unwrap();
                f.truncate(64 * 1024);
                files.push((p.display().to_string(), f));
            }
        }
    }
    let mut rng = Rng(0x5eed_0004);
    for (name, f) in &files {
        agree_at_every_alignment(f, name);
        for r in 0..50 {
            let mut g = f.clone();
            mutate(&mut rng, &mut g);
            agree_at_every_alignment(&g, &format!("{name} round {r}"));
        }
    }
}
