// SPDX-License-Identifier: GPL-2.0
//! The decoder's named case table: every edge case with its expected verdict per CPU.

mod common;
use apekit::elf::{self, eh, put16, put64};
use common::*;

/// `Ok(index)` of the selected statement, or the refusal's name.
type Want = Result<usize, &'static str>;

struct Case {
    name: &'static str,
    file: Vec<u8>,
    x86: Want,
    arm: Want,
}

fn with_hdr(f: impl Fn(&mut [u8; 64])) -> Vec<u8> {
    let (mut x, mut a) = (hdr(X86), hdr(ARM));
    f(&mut x);
    f(&mut a);
    ape_with(b"MZqFpD='", &[stmt(&x), stmt(&a)])
}

fn raw_stmt(body: &[u8]) -> Vec<u8> {
    let mut s = b"printf '".to_vec();
    s.extend_from_slice(body);
    s.extend_from_slice(b"'\n");
    s
}

/// The x86 header spelled with a custom escape for each byte.
fn spelled(esc: impl Fn(u8) -> String) -> Vec<u8> {
    let body: String = hdr(X86).iter().map(|&b| esc(b)).collect();
    raw_stmt(body.as_bytes())
}

fn cases() -> Vec<Case> {
    let ok0 = Ok(0);
    let ok1 = Ok(1);
    let mut v = vec![
        Case {
            name: "fat-x86_64-first",
            file: fat(),
            x86: ok0,
            arm: ok1,
        },
        Case {
            name: "fat-aarch64-first",
            file: ape_with(b"MZqFpD='", &[stmt(&hdr(ARM)), stmt(&hdr(X86))]),
            x86: ok1,
            arm: ok0,
        },
        Case {
            name: "jartsr",
            file: ape_with(b"jartsr='", &[stmt(&hdr(X86)), stmt(&hdr(ARM))]),
            x86: ok0,
            arm: ok1,
        },
        Case {
            name: "debug-magic",
            file: ape_with(b"APEDBG='", &[stmt(&hdr(X86)), stmt(&hdr(ARM))]),
            x86: Err("debug-magic"),
            arm: Err("debug-magic"),
        },
        Case {
            name: "empty",
            file: vec![],
            x86: Err("not-ape"),
            arm: Err("not-ape"),
        },
        Case {
            name: "magic-7-bytes",
            file: b"MZqFpD=".to_vec(),
            x86: Err("not-ape"),
            arm: Err("not-ape"),
        },
        Case {
            name: "magic-only",
            file: b"MZqFpD='".to_vec(),
            x86: Err("no-printf"),
            arm: Err("no-printf"),
        },
        Case {
            name: "elf",
            file: hdr(X86).to_vec(),
            x86: Err("not-ape"),
            arm: Err("not-ape"),
        },
        Case {
            name: "exact-fit-header",
            file: ape_with(b"MZqFpD='", &[spelled(|b| format!("\\{b:o}"))]),
            x86: ok0,
            arm: Err("no-machine"),
        },
        Case {
            name: "one-byte-short",
            file: ape_with(b"MZqFpD='", &[raw_stmt(&stmt(&hdr(X86))[8..8 + 63 * 4])]),
            x86: Err("no-printf"),
            arm: Err("no-printf"),
        },
        Case {
            name: "quote-missing",
            file: {
                let mut s = stmt(&hdr(X86));
                s.truncate(s.len() - 2);
                ape_with(b"MZqFpD='", &[s])
            },
            x86: ok0,
            arm: Err("no-machine"),
        },
        Case {
            name: "escape-0-00-000",
            file: {
                let mut s = b"printf '".to_vec();
                for (i, &b) in hdr(X86).iter().enumerate() {
                    let e = match (b, i % 3) {
                        (0, 0) => "\\0".to_string(),
                        (0, 1) => "\\00".to_string(),
                        (0, _) => "\\000".to_string(),
                        _ => format!("\\{b:03o}"),
                    };
                    s.extend_from_slice(e.as_bytes());
                }
                s.extend_from_slice(b"'\n");
                ape_with(b"MZqFpD='", &[s])
            },
            x86: ok0,
            arm: Err("no-machine"),
        },
        Case {
            // \1234 is \123 then a literal '4': one byte too many, so the header shifts.
            name: "escape-1234-is-two-bytes",
            file: ape_with(
                b"MZqFpD='",
                &[raw_stmt(
                    format!(
                        "\\1234{}",
                        String::from_utf8(stmt(&hdr(X86))[8..8 + 64 * 4].to_vec()).unwrap()
                    )
                    .as_bytes(),
                )],
            ),
            x86: Err("no-printf"),
            arm: Err("no-printf"),
        },
        Case {
            name: "escape-8-is-literal",
            file: ape_with(b"MZqFpD='", &[raw_stmt(b"\\8\\177ELF")]),
            x86: Err("no-printf"),
            arm: Err("no-printf"),
        },
        Case {
            name: "escape-400-wraps",
            file: ape_with(
                b"MZqFpD='",
                &[spelled(|b| format!("\\{:o}", u16::from(b) + 256))],
            ),
            x86: ok0,
            arm: Err("no-machine"),
        },
        Case {
            name: "escape-510-is-0x48",
            file: {
                let mut h = hdr(X86);
                h[8] = 0x48;
                let body: String = h
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| {
                        if i == 8 {
                            "\\510".into()
                        } else {
                            format!("\\{b:03o}")
                        }
                    })
                    .collect();
                ape_with(b"MZqFpD='", &[raw_stmt(body.as_bytes())])
            },
            x86: ok0,
            arm: Err("no-machine"),
        },
        Case {
            name: "decoy-printf-first",
            // Indices count ELF statements only.
            file: ape_with(
                b"MZqFpD='",
                &[raw_stmt(b"hello\\n"), stmt(&hdr(X86)), stmt(&hdr(ARM))],
            ),
            x86: ok0,
            arm: ok1,
        },
        Case {
            name: "decoy-elf-magic-short",
            file: ape_with(b"MZqFpD='", &[raw_stmt(b"\\177ELF"), stmt(&hdr(ARM))]),
            x86: Err("no-machine"),
            arm: ok0,
        },
        Case {
            name: "class32",
            file: with_hdr(|h| h[eh::CLASS] = 1),
            x86: Err("class"),
            arm: Err("class"),
        },
        Case {
            name: "big-endian",
            file: with_hdr(|h| h[eh::DATA] = 2),
            x86: Err("data"),
            arm: Err("data"),
        },
        Case {
            name: "version-0",
            file: with_hdr(|h| h[eh::VERSION] = 0),
            x86: Err("version"),
            arm: Err("version"),
        },
        Case {
            name: "e_version-2",
            file: with_hdr(|h| apekit::elf::put32(h, eh::E_VERSION, 2)),
            x86: Err("version"),
            arm: Err("version"),
        },
        Case {
            name: "type-rel",
            file: with_hdr(|h| put16(h, eh::TYPE, 1)),
            x86: Err("type"),
            arm: Err("type"),
        },
        Case {
            name: "type-dyn",
            file: with_hdr(|h| put16(h, eh::TYPE, elf::ET_DYN)),
            x86: ok0,
            arm: ok1,
        },
        Case {
            name: "phentsize-55",
            file: with_hdr(|h| put16(h, eh::PHENTSIZE, 55)),
            x86: Err("phentsize"),
            arm: Err("phentsize"),
        },
        Case {
            name: "phnum-0",
            file: with_hdr(|h| put16(h, eh::PHNUM, 0)),
            x86: Err("phnum"),
            arm: Err("phnum"),
        },
        Case {
            name: "phnum-19",
            file: with_hdr(|h| put16(h, eh::PHNUM, 19)),
            x86: Err("phnum"),
            arm: Err("phnum"),
        },
        Case {
            name: "phnum-huge",
            file: with_hdr(|h| put16(h, eh::PHNUM, 0xffff)),
            x86: Err("phnum"),
            arm: Err("phnum"),
        },
        Case {
            name: "phoff-past-eof",
            file: with_hdr(|h| put64(h, eh::PHOFF, 1 << 20)),
            x86: Err("phoff"),
            arm: Err("phoff"),
        },
        Case {
            name: "phoff-max",
            file: with_hdr(|h| put64(h, eh::PHOFF, u64::MAX)),
            x86: Err("phoff"),
            arm: Err("phoff"),
        },
        Case {
            name: "entry-outside",
            file: with_hdr(|h| put64(h, eh::ENTRY, 0x10)),
            x86: Err("entry"),
            arm: Err("entry"),
        },
        Case {
            name: "both-for-x86_64",
            file: ape_with(b"MZqFpD='", &[stmt(&hdr(X86)), stmt(&hdr(X86))]),
            x86: ok0,
            arm: Err("no-machine"),
        },
        Case {
            name: "skip-unreadable-then-valid",
            file: {
                let mut bad = hdr(X86);
                put64(&mut bad, eh::PHOFF, 1 << 30);
                ape_with(b"MZqFpD='", &[stmt(&bad), stmt(&hdr(X86))])
            },
            x86: ok1,
            arm: Err("no-machine"),
        },
        Case {
            name: "fatal-stops-scan",
            file: {
                let mut bad = hdr(X86);
                put16(&mut bad, eh::PHENTSIZE, 57);
                ape_with(b"MZqFpD='", &[stmt(&bad), stmt(&hdr(X86))])
            },
            x86: Err("phentsize"),
            arm: Err("no-machine"),
        },
    ];
    // Found by the differential fuzzer: with both, the first in table order names the reason.
    let typed = |types: [u32; 2]| {
        let mut f = with_hdr(|h| put16(h, eh::PHNUM, 3));
        for t in [X86_PHOFF, ARM_PHOFF] {
            for (k, ty) in types.iter().enumerate() {
                let p = t as usize + 56 * (k + 1);
                f[p..p + 4].copy_from_slice(&ty.to_le_bytes());
            }
        }
        f
    };
    v.push(Case {
        name: "dynamic-then-interp",
        file: typed([2, 3]),
        x86: Err("dynamic"),
        arm: Err("dynamic"),
    });
    v.push(Case {
        name: "interp-then-dynamic",
        file: typed([3, 2]),
        x86: Err("interp"),
        arm: Err("interp"),
    });
    // Window-edge cases: a statement at a precise offset; the tables stay past the window.
    let at = |off: usize, s: Vec<u8>| {
        let mut f = b"MZqFpD='\n'\n".to_vec();
        f.resize(off, b'#');
        f.extend_from_slice(&s);
        assert!(f.len() <= X86_PHOFF as usize);
        f.resize(X86_PHOFF as usize, b'\n');
        f.extend_from_slice(&fat()[X86_PHOFF as usize..]);
        f
    };
    let s = stmt(&hdr(X86));
    let n = s.len();
    // Decoding needs four bytes in view, so the last escape (of 64) may start at 8188.
    let last_escape_at = |e: usize| e - 8 - 63 * 4;
    v.push(Case {
        name: "quote-at-8191",
        file: at(8191 - (n - 2), s.clone()),
        x86: ok0,
        arm: Err("no-machine"),
    });
    v.push(Case {
        name: "last-escape-at-8188",
        file: at(last_escape_at(8188), s.clone()),
        x86: ok0,
        arm: Err("no-machine"),
    });
    v.push(Case {
        name: "last-escape-at-8189",
        file: at(last_escape_at(8189), s.clone()),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    });
    v.push(Case {
        name: "printf-at-8184-empty-body",
        file: at(8184, s.clone()),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    });
    v.push(Case {
        name: "printf-at-8185-not-found",
        file: at(8185, s.clone()),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    });
    // The decoder reads another CPU's header only as far as its first 24 bytes, and decodes
    // the rest only when the verdict depends on it: whether it is a whole header at all.
    let short = |m: u16| raw_stmt(&stmt(&hdr(m))[8..8 + 63 * 4]);
    let other = |m: u16| {
        let mut h = hdr(m);
        put16(&mut h, 18, 0x1234);
        stmt(&h)
    };
    v.push(Case {
        name: "short-other-then-nothing",
        file: ape_with(b"MZqFpD='", &[short(X86), short(ARM)]),
        x86: Err("no-printf"),
        arm: Err("no-printf"),
    });
    v.push(Case {
        name: "short-other-then-whole-other",
        file: ape_with(b"MZqFpD='", &[short(X86), other(X86), short(ARM)]),
        x86: Err("no-machine"),
        arm: Err("no-machine"),
    });
    v.push(Case {
        name: "whole-other-then-short-other",
        file: ape_with(b"MZqFpD='", &[other(X86), short(X86), short(ARM)]),
        x86: Err("no-machine"),
        arm: Err("no-machine"),
    });
    v.push(Case {
        name: "short-other-then-bad-class",
        file: ape_with(
            b"MZqFpD='",
            &[short(X86), {
                let mut h = hdr(X86);
                h[4] = 1;
                stmt(&h)
            }],
        ),
        x86: Err("class"),
        arm: Err("class"),
    });
    v.push(Case {
        name: "bad-class-twice-then-short",
        file: {
            let mut h = hdr(X86);
            h[4] = 1;
            ape_with(b"MZqFpD='", &[stmt(&h), stmt(&h), short(ARM), short(X86)])
        },
        x86: Err("class"),
        arm: Err("class"),
    });
    v.push(Case {
        name: "many-others-then-fat",
        file: {
            let mut s: Vec<Vec<u8>> = (0..12).map(|_| other(X86)).collect();
            s.push(stmt(&hdr(X86)));
            s.push(stmt(&hdr(ARM)));
            ape_with(b"MZqFpD='", &s)
        },
        x86: Ok(12),
        arm: Ok(13),
    });
    v
}

#[test]
fn case_table() {
    let cases = cases();
    println!("1..{}", cases.len() * 2);
    let mut bad = Vec::new();
    for c in &cases {
        for (m, want) in [(X86, c.x86), (ARM, c.arm)] {
            let got = verdict(&c.file, m, PAGE).map(|(i, _)| i);
            let reference = apekit::reference::select(&c.file, m, PAGE)
                .result
                .map(|(i, _)| i);
            if got != want || reference != want {
                bad.push(format!(
                    "{} on {m}: decoder {got:?}, reference {reference:?}, want {want:?}",
                    c.name
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn selected_header_is_the_decoded_one() {
    let f = fat();
    for m in [X86, ARM] {
        let (_, h) = verdict(&f, m, PAGE).unwrap();
        assert_eq!(h, hdr(m));
    }
}

#[test]
fn statements_lists_every_elf_statement() {
    let f = ape_with(
        b"MZqFpD='",
        &[raw_stmt(b"x"), stmt(&hdr(X86)), stmt(&hdr(ARM))],
    );
    let s: Vec<_> = apekit::ape::statements(&f).collect();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].ehdr.e_machine(), X86);
    assert_eq!(&f[s[1].offset..s[1].offset + 8], b"printf '");
}

#[test]
fn page_size_changes_congruence() {
    // A PT_LOAD congruent modulo 4 KiB but not 64 KiB.
    let mut f = fat();
    let p = X86_PHOFF as usize;
    put64(&mut f[p..p + 56], 8, 0x1000);
    assert!(verdict(&f, X86, 4096).is_ok());
    assert_eq!(verdict(&f, X86, 65536), Err("align"));
    assert_eq!(
        apekit::reference::select(&f, X86, 65536)
            .result
            .map(|r| r.0),
        Err("align")
    );
}

#[test]
fn an_earlier_table_rules_its_statement_out() {
    // Two x86_64 statements: the first names a table with PT_INTERP (loader.c tries the next
    // statement), so the second is chosen.
    let mut first = hdr(X86);
    first[32..40].copy_from_slice(&ARM_PHOFF.to_le_bytes());
    let mut f = ape_with(b"MZqFpD='", &[stmt(&first), stmt(&hdr(X86))]);
    let p = ARM_PHOFF as usize;
    f[p..p + 4].copy_from_slice(&3u32.to_le_bytes());
    let s = apekit::select(&f, X86, PAGE).unwrap();
    assert_eq!(s.index, 1);
    // The same file without the PT_INTERP chooses the first.
    f[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
    let s = apekit::select(&f, X86, PAGE).unwrap();
    assert_eq!(s.index, 0);
}

/// The reference model's list of reasons that move on to the next statement and
/// `ape::Field::skips` agree: one list each, held together here.
#[test]
fn skip_lists_agree() {
    use apekit::{ape::Field, reference::SKIP};
    // Fails to build when a field is added, until it is added here and to `Field::ALL`.
    let listed = |f: Field| match f {
        Field::Class
        | Field::Data
        | Field::Version
        | Field::Type
        | Field::Machine
        | Field::Phentsize
        | Field::Phnum
        | Field::Phoff
        | Field::Interp
        | Field::Dynamic
        | Field::Filesz
        | Field::Align
        | Field::Overflow
        | Field::Entry => 14,
    };
    assert_eq!(Field::ALL.len(), listed(Field::Class));
    for f in Field::ALL {
        assert_eq!(f.skips(), SKIP.contains(&f.name()), "{f:?}");
    }
    for name in SKIP {
        assert!(Field::ALL.iter().any(|f| f.name() == *name), "{name}");
    }
}
