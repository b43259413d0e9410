// SPDX-License-Identifier: GPL-2.0

//! The fixtures and the malformed corpus (`make fixtures`), each case as its manifest says.

use super::common::{check_case, refused, LogMark, ARCH};
use super::{test, Test};
use std::fs;

/// One manifest line.
#[derive(Clone)]
pub struct Case {
    /// The directory of the case's file, `NAME.ape`.
    pub dir: &'static str,
    pub name: String,
    /// How its exec ends on this CPU: `run`, a signal name, an errno name (`elf:` before it
    /// when binfmt_elf refused the header binfmt_ape handed over).
    pub expect: String,
    /// How it ends with binfmt_misc's rules for every APE magic: `same`, `sentinel` (a rule
    /// took it), or an errno name.
    pub with_misc: String,
}

/// The cases of the manifest in `dir`, with what is expected on this CPU.
pub fn manifest(dir: &'static str) -> Vec<Case> {
    let text = fs::read_to_string(format!("{dir}/MANIFEST.tsv")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let expect = if ARCH == "x86_64" {
                f.get(1)?
            } else {
                f.get(2)?
            };
            Some(Case {
                dir,
                name: f.first()?.to_string(),
                expect: expect.to_string(),
                with_misc: f.get(3)?.to_string(),
            })
        })
        .collect()
}

/// The guest has the fixtures and the corpus, each with its manifest.
pub fn manifests_present(fix: &[Case], corpus: &[Case]) -> Test {
    let (f, c) = (fix.len(), corpus.len());
    test("manifests_present", move || {
        if f >= 12 && c >= 40 {
            Ok(())
        } else {
            Err(format!("{f} fixtures, {c} corpus cases"))
        }
    })
}

/// A refusal is logged, naming the file refused.
pub fn refusals_logged_by_name() -> Test {
    test("refusals_logged_by_name", || {
        let want = "binfmt_ape: magic-only.ape: not run natively: no-printf";
        LogMark::expect(want, || refused("/ape/corpus/magic-only.ape"))
    })
}

/// The fixtures and the malformed corpus, each case as its manifest says.
pub fn cases(fix: &[Case], corpus: &[Case]) -> Vec<Test> {
    fix.iter()
        .chain(corpus)
        .cloned()
        .map(|c| {
            let area = if c.dir == "/ape/fix" {
                "fixture"
            } else {
                "corpus"
            };
            test(format!("{area}.{}", c.name), move || {
                check_case(&format!("{}/{}.ape", c.dir, c.name), &c.name, &c.expect)
            })
        })
        .collect()
}
