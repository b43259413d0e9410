// SPDX-License-Identifier: GPL-2.0
//! The decoder's named case table: every edge case with its expected verdict per CPU.

mod common;
use apekit::ape;
use apekit::elf::put64;
use common::*;

#[path = "../../../src/ape_test_cases.rs"]
mod cases;

fn raw_stmt(body: &[u8]) -> Vec<u8> {
    let mut s = b"printf '".to_vec();
    s.extend_from_slice(body);
    s.extend_from_slice(b"'\n");
    s
}

/// The named cases, which run in tree as the KUnit suite `binfmt_ape_decoder`, too.
#[test]
fn case_table() {
    let cases = cases::ALL;
    println!("1..{}", cases.len() * 2);
    let mut bad = Vec::new();
    for c in cases {
        let mut buf = vec![0; cases::LEN];
        let mut f = cases::File::new(&mut buf);
        (c.file)(&mut f);
        let Some(file) = f.contents() else {
            bad.push(format!(
                "{}: the file does not fit in {} bytes",
                c.name,
                cases::LEN
            ));
            continue;
        };
        for (m, want) in [(X86, c.x86), (ARM, c.arm)] {
            let got = cases::verdict(file, m);
            let decoder = verdict(file, m, PAGE).map(|(i, _)| i);
            let reference = apekit::reference::select(file, m, PAGE)
                .result
                .map(|(i, _)| i);
            if got != want || decoder != want || reference != want {
                bad.push(format!(
                    "{} on {m}: decoder {got:?} ({decoder:?} whole), reference {reference:?}, want {want:?}",
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

/// The cases' files are the synthetic APEs of the other host tests (`common::ape_with`).
#[test]
fn case_files_are_the_common_layout() {
    let mut buf = vec![0; cases::LEN];
    let mut f = cases::File::new(&mut buf);
    (cases::FAT_X86_64_FIRST.file)(&mut f);
    assert_eq!(f.contents(), Some(&fat()[..]));
    assert_eq!(cases::X86_PHOFF as u64, X86_PHOFF);
    assert_eq!(cases::ARM_PHOFF as u64, ARM_PHOFF);
    assert_eq!(cases::PAGE, PAGE);
}

/// Case names are unique, and each is its KUnit test's name with `-` for `_`.
#[test]
fn case_names_are_unique() {
    let mut names: Vec<_> = cases::ALL.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases::ALL.len());
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
