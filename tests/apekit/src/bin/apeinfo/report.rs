// SPDX-License-Identifier: GPL-2.0

//! apeinfo's output: a verdict line, then the reasons, the fixes and the facts; or the JSON
//! object `man/apeinfo.1` documents, field by field.

use crate::route::{Status, Verdict};
use crate::system::{Machine, Presence, Rule, Test};
use crate::{Inspected, SCHEMA};
use apekit::ape::Magic;
use apekit::elf::machine_name;
use std::fmt::{self, Write};
use std::os::unix::fs::MetadataExt;

/// A JSON value, written compactly, keys in the order given.
pub enum J {
    Null,
    Bool(bool),
    Int(u64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl From<bool> for J {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}
impl From<u64> for J {
    fn from(n: u64) -> Self {
        Self::Int(n)
    }
}
impl From<u32> for J {
    fn from(n: u32) -> Self {
        Self::Int(n.into())
    }
}
impl From<usize> for J {
    fn from(n: usize) -> Self {
        Self::Int(n.try_into().unwrap_or(u64::MAX))
    }
}
impl From<&str> for J {
    fn from(s: &str) -> Self {
        Self::Str(s.into())
    }
}
impl From<String> for J {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
impl From<&String> for J {
    fn from(s: &String) -> Self {
        Self::Str(s.clone())
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> Self {
        Self::Arr(v)
    }
}

fn obj<const N: usize>(kv: [(&str, J); N]) -> J {
    J::Obj(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for J {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Str(s) => write_str(f, s),
            Self::Arr(v) => {
                f.write_char('[')?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_char(']')
            }
            Self::Obj(v) => {
                f.write_char('{')?;
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{x}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn type_name(t: u16) -> String {
    match t {
        2 => "ET_EXEC".into(),
        3 => "ET_DYN".into(),
        t => format!("type {t}"),
    }
}

/// What the file is, in a word: `ape`, `ape-debug`, `elf`, `script` or `other`.
fn kind(i: &Inspected) -> &'static str {
    match i.magic {
        Some(Magic::Debug) => "ape-debug",
        Some(_) => "ape",
        None if i.file.head.starts_with(b"\x7fELF") => "elf",
        None if i.file.head.starts_with(b"#!") => "script",
        None => "other",
    }
}

fn elf_machine(i: &Inspected) -> Option<&'static str> {
    let h = &i.file.head;
    h.starts_with(b"\x7fELF")
        .then(|| machine_name(u16::from_le_bytes([h[18], h[19]])))
}

pub fn file_json(i: &Inspected, m: &Machine, v: &Verdict) -> J {
    let headers = i
        .headers
        .iter()
        .zip(&i.header_verdicts)
        .enumerate()
        .map(|(n, (s, verdict))| {
            let h = &s.ehdr;
            obj([
                ("index", n.into()),
                ("offset", s.offset.into()),
                ("machine", machine_name(h.e_machine()).into()),
                ("e_machine", u32::from(h.e_machine()).into()),
                ("type", type_name(h.e_type()).into()),
                ("entry", h.e_entry().into()),
                ("phoff", h.e_phoff().into()),
                ("phnum", u32::from(h.e_phnum()).into()),
                ("verdict", verdict.into()),
                ("ehdr_hex", hex(&h.0).into()),
            ])
        })
        .collect::<Vec<_>>();
    let per_cpu = |f: &dyn Fn(&Result<usize, apekit::ape::Error>) -> J| {
        J::Obj(
            i.per_cpu
                .iter()
                .map(|(n, c)| (n.to_string(), f(c)))
                .collect(),
        )
    };
    let stat = i.file.stat.as_ref().map(|st| {
        let mode = st.meta.mode();
        let mount = st.mount.as_ref();
        obj([
            ("mode", format!("{:04o}", mode & 0o7777).into()),
            ("uid", st.meta.uid().into()),
            ("gid", st.meta.gid().into()),
            ("regular", st.meta.is_file().into()),
            (
                "setid",
                (mode & 0o4000 != 0 || mode & 0o2010 == 0o2010).into(),
            ),
            ("caps", st.caps.into()),
            ("mount", mount.map(|mt| mt.point.as_str()).into()),
            ("noexec", mount.map(|mt| mt.noexec).into()),
            ("nosuid", mount.map(|mt| mt.nosuid).into()),
            (
                "executable",
                m.caller.as_ref().map(|c| c.may(&st.meta, 1)).into(),
            ),
        ])
    });
    let script_interp = (kind(i) == "script")
        .then(|| v.interpreter.clone())
        .flatten();
    let mut out = vec![
        ("schema", SCHEMA.into()),
        ("file", i.file.path.as_str().into()),
        (
            "magic",
            i.magic
                .map(|g| String::from_utf8_lossy(g.bytes()).into_owned())
                .into(),
        ),
        ("headers", headers.into()),
        ("selected", per_cpu(&|c| c.ok().into())),
        ("error", per_cpu(&|c| c.err().map(|e| e.name()).into())),
        ("arch", i.arch.as_str().into()),
        ("runs", i.runs.into()),
        ("page_size", i.page_size.into()),
        (
            "format",
            obj([
                ("kind", kind(i).into()),
                ("elf_machine", elf_machine(i).into()),
                (
                    "interpreter",
                    i.file.elf_interp.clone().or(script_interp).into(),
                ),
                ("loader", i.file.extracts.clone().into()),
            ]),
        ),
        ("stat", stat.into()),
        ("machine", m.live.then(|| machine_facts(m)).into()),
    ];
    out.extend(verdict_fields(m, v));
    J::Obj(out.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn verdict_fields(m: &Machine, v: &Verdict) -> Vec<(&'static str, J)> {
    let reasons = v
        .reasons
        .iter()
        .map(|r| obj([("id", r.id.into()), ("text", r.text.as_str().into())]))
        .collect::<Vec<_>>();
    let fixes = v
        .fixes
        .iter()
        .map(|f| {
            obj([
                ("reason", f.reason.into()),
                ("command", f.command.clone().into()),
                ("root", f.root.into()),
                ("text", f.text.as_str().into()),
            ])
        })
        .collect::<Vec<_>>();
    vec![
        (
            "verdict",
            obj([
                ("live", m.live.into()),
                ("status", v.status.name().into()),
                ("exit", u32::from(v.status.code()).into()),
                ("execve", v.execve.into()),
                ("handler", v.handler.into()),
                ("rule", v.rule.clone().into()),
                ("interpreter", v.interpreter.clone().into()),
                ("declined", v.declined.into()),
                ("fallback", v.fallback.into()),
                ("summary", v.summary.as_str().into()),
            ]),
        ),
        ("reasons", reasons.into()),
        ("fixes", fixes.into()),
    ]
}

fn rule_json(r: &Rule) -> J {
    let (kind, offset, magic, mask, ext) = match &r.test {
        Test::Magic {
            offset,
            magic,
            mask,
        } => (
            "magic",
            Some(*offset),
            Some(hex(magic)),
            mask.as_ref().map(|k| hex(k)),
            None,
        ),
        Test::Extension(e) => ("extension", None, None, None, Some(e.clone())),
    };
    obj([
        ("name", r.name.as_str().into()),
        ("enabled", r.enabled.into()),
        ("interpreter", r.interpreter.as_str().into()),
        ("flags", r.flags.as_str().into()),
        ("type", kind.into()),
        ("offset", offset.into()),
        ("magic", magic.into()),
        ("mask", mask.into()),
        ("extension", ext.into()),
    ])
}

/// The `machine` object.
fn machine_facts(m: &Machine) -> J {
    let a = &m.ape;
    let tree = match (a.presence, a.in_tree) {
        (Presence::Absent, _) => None,
        (_, true) => Some("in-tree"),
        (_, false) => Some("out-of-tree"),
    };
    let counters = J::Obj(
        a.counters
            .iter()
            .map(|(k, n)| (k.clone(), (*n).into()))
            .collect(),
    );
    obj([
        ("kernel", m.kernel.clone().into()),
        ("arch", m.arch.as_str().into()),
        ("page_size", m.page_size.into()),
        (
            "binfmt_ape",
            obj([
                ("state", a.presence.name().into()),
                ("tree", tree.into()),
                ("version", a.version.clone().into()),
                ("srcversion", a.srcversion.clone().into()),
                ("taint", a.taint.clone().into()),
                ("enabled", a.enabled.into()),
                ("setid", a.setid.into()),
                ("installed", a.installed.into()),
                ("counters", counters),
            ]),
        ),
        (
            "binfmt_misc",
            obj([
                ("state", m.misc.presence.name().into()),
                ("mount", m.misc.mount.clone().into()),
                ("enabled", m.misc.enabled.into()),
                (
                    "rules",
                    m.misc
                        .rules
                        .iter()
                        .map(rule_json)
                        .collect::<Vec<_>>()
                        .into(),
                ),
            ]),
        ),
        (
            "order",
            m.order
                .formats
                .iter()
                .map(|f| f.name().into())
                .collect::<Vec<J>>()
                .into(),
        ),
        ("order_known", m.order.known.into()),
        ("order_why", m.order.why.as_str().into()),
        (
            "caller",
            m.caller
                .as_ref()
                .map(|c| {
                    obj([
                        ("uid", c.uid.into()),
                        ("gid", c.gid.into()),
                        ("dac_override", c.dac_override.into()),
                        ("no_new_privs", c.no_new_privs.into()),
                    ])
                })
                .into(),
        ),
        (
            "shell",
            m.shell
                .as_ref()
                .map(|s| {
                    obj([
                        ("dir", s.dir.as_str().into()),
                        ("from", s.from.into()),
                        ("usable", s.usable.into()),
                        ("why", s.why.as_str().into()),
                    ])
                })
                .into(),
        ),
        ("ape_command", m.ape_command.clone().into()),
        ("nixos", m.nixos.into()),
        (
            "unreadable",
            m.unreadable
                .iter()
                .map(|(p, e)| obj([("path", p.as_str().into()), ("error", e.as_str().into())]))
                .collect::<Vec<_>>()
                .into(),
        ),
    ])
}

/// `--machine-only --json`.
pub fn machine_json(m: &Machine, v: &Verdict) -> J {
    let mut out = vec![("schema", SCHEMA.into()), ("machine", machine_facts(m))];
    out.extend(verdict_fields(m, v));
    J::Obj(out.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The verdict for any APE for this CPU, said of the machine, with what concerns APEs in
/// general: the page size, and binfmt_misc rules that match by name.
pub fn readiness(m: &Machine, mut v: Verdict) -> Verdict {
    let arch = &m.arch;
    let detail = v
        .summary
        .split_once(": ")
        .map_or("", |(_, d)| d)
        .to_string();
    let kib = m.page_size / 1024;
    v.summary = match v.status {
        Status::Native if arch == "aarch64" && m.page_size > 16384 => {
            format!("ready: APEs for {arch} run natively, but only those built for {kib} KiB pages")
        }
        Status::Native => format!("ready: APEs for {arch} run natively"),
        Status::Other => format!("not ready: APEs for {arch} run another way ({detail})"),
        Status::No => format!("not ready: APEs for {arch} will not run ({detail})"),
    };
    if arch == "aarch64" && m.page_size > 16384 {
        v.reasons.push(crate::route::Reason {
            id: "page-size",
            text: format!(
                "this kernel has {kib} KiB pages: cosmocc aligns aarch64 segments to 16 KiB, so \
                 most APEs cannot be mapped here, natively or by the APE loader"
            ),
        });
        v.fixes.push(crate::route::Fix {
            reason: "page-size",
            command: None,
            root: false,
            text: format!(
                "run a kernel with 4K or 16K pages, or ask for {kib}K-aligned builds of the APEs"
            ),
        });
    }
    let mount = m.misc.mount.clone().unwrap_or_default();
    let ape_first = m.order.formats.first() == Some(&crate::system::Format::Ape);
    for r in m.misc.rules.iter().filter(|r| r.enabled) {
        let Test::Extension(ext) = &r.test else {
            continue;
        };
        let all = m.ape.presence == Presence::Absent || !ape_first || !m.ape.in_tree;
        let which = if all {
            "every APE"
        } else {
            "every APE that binfmt_ape declines"
        };
        v.reasons.push(crate::route::Reason {
            id: "misc-extension",
            text: format!(
                "binfmt_misc rule {} takes {which} named *.{ext}, with {}",
                r.name, r.interpreter
            ),
        });
        if all {
            v.fixes.push(crate::route::Fix {
                reason: "misc-extension",
                command: Some(format!("echo 0 > {mount}/{}", r.name)),
                root: true,
                text: format!("disable binfmt_misc rule {}", r.name),
            });
        }
    }
    v
}

fn fix_line(out: &mut String, v: &Verdict) {
    for f in &v.fixes {
        let root = if f.root { "as root: " } else { "" };
        match &f.command {
            Some(c) => {
                let _ = writeln!(out, "  fix: {c}    # {root}{}", f.text);
            }
            None => {
                let _ = writeln!(out, "  fix: {}", f.text);
            }
        }
    }
}

pub fn file_human(i: &Inspected, v: &Verdict) -> String {
    let mut out = format!("{}: {}\n", i.file.path, v.summary);
    for r in &v.reasons {
        let _ = writeln!(out, "  why: {}", r.text);
    }
    fix_line(&mut out, v);
    match (i.magic, kind(i), elf_machine(i)) {
        (Some(g), _, _) => {
            let _ = writeln!(out, "  file: magic {}", String::from_utf8_lossy(g.bytes()));
        }
        (None, "elf", Some(mach)) => {
            let _ = writeln!(out, "  file: not an APE: an ELF file ({mach})");
        }
        (None, "script", _) => {
            let _ = writeln!(out, "  file: not an APE: a #! script");
        }
        _ => {
            let _ = writeln!(out, "  file: not an APE");
        }
    }
    for (n, (s, verdict)) in i.headers.iter().zip(&i.header_verdicts).enumerate() {
        let h = &s.ehdr;
        let _ = writeln!(
            out,
            "    header {n} at {:#x}: {} {} entry {:#x} phoff {:#x} phnum {}: {verdict}",
            s.offset,
            machine_name(h.e_machine()),
            type_name(h.e_type()),
            h.e_entry(),
            h.e_phoff(),
            h.e_phnum(),
        );
    }
    if i.magic.is_some() {
        for (name, c) in &i.per_cpu {
            let _ = match c {
                Ok(n) => writeln!(out, "    {name}: runs with header {n}"),
                Err(e) => writeln!(out, "    {name}: refused: {}", e.name()),
            };
        }
        let _ = writeln!(out, "    (with {} KiB pages)", i.page_size / 1024);
    }
    out
}

/// How a rule reads: `M 'MZqFpD' at 0` or `E .com`, its flags and its interpreter.
fn rule_human(r: &Rule) -> String {
    let test = match &r.test {
        Test::Magic {
            offset,
            magic,
            mask,
        } => {
            let text: String = magic
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() && b != b'\\' {
                        char::from(b).to_string()
                    } else {
                        format!("\\x{b:02x}")
                    }
                })
                .collect();
            let mask = mask
                .as_ref()
                .map(|k| format!(" mask {}", hex(k)))
                .unwrap_or_default();
            format!("M '{text}' at {offset}{mask}")
        }
        Test::Extension(e) => format!("E .{e}"),
    };
    let state = if r.enabled { "" } else { ", disabled" };
    let flags = if r.flags.is_empty() {
        String::new()
    } else {
        format!(" flags {}", r.flags)
    };
    format!("{} ({test}{flags} -> {}{state})", r.name, r.interpreter)
}

/// The machine's facts, a few lines for a bug report.
pub fn machine_lines(m: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: Linux {} {}, {} KiB pages",
        m.kernel.as_deref().unwrap_or("?"),
        m.arch,
        m.page_size / 1024
    );
    let a = &m.ape;
    let on_off = |b: Option<bool>, on: &str, off: &str| match b {
        Some(true) => on.to_string(),
        Some(false) => off.to_string(),
        None => "unknown".into(),
    };
    let ape = match a.presence {
        Presence::Absent => {
            let installed = match a.installed {
                Some(true) => ", installed for this kernel",
                Some(false) => ", not installed for this kernel",
                None => "",
            };
            format!("not loaded{installed}")
        }
        p => {
            let mut s = String::from(if p == Presence::Module {
                "loaded module"
            } else {
                "built in"
            });
            s.push_str(if a.in_tree {
                " (in tree)"
            } else {
                " (out of tree)"
            });
            if let Some(v) = a.version.as_ref().or(a.srcversion.as_ref()) {
                let _ = write!(s, ", version {v}");
            }
            if let Some(t) = &a.taint {
                let _ = write!(s, ", taint {t}");
            }
            let _ = write!(s, ", {}", on_off(a.enabled, "enabled", "disabled"));
            if !a.in_tree {
                let _ = write!(
                    s,
                    ", setid {}",
                    on_off(
                        a.setid,
                        "1 (set-id APEs run natively)",
                        "0 (set-id APEs declined)"
                    )
                );
            }
            let counts: Vec<String> = a
                .counters
                .iter()
                .filter(|(_, n)| *n != 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            if !counts.is_empty() {
                let _ = write!(s, "; {}", counts.join(", "));
            }
            s
        }
    };
    let _ = writeln!(out, "  binfmt_ape: {ape}");
    let misc = match (m.misc.presence, &m.misc.mount) {
        (Presence::Absent, _) => "not loaded".to_string(),
        (p, None) => format!("{}, not mounted (no rules)", p.name()),
        (p, Some(mt)) => {
            let rules: Vec<String> = m.misc.rules.iter().map(rule_human).collect();
            let rules = if rules.is_empty() {
                "no rules".into()
            } else {
                format!("rules, newest first: {}", rules.join("; "))
            };
            format!(
                "{}, mounted at {mt}, {}, {rules}",
                p.name(),
                on_off(m.misc.enabled, "enabled", "disabled")
            )
        }
    };
    let _ = writeln!(out, "  binfmt_misc: {misc}");
    let order: Vec<&str> = m.order.formats.iter().map(|f| f.name()).collect();
    let certain = if m.order.known { "" } else { "uncertain: " };
    let _ = writeln!(
        out,
        "  order: {} ({certain}{})",
        order.join(", "),
        m.order.why
    );
    if let Some(s) = &m.shell {
        let ape = m
            .ape_command
            .as_deref()
            .map_or("no ape command on PATH".into(), |p| {
                format!("ape command {p}")
            });
        let _ = writeln!(
            out,
            "  shell's way: the APE loader goes to ${} = {}: {}; {ape}",
            s.from, s.dir, s.why
        );
    }
    if let Some(c) = &m.caller {
        let _ = writeln!(
            out,
            "  you: uid {} gid {}{}",
            c.uid,
            c.gid,
            if c.no_new_privs { ", no_new_privs" } else { "" }
        );
    }
    for (p, e) in &m.unreadable {
        let _ = writeln!(out, "  could not read: {p}: {e}");
    }
    out
}

pub fn machine_human(m: &Machine, v: &Verdict) -> String {
    let mut out = format!("this machine: {}\n", v.summary);
    for r in &v.reasons {
        let _ = writeln!(out, "  why: {}", r.text);
    }
    fix_line(&mut out, v);
    out.push_str(&machine_lines(m));
    out
}
