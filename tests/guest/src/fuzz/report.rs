// SPDX-License-Identifier: GPL-2.0

//! What the guest fuzzer reports: a disagreement (or a kernel report) with its file, for the
//! host to save, and the run's figures.

use super::oracle::{Observed, Prediction};
use super::{Item, Options};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a run saw.
#[derive(Default)]
pub struct Stats {
    pub execs: u64,
    pub ext2: u64,
    pub cold: u64,
    pub agree: u64,
    pub disagree: u64,
    /// Files apeinfo gave no verdict for.
    pub unpredicted: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub predicted: BTreeMap<String, u64>,
    pub reports: Vec<String>,
    pub racy: u64,
    pub racy_ext2: u64,
    pub racy_outcomes: BTreeMap<String, u64>,
    pub racy_writes: u64,
    pub racy_refused: u64,
    pub racy_bad: Vec<String>,
    pub oracle_time: Duration,
    /// Where the oracle's time went: making and writing files and apeinfo, the execs (clone to
    /// reaped), those of them that ran a program.
    pub spent: [Duration; 3],
    pub racy_time: Duration,
}

/// Prints a disagreement: the seed, the exec, what was predicted and seen, the file's window
/// as hex and the file in base64 for the host to save.
pub fn show(
    o: &Options,
    it: &Item,
    pred: &Result<Prediction, String>,
    seen: &Observed,
    what: &str,
    why: &str,
) {
    let pred = match pred {
        Ok(p) => p.to_string(),
        Err(e) => e.clone(),
    };
    println!(
        "# fuzz: {what} seed {:#018x} exec {} ({}{}): {why}",
        o.seed,
        it.n,
        it.path,
        if it.ext2 { ", ext2, cold" } else { "" }
    );
    println!("#   from {} by {}", it.from, it.how.join(", "));
    println!(
        "#   apeinfo: {pred}; exec: {}, {}; logged {:?}; auxv {:?}",
        seen.ended,
        seen.delta.describe(),
        seen.logged,
        seen.auxv
    );
    println!(
        "#   replay: ape-runner fuzz --seed {:#x} --from {} --execs 1 --racy 0 (make fuzz-guest FUZZ_SEED={:#x} FUZZ_FROM={} FUZZ_EXECS=1)",
        o.seed, it.n, o.seed, it.n
    );
    println!(
        "#   {} bytes; the first {} as hex:",
        it.bytes.len(),
        it.bytes.len().min(8192)
    );
    for (i, c) in it.bytes.chunks(32).take(256).enumerate() {
        let h: String = c.iter().map(|b| format!("{b:02x}")).collect();
        println!("#   {:04x}: {h}", i * 32);
    }
    dump(it);
}

/// The whole file in base64, between markers the host script looks for.
pub fn dump(it: &Item) {
    println!("fuzz-file-begin {} {}", it.n, it.bytes.len());
    for c in it.bytes.chunks(3 * 256) {
        println!("{}", base64(c));
    }
    println!("fuzz-file-end");
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let v = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn histogram(h: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = h.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The run's figures.
pub fn figures(o: &Options, st: &Stats) {
    let rate = |n: u64, t: Duration| n as f64 / t.as_secs_f64().max(0.001);
    println!(
        "# fuzz: seed {:#018x}; execs {} in {:.0} s ({:.1} execs/s), {} from ext2 ({} verified cold)",
        o.seed,
        st.execs,
        st.oracle_time.as_secs_f64(),
        rate(st.execs, st.oracle_time),
        st.ext2,
        st.cold
    );
    let s = st.spent.map(|d| d.as_secs_f64());
    println!(
        "# fuzz: time: {:.0} s execs ({:.0} s of them ran a program), {:.0} s making files and apeinfo, {:.0} s counters, log and checks",
        s[1],
        s[2],
        s[0],
        (st.oracle_time.as_secs_f64() - s[0] - s[1]).max(0.0)
    );
    println!("# fuzz: outcomes: {}", histogram(&st.outcomes));
    println!("# fuzz: predicted: {}", histogram(&st.predicted));
    println!(
        "# fuzz: oracle: {} agreements, {} disagreements, {} files apeinfo did not judge",
        st.agree, st.disagree, st.unpredicted
    );
    println!(
        "# fuzz: racy execs {} in {:.0} s ({:.1} execs/s), {} on ext2; {} rewrites, {} of them failed (ETXTBSY mostly); outcomes: {}",
        st.racy,
        st.racy_time.as_secs_f64(),
        rate(st.racy, st.racy_time),
        st.racy_ext2,
        st.racy_writes,
        st.racy_refused,
        histogram(&st.racy_outcomes)
    );
    println!("# fuzz: kernel reports {}", st.reports.len());
}
