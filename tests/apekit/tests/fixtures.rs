// SPDX-License-Identifier: GPL-2.0
//! mkape's fixtures and the malformed corpus (built by scripts/fixtures.sh).

mod common;
use apekit::elf::{eh, get64, put64};
use common::*;
use std::path::Path;
use std::process::Command;

fn payload(dir: &Path, arch: &str, kind: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("payload/{arch}/payload-{kind}"))).unwrap()
}

#[test]
fn every_fixture_decodes_to_its_input_header() {
    let dir = fixtures_dir();
    let mut n = 0;
    for kind in ["exec", "dyn"] {
        for magic in ["mz", "jartsr", "debug"] {
            for order in ["xa", "ax"] {
                let f = std::fs::read(dir.join(format!("fix/{kind}-{magic}-{order}.ape"))).unwrap();
                for (m, arch) in [(X86, "x86_64"), (ARM, "aarch64")] {
                    let got = verdict(&f, m, PAGE);
                    assert_eq!(got, apekit::reference::select(&f, m, PAGE).result);
                    if magic == "debug" {
                        assert_eq!(got, Err("debug-magic"));
                        continue;
                    }
                    let (idx, h) =
                        got.unwrap_or_else(|e| panic!("{kind}-{magic}-{order} {arch}: {e}"));
                    assert_eq!(
                        idx,
                        usize::from((order == "ax") == (m == X86)),
                        "{kind}-{magic}-{order} {arch} index"
                    );
                    let input = payload(&dir, arch, kind);
                    let base = get64(&h, eh::PHOFF) - get64(&input, eh::PHOFF);
                    assert_eq!(base % 0x10000, 0, "image base is 64 KiB aligned");
                    let mut unrelocated = h;
                    put64(&mut unrelocated, eh::PHOFF, get64(&input, eh::PHOFF));
                    let shoff = get64(&input, eh::SHOFF);
                    if shoff != 0 {
                        put64(&mut unrelocated, eh::SHOFF, shoff);
                    }
                    assert_eq!(
                        &unrelocated[..],
                        &input[..64],
                        "{kind}-{magic}-{order} {arch}"
                    );
                    assert_eq!(
                        &f[base as usize..base as usize + 64],
                        &h[..],
                        "embedded copy"
                    );
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 16);
}

#[test]
fn shell_runs_the_prologue_and_exits_126() {
    let dir = fixtures_dir();
    let out = Command::new("sh")
        .arg(dir.join("fix/exec-mz-xa.ape"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mkape: run by the shell"));
}

#[test]
fn corpus_verdicts_match_the_manifest() {
    let dir = fixtures_dir();
    let manifest = std::fs::read_to_string(dir.join("corpus/MANIFEST.tsv")).unwrap();
    let mut n = 0;
    let mut bad = Vec::new();
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        let file = std::fs::read(dir.join(format!("corpus/{}.ape", f[0]))).unwrap();
        for (m, want) in [(X86, f[1]), (ARM, f[2])] {
            let got = verdict(&file, m, PAGE);
            // binfmt_ape declines exactly the ENOEXEC cases; the rest reach binfmt_elf.
            if got.is_err() != (want == "ENOEXEC") {
                bad.push(format!("{} on {m}: decoder {got:?}, manifest {want}", f[0]));
            }
            if got != apekit::reference::select(&file, m, PAGE).result {
                bad.push(format!("{} on {m}: decoder and reference differ", f[0]));
            }
        }
        n += 1;
    }
    assert!(n >= 40, "only {n} corpus cases");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
