// SPDX-License-Identifier: GPL-2.0

//! The guest fuzzer (`make fuzz-guest`, scripts/fuzz-guest.sh): hostile files through the real
//! exec path, with `apeinfo` as the oracle, reported in KTAP.
//!
//! `ape-runner fuzz [SECONDS] [--execs N] [--racy N] [--seed S] [--from N] [--timeout-ms MS]
//! [--ext2-every N] [--batch N] [--trail] [--dump] [--apeinfo PATH]`
//!
//! Each exec `n` mutates a seed file (the real APEs, the fixtures, every corpus case;
//! `mutate.rs`), all of it chosen by a generator seeded from the run's seed and `n`, so that
//! `--seed S --from n --execs 1` makes the same file again. The files of a batch are written
//! to tmpfs (every Nth to ext2 on a loop device, its pages dropped before the exec: read cold)
//! and apeinfo predicts each (`oracle.rs`). Then each is exec'd in an unprivileged child with
//! a time limit (`child.rs`) and the outcome, the module's counters and its log must agree
//! with the prediction. A disagreement prints the seed, the exec, the first 8 KiB as hex, and
//! the whole file in base64 between `fuzz-file-begin NAME SIZE` and `fuzz-file-end`, which the
//! host saves under build/fuzz-guest/. Then the racy phase (`racy.rs`), the kernel log
//! (reports since the start: BUG, WARNING, KASAN, lockdep, leaks, "Unpatched") and kmemleak.
//! `--trail` prints `fuzz-exec N` before each exec (the debug kernel panics on a report, and
//! the last line names the file); `--dump` prints each file before its exec.
//!
//! With SECONDS (default 60), 85% of the time goes to the oracle's execs and the rest to the
//! racy phase; with `--execs N`, N oracle execs and `--racy` (default N/10) racy ones.

mod child;
mod kernel;
mod mutate;
mod oracle;
mod racy;
mod report;

use crate::sys::{self, Kmsg};
use child::Ended;
use kernel::{CounterFiles, Ext2};
use mutate::{Rng, Seed};
use oracle::{Observed, Prediction};
use report::{dump, figures, show, Stats};
use std::fs;
use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
const ARCH: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
const ARCH: &str = "aarch64";
const DIR: &str = "/tmp/fuzz";
/// Disagreements printed in full (the rest are counted).
const SHOWN: u64 = 10;

struct Options {
    seconds: Option<u64>,
    execs: Option<u64>,
    racy: Option<u64>,
    seed: u64,
    from: u64,
    timeout: Duration,
    ext2_every: u64,
    batch: u64,
    trail: bool,
    dump: bool,
    /// The oracle (another build of it, to tell its bugs from the kernel's).
    apeinfo: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            seconds: None,
            execs: None,
            racy: None,
            seed: random_seed(),
            from: 0,
            timeout: Duration::from_secs(3),
            ext2_every: 8,
            batch: 32,
            trail: false,
            dump: false,
            apeinfo: "/bin/apeinfo".into(),
        };
        let mut it = args.iter();
        let num = |v: Option<&String>, what: &str| -> Result<u64, String> {
            let v = v.ok_or(format!("{what} needs a number"))?;
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            }
            .map_err(|_| format!("{what}: not a number: {v}"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--execs" => o.execs = Some(num(it.next(), a)?),
                "--racy" => o.racy = Some(num(it.next(), a)?),
                "--seed" => o.seed = num(it.next(), a)?,
                "--from" => o.from = num(it.next(), a)?,
                "--timeout-ms" => o.timeout = Duration::from_millis(num(it.next(), a)?),
                "--ext2-every" => o.ext2_every = num(it.next(), a)?,
                "--batch" => o.batch = num(it.next(), a)?.max(1),
                "--trail" => o.trail = true,
                "--dump" => o.dump = true,
                "--apeinfo" => o.apeinfo = it.next().ok_or("--apeinfo needs a path")?.clone(),
                s => o.seconds = Some(num(Some(&s.to_string()), "SECONDS")?),
            }
        }
        if o.seconds.is_none() && o.execs.is_none() {
            o.seconds = Some(60);
        }
        Ok(o)
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ =
        fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u64::from_le_bytes(b)
}

/// `ape-runner fuzz ...`: the exit status (0 when every test passed).
pub fn main(args: &[String]) -> i32 {
    let o = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ape-runner fuzz: {e}");
            return 2;
        }
    };
    child::become_reaper();
    let page = page_size();
    println!("KTAP version 1");
    println!(
        "# binfmt_ape guest fuzzer on {ARCH}, Linux {}, {} KiB pages: seed {:#018x}, from {}, {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        page / 1024,
        o.seed,
        o.from,
        match (o.seconds, o.execs) {
            (_, Some(n)) => format!("{n} execs"),
            (Some(s), None) => format!("{s} s"),
            _ => String::new(),
        }
    );
    println!("1..5");
    let mut failed = 0;
    let mut result = |n: u32, name: &str, r: Result<(), String>| match r {
        Ok(()) => println!("ok {n} fuzz.{name}"),
        Err(why) if why.starts_with("SKIP ") => println!("ok {n} fuzz.{name} # {why}"),
        Err(why) => {
            failed += 1;
            println!("not ok {n} fuzz.{name}");
            why.lines().for_each(|l| println!("# {l}"));
        }
    };
    let mut st = Stats::default();
    let setup = setup(page, &o.apeinfo);
    let (seeds, mut kmsg, leak, ext2) = match setup {
        Ok(s) => {
            result(1, "setup", Ok(()));
            s
        }
        Err(e) => {
            result(1, "setup", Err(e));
            for (n, t) in [
                (2, "oracle"),
                (3, "racy"),
                (4, "kernel_log_clean"),
                (5, "kmemleak_clean"),
            ] {
                result(n, t, Err("SKIP no setup".into()));
            }
            return 1;
        }
    };
    println!(
        "# fuzz: {} seeds; ext2 on a loop device: {}",
        seeds.len(),
        match &ext2 {
            Some(_) => format!("every {}th file", o.ext2_every),
            None => "not in this kernel".into(),
        }
    );
    let started = Instant::now();
    let oracle_end = o
        .seconds
        .map(|s| started + Duration::from_secs(s) * 85 / 100);
    let r = fuzz_oracle(
        &o,
        &seeds,
        page,
        ext2.as_ref(),
        &mut kmsg,
        oracle_end,
        &mut st,
    );
    result(2, "oracle", r);
    let racy_end = o.seconds.map(|s| started + Duration::from_secs(s));
    let racy_n = o.racy.unwrap_or(o.execs.map_or(u64::MAX, |n| n / 10));
    fuzz_racy(
        &o,
        &seeds,
        page,
        ext2.as_ref(),
        &mut kmsg,
        racy_end,
        racy_n,
        &mut st,
    );
    result(3, "racy", none_of(&st.racy_bad));
    drop(ext2);
    child::reap_all();
    st.reports
        .extend(kmsg.drain().into_iter().filter(|l| sys::is_report(l)));
    result(4, "kernel_log_clean", none_of(&st.reports));
    let leaks = match &leak {
        None => Err("SKIP no kmemleak in this kernel".to_string()),
        Some(k) => k.scan().and_then(|r| {
            if r.trim().is_empty() {
                Ok(())
            } else {
                st.reports.push("kmemleak: suspected leaks".into());
                Err(r.lines().take(60).collect::<Vec<_>>().join("\n"))
            }
        }),
    };
    result(5, "kmemleak_clean", leaks);
    figures(&o, &st);
    println!("# fuzz: {failed} failed");
    i32::from(failed != 0)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

type Setup = (Vec<Seed>, Kmsg, Option<kernel::Kmemleak>, Option<Ext2>);

/// Loads the module and the seeds, checks that apeinfo answers, and prepares the log, kmemleak
/// and the ext2 file system.
fn setup(page: usize, apeinfo: &str) -> Result<Setup, String> {
    // The log from before the module loads: loading it may report too ("Unpatched").
    let kmsg = Kmsg::open()?;
    kernel::load_module()?;
    let enabled = fs::read_to_string("/proc/sys/fs/binfmt_ape/enabled").unwrap_or_default();
    let handled = fs::read_to_string("/proc/sys/fs/binfmt_ape/handled").unwrap_or_default();
    if enabled.trim() != "1" || handled.trim().parse::<u64>().is_err() {
        return Err(format!(
            "binfmt_ape: enabled {enabled:?}, handled {handled:?}"
        ));
    }
    let mut paths = vec![
        "/ape/real/ent.com".to_string(),
        "/ape/real/pledge".to_string(),
    ];
    for dir in ["/ape/fix", "/ape/corpus"] {
        let m =
            fs::read_to_string(format!("{dir}/MANIFEST.tsv")).map_err(|e| format!("{dir}: {e}"))?;
        paths.extend(
            m.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.split('\t').next())
                .map(|n| format!("{dir}/{n}.ape")),
        );
    }
    let seeds = paths
        .iter()
        .map(|p| {
            let bytes = fs::read(p).map_err(|e| format!("{p}: {e}"))?;
            let name = p.trim_start_matches("/ape/").to_string();
            Ok(Seed { name, bytes })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if seeds.len() < 50 {
        return Err(format!("only {} seeds", seeds.len()));
    }
    // The oracle answers: the fat fixture runs everywhere.
    let fat = vec!["/ape/fix/exec-mz-xa.ape".to_string()];
    match oracle::predict(apeinfo, &fat, ARCH, page as u64).remove(0) {
        Ok(Prediction::Run(_)) => {}
        p => return Err(format!("apeinfo on {}: {p:?}, want a run", fat[0])),
    }
    fs::create_dir_all(DIR).map_err(|e| format!("{DIR}: {e}"))?;
    sys::sh("chmod", &["755", DIR])?;
    let leak = kernel::kmemleak();
    if let Some(k) = &leak {
        k.clear()?;
    }
    let ext2 = Ext2::mount(64)?;
    Ok((seeds, kmsg, leak, ext2))
}

/// One file of the run: exec `n`'s mutation of a seed.
struct Item {
    n: u64,
    path: String,
    name: String,
    bytes: Vec<u8>,
    from: String,
    how: Vec<String>,
    ext2: bool,
}

/// Makes exec `n`'s file.
fn make(o: &Options, seeds: &[Seed], page: usize, ext2: Option<&Ext2>, n: u64) -> Item {
    let mut rng = Rng::for_exec(o.seed, 1, n);
    let own = rng.below(seeds.len());
    let mut bytes = seeds[own].bytes.clone();
    // One file in 32 goes as it is.
    let how = if rng.one_in(32) {
        vec!["none".into()]
    } else {
        mutate::mutate(&mut bytes, seeds, &mut rng, page)
    };
    let on = ext2.filter(|_| o.ext2_every > 0 && n.is_multiple_of(o.ext2_every));
    let name = format!("{n}.ape");
    Item {
        n,
        path: format!("{}/{name}", on.map_or(DIR, |e| e.dir)),
        name,
        bytes,
        from: seeds[own].name.clone(),
        how,
        ext2: on.is_some(),
    }
}

fn done(o: &Options, end: Option<Instant>, count: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| count >= l)
        || end.is_some_and(|e| Instant::now() >= e) && o.execs.is_none()
}

/// A batch: files made and written, each with apeinfo's prediction.
type Batch = (Vec<Item>, Vec<Result<Prediction, String>>);

/// Makes, writes and predicts `count` files from exec `n` on.
fn prepare(
    o: &Options,
    seeds: &[Seed],
    page: usize,
    ext2: Option<&Ext2>,
    n: u64,
    count: u64,
) -> Result<Batch, String> {
    let items: Vec<Item> = (n..n + count)
        .map(|i| make(o, seeds, page, ext2, i))
        .collect();
    for it in &items {
        racy::write_file(&it.path, &it.bytes).map_err(|e| format!("{}: {e}", it.path))?;
    }
    let paths: Vec<String> = items.iter().map(|i| i.path.clone()).collect();
    let preds = oracle::predict(&o.apeinfo, &paths, ARCH, page as u64);
    Ok((items, preds))
}

/// The oracle's phase: batches of files, each predicted by apeinfo (one process a batch),
/// then exec'd and checked.
fn fuzz_oracle(
    o: &Options,
    seeds: &[Seed],
    page: usize,
    ext2: Option<&Ext2>,
    kmsg: &mut Kmsg,
    end: Option<Instant>,
    st: &mut Stats,
) -> Result<(), String> {
    let t0 = Instant::now();
    let counters = CounterFiles::open();
    let mut c = Checker {
        last: counters.now(),
        counters,
        first: Vec::new(),
        progress: t0,
    };
    let mut n = o.from;
    'run: while !done(o, end, st.execs, o.execs) {
        let count = o.execs.map_or(o.batch, |l| (l - st.execs).min(o.batch));
        let tb = Instant::now();
        let (items, preds) = prepare(o, seeds, page, ext2, n, count)?;
        // What the programs of the last batch left behind goes.
        child::reap_all();
        st.spent[0] += tb.elapsed();
        n += count;
        for (it, pred) in items.iter().zip(preds) {
            if done(o, end, st.execs, o.execs) {
                items.iter().for_each(|i| drop(fs::remove_file(&i.path)));
                break 'run;
            }
            c.one(o, it, pred, kmsg, st, t0);
            let _ = fs::remove_file(&it.path);
        }
    }
    st.oracle_time = t0.elapsed();
    if st.disagree + st.unpredicted == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} disagreements, {} files apeinfo did not judge, in {} execs; the first:\n{}",
            st.disagree,
            st.unpredicted,
            st.execs,
            c.first.join("\n")
        ))
    }
}

/// What the oracle's phase keeps from one exec to the next.
struct Checker {
    counters: CounterFiles,
    /// The counters after the last exec: nothing but an exec of an APE moves them (apeinfo
    /// is an ELF), so they are the next exec's "before".
    last: kernel::Counters,
    /// The first disagreements, for the KTAP diagnostic.
    first: Vec<String>,
    progress: Instant,
}

impl Checker {
    /// Execs one file and checks it against its prediction.
    fn one(
        &mut self,
        o: &Options,
        it: &Item,
        pred: Result<Prediction, String>,
        kmsg: &mut Kmsg,
        st: &mut Stats,
        t0: Instant,
    ) {
        if o.trail {
            println!("fuzz-exec {}", it.n);
        }
        if o.dump {
            dump(it);
        }
        if it.ext2 {
            st.ext2 += 1;
            st.cold += u64::from(kernel::evict(&it.path));
        }
        let te = Instant::now();
        let e = child::exec(&it.path, o.timeout);
        let spent = te.elapsed();
        st.spent[1] += spent;
        if e.auxv.is_some() {
            st.spent[2] += spent;
        }
        let now = self.counters.now();
        let delta = now.since(&self.last);
        self.last = now;
        let log = kmsg.drain();
        let logged: Vec<(String, String)> = log.iter().filter_map(|l| kernel::refusal(l)).collect();
        let reports: Vec<String> = log.into_iter().filter(|l| sys::is_report(l)).collect();
        st.execs += 1;
        let refused = e.ended == Ended::Errno(libc::ENOEXEC) && delta.get("elf_refused") == 1;
        let key = if refused {
            "ENOEXEC (binfmt_elf refused)".to_string()
        } else {
            e.ended.to_string()
        };
        *st.outcomes.entry(key).or_default() += 1;
        let seen = Observed {
            ended: e.ended,
            auxv: e.auxv,
            delta: &delta,
            logged: &logged,
        };
        let verdict = match &pred {
            Ok(p) => {
                *st.predicted.entry(p.kind().to_string()).or_default() += 1;
                oracle::check(p, &it.bytes, &it.name, &seen).map_err(|e| ("DISAGREEMENT", e))
            }
            Err(e) => Err(("APEINFO FAILED", e.clone())),
        };
        if !reports.is_empty() {
            println!("# fuzz: kernel report during exec {} ({}):", it.n, it.path);
            reports.iter().for_each(|l| println!("#   {l}"));
            show(o, it, &pred, &seen, "KERNEL REPORT", "");
            st.reports.extend(reports);
        }
        match verdict {
            Ok(()) => st.agree += 1,
            Err((what, why)) => {
                if pred.is_ok() {
                    st.disagree += 1;
                } else {
                    st.unpredicted += 1;
                }
                if st.disagree + st.unpredicted <= SHOWN {
                    show(o, it, &pred, &seen, what, &why);
                }
                if self.first.len() < 5 {
                    self.first
                        .push(format!("exec {} ({} {:?}): {why}", it.n, it.from, it.how));
                }
            }
        }
        if self.progress.elapsed() >= Duration::from_secs(30) {
            self.progress = Instant::now();
            println!(
                "# fuzz: {} execs, {:.1}/s, {} disagreements, next exec {}",
                st.execs,
                st.execs as f64 / t0.elapsed().as_secs_f64(),
                st.disagree,
                it.n + 1
            );
        }
    }
}

/// The racy phase: `count` execs (or until `end`), each racing a writer.
#[allow(clippy::too_many_arguments)]
fn fuzz_racy(
    o: &Options,
    seeds: &[Seed],
    page: usize,
    ext2: Option<&Ext2>,
    kmsg: &mut Kmsg,
    end: Option<Instant>,
    count: u64,
    st: &mut Stats,
) {
    let t0 = Instant::now();
    let counters = CounterFiles::open();
    let mut i = o.from;
    while !(st.racy >= count || end.is_some_and(|e| Instant::now() >= e) && o.execs.is_none()) {
        if o.trail {
            println!("fuzz-racy {i}");
        }
        if i.is_multiple_of(32) {
            child::reap_all();
        }
        let r = racy::race(seeds, o.seed, i, page, ext2, &counters, o.timeout);
        st.racy += 1;
        st.racy_writes += r.writes;
        st.racy_refused += r.refused;
        st.racy_ext2 += u64::from(r.where_ == "ext2");
        *st.racy_outcomes.entry(r.ended.to_string()).or_default() += 1;
        let bad = match r.ended {
            Ended::Stuck => Some("its exec could not be reaped".to_string()),
            Ended::Errno(-1) => Some("could not be started".to_string()),
            _ if r.decisions > 1 => Some(format!("the module counted {} decisions", r.decisions)),
            _ => None,
        };
        if let Some(b) = bad {
            st.racy_bad
                .push(format!("racy exec {i} ({}): {b}", r.where_));
        }
        let reports: Vec<String> = kmsg
            .drain()
            .into_iter()
            .filter(|l| sys::is_report(l))
            .collect();
        if !reports.is_empty() {
            println!("# fuzz: kernel report during racy exec {i} ({}):", r.where_);
            reports.iter().for_each(|l| println!("#   {l}"));
            st.reports.extend(reports);
        }
        i += 1;
    }
    st.racy_time = t0.elapsed();
}

/// A check that passes when nothing was found, or fails listing what was.
fn none_of(found: &[String]) -> Result<(), String> {
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.join("\n"))
    }
}
