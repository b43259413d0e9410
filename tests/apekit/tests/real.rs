// SPDX-License-Identifier: GPL-2.0
//! Real APEs from Cosmopolitan's toolchain (cosmo-ent 1.4.4, fetched by scripts/fetch-apes.sh).

mod common;
use common::*;
use std::process::Command;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(real_dir().join(name)).unwrap()
}

#[test]
fn ent_com_headers_match_assimilated_elfs() {
    let com = read("ent.com");
    for (m, arch, idx) in [(X86, "x86_64", 0), (ARM, "aarch64", 1)] {
        let elf = read(&format!("{arch}/ent.elf"));
        let (i, h) = verdict(&com, m, PAGE).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(i, idx, "{arch} selects header {idx}");
        for (k, (a, b)) in h.iter().zip(&elf[..64]).enumerate() {
            // assimilate rewrites EI_OSABI from FreeBSD (9) to SYSV (0); the kernel ignores it.
            if k == 7 {
                assert_eq!((*a, *b), (9, 0), "{arch} EI_OSABI");
            } else {
                assert_eq!(a, b, "{arch} header byte {k}");
            }
        }
    }
}

#[test]
fn real_apes_agree_with_reference_for_every_page_size() {
    for name in ["ent.com", "pledge"] {
        let f = read(name);
        for m in [X86, ARM] {
            for page in [4096, 16384, 65536] {
                let got = verdict(&f, m, page);
                assert_eq!(
                    got,
                    apekit::reference::select(&f, m, page).result,
                    "{name} {m} {page}"
                );
                // cosmo-ent's aarch64 segments are aligned to 16 KiB (p_align 0x4000), so no
                // loader can map them with 64 KiB pages; binfmt_ape refuses them up front.
                if m == ARM && page == 65536 {
                    assert_eq!(got.map(|_| ()), Err("align"), "{name} with 64 KiB pages");
                } else {
                    assert!(got.is_ok(), "{name} on {m} with {page}-byte pages: {got:?}");
                }
            }
        }
    }
}

#[test]
fn assimilated_elf_is_not_an_ape() {
    assert_eq!(verdict(&read("x86_64/ent.elf"), X86, PAGE), Err("not-ape"));
}

#[test]
fn apeinfo_json_selects_and_spells_the_headers() {
    let dir = real_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_apeinfo"))
        .args(["--json", "--arch", "x86_64"])
        .arg(dir.join("ent.com"))
        .output()
        .unwrap();
    assert!(out.status.success(), "apeinfo exit {:?}", out.status);
    let j = String::from_utf8(out.stdout).unwrap();
    assert!(
        j.contains("\"selected\":{\"x86_64\":0,\"aarch64\":1}"),
        "{j}"
    );
    assert!(j.contains("\"magic\":\"MZqFpD='\""), "{j}");
    assert!(
        j.contains("\"error\":{\"x86_64\":null,\"aarch64\":null}"),
        "{j}"
    );
    for (arch, idx) in [("x86_64", 0), ("aarch64", 1)] {
        let mut want = read(&format!("{arch}/ent.elf"))[..64].to_vec();
        want[7] = 9;
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert!(j.contains(&format!("\"index\":{idx},")), "{j}");
        assert!(
            j.contains(&format!("\"ehdr_hex\":\"{hex}\"")),
            "{arch}: {j}"
        );
    }
}

#[test]
fn apeinfo_exit_status_follows_the_verdict() {
    let dir = real_dir();
    let run = |args: &[&str], file: &str| {
        Command::new(env!("CARGO_BIN_EXE_apeinfo"))
            .args(args)
            .arg(dir.join(file))
            .status()
            .unwrap()
    };
    // --arch and --page-size judge the file alone, for such a machine with binfmt_ape loaded:
    // 0 runs natively (binfmt_ape, or binfmt_elf for a plain ELF), 2 will not run (the APE
    // loader a shell would start refuses it too), 3 bad usage or an unreadable file.
    assert_eq!(run(&["--arch", "aarch64"], "ent.com").code(), Some(0));
    assert_eq!(run(&["--arch", "x86_64"], "x86_64/ent.elf").code(), Some(0));
    let pages = ["--arch", "aarch64", "--page-size", "65536"];
    assert_eq!(run(&pages, "ent.com").code(), Some(2));
    assert_eq!(run(&["--arch", "x86_64"], "no-such-file").code(), Some(3));
    assert_eq!(run(&["--arch", "sparc"], "ent.com").code(), Some(3));
}

#[test]
fn apeinfo_json_verdict_for_a_given_machine() {
    let dir = real_dir();
    let json = |args: &[&str], file: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_apeinfo"))
            .arg("--json")
            .args(args)
            .arg(dir.join(file))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let j = json(&["--arch", "aarch64"], "ent.com");
    assert!(j.starts_with("{\"schema\":1,"), "{j}");
    assert!(j.contains("\"machine\":null"), "{j}");
    assert!(
        j.contains("\"verdict\":{\"live\":false,\"status\":\"native\",\"exit\":0,\"execve\":\"runs\",\"handler\":\"binfmt_ape\""),
        "{j}"
    );
    let j = json(&["--arch", "aarch64", "--page-size", "65536"], "ent.com");
    assert!(
        j.contains("\"error\":{\"x86_64\":null,\"aarch64\":\"align\"}"),
        "{j}"
    );
    assert!(j.contains("\"execve\":\"ENOEXEC\""), "{j}");
    assert!(j.contains("\"declined\":\"align\""), "{j}");
    assert!(j.contains("\"fallback\":\"shell\""), "{j}");
    assert!(j.contains("\"id\":\"loader-refuses\""), "{j}");
    assert!(j.contains("ask its author for a 64K-aligned build"), "{j}");
    let j = json(&["--arch", "x86_64"], "x86_64/ent.elf");
    assert!(j.contains("\"handler\":\"binfmt_elf\""), "{j}");
    assert!(
        j.contains("\"kind\":\"elf\",\"elf_machine\":\"x86_64\""),
        "{j}"
    );
}
