// SPDX-License-Identifier: GPL-2.0

//! doctor.*: apeinfo's verdict against the truth. For each scenario, `apeinfo --json FILE`
//! says what execve of FILE will do (the format that runs it, or the errno, and why binfmt_ape
//! declines it); the runner then execs FILE and sees what it did. Both must agree, and be what
//! the scenario is about. apeinfo and the exec run as root and again as nobody, whose apeinfo
//! reads only what any user may. A scenario that changes the machine (the module, its
//! switches, binfmt_misc and its rules, a mount) puts it back, whatever happened.

use super::common::{
    builtin, counter, in_tree, insmod, real_apes_run, rmmod, sh, write, Check, ARCH, ENT_COM, FAT,
    MISC, NATIVE, SYSCTL,
};
use super::misc::with_rules;
use super::{test, unless_builtin, unless_in_tree, Test};
use crate::exec::{errno_name, run_as, As, Outcome, Stdin};

const APEINFO: &str = "/bin/apeinfo";

fn nobody() -> As {
    As {
        uid: Some(65534),
        ..As::default()
    }
}

/// What execve does with a file, as apeinfo predicts it and as the runner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Exec {
    /// `runs`, or the errno name.
    execve: String,
    /// The format that ran it: binfmt_ape, binfmt_elf, binfmt_misc or binfmt_script.
    handler: Option<String>,
    /// The binfmt_misc rule that took it.
    rule: Option<String>,
    /// binfmt_ape's counter that counted a decline (`declined_*`).
    declined: Option<&'static str>,
}

impl Exec {
    fn runs(handler: &str) -> Self {
        Self {
            execve: "runs".into(),
            handler: Some(handler.into()),
            rule: None,
            declined: None,
        }
    }

    fn fails(errno: &str) -> Self {
        Self {
            execve: errno.into(),
            handler: None,
            rule: None,
            declined: None,
        }
    }

    fn declined(mut self, counter: &'static str) -> Self {
        self.declined = Some(counter);
        self
    }

    fn rule(mut self, name: &str) -> Self {
        self.rule = Some(name.into());
        self
    }
}

/// The counter binfmt_ape counts a decline in, by the reason apeinfo names (`setid`, or an
/// `ape::Error` name).
fn decline_counter(reason: &str) -> &'static str {
    match reason {
        "setid" => "declined_setid",
        "debug-magic" => "declined_debug",
        "no-printf" => "declined_no_header",
        "no-machine" => "declined_no_machine",
        _ => "declined_invalid",
    }
}

const COUNTERS: [&str; 6] = [
    "handled",
    "declined_setid",
    "declined_debug",
    "declined_no_header",
    "declined_no_machine",
    "declined_invalid",
];

fn counters() -> Vec<u64> {
    COUNTERS.iter().map(|c| counter(c)).collect()
}

/// apeinfo's prediction for `path`, run as `who`, and the JSON it gave (its exit status checked).
fn predict(who: As, path: &str) -> Result<(Exec, Json), String> {
    let r = run_as(who, APEINFO, &[APEINFO, "--json", path], Stdin::Null);
    let json = Json::parse(r.out().trim()).map_err(|e| {
        format!(
            "apeinfo --json {path}: {e}; {}; stderr {:?}",
            r.outcome,
            r.err()
        )
    })?;
    let v = json.get("verdict");
    let s = |j: &Json, k: &str| j.get(k).str().map(String::from);
    let exec = Exec {
        execve: s(v, "execve").unwrap_or_default(),
        handler: s(v, "handler"),
        rule: s(v, "rule"),
        declined: v.get("declined").str().map(decline_counter),
    };
    // The exit status is the verdict's.
    let status = s(v, "status").unwrap_or_default();
    let want = match status.as_str() {
        "native" => 0,
        "other" => 1,
        _ => 2,
    };
    if r.outcome != Outcome::Exit(want) {
        return Err(format!(
            "apeinfo {path}: {}, for status {status}",
            r.outcome
        ));
    }
    Ok((exec, json))
}

/// What execve of `path` as `who` did.
fn truth(who: As, path: &str) -> Exec {
    let before = counters();
    let r = run_as(who, path, &[path, "x"], Stdin::Null);
    let after = counters();
    let moved = |name: &str| {
        let i = COUNTERS.iter().position(|c| *c == name).unwrap_or(0);
        before[i] != u64::MAX && after[i] > before[i]
    };
    let declined = COUNTERS[1..].iter().copied().find(|c| moved(c));
    let mut e = match r.outcome {
        Outcome::Errno(n) => Exec::fails(&errno_name(n)),
        // The rules of these tests all run the sentinel, which says it is; each scenario has
        // one rule registered.
        _ if r.out().contains("exe=/bin/sentinel") => Exec {
            rule: only_rule(),
            ..Exec::runs("binfmt_misc")
        },
        _ if r.out().contains("hello from #!") => Exec::runs("binfmt_script"),
        _ if moved("handled") => Exec::runs("binfmt_ape"),
        _ => Exec::runs("binfmt_elf"),
    };
    e.declined = declined;
    e
}

/// The name of the one binfmt_misc rule registered, if there is exactly one.
fn only_rule() -> Option<String> {
    let names: Vec<String> = std::fs::read_dir(MISC)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "register" && n != "status")
        .collect();
    match names.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// One scenario: the file, what it must do, and how the machine is set up around it.
struct Row {
    name: &'static str,
    file: &'static str,
    want: Exec,
    /// A reason apeinfo must give (its `id`).
    reason: Option<&'static str>,
}

impl Row {
    fn new(name: &'static str, file: &'static str, want: Exec) -> Self {
        Self {
            name,
            file,
            want,
            reason: None,
        }
    }

    fn because(mut self, id: &'static str) -> Self {
        self.reason = Some(id);
        self
    }

    /// Predicts, execs and compares, as root then as nobody.
    fn check(&self) -> Check {
        let mut errs = Vec::new();
        for (who, as_name) in [(As::default(), "root"), (nobody(), "nobody")] {
            let (said, json) = match predict(who, self.file) {
                Ok(p) => p,
                Err(e) => {
                    errs.push(format!("{as_name}: {e}"));
                    continue;
                }
            };
            let seen = truth(who, self.file);
            let ids: Vec<&str> = json
                .get("reasons")
                .items()
                .iter()
                .filter_map(|r| r.get("id").str())
                .collect();
            let summary = json
                .get("verdict")
                .get("summary")
                .str()
                .unwrap_or("")
                .to_string();
            println!("# {}: {as_name}: {summary}", self.name);
            if said != seen || said != self.want {
                errs.push(format!(
                    "{as_name}: apeinfo said {said:?}; execve did {seen:?}; the scenario wants {:?}",
                    self.want
                ));
            }
            if let Some(id) = self.reason.filter(|id| !ids.contains(id)) {
                errs.push(format!("{as_name}: no reason {id} among {ids:?}"));
            }
            if as_name == "nobody" {
                let unread = json.get("machine").get("unreadable").items().len();
                if unread != 0 {
                    errs.push(format!(
                        "nobody could not read {unread} files: {:?}",
                        json.get("machine").get("unreadable")
                    ));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }
}

/// Runs `body` between `setup` and `undo`; `undo` runs whatever `setup` and `body` returned.
fn around(
    setup: impl FnOnce() -> Check,
    body: impl FnOnce() -> Check,
    undo: impl FnOnce() -> Check,
) -> Check {
    let r = setup().and_then(|()| body());
    let u = undo();
    r.and(u)
}

fn set(control: &str, v: &str) -> Check {
    write(&format!("{SYSCTL}/{control}"), &format!("{v}\n"))
}

fn copy(to: &str, mode: &str) -> Check {
    sh("cp", &[FAT, to])?;
    sh("chmod", &[mode, to])
}

/// A binfmt_misc rule for every APE with the usual magic, as Wine's `MZ` rule catches them.
const MZ_RULE: &str = ":doctor:M::MZqFpD::/bin/sentinel:";

/// The doctor rows, in an order that leaves the machine as it found it after each.
pub fn tests() -> Vec<Test> {
    let other_cpu = if ARCH == "x86_64" {
        "/ape/corpus/aarch64-only.ape"
    } else {
        "/ape/corpus/x86_64-only.ape"
    };
    let real = if real_apes_run() {
        native("doctor.real_ape_16k_aligned", ENT_COM)
    } else {
        // The 64 KiB-page arm64 guest: cosmocc's 16 KiB-aligned segments cannot be mapped.
        Row::new(
            "doctor.real_ape_16k_aligned",
            ENT_COM,
            Exec::fails("ENOEXEC").declined("declined_invalid"),
        )
        .because("loader-refuses")
    };
    let mut v = vec![
        row(native("doctor.module_loaded", FAT).because("handed-over")),
        row(real),
        unless_builtin("doctor.module_absent", || {
            let r = Row::new("doctor.module_absent", FAT, Exec::fails("ENOEXEC"))
                .because("module-absent");
            around(rmmod, || r.check(), insmod)
        }),
        test("doctor.module_disabled", || {
            let r = Row::new("doctor.module_disabled", FAT, Exec::fails("ENOEXEC"))
                .because("module-disabled");
            around(|| set("enabled", "0"), || r.check(), || set("enabled", "1"))
        }),
        unless_in_tree("doctor.setid_declined", || {
            const F: &str = "/tmp/doctor-suid.ape";
            let r = Row::new(
                "doctor.setid_declined",
                F,
                Exec::fails("ENOEXEC").declined("declined_setid"),
            )
            .because("setid");
            around(|| copy(F, "4755"), || r.check(), || Ok(()))
        }),
        unless_in_tree("doctor.setid_allowed", || {
            const F: &str = "/tmp/doctor-suid.ape";
            let r = native("doctor.setid_allowed", F).because("setid");
            around(
                || copy(F, "4755").and(set("setid", "1")),
                || r.check(),
                || set("setid", "0"),
            )
        }),
        test("doctor.noexec_mount", || {
            const DIR: &str = "/mnt/doctor-noexec";
            const F: &str = "/mnt/doctor-noexec/x.ape";
            let r = Row::new("doctor.noexec_mount", F, Exec::fails("EACCES")).because("noexec");
            around(
                || {
                    std::fs::create_dir_all(DIR).map_err(|e| format!("{DIR}: {e}"))?;
                    sh("mount", &["-t", "tmpfs", "-o", "noexec", "none", DIR])?;
                    copy(F, "0755")
                },
                || r.check(),
                || sh("umount", &[DIR]),
            )
        }),
        test("doctor.not_executable", || {
            const F: &str = "/tmp/doctor-0644.ape";
            let r = Row::new("doctor.not_executable", F, Exec::fails("EACCES"))
                .because("no-exec-permission");
            around(|| copy(F, "0644"), || r.check(), || Ok(()))
        }),
        unless_builtin("doctor.misc_rule_loaded_after_module", || {
            // binfmt_misc reloaded while binfmt_ape stays goes ahead of it: its MZ rule takes
            // the APE first.
            let r = Row::new(
                "doctor.misc_rule_loaded_after_module",
                FAT,
                Exec::runs("binfmt_misc").rule("doctor"),
            )
            .because("misc-ahead");
            around(
                || {
                    sh("rmmod", &["binfmt_misc"])?;
                    sh("modprobe", &["binfmt_misc"])
                },
                || with_rules(&[MZ_RULE], || r.check()),
                // Reloading binfmt_ape puts it back ahead.
                || rmmod().and_then(|()| insmod()),
            )
        }),
        test("doctor.misc_rule_loaded_before_module", || {
            // The order modprobe gives (the module's softdep): binfmt_misc loaded first,
            // binfmt_ape after it and ahead of it. (Built in, binfmt_ape registers later.)
            let r = native("doctor.misc_rule_loaded_before_module", FAT);
            let reload = || {
                if builtin() {
                    Ok(())
                } else {
                    rmmod().and_then(|()| insmod())
                }
            };
            around(reload, || with_rules(&[MZ_RULE], || r.check()), || Ok(()))
        }),
        test("doctor.extension_rule", || {
            // Out of tree binfmt_misc lies between binfmt_ape and binfmt_elf: an `E::com` rule
            // takes even the APE binfmt_ape handed over. In tree, binfmt_elf loads it at once.
            const F: &str = "/tmp/doctor.com";
            let want = if in_tree() {
                Exec::runs("binfmt_ape")
            } else {
                Exec::runs("binfmt_misc").rule("doctorcom")
            };
            let r = Row::new("doctor.extension_rule", F, want);
            let r = if in_tree() {
                r
            } else {
                r.because("misc-after-handover")
            };
            around(
                || copy(F, "0755"),
                || with_rules(&[":doctorcom:E::com::/bin/sentinel:"], || r.check()),
                || Ok(()),
            )
        }),
        row(Row::new(
            "doctor.other_cpu_only",
            other_cpu,
            Exec::fails("ENOEXEC").declined("declined_no_machine"),
        )
        .because("declined")),
        row(Row::new(
            "doctor.apedbg",
            "/ape/fix/exec-debug-xa.ape",
            Exec::fails("ENOEXEC").declined("declined_debug"),
        )
        .because("declined")),
        row(Row::new("doctor.plain_elf", NATIVE, Exec::runs("binfmt_elf")).because("elf")),
        row(Row::new(
            "doctor.script",
            "/test/hello.sh",
            Exec::runs("binfmt_script"),
        )
        .because("script")),
        test("doctor.machine_only", machine_only),
    ];
    // binfmt_misc's state is the scenarios' own: none may leave it mounted.
    v.push(test("doctor.misc_left_as_found", || {
        if std::path::Path::new(&format!("{MISC}/status")).exists() {
            Err(format!("{MISC} is still mounted"))
        } else {
            Ok(())
        }
    }));
    v
}

/// A row whose file binfmt_ape runs.
fn native(name: &'static str, file: &'static str) -> Row {
    Row::new(name, file, Exec::runs("binfmt_ape"))
}

fn row(r: Row) -> Test {
    test(r.name, move || r.check())
}

/// `apeinfo --machine-only --json`: ready, with the module as it is, for root and nobody.
fn machine_only() -> Check {
    for (who, as_name) in [(As::default(), "root"), (nobody(), "nobody")] {
        let r = run_as(
            who,
            APEINFO,
            &[APEINFO, "--machine-only", "--json"],
            Stdin::Null,
        );
        let json =
            Json::parse(r.out().trim()).map_err(|e| format!("{as_name}: {e}: {:?}", r.out()))?;
        let m = json.get("machine");
        let state = m.get("binfmt_ape").get("state").str().unwrap_or("");
        let want = if super::common::builtin() {
            "builtin"
        } else {
            "module"
        };
        let status = json.get("verdict").get("status").str().unwrap_or("");
        println!(
            "# doctor.machine_only: {as_name}: {}",
            json.get("verdict").get("summary").str().unwrap_or("")
        );
        if state != want || status != "native" || r.outcome != Outcome::Exit(0) {
            return Err(format!(
                "{as_name}: binfmt_ape {state} (want {want}), status {status}, {}",
                r.outcome
            ));
        }
        if m.get("page_size").num() != Some(super::common::page_size())
            || m.get("arch").str() != Some(ARCH)
        {
            return Err(format!("{as_name}: machine {m:?}"));
        }
        if !m.get("unreadable").items().is_empty() {
            return Err(format!(
                "{as_name}: could not read {:?}",
                m.get("unreadable")
            ));
        }
    }
    Ok(())
}

/// Just enough JSON to read apeinfo's output.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    /// The member `k` of an object (null when there is none).
    fn get(&self, k: &str) -> &Json {
        match self {
            Self::Obj(m) => m.iter().find(|(n, _)| n == k).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    fn num(&self) -> Option<u64> {
        match self {
            Self::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn items(&self) -> &[Json] {
        match self {
            Self::Arr(v) => v,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", char::from(c), self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        let rest = &self.b[self.i..];
        for (word, v) in [
            ("null", Json::Null),
            ("true", Json::Bool(true)),
            ("false", Json::Bool(false)),
        ] {
            if rest.starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(v);
            }
        }
        match rest.first() {
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        _ => break,
                    }
                }
                self.eat(b']')?;
                Ok(Json::Arr(v))
            }
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    m.push((k, self.value()?));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        _ => break,
                    }
                }
                self.eat(b'}')?;
                Ok(Json::Obj(m))
            }
            Some(c) if c.is_ascii_digit() => {
                let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                self.i += n;
                let s = std::str::from_utf8(&rest[..n]).map_err(|e| e.to_string())?;
                s.parse().map(Json::Num).map_err(|e| format!("{s}: {e}"))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.b.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or("short \\u")?;
                            let n = u32::from_str_radix(
                                std::str::from_utf8(hex).map_err(|e| e.to_string())?,
                                16,
                            )
                            .map_err(|e| e.to_string())?;
                            self.i += 4;
                            let ch = char::from_u32(n).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}
