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

/// A verdict from the first bytes of the window alone (the kernel's first page) is the
/// verdict of the whole window, a complete prefix always has one, and a scan resumed where the
/// prefix left off reaches the whole window's verdict.
fn prefix_agrees(f: &[u8], m: u16, what: &str) {
    let full = apekit::select(f, m, PAGE).map(|s| s.statement);
    let window = f.len().min(apekit::ape::WINDOW);
    // The first page, a few cuts that fall inside statements, and the whole window.
    for n in [
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
